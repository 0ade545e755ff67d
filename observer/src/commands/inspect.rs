//! `goscope inspect`: what goscope knows about a Go binary before attaching,
//! and where each address and offset came from.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::{
    binary::{BuildInfo, GoBinary},
    cli::InspectArgs,
    output,
    probe_points::{self, PROBED_FUNCTIONS, ProbePoint},
    runtime::{GlobalsSource, LayoutSource, RuntimeLayout, globals::Global},
    target::TargetProcess,
};

#[derive(Debug, Serialize)]
pub struct InspectReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub exe: String,
    pub go_version: String,
    pub supported: bool,
    pub module_path: String,
    pub main_module: Option<String>,
    pub goos: Option<String>,
    pub goarch: Option<String>,
    pub buildmode: Option<String>,
    pub ldflags: Option<String>,
    pub goexperiment: Option<String>,
    pub build_settings: BTreeMap<String, String>,
    /// True when the binary has no .symtab.
    pub stripped: bool,
    pub symtab: bool,
    pub dwarf: bool,
    pub pie: bool,
    pub cgo: bool,
    /// Probe address (hex) of every runtime function goscope probes.
    pub functions: BTreeMap<String, String>,
    pub probes: Vec<ProbeReport>,
    /// Where goscope finds the runtime's counters in this binary.
    pub runtime_layout: RuntimeLayoutReport,
}

#[derive(Debug, Serialize)]
pub struct RuntimeLayoutReport {
    /// dwarf | version_table
    pub offsets: Option<LayoutSource>,
    /// symtab | code_references
    pub globals_source: Option<GlobalsSource>,
    /// Link-time address (hex) of each runtime global read.
    pub globals: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn layout_report(binary: &GoBinary) -> RuntimeLayoutReport {
    match RuntimeLayout::resolve(binary, false) {
        Ok(layout) => RuntimeLayoutReport {
            offsets: Some(layout.offsets_source),
            globals_source: Some(layout.globals_source),
            globals: Global::all()
                .filter_map(|g| {
                    Some((
                        g.key().to_string(),
                        format!("{:#x}", layout.globals.address(g)?),
                    ))
                })
                .collect(),
            error: None,
        },
        Err(e) => RuntimeLayoutReport {
            offsets: None,
            globals_source: None,
            globals: BTreeMap::new(),
            error: Some(e.to_string()),
        },
    }
}

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub function: String,
    pub purpose: String,
    #[serde(flatten)]
    pub point: Option<ProbePoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let report = match args.pid() {
        Some(pid) => {
            let target = TargetProcess::open(pid)?;
            build_report(Some(pid), &target.exe.display().to_string(), &target.binary)
        }
        None => {
            let binary = GoBinary::open(&args.path())?;
            build_report(None, &args.target, &binary)
        }
    };
    if args.json {
        output::print_json(&report)
    } else {
        output::print_text(&render(&report))
    }
}

pub fn build_report(pid: Option<u32>, exe: &str, binary: &GoBinary) -> InspectReport {
    let build: &BuildInfo = &binary.build;
    let setting = |key: &str| build.setting(key).map(str::to_string);
    let probes: Vec<ProbeReport> = PROBED_FUNCTIONS
        .iter()
        .map(|f| match probe_points::resolve(binary, *f) {
            Ok(point) => ProbeReport {
                function: f.name.to_string(),
                purpose: f.purpose.to_string(),
                point: Some(point),
                error: None,
            },
            Err(e) => ProbeReport {
                function: f.name.to_string(),
                purpose: f.purpose.to_string(),
                point: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    let functions = probes
        .iter()
        .filter_map(|p| {
            Some((
                p.function.clone(),
                format!("{:#x}", p.point.as_ref()?.address),
            ))
        })
        .collect();
    InspectReport {
        pid,
        exe: exe.to_string(),
        go_version: build.go_version_string.clone(),
        supported: binary.go_version().is_supported(),
        module_path: build.path.clone(),
        main_module: build.main_module.clone(),
        goos: setting("GOOS"),
        goarch: setting("GOARCH"),
        buildmode: setting("-buildmode"),
        ldflags: setting("-ldflags"),
        goexperiment: setting("GOEXPERIMENT"),
        build_settings: build.settings.clone(),
        stripped: !binary.has_symtab,
        symtab: binary.has_symtab,
        dwarf: binary.has_dwarf,
        pie: binary.pie,
        cgo: binary.cgo(),
        functions,
        probes,
        runtime_layout: layout_report(binary),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn render(r: &InspectReport) -> String {
    let mut out = String::new();
    let na = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if let Some(pid) = r.pid {
        let _ = writeln!(out, "pid          {pid}");
    }
    let _ = writeln!(out, "executable   {}", r.exe);
    let support = if r.supported {
        ""
    } else {
        " (outside goscope's supported range)"
    };
    let _ = writeln!(
        out,
        "go           {} {}/{}{support}",
        r.go_version,
        na(&r.goos),
        na(&r.goarch)
    );
    let _ = writeln!(
        out,
        "module       {}",
        if r.module_path.is_empty() {
            "-"
        } else {
            &r.module_path
        }
    );
    let _ = writeln!(out, "buildmode    {}", na(&r.buildmode));
    let _ = writeln!(out, "ldflags      {}", na(&r.ldflags));
    let _ = writeln!(
        out,
        "GOEXPERIMENT {}",
        r.goexperiment.as_deref().unwrap_or("(default)")
    );
    for key in ["vcs", "vcs.revision", "vcs.time", "vcs.modified"] {
        if let Some(value) = r.build_settings.get(key) {
            let _ = writeln!(out, "{key:<12} {value}");
        }
    }
    let _ = writeln!(
        out,
        "binary       .symtab {}  DWARF {}  PIE {}  cgo {}",
        yes_no(r.symtab),
        yes_no(r.dwarf),
        yes_no(r.pie),
        yes_no(r.cgo)
    );
    let _ = writeln!(out, "probes");
    for p in &r.probes {
        match (&p.point, &p.error) {
            (Some(point), _) => {
                let _ = writeln!(
                    out,
                    "  {:<28} {:#x}  entry {:#x} +{}  {:?}, from {:?}  ({})",
                    p.function,
                    point.address,
                    point.entry,
                    point.address - point.entry,
                    point.placement,
                    point.source,
                    p.purpose
                );
            }
            (None, error) => {
                let _ = writeln!(
                    out,
                    "  {:<28} unavailable: {}",
                    p.function,
                    error.as_deref().unwrap_or("unknown")
                );
            }
        }
    }
    let l = &r.runtime_layout;
    match (&l.offsets, &l.globals_source, &l.error) {
        (Some(offsets), Some(globals), _) => {
            let _ = writeln!(
                out,
                "runtime      struct offsets from {offsets:?}, global addresses from {globals:?}"
            );
            for (name, address) in &l.globals {
                let _ = writeln!(out, "  {name:<36} {address}");
            }
        }
        (_, _, error) => {
            let _ = writeln!(
                out,
                "runtime      unreadable: {}",
                error.as_deref().unwrap_or("unknown")
            );
        }
    }
    out
}

//! `goscope doctor`: attach for a window, collect, report with verdicts.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use anyhow::Context as _;
use observer_common::CounterSlot;
use serde::Serialize;

use crate::{
    binary::version,
    cli::DoctorArgs,
    output, privilege,
    probe_points::{self, GC_MARK_TERMINATION},
    probes::ProbeSession,
    target::TargetProcess,
    verdicts::{self, Verdict},
    window::{self, StopSignal, WindowEnd},
};

/// Exit status when the target exited inside the window (report printed).
pub const EXIT_TARGET_EXITED: i32 = 3;

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub target: TargetSummary,
    pub window_s: f64,
    pub ended_by: WindowEnd,
    pub gc: GcFigures,
    /// Where each figure came from (shown with --verbose).
    pub sources: BTreeMap<String, String>,
    pub verdicts: Vec<Verdict>,
}

#[derive(Debug, Serialize)]
pub struct TargetSummary {
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
}

#[derive(Debug, Serialize)]
pub struct GcFigures {
    /// Completed GC cycles in the window.
    pub cycles: u64,
    pub cycles_per_s: f64,
}

/// Runs doctor; returns the process exit status.
pub fn run(args: &DoctorArgs) -> anyhow::Result<i32> {
    privilege::require_root("goscope doctor")?;
    let stop = StopSignal::install()?;
    let target = TargetProcess::open(args.pid)?;
    let go_version = target.binary.go_version();
    if !go_version.is_supported() && !args.force_version {
        anyhow::bail!(
            "pid {} runs {}, outside the supported range {} (use --force-version to try anyway)",
            target.pid,
            target.binary.build.go_version_string,
            version::supported_range()
        );
    }
    let gc_point = probe_points::resolve(&target.binary, GC_MARK_TERMINATION.name)
        .with_context(|| format!("pid {} ({})", target.pid, target.exe.display()))?;

    let mut probes = attach(&target, &gc_point).map_err(|e| target.explain_attach_failure(e))?;
    let cycles_before = probes.counter(CounterSlot::GcCycles)?;
    eprintln!(
        "goscope: attached to pid {} ({}, {}); observing for {} s, Ctrl-C to stop early",
        target.pid,
        target.exe.display(),
        target.binary.build.go_version_string,
        args.duration
    );
    let (ended_by, elapsed) = window::observe(
        Duration::from_secs_f64(args.duration),
        &target,
        &stop,
        None,
        |_| {},
    );
    let cycles = probes.counter(CounterSlot::GcCycles)? - cycles_before;
    drop(std::mem::take(&mut probes));

    let window_s = elapsed.as_secs_f64();
    let gc = GcFigures {
        cycles,
        cycles_per_s: per_second(cycles, window_s),
    };
    let mut sources = BTreeMap::new();
    sources.insert(
        "gc.cycles".to_string(),
        format!(
            "uprobe {} at {:#x} (entry +{}, {:?})",
            gc_point.function,
            gc_point.address,
            gc_point.address - gc_point.entry,
            gc_point.placement
        ),
    );
    let report = DoctorReport {
        target: TargetSummary {
            pid: target.pid,
            exe: target.exe.display().to_string(),
            go_version: target.binary.build.go_version_string.clone(),
        },
        window_s,
        ended_by,
        verdicts: verdicts::gc_verdicts(&gc),
        gc,
        sources,
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        output::print_text(&render(&report, args.verbose))?;
    }
    Ok(match ended_by {
        WindowEnd::TargetExited => {
            eprintln!(
                "goscope: pid {} exited {:.1} s into the window; the report covers what was observed",
                report.target.pid, window_s
            );
            EXIT_TARGET_EXITED
        }
        WindowEnd::Elapsed | WindowEnd::Interrupted => 0,
    })
}

fn attach(
    target: &TargetProcess,
    gc_point: &probe_points::ProbePoint,
) -> anyhow::Result<Option<ProbeSession>> {
    let mut session = ProbeSession::load(target.pid)?;
    session.attach_counter(gc_point, CounterSlot::GcCycles, &target.exe_handle)?;
    Ok(Some(session))
}

trait CounterSource {
    fn counter(&self, slot: CounterSlot) -> anyhow::Result<u64>;
}

impl CounterSource for Option<ProbeSession> {
    fn counter(&self, slot: CounterSlot) -> anyhow::Result<u64> {
        self.as_ref()
            .context("probes already detached")?
            .counter(slot)
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn render(report: &DoctorReport, verbose: bool) -> String {
    let mut out = String::new();
    let t = &report.target;
    let _ = writeln!(
        out,
        "goscope doctor: pid {} {} ({}), window {:.1} s{}",
        t.pid,
        t.exe,
        t.go_version,
        report.window_s,
        match report.ended_by {
            WindowEnd::Elapsed => "",
            WindowEnd::Interrupted => " (stopped early)",
            WindowEnd::TargetExited => " (TARGET EXITED inside the window)",
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "GC");
    let _ = writeln!(
        out,
        "  cycles            {:>10}   {:.2}/s",
        report.gc.cycles, report.gc.cycles_per_s
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Verdicts");
    if report.verdicts.is_empty() {
        let _ = writeln!(out, "  ok    nothing stands out in this window");
    }
    for v in &report.verdicts {
        let _ = writeln!(out, "  {:<5} {}", v.severity.label(), v.message);
    }
    if verbose {
        let _ = writeln!(out);
        let _ = writeln!(out, "Sources");
        for (figure, source) in &report.sources {
            let _ = writeln!(out, "  {figure:<17} {source}");
        }
    }
    out
}

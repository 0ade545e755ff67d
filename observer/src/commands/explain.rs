//! `goscope explain`: why each hot allocation is on the heap. The hot
//! sites come from a live target (`goscope alloc` run as a child for the
//! window: heap profile or probes, whichever the target allows) or from a
//! profile; the reasons from building the module at --src with the
//! compiler's optimisation log (`escapes::build`, offline, as the owner of
//! the tree). `--summary` counts the module's escape decisions by class.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, bail};

use crate::{
    binary::GoBinary,
    cli::ExplainArgs,
    escapes::{
        ModuleReasons,
        build::Built,
        join::{self, ExplainedSite},
        reasons,
    },
    format::{bytes, percent},
    output,
};

pub fn run(args: &ExplainArgs) -> anyhow::Result<i32> {
    let binary = match (&args.binary, args.pid) {
        (Some(path), _) => {
            Some(GoBinary::open(path).with_context(|| format!("--binary {}", path.display()))?)
        }
        (None, Some(pid)) => Some(
            GoBinary::open(Path::new(&format!("/proc/{pid}/exe")))
                .with_context(|| format!("--pid {pid}: reading its executable"))?,
        ),
        (None, None) => None,
    };
    let reasons = ModuleReasons::build(&args.src, args.go.as_deref(), binary.as_ref())?;
    let (built, escapes, warnings) = (&reasons.built, &reasons.escapes, &reasons.warnings);
    let (src, module_path, want) = (
        &reasons.src,
        &reasons.module_path,
        &reasons.binary_go_version,
    );
    if args.summary {
        return summary(args, built, escapes, warnings);
    }
    let profile = match (&args.profile, args.pid) {
        (Some(path), _) => join::read_profile(path)?,
        (None, Some(pid)) => observe(pid, args.duration)?,
        (None, None) => bail!("give --pid PID or --profile FILE for the hot sites (or --summary)"),
    };
    let sites = join::explain(&profile, escapes, src, module_path);
    if args.json {
        output::print_json(&serde_json::json!({
            "src": src.display().to_string(),
            "module": module_path,
            "toolchain": built.toolchain.display().to_string(),
            "toolchain_version": built.toolchain_version,
            "binary_go_version": want,
            "warnings": warnings,
            "sites": sites.iter().take(args.top).collect::<Vec<_>>(),
        }))?;
    } else {
        output::print_text(&text(built, &sites, warnings, args.top))?;
    }
    Ok(0)
}

/// Runs `goscope alloc` on the target for the window, into a private
/// file, and reads its profile.
fn observe(pid: u32, duration: f64) -> anyhow::Result<join::AllocProfile> {
    let dir = crate::outfile::private_dir();
    let profile = dir.join(format!("explain-{pid}-{}.pb.gz", std::process::id()));
    let status = std::process::Command::new(std::env::current_exe()?)
        .args([
            "alloc",
            "--pid",
            &pid.to_string(),
            "--duration",
            &duration.to_string(),
            "-o",
        ])
        .arg(&profile)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running goscope alloc")?;
    if !status.success() {
        bail!("goscope alloc --pid {pid} failed ({status})");
    }
    let read = join::read_profile(&profile);
    let _ = std::fs::remove_file(&profile);
    read
}

fn summary(
    args: &ExplainArgs,
    built: &Built,
    escapes: &reasons::Escapes,
    warnings: &[String],
) -> anyhow::Result<i32> {
    let rows = reasons::summary(escapes);
    if args.json {
        output::print_json(&serde_json::json!({
            "module": built.module_path,
            "toolchain_version": built.toolchain_version,
            "warnings": warnings,
            "by_class": rows.iter().map(|(c, n)| serde_json::json!({"class": c, "count": n, "reason": c.words()})).collect::<Vec<_>>(),
        }))?;
        return Ok(0);
    }
    let mut out = format!(
        "goscope explain --summary: {} built with {} ({} values moved to the heap)\n",
        built.module_path,
        built.toolchain_version,
        rows.iter().map(|(_, n)| n).sum::<u64>()
    );
    for w in warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    for (class, n) in rows {
        let _ = writeln!(
            out,
            "  {n:>6}  {:<22} {}",
            format!("{class:?}"),
            class.words()
        );
    }
    output::print_text(&out)?;
    Ok(0)
}

fn text(built: &Built, sites: &[ExplainedSite], warnings: &[String], top: usize) -> String {
    let mut out = format!(
        "goscope explain: {} built with {} ({})\n",
        built.module_path,
        built.toolchain_version,
        built.toolchain.display()
    );
    for w in warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    for site in sites.iter().take(top) {
        let rate = site
            .bytes_per_s
            .map_or(String::new(), |b| format!("{}/s, ", bytes(b)));
        let _ = writeln!(
            out,
            "\n{}  {} ({rate}{} of the bytes)",
            site.position,
            site.function,
            percent(site.bytes_share)
        );
        for e in &site.escapes {
            let _ = writeln!(out, "  {} escapes: {}", e.value, e.reason);
            for step in e.flow.iter().take(4) {
                let _ = writeln!(out, "      {step}");
            }
            let _ = writeln!(out, "    fix: {}", e.hint);
        }
        if site.escapes.is_empty()
            && let Some(class) = site.class
        {
            let _ = writeln!(
                out,
                "  {} (from the source line)\n    fix: {}",
                class.words(),
                class.hint()
            );
        }
        for (callee, share) in &site.allocated_in {
            let _ = writeln!(out, "  {} of it allocated inside {callee}", percent(*share));
        }
        if let Some(note) = &site.note {
            let _ = writeln!(out, "  {note}");
        }
    }
    out
}

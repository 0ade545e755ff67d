//! `goscope cpu`: samples the target's CPU for a window, prints runtime
//! versus application CPU and writes a pprof CPU profile.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;

use crate::{
    cli::CpuArgs,
    cpu::{self, CpuSamples, CpuSplit},
    format::percent,
    output,
    probes::ProbeSession,
    session::ProcessSession,
    symbols::Symbolizer,
    window,
};

pub fn run(args: &CpuArgs) -> anyhow::Result<i32> {
    let ProcessSession { target, stop } = ProcessSession::open("goscope cpu", args.pid)?;
    let bias = target.load_bias()?;
    let symbolizer = Symbolizer::new(&target.binary, bias);
    let session = ProbeSession::load(target.pid, None)
        .and_then(|mut s| {
            cpu::attach(&mut s, args.hz)?;
            Ok(s)
        })
        .map_err(|e| target.explain_attach_failure(e))?;
    eprintln!(
        "goscope: attached to pid {} ({}); sampling CPU at {} Hz per CPU for {} s, Ctrl-C to stop early",
        target.pid,
        crate::target::display_path(&target.exe),
        args.hz,
        args.duration
    );
    let window = window::observe(
        Duration::from_secs_f64(args.duration),
        &target,
        &stop,
        None,
        |_| Ok(()),
    );
    let elapsed = window.elapsed;
    let samples = CpuSamples::read(
        &session,
        &symbolizer,
        &cpu::CallTargets::new(&target.binary, bias),
    )?;
    drop(session);
    let profile = samples
        .pprof(args.hz, elapsed.as_nanos() as u64)
        .context("encoding the pprof profile")?;
    let title =
        crate::flamegraph::title("cpu", target.pid, &target.exe, target.binary.go_version());
    crate::flamegraph::write_profile(&args.output, &profile, &title)?;
    let split = samples.split();
    if args.json {
        output::print_json(&split)?;
    } else {
        output::print_text(&render(&split, &args.output))?;
    }
    Ok(window.announce_end(&target, "the profile covers what was sampled until then"))
}

pub fn render(split: &CpuSplit, profile: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "CPU  {} samples; Go runtime {} of the process's CPU",
        split.samples,
        split.runtime_share.map_or("-".into(), percent)
    );
    let width = split
        .by_class
        .keys()
        .map(|c| c.label().chars().count())
        .max()
        .unwrap_or(0);
    for (class, share) in &split.by_class {
        let bar = "█".repeat((share * 40.0).round() as usize);
        let line = format!("  {:<width$} {:>7}  {bar}", class.label(), percent(*share));
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if crate::flamegraph::is_svg(profile) {
        let _ = writeln!(out, "flame graph written to {}", profile.display());
    } else {
        let _ = writeln!(
            out,
            "profile written to {} (go tool pprof -top {})",
            profile.display(),
            profile.display()
        );
    }
    out
}

//! `goscope doctor`: attach for a window, read the runtime's own counters at
//! its start, every second and at its end, count GC cycles with one probe,
//! and report the window's deltas with verdicts.

pub mod render;

use std::time::{Duration, Instant};

use crate::{
    attachment::{self, Sample},
    cli::DoctorArgs,
    escapes::ModuleReasons,
    output,
    probes::governor,
    session::Session,
    window::{self, WindowEnd},
};

/// How often the runtime is read during the window, so that a target that
/// exits still leaves a recent reading.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the scheduler is read for the P-bound/M-bound judgement
/// when the ticks are frequent enough (memory reads only).
const SCHED_INTERVAL: Duration = Duration::from_millis(100);

/// Runs doctor; returns the process exit status.
pub fn run(args: &DoctorArgs) -> anyhow::Result<i32> {
    let session = Session::open("goscope doctor", args.target.clone())?;
    // Built before the window, so a bad --src fails before anything is
    // attached.
    let reasons = args
        .src
        .as_deref()
        .map(|src| ModuleReasons::build(src, args.go.as_deref(), Some(&session.target.binary)))
        .transpose()?;
    for warning in reasons.iter().flat_map(|r| &r.warnings) {
        eprintln!("goscope: warning: {warning}");
    }
    let stop = session.stop.clone();
    let attachment = attachment::attach(
        session,
        args.overhead_budget.percent(),
        !args.no_sites,
        Some(Duration::from_secs_f64(args.duration)),
    )?;
    let target = attachment.target();

    let started = Instant::now();
    let first = attachment.sample(Duration::ZERO)?;
    eprintln!(
        "goscope: attached to pid {} ({}, {}); observing for {} s, Ctrl-C to stop early",
        target.pid,
        crate::target::display_path(&target.exe),
        crate::format::bounded(
            &target.binary.build.go_version_string,
            crate::format::MAX_SHOWN
        ),
        args.duration
    );
    let mut last: Option<Sample> = None;
    // The governor ticks fast (a burst is cut off within one tick); the
    // runtime is read once a second.
    let governing = attachment.is_governed();
    let tick = if governing {
        governor::POLL
    } else {
        SAMPLE_INTERVAL
    };
    // The first reading after the start comes early: it predicts the
    // per-call probes' rate, so the governor can attach them soon.
    let mut next_sample = if governing {
        governor::FIRST_PREDICTION
    } else {
        SAMPLE_INTERVAL
    };
    let mut next_sched = SCHED_INTERVAL;
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        target,
        &stop,
        Some(tick),
        |at| {
            if governing {
                attachment.govern()?;
            }
            if at < next_sample {
                if at >= next_sched {
                    next_sched = at + SCHED_INTERVAL;
                    attachment.observe_sched()?;
                }
                return Ok(());
            }
            next_sample += SAMPLE_INTERVAL;
            let sample = attachment.sample(at)?;
            attachment.predict(last.as_ref().unwrap_or(&first), &sample);
            last = Some(sample);
            Ok(())
        },
    );
    if let Some(e) = window.error.take() {
        return Err(e.context("a read failed inside the window; no report rather than a wrong one"));
    }
    attachment.finish_probes()?;
    if !window.end.target_ended() {
        match attachment.sample(started.elapsed()) {
            Ok(sample) => last = Some(sample),
            Err(e) => match target.liveness() {
                crate::target::Liveness::Alive => {
                    return Err(e.context("the final reading of the window failed"));
                }
                ended => window.ended(ended),
            },
        }
    }
    let last = last.unwrap_or_else(|| first.clone());
    let ended_by: WindowEnd = window.end;
    let mut report = attachment.report(&first, &last, ended_by)?;
    if let Some(reasons) = &reasons {
        for site in &mut report.alloc.sites {
            site.escape = reasons.at(&site.position);
        }
    }
    if args.json {
        output::print_json(&report)?;
    } else {
        output::print_text(&render::text(&report, args.verbose))?;
    }
    Ok(window.announce_end(target, "the report covers what was observed until then"))
}

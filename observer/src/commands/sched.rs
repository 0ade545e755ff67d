//! `goscope sched`: schedtrace without a restart. Every interval, the line
//! GODEBUG=schedtrace prints, from the target's memory, plus goroutines
//! created per second, live goroutines, OS threads and the runtime's own
//! scheduling-latency percentiles for the interval; at the end, whether
//! the run was P-bound or M-bound (`report::sched_bound`) with its numbers.

use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    cli::SchedArgs,
    format::{count, duration_ns},
    memory::TargetMemory as _,
    output,
    report::sched_bound::{self, Bound, SchedBoundTracker},
    runtime::{histogram::Percentiles, snapshot::SchedTrace},
    session::Session,
    window,
};

#[derive(Debug, Serialize)]
pub struct SchedLine {
    /// Milliseconds since the runtime started (schedtrace's SCHED Nms).
    pub at_ms: i64,
    #[serde(flatten)]
    pub trace: SchedTrace,
    pub goroutines_live: i64,
    pub goroutines_created_per_s: f64,
    /// OS threads of the process (/proc), for comparison with `threads`.
    pub os_threads: u64,
    pub latency_ns: Option<Percentiles>,
    /// P-bound, M-bound or null over every reading so far
    /// (`report::sched_bound`), and the verdict's text with its numbers.
    pub bound: Option<Bound>,
    pub verdict: Option<String>,
}

impl SchedLine {
    pub fn text(&self) -> String {
        let t = &self.trace;
        let needspinning = t
            .needspinning
            .map_or(String::new(), |n| format!(" needspinning={n}"));
        let local: Vec<String> = t.local_runqueues.iter().map(u32::to_string).collect();
        let latency = match &self.latency_ns {
            Some(p) => format!(
                "latency p50 {} p99 {} max {}",
                duration_ns(p.p50),
                duration_ns(p.p99),
                duration_ns(p.max)
            ),
            None => "latency -".to_string(),
        };
        format!(
            "SCHED {}ms: gomaxprocs={} idleprocs={} threads={} spinningthreads={}{needspinning} idlethreads={} runqueue={} [{}] | goroutines {} live, {} created/s | {latency} | {} OS threads",
            self.at_ms,
            t.gomaxprocs,
            t.idleprocs,
            t.threads,
            t.spinningthreads,
            t.idlethreads,
            t.runqueue,
            local.join(" "),
            self.goroutines_live,
            count(self.goroutines_created_per_s),
            self.os_threads
        )
    }
}

fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

pub fn run(args: &SchedArgs) -> anyhow::Result<i32> {
    let Session {
        target,
        stop,
        runtime,
        ..
    } = Session::open("goscope sched", args.target.clone())?;
    let (layout, bias, memory) = (&runtime.layout, runtime.bias, &runtime.memory);
    let init_time = match layout
        .globals
        .optional(crate::runtime::globals::OptionalGlobal::RuntimeInitTime)
    {
        Some(address) => memory.read_u64(address + bias).unwrap_or(0) as i64,
        None => 0,
    };
    let read = || {
        runtime
            .read()
            .with_context(|| format!("reading the scheduler of pid {}", target.pid))
    };
    let mut previous = read()?;
    let mut previous_at = std::time::Instant::now();
    eprintln!(
        "goscope: attached to pid {} ({}, {}); a line every {} ms, Ctrl-C to stop",
        target.pid,
        crate::target::display_path(&target.exe),
        crate::format::bounded(
            &target.binary.build.go_version_string,
            crate::format::MAX_SHOWN
        ),
        args.interval
    );
    let interval = Duration::from_millis(args.interval);
    let mut bound = SchedBoundTracker::default();
    bound.observe(&previous.sched_trace);
    // Lines stream to stdout as the window goes: no status line between.
    crate::live_status::suppress();
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        &target,
        &stop,
        Some(interval),
        |_| {
            let now = read()?;
            bound.observe(&now.sched_trace);
            let (figures, judged) = (bound.figures(), bound.figures().judge());
            let seconds = previous_at.elapsed().as_secs_f64();
            previous_at = std::time::Instant::now();
            let created = now
                .goroutines_created
                .saturating_sub(previous.goroutines_created);
            let line = SchedLine {
                at_ms: if init_time > 0 {
                    (monotonic_ns() - init_time) / 1_000_000
                } else {
                    0
                },
                trace: now.sched_trace.clone(),
                goroutines_live: now.goroutines_user,
                goroutines_created_per_s: if seconds > 0.0 {
                    created as f64 / seconds
                } else {
                    0.0
                },
                os_threads: target.thread_count()?,
                latency_ns: now
                    .sched_latency
                    .as_ref()
                    .zip(previous.sched_latency.as_ref())
                    .and_then(|(b, a)| b.delta(a).percentiles()),
                bound: judged,
                verdict: judged.map(|b| b.message(&figures)),
            };
            if args.json {
                output::print_json_line(&line)?;
            } else {
                output::print_text(&format!("{}\n", line.text()))?;
            }
            previous = now;
            Ok(())
        },
    );
    if let Some(e) = window.error.take() {
        if e.is::<output::BrokenPipe>() {
            return Ok(0);
        }
        return Err(e);
    }
    let figures = bound.figures();
    let judged = figures.judge();
    if !args.json {
        let line = match judged {
            Some(b) => b.message(&figures),
            None if figures.readings < sched_bound::MIN_READINGS => format!(
                "neither P- nor M-bound judged: {} readings, {} needed",
                figures.readings,
                sched_bound::MIN_READINGS
            ),
            None => format!(
                "neither P- nor M-bound: Ps all busy with work queued in {} of {} readings, Ms {} -> {} (max {}), {:.1} blocked in syscalls/C on average",
                figures.saturated_readings,
                figures.readings,
                figures.threads_first,
                figures.threads_last,
                figures.threads_max,
                figures.blocked_ms_mean
            ),
        };
        output::print_text(&format!("VERDICT {line}\n"))?;
    }
    Ok(window.announce_end(
        &target,
        "the lines above cover what was observed until then",
    ))
}

//! `goscope gc`: gctrace without a restart. One line (or JSON object) per
//! GC cycle as it completes, from the runtime's own bookkeeping copied by a
//! probe after mark termination, plus what gctrace lacks: mark-assist
//! count and latency, goroutines that assisted, GOGC/GOMEMLIMIT in force.

mod cycle;

use std::time::Duration;

use anyhow::Context as _;
use observer_common::GcCycleEvent;

pub use cycle::CycleRecord;

use crate::{
    cli::GcArgs,
    memory::TargetMemory as _,
    output,
    probe_points::{self, GC_CYCLE_END},
    probes::{
        GC_CYCLE_PROGRAM, GcSnapshotAddresses, ProbeSession,
        assists::{AssistProbes, AssistReader},
        calibrate,
        governor::{Action, Governor},
    },
    session::Session,
    window,
};

/// How often the ring buffer of finished cycles is drained.
const DRAIN_INTERVAL: Duration = Duration::from_millis(5);
/// How long a window whose probe reported no cycle waits for the one the
/// runtime may have counted but not yet finished (counted in mark
/// termination, reported after the world restarts).
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(500);

pub fn run(args: &GcArgs) -> anyhow::Result<i32> {
    let Session {
        target,
        stop,
        runtime,
        others,
    } = Session::open("goscope gc", args.target.clone())?;
    let context = || format!("pid {}", target.pid);
    let (layout, bias, memory) = (&*runtime.layout, runtime.bias, &runtime.memory);
    let g = &layout.globals;
    use crate::runtime::globals::{OptionalGlobal, RequiredGlobal};
    let o = &layout.offsets;
    let work = g
        .optional(OptionalGlobal::Work)
        .context("runtime.work not found: cannot read GC cycle records")?;
    let addresses = GcSnapshotAddresses {
        work: work + bias,
        controller: g.required(RequiredGlobal::GcController) + bias,
        numgc: g.required(RequiredGlobal::Memstats) + o.heap.numgc + bias,
        gc_cpu_fraction: g.required(RequiredGlobal::Memstats) + o.cycle.gc_cpu_fraction + bias,
        init_time: g
            .optional(OptionalGlobal::RuntimeInitTime)
            .map_or(0, |a| a + bias),
        g_goid_offset: 0,
    };
    let cycle_point = probe_points::resolve(&target.binary, GC_CYCLE_END).with_context(context)?;
    let assist_probes = if args.no_assists {
        None
    } else {
        Some(AssistProbes::resolve(&target.binary).with_context(context)?)
    };
    let pid = std::num::NonZeroU32::new(target.pid).context("pid 0")?;
    let (mut session, mut assist_links) = ProbeSession::load(target.pid, Some(&addresses))
        .and_then(|mut s| {
            s.attach(GC_CYCLE_PROGRAM, &cycle_point, None, &target.exe_handle)?;
            let links = match &assist_probes {
                Some(assists) => Some(assists.attach(&mut s, &target.exe_handle, pid)?),
                None => None,
            };
            Ok((s, links))
        })
        .map_err(|e| target.explain_attach_failure(e))?;
    // The governor keeps the assist probes within the overhead budget:
    // their rate cannot be predicted from memory, so they start attached
    // and are detached for good once their measured cost would overspend.
    let mut governor = match &assist_probes {
        Some(_) => {
            let costs = calibrate::costs(&mut session).context("calibrating probe costs")?;
            Some(
                Governor::detached(
                    others.share(args.overhead_budget.percent()),
                    costs.hit_ns,
                    target.cpu_time_ns()?,
                )
                .with_window(Duration::from_secs_f64(args.duration))
                .with_link_costs(costs.links(assist_links.as_ref().map_or(0, Vec::len)))
                .attached_from_start(),
            )
        }
        None => None,
    };
    let mut last_cycle = memory
        .read_u32(addresses.numgc)
        .with_context(|| format!("reading memstats.numgc of pid {}", target.pid))?;
    eprintln!(
        "goscope: attached to pid {} ({}, {}); one line per GC cycle from cycle {}, Ctrl-C to stop",
        target.pid,
        crate::target::display_path(&target.exe),
        crate::format::bounded(
            &target.binary.build.go_version_string,
            crate::format::MAX_SHOWN
        ),
        last_cycle + 1
    );
    let mut assists = AssistReader::default();
    // Prime the cumulative histogram so the first cycle shows only its own.
    let _ = assists.drain(&mut session);
    let first_cycle = last_cycle;
    let printed = std::cell::Cell::new(0u64);
    // False from a detach until the first whole cycle after re-attaching.
    let mut assists_whole_cycle = assist_links.is_some();
    let mut drain = |session: &mut ProbeSession| -> anyhow::Result<()> {
        let events: Vec<GcCycleEvent> = session.drain_ring("GC_EVENTS", usize::MAX)?;
        for event in events {
            // mProf_Flush may run outside GC; only a new cycle counts.
            if event.read_errors != 0 || event.numgc <= last_cycle {
                continue;
            }
            last_cycle = event.numgc;
            let summary = assists.drain(session)?;
            let sampled = assist_links.is_some() && assists_whole_cycle;
            assists_whole_cycle = assist_links.is_some();
            let record = CycleRecord::decode(&event, o, summary, sampled);
            if args.json {
                output::print_json_line(&record)?;
            } else {
                output::print_text(&format!("{}\n", record.gctrace_line()))?;
            }
            printed.set(printed.get() + 1);
        }
        if let Some(g) = governor.as_mut() {
            let stats = AssistProbes::PROGRAMS
                .iter()
                .filter_map(|p| session.run_stats(p))
                .fold((0, 0), |(n, t), s| (n + s.runs, t + s.run_ns));
            g.record(stats.0, stats.1);
            match g.tick(target.cpu_time_ns()?, 0.0) {
                Action::Detach => {
                    if let Some(links) = assist_links.take() {
                        session.detach_all(links)?;
                    }
                    assists_whole_cycle = false;
                }
                // Attached from the start, never re-attached.
                Action::Attach | Action::Keep => {}
            }
        }
        Ok(())
    };
    // Lines stream to stdout as the window goes: no status line between.
    crate::live_status::suppress();
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        &target,
        &stop,
        Some(DRAIN_INTERVAL),
        |_| drain(&mut session),
    );
    // Cycles that completed before the end are still in the ring buffer
    // (after an exec, what is there may be the new program's: dropped).
    if window.error.is_none()
        && window.end != window::WindowEnd::TargetExecd
        && let Err(e) = drain(&mut session)
        && target.is_alive()
    {
        window.error = Some(e);
    }
    if let Some(e) = window.error.take() {
        if e.is::<output::BrokenPipe>() {
            return Ok(0);
        }
        return Err(e);
    }
    // The runtime counted cycles that the probe never reported: the kernel
    // program does not see the target. Fail rather than print no cycles.
    if printed.get() == 0 && !window.end.target_ended() {
        let counted = || {
            memory
                .read_u32(addresses.numgc)
                .map_or(0, |n| n.saturating_sub(first_cycle))
        };
        let deadline = std::time::Instant::now() + IN_FLIGHT_GRACE;
        while printed.get() == 0 && counted() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(DRAIN_INTERVAL);
            drain(&mut session)?;
        }
        let counted = counted();
        if printed.get() == 0 && counted > 0 {
            anyhow::bail!(
                "pid {}: memstats.numgc moved from {first_cycle} to {} ({counted} GC cycle(s)) in the {:.1} s window but the GC probe at {} reported none: goscope's kernel programs did not see the target",
                target.pid,
                first_cycle + counted,
                window.elapsed.as_secs_f64(),
                cycle_point.function
            );
        }
    }
    if let Some(g) = &governor {
        eprintln!(
            "goscope: assist probes attached {:.0}% of the window (overhead budget {} of the target's CPU, {:.1} µs per probe hit here)",
            g.sampled_fraction() * 100.0,
            crate::format::budget(args.overhead_budget.percent()),
            g.cost_ns() / 1000.0
        );
    }
    let dropped = crate::report::overhead::DroppedEvents::read(&session);
    if dropped.any() {
        eprintln!(
            "goscope: the kernel dropped {} GC cycle record(s) (ring buffer full) and {} assist map insert(s): those cycles are missing above",
            dropped.ring_buffer, dropped.map_full
        );
    }
    eprintln!(
        "goscope: {} GC cycle(s) in {:.1} s{}",
        printed.get(),
        window.elapsed.as_secs_f64(),
        if window.end.target_ended() {
            "; the target ended"
        } else {
            ""
        }
    );
    Ok(window.announce_end(
        &target,
        "the cycles above are those it completed until then",
    ))
}

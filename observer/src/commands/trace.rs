//! `goscope trace`: a timeline for Perfetto. GC cycles as slices with their
//! phases (sweep termination STW, concurrent mark, mark termination STW),
//! heap live, heap goal and goroutine counters, CFS throttled periods, and
//! each OS thread of the target with its scheduler state
//! (`trace_threads`), mark assists per goroutine (`trace_assists`), cgo
//! calls per thread (`trace_cgo`), written as Chrome trace-event JSON by
//! `trace_events::TraceWriter`.
//!
//! One clock: CLOCK_MONOTONIC. A cycle's phase times are the runtime's own
//! (runtime.work.tSweepTerm/tMark/tMarkTerm/tEnd, nanotime()), copied by
//! the GC-cycle probe once per cycle after the world restarts, or, when
//! the probe is declined or detached by the overhead governor, read from
//! memory at every tick (a cycle that begins and ends between two ticks is
//! then counted as missed, and the file says so). Counters and cpu.stat
//! are stamped with goscope's own clock_gettime(CLOCK_MONOTONIC) at the
//! reading; thread transitions with bpf_ktime_get_ns in the sched_switch
//! and sched_wakeup tracepoints (the same clock).

use std::time::Duration;

use anyhow::Context as _;
use observer_common::GcCycleEvent;
use serde_json::{Value, json};

use crate::{
    cgroup::{Cgroups, CpuStat},
    cli::TraceArgs,
    memory::TargetMemory as _,
    probe_points::{self, GC_CYCLE_END},
    probes::{
        GC_CYCLE_PROGRAM, GcSnapshotAddresses, ProbeSession, calibrate,
        detacher::Detacher,
        governor::{Action, Governor, Phase},
    },
    runtime::{
        globals::{OptionalGlobal, RequiredGlobal},
        layout::RuntimeOffsets,
        snapshot::{RuntimeSnapshot, le_u64},
    },
    session::Session,
    trace_assists::AssistTracks,
    trace_cgo::CgoTracks,
    trace_events::{TraceWriter, micros, monotonic_ns},
    trace_governed::GovernedLane,
    trace_threads::ThreadSource,
    window,
};

/// How often the window ticks (the GC ring buffer is drained, deadlines
/// below are checked).
const TICK: Duration = Duration::from_millis(5);
/// How often what is buffered reaches the file.
const FLUSH_INTERVAL_NS: u64 = 200_000_000;
/// How long a target that seems to have exec'd is watched for its exit
/// (see the end of `run`).
const EXIT_SETTLE: Duration = Duration::from_millis(500);
/// The cgroup mount root.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Track ids (the `tid` of the process's synthetic tracks; real thread ids
/// are never this small in a Go process that is not init).
const TID_GC: u32 = 1;
const TID_THROTTLE: u32 = 2;

/// A cycle's phase times (CLOCK_MONOTONIC ns) and what gctrace prints of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cycle {
    number: u32,
    sweep_term: u64,
    mark: u64,
    mark_term: u64,
    end: u64,
    heap0: u64,
    heap1: u64,
    heap2: u64,
    goal: u64,
    forced: bool,
}

impl Cycle {
    /// From a copy of runtime.work and gcController; None unless the four
    /// times are ordered (a copy taken while the next cycle began).
    fn decode(number: u32, work: &[u8], ctl: &[u8], o: &RuntimeOffsets) -> Option<Self> {
        let c = &o.cycle;
        let cycle = Self {
            number,
            sweep_term: le_u64(work, c.t_sweep_term),
            mark: le_u64(work, c.t_mark),
            mark_term: le_u64(work, c.t_mark_term),
            end: le_u64(work, c.t_end),
            heap0: le_u64(work, c.heap0),
            heap1: le_u64(work, c.heap1),
            heap2: le_u64(work, c.heap2),
            goal: le_u64(ctl, c.last_heap_goal),
            forced: work.get(c.user_forced as usize).is_some_and(|&b| b != 0),
        };
        let ordered = 0 < cycle.sweep_term
            && cycle.sweep_term <= cycle.mark
            && cycle.mark <= cycle.mark_term
            && cycle.mark_term <= cycle.end;
        ordered.then_some(cycle)
    }

    /// The cycle slice and its three phases, parent first (same start).
    fn events(&self, pid: u32, source: &str) -> Vec<Value> {
        let slice = |name: &str, from: u64, to: u64, args: Value| {
            json!({
                "name": name, "cat": "gc", "ph": "X",
                "ts": micros(from), "dur": micros(to - from),
                "pid": pid, "tid": TID_GC, "args": args,
            })
        };
        vec![
            slice(
                &format!("GC {}", self.number),
                self.sweep_term,
                self.end,
                json!({
                    "cycle": self.number,
                    "heap_start_bytes": self.heap0,
                    "heap_end_bytes": self.heap1,
                    "heap_marked_bytes": self.heap2,
                    "heap_goal_bytes": self.goal,
                    "forced": self.forced,
                    "source": source,
                }),
            ),
            slice(
                "sweep termination (STW)",
                self.sweep_term,
                self.mark,
                json!({"cycle": self.number}),
            ),
            slice(
                "concurrent mark",
                self.mark,
                self.mark_term,
                json!({"cycle": self.number}),
            ),
            slice(
                "mark termination (STW)",
                self.mark_term,
                self.end,
                json!({"cycle": self.number}),
            ),
        ]
    }
}

/// Throttled slices from cpu.stat deltas. nr_throttled moves when a
/// period throttles, throttled_time when it is unthrottled (by the time
/// it was held back), so periods are kept pending until their time comes;
/// each slice ends at the reading that saw its time (at most one polling
/// interval late) and lasts what the kernel added.
#[derive(Default)]
struct Throttling {
    /// When the last reading began, and what it read.
    last: Option<(u64, CpuStat)>,
    pending_periods: u64,
}

/// One throttled slice. The readings that saw its time bracket its
/// unthrottle: after `previous_reading_ns` (when the reading before began)
/// and before the end of its own reading, the `end_ns` of the last slice
/// that reading gives.
#[derive(Debug, PartialEq, Eq)]
struct ThrottledSlice {
    start_ns: u64,
    end_ns: u64,
    /// 1 for a period that throttled inside the trace, 0 for time left
    /// from a throttle that began before it.
    periods: u64,
    throttled_ns: u64,
    previous_reading_ns: u64,
}

impl Throttling {
    /// The slices whose time a reading saw: it began at `began_ns` and
    /// ended at `now_ns`.
    fn update(&mut self, began_ns: u64, now_ns: u64, stat: CpuStat) -> Vec<ThrottledSlice> {
        let Some((previous_reading_ns, last)) = self.last.replace((began_ns, stat)) else {
            return Vec::new();
        };
        self.pending_periods += stat
            .throttled_periods
            .saturating_sub(last.throttled_periods);
        let time = stat.throttled_ns.saturating_sub(last.throttled_ns);
        if time == 0 {
            return Vec::new();
        }
        // Time without a pending period: a throttle that began before the
        // trace did; one slice, counting no period.
        let periods = std::mem::take(&mut self.pending_periods);
        let slices = periods.max(1);
        let each = time / slices;
        (0..slices)
            .map(|i| {
                let end_ns = now_ns.saturating_sub((slices - 1 - i) * each);
                ThrottledSlice {
                    start_ns: end_ns.saturating_sub(each),
                    end_ns,
                    periods: u64::from(i < periods),
                    throttled_ns: each,
                    previous_reading_ns,
                }
            })
            .collect()
    }
}

pub fn run(args: &TraceArgs) -> anyhow::Result<i32> {
    let session = Session::open("goscope trace", args.target.clone())?;
    let (target, stop, runtime) = (&session.target, &session.stop, &session.runtime);
    let pid = target.pid;
    let context = || format!("pid {pid}");
    let (layout, bias, memory) = (&*runtime.layout, runtime.bias, &runtime.memory);
    let g = &layout.globals;
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
        g_goid_offset: o.goroutine.as_ref().map_or(0, |g| g.goid),
    };
    let origin = monotonic_ns();
    let mut out = TraceWriter::create(&args.output, args.max_events_per_sec, origin, pid)?;

    // The GC-cycle probe: one hit per cycle, governed like doctor's probes.
    let budget = session.others.share(args.overhead_budget.percent());
    let probe = (|| -> anyhow::Result<(ProbeSession, Governor)> {
        let point = probe_points::resolve(&target.binary, GC_CYCLE_END).with_context(context)?;
        let mut session = ProbeSession::load(pid, Some(&addresses))?;
        let costs = calibrate::costs(&mut session).context("calibrating probe costs")?;
        session.attach(GC_CYCLE_PROGRAM, &point, None, &target.exe_handle)?;
        let governor = Governor::detached(budget, costs.hit_ns, target.cpu_time_ns()?)
            .with_window(Duration::from_secs_f64(args.duration))
            .with_link_costs(costs.links(1))
            .attached_from_start();
        Ok((session, governor))
    })()
    .map_err(|e| target.explain_attach_failure(e));
    let (mut probe, probe_note) = match probe {
        Ok(probe) => (
            Some(probe),
            "GC-cycle probe at runtime.mProf_Flush (one hit per cycle)".to_string(),
        ),
        Err(e) => {
            eprintln!("goscope: GC-cycle probe unavailable ({e:#}); cycles are read from memory");
            (
                None,
                format!(
                    "GC-cycle probe unavailable ({e:#}); cycles read from memory every {} ms",
                    TICK.as_millis()
                ),
            )
        }
    };
    // The thread tracks: scheduler tracepoints, no trap in the target.
    let (mut thread_source, thread_note) = match ThreadSource::start(
        pid,
        budget,
        Duration::from_secs_f64(args.duration),
        target.cpu_time_ns()?,
    ) {
        Ok(source) => (
            Some(source),
            "each OS thread's scheduler state from the sched_switch and sched_wakeup tracepoints (bpf_ktime_get_ns)".to_string(),
        ),
        Err(e) => {
            eprintln!("goscope: no thread tracks ({e:#})");
            (None, format!("no thread tracks: {e:#}"))
        }
    };
    // Of the per-second cap: half for thread states (the busiest kind: a
    // few transitions per switch), an eighth each for assists and cgo
    // calls (both per-call probes, which the governor keeps to some
    // thousands a second), and the quarter left for GC cycles, counters
    // and throttling, which no other kind can then crowd out.
    let thread_cap = (args.max_events_per_sec / 2).max(1);
    let assist_cap = (args.max_events_per_sec / 8).max(1);
    let cgo_cap = (args.max_events_per_sec / 8).max(1);
    // Mark assists: per-call probes, attached from the start and governed.
    let (mut assists, assist_note) = GovernedLane::<AssistTracks>::start(
        target,
        &addresses,
        budget,
        Duration::from_secs_f64(args.duration),
        assist_cap,
        "mark assists from probes on runtime.gcAssistAlloc (entry and every RET), gcAssistAlloc1 and gcParkAssist, under the overhead governor: the closing event gives the fraction of the window they were attached",
    );
    // cgo calls: per-call probes like the assists', only for a cgo binary.
    let (mut cgo, cgo_note) = if target.binary.cgo() {
        GovernedLane::<CgoTracks>::start(
            target,
            &addresses,
            budget,
            Duration::from_secs_f64(args.duration),
            cgo_cap,
            "cgo calls from probes on runtime.cgocall (entry and every RET), one slice per call on the calling thread's `cgo calls` track, under the overhead governor: the closing event gives the fraction of the window they were attached",
        )
    } else {
        (
            GovernedLane::absent(cgo_cap),
            "the binary was built without cgo: no cgo call slices".to_string(),
        )
    };
    let numgc_address = addresses.numgc;
    let read_numgc = || {
        memory
            .read_u32(numgc_address)
            .with_context(|| format!("reading memstats.numgc of pid {pid}"))
    };
    let first_numgc = read_numgc()?;

    let cgroups = Cgroups::of(pid, std::path::Path::new(CGROUP_ROOT)).unwrap_or_default();
    let quota = cgroups.cpu_quota();
    let throttle_source = quota.and_then(|_| cgroups.cpu_stat()).map(|_| ());

    // Metadata: names, the clock, what each track comes from.
    let exe = crate::target::display_path(&target.exe);
    let go = crate::format::bounded(
        &target.binary.build.go_version_string,
        crate::format::MAX_SHOWN,
    );
    let meta = |name: &str, tid: u32, args: Value| json!({"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args});
    out.uncounted(&meta(
        "process_name",
        0,
        json!({"name": format!("pid {pid} {exe} ({go})")}),
    ))?;
    out.uncounted(&meta("thread_name", TID_GC, json!({"name": "GC cycles"})))?;
    out.uncounted(&meta(
        "thread_sort_index",
        TID_GC,
        json!({"sort_index": -2}),
    ))?;
    if throttle_source.is_some() {
        out.uncounted(&meta(
            "thread_name",
            TID_THROTTLE,
            json!({"name": format!("CFS throttled (cpu.stat every {} ms)", args.cgroup_interval)}),
        ))?;
        out.uncounted(&meta(
            "thread_sort_index",
            TID_THROTTLE,
            json!({"sort_index": -1}),
        ))?;
    }
    let throttle_note = match (quota, throttle_source) {
        (Some(q), Some(())) => format!(
            "CFS throttled periods from {}/cpu.stat polled every {} ms (a slice ends at most {} ms after the period did); quota {q:.2} CPUs",
            cgroups
                .cpu_dir()
                .map_or_else(String::new, |d| d.display().to_string()),
            args.cgroup_interval,
            args.cgroup_interval
        ),
        (Some(_), None) => {
            "CPU-limited cgroup without a readable cpu.stat: no throttling track".into()
        }
        (None, _) => "not in a CPU-limited cgroup: no throttling track".into(),
    };
    out.uncounted(&json!({
        "name": "goscope: trace started", "cat": "goscope", "ph": "i", "s": "p",
        "ts": micros(origin), "pid": pid, "tid": 0,
        "args": {
            "clock": "CLOCK_MONOTONIC (the Go runtime's nanotime, the kernel programs' bpf_ktime_get_ns); ts in microseconds",
            "first_gc_cycle": first_numgc + 1,
            "gc_cycles": probe_note,
            "counters": format!("heap live, heap goal, goroutines and goroutines created per second read from the runtime's memory every {} ms", args.interval),
            "throttling": throttle_note,
            "threads": thread_note,
            "mark_assists": assist_note,
            "cgo_calls": cgo_note,
            "cap_per_s": args.max_events_per_sec,
            "thread_slices_cap_per_s": thread_cap,
            "assist_slices_cap_per_s": assist_cap,
            "cgo_slices_cap_per_s": cgo_cap,
            "overhead_budget_percent": budget,
        },
    }))?;
    out.flush(origin)?;
    session.announce(&format!(
        "tracing to {} for {} s, Ctrl-C to stop",
        args.output.display(),
        args.duration
    ));

    let mut state = Tracing {
        pid,
        offsets: o,
        last_numgc: first_numgc,
        last_cycle_end: 0,
        cycles: 0,
        missed: 0,
        throttling: Throttling::default(),
        throttle_slices: 0,
        last_created: None,
        next_reading: 0,
        next_cgroup: 0,
        next_flush: origin + FLUSH_INTERVAL_NS,
        probe_detached_at: None,
        threads: None,
        threads_detached_at: None,
    };
    let mut detacher = Detacher::default();
    let interval_ns = args.interval * 1_000_000;
    let cgroup_ns = args.cgroup_interval * 1_000_000;
    let mut tick = |out: &mut TraceWriter,
                    probe: &mut Option<(ProbeSession, Governor)>,
                    thread_source: &mut Option<ThreadSource>,
                    assists: &mut GovernedLane<AssistTracks>,
                    cgo: &mut GovernedLane<CgoTracks>|
     -> anyhow::Result<()> {
        let now = monotonic_ns();
        let cycles_before = state.cycles;
        // Cycles: from the probe's ring buffer, else from memory.
        match probe {
            Some((session, _)) => {
                for event in drain(session)? {
                    state.probe_cycle(out, &event)?;
                }
            }
            None => {
                let numgc = read_numgc()?;
                if numgc != state.last_numgc {
                    let raw = memory
                        .read_vec(addresses.work, o.cycle.work_size as usize)
                        .context("reading runtime.work")?;
                    let ctl = memory
                        .read_vec(addresses.controller, o.gc.controller_size as usize)
                        .context("reading runtime.gcController")?;
                    state.memory_cycle(out, numgc, &raw, &ctl)?;
                }
            }
        }
        if let Some((session, governor)) = probe {
            if let Some(stats) = session.run_stats(GC_CYCLE_PROGRAM) {
                governor.record(stats.runs, stats.run_ns);
            }
            if governor.tick(target.cpu_time_ns()?, 0.0) == Action::Detach {
                let why = match governor.phase() {
                    Phase::Detached { reason } => reason.clone(),
                    _ => String::new(),
                };
                eprintln!(
                    "goscope: the GC-cycle probe would overspend the overhead budget ({}; {why}): detached, cycles are read from memory from now on",
                    crate::format::budget(budget)
                );
                // Dropping the session closes its links (off the loop);
                // what the ring holds is read first.
                if let Some((mut session, _)) = probe.take() {
                    for event in drain(&mut session)? {
                        state.probe_cycle(out, &event)?;
                    }
                    detacher.retire(session, Vec::new());
                }
                state.probe_detached_at = Some(now);
            }
        }
        let reserved = probe.as_ref().map_or(0.0, |(_, g)| g.claim_ns())
            + thread_source
                .as_ref()
                .map_or(0.0, |t| t.governor.claim_ns());
        assists.tick(
            out,
            &mut detacher,
            target.cpu_time_ns()?,
            reserved + cgo.claim_ns(),
            budget,
        )?;
        cgo.tick(
            out,
            &mut detacher,
            target.cpu_time_ns()?,
            reserved + assists.claim_ns(),
            budget,
        )?;
        if let Some(source) = thread_source {
            source.drain(out, thread_cap)?;
            source.record_cost();
            let reserved = probe.as_ref().map_or(0.0, |(_, g)| g.claim_ns())
                + assists.claim_ns()
                + cgo.claim_ns();
            if source.governor.tick(target.cpu_time_ns()?, reserved) == Action::Detach {
                let why = match source.governor.phase() {
                    Phase::Detached { reason } => reason.clone(),
                    _ => String::new(),
                };
                eprintln!(
                    "goscope: the thread-state tracepoints would overspend the overhead budget ({}; {why}): detached, thread tracks end here",
                    crate::format::budget(budget)
                );
                if let Some(mut source) = thread_source.take() {
                    source.drain(out, thread_cap)?;
                    source.tracks.close_all(out, thread_cap, monotonic_ns())?;
                    state.threads = Some(source.tracks.totals());
                    detacher.retire(source.session, Vec::new());
                }
                state.threads_detached_at = Some(now);
            }
        }
        if now >= state.next_reading {
            let threads = thread_source.as_ref().map(|t| t.tracks.totals().threads);
            let assist_count = assists.live_totals().map(|t| t.assists);
            let cgo_calls = cgo.live_totals().map(|t| t.calls);
            crate::live_status::set_detail(format!(
                "{} GC cycles{}{}{}{}{}{}{}",
                state.cycles,
                if probe.is_none() {
                    " (read from memory)"
                } else {
                    ""
                },
                threads.map_or_else(String::new, |n| format!(", {n} thread tracks")),
                assist_count.map_or_else(String::new, |n| format!(", {n} mark assists")),
                cgo_calls.map_or_else(String::new, |n| format!(", {n} cgo calls")),
                if state.threads_detached_at.is_some() {
                    "; thread tracks detached (budget)"
                } else {
                    ""
                },
                if assists.detached_at().is_some() {
                    "; assist probes detached (budget)"
                } else {
                    ""
                },
                if cgo.detached_at().is_some() {
                    "; cgo probes detached (budget)"
                } else {
                    ""
                },
            ));
            let snapshot = runtime.read()?;
            state.counters(out, monotonic_ns(), &snapshot)?;
            state.next_reading = now + interval_ns;
        }
        if throttle_source.is_some() && now >= state.next_cgroup {
            let began = monotonic_ns();
            if let Some(stat) = cgroups.cpu_stat() {
                let at = monotonic_ns();
                for slice in state.throttling.update(began, at, stat) {
                    let event = json!({
                        "name": "throttled", "cat": "cfs", "ph": "X",
                        "ts": micros(slice.start_ns), "dur": micros(slice.end_ns - slice.start_ns),
                        "pid": pid, "tid": TID_THROTTLE,
                        "args": {
                            "periods": slice.periods,
                            "throttled_ns": slice.throttled_ns,
                            "resolution_ms": args.cgroup_interval,
                            "unthrottled_after_us": micros(slice.previous_reading_ns),
                        },
                    });
                    if out.emit("throttle", slice.start_ns, &[event])? {
                        state.throttle_slices += 1;
                    }
                }
            }
            state.next_cgroup = now + cgroup_ns;
        }
        // A tick that wrote a cycle reaches the file at once (at most one
        // write per tick), so a trace cut short holds every cycle drained.
        if now >= state.next_flush || state.cycles != cycles_before {
            out.flush(now)?;
            state.next_flush = now + FLUSH_INTERVAL_NS;
        }
        Ok(())
    };
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        target,
        stop,
        Some(TICK),
        |_| {
            tick(
                &mut out,
                &mut probe,
                &mut thread_source,
                &mut assists,
                &mut cgo,
            )
        },
    );
    // An exiting process loses its address space (the exec sentinel reads
    // nothing) a moment before its pidfd says it exited: a window that
    // ended "exec'd" is looked at again for that moment.
    if window.end == window::WindowEnd::TargetExecd {
        let deadline = std::time::Instant::now() + EXIT_SETTLE;
        while std::time::Instant::now() < deadline {
            if target.liveness() == crate::target::Liveness::Exited {
                window.ended(crate::target::Liveness::Exited);
                window.execd = None;
                break;
            }
            std::thread::sleep(TICK);
        }
    }
    // Cycles that completed before the end are still in the ring buffer
    // (after an exec, what is there may be the new program's: dropped).
    if window.error.is_none()
        && window.end != window::WindowEnd::TargetExecd
        && let Some((session, _)) = probe.as_mut()
    {
        match drain(session) {
            Ok(events) => {
                for event in events {
                    state.probe_cycle(&mut out, &event)?;
                }
            }
            Err(e) if target.is_alive() => window.error = Some(e),
            Err(_) => {}
        }
    }
    // What the per-call rings still hold, unless the window failed or the
    // target exec'd.
    let drain_rings = window.error.is_none() && window.end != window::WindowEnd::TargetExecd;
    if drain_rings
        && let Err(e) = assists.drain(&mut out)
        && target.is_alive()
    {
        window.error = Some(e);
    }
    assists.retire(&mut detacher);
    if drain_rings
        && window.error.is_none()
        && let Err(e) = cgo.drain(&mut out)
        && target.is_alive()
    {
        window.error = Some(e);
    }
    cgo.retire(&mut detacher);
    if let Some(mut source) = thread_source.take() {
        let drained = if window.error.is_none() && window.end != window::WindowEnd::TargetExecd {
            source.drain(&mut out, thread_cap)
        } else {
            Ok(())
        };
        source
            .tracks
            .close_all(&mut out, thread_cap, monotonic_ns())?;
        state.threads = Some(source.tracks.totals());
        detacher.retire(source.session, Vec::new());
        if let Err(e) = drained
            && target.is_alive()
            && window.error.is_none()
        {
            window.error = Some(e);
        }
    }
    let end = monotonic_ns();
    let dropped_by_kernel = probe.as_ref().map_or(0, |(s, _)| {
        crate::report::overhead::DroppedEvents::read(s).ring_buffer
    });
    let sampled = probe.as_ref().map(|(_, g)| g.sampled_fraction());
    let closing = json!({
        "name": "goscope: trace ended", "cat": "goscope", "ph": "i", "s": "p",
        "ts": micros(end), "pid": pid, "tid": 0,
        "args": {
            "why": format!("{:?}", window.end),
            "elapsed_s": window.elapsed.as_secs_f64(),
            "gc_cycles": state.cycles,
            "gc_cycles_missed": state.missed,
            "gc_cycle_records_dropped_by_kernel": dropped_by_kernel,
            "gc_probe_attached_fraction": sampled,
            "gc_probe_detached_at_us": state.probe_detached_at.map(micros),
            "throttled_slices": state.throttle_slices,
            "threads": state.threads.map(|t| json!({
                "threads": t.threads,
                "state_slices": t.slices,
                "state_slices_dropped_over_cap": t.dropped_slices,
                "involuntary_switches": t.involuntary_switches,
                "transitions_ignored": t.ignored,
            })),
            "threads_detached_at_us": state.threads_detached_at.map(micros),
            "mark_assists": assists.seen().map(|(t, governor)| json!({
                "assists": t.assists,
                "parked": t.parked,
                "slices_dropped_over_cap": t.dropped_over_cap,
                "goroutine_tracks": t.goroutine_tracks,
                "probes_attached_fraction": governor.sampled_fraction(),
            })),
            "mark_assists_detached_at_us": assists.detached_at().map(micros),
            "cgo_calls": cgo.seen().map(|(t, governor)| json!({
                "calls": t.calls,
                "slices_dropped_over_cap": t.dropped_over_cap,
                "calls_of_untracked_threads": t.untracked,
                "thread_tracks": t.thread_tracks,
                "probes_attached_fraction": governor.sampled_fraction(),
            })),
            "cgo_calls_detached_at_us": cgo.detached_at().map(micros),
        },
    });
    let totals = out.finish(closing)?;
    detacher.finish();
    if let Some(e) = window.error.take() {
        return Err(e);
    }
    eprintln!(
        "goscope: wrote {} ({} events, {} GC cycles{}{}, {} throttled slices) in {:.1} s",
        args.output.display(),
        totals.written,
        state.cycles,
        if state.missed > 0 {
            format!(", {} cycles missed between memory reads", state.missed)
        } else {
            String::new()
        },
        if totals.dropped_total() > 0 {
            format!(
                ", {} events dropped over the cap of {}/s",
                totals.dropped_total(),
                args.max_events_per_sec
            )
        } else {
            String::new()
        },
        state.throttle_slices,
        window.elapsed.as_secs_f64()
    );
    Ok(window.announce_end(
        target,
        "the trace covers what was observed until then and is closed",
    ))
}

/// The ring buffer's finished cycles.
fn drain(session: &mut ProbeSession) -> anyhow::Result<Vec<GcCycleEvent>> {
    session.drain_ring("GC_EVENTS", usize::MAX)
}

/// What the window has written so far, and its deadlines.
struct Tracing<'a> {
    pid: u32,
    offsets: &'a RuntimeOffsets,
    last_numgc: u32,
    last_cycle_end: u64,
    cycles: u64,
    missed: u64,
    throttling: Throttling,
    throttle_slices: u64,
    last_created: Option<(u64, u64)>,
    next_reading: u64,
    next_cgroup: u64,
    next_flush: u64,
    probe_detached_at: Option<u64>,
    threads: Option<crate::trace_threads::ThreadTotals>,
    threads_detached_at: Option<u64>,
}

impl Tracing<'_> {
    fn write_cycle(
        &mut self,
        out: &mut TraceWriter,
        cycle: &Cycle,
        source: &str,
    ) -> anyhow::Result<()> {
        self.last_cycle_end = cycle.end;
        self.cycles += 1;
        out.emit("gc", cycle.sweep_term, &cycle.events(self.pid, source))?;
        Ok(())
    }

    fn probe_cycle(&mut self, out: &mut TraceWriter, event: &GcCycleEvent) -> anyhow::Result<()> {
        // mProf_Flush may run outside GC; only a new cycle counts.
        if event.read_errors != 0 || event.numgc <= self.last_numgc {
            return Ok(());
        }
        self.missed += u64::from(event.numgc - self.last_numgc - 1);
        self.last_numgc = event.numgc;
        if let Some(cycle) =
            Cycle::decode(event.numgc, &event.work, &event.controller, self.offsets)
        {
            self.write_cycle(out, &cycle, "probe")?;
        } else {
            self.missed += 1;
        }
        Ok(())
    }

    /// numgc moved since the last tick: the cycle in runtime.work is the
    /// newest finished one when its times are ordered and new.
    fn memory_cycle(
        &mut self,
        out: &mut TraceWriter,
        numgc: u32,
        work: &[u8],
        ctl: &[u8],
    ) -> anyhow::Result<()> {
        let moved = numgc.wrapping_sub(self.last_numgc);
        self.last_numgc = numgc;
        match Cycle::decode(numgc, work, ctl, self.offsets) {
            Some(cycle) if cycle.end > self.last_cycle_end => {
                self.missed += u64::from(moved - 1);
                self.write_cycle(out, &cycle, "memory")
            }
            _ => {
                self.missed += u64::from(moved);
                Ok(())
            }
        }
    }

    fn counters(
        &mut self,
        out: &mut TraceWriter,
        at: u64,
        s: &RuntimeSnapshot,
    ) -> anyhow::Result<()> {
        let counter = |name: &str, key: &str, value: Value| json!({"name": name, "cat": "runtime", "ph": "C", "ts": micros(at), "pid": self.pid, "tid": 0, "args": {key: value}});
        let mut events = vec![
            counter("heap live", "bytes", json!(s.heap_live)),
            counter("goroutines", "count", json!(s.goroutines_user)),
        ];
        if let Some(goal) = s.heap_goal {
            events.push(counter("heap goal", "bytes", json!(goal)));
        }
        if let Some((then, created)) = self.last_created
            && at > then
        {
            let rate =
                s.goroutines_created.saturating_sub(created) as f64 * 1e9 / (at - then) as f64;
            events.push(counter(
                "goroutines created",
                "per_s",
                json!((rate * 10.0).round() / 10.0),
            ));
        }
        self.last_created = Some((at, s.goroutines_created));
        out.emit("counter", at, &events)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(throttled_periods: u64, throttled_ns: u64) -> CpuStat {
        CpuStat {
            periods: 0,
            throttled_periods,
            throttled_ns,
        }
    }

    #[test]
    fn throttled_periods_wait_for_their_time() {
        const S: u64 = 1_000_000_000;
        let mut t = Throttling::default();
        assert!(t.update(S - 100, S, stat(5, 1000)).is_empty());
        // A period throttles: no time yet.
        assert!(
            t.update(S + 9_999_900, S + 10_000_000, stat(6, 1000))
                .is_empty()
        );
        // Its time comes: one slice, ending at the reading, lasting it.
        let slices = t.update(S + 59_999_900, S + 60_000_000, stat(6, 1000 + 40_000_000));
        assert_eq!(
            slices,
            vec![ThrottledSlice {
                start_ns: S + 20_000_000,
                end_ns: S + 60_000_000,
                periods: 1,
                throttled_ns: 40_000_000,
                previous_reading_ns: S + 9_999_900,
            }]
        );
        // Two periods in one interval: two slices, back to back, summing it.
        let slices = t.update(
            S + 69_999_900,
            S + 70_000_000,
            stat(8, 1000 + 40_000_000 + 6_000_000),
        );
        assert_eq!(slices.len(), 2);
        assert_eq!(
            slices.iter().map(|s| s.throttled_ns).sum::<u64>(),
            6_000_000
        );
        assert_eq!(slices.iter().map(|s| s.periods).sum::<u64>(), 2);
        assert_eq!(slices[1].end_ns, S + 70_000_000);
        assert_eq!(slices[0].end_ns, slices[1].start_ns);
        assert!(
            slices
                .iter()
                .all(|s| s.previous_reading_ns == S + 59_999_900)
        );
    }
}

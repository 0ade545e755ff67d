//! The doctor report: window deltas computed from two samples, each figure
//! meaning what its runtime/metrics namesake means.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    table,
    verdicts::{self, Verdict},
};

use crate::{
    alloc_sites::{AllocSite, AllocSites, LiveSite, SitesSource},
    attachment::Sample,
    cgroup::{Cgroups, CpuStat},
    cpu::CpuSplit,
    probe_points::ProbePoint,
    probes::cgo::{CgoLatency, CgoSite},
    runtime::{
        GlobalsSource, RuntimeLayout,
        goroutines::{CreationSite, CreationSites, CreationSource, LiveCreationSite},
        histogram::Percentiles,
        layout::LayoutSource,
    },
    target::TargetProcess,
    window::WindowEnd,
};

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub target: TargetSummary,
    pub window_s: f64,
    pub ended_by: WindowEnd,
    pub goroutines: GoroutineFigures,
    pub alloc: AllocFigures,
    pub gc: GcFigures,
    pub sched: SchedFigures,
    pub cgo: CgoFigures,
    pub cfs: CfsFigures,
    /// Runtime versus application CPU from the sampler (null if refused).
    pub cpu: Option<CpuSplit>,
    pub process: ProcessFigures,
    pub verdicts: Vec<Verdict>,
    /// What goscope estimates it cost the target over the window.
    pub overhead: super::overhead::OverheadFigures,
    /// Every figure of the figure table over the window, by key
    /// (`report::table`).
    pub figures: BTreeMap<&'static str, table::FigureValue>,
    /// Where each figure came from (shown with --verbose).
    pub sources: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct TargetSummary {
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
}

impl TargetSummary {
    /// The pinned target's summary (names escaped for display).
    pub fn of(target: &TargetProcess) -> Self {
        Self {
            pid: target.pid,
            exe: target.exe.display().to_string(),
            go_version: target.binary.build.go_version_string.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct GoroutineFigures {
    /// Goroutines created in the window (/sched/goroutines-created).
    pub created: u64,
    pub created_per_s: f64,
    /// Live at the end, as runtime.NumGoroutine counts them.
    pub live: i64,
    /// Live at the end including system goroutines (/sched/goroutines in
    /// Go 1.26+).
    pub live_with_system: i64,
    pub live_at_start: i64,
    /// Which `go` statements created the window's goroutines, largest
    /// first: `function` holding the statement, its `position`
    /// (file:line), `per_s` and `share` (the runtime's exact created count
    /// shared among the sites), `created_sampled` (goroutines of the site
    /// observed).
    pub creation_sites: Vec<CreationSite>,
    /// Where the sites came from: `goroutine_table` (runtime.allgs read
    /// from memory, g.gopc; no probe) or `newproc_probe`; null: none.
    pub creation_sites_source: Option<CreationSource>,
    /// Fraction of the window the source observed: 1 for the goroutine
    /// table (read throughout the window), the fraction of the window the
    /// probe was attached for `newproc_probe`; null: no source.
    pub creation_sites_sampled_fraction: Option<f64>,
    /// Goroutine table: the fraction of the window's created goroutines
    /// seen in the table (the rest lived and died between two readings
    /// with their g reused, and were shared among the sites seen dying);
    /// null when none were created.
    pub creation_sites_covered_fraction: Option<f64>,
    /// Readings of the goroutine table in the window.
    pub creation_sites_readings: Option<u64>,
    /// Groups (creation site, wait reason, blocking frame) that kept
    /// growing while their goroutines stayed parked, from goroutine dumps
    /// taken through the window (null: not watched).
    pub leak_suspects: Option<Vec<crate::leak_watch::GroupTrend>>,
    /// Goroutine dumps behind `leak_suspects`.
    pub leak_dumps: Option<usize>,
    /// Readings of the table that failed in the window (a race with the
    /// runtime or a corrupt table; the readings around them cover the
    /// interval) and the last reason (null when none failed).
    pub creation_sites_failed_readings: Option<u64>,
    pub creation_sites_last_error: Option<String>,
    /// Why there are no creation sites ("skipped: ..."); null when there
    /// are.
    pub creation_sites_skipped: Option<String>,
    /// Live goroutines (system goroutines left out, as runtime.NumGoroutine
    /// does) by the `go` statement that created them, at the window's end:
    /// `function`, `position`, `live`. Exact at that reading.
    pub live_by_creation_site: Vec<LiveCreationSite>,
    /// Why `live_by_creation_site` is empty ("skipped: ..."), null when
    /// it was read.
    pub live_by_creation_site_skipped: Option<String>,
    /// Stack sizes (g.stack.hi - g.stack.lo) of the goroutines alive at
    /// the window's readings of the goroutine table; null without
    /// readings.
    pub stacks: Option<StackFigures>,
}

/// How large goroutine stacks are, from the goroutine table: every live
/// goroutine at every reading in the window counts once per reading.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StackFigures {
    pub counted: u64,
    pub p50_bytes: u64,
    pub p99_bytes: u64,
    pub max_bytes: u64,
}

impl StackFigures {
    pub fn of(sizes: &crate::runtime::goroutines::StackSizes) -> Option<Self> {
        Some(Self {
            counted: sizes.total(),
            p50_bytes: sizes.quantile_bytes(0.5)?,
            p99_bytes: sizes.quantile_bytes(0.99)?,
            max_bytes: sizes.max_bytes()?,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct AllocFigures {
    /// /gc/heap/allocs:objects over the window (tiny objects excluded).
    pub objects: u64,
    /// /gc/heap/allocs:bytes over the window (size-class rounded).
    pub bytes: u64,
    /// /gc/heap/tiny/allocs:objects over the window.
    pub tiny_objects: u64,
    pub objects_per_s: f64,
    pub bytes_per_s: f64,
    /// One entry per size class, then large objects (size null).
    pub by_size: Vec<SizeClassFigures>,
    /// Top allocation sites by bytes (the first frame outside the
    /// runtime): from the runtime's heap profile when it keeps one (its
    /// scaled samples over the window), else span refills and large
    /// allocations sampled by probes, each size class's exact bytes shared
    /// among them.
    pub sites: Vec<AllocSite>,
    /// Where the sites came from (null: sites not collected).
    pub sites_source: Option<SitesSource>,
    /// The heap profile's sampling rate, runtime.MemProfileRate (null for
    /// probes).
    pub sites_sampling_rate_bytes: Option<u64>,
    /// Samples behind the sites: span refills and large objects (probes),
    /// sampled allocations (heap profile).
    pub sites_samples: Option<u64>,
    /// Fraction of the window the probes were attached (null: not probed).
    pub sites_sampled_fraction: Option<f64>,
    /// Share of the bytes in size classes no sample covered (probes).
    pub sites_unattributed_share: Option<f64>,
    /// Why the source gave no sites (null when it did).
    pub sites_skipped: Option<String>,
    /// Top live-heap sites at the window's end, as of the last GC cycle
    /// the runtime published (heap profile only; empty otherwise).
    pub live_sites: Vec<LiveSite>,
    /// Allocation CPU by allocating caller, from the CPU sampler (no
    /// trap, every window): shares of allocation CPU, not bytes. The
    /// answer when neither the heap profile nor the probes give sites.
    pub cpu_sites: Vec<crate::cpu::CpuSite>,
    /// Allocation CPU samples behind `cpu_sites` (all sites, not only
    /// the top ones listed).
    pub cpu_sites_samples: u64,
}

#[derive(Debug, Serialize)]
pub struct SizeClassFigures {
    pub size_class: usize,
    /// Object size of the class in bytes; null for large objects.
    pub size: Option<u64>,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct GcFigures {
    /// Completed GC cycles in the window (/gc/cycles/total).
    pub cycles: u64,
    pub cycles_per_s: f64,
    /// The same count from the uprobe on runtime.gcMarkTermination.
    pub cycles_probe: Option<u64>,
    /// GOGC; null when GC is off.
    pub gogc: Option<i32>,
    /// GOMEMLIMIT; null when not set (math.MaxInt64).
    pub memory_limit_bytes: Option<i64>,
    /// /gc/heap/live:bytes at the end (heap marked live by the last GC).
    pub heap_live_bytes: u64,
    /// /gc/heap/goal:bytes at the end.
    pub heap_goal_bytes: Option<u64>,
    pub goal_set_by_memory_limit: bool,
    /// /cpu/classes/gc/mark/assist:cpu-seconds over the window, in ns.
    pub assist_cpu_ns: Option<i64>,
    /// /cpu/classes/gc/total:cpu-seconds over the window, in ns.
    pub gc_cpu_ns: Option<i64>,
    /// GC CPU as a fraction of the CPU the process used.
    pub gc_cpu_share: Option<f64>,
    pub assist_cpu_share: Option<f64>,
    /// STW pauses in the window (/gc/pauses:seconds), ns.
    pub pause_ns: Option<Percentiles>,
    /// The container's (cgroup's) memory limit; null when none.
    pub container_memory_limit_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct SchedFigures {
    pub gomaxprocs: i32,
    pub ncpu: Option<i32>,
    /// OS threads at the end.
    pub threads: u64,
    /// Runnable-to-running latency in the window (/sched/latencies), ns.
    pub latency_ns: Option<Percentiles>,
    /// OS run-queue latency of the target's threads (wakeup or preemption
    /// to on-CPU), from sched tracepoints; ns.
    pub os_runq_latency_ns: Option<Percentiles>,
    /// Target threads switched out while runnable (R, R+).
    pub involuntary_switches: Option<u64>,
    pub threads_created: Option<u64>,
    pub threads_exited: Option<u64>,
    /// Ps and Ms over the readings since attach, and the judgement
    /// (null: neither P-bound nor M-bound, or too few readings).
    pub bound_figures: super::sched_bound::SchedBound,
    pub bound: Option<super::sched_bound::Bound>,
}

#[derive(Debug, Serialize)]
pub struct CgoFigures {
    /// /cgo/go-to-c-calls over the window.
    pub calls: u64,
    pub calls_per_s: f64,
    /// Latency of cgo calls timed by probes (ns).
    pub latency_ns: Option<Percentiles>,
    /// Fraction of the window the cgo probes were attached (governor).
    pub latency_sampled_fraction: Option<f64>,
    /// Call sites by total time (the `_Cfunc_` wrapper names the C function).
    pub sites: Vec<CgoSite>,
    /// CPU in C by call site from the CPU sampler (no trap, every window):
    /// `share` is here the share of cgo CPU.
    pub cpu_sites: Vec<crate::cpu::CpuSite>,
}

/// The cgroup's CPU bandwidth limit and CFS throttling in the window.
#[derive(Debug, Serialize)]
pub struct CfsFigures {
    /// Tightest CPU quota over the cgroup and its ancestors; null if none.
    pub quota_cpus: Option<f64>,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

#[derive(Debug, Serialize)]
pub struct ProcessFigures {
    /// User + system CPU time in the window.
    pub cpu_ns: u64,
    /// Average cores busy.
    pub cpu_cores: f64,
}

pub struct Inputs<'a> {
    pub overhead: super::overhead::OverheadFigures,
    pub target: TargetSummary,
    pub layout: &'a RuntimeLayout,
    pub class_sizes: &'a [u64],
    pub gc_point: &'a ProbePoint,
    pub cgroups: &'a Cgroups,
    pub thread_view: &'a crate::probes::Availability,
    pub cpu: (Option<CpuSplit>, &'a crate::probes::Availability),
    /// Allocation CPU by allocating caller, from the sampler.
    pub alloc_cpu_sites: Vec<crate::cpu::CpuSite>,
    /// CPU in C by Go call site, from the sampler.
    pub cgo_cpu_sites: Vec<crate::cpu::CpuSite>,
    pub cgo_latency: Option<(CgoLatency, f64)>,
    pub creation_sites: Option<CreationSites>,
    /// The sites and the fraction of the window their probes were
    /// attached (None: no probe, the heap profile).
    pub alloc_sites: Option<(AllocSites, Option<f64>)>,
    /// The scheduler readings since attach, summed up.
    pub sched_bound: super::sched_bound::SchedBound,
    /// Goroutine leak suspects and the dumps behind them (None: not
    /// watched).
    pub goroutine_leaks: Option<(Vec<crate::leak_watch::GroupTrend>, usize)>,
    pub first: &'a Sample,
    pub last: &'a Sample,
    pub ended_by: WindowEnd,
}

/// Allocation and live-heap sites kept in the report.
const TOP_SITES: usize = 10;

/// Goroutine creation sites (and live goroutines by site) kept.
const TOP_CREATION_SITES: usize = 10;

fn rate(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

pub fn build(inputs: Inputs<'_>) -> DoctorReport {
    let inputs = &inputs;
    let (a, b) = (&inputs.first.runtime, &inputs.last.runtime);
    let window_s = (inputs.last.at - inputs.first.at).as_secs_f64();

    let allocated = b.alloc.since(&a.alloc, inputs.class_sizes);
    let mut by_size: Vec<SizeClassFigures> = allocated
        .class_objects
        .iter()
        .zip(&allocated.class_bytes)
        .enumerate()
        .skip(1)
        .map(|(class, (&objects, &bytes))| SizeClassFigures {
            size_class: class,
            size: Some(inputs.class_sizes.get(class).copied().unwrap_or(0)),
            objects,
            bytes,
        })
        .collect();
    by_size.push(SizeClassFigures {
        size_class: 0,
        size: None,
        objects: allocated.large_objects,
        bytes: allocated.large_bytes,
    });
    let (objects, bytes) = allocated.totals();

    let cpu_ns = inputs.last.cpu_ns.saturating_sub(inputs.first.cpu_ns);
    let share = |ns: Option<i64>| {
        ns.filter(|_| cpu_ns > 0)
            .map(|ns| (ns.max(0) as f64 / cpu_ns as f64).min(1.0))
    };
    let delta_i64 = |x: Option<i64>, y: Option<i64>| Some(y? - x?);
    let assist_cpu_ns = delta_i64(a.gc_assist_cpu_ns, b.gc_assist_cpu_ns);
    let gc_cpu_ns = delta_i64(a.gc_total_cpu_ns, b.gc_total_cpu_ns);
    let cycles = u64::from(b.gc_cycles.wrapping_sub(a.gc_cycles));
    let gc = GcFigures {
        cycles,
        cycles_per_s: rate(cycles as f64, window_s),
        cycles_probe: inputs
            .last
            .gc_probe_hits
            .zip(inputs.first.gc_probe_hits)
            .map(|(end, start)| end - start),
        gogc: (b.gc_percent >= 0).then_some(b.gc_percent),
        memory_limit_bytes: b.memory_limit.filter(|&l| l != i64::MAX),
        heap_live_bytes: b.heap_marked,
        heap_goal_bytes: b.heap_goal,
        goal_set_by_memory_limit: b.goal_from_memory_limit,
        assist_cpu_ns,
        gc_cpu_ns,
        gc_cpu_share: share(gc_cpu_ns),
        assist_cpu_share: share(assist_cpu_ns),
        pause_ns: b
            .gc_pauses
            .as_ref()
            .zip(a.gc_pauses.as_ref())
            .and_then(|(end, start)| end.delta(start).percentiles()),
        container_memory_limit_bytes: inputs.cgroups.memory_limit(),
    };
    let cpu_stat = match (inputs.first.cpu_stat, inputs.last.cpu_stat) {
        (Some(a), Some(b)) => CpuStat {
            periods: b.periods.saturating_sub(a.periods),
            throttled_periods: b.throttled_periods.saturating_sub(a.throttled_periods),
            throttled_ns: b.throttled_ns.saturating_sub(a.throttled_ns),
        },
        _ => CpuStat::default(),
    };
    let kernel_threads = inputs
        .first
        .threads_kernel
        .as_ref()
        .zip(inputs.last.threads_kernel.as_ref());
    let goroutines_created = b.goroutines_created.saturating_sub(a.goroutines_created);
    let creation = inputs.creation_sites.as_ref();
    let cgo_calls = b.cgo_calls.saturating_sub(a.cgo_calls);
    let report_sources = sources(inputs);
    let alloc_sites = inputs.alloc_sites.as_ref().map(|(a, _)| a);
    let mut report = DoctorReport {
        target: TargetSummary {
            pid: inputs.target.pid,
            exe: inputs.target.exe.clone(),
            go_version: inputs.target.go_version.clone(),
        },
        window_s,
        ended_by: inputs.ended_by,
        goroutines: GoroutineFigures {
            created: goroutines_created,
            created_per_s: rate(goroutines_created as f64, window_s),
            live: b.goroutines_user,
            live_with_system: b.goroutines_all,
            live_at_start: a.goroutines_user,
            creation_sites: creation
                .map(|c| c.sites.iter().take(TOP_CREATION_SITES).cloned().collect())
                .unwrap_or_default(),
            creation_sites_source: creation.map(|c| c.source),
            creation_sites_sampled_fraction: creation
                .filter(|c| c.skipped.is_none())
                .map(|c| c.sampled_fraction),
            creation_sites_covered_fraction: creation.and_then(|c| c.covered_fraction),
            creation_sites_readings: creation.and_then(|c| c.readings),
            leak_suspects: inputs.goroutine_leaks.as_ref().map(|(s, _)| s.clone()),
            leak_dumps: inputs.goroutine_leaks.as_ref().map(|(_, n)| *n),
            creation_sites_failed_readings: creation.and_then(|c| c.failed_readings),
            creation_sites_last_error: creation.and_then(|c| c.last_error.clone()),
            creation_sites_skipped: creation.and_then(|c| c.skipped.clone()),
            live_by_creation_site: creation
                .map(|c| c.live.iter().take(TOP_CREATION_SITES).cloned().collect())
                .unwrap_or_default(),
            live_by_creation_site_skipped: creation.and_then(|c| c.live_skipped.clone()),
            stacks: creation
                .and_then(|c| c.stack_sizes.as_ref())
                .and_then(StackFigures::of),
        },
        alloc: AllocFigures {
            objects,
            bytes,
            tiny_objects: allocated.tiny_objects,
            objects_per_s: rate(objects as f64, window_s),
            bytes_per_s: rate(bytes as f64, window_s),
            by_size,
            sites: alloc_sites
                .map(|a| a.sites.iter().take(TOP_SITES).cloned().collect())
                .unwrap_or_default(),
            sites_source: alloc_sites.map(|a| a.source),
            sites_sampling_rate_bytes: alloc_sites.and_then(|a| a.sampling_rate_bytes),
            sites_samples: alloc_sites.map(|a| a.samples),
            sites_sampled_fraction: inputs.alloc_sites.as_ref().and_then(|(_, f)| *f),
            sites_unattributed_share: alloc_sites
                .filter(|a| a.source == SitesSource::SpanRefillProbes)
                .map(|a| a.unattributed_share),
            sites_skipped: alloc_sites.and_then(|a| a.skipped.clone()),
            live_sites: alloc_sites
                .and_then(|a| a.live_sites.as_ref())
                .map(|l| l.iter().take(TOP_SITES).cloned().collect())
                .unwrap_or_default(),
            cpu_sites: inputs
                .alloc_cpu_sites
                .iter()
                .take(TOP_SITES)
                .cloned()
                .collect(),
            cpu_sites_samples: inputs.alloc_cpu_sites.iter().map(|s| s.samples).sum(),
        },
        gc,
        sched: SchedFigures {
            gomaxprocs: b.gomaxprocs,
            ncpu: b.ncpu,
            threads: inputs.last.threads,
            latency_ns: b
                .sched_latency
                .as_ref()
                .zip(a.sched_latency.as_ref())
                .and_then(|(end, start)| end.delta(start).percentiles()),
            os_runq_latency_ns: kernel_threads.and_then(|(a, b)| b.runq_percentiles(a)),
            involuntary_switches: kernel_threads
                .map(|(a, b)| b.involuntary_switches - a.involuntary_switches),
            threads_created: kernel_threads.map(|(a, b)| b.created - a.created),
            threads_exited: kernel_threads.map(|(a, b)| b.exited - a.exited),
            bound_figures: inputs.sched_bound.clone(),
            bound: inputs.sched_bound.judge(),
        },
        cgo: CgoFigures {
            calls: cgo_calls,
            calls_per_s: rate(cgo_calls as f64, window_s),
            latency_ns: inputs.cgo_latency.as_ref().and_then(|(l, _)| l.latency_ns),
            latency_sampled_fraction: inputs.cgo_latency.as_ref().map(|(_, f)| *f),
            sites: inputs
                .cgo_latency
                .as_ref()
                .map(|(l, _)| l.sites.clone())
                .unwrap_or_default(),
            cpu_sites: inputs
                .cgo_cpu_sites
                .iter()
                .take(TOP_SITES)
                .cloned()
                .collect(),
        },
        cpu: inputs.cpu.0.clone(),
        cfs: CfsFigures {
            quota_cpus: inputs.cgroups.cpu_quota(),
            periods: cpu_stat.periods,
            throttled_periods: cpu_stat.throttled_periods,
            throttled_ns: cpu_stat.throttled_ns,
        },
        process: ProcessFigures {
            cpu_ns,
            cpu_cores: rate(cpu_ns as f64 / 1e9, window_s),
        },
        verdicts: Vec::new(),
        overhead: inputs.overhead.clone(),
        figures: table::window(
            &inputs.first.table_inputs(inputs.class_sizes),
            &inputs.last.table_inputs(inputs.class_sizes),
            window_s,
        ),
        sources: report_sources,
    };
    report.verdicts = verdicts::judge(&report);
    report
}

fn sources(inputs: &Inputs<'_>) -> BTreeMap<String, String> {
    let offsets = match inputs.layout.offsets_source {
        LayoutSource::Dwarf => "offsets from the binary's DWARF",
        LayoutSource::VersionTable => "offsets from goscope's table for this Go version",
    };
    let globals = match inputs.layout.globals_source {
        GlobalsSource::Symtab => "addresses from .symtab",
        GlobalsSource::CodeReferences => "addresses recovered from runtime code",
    };
    let layout = format!("{offsets}, {globals}");
    let memory = |what: &str| format!("target memory: {what} ({layout})");
    let p = inputs.gc_point;
    let mut s = BTreeMap::new();
    let mut add = |k: &str, v: String| {
        s.insert(k.to_string(), v);
    };
    add(
        "alloc.*",
        memory("runtime.memstats.heapStats, 3 generations summed"),
    );
    if let Some((sites, attached)) = &inputs.alloc_sites {
        let how = match sites.source {
            SitesSource::MemoryProfile => memory(&format!(
                "runtime.mbuckets, the runtime's heap profile ({}): the window's delta of the published cycles scaled as runtime/pprof does, no probe",
                sites.source_text(None)
            )),
            SitesSource::SpanRefillProbes => format!(
                "uprobes at runtime.(*mcache).refill and allocLarge ({}), each size class's exact bytes shared among the sampled stacks",
                sites.source_text(*attached)
            ),
        };
        add("alloc.sites, alloc.live_sites", how);
    }
    add("gc.cycles", memory("runtime.memstats.numgc"));
    add(
        "gc.cycles_probe",
        format!(
            "uprobe {} at {:#x} (entry +{}, {:?})",
            p.function,
            p.address,
            p.address - p.entry,
            p.placement
        ),
    );
    add(
        "gc.gogc, gc.memory_limit_bytes, gc.heap_*",
        memory("runtime.gcController"),
    );
    add(
        "gc.assist_cpu_ns, gc.gc_cpu_ns",
        memory("runtime.work.cpuStats + gcController (in-progress cycle)"),
    );
    let pauses = if inputs.layout.offsets.sched.stw_total_gc.is_some() {
        "runtime.sched.stwTotalTimeGC"
    } else {
        "runtime.memstats.gcPauseDist"
    };
    add("gc.pause_ns", memory(pauses));
    add(
        "goroutines.created",
        memory(
            if inputs.layout.offsets.sched.goroutines_created.is_some() {
                "runtime.sched.goroutinesCreated + Σ p.goroutinesCreated"
            } else {
                "runtime.sched.goidgen − goids still cached by Ps"
            },
        ),
    );
    add("goroutines.live", memory("allglen − free gs − system gs"));
    if let Some(c) = &inputs.creation_sites {
        add(
            "goroutines.creation_sites, goroutines.live_by_creation_site",
            match c.source {
                CreationSource::GoroutineTable => memory(
                    "runtime.allgs: g.gopc of the goroutines new since the previous reading (read every 10 ms to 1 s), the runtime's exact created count shared among them; live goroutines by g.gopc at the last reading",
                ),
                CreationSource::NewprocProbe => {
                    "uprobe after runtime.newproc's stack check (governed)".to_string()
                }
            },
        );
    }
    add("sched.latency_ns", memory("runtime.sched.timeToRun"));
    add("sched.gomaxprocs", memory("runtime.gomaxprocs"));
    add("sched.threads", "/proc/PID/status Threads".into());
    add(
        "cgo.calls",
        memory("runtime.ncgocall + Σ m.ncgocall over allm"),
    );
    add(
        "process.cpu_ns",
        "the process's kernel CPU clock (clock_getcpuclockid; ns, every thread)".into(),
    );
    add(
        "cpu.*",
        match inputs.cpu.1 {
            crate::probes::Availability::Available => "BPF sampler on a perf CPU-clock event (99 Hz per CPU), user stacks by frame pointers, symbolized from the binary".into(),
            crate::probes::Availability::Unavailable(why) => format!("unavailable: {why}"),
        },
    );
    add(
        "sched.os_runq_latency_ns, sched.involuntary_switches, sched.threads_*",
        match inputs.thread_view {
            crate::probes::Availability::Available => "tracepoints sched_switch, sched_wakeup(_new), sched_process_fork/exit (in-kernel aggregation)".into(),
            crate::probes::Availability::Unavailable(why) => format!("unavailable: {why}"),
        },
    );
    add(
        "cfs.*, gc.container_memory_limit_bytes",
        "the target's cgroup: cpu.max / cpu.cfs_quota_us (tightest ancestor), cpu.stat, memory.max / memory.limit_in_bytes".into(),
    );
    s
}

//! What goscope estimates it cost the target over a window, by source, next
//! to the budget: the report carries its own overhead. Probe costs are the
//! kernel's run statistics of each program (every run counted) plus the
//! calibrated trap per uprobe hit; the sampler's and the tracepoints' are
//! their programs' run time plus, for the sampler, the timer interrupt each
//! sample takes.

use serde::Serialize;

use crate::probes::{ProbeSession, governor::Phase};

/// Programs of the CPU sampler and of the scheduler tracepoints.
const SAMPLER_PROGRAM: &str = "cpu_sample";
const TRACEPOINT_PROGRAMS: &[&str] = &[
    "thread_fork",
    "thread_exit",
    "thread_wakeup",
    "thread_switch",
];
const GC_COUNTING_PROGRAM: &str = crate::probes::COUNTING_PROGRAM;
/// The timer interrupt and perf bookkeeping of one CPU-clock sample, beyond
/// the program (an estimate for a virtual machine; bare metal is cheaper).
const SAMPLE_INTERRUPT_NS: f64 = 2_000.0;

/// goscope's cost to the target over the window, in ns and as a share.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OverheadFigures {
    /// --overhead-budget (null when off).
    pub budget_percent: Option<f64>,
    /// Everything below as a share of the target's CPU over the window.
    pub estimated_percent: f64,
    pub by_source: BySource,
    /// What the governor did with each per-call probe set, by set
    /// (`alloc`, `cgo`, `spawn`; empty: none asked for).
    pub governor: std::collections::BTreeMap<&'static str, Phase>,
    /// Events the kernel programs dropped since attach.
    pub dropped_events: DroppedEvents,
    /// False when the kernel kept no run statistics (BPF_ENABLE_STATS
    /// refused): probe costs are then from the programs' own counters.
    pub kernel_run_statistics: bool,
}

/// Events the kernel programs could not record (cumulative since attach):
/// figures built from them undercount by as much.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DroppedEvents {
    /// Samples kept without their user stack (stack map full, walk failed).
    pub stacks: u64,
    /// Inserts refused by a full map (samples, sites, start times, threads).
    pub map_full: u64,
    /// GC cycle records lost to a full ring buffer.
    pub ring_buffer: u64,
}

impl DroppedEvents {
    pub fn read(probes: &ProbeSession) -> Self {
        use observer_common::CounterSlot;
        let get = |slot| probes.counter(slot).unwrap_or(0);
        Self {
            stacks: get(CounterSlot::DroppedStacks),
            map_full: get(CounterSlot::DroppedMapFull),
            ring_buffer: get(CounterSlot::DroppedRingBuffer),
        }
    }

    pub fn any(&self) -> bool {
        self.stacks + self.map_full + self.ring_buffer > 0
    }
}

/// Estimated target CPU per source, ns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BySource {
    /// The CPU sampler (perf CPU-clock events with a BPF stack walk).
    pub sampler_ns: f64,
    /// Scheduler tracepoints: their run time on the whole host, scaled by
    /// the target's share of the context switches they saw (the program
    /// runs in the switching task's context).
    pub tracepoints_ns: f64,
    /// The once-per-GC-cycle probe.
    pub gc_probe_ns: f64,
    /// Per-call probes' hits.
    pub probes_ns: f64,
    /// Attaching and detaching per-call probes.
    pub attach_detach_ns: f64,
}

/// Inputs from the session and the governor.
pub struct Spending {
    pub budget_percent: f64,
    /// Calibrated trap per uprobe hit (0 when not calibrated).
    pub hit_ns: f64,
    /// The target's threads' switches onto a CPU the tracepoints counted
    /// (cumulative), to scale the host-wide tracepoint time by.
    pub target_switches: Option<u64>,
    /// The governor's total and attach/detach part, and each set's phase.
    pub governed: Option<GovernedSpending>,
}

/// What the per-call probe sets spent: total ns, the attach/detach part,
/// and each set's phase by name.
pub type GovernedSpending = (f64, f64, Vec<(&'static str, Phase)>);

impl OverheadFigures {
    /// The window's overhead, from the programs' cumulative statistics
    /// (they start with the session, so they cover the window and attach).
    pub fn estimate(probes: &ProbeSession, spending: Spending, target_cpu_ns: u64) -> Self {
        let stats = |name: &str| probes.run_stats(name).unwrap_or_default();
        let sampler = stats(SAMPLER_PROGRAM);
        let sampler_ns = sampler.run_ns as f64 + sampler.runs as f64 * SAMPLE_INTERRUPT_NS;
        let host_tracepoints_ns: f64 = TRACEPOINT_PROGRAMS
            .iter()
            .map(|p| stats(p).run_ns as f64)
            .sum();
        let switch_runs = stats("thread_switch").runs;
        let target_share = match spending.target_switches {
            Some(n) if switch_runs > 0 => (n as f64 / switch_runs as f64).min(1.0),
            _ => 1.0,
        };
        let tracepoints_ns = host_tracepoints_ns * target_share;
        let gc = stats(GC_COUNTING_PROGRAM);
        let gc_probe_ns = gc.run_ns as f64 + gc.runs as f64 * spending.hit_ns;
        let (probes_ns, attach_detach_ns, governor) = match spending.governed {
            Some((total, links, phases)) => (total - links, links, phases.into_iter().collect()),
            None => (0.0, 0.0, Default::default()),
        };
        let by_source = BySource {
            sampler_ns,
            tracepoints_ns,
            gc_probe_ns,
            probes_ns,
            attach_detach_ns,
        };
        let total = sampler_ns + tracepoints_ns + gc_probe_ns + probes_ns + attach_detach_ns;
        Self {
            budget_percent: spending
                .budget_percent
                .is_finite()
                .then_some(spending.budget_percent),
            estimated_percent: if target_cpu_ns > 0 {
                100.0 * total / target_cpu_ns as f64
            } else {
                0.0
            },
            by_source,
            governor,
            dropped_events: DroppedEvents::read(probes),
            kernel_run_statistics: probes.has_run_stats(),
        }
    }
}

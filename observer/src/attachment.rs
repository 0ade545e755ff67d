//! The attachment behind doctor and top: the pinned target's runtime read
//! every second, the GC-cycle probe, the scheduler tracepoints, the CPU
//! sampler and the governed per-call probe sets, for one window; and the
//! window report built from two of its readings.

use std::{cell::RefCell, time::Duration};

use anyhow::Context as _;
use observer_common::CounterSlot;

use crate::{
    cgroup::{Cgroups, CpuStat},
    cpu::{self, CpuSamples},
    probe_points::{self, GC_MARK_TERMINATION, ProbePoint},
    probes::{
        ProbeSession,
        alloc::{AllocProbe, AllocSamples, ExactAllocation},
        calibrate,
        cgo::{CgoLatency, CgoProbes},
        governed::{Governed, ProbeSet},
        governor::Governor,
        spawn::{self, SpawnProbe},
        threads::{self, ThreadCounters, TracepointOffsets},
    },
    report::{DoctorReport, figures},
    runtime::{RuntimeSnapshot, reader::RuntimeReader},
    session::Session,
    symbols::{SourceSymbolizer, Symbolizer},
    target::TargetProcess,
    window::WindowEnd,
};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One reading of everything doctor tracks.
#[derive(Clone)]
pub struct Sample {
    pub at: Duration,
    pub runtime: RuntimeSnapshot,
    pub cpu_ns: u64,
    pub threads: u64,
    pub gc_probe_hits: Option<u64>,
    pub cpu_stat: Option<CpuStat>,
    /// Kernel-side thread figures (None when the tracepoints are refused).
    pub threads_kernel: Option<ThreadCounters>,
}

/// What doctor read and attached before the window.
pub struct Attachment {
    target: TargetProcess,
    cgroups: Cgroups,
    runtime: RuntimeReader,
    gc_point: ProbePoint,
    probes: RefCell<ProbeSession>,
    /// High-frequency probe sets under the overhead governor.
    governed: RefCell<Option<Governed>>,
    /// Whether the scheduler tracepoints attached, or why not.
    thread_view: Result<(), String>,
    /// Whether the CPU sampler attached, or why not.
    cpu_sampler: Result<(), String>,
    symbolizer: Symbolizer,
    source_symbols: SourceSymbolizer,
}

impl Sample {
    /// This reading as the figure table reads it.
    pub fn table_inputs<'a>(&'a self, class_sizes: &'a [u64]) -> crate::report::table::Inputs<'a> {
        crate::report::table::Inputs {
            runtime: &self.runtime,
            class_sizes,
            cpu_ns: self.cpu_ns,
            threads: self.threads,
            cpu_stat: self.cpu_stat,
        }
    }
}

impl Attachment {
    pub fn target(&self) -> &TargetProcess {
        &self.target
    }

    /// Object size per size class.
    pub fn class_sizes(&self) -> &[u64] {
        &self.runtime.class_sizes
    }

    /// True when per-call probe sets run under the governor (it then needs
    /// `govern` every `governor::POLL`).
    pub fn is_governed(&self) -> bool {
        self.governed.borrow().is_some()
    }

    /// Feeds the governor the hit rates the runtime's counters predict
    /// between two readings.
    pub fn predict(&self, previous: &Sample, now: &Sample) {
        if let Some(g) = self.governed.borrow_mut().as_mut() {
            g.predict(
                &previous.runtime,
                &now.runtime,
                &self.runtime.class_sizes,
                (now.at - previous.at).as_secs_f64(),
            );
        }
    }

    pub fn sample(&self, at: Duration) -> anyhow::Result<Sample> {
        let runtime = self.runtime.read()?;
        Ok(Sample {
            at,
            runtime,
            cpu_ns: self.target.cpu_time_ns()?,
            threads: self.target.thread_count()?,
            gc_probe_hits: Some(self.probes.borrow().counter(CounterSlot::GcCycles)?),
            cpu_stat: self.cgroups.cpu_stat(),
            threads_kernel: match self.thread_view {
                Ok(()) => Some(ThreadCounters::read(&self.probes.borrow())?),
                Err(_) => None,
            },
        })
    }
}

/// Attaches to a session's target: the GC probe, the tracepoints and the
/// sampler (each optional where the kernel refuses it, saying why), and
/// with `sites` the per-call probe sets under one overhead governor.
pub fn attach(session: Session, budget: f64, sites: bool) -> anyhow::Result<Attachment> {
    let Session {
        target, runtime, ..
    } = session;
    let context = || format!("pid {}", target.pid);
    let bias = runtime.bias;
    let gc_point =
        probe_points::resolve(&target.binary, GC_MARK_TERMINATION).with_context(context)?;
    let tracepoints = TracepointOffsets::from_tracefs();
    let mut probes = ProbeSession::load_with(
        target.pid,
        None,
        tracepoints
            .as_ref()
            .unwrap_or(&TracepointOffsets::default()),
    )
    .and_then(|mut session| {
        session.attach_counter(&gc_point, CounterSlot::GcCycles, &target.exe_handle)?;
        Ok(session)
    })
    .map_err(|e| target.explain_attach_failure(e))?;
    // Feature-probe: the thread view is optional; say why it is missing.
    let thread_view = tracepoints
        .and_then(|_| threads::attach(&mut probes, target.pid))
        .map_err(|e| format!("{e:#}"));
    let cpu_sampler = cpu::attach(&mut probes, cpu::DEFAULT_HZ).map_err(|e| format!("{e:#}"));
    let pid = std::num::NonZeroU32::new(target.pid).context("pid 0")?;
    let mut sets = Vec::new();
    if sites {
        sets.push(ProbeSet::Alloc(
            AllocProbe::resolve(&target.binary).with_context(context)?,
        ));
        sets.push(ProbeSet::Spawn(
            SpawnProbe::resolve(&target.binary).with_context(context)?,
        ));
        if target.binary.cgo() {
            sets.push(ProbeSet::Cgo(
                CgoProbes::resolve(&target.binary).with_context(context)?,
            ));
        }
    }
    let cost = if sets.is_empty() {
        0.0
    } else {
        calibrate::probe_hit_cost_ns(&mut probes).context("calibrating the cost of a probe hit")?
    };
    // One governor for all sets: the budget is a total.
    let governed = if sets.is_empty() {
        None
    } else {
        Some(Governed::attach(
            sets,
            &mut probes,
            &target.exe_handle,
            pid,
            Governor::detached(budget, cost, target.cpu_time_ns()?),
        )?)
    };
    let symbolizer = Symbolizer::new(&target.binary, bias);
    let source_symbols = SourceSymbolizer::new(&target.binary, bias);
    let cgroups = Cgroups::of(target.pid, std::path::Path::new(CGROUP_ROOT)).unwrap_or_default();
    Ok(Attachment {
        target,
        cgroups,
        runtime,
        gc_point,
        probes: RefCell::new(probes),
        governed: RefCell::new(governed),
        thread_view,
        cpu_sampler,
        symbolizer,
        source_symbols,
    })
}

impl Attachment {
    /// Lets each governed probe set's governor act on the hits since the
    /// last tick.
    pub fn govern(&self) -> anyhow::Result<()> {
        let mut probes = self.probes.borrow_mut();
        if let Some(g) = self.governed.borrow_mut().as_mut() {
            g.step(&mut probes, &self.target.exe_handle, || {
                Ok(self.target.cpu_time_ns()?)
            })?;
        }
        Ok(())
    }
}

impl Attachment {
    /// The report for the window between two samples: figures from the
    /// runtime's counters, plus what the probes gathered since attach.
    pub fn report(
        &self,
        first: &Sample,
        last: &Sample,
        ended_by: WindowEnd,
    ) -> anyhow::Result<DoctorReport> {
        let mut cgo_latency = None;
        let mut spawn_sites = None;
        let mut alloc_sites = None;
        let window_s = (last.at - first.at).as_secs_f64();
        let governed = self.governed.borrow();
        let fraction = governed
            .as_ref()
            .map_or(1.0, |g| g.governor.sampled_fraction());
        for set in governed.iter().flat_map(|g| g.sets.iter()) {
            let probes = self.probes.borrow();
            match set {
                ProbeSet::Cgo(_) => {
                    cgo_latency = Some((CgoLatency::read(&probes, &self.symbolizer)?, fraction));
                }
                ProbeSet::Alloc(_) => {
                    let samples = AllocSamples::read(&probes, &self.source_symbols)?;
                    let exact = ExactAllocation::between(
                        &first.runtime.alloc,
                        &last.runtime.alloc,
                        &self.runtime.class_sizes,
                    );
                    alloc_sites = Some((samples.sites(&exact, window_s), fraction));
                }
                ProbeSet::Spawn(_) => {
                    spawn_sites = Some((
                        spawn::read_sites(
                            &probes,
                            &self.symbolizer,
                            last.runtime
                                .goroutines_created
                                .saturating_sub(first.runtime.goroutines_created),
                            window_s,
                        )?,
                        fraction,
                    ));
                }
            }
        }
        let cpu_split = match &self.cpu_sampler {
            Ok(()) => Some(CpuSamples::read(&self.probes.borrow(), &self.symbolizer)?.split()),
            Err(_) => None,
        };
        Ok(figures::build(figures::Inputs {
            target: &self.target,
            layout: &self.runtime.layout,
            class_sizes: &self.runtime.class_sizes,
            gc_point: &self.gc_point,
            cgroups: &self.cgroups,
            thread_view: &self.thread_view,
            cpu: (cpu_split, &self.cpu_sampler),
            cgo_latency,
            spawn_sites,
            alloc_sites,
            first,
            last,
            ended_by,
        }))
    }
}

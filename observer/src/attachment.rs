//! The attachment behind doctor and top: the pinned target's runtime read
//! every second, the GC-cycle probe, the scheduler tracepoints, the CPU
//! sampler and the governed per-call probe sets, for one window; and the
//! window report built from two of its readings.

use std::{cell::RefCell, sync::Arc, time::Duration};

use anyhow::Context as _;
use observer_common::CounterSlot;

use crate::{
    alloc_sites::{AllocSites, HeapProfile, SitesSource},
    cgroup::{Cgroups, CpuStat},
    cpu::{self, CpuSamples},
    goroutine_dump::DumpLimits,
    leak_watch::{DumpSource, LeakWatcher},
    probe_points::{self, GC_MARK_TERMINATION, ProbePoint},
    probes::{
        Availability, ProbeSession,
        alloc::{AllocProbe, AllocSamples, ExactAllocation},
        calibrate,
        cgo::{CgoLatency, CgoProbes},
        governed::{Governed, ProbeSet},
        governor::Governor,
        spawn,
        threads::{self, ThreadCounters, TracepointOffsets},
    },
    report::{DoctorReport, figures, sched_bound::SchedBoundTracker},
    runtime::{
        MemProfile, RuntimeSnapshot,
        goroutines::{
            CreationSites, CreationSource, GoroutineReader, GoroutineReading, GoroutineWatch,
        },
        reader::RuntimeReader,
    },
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
    /// The runtime's heap profile when it is the allocation-site source
    /// (None: it is not), or why this reading of it was refused.
    pub heap_profile: Option<Result<Arc<MemProfile>, String>>,
    /// The goroutine table read with this sample (creation sites and live
    /// goroutines by creation site); None when the binary has no table
    /// goscope can read.
    pub goroutines: Option<GoroutineReading>,
}

/// Leak-suspect dumps: at most one a second (longer when a dump is slow).
const LEAK_DUMP_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds of those dumps (a table larger than this is watched partly).
const LEAK_DUMP_LIMITS: DumpLimits = DumpLimits {
    max_stacks: 100_000,
    max_frames: 64,
    include_system: false,
};

/// What doctor read and attached before the window.
pub struct Attachment {
    target: TargetProcess,
    cgroups: Cgroups,
    runtime: RuntimeReader,
    gc_point: ProbePoint,
    probes: RefCell<ProbeSession>,
    /// High-frequency probe sets under the overhead governor.
    governed: RefCell<Option<Governed>>,
    /// The allocation-site source when the runtime keeps a heap profile
    /// (then no allocation probe is attached).
    heap_profile: Option<HeapProfile>,
    /// Whether the scheduler tracepoints attached, or why not.
    thread_view: Availability,
    /// Whether the CPU sampler attached, or why not.
    cpu_sampler: Availability,
    symbolizer: Symbolizer,
    /// The code, to repair the frame the sampler's stack walk skips.
    call_targets: cpu::CallTargets,
    source_symbols: SourceSymbolizer,
    /// --overhead-budget, percent (infinite: off).
    budget_percent: f64,
    /// The goroutine table read on its own thread (creation sites from
    /// g.gopc), or why it cannot be read.
    goroutines: Result<GoroutineWatch, String>,
    /// Every scheduler reading since attach, for the P-bound/M-bound
    /// judgement.
    sched_bound: RefCell<SchedBoundTracker>,
    /// Repeated goroutine dumps for leak suspects (None: no stack layout).
    leaks: Option<LeakWatcher>,
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

    /// Ends the per-call probes' window: detaches them (all at once) and
    /// takes the final count of what they cost.
    pub fn finish_probes(&self) -> anyhow::Result<()> {
        if let Some(g) = self.governed.borrow_mut().as_mut() {
            g.finish(&mut self.probes.borrow_mut())?;
        }
        Ok(())
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
        self.sched_bound.borrow_mut().observe(&runtime.sched_trace);
        Ok(Sample {
            at,
            runtime,
            cpu_ns: self.target.cpu_time_ns()?,
            threads: self.target.thread_count()?,
            gc_probe_hits: Some(self.probes.borrow().counter(CounterSlot::GcCycles)?),
            cpu_stat: self.cgroups.cpu_stat(),
            threads_kernel: match self.thread_view {
                Availability::Available => Some(ThreadCounters::read(&self.probes.borrow())?),
                Availability::Unavailable(_) => None,
            },
            heap_profile: self.heap_profile.as_ref().map(|h| {
                h.read(&self.runtime.memory).map(Arc::new).map_err(|e| {
                    format!("reading the heap profile of pid {}: {e}", self.target.pid)
                })
            }),
            goroutines: self.goroutines.as_ref().ok().map(GoroutineWatch::reading),
        })
    }
}

/// Attaches to a session's target: the GC probe, the tracepoints and the
/// sampler (each optional where the kernel refuses it, saying why), and
/// with `sites` the per-call probe sets under one overhead governor; the
/// allocation sites come from the runtime's heap profile when it keeps
/// one (no probe), else from the allocation probes.
pub fn attach(
    session: Session,
    budget: f64,
    sites: bool,
    window: Option<std::time::Duration>,
) -> anyhow::Result<Attachment> {
    let Session {
        target,
        runtime,
        others,
        ..
    } = session;
    let budget = if sites { others.share(budget) } else { budget };
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
    let thread_view =
        Availability::of(tracepoints.and_then(|_| threads::attach(&mut probes, target.pid)));
    let cpu_sampler = Availability::of(cpu::attach(&mut probes, cpu::DEFAULT_HZ));
    let pid = std::num::NonZeroU32::new(target.pid).context("pid 0")?;
    let mut sets = Vec::new();
    let heap_profile = sites
        .then(|| {
            HeapProfile::open(
                &runtime.layout,
                bias,
                &runtime.memory,
                target.binary.go_version(),
            )
            .ok()
            .map(|(source, _)| source)
        })
        .flatten();
    if sites {
        if heap_profile.is_none() {
            sets.push(ProbeSet::Alloc(
                AllocProbe::resolve(&target.binary).with_context(context)?,
            ));
        }
        if target.binary.cgo() {
            sets.push(ProbeSet::Cgo(
                CgoProbes::resolve(&target.binary).with_context(context)?,
            ));
        }
    }
    // One governor for all sets: the budget is a total, spread over the
    // window (`top`'s is open-ended).
    let governed = if sets.is_empty() {
        None
    } else {
        let costs = calibrate::costs(&mut probes).context("calibrating probe costs")?;
        let mut governor = Governor::detached(budget, costs.hit_ns, target.cpu_time_ns()?);
        if let Some(window) = window {
            governor = governor.with_window(window);
        }
        Some(Governed::attach(
            sets,
            &mut probes,
            &target.exe_handle,
            pid,
            governor,
            &costs,
        )?)
    };
    let symbolizer = Symbolizer::new(&target.binary, bias);
    let call_targets = cpu::CallTargets::new(&target.binary, bias);
    let source_symbols = SourceSymbolizer::new(&target.binary, bias);
    // Creation sites from the goroutine table (no newproc probe).
    let goroutines = GoroutineReader::new(&runtime.layout, bias, target.binary.go_version())
        .and_then(|reader| {
            let names = Symbolizer::new(&target.binary, bias);
            let (memory, layout) = (target.memory(), Arc::clone(&runtime.layout));
            GoroutineWatch::start(
                reader,
                Box::new(target.memory()),
                Box::new(move |pc| names.function(pc).map(str::to_string)),
                Box::new(move || {
                    RuntimeSnapshot::read(&memory, &layout, bias)
                        .ok()
                        .map(|s| s.goroutines_created)
                }),
            )
        })
        .map_err(|e| format!("the goroutine table of pid {}: {e}", target.pid));
    let leaks = GoroutineReader::new(&runtime.layout, bias, target.binary.go_version())
        .ok()
        .filter(|reader| reader.stack_layout().is_some())
        .and_then(|reader| {
            LeakWatcher::start(
                DumpSource {
                    reader,
                    memory: Box::new(target.memory()),
                    symbols: SourceSymbolizer::new(&target.binary, bias),
                    bias,
                    limits: LEAK_DUMP_LIMITS,
                },
                LEAK_DUMP_INTERVAL,
            )
            .ok()
        });
    let cgroups = Cgroups::of(target.pid, std::path::Path::new(CGROUP_ROOT)).unwrap_or_default();
    Ok(Attachment {
        leaks,
        target,
        cgroups,
        runtime,
        gc_point,
        probes: RefCell::new(probes),
        governed: RefCell::new(governed),
        heap_profile,
        thread_view,
        cpu_sampler,
        symbolizer,
        call_targets,
        source_symbols,
        budget_percent: budget,
        goroutines,
        sched_bound: RefCell::default(),
    })
}

impl Attachment {
    /// A scheduler reading between samples (memory only), for the
    /// P-bound/M-bound judgement.
    pub fn observe_sched(&self) -> anyhow::Result<()> {
        let runtime = self.runtime.read()?;
        self.sched_bound.borrow_mut().observe(&runtime.sched_trace);
        Ok(())
    }

    /// Lets each governed probe set's governor act on the hits since the
    /// last tick.
    pub fn govern(&self) -> anyhow::Result<()> {
        let mut probes = self.probes.borrow_mut();
        if let Some(g) = self.governed.borrow_mut().as_mut() {
            let attached = g.step(&mut probes, &self.target.exe_handle, || {
                Ok(self.target.cpu_time_ns()?)
            })?;
            // Probes go to the pid: if it is another process now (exit and
            // reuse, or an exec), take them off at once.
            if attached && !self.target.is_alive() {
                g.finish(&mut probes)?;
                anyhow::bail!(
                    "pid {} ended while its probes were attached",
                    self.target.pid
                );
            }
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
        let mut creation_sites = None;
        let mut alloc_sites = None;
        let window_s = (last.at - first.at).as_secs_f64();
        let governed = self.governed.borrow();
        for (set, fraction) in governed
            .iter()
            .flat_map(|g| g.sets.iter())
            .map(|g| (&g.set, g.governor.sampled_fraction()))
        {
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
                    alloc_sites = Some((samples.sites(&exact, window_s), Some(fraction)));
                }
                ProbeSet::Spawn(_) => {
                    let sites = spawn::read_sites(
                        &probes,
                        &self.symbolizer,
                        last.runtime
                            .goroutines_created
                            .saturating_sub(first.runtime.goroutines_created),
                        window_s,
                    )?;
                    creation_sites = Some(spawn::creation_sites(&sites, fraction));
                }
            }
        }
        if let Some(source) = &self.heap_profile {
            let sites = match (&first.heap_profile, &last.heap_profile) {
                (Some(Ok(a)), Some(Ok(b))) => source.sites(a, b, window_s, &self.source_symbols),
                (Some(Err(e)), _) | (_, Some(Err(e))) => {
                    AllocSites::skipped(SitesSource::MemoryProfile, format!("skipped: {e}"))
                }
                _ => AllocSites::skipped(
                    SitesSource::MemoryProfile,
                    "skipped: no reading of the heap profile in the window".into(),
                ),
            };
            alloc_sites = Some((sites, None));
        }
        if creation_sites.is_none() {
            creation_sites = Some(self.creation_sites(first, last, window_s));
        }
        let mut alloc_cpu_sites = Vec::new();
        let mut cgo_cpu_sites = Vec::new();
        let cpu_split = match &self.cpu_sampler {
            Availability::Available => {
                let samples =
                    CpuSamples::read(&self.probes.borrow(), &self.symbolizer, &self.call_targets)?;
                alloc_cpu_sites = samples.allocation_sites();
                cgo_cpu_sites = samples.cgo_sites();
                Some(samples.split())
            }
            Availability::Unavailable(_) => None,
        };
        let overhead = {
            let governed = self.governed.borrow();
            let probes = self.probes.borrow();
            crate::report::overhead::OverheadFigures::estimate(
                &probes,
                crate::report::overhead::Spending {
                    budget_percent: self.budget_percent,
                    hit_ns: governed.as_ref().map_or(0.0, Governed::hit_ns),
                    target_switches: last
                        .threads_kernel
                        .as_ref()
                        .map(|t| t.runq_latency.iter().sum()),
                    governed: governed.as_ref().map(|g| {
                        let (total, links) = g.spent_ns();
                        (
                            total,
                            links,
                            g.sets
                                .iter()
                                .map(|s| (s.set.name(), s.governor.phase().clone()))
                                .collect(),
                        )
                    }),
                },
                last.cpu_ns.saturating_sub(first.cpu_ns),
            )
        };
        Ok(figures::build(figures::Inputs {
            overhead,
            target: crate::report::figures::TargetSummary::of(&self.target),
            layout: &self.runtime.layout,
            class_sizes: &self.runtime.class_sizes,
            gc_point: &self.gc_point,
            cgroups: &self.cgroups,
            thread_view: &self.thread_view,
            cpu: (cpu_split, &self.cpu_sampler),
            alloc_cpu_sites,
            cgo_cpu_sites,
            cgo_latency,
            creation_sites,
            alloc_sites,
            sched_bound: self.sched_bound.borrow().figures(),
            goroutine_leaks: self.leaks.as_ref().map(LeakWatcher::suspects),
            first,
            last,
            ended_by,
        }))
    }
}

impl Attachment {
    /// Creation sites of the window from the goroutine table readings of
    /// two samples, scaled to the runtime's exact created count.
    fn creation_sites(&self, first: &Sample, last: &Sample, window_s: f64) -> CreationSites {
        let skipped = |why: String| CreationSites::skipped(CreationSource::GoroutineTable, why);
        match (&self.goroutines, &first.goroutines, &last.goroutines) {
            (Err(why), _, _) => skipped(format!("skipped: {why}")),
            (Ok(_), Some(a), Some(b)) => CreationSites::from_table(
                a,
                b,
                last.runtime
                    .goroutines_created
                    .saturating_sub(first.runtime.goroutines_created),
                window_s,
                &self.source_symbols,
            ),
            (Ok(_), _, _) => skipped("skipped: no reading of the goroutine table".into()),
        }
    }
}

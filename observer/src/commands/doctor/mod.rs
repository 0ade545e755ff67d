//! `goscope doctor`: attach for a window, read the runtime's own counters at
//! its start, every second and at its end, count GC cycles with one probe,
//! and report the window's deltas with verdicts.

pub mod figures;
mod render;

use std::{
    cell::RefCell,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use observer_common::CounterSlot;

pub use figures::{DoctorReport, GcFigures};

use crate::{
    binary::version,
    cgroup::{Cgroups, CpuStat},
    cli::DoctorArgs,
    cpu::{
        self, CpuSamples,
        symbols::{SourceSymbolizer, Symbolizer},
    },
    memory::ProcessMemory,
    output, privilege,
    probe_points::{self, GC_MARK_TERMINATION, ProbePoint},
    probes::{
        ProbeSession,
        alloc::{AllocProbe, AllocSamples, ExactAllocation},
        calibrate,
        cgo::{CgoLatency, CgoProbes},
        governed::{Governed, ProbeSet},
        governor::{self, Governor},
        spawn::{self, SpawnProbe},
        threads::{self, ThreadCounters, TracepointOffsets},
    },
    runtime::{RuntimeLayout, RuntimeSnapshot, snapshot::read_class_sizes},
    target::TargetProcess,
    window::{self, StopSignal, WindowEnd},
};

/// Exit status when the target exited inside the window (report printed).
pub const EXIT_TARGET_EXITED: i32 = 3;
/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How often the runtime is read during the window, so that a target that
/// exits still leaves a recent reading.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One reading of everything doctor tracks.
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
pub(crate) struct Attachment {
    target: TargetProcess,
    cgroups: Cgroups,
    layout: RuntimeLayout,
    bias: u64,
    memory: ProcessMemory,
    class_sizes: Vec<u64>,
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

impl Attachment {
    pub(crate) fn target(&self) -> &TargetProcess {
        &self.target
    }

    pub(crate) fn sample(&self, at: Duration) -> anyhow::Result<Sample> {
        let runtime = RuntimeSnapshot::read(&self.memory, &self.layout, self.bias)
            .with_context(|| format!("reading the runtime of pid {}", self.target.pid))?;
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

/// Runs doctor; returns the process exit status.
pub fn run(args: &DoctorArgs) -> anyhow::Result<i32> {
    privilege::require_root("goscope doctor")?;
    let stop = StopSignal::install()?;
    let target = TargetProcess::open(args.pid)?;
    check_version(&target, args.force_version)?;
    let attachment = attach(
        target,
        args.force_version,
        args.overhead_budget,
        !args.no_sites,
    )?;
    let target = &attachment.target;

    let started = Instant::now();
    let first = attachment.sample(Duration::ZERO)?;
    eprintln!(
        "goscope: attached to pid {} ({}, {}); observing for {} s, Ctrl-C to stop early",
        target.pid,
        target.exe.display(),
        target.binary.build.go_version_string,
        args.duration
    );
    let mut last: Option<Sample> = None;
    let mut read_error: Option<anyhow::Error> = None;
    // The governor ticks fast (a burst is cut off within one tick); the
    // runtime is read once a second.
    let governing = attachment.governed.borrow().is_some();
    let tick = if governing {
        governor::POLL
    } else {
        SAMPLE_INTERVAL
    };
    let mut next_sample = SAMPLE_INTERVAL;
    let (mut ended_by, _) = window::observe(
        Duration::from_secs_f64(args.duration),
        target,
        &stop,
        Some(tick),
        |at| {
            if governing
                && let Err(e) = attachment.govern()
                && target.is_alive()
            {
                read_error.get_or_insert(e);
            }
            if at < next_sample {
                return;
            }
            next_sample += SAMPLE_INTERVAL;
            match attachment.sample(at) {
                Ok(sample) => {
                    let previous = last.as_ref().unwrap_or(&first);
                    if let Some(g) = attachment.governed.borrow_mut().as_mut() {
                        g.predict(
                            &previous.runtime,
                            &sample.runtime,
                            &attachment.class_sizes,
                            (sample.at - previous.at).as_secs_f64(),
                        );
                    }
                    last = Some(sample);
                }
                Err(e) if target.is_alive() => {
                    read_error.get_or_insert(e);
                }
                Err(_) => {}
            }
        },
    );
    if let Some(e) = read_error {
        return Err(e.context("a read failed inside the window; no report rather than a wrong one"));
    }
    match attachment.sample(started.elapsed()) {
        Ok(sample) => last = Some(sample),
        Err(e) if target.is_alive() => {
            return Err(e.context("the final reading of the window failed"));
        }
        Err(_) => ended_by = WindowEnd::TargetExited,
    }
    let last = last.unwrap_or_else(|| Sample {
        at: Duration::ZERO,
        runtime: first.runtime.clone(),
        cpu_ns: first.cpu_ns,
        threads: first.threads,
        gc_probe_hits: first.gc_probe_hits,
        cpu_stat: first.cpu_stat,
        threads_kernel: first.threads_kernel.clone(),
    });
    let report = attachment.report(&first, &last, ended_by)?;
    if args.json {
        output::print_json(&report)?;
    } else {
        output::print_text(&render::text(&report, args.verbose))?;
    }
    Ok(match ended_by {
        WindowEnd::TargetExited => {
            eprintln!(
                "goscope: pid {} exited {:.1} s into the window; the report covers what was observed until then",
                report.target.pid, report.window_s
            );
            EXIT_TARGET_EXITED
        }
        WindowEnd::Elapsed | WindowEnd::Interrupted => 0,
    })
}

pub(crate) fn check_version(target: &TargetProcess, force: bool) -> anyhow::Result<()> {
    let go = target.binary.go_version();
    if force {
        return Ok(());
    }
    if !go.is_supported() {
        anyhow::bail!(
            "pid {} runs {}, outside the supported range {} (--force-version tries anyway)",
            target.pid,
            target.binary.build.go_version_string,
            version::supported_range()
        );
    }
    if !go.is_verified() {
        anyhow::bail!(
            "pid {} runs {}, a version goscope could not verify (no toolchain was available to check its runtime layout); --force-version tries anyway",
            target.pid,
            target.binary.build.go_version_string
        );
    }
    Ok(())
}

pub(crate) fn attach(
    target: TargetProcess,
    force_version: bool,
    budget: f64,
    sites: bool,
) -> anyhow::Result<Attachment> {
    let context = || format!("pid {}", target.pid);
    let layout = RuntimeLayout::resolve(&target.binary, force_version).with_context(context)?;
    let bias = target.load_bias()?;
    let memory = ProcessMemory::new(target.pid);
    let class_sizes = read_class_sizes(&memory, &layout, bias)
        .with_context(|| format!("reading the size classes of pid {}", target.pid))?;
    let gc_point =
        probe_points::resolve(&target.binary, GC_MARK_TERMINATION.name).with_context(context)?;
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
        layout,
        bias,
        memory,
        class_sizes,
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
    pub(crate) fn govern(&self) -> anyhow::Result<()> {
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
    pub(crate) fn report(
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
                        &self.class_sizes,
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
            layout: &self.layout,
            class_sizes: &self.class_sizes,
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

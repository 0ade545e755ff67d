//! Runtime versus application CPU: a BPF program on a perf CPU-clock event
//! per CPU samples the target's user stacks (frame pointers), which are
//! symbolized from the binary's function table and classified by the
//! runtime activity on the whole stack (`classify`): GC, allocation, stack
//! growth, goroutines, scheduler, channels and locks, maps, syscalls, page
//! faults, cgo, other runtime and application.

pub mod classify;
pub mod unwind;

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use aya::{
    maps::{PerCpuHashMap, StackTraceMap},
    programs::{
        PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use observer_common::CpuSampleKey;
use serde::Serialize;

pub use classify::CpuClass;
pub use unwind::CallTargets;

use crate::{pprof, privilege, probes::ProbeSession, symbols::Symbolizer};

/// Default sampling rate per CPU (the bounded rate).
pub const DEFAULT_HZ: u64 = 99;

/// Attaches the sampler on every online CPU.
pub fn attach(session: &mut ProbeSession, hz: u64) -> anyhow::Result<()> {
    let program: &mut PerfEvent = session
        .ebpf_mut()
        .program_mut("cpu_sample")
        .ok_or_else(|| anyhow!("kernel object lacks program cpu_sample"))?
        .try_into()?;
    program
        .load()
        .map_err(|e| privilege::advise(anyhow::Error::new(e), "loading cpu_sample (verifier)"))?;
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as u32;
    for cpu in 0..cpus {
        program
            .attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(hz),
                false,
            )
            .map_err(|e| {
                privilege::advise(
                    anyhow::Error::new(e),
                    &format!("opening a CPU-clock perf event on CPU {cpu}"),
                )
            })?;
    }
    Ok(())
}

/// A symbolized sampled stack, leaf first: (pc, function).
pub type Stack = Vec<(u64, String)>;

/// One sampled stack, its sample count and its class.
#[derive(Debug)]
pub struct SampledStack {
    pub frames: Stack,
    pub count: u64,
    pub class: CpuClass,
}

/// What the sampler saw.
#[derive(Debug, Default)]
pub struct CpuSamples {
    pub total: u64,
    pub by_class: BTreeMap<CpuClass, u64>,
    pub stacks: Vec<SampledStack>,
}

/// Where a class of CPU (the allocator's, C's) goes, by the code that
/// called it: from the sampler's stacks (no trap). A share of that class's
/// CPU (for allocation: not of bytes).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CpuSite {
    /// The first frame outside the runtime above the allocator.
    pub function: String,
    pub samples: u64,
    /// Share of the samples spent allocating.
    pub share: f64,
}

/// The split as fractions, for reports.
#[derive(Clone, Debug, Serialize)]
pub struct CpuSplit {
    pub samples: u64,
    /// Fraction of samples in the Go runtime (GC, allocation, scheduler,
    /// other runtime).
    pub runtime_share: Option<f64>,
    pub by_class: BTreeMap<CpuClass, f64>,
}

impl CpuSamples {
    /// Reads the kernel's sample counts and stacks (each with the frame
    /// the kernel's walk skipped put back, see `unwind`).
    pub fn read(
        session: &ProbeSession,
        symbolizer: &Symbolizer,
        calls: &CallTargets,
    ) -> anyhow::Result<Self> {
        let ebpf = session.ebpf();
        let counts: PerCpuHashMap<_, CpuSampleKey, u64> = PerCpuHashMap::try_from(
            ebpf.map("CPU_SAMPLES")
                .ok_or_else(|| anyhow!("no CPU_SAMPLES map"))?,
        )?;
        let stacks = StackTraceMap::try_from(
            ebpf.map("CPU_STACKS")
                .ok_or_else(|| anyhow!("no CPU_STACKS map"))?,
        )?;
        let mut samples = CpuSamples::default();
        for entry in counts.iter() {
            let (key, per_cpu) = entry.context("reading CPU_SAMPLES")?;
            let count: u64 = per_cpu.iter().sum();
            let mut stack: Stack = if key.user_stack >= 0 {
                stacks
                    .get(&(key.user_stack as u32), 0)
                    .map(|trace| {
                        trace
                            .frames()
                            .iter()
                            .enumerate()
                            .map(|(i, f)| {
                                // Return addresses point after the call.
                                let lookup = if i == 0 { f.ip } else { f.ip.saturating_sub(1) };
                                let name = symbolizer
                                    .function(lookup)
                                    .unwrap_or("[unknown]")
                                    .to_string();
                                (f.ip, name)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            calls.repair(&mut stack, |pc| symbolizer.function(pc));
            let names: Vec<Option<&str>> = stack
                .iter()
                .map(|(_, n)| (n != "[unknown]").then_some(n.as_str()))
                .collect();
            // The user pc of a sample taken in the kernel is where the
            // thread entered it (the kernel's walk starts at the user
            // registers saved at entry).
            let mode = classify::Mode::of(
                key.in_kernel != 0,
                stack.first().and_then(|(pc, _)| calls.follows_syscall(*pc)),
            );
            let class = classify::classify(&names, mode);
            *samples.by_class.entry(class).or_default() += count;
            samples.total += count;
            // Kernel time is charged to the user frame that entered the
            // kernel, as Go's own profiler does.
            let mut shown = stack;
            if shown.is_empty() {
                shown.push((0, "[no user stack]".to_string()));
            }
            samples.stacks.push(SampledStack {
                frames: shown,
                count,
                class,
            });
        }
        Ok(samples)
    }

    /// Allocation CPU by allocating caller, biggest first.
    pub fn allocation_sites(&self) -> Vec<CpuSite> {
        self.sites_of(CpuClass::Allocation)
    }

    /// CPU in C (cgo) by Go call site (the `_Cfunc_` wrapper names the C
    /// function), biggest first: what the sampler says when cgo latency is
    /// not timed.
    pub fn cgo_sites(&self) -> Vec<CpuSite> {
        self.sites_of(CpuClass::Cgo)
    }

    /// Samples of `class` by the first frame outside the runtime.
    fn sites_of(&self, wanted: CpuClass) -> Vec<CpuSite> {
        let mut by_site: BTreeMap<&str, u64> = BTreeMap::new();
        let mut total = 0;
        for s in &self.stacks {
            if s.class != wanted {
                continue;
            }
            total += s.count;
            let site = s
                .frames
                .iter()
                .map(|(_, n)| n.as_str())
                .find(|n| *n != "[unknown]" && !crate::runtime::memprofile::is_runtime_function(n))
                .unwrap_or("[runtime]");
            *by_site.entry(site).or_default() += s.count;
        }
        let mut sites: Vec<CpuSite> = by_site
            .into_iter()
            .map(|(function, samples)| CpuSite {
                function: function.to_string(),
                samples,
                share: samples as f64 / total.max(1) as f64,
            })
            .collect();
        sites.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.function.cmp(&b.function)));
        sites
    }

    pub fn split(&self) -> CpuSplit {
        let total = self.total as f64;
        let by_class: BTreeMap<CpuClass, f64> = CpuClass::ALL
            .iter()
            .map(|c| {
                (
                    *c,
                    if total > 0.0 {
                        *self.by_class.get(c).unwrap_or(&0) as f64 / total
                    } else {
                        0.0
                    },
                )
            })
            .collect();
        let runtime: f64 = by_class
            .iter()
            .filter(|(c, _)| c.is_runtime())
            .map(|(_, v)| v)
            .sum();
        CpuSplit {
            samples: self.total,
            runtime_share: (self.total > 0).then_some(runtime),
            by_class,
        }
    }

    /// The samples as a gzipped pprof CPU profile.
    pub fn pprof(&self, hz: u64, duration_ns: u64) -> std::io::Result<Vec<u8>> {
        let period_ns = 1_000_000_000 / hz.max(1);
        let mut profile = pprof::Profile::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            period_ns,
        );
        for s in &self.stacks {
            let locations: Vec<pprof::Location> = s
                .frames
                .iter()
                .map(|(pc, name)| pprof::Location::named(*pc, name))
                .collect();
            let count = s.count as i64;
            profile.add(&locations, &[count, count * period_ns as i64]);
        }
        profile.encode(duration_ns)
    }
}

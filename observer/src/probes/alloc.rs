//! Allocation call sites at span granularity: probes at
//! runtime.(*mcache).refill (a P's cache ran out of one size class, once
//! per span's worth of objects) and runtime.(*mcache).allocLarge (one large
//! object) record who was allocating. Every malloc entry point funnels into
//! these two, Go 1.27's size-specialized functions included, so nothing is
//! counted twice, and they fire whatever runtime.MemProfileRate is (the
//! linker sets it to 0 in programs that never read heap profiles). The
//! exact bytes per size class, read from the runtime's memory, are then
//! shared among the stacks sampled for that class. This is the fallback
//! source of allocation sites when the runtime keeps no heap profile
//! (`alloc_sites`); sites are named and pprof stacks trimmed by the same
//! rules as for the heap profile.

use std::collections::HashMap;

use super::{AttachedLink, ProbeSession};
use crate::{
    alloc_sites::{self, AllocSite, AllocSites, SitesSource},
    binary::{GoBinary, version::GoVersion},
    pprof::{Location, Profile},
    probe_points::{self, ProbePoint},
    symbols::SourceSymbolizer,
};
use anyhow::{Context as _, anyhow};
use aya::maps::{PerCpuHashMap, StackTraceMap};
use observer_common::{AllocSampleKey, LARGE_ALLOC};

pub const REFILL_PROGRAM: &str = "alloc_refill";
pub const LARGE_PROGRAM: &str = "alloc_large";
use probe_points::{MCACHE_ALLOC_LARGE as ALLOC_LARGE, MCACHE_REFILL as REFILL};
/// The runtime's page size: large objects are page rounded.
const PAGE: u64 = 8192;

pub struct AllocProbe {
    refill: ProbePoint,
    large: ProbePoint,
}

impl AllocProbe {
    pub fn resolve(binary: &GoBinary) -> anyhow::Result<Self> {
        Ok(Self {
            refill: probe_points::resolve(binary, REFILL)?,
            large: probe_points::resolve(binary, ALLOC_LARGE)?,
        })
    }

    pub fn attach(
        &self,
        session: &mut ProbeSession,
        exe: &std::path::Path,
        pid: std::num::NonZeroU32,
    ) -> anyhow::Result<Vec<AttachedLink>> {
        Ok(vec![
            session.attach_link(REFILL_PROGRAM, &self.refill, None, exe, pid)?,
            session.attach_link(LARGE_PROGRAM, &self.large, None, exe, pid)?,
        ])
    }
}

/// One sampled stack of one size class (None: large objects).
#[derive(Clone, Debug)]
struct SampledStack {
    /// Leaf first, every frame (inlined calls expanded).
    locations: Vec<Location>,
    size_class: Option<usize>,
    samples: u64,
    /// Large objects: page-rounded bytes of the sampled objects.
    large_bytes: u64,
}

/// Exact allocation over the window, from the runtime's memory.
#[derive(Clone, Debug, Default)]
pub struct ExactAllocation {
    /// Bytes per size class (index = size class).
    pub class_bytes: Vec<u64>,
    pub class_sizes: Vec<u64>,
    pub large_bytes: u64,
    pub large_objects: u64,
}

/// A stack with its share of the exact allocation.
#[derive(Clone, Debug)]
pub struct AttributedStack {
    pub locations: Vec<Location>,
    pub samples: u64,
    pub bytes: f64,
    pub objects: f64,
}

/// What the probes saw.
#[derive(Clone, Debug, Default)]
pub struct AllocSamples {
    stacks: Vec<SampledStack>,
    pub samples: u64,
}

impl AllocSamples {
    pub fn read(session: &ProbeSession, symbols: &SourceSymbolizer) -> anyhow::Result<Self> {
        let ebpf = session.ebpf();
        let counts: PerCpuHashMap<_, AllocSampleKey, u64> = PerCpuHashMap::try_from(
            ebpf.map("ALLOC_SAMPLES")
                .ok_or_else(|| anyhow!("no ALLOC_SAMPLES map"))?,
        )?;
        let traces = StackTraceMap::try_from(
            ebpf.map("ALLOC_STACKS")
                .ok_or_else(|| anyhow!("no ALLOC_STACKS map"))?,
        )?;
        let mut by_key: HashMap<(Vec<u64>, Option<usize>), SampledStack> = HashMap::new();
        let mut total = 0;
        for entry in counts.iter() {
            let (key, per_cpu) = entry.context("reading ALLOC_SAMPLES")?;
            let samples: u64 = per_cpu.iter().sum();
            // The walk starts at the probe and misses the probed function's
            // caller, whose return address is key.caller.
            let mut pcs = vec![key.caller];
            if key.user_stack >= 0
                && let Ok(trace) = traces.get(&(key.user_stack as u32), 0)
            {
                pcs.extend(trace.frames().iter().skip(1).map(|f| f.ip));
            }
            pcs.retain(|&pc| pc != 0);
            let size_class =
                (key.span_class != LARGE_ALLOC).then_some((key.span_class >> 1) as usize);
            let stack = by_key
                .entry((pcs.clone(), size_class))
                .or_insert_with(|| SampledStack {
                    locations: pcs.iter().map(|&pc| symbols.location(pc, true)).collect(),
                    size_class,
                    samples: 0,
                    large_bytes: 0,
                });
            stack.samples += samples;
            stack.large_bytes += samples * key.size.div_ceil(PAGE) * PAGE;
            total += samples;
        }
        Ok(Self {
            stacks: by_key.into_values().collect(),
            samples: total,
        })
    }

    /// Shares each size class's exact bytes among the stacks sampled for
    /// it (in proportion to their span refills), and the exact large-object
    /// bytes in proportion to the sampled large bytes. Returns the stacks
    /// and the bytes no sample covered.
    pub fn attribute(&self, exact: &ExactAllocation) -> (Vec<AttributedStack>, u64) {
        let mut refills: HashMap<Option<usize>, (u64, u64)> = HashMap::new();
        for s in &self.stacks {
            let e = refills.entry(s.size_class).or_default();
            e.0 += s.samples;
            e.1 += s.large_bytes;
        }
        let mut stacks = Vec::new();
        for s in &self.stacks {
            let (samples, large_sampled) = refills[&s.size_class];
            let (bytes, objects) = match s.size_class {
                Some(class) => {
                    let class_bytes = exact.class_bytes.get(class).copied().unwrap_or(0) as f64;
                    let bytes = class_bytes * s.samples as f64 / samples.max(1) as f64;
                    let size = exact.class_sizes.get(class).copied().unwrap_or(0).max(1);
                    (bytes, bytes / size as f64)
                }
                None => {
                    let share = s.large_bytes as f64 / large_sampled.max(1) as f64;
                    (
                        exact.large_bytes as f64 * share,
                        exact.large_objects as f64 * share,
                    )
                }
            };
            stacks.push(AttributedStack {
                locations: s.locations.clone(),
                samples: s.samples,
                bytes,
                objects,
            });
        }
        let mut unattributed: u64 = exact
            .class_bytes
            .iter()
            .enumerate()
            .filter(|(class, _)| !refills.contains_key(&Some(*class)))
            .map(|(_, b)| *b)
            .sum();
        if !refills.contains_key(&None) {
            unattributed += exact.large_bytes;
        }
        (stacks, unattributed)
    }

    /// Sites by bytes, largest first, over a window of `window_s`.
    pub fn sites(&self, exact: &ExactAllocation, window_s: f64) -> AllocSites {
        let (stacks, unattributed) = self.attribute(exact);
        let total = exact.class_bytes.iter().sum::<u64>() + exact.large_bytes;
        let mut by_site: HashMap<(String, String), (u64, f64, f64)> = HashMap::new();
        for stack in &stacks {
            let Some(line) = alloc_sites::site_line(&stack.locations) else {
                continue;
            };
            let position = alloc_sites::position(line);
            let e = by_site
                .entry((line.function.clone(), position))
                .or_default();
            e.0 += stack.samples;
            e.1 += stack.bytes;
            e.2 += stack.objects;
        }
        let per_s = |v: f64| if window_s > 0.0 { v / window_s } else { 0.0 };
        let mut sites: Vec<AllocSite> = by_site
            .into_iter()
            .map(
                |((function, position), (samples, bytes, objects))| AllocSite {
                    function,
                    position,
                    samples,
                    bytes_share: if total > 0 { bytes / total as f64 } else { 0.0 },
                    bytes_per_s: per_s(bytes),
                    objects_per_s: per_s(objects),
                    escape: None,
                },
            )
            .collect();
        sites.sort_by(|a, b| b.bytes_per_s.total_cmp(&a.bytes_per_s));
        AllocSites {
            source: SitesSource::SpanRefillProbes,
            sampling_rate_bytes: None,
            sites,
            samples: self.samples,
            unattributed_share: if total > 0 {
                unattributed as f64 / total as f64
            } else {
                0.0
            },
            live_sites: None,
            skipped: None,
        }
    }

    /// A pprof allocation profile (alloc_objects/count, alloc_space/bytes)
    /// whose totals are the runtime's exact counts for the window, shared
    /// among the sampled stacks; leading runtime frames trimmed as
    /// runtime/pprof of Go `go` trims them.
    pub fn pprof(
        &self,
        exact: &ExactAllocation,
        go: GoVersion,
        duration_ns: u64,
    ) -> std::io::Result<Vec<u8>> {
        let (stacks, _) = self.attribute(exact);
        let mut profile = Profile::new(
            &[("alloc_objects", "count"), ("alloc_space", "bytes")],
            ("space", "bytes"),
            PAGE,
        );
        for stack in stacks {
            profile.add(
                &alloc_sites::trim_for_pprof(stack.locations, go),
                &[stack.objects.round() as i64, stack.bytes.round() as i64],
            );
        }
        profile.encode(duration_ns)
    }
}

impl ExactAllocation {
    /// The allocation between two readings of the runtime.
    pub fn between(
        first: &crate::runtime::snapshot::AllocCounters,
        last: &crate::runtime::snapshot::AllocCounters,
        class_sizes: &[u64],
    ) -> Self {
        let delta = last.since(first, class_sizes);
        Self {
            class_bytes: delta.class_bytes,
            class_sizes: class_sizes.to_vec(),
            large_bytes: delta.large_bytes,
            large_objects: delta.large_objects,
        }
    }
}

//! cgo call latency: probes at runtime.cgocall's start and every RET, the
//! call site from the return address; latency in a fine histogram (about
//! 6% resolution) and per-site counts, aggregated in the kernel; for
//! `goscope trace`, each call from the `CGO_EVENTS` ring as well
//! (`enable_events`, `drain_events`).

use anyhow::{Context as _, anyhow};
use aya::maps::{PerCpuArray, PerCpuHashMap};
use observer_common::{
    CgoCallEvent, CgoSiteSlot, CgoSiteStats, FINE_SLOTS, FINE_SUB_BUCKETS, FineHistogram,
};
use serde::Serialize;

use super::{AttachedLink, ProbeSession};
use crate::{
    binary::GoBinary,
    probe_points::{self, ProbePoint},
    probes::latency::percentiles,
    runtime::histogram::Percentiles,
    symbols::Symbolizer,
};

use probe_points::CGOCALL;
pub const CGO_ENTER_PROGRAM: &str = "cgo_enter";
pub const CGO_EXIT_PROGRAM: &str = "cgo_exit";

pub struct CgoProbes {
    enter: ProbePoint,
    returns: Vec<ProbePoint>,
}

impl CgoProbes {
    /// The entry probe and one per RET.
    pub fn link_count(&self) -> usize {
        1 + self.returns.len()
    }

    /// The kernel programs the cgo probes run (their run statistics are
    /// what the target pays).
    pub const PROGRAMS: &'static [&'static str] = &[CGO_ENTER_PROGRAM, CGO_EXIT_PROGRAM];

    pub fn resolve(binary: &GoBinary) -> anyhow::Result<Self> {
        Ok(Self {
            enter: probe_points::resolve(binary, CGOCALL)?,
            returns: probe_points::return_points(binary, CGOCALL)?,
        })
    }

    pub fn attach(
        &self,
        session: &mut ProbeSession,
        exe: &std::path::Path,
        pid: std::num::NonZeroU32,
    ) -> anyhow::Result<Vec<AttachedLink>> {
        session.attach_timed(
            (CGO_ENTER_PROGRAM, &self.enter),
            (CGO_EXIT_PROGRAM, &self.returns),
            exe,
            pid,
        )
    }
}

/// One cgo call site.
#[derive(Clone, Debug, Serialize)]
pub struct CgoSite {
    pub function: String,
    pub calls_timed: u64,
    pub mean_ns: f64,
    /// This site's latency distribution.
    pub latency_ns: Option<Percentiles>,
}

/// Timed cgo calls so far.
#[derive(Clone, Debug, Serialize)]
pub struct CgoLatency {
    pub latency_ns: Option<Percentiles>,
    pub sites: Vec<CgoSite>,
}

/// Lower bound (ns) of fine slot `i`: (16 + sub) · 2^top / 16.
fn fine_bound(i: usize) -> f64 {
    let top = (i / FINE_SUB_BUCKETS as usize) as i32;
    let sub = (i % FINE_SUB_BUCKETS as usize) as f64;
    (16.0 + sub) * 2f64.powi(top) / 16.0
}

impl CgoLatency {
    pub fn read(session: &ProbeSession, symbolizer: &Symbolizer) -> anyhow::Result<Self> {
        let ebpf = session.ebpf();
        let hist = PerCpuArray::<_, FineHistogram>::try_from(
            ebpf.map("CGO_HIST")
                .ok_or_else(|| anyhow!("no CGO_HIST map"))?,
        )?;
        let mut counts = vec![0u64; FINE_SLOTS as usize];
        for h in hist.get(&0, 0).context("reading CGO_HIST")?.iter() {
            for (sum, v) in counts.iter_mut().zip(h.slots.iter()) {
                *sum += v;
            }
        }
        let bounds: Vec<f64> = (0..=counts.len()).map(fine_bound).collect();
        let sites_map: PerCpuHashMap<_, u64, CgoSiteStats> = PerCpuHashMap::try_from(
            ebpf.map("CGO_SITES")
                .ok_or_else(|| anyhow!("no CGO_SITES map"))?,
        )?;
        let mut by_function: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for entry in sites_map.iter() {
            let (pc, per_cpu) = entry.context("reading CGO_SITES")?;
            let name = symbolizer
                .function(pc.saturating_sub(1))
                .unwrap_or("[unknown]")
                .to_string();
            let e = by_function.entry(name).or_default();
            for s in per_cpu.iter() {
                e.0 += s.calls;
                e.1 += s.total_ns;
            }
        }
        let site_hist: PerCpuHashMap<_, CgoSiteSlot, u64> = PerCpuHashMap::try_from(
            ebpf.map("CGO_SITE_HIST")
                .ok_or_else(|| anyhow!("no CGO_SITE_HIST map"))?,
        )?;
        let mut histograms: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for entry in site_hist.iter() {
            let (key, per_cpu) = entry.context("reading CGO_SITE_HIST")?;
            let name = symbolizer
                .function(key.site.saturating_sub(1))
                .unwrap_or("[unknown]")
                .to_string();
            let h = histograms
                .entry(name)
                .or_insert_with(|| vec![0; FINE_SLOTS as usize]);
            if let Some(slot) = h.get_mut(key.slot as usize) {
                *slot += per_cpu.iter().sum::<u64>();
            }
        }
        let mut sites: Vec<CgoSite> = by_function
            .into_iter()
            .map(|(function, (calls, total))| CgoSite {
                latency_ns: histograms
                    .get(&function)
                    .and_then(|h| percentiles(h, &bounds)),
                function,
                calls_timed: calls,
                mean_ns: if calls > 0 {
                    total as f64 / calls as f64
                } else {
                    0.0
                },
            })
            .collect();
        sites.sort_by(|a, b| {
            (b.mean_ns * b.calls_timed as f64).total_cmp(&(a.mean_ns * a.calls_timed as f64))
        });
        Ok(Self {
            latency_ns: percentiles(&counts, &bounds),
            sites,
        })
    }
}

/// Most calls taken from the ring in one drain (the rest wait).
const MAX_DRAINED: usize = 1 << 14;

/// Asks `cgo_exit` for each call (`drain_events` takes them).
pub fn enable_events(session: &mut ProbeSession) -> anyhow::Result<()> {
    session.switch_on("CGO_EVENTS_ON")
}

/// The cgo calls that returned since the last drain, oldest first.
pub fn drain_events(session: &mut ProbeSession) -> anyhow::Result<Vec<CgoCallEvent>> {
    session.drain_ring("CGO_EVENTS", MAX_DRAINED)
}

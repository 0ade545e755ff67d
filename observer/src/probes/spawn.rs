//! Goroutine creation sites from a probe after runtime.newproc's stack
//! check (the return address names the function holding the `go`
//! statement). Not attached by doctor and top: they take creation sites
//! from the goroutine table in memory (`runtime::goroutines`), which costs
//! the target nothing; this probe costs a trap per `go` statement.

use anyhow::{Context as _, anyhow};
use aya::maps::PerCpuHashMap;
use serde::Serialize;

use super::{AttachedLink, ProbeSession};
use crate::{
    binary::GoBinary,
    probe_points::{self, ProbePoint},
    runtime::goroutines::{CreationSite, CreationSites, CreationSource},
    symbols::Symbolizer,
};

pub const SPAWN_PROGRAM: &str = "goroutine_spawn";

pub struct SpawnProbe {
    point: ProbePoint,
}

impl SpawnProbe {
    pub fn resolve(binary: &GoBinary) -> anyhow::Result<Self> {
        Ok(Self {
            point: probe_points::resolve(binary, probe_points::NEWPROC)?,
        })
    }

    pub fn attach(
        &self,
        session: &mut ProbeSession,
        exe: &std::path::Path,
        pid: std::num::NonZeroU32,
    ) -> anyhow::Result<Vec<AttachedLink>> {
        Ok(vec![session.attach_link(
            SPAWN_PROGRAM,
            &self.point,
            None,
            exe,
            pid,
        )?])
    }
}

/// Goroutines created from one function's `go` statements.
#[derive(Clone, Debug, Serialize)]
pub struct SpawnSite {
    pub function: String,
    /// Creations counted while the probe was attached.
    pub created_sampled: u64,
    /// Creations per second over the window: the site's share of the
    /// sampled creations times the exact total the runtime counted.
    pub per_s: f64,
}

/// Reads the per-site counts, largest first.
pub fn read_sites(
    session: &ProbeSession,
    symbolizer: &Symbolizer,
    created_total: u64,
    window_s: f64,
) -> anyhow::Result<Vec<SpawnSite>> {
    let map: PerCpuHashMap<_, u64, u64> = PerCpuHashMap::try_from(
        session
            .ebpf()
            .map("SPAWN_SITES")
            .ok_or_else(|| anyhow!("no SPAWN_SITES map"))?,
    )?;
    let mut by_function: std::collections::BTreeMap<String, u64> = Default::default();
    for entry in map.iter() {
        let (pc, per_cpu) = entry.context("reading SPAWN_SITES")?;
        let name = symbolizer
            .function(pc.saturating_sub(1))
            .unwrap_or("[unknown]")
            .to_string();
        *by_function.entry(name).or_default() += per_cpu.iter().sum::<u64>();
    }
    let sampled: u64 = by_function.values().sum();
    let scale = if sampled > 0 && window_s > 0.0 {
        created_total as f64 / sampled as f64 / window_s
    } else {
        0.0
    };
    let mut sites: Vec<SpawnSite> = by_function
        .into_iter()
        .map(|(function, created)| SpawnSite {
            function,
            created_sampled: created,
            per_s: created as f64 * scale,
        })
        .collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.created_sampled));
    Ok(sites)
}

/// The probe's sites as a report's creation sites; `sampled_fraction` is
/// the fraction of the window the probe was attached.
pub fn creation_sites(sites: &[SpawnSite], sampled_fraction: f64) -> CreationSites {
    let sampled: u64 = sites.iter().map(|s| s.created_sampled).sum();
    CreationSites {
        source: CreationSource::NewprocProbe,
        sites: sites
            .iter()
            .map(|s| CreationSite {
                function: s.function.clone(),
                position: String::new(),
                per_s: s.per_s,
                share: if sampled > 0 {
                    s.created_sampled as f64 / sampled as f64
                } else {
                    0.0
                },
                created_sampled: s.created_sampled,
            })
            .collect(),
        sampled_fraction,
        covered_fraction: None,
        readings: None,
        failed_readings: None,
        last_error: None,
        live: Vec::new(),
        live_skipped: None,
        stack_sizes: None,
        skipped: None,
    }
}

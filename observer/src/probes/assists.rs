//! Mark-assist latency: probes at the start of runtime.gcAssistAlloc, at
//! every RET in it (found by decoding its instructions; never uretprobes)
//! and on runtime.gcParkAssist; the kernel keeps a log2 histogram and the
//! goroutines that assisted, drained here once per GC cycle.

use anyhow::{Context as _, anyhow};
use aya::maps::HashMap;
use observer_common::{ASSIST_HIST_SLOTS, ASSIST_PARKED_BASE};
use serde::Serialize;

use super::{
    ASSIST_ENTER_PROGRAM, ASSIST_EXIT_PROGRAM, ASSIST_PARK_PROGRAM, ProbeSession, per_cpu_sum,
};
use crate::{
    binary::{
        GoBinary,
        prologue::{self, Placement},
    },
    probe_points::{self, ProbePoint},
    runtime::histogram::{Percentiles, percentiles},
};

const ASSIST_FUNCTION: &str = "runtime.gcAssistAlloc";
const PARK_FUNCTION: &str = "runtime.gcParkAssist";

/// Where the assist probes go in one binary.
pub struct AssistProbes {
    pub enter: ProbePoint,
    pub returns: Vec<ProbePoint>,
    pub park: ProbePoint,
}

impl AssistProbes {
    pub fn resolve(binary: &GoBinary) -> anyhow::Result<Self> {
        let enter = probe_points::resolve(binary, ASSIST_FUNCTION)?;
        let park = probe_points::resolve(binary, PARK_FUNCTION)?;
        let symbol = binary
            .functions
            .get(ASSIST_FUNCTION)
            .ok_or_else(|| anyhow!("{ASSIST_FUNCTION} not found"))?;
        let code = binary
            .bytes_at(symbol.address, symbol.size)
            .ok_or_else(|| anyhow!("{ASSIST_FUNCTION}: bytes not in the file"))?;
        let returns = prologue::return_sites(symbol.address, code)
            .with_context(|| format!("decoding {ASSIST_FUNCTION}"))?
            .into_iter()
            .map(|address| {
                Ok(ProbePoint {
                    function: format!("{ASSIST_FUNCTION} (RET)"),
                    entry: symbol.address,
                    address,
                    file_offset: binary
                        .file_offset(address)
                        .ok_or_else(|| anyhow!("RET at {address:#x} not in the file"))?,
                    placement: Placement::Entry,
                    source: symbol.source,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if returns.is_empty() {
            anyhow::bail!("{ASSIST_FUNCTION} has no RET instruction; refusing to time it");
        }
        Ok(Self {
            enter,
            returns,
            park,
        })
    }

    pub fn attach(&self, session: &mut ProbeSession, exe: &std::path::Path) -> anyhow::Result<()> {
        session.attach(ASSIST_ENTER_PROGRAM, &self.enter, None, exe)?;
        for ret in &self.returns {
            session.attach(ASSIST_EXIT_PROGRAM, ret, None, exe)?;
        }
        session.attach(ASSIST_PARK_PROGRAM, &self.park, None, exe)
    }
}

/// Assists completed since the previous drain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AssistSummary {
    pub count: u64,
    pub goroutines: u64,
    pub parked: u64,
    /// Latency percentiles (ns, upper bounds of log2 buckets).
    pub latency_ns: Option<Percentiles>,
}

/// Cumulative histogram state, to diff between drains.
#[derive(Default)]
pub struct AssistReader {
    previous: Vec<u64>,
}

impl AssistReader {
    /// Assists since the last call: drains the per-goroutine map and diffs
    /// the cumulative histogram.
    pub fn drain(&mut self, session: &mut ProbeSession) -> anyhow::Result<AssistSummary> {
        let mut goroutines = 0;
        let mut count = 0;
        {
            let map = session
                .ebpf_mut()
                .map_mut("ASSIST_GOROUTINES")
                .ok_or_else(|| anyhow!("kernel object lacks map ASSIST_GOROUTINES"))?;
            let mut per_g: HashMap<_, u64, u64> = HashMap::try_from(map)?;
            let keys: Vec<u64> = per_g.keys().filter_map(Result::ok).collect();
            for g in keys {
                if let Ok(n) = per_g.get(&g, 0) {
                    count += n;
                    goroutines += 1;
                }
                let _ = per_g.remove(&g);
            }
        }
        if goroutines == 0 && !self.previous.is_empty() {
            return Ok(AssistSummary::default());
        }
        let now: Vec<u64> = (0..ASSIST_HIST_SLOTS)
            .map(|slot| per_cpu_sum(session.ebpf(), "ASSIST_HIST", slot))
            .collect::<anyhow::Result<_>>()?;
        let delta: Vec<u64> = now
            .iter()
            .zip(self.previous.iter().chain(std::iter::repeat(&0)))
            .map(|(n, p)| n.saturating_sub(*p))
            .collect();
        self.previous = now;
        let base = ASSIST_PARKED_BASE as usize;
        let parked: u64 = delta[base..].iter().sum();
        // Both halves together give the latency of every assist.
        let combined: Vec<u64> = (0..base).map(|i| delta[i] + delta[base + i]).collect();
        let bounds: Vec<f64> = (0..=base)
            .map(|i| if i == 0 { 0.0 } else { (1u128 << i) as f64 })
            .collect();
        Ok(AssistSummary {
            count: count.max(combined.iter().sum()),
            goroutines,
            parked,
            latency_ns: percentiles(&combined, &bounds),
        })
    }
}

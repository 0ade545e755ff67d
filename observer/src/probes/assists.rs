//! Mark-assist latency: probes at the start of runtime.gcAssistAlloc, at
//! every RET in it (found by decoding its instructions; never uretprobes)
//! and on runtime.gcParkAssist; the kernel keeps a log2 histogram and the
//! goroutines that assisted, drained here once per GC cycle.

use anyhow::{Context as _, anyhow};
use aya::maps::{HashMap, PerCpuArray};
use observer_common::{ASSIST_HIST_SLOTS, ASSIST_PARKED_BASE, AssistEvent, AssistHistogram};
use serde::Serialize;

use super::AttachedLink;
use super::{
    ASSIST_ENTER_PROGRAM, ASSIST_EXIT_PROGRAM, ASSIST_PARK_PROGRAM, ASSIST_WORK_PROGRAM,
    ProbeSession,
};
use crate::{
    binary::GoBinary,
    probe_points::{self, ProbePoint},
    probes::latency::percentiles,
    runtime::histogram::Percentiles,
};

use probe_points::{
    GC_ASSIST as ASSIST_FUNCTION, GC_ASSIST_WORK as WORK_FUNCTION, GC_PARK_ASSIST as PARK_FUNCTION,
};

/// Where the assist probes go in one binary.
pub struct AssistProbes {
    pub enter: ProbePoint,
    pub returns: Vec<ProbePoint>,
    pub park: ProbePoint,
    pub work: ProbePoint,
}

impl AssistProbes {
    pub fn resolve(binary: &GoBinary) -> anyhow::Result<Self> {
        let enter = probe_points::resolve(binary, ASSIST_FUNCTION)?;
        let park = probe_points::resolve(binary, PARK_FUNCTION)?;
        let work = probe_points::resolve(binary, WORK_FUNCTION)?;
        let returns = probe_points::return_points(binary, ASSIST_FUNCTION)?;
        Ok(Self {
            enter,
            returns,
            park,
            work,
        })
    }

    /// Attaches every assist probe; the links detach them again.
    pub fn attach(
        &self,
        session: &mut ProbeSession,
        exe: &std::path::Path,
        pid: std::num::NonZeroU32,
    ) -> anyhow::Result<Vec<AttachedLink>> {
        let mut links = session.attach_timed(
            (ASSIST_ENTER_PROGRAM, &self.enter),
            (ASSIST_EXIT_PROGRAM, &self.returns),
            exe,
            pid,
        )?;
        links.push(session.attach_link(ASSIST_WORK_PROGRAM, &self.work, None, exe, pid)?);
        links.push(session.attach_link(ASSIST_PARK_PROGRAM, &self.park, None, exe, pid)?);
        Ok(links)
    }

    /// Probe hits an assist summary stands for (entry, RET, scan, park).
    /// The kernel programs the assist probes run (their run statistics
    /// are what the target pays).
    pub const PROGRAMS: &'static [&'static str] = &[
        ASSIST_ENTER_PROGRAM,
        ASSIST_EXIT_PROGRAM,
        ASSIST_WORK_PROGRAM,
        ASSIST_PARK_PROGRAM,
    ];

    pub fn hits(summary: &AssistSummary) -> u64 {
        2 * (summary.count + summary.credit_steals) + summary.count + summary.parked
    }
}

/// Assists completed since the previous drain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AssistSummary {
    /// Assists that scanned or parked (what the runtime's assist CPU counts).
    pub count: u64,
    /// gcAssistAlloc calls paid from background credit, without work.
    pub credit_steals: u64,
    pub goroutines: u64,
    pub parked: u64,
    /// Latency percentiles (ns, upper bounds of log2 buckets).
    pub latency_ns: Option<Percentiles>,
}

/// Cumulative histogram state, to diff between drains.
#[derive(Default)]
pub struct AssistReader {
    previous: Vec<u64>,
    previous_steals: u64,
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
        let steals_now = session.counter(observer_common::CounterSlot::AssistCreditSteals)?;
        let credit_steals = steals_now.saturating_sub(self.previous_steals);
        self.previous_steals = steals_now;
        if goroutines == 0 && !self.previous.is_empty() {
            return Ok(AssistSummary {
                credit_steals,
                ..Default::default()
            });
        }
        let now = read_histogram(session)?;
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
            credit_steals,
            goroutines,
            parked,
            latency_ns: percentiles(&combined, &bounds),
        })
    }
}

/// The cumulative histogram, summed over CPUs (one map lookup).
fn read_histogram(session: &ProbeSession) -> anyhow::Result<Vec<u64>> {
    let map = session
        .ebpf()
        .map("ASSIST_HIST")
        .ok_or_else(|| anyhow!("kernel object lacks map ASSIST_HIST"))?;
    let array = PerCpuArray::<_, AssistHistogram>::try_from(map)?;
    let per_cpu = array.get(&0, 0).context("reading ASSIST_HIST")?;
    let mut total = vec![0u64; ASSIST_HIST_SLOTS as usize];
    for hist in per_cpu.iter() {
        for (sum, v) in total.iter_mut().zip(hist.slots.iter()) {
            *sum += v;
        }
    }
    Ok(total)
}

/// Most assists taken from the ring in one drain (the rest wait).
const MAX_DRAINED: usize = 1 << 14;

/// Asks `assist_exit` for each assist (`drain_events` takes them).
pub fn enable_events(session: &mut ProbeSession) -> anyhow::Result<()> {
    session.switch_on("ASSIST_EVENTS_ON")
}

/// The assists that ended since the last drain, oldest first.
pub fn drain_events(session: &mut ProbeSession) -> anyhow::Result<Vec<AssistEvent>> {
    session.drain_ring("ASSIST_EVENTS", MAX_DRAINED)
}

//! High-frequency probe sets run under the overhead governor: each
//! knows how to attach itself and which kernel counter holds its hits.

use std::{num::NonZeroU32, path::Path};

use observer_common::CounterSlot;

use super::{
    AttachedLink, ProbeSession,
    alloc::AllocProbe,
    cgo::CgoProbes,
    governor::{Action, Governor},
    spawn::SpawnProbe,
};

pub enum ProbeSet {
    /// cgo call latency: entry and one RET per call.
    Cgo(CgoProbes),
    /// Goroutine creation sites: one hit per `go` statement.
    Spawn(SpawnProbe),
    /// Allocation sites: one hit per heap-profile sample (about one per
    /// MemProfileRate bytes allocated).
    Alloc(AllocProbe),
}

impl ProbeSet {
    fn attach(
        &self,
        session: &mut ProbeSession,
        exe: &Path,
        pid: NonZeroU32,
    ) -> anyhow::Result<Vec<AttachedLink>> {
        match self {
            ProbeSet::Cgo(p) => p.attach(session, exe, pid),
            ProbeSet::Spawn(p) => p.attach(session, exe, pid),
            ProbeSet::Alloc(p) => p.attach(session, exe, pid),
        }
    }

    /// The kernel counter the set's programs add their hits to.
    fn hit_counter(&self) -> CounterSlot {
        match self {
            ProbeSet::Cgo(_) => CounterSlot::CgoProbeHits,
            ProbeSet::Spawn(_) => CounterSlot::SpawnProbeHits,
            ProbeSet::Alloc(_) => CounterSlot::AllocProbeHits,
        }
    }
}

/// Probe sets sharing one governor (the budget is a total): attached and
/// detached together, so every figure from them has the same sampled
/// fraction.
pub struct Governed {
    pub sets: Vec<ProbeSet>,
    links: Option<Vec<AttachedLink>>,
    pub governor: Governor,
    pid: NonZeroU32,
    hits_seen: u64,
}

impl Governed {
    pub fn attach(
        sets: Vec<ProbeSet>,
        session: &mut ProbeSession,
        exe: &Path,
        pid: NonZeroU32,
        governor: Governor,
    ) -> anyhow::Result<Self> {
        let mut governed = Self {
            sets,
            links: None,
            governor,
            pid,
            hits_seen: 0,
        };
        governed.links = Some(governed.attach_all(session, exe)?);
        Ok(governed)
    }

    fn attach_all(
        &self,
        session: &mut ProbeSession,
        exe: &Path,
    ) -> anyhow::Result<Vec<AttachedLink>> {
        let mut links = Vec::new();
        for set in &self.sets {
            links.extend(set.attach(session, exe, self.pid)?);
        }
        Ok(links)
    }

    /// Feeds the hits since the last step to the governor and detaches or
    /// re-attaches as it decides.
    pub fn step(
        &mut self,
        session: &mut ProbeSession,
        exe: &Path,
        target_cpu_ns: u64,
    ) -> anyhow::Result<()> {
        let mut hits = 0;
        for set in &self.sets {
            hits += session.counter(set.hit_counter())?;
        }
        self.governor
            .record_hits(hits.saturating_sub(self.hits_seen));
        self.hits_seen = hits;
        match self.governor.tick(target_cpu_ns) {
            Action::Detach => {
                for link in self.links.take().unwrap_or_default() {
                    session.detach(link)?;
                }
            }
            Action::Attach => self.links = Some(self.attach_all(session, exe)?),
            Action::Keep => {}
        }
        Ok(())
    }
}

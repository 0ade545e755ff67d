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

/// A probe set, its links while attached, and its governor.
pub struct Governed {
    pub set: ProbeSet,
    links: Option<Vec<AttachedLink>>,
    pub governor: Governor,
    pid: NonZeroU32,
    hits_seen: u64,
}

impl Governed {
    pub fn attach(
        set: ProbeSet,
        session: &mut ProbeSession,
        exe: &Path,
        pid: NonZeroU32,
        governor: Governor,
    ) -> anyhow::Result<Self> {
        let links = set.attach(session, exe, pid)?;
        Ok(Self {
            set,
            links: Some(links),
            governor,
            pid,
            hits_seen: 0,
        })
    }

    /// Feeds the hits since the last step to the governor and detaches or
    /// re-attaches as it decides.
    pub fn step(
        &mut self,
        session: &mut ProbeSession,
        exe: &Path,
        target_cpu_ns: u64,
    ) -> anyhow::Result<()> {
        let hits = session.counter(self.set.hit_counter())?;
        self.governor
            .record_hits(hits.saturating_sub(self.hits_seen));
        self.hits_seen = hits;
        match self.governor.tick(target_cpu_ns) {
            Action::Detach => {
                for link in self.links.take().unwrap_or_default() {
                    session.detach(link)?;
                }
            }
            Action::Attach => self.links = Some(self.set.attach(session, exe, self.pid)?),
            Action::Keep => {}
        }
        Ok(())
    }
}

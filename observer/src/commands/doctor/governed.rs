//! High-frequency probe sets doctor runs under the overhead governor: each
//! knows how to attach itself and how many probe hits a window's event
//! counts (read from memory, at no cost) stand for.

use std::{num::NonZeroU32, path::Path};

use super::Sample;
use crate::probes::{
    AttachedLink, ProbeSession,
    cgo::CgoProbes,
    governor::{Action, Governor},
    spawn::SpawnProbe,
};

pub enum ProbeSet {
    /// cgo call latency: entry and one RET per call.
    Cgo(CgoProbes),
    /// Goroutine creation sites: one hit per `go` statement.
    Spawn(SpawnProbe),
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
        }
    }

    fn hits(&self, previous: &Sample, now: &Sample) -> u64 {
        let (a, b) = (&previous.runtime, &now.runtime);
        match self {
            ProbeSet::Cgo(_) => 2 * b.cgo_calls.saturating_sub(a.cgo_calls),
            ProbeSet::Spawn(_) => b.goroutines_created.saturating_sub(a.goroutines_created),
        }
    }
}

/// A probe set, its links while attached, and its governor.
pub struct Governed {
    pub set: ProbeSet,
    links: Option<Vec<AttachedLink>>,
    pub governor: Governor,
    pid: NonZeroU32,
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
        })
    }

    /// Feeds the window's event rate to the governor and detaches or
    /// re-attaches as it decides.
    pub fn step(
        &mut self,
        session: &mut ProbeSession,
        exe: &Path,
        previous: &Sample,
        now: &Sample,
    ) -> anyhow::Result<()> {
        if self.links.is_some() {
            self.governor.record_hits(self.set.hits(previous, now));
        }
        match self.governor.tick(now.cpu_ns) {
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

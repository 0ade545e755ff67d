//! High-frequency probe sets run under the overhead governor: each
//! knows how to attach itself and which kernel counter holds its hits.

use std::{num::NonZeroU32, path::Path};

use observer_common::CounterSlot;

use crate::runtime::RuntimeSnapshot;

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

    /// Probe hits per second the set would see, predicted from two readings
    /// of the runtime's counters `seconds` apart.
    fn predicted_hits(
        &self,
        previous: &RuntimeSnapshot,
        now: &RuntimeSnapshot,
        class_sizes: &[u64],
    ) -> f64 {
        match self {
            // Entry and one RET per call.
            ProbeSet::Cgo(_) => 2.0 * now.cgo_calls.saturating_sub(previous.cgo_calls) as f64,
            ProbeSet::Spawn(_) => {
                now.goroutines_created
                    .saturating_sub(previous.goroutines_created) as f64
            }
            // One refill per span (at least 8 KiB) and one hit per large
            // object: an upper bound.
            ProbeSet::Alloc(_) => {
                let (_, bytes_now) = now.alloc.totals(class_sizes);
                let (_, bytes_then) = previous.alloc.totals(class_sizes);
                let large = now
                    .alloc
                    .large_objects
                    .saturating_sub(previous.alloc.large_objects);
                let large_bytes = now
                    .alloc
                    .large_bytes
                    .saturating_sub(previous.alloc.large_bytes);
                let small = bytes_now
                    .saturating_sub(bytes_then)
                    .saturating_sub(large_bytes);
                small as f64 / 8192.0 + large as f64
            }
        }
    }

    /// The kernel programs the set attaches.
    fn programs(&self) -> &'static [&'static str] {
        match self {
            ProbeSet::Cgo(_) => &[super::cgo::CGO_ENTER_PROGRAM, super::cgo::CGO_EXIT_PROGRAM],
            ProbeSet::Spawn(_) => &[super::spawn::SPAWN_PROGRAM],
            ProbeSet::Alloc(_) => &[super::alloc::REFILL_PROGRAM, super::alloc::LARGE_PROGRAM],
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
    body_ns_seen: u64,
    next_step: std::time::Instant,
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
            body_ns_seen: 0,
            next_step: std::time::Instant::now(),
        };
        // Load every program now (the verifier runs), so a refused one fails
        // before the window; attaching waits for the governor (a trial
        // attach on a busy target would already cost more than the budget).
        for set in &governed.sets {
            for program in set.programs() {
                session.load_uprobe(program)?;
            }
        }
        if governed.governor.is_on() {
            governed.links = Some(governed.attach_all(session, exe)?);
        }
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

    /// Tells the governor the hit rate the runtime's counters predict
    /// between two readings `seconds` apart.
    pub fn predict(
        &mut self,
        previous: &RuntimeSnapshot,
        now: &RuntimeSnapshot,
        class_sizes: &[u64],
        seconds: f64,
    ) {
        if seconds > 0.0 {
            let per_window: f64 = self
                .sets
                .iter()
                .map(|s| s.predicted_hits(previous, now, class_sizes))
                .sum();
            self.governor.predict_rate(per_window / seconds);
        }
    }

    fn hits(&self, session: &ProbeSession) -> anyhow::Result<u64> {
        let mut hits = 0;
        for set in &self.sets {
            hits += session.counter(set.hit_counter())?;
        }
        Ok(hits)
    }

    /// Feeds the hits since the last step to the governor and detaches or
    /// re-attaches as it decides (a timed slice blocks for its length, at
    /// most one tick).
    pub fn step(
        &mut self,
        session: &mut ProbeSession,
        exe: &Path,
        target_cpu_ns: impl FnOnce() -> anyhow::Result<u64>,
    ) -> anyhow::Result<()> {
        let now = std::time::Instant::now();
        if now < self.next_step {
            return Ok(());
        }
        let target_cpu_ns = target_cpu_ns()?;
        let hits = self.hits(session)?;
        self.governor
            .record_hits(hits.saturating_sub(self.hits_seen));
        self.hits_seen = hits;
        let body_ns = session.counter(CounterSlot::GovernedProbeNs)?;
        self.governor
            .record_body_ns(body_ns.saturating_sub(self.body_ns_seen));
        self.body_ns_seen = body_ns;
        let action = self.governor.tick(target_cpu_ns);
        if std::env::var_os("GOSCOPE_GOVERNOR_LOG").is_some() && action != Action::Keep {
            eprintln!("governor: {action:?} {:?}", self.governor);
        }
        match action {
            Action::AttachFor(slice) => {
                let links = self.attach_all(session, exe)?;
                let started = std::time::Instant::now();
                std::thread::sleep(slice);
                for link in links {
                    session.detach(link)?;
                }
                let attached = started.elapsed();
                let hits = self.hits(session)?;
                self.governor
                    .slice_done(hits.saturating_sub(self.hits_seen), attached);
                self.hits_seen = hits;
            }
            Action::Detach => {
                for link in self.links.take().unwrap_or_default() {
                    session.detach(link)?;
                }
            }
            Action::Attach => self.links = Some(self.attach_all(session, exe)?),
            Action::Keep => {}
        }
        self.next_step = now
            + if self.governor.is_on() {
                super::governor::POLL
            } else {
                super::governor::TICK
            };
        Ok(())
    }
}

//! High-frequency probe sets run under the overhead governor: each knows
//! how to attach itself, which programs it runs (their kernel run
//! statistics are what the target pays) and what hit rate the runtime's
//! counters predict for it.

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
    /// A short name for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeSet::Cgo(_) => "cgo",
            ProbeSet::Spawn(_) => "spawn",
            ProbeSet::Alloc(_) => "alloc",
        }
    }

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

    /// How many probes the set attaches.
    fn link_count(&self) -> usize {
        match self {
            ProbeSet::Cgo(p) => p.link_count(),
            ProbeSet::Spawn(_) => 1,
            ProbeSet::Alloc(_) => 2,
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

/// One probe set under its own governor, and its links while attached.
pub struct GovernedSet {
    pub set: ProbeSet,
    pub governor: Governor,
    links: Option<Vec<AttachedLink>>,
}

/// Probe sets sharing one budget (the budget is a total): each set is
/// decided on its own (a cheap cgo set can be attached while an expensive
/// allocation set stays off), the cheapest first, each attached at most
/// once per window, and each charged against what the others claim.
pub struct Governed {
    pub sets: Vec<GovernedSet>,
    pid: NonZeroU32,
    next_step: std::time::Instant,
}

impl Governed {
    /// Loads every program of `sets` now (the verifier runs, so a refused
    /// program fails before the window); attaching waits for the governor.
    /// `governor` is the template every set's governor starts from;
    /// `costs` (from `calibrate::costs`) prices each set's attach and detach.
    pub fn attach(
        sets: Vec<ProbeSet>,
        session: &mut ProbeSession,
        exe: &Path,
        pid: NonZeroU32,
        governor: Governor,
        costs: &super::calibrate::Costs,
    ) -> anyhow::Result<Self> {
        for set in &sets {
            for program in set.programs() {
                session.load_uprobe(program)?;
            }
        }
        let mut governed = Self {
            sets: sets
                .into_iter()
                .map(|set| GovernedSet {
                    governor: governor
                        .clone()
                        .with_link_costs(costs.links(set.link_count())),
                    set,
                    links: None,
                })
                .collect(),
            pid,
            next_step: std::time::Instant::now(),
        };
        // --overhead-budget off attaches at the first step.
        let _ = governed.step(session, exe, || Ok(0))?;
        Ok(governed)
    }

    /// Tells each set's governor the hit rate the runtime's counters
    /// predict between two readings `seconds` apart.
    pub fn predict(
        &mut self,
        previous: &RuntimeSnapshot,
        now: &RuntimeSnapshot,
        class_sizes: &[u64],
        seconds: f64,
    ) {
        if seconds > 0.0 {
            for g in &mut self.sets {
                let hits = g.set.predicted_hits(previous, now, class_sizes);
                g.governor.predict_rate(hits / seconds);
            }
        }
    }

    /// Every run of a set's programs and their time, as the kernel counts
    /// them (BPF run statistics); the programs' own hit counters when the
    /// kernel keeps no statistics.
    fn measured(set: &ProbeSet, session: &ProbeSession) -> anyhow::Result<(u64, u64)> {
        let (mut hits, mut run_ns) = (0, 0);
        for program in set.programs() {
            if let Some(stats) = session.run_stats(program) {
                hits += stats.runs;
                run_ns += stats.run_ns;
            }
        }
        if !session.has_run_stats() {
            hits = session.counter(set.hit_counter())?;
        }
        Ok((hits, run_ns))
    }

    /// Feeds what each set cost so far to its governor and attaches or
    /// detaches as they decide, the cheapest set first. True when a set was
    /// attached in this step (callers then check the target is still the
    /// process they pinned: probes are bound to its pid).
    pub fn step(
        &mut self,
        session: &mut ProbeSession,
        exe: &Path,
        target_cpu_ns: impl FnOnce() -> anyhow::Result<u64>,
    ) -> anyhow::Result<bool> {
        let now = std::time::Instant::now();
        if now < self.next_step {
            return Ok(false);
        }
        self.next_step = now + super::governor::POLL;
        // Every set decided for good (declined or detached): nothing to do
        // until `finish` takes the final count.
        if self.sets.iter().all(|g| g.governor.is_settled()) {
            return Ok(false);
        }
        let target_cpu_ns = target_cpu_ns()?;
        for g in &mut self.sets {
            let (hits, run_ns) = Self::measured(&g.set, session)?;
            g.governor.record(hits, run_ns);
        }
        let mut attached = false;
        let mut order: Vec<usize> = (0..self.sets.len()).collect();
        order.sort_by(|&a, &b| {
            self.sets[a]
                .governor
                .claim_ns()
                .total_cmp(&self.sets[b].governor.claim_ns())
        });
        for i in order {
            // What the other sets claim of the budget over the window.
            let reserved: f64 = self
                .sets
                .iter()
                .enumerate()
                .filter(|(j, g)| *j != i && g.governor.is_on())
                .map(|(_, g)| g.governor.claim_ns())
                .sum();
            let g = &mut self.sets[i];
            let action = g.governor.tick(target_cpu_ns, reserved);
            if std::env::var_os("GOSCOPE_GOVERNOR_LOG").is_some() && action != Action::Keep {
                eprintln!("governor: {} {action:?} {:?}", g.set.name(), g.governor);
            }
            match action {
                Action::Attach => {
                    g.links = Some(g.set.attach(session, exe, self.pid)?);
                    attached = true;
                }
                Action::Detach => {
                    if let Some(links) = g.links.take() {
                        session.detach_all(links)?;
                    }
                }
                Action::Keep => {}
            }
        }
        Ok(attached)
    }

    /// Ends the window: detaches what is attached (all links at once) and
    /// takes the final count of what the probes cost.
    pub fn finish(&mut self, session: &mut ProbeSession) -> anyhow::Result<()> {
        let links: Vec<AttachedLink> = self
            .sets
            .iter_mut()
            .filter_map(|g| {
                let links = g.links.take()?;
                g.governor.finish();
                Some(links)
            })
            .flatten()
            .collect();
        session.detach_all(links)?;
        for g in &mut self.sets {
            let (hits, run_ns) = Self::measured(&g.set, session)?;
            g.governor.record(hits, run_ns);
        }
        Ok(())
    }

    /// The governor of the first set of this kind (e.g. the cgo set's).
    pub fn governor_of(&self, kind: std::mem::Discriminant<ProbeSet>) -> Option<&Governor> {
        self.sets
            .iter()
            .find(|g| std::mem::discriminant(&g.set) == kind)
            .map(|g| &g.governor)
    }

    /// Fraction of the window the (first) set was attached.
    pub fn sampled_fraction(&self) -> f64 {
        self.sets
            .first()
            .map_or(0.0, |g| g.governor.sampled_fraction())
    }

    /// What all sets cost the target so far: (total, attach/detach part), ns.
    pub fn spent_ns(&self) -> (f64, f64) {
        self.sets.iter().fold((0.0, 0.0), |(t, l), g| {
            (t + g.governor.spent_ns(), l + g.governor.link_spent_ns())
        })
    }

    /// Calibrated trap per hit (the same for every set).
    pub fn hit_ns(&self) -> f64 {
        self.sets.first().map_or(0.0, |g| g.governor.cost_ns())
    }
}

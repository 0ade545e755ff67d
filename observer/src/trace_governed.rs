//! The lifecycle `goscope trace`'s per-call probe sources (mark assists,
//! cgo calls) share: attached from the start with calibrated costs,
//! drained into their tracks every tick, detached for good when the
//! overhead governor says so, summed up at the window's end. A
//! `SliceKind` (the kind's tracks) holds what differs: its probes, how its
//! ring becomes slices, its totals and its wording.

use std::{num::NonZeroU32, path::Path, time::Duration};

use anyhow::Context as _;

use crate::{
    binary::GoBinary,
    probes::{
        AttachedLink, GcSnapshotAddresses, ProbeSession, calibrate,
        detacher::Detacher,
        governor::{Action, Governor, Phase},
    },
    target::TargetProcess,
    trace_events::{TraceWriteError, TraceWriter, monotonic_ns},
};

/// How a kind's probes are found, attached, and read.
pub type Resolve<P> = fn(&GoBinary) -> anyhow::Result<P>;
pub type Attach<P> =
    fn(&P, &mut ProbeSession, &Path, NonZeroU32) -> anyhow::Result<Vec<AttachedLink>>;
pub type EnableEvents = fn(&mut ProbeSession) -> anyhow::Result<()>;
pub type DrainEvents<E> = fn(&mut ProbeSession) -> anyhow::Result<Vec<E>>;

/// How the notes and messages name a kind.
pub struct Wording {
    /// What the slices are: `no {slices}: why`.
    pub slices: &'static str,
    /// The probes, for the detach message.
    pub probes: &'static str,
    /// What the file lacks after a detach, for the detach message.
    pub after_detach: &'static str,
}

/// One kind of per-call slices: its tracks, fed from its probes' ring.
pub trait SliceKind: Sized {
    /// What the window counts.
    type Totals: Copy;
    /// Where the probes go in one binary.
    type Probes;
    /// What the kernel programs write to the ring, one per call.
    type Event;
    /// The kernel programs the probes run (their run statistics are what
    /// the target pays).
    const PROGRAMS: &'static [&'static str];
    const WORDING: Wording;
    /// The probes in a binary (an error when it has none).
    const RESOLVE: Resolve<Self::Probes>;
    /// Attaches the probes; the links detach them again.
    const ATTACH: Attach<Self::Probes>;
    /// Asks the kernel programs for events (`DRAIN_EVENTS` takes them).
    const ENABLE_EVENTS: EnableEvents;
    /// The events since the last drain, oldest first.
    const DRAIN_EVENTS: DrainEvents<Self::Event>;

    /// No tracks yet, for process `pid`.
    fn new(pid: u32) -> Self;
    /// Writes one event as a slice on its track (at most `kind_cap` a
    /// second).
    fn apply(
        &mut self,
        out: &mut TraceWriter,
        kind_cap: u32,
        event: &Self::Event,
    ) -> Result<(), TraceWriteError>;
    fn totals(&self) -> Self::Totals;
}

/// A kind's probes, attached, with their governor and tracks.
pub struct GovernedSource<K: SliceKind> {
    pub session: ProbeSession,
    pub links: Vec<AttachedLink>,
    pub governor: Governor,
    pub tracks: K,
}

impl<K: SliceKind> GovernedSource<K> {
    pub fn start(
        target: &TargetProcess,
        addresses: &GcSnapshotAddresses,
        budget: f64,
        window: Duration,
    ) -> anyhow::Result<Self> {
        let probes = K::RESOLVE(&target.binary)?;
        // The addresses give the kernel programs goid's offset in a g.
        let mut session = ProbeSession::load(target.pid, Some(addresses))?;
        let costs = calibrate::costs(&mut session).context("calibrating probe costs")?;
        let pid = NonZeroU32::new(target.pid).context("pid 0")?;
        K::ENABLE_EVENTS(&mut session)?;
        let links = K::ATTACH(&probes, &mut session, &target.exe_handle, pid)?;
        let governor = Governor::detached(budget, costs.hit_ns, target.cpu_time_ns()?)
            .with_window(window)
            .with_link_costs(costs.links(links.len()))
            .attached_from_start();
        Ok(Self {
            session,
            links,
            governor,
            tracks: K::new(target.pid),
        })
    }

    pub fn drain(&mut self, out: &mut TraceWriter, kind_cap: u32) -> anyhow::Result<()> {
        for event in K::DRAIN_EVENTS(&mut self.session)? {
            self.tracks.apply(out, kind_cap, &event)?;
        }
        Ok(())
    }

    /// Records what the probes cost and says whether the governor wants
    /// them detached for good (with its reason then).
    pub fn govern(&mut self, target_cpu_ns: u64, reserved_ns: f64) -> Option<String> {
        let (runs, run_ns) = K::PROGRAMS
            .iter()
            .filter_map(|p| self.session.run_stats(p))
            .fold((0, 0), |(n, t), s| (n + s.runs, t + s.run_ns));
        self.governor.record(runs, run_ns);
        if self.governor.tick(target_cpu_ns, reserved_ns) != Action::Detach {
            return None;
        }
        Some(match self.governor.phase() {
            Phase::Detached { reason } => reason.clone(),
            _ => String::new(),
        })
    }

    /// What the window saw: totals and the governor, finished (ask it
    /// for the fraction attached at the window's end, so the time after
    /// a detach counts as detached); the probes go to `detacher`.
    pub fn retire(mut self, detacher: &mut Detacher) -> (K::Totals, Governor) {
        self.governor.finish();
        let seen = (self.tracks.totals(), self.governor.clone());
        detacher.retire(self.session, self.links);
        seen
    }
}

/// One kind through a trace window: its source while attached, what it
/// saw once retired, and when the governor detached it.
pub struct GovernedLane<K: SliceKind> {
    source: Option<GovernedSource<K>>,
    kind_cap: u32,
    seen: Option<(K::Totals, Governor)>,
    detached_at: Option<u64>,
}

impl<K: SliceKind> GovernedLane<K> {
    /// Attaches the kind's probes, or says why not; `attached_note` is
    /// what the file says of the slices when they are attached.
    pub fn start(
        target: &TargetProcess,
        addresses: &GcSnapshotAddresses,
        budget: f64,
        window: Duration,
        kind_cap: u32,
        attached_note: &str,
    ) -> (Self, String) {
        match GovernedSource::start(target, addresses, budget, window) {
            Ok(source) => (
                Self::with(Some(source), kind_cap),
                attached_note.to_string(),
            ),
            Err(e) => {
                let e = target.explain_attach_failure(e);
                eprintln!("goscope: no {} ({e:#})", K::WORDING.slices);
                (
                    Self::with(None, kind_cap),
                    format!("no {}: {e:#}", K::WORDING.slices),
                )
            }
        }
    }

    /// A lane whose probes were never attached.
    pub fn absent(kind_cap: u32) -> Self {
        Self::with(None, kind_cap)
    }

    fn with(source: Option<GovernedSource<K>>, kind_cap: u32) -> Self {
        Self {
            source,
            kind_cap,
            seen: None,
            detached_at: None,
        }
    }

    /// What the governor reserves for these probes (0 once retired).
    pub fn claim_ns(&self) -> f64 {
        self.source.as_ref().map_or(0.0, |s| s.governor.claim_ns())
    }

    /// The totals so far, while attached.
    pub fn live_totals(&self) -> Option<K::Totals> {
        self.source.as_ref().map(|s| s.tracks.totals())
    }

    pub fn detached_at(&self) -> Option<u64> {
        self.detached_at
    }

    /// One tick: drains the ring, then detaches the probes for good when
    /// the governor says so (`reserved_ns` is what the other sources
    /// claim of `budget`).
    pub fn tick(
        &mut self,
        out: &mut TraceWriter,
        detacher: &mut Detacher,
        target_cpu_ns: u64,
        reserved_ns: f64,
        budget: f64,
    ) -> anyhow::Result<()> {
        let Some(source) = self.source.as_mut() else {
            return Ok(());
        };
        source.drain(out, self.kind_cap)?;
        let Some(why) = source.govern(target_cpu_ns, reserved_ns) else {
            return Ok(());
        };
        eprintln!(
            "goscope: {} would overspend the overhead budget ({}; {why}): detached, {}",
            K::WORDING.probes,
            crate::format::budget(budget),
            K::WORDING.after_detach
        );
        self.drain(out)?;
        self.retire(detacher);
        // Stamped after the last drain: every slice in the file ended
        // before it (the links themselves go later, off the loop, and what
        // they still see is not read).
        self.detached_at = Some(monotonic_ns());
        Ok(())
    }

    /// Writes what the ring holds (nothing once retired).
    pub fn drain(&mut self, out: &mut TraceWriter) -> anyhow::Result<()> {
        match self.source.as_mut() {
            Some(source) => source.drain(out, self.kind_cap),
            None => Ok(()),
        }
    }

    /// Hands the probes to `detacher` and keeps what they saw.
    pub fn retire(&mut self, detacher: &mut Detacher) {
        if let Some(source) = self.source.take() {
            self.seen = Some(source.retire(detacher));
        }
    }

    /// What the window saw, once retired (None when never attached).
    pub fn seen(&self) -> Option<&(K::Totals, Governor)> {
        self.seen.as_ref()
    }
}

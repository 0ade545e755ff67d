//! Mark assists as timeline slices, one track per assisting goroutine
//! (`goroutine N (mark assists)`), from the assist probes' events; the
//! first `MAX_GOROUTINE_TRACKS` goroutines get their own track, the rest
//! share one. `AssistSource` is the probe session that feeds them, with
//! its governor.

use std::{collections::HashSet, time::Duration};

use anyhow::Context as _;
use observer_common::{ASSIST_EVENT_PARKED, ASSIST_EVENT_WORKED, AssistEvent};
use serde_json::json;

use crate::{
    probes::{
        AttachedLink, GcSnapshotAddresses, ProbeSession,
        assists::{self, AssistProbes},
        calibrate,
        governor::{Action, Governor, Phase},
    },
    trace_events::{TraceWriteError, TraceWriter, micros},
};

/// Goroutine track ids start here: above any thread id (pid_max is at
/// most 2^22), so they never share a real thread's track.
pub const GOROUTINE_TRACK_BASE: u32 = 1 << 30;
/// Distinct goroutine tracks at most; later goroutines go to the shared
/// track.
const MAX_GOROUTINE_TRACKS: usize = 4096;
/// The shared track (and goroutines whose id could not be read).
const SHARED_TRACK: u32 = GOROUTINE_TRACK_BASE - 1;

/// Counts over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssistTotals {
    pub assists: u64,
    pub parked: u64,
    pub dropped_over_cap: u64,
    pub goroutine_tracks: u64,
}

pub struct AssistTracks {
    pid: u32,
    named: HashSet<u32>,
    totals: AssistTotals,
}

impl AssistTracks {
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            named: HashSet::new(),
            totals: AssistTotals::default(),
        }
    }

    pub fn totals(&self) -> AssistTotals {
        self.totals
    }

    fn track(&mut self, out: &mut TraceWriter, goid: u64) -> Result<u32, TraceWriteError> {
        // goids below 2^30 have their own track id (under 2^31).
        let own = u32::try_from(goid)
            .ok()
            .filter(|g| *g != 0 && *g < GOROUTINE_TRACK_BASE)
            .map(|g| GOROUTINE_TRACK_BASE + g);
        let track = match own {
            Some(t) if self.named.contains(&t) || self.named.len() < MAX_GOROUTINE_TRACKS => t,
            _ => SHARED_TRACK,
        };
        if self.named.insert(track) {
            let name = if track == SHARED_TRACK {
                "other goroutines (mark assists)".to_string()
            } else {
                self.totals.goroutine_tracks += 1;
                format!("goroutine {goid} (mark assists)")
            };
            out.uncounted(&json!({
                "name": "thread_name", "ph": "M", "pid": self.pid, "tid": track,
                "args": { "name": name },
            }))?;
        }
        Ok(track)
    }

    /// Writes one assist as a slice on its goroutine's track.
    pub fn apply(
        &mut self,
        out: &mut TraceWriter,
        kind_cap: u32,
        event: &AssistEvent,
    ) -> Result<(), TraceWriteError> {
        let track = self.track(out, event.goid)?;
        let parked = event.flags & ASSIST_EVENT_PARKED != 0;
        self.totals.assists += 1;
        self.totals.parked += u64::from(parked);
        let slice = json!({
            "name": if parked { "mark assist (parked)" } else { "mark assist" },
            "cat": "gc", "ph": "X",
            "ts": micros(event.start_ns),
            "dur": micros(event.end_ns.saturating_sub(event.start_ns)),
            "pid": self.pid, "tid": track,
            "args": {
                "goid": event.goid,
                "thread": event.tid,
                "scanned": event.flags & ASSIST_EVENT_WORKED != 0,
            },
        });
        if !out.emit_within("assists", kind_cap, event.start_ns, &[slice])? {
            self.totals.dropped_over_cap += 1;
        }
        Ok(())
    }
}

/// The mark-assist probes (per-call uprobes on gcAssistAlloc, its RETs,
/// gcAssistAlloc1 and gcParkAssist), their governor and tracks.
pub struct AssistSource {
    pub session: ProbeSession,
    pub links: Option<Vec<AttachedLink>>,
    pub governor: Governor,
    pub tracks: AssistTracks,
}

impl AssistSource {
    pub fn start(
        target: &crate::target::TargetProcess,
        addresses: &GcSnapshotAddresses,
        budget: f64,
        window: Duration,
    ) -> anyhow::Result<Self> {
        let probes = AssistProbes::resolve(&target.binary)?;
        let mut session = ProbeSession::load(target.pid, Some(addresses))?;
        let costs = calibrate::costs(&mut session).context("calibrating probe costs")?;
        let pid = std::num::NonZeroU32::new(target.pid).context("pid 0")?;
        assists::enable_events(&mut session)?;
        let links = probes.attach(&mut session, &target.exe_handle, pid)?;
        let governor = Governor::detached(budget, costs.hit_ns, target.cpu_time_ns()?)
            .with_window(window)
            .with_link_costs(costs.links(links.len()))
            .attached_from_start();
        Ok(Self {
            session,
            links: Some(links),
            governor,
            tracks: AssistTracks::new(target.pid),
        })
    }

    pub fn drain(&mut self, out: &mut TraceWriter, kind_cap: u32) -> anyhow::Result<()> {
        for event in assists::drain_events(&mut self.session)? {
            self.tracks.apply(out, kind_cap, &event)?;
        }
        Ok(())
    }

    /// Records what the probes cost and detaches them for good when the
    /// governor says so (returns the reason then).
    pub fn govern(
        &mut self,
        target_cpu_ns: u64,
        reserved_ns: f64,
    ) -> anyhow::Result<Option<String>> {
        let (runs, run_ns) = AssistProbes::PROGRAMS
            .iter()
            .filter_map(|p| self.session.run_stats(p))
            .fold((0, 0), |(n, t), s| (n + s.runs, t + s.run_ns));
        self.governor.record(runs, run_ns);
        if self.governor.tick(target_cpu_ns, reserved_ns) != Action::Detach {
            return Ok(None);
        }
        Ok(Some(match self.governor.phase() {
            Phase::Detached { reason } => reason.clone(),
            _ => String::new(),
        }))
    }

    /// What the window saw: totals and the governor, finished (ask it
    /// for the fraction attached at the window's end, so the time after
    /// a detach counts as detached).
    pub fn summary(&mut self) -> (AssistTotals, Governor) {
        self.governor.finish();
        (self.tracks.totals(), self.governor.clone())
    }
}

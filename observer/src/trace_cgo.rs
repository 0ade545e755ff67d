//! cgo calls as timeline slices, one `cgo call` slice per runtime.cgocall
//! (entry to RET), from the cgo probes' events. Each call sits on a track
//! of the OS thread that made it, `cgo calls (thread TID)`, next to that
//! thread's scheduler track rather than on it: a call spans several
//! scheduler slices (running, then sleeping in C, woken, running), and
//! slices on one track must nest. `CgoSource` is the probe session that
//! feeds them, with its governor.

use std::{collections::HashSet, time::Duration};

use anyhow::Context as _;
use observer_common::CgoCallEvent;
use serde_json::json;

use crate::{
    probes::{
        AttachedLink, GcSnapshotAddresses, ProbeSession, calibrate,
        cgo::{self, CgoProbes},
        governor::{Action, Governor, Phase},
    },
    trace_events::{TraceWriteError, TraceWriter, micros},
};

/// cgo track ids are this plus the thread id: above any thread id
/// (pid_max is at most 2^22) and below the goroutine tracks
/// (`trace_assists::GOROUTINE_TRACK_BASE`).
pub const CGO_TRACK_BASE: u32 = 1 << 29;
/// Distinct thread tracks at most; calls of later threads are counted,
/// not drawn (a Go process has at most 10000 Ms by default).
const MAX_THREAD_TRACKS: usize = 16_384;

/// Counts over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgoTotals {
    pub calls: u64,
    pub dropped_over_cap: u64,
    pub thread_tracks: u64,
    /// Calls of threads past `MAX_THREAD_TRACKS`.
    pub untracked: u64,
}

pub struct CgoTracks {
    pid: u32,
    named: HashSet<u32>,
    totals: CgoTotals,
}

impl CgoTracks {
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            named: HashSet::new(),
            totals: CgoTotals::default(),
        }
    }

    pub fn totals(&self) -> CgoTotals {
        self.totals
    }

    /// The track of thread `tid`, named the first time (None past
    /// `MAX_THREAD_TRACKS`).
    fn track(&mut self, out: &mut TraceWriter, tid: u32) -> Result<Option<u32>, TraceWriteError> {
        let track = CGO_TRACK_BASE + (tid & (CGO_TRACK_BASE - 1));
        if self.named.contains(&track) {
            return Ok(Some(track));
        }
        if self.named.len() >= MAX_THREAD_TRACKS {
            return Ok(None);
        }
        self.named.insert(track);
        self.totals.thread_tracks += 1;
        out.uncounted(&json!({
            "name": "thread_name", "ph": "M", "pid": self.pid, "tid": track,
            "args": { "name": format!("cgo calls (thread {tid})") },
        }))?;
        Ok(Some(track))
    }

    /// Writes one call as a slice on its thread's cgo track.
    pub fn apply(
        &mut self,
        out: &mut TraceWriter,
        kind_cap: u32,
        event: &CgoCallEvent,
    ) -> Result<(), TraceWriteError> {
        self.totals.calls += 1;
        let Some(track) = self.track(out, event.tid)? else {
            self.totals.untracked += 1;
            return Ok(());
        };
        let duration = event.end_ns.saturating_sub(event.start_ns);
        let slice = json!({
            "name": "cgo call", "cat": "cgo", "ph": "X",
            "ts": micros(event.start_ns),
            "dur": micros(duration),
            "pid": self.pid, "tid": track,
            "args": {
                "duration_ns": duration,
                "goid": event.goid,
                "thread": event.tid,
            },
        });
        if !out.emit_within("cgo", kind_cap, event.start_ns, &[slice])? {
            self.totals.dropped_over_cap += 1;
        }
        Ok(())
    }
}

/// The cgo probes (per-call uprobes on runtime.cgocall and its RETs),
/// their governor and tracks.
pub struct CgoSource {
    pub session: ProbeSession,
    pub links: Option<Vec<AttachedLink>>,
    pub governor: Governor,
    pub tracks: CgoTracks,
}

impl CgoSource {
    /// Attaches the probes; an error for a binary built without cgo.
    pub fn start(
        target: &crate::target::TargetProcess,
        addresses: &GcSnapshotAddresses,
        budget: f64,
        window: Duration,
    ) -> anyhow::Result<Self> {
        if !target.binary.cgo() {
            anyhow::bail!("the binary was built without cgo (CGO_ENABLED=0)");
        }
        let probes = CgoProbes::resolve(&target.binary)?;
        // The addresses give the kernel program goid's offset in a g.
        let mut session = ProbeSession::load(target.pid, Some(addresses))?;
        let costs = calibrate::costs(&mut session).context("calibrating probe costs")?;
        let pid = std::num::NonZeroU32::new(target.pid).context("pid 0")?;
        cgo::enable_events(&mut session)?;
        let links = probes.attach(&mut session, &target.exe_handle, pid)?;
        let governor = Governor::detached(budget, costs.hit_ns, target.cpu_time_ns()?)
            .with_window(window)
            .with_link_costs(costs.links(links.len()))
            .attached_from_start();
        Ok(Self {
            session,
            links: Some(links),
            governor,
            tracks: CgoTracks::new(target.pid),
        })
    }

    pub fn drain(&mut self, out: &mut TraceWriter, kind_cap: u32) -> anyhow::Result<()> {
        for event in cgo::drain_events(&mut self.session)? {
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
        let (runs, run_ns) = CgoProbes::PROGRAMS
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
    pub fn summary(&mut self) -> (CgoTotals, Governor) {
        self.governor.finish();
        (self.tracks.totals(), self.governor.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn each_thread_gets_one_named_cgo_track() {
        let path = std::env::temp_dir().join(format!(
            "goscope-trace-cgo-test-{}.json",
            std::process::id()
        ));
        let mut out = TraceWriter::create(&path, 100, 0, 7).unwrap();
        let mut tracks = CgoTracks::new(7);
        let call = |tid, start_ns| CgoCallEvent {
            start_ns,
            end_ns: start_ns + 200_000,
            goid: 1,
            tid,
            _pad: 0,
        };
        for event in [call(100, 1_000), call(100, 500_000), call(101, 2_000)] {
            tracks.apply(&mut out, 100, &event).unwrap();
        }
        assert_eq!(
            tracks.totals(),
            CgoTotals {
                calls: 3,
                dropped_over_cap: 0,
                thread_tracks: 2,
                untracked: 0,
            }
        );
        out.finish(
            json!({"name": "end", "ph": "i", "s": "g", "ts": 0, "pid": 7, "tid": 0, "args": {}}),
        )
        .unwrap();
        let events: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let names: Vec<&Value> = events.iter().filter(|e| e["ph"] == "M").collect();
        assert_eq!(names.len(), 2);
        assert_eq!(names[0]["args"]["name"], "cgo calls (thread 100)");
        assert_eq!(names[0]["tid"], CGO_TRACK_BASE + 100);
        let slices: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[1]["dur"].as_f64(), Some(200.0));
        assert_eq!(slices[1]["ts"].as_f64(), Some(500.0));
        assert_eq!(slices[2]["tid"], CGO_TRACK_BASE + 101);
    }
}

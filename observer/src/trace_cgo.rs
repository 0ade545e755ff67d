//! cgo calls as timeline slices, one `cgo call` slice per runtime.cgocall
//! (entry to RET), from the cgo probes' events. Each call sits on a track
//! of the OS thread that made it, `cgo calls (thread TID)`, next to that
//! thread's scheduler track rather than on it: a call spans several
//! scheduler slices (running, then sleeping in C, woken, running), and
//! slices on one track must nest. They are a `SliceKind`:
//! `trace_governed` attaches and governs the probes that feed them.

use std::collections::HashSet;

use observer_common::CgoCallEvent;
use serde_json::json;

use crate::{
    binary::GoBinary,
    probes::cgo::{self, CgoProbes},
    trace_events::{TraceWriteError, TraceWriter, micros},
    trace_governed::{Attach, DrainEvents, EnableEvents, Resolve, SliceKind, Wording},
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

#[derive(Default)]
pub struct CgoTracks {
    pid: u32,
    named: HashSet<u32>,
    totals: CgoTotals,
}

impl CgoTracks {
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
}

/// Fed by the cgo probes (per-call uprobes on runtime.cgocall and its
/// RETs).
impl SliceKind for CgoTracks {
    type Totals = CgoTotals;
    type Probes = CgoProbes;
    type Event = CgoCallEvent;
    const PROGRAMS: &'static [&'static str] = CgoProbes::PROGRAMS;
    const WORDING: Wording = Wording {
        slices: "cgo call slices",
        probes: "the cgo probes",
        after_detach: "no cgo call slices from here on",
    };
    const RESOLVE: Resolve<CgoProbes> = resolve;
    const ATTACH: Attach<CgoProbes> = CgoProbes::attach;
    const ENABLE_EVENTS: EnableEvents = cgo::enable_events;
    const DRAIN_EVENTS: DrainEvents<CgoCallEvent> = cgo::drain_events;

    fn new(pid: u32) -> Self {
        Self {
            pid,
            ..Self::default()
        }
    }

    fn totals(&self) -> CgoTotals {
        self.totals
    }

    /// Writes one call as a slice on its thread's cgo track.
    fn apply(
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

/// The cgo probes; an error for a binary built without cgo.
fn resolve(binary: &GoBinary) -> anyhow::Result<CgoProbes> {
    if !binary.cgo() {
        anyhow::bail!("the binary was built without cgo (CGO_ENABLED=0)");
    }
    CgoProbes::resolve(binary)
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

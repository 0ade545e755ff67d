//! Mark assists as timeline slices, one track per assisting goroutine
//! (`goroutine N (mark assists)`), from the assist probes' events; the
//! first `MAX_GOROUTINE_TRACKS` goroutines get their own track, the rest
//! share one. They are a `SliceKind`: `trace_governed` attaches and
//! governs the probes that feed them.

use std::collections::HashSet;

use observer_common::{ASSIST_EVENT_PARKED, ASSIST_EVENT_WORKED, AssistEvent};
use serde_json::json;

use crate::{
    probes::assists::{self, AssistProbes},
    trace_events::{TraceWriteError, TraceWriter, micros},
    trace_governed::{Attach, DrainEvents, EnableEvents, Resolve, SliceKind, Wording},
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

#[derive(Default)]
pub struct AssistTracks {
    pid: u32,
    named: HashSet<u32>,
    totals: AssistTotals,
}

impl AssistTracks {
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
}

/// Fed by the mark-assist probes (per-call uprobes on gcAssistAlloc, its
/// RETs, gcAssistAlloc1 and gcParkAssist).
impl SliceKind for AssistTracks {
    type Totals = AssistTotals;
    type Probes = AssistProbes;
    type Event = AssistEvent;
    const PROGRAMS: &'static [&'static str] = AssistProbes::PROGRAMS;
    const WORDING: Wording = Wording {
        slices: "mark-assist slices",
        probes: "the mark-assist probes",
        after_detach: "no assist slices from here on",
    };
    const RESOLVE: Resolve<AssistProbes> = AssistProbes::resolve;
    const ATTACH: Attach<AssistProbes> = AssistProbes::attach;
    const ENABLE_EVENTS: EnableEvents = assists::enable_events;
    const DRAIN_EVENTS: DrainEvents<AssistEvent> = assists::drain_events;

    fn new(pid: u32) -> Self {
        Self {
            pid,
            ..Self::default()
        }
    }

    fn totals(&self) -> AssistTotals {
        self.totals
    }

    /// Writes one assist as a slice on its goroutine's track.
    fn apply(
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

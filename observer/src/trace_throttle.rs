//! CFS throttles on the timeline from the kernel's own throttle and
//! unthrottle (fentry programs, see `probes::throttle`): one `CFS throttled (CPU
//! N)` track per CPU on which a cfs_rq of the target's cgroup hierarchy
//! was throttled, one slice per throttle, on the kernel programs' clock
//! like the thread tracks beside them. The cpu.stat track stays: it gives
//! the cgroup's periods and time as the kernel counts them.

use std::collections::HashSet;

use serde_json::json;

use crate::{
    probes::{ProbeSession, throttle},
    trace_events::{TraceWriter, micros},
};

/// Per-CPU throttle tracks: above any thread id (pid_max is at most 2^22)
/// and below the cgo (2^29) and goroutine (2^30) tracks.
pub const CPU_TRACK_BASE: u32 = 1 << 28;

/// Counts over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleTotals {
    pub slices: u64,
    pub throttled_ns: u64,
    pub dropped_over_cap: u64,
    pub cpus: u64,
}

/// The fentry session and the tracks it feeds.
pub struct ThrottleHooks {
    session: ProbeSession,
    pid: u32,
    named: HashSet<u32>,
    totals: ThrottleTotals,
}

impl ThrottleHooks {
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        let mut session = ProbeSession::load(pid, None)?;
        throttle::attach(&mut session)?;
        Ok(Self {
            session,
            pid,
            named: HashSet::new(),
            totals: ThrottleTotals::default(),
        })
    }

    pub fn totals(&self) -> ThrottleTotals {
        self.totals
    }

    /// Writes the throttles that ended since the last drain.
    pub fn drain(&mut self, out: &mut TraceWriter) -> anyhow::Result<()> {
        for event in throttle::drain(&mut self.session)? {
            let Some(duration) = event.end_ns.checked_sub(event.start_ns) else {
                continue;
            };
            let track = CPU_TRACK_BASE + event.cpu;
            if self.named.insert(track) {
                self.totals.cpus += 1;
                out.uncounted(&json!({
                    "name": "thread_name", "ph": "M", "pid": self.pid, "tid": track,
                    "args": { "name": format!("CFS throttled (CPU {}, kernel)", event.cpu) },
                }))?;
                out.uncounted(&json!({
                    "name": "thread_sort_index", "ph": "M", "pid": self.pid, "tid": track,
                    "args": { "sort_index": -1 },
                }))?;
            }
            let slice = json!({
                "name": "throttled", "cat": "cfs", "ph": "X",
                "ts": micros(event.start_ns), "dur": micros(duration),
                "pid": self.pid, "tid": track,
                "args": { "cpu": event.cpu, "source": "throttle_cfs_rq to unthrottle_cfs_rq" },
            });
            if out.emit("throttle", event.start_ns, &[slice])? {
                self.totals.slices += 1;
                self.totals.throttled_ns += duration;
            } else {
                self.totals.dropped_over_cap += 1;
            }
        }
        Ok(())
    }
}

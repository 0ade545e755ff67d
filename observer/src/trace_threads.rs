//! The target's OS threads as timeline tracks: the scheduler transitions
//! the kernel emits (switched in, preempted, slept, woken, exited) become
//! one slice per state on each thread's track (running, runnable after a
//! preemption or a wakeup, sleeping, uninterruptible); `ThreadSource` is
//! the tracepoint session that feeds them, with its governor.

use std::{collections::HashMap, time::Duration};

use observer_common::{ThreadStateEvent, ThreadTransition};
use serde_json::{Value, json};

use crate::{
    probes::{
        ProbeSession,
        governor::Governor,
        threads::{self, TracepointOffsets},
    },
    trace_events::{TraceWriteError, TraceWriter, micros},
};

/// Threads tracked at once (the kernel's map holds as many).
const MAX_THREADS: usize = 65_536;
/// sched_switch prev_state bits (TASK_REPORT).
const TASK_INTERRUPTIBLE: u32 = 0x1;
const TASK_UNINTERRUPTIBLE: u32 = 0x2;
const EXIT_DEAD_OR_ZOMBIE: u32 = 0x10 | 0x20;

/// What a thread is doing between two transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    Running {
        cpu: u32,
    },
    /// Runnable after an involuntary switch.
    Preempted,
    /// Runnable after a wakeup.
    Woken,
    Sleeping,
    Uninterruptible,
    /// Off the CPU for another reason (stopped, traced, parked): the raw
    /// prev_state bits.
    Other {
        state: u32,
    },
}

impl ThreadState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Running { .. } => "running",
            Self::Preempted => "runnable (preempted)",
            Self::Woken => "runnable (woken)",
            Self::Sleeping => "sleeping",
            Self::Uninterruptible => "uninterruptible (D)",
            Self::Other { .. } => "off-CPU",
        }
    }

    fn args(self) -> Value {
        match self {
            Self::Running { cpu } => json!({ "cpu": cpu }),
            Self::Other { state } => json!({ "prev_state": format!("{state:#x}") }),
            _ => json!({}),
        }
    }
}

/// Counts over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadTotals {
    pub threads: u64,
    pub slices: u64,
    pub involuntary_switches: u64,
    pub dropped_slices: u64,
    /// Transitions of threads past `MAX_THREADS`, or of unknown kind.
    pub ignored: u64,
}

/// The open state of every thread seen, and what was written.
pub struct ThreadTracks {
    pid: u32,
    /// tid → (state, since ns).
    open: HashMap<u32, (ThreadState, u64)>,
    /// Whether /proc/PID/task/TID names the kernel's tids (thread names).
    proc_names: bool,
    totals: ThreadTotals,
}

impl ThreadTracks {
    pub fn new(pid: u32, proc_names: bool) -> Self {
        Self {
            pid,
            open: HashMap::new(),
            proc_names,
            totals: ThreadTotals::default(),
        }
    }

    pub fn totals(&self) -> ThreadTotals {
        self.totals
    }

    /// Applies one transition: closes the thread's open slice (written if
    /// it fits `kind_cap` and the trace's cap) and opens the next.
    pub fn apply(
        &mut self,
        out: &mut TraceWriter,
        kind_cap: u32,
        event: &ThreadStateEvent,
    ) -> Result<(), TraceWriteError> {
        let Some(transition) = ThreadTransition::from_u32(event.kind) else {
            self.totals.ignored += 1;
            return Ok(());
        };
        let next = match transition {
            ThreadTransition::OnCpu => Some(ThreadState::Running { cpu: event.cpu }),
            ThreadTransition::Preempted => {
                self.totals.involuntary_switches += 1;
                Some(ThreadState::Preempted)
            }
            ThreadTransition::Woken => Some(ThreadState::Woken),
            ThreadTransition::Slept => match event.state {
                s if s & EXIT_DEAD_OR_ZOMBIE != 0 => None,
                s if s & TASK_UNINTERRUPTIBLE != 0 => Some(ThreadState::Uninterruptible),
                s if s & TASK_INTERRUPTIBLE != 0 => Some(ThreadState::Sleeping),
                state => Some(ThreadState::Other { state }),
            },
            ThreadTransition::Exited => None,
        };
        if !self.open.contains_key(&event.tid) {
            if self.open.len() >= MAX_THREADS {
                self.totals.ignored += 1;
                return Ok(());
            }
            self.name_thread(out, event.tid)?;
        }
        // A wakeup of a thread already runnable or running changes nothing.
        if let (Some(ThreadState::Woken), Some((current, _))) = (next, self.open.get(&event.tid))
            && matches!(
                current,
                ThreadState::Running { .. } | ThreadState::Preempted | ThreadState::Woken
            )
        {
            return Ok(());
        }
        let previous = match next {
            Some(state) => self.open.insert(event.tid, (state, event.ktime_ns)),
            None => self.open.remove(&event.tid),
        };
        if let Some((state, since)) = previous {
            self.write_slice(out, kind_cap, event.tid, state, since, event.ktime_ns)?;
        }
        Ok(())
    }

    /// Closes every open slice at `end_ns` (the window's end).
    pub fn close_all(
        &mut self,
        out: &mut TraceWriter,
        kind_cap: u32,
        end_ns: u64,
    ) -> Result<(), TraceWriteError> {
        let mut open: Vec<_> = self.open.drain().collect();
        open.sort_unstable_by_key(|(tid, (_, since))| (*since, *tid));
        for (tid, (state, since)) in open {
            self.write_slice(out, kind_cap, tid, state, since, end_ns.max(since))?;
        }
        Ok(())
    }

    fn write_slice(
        &mut self,
        out: &mut TraceWriter,
        kind_cap: u32,
        tid: u32,
        state: ThreadState,
        from: u64,
        to: u64,
    ) -> Result<(), TraceWriteError> {
        let event = json!({
            "name": state.name(), "cat": "sched", "ph": "X",
            "ts": micros(from), "dur": micros(to.saturating_sub(from)),
            "pid": self.pid, "tid": tid, "args": state.args(),
        });
        if out.emit_within("threads", kind_cap, from, &[event])? {
            self.totals.slices += 1;
        } else {
            self.totals.dropped_slices += 1;
        }
        Ok(())
    }

    /// The thread's track name: its tid and, where /proc shows the same
    /// ids, its comm (16 bytes at most, set by the target).
    fn name_thread(&mut self, out: &mut TraceWriter, tid: u32) -> Result<(), TraceWriteError> {
        self.totals.threads += 1;
        let comm = self
            .proc_names
            .then(|| std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", self.pid)).ok())
            .flatten()
            .map(|c| crate::format::bounded(c.trim_end(), 32));
        let name = match comm {
            Some(comm) => format!("thread {tid} ({comm})"),
            None => format!("thread {tid}"),
        };
        out.uncounted(&json!({
            "name": "thread_name", "ph": "M", "pid": self.pid, "tid": tid,
            "args": { "name": name },
        }))
    }
}

/// The thread-state tracepoints, what governs them, and their tracks.
pub struct ThreadSource {
    pub session: ProbeSession,
    pub governor: Governor,
    pub tracks: ThreadTracks,
    /// Transitions drained: switches in and out, and wakeups (the
    /// target's share of each tracepoint's runs).
    switch_transitions: u64,
    wakeups: u64,
}

impl ThreadSource {
    pub fn start(
        pid: u32,
        budget: f64,
        window: Duration,
        target_cpu_ns: u64,
    ) -> anyhow::Result<Self> {
        let offsets = TracepointOffsets::from_tracefs()?;
        let mut session = ProbeSession::load_with(pid, None, &offsets)?;
        threads::attach(&mut session, pid)?;
        threads::enable_transitions(&mut session)?;
        let governor = Governor::detached(budget, 0.0, target_cpu_ns)
            .with_window(window)
            .attached_from_start();
        Ok(Self {
            session,
            governor,
            tracks: ThreadTracks::new(pid, threads::proc_shows_initial_namespace_ids()),
            switch_transitions: 0,
            wakeups: 0,
        })
    }

    /// Applies what the kernel emitted since the last drain.
    pub fn drain(&mut self, out: &mut TraceWriter, kind_cap: u32) -> anyhow::Result<()> {
        for event in threads::drain_transitions(&mut self.session)? {
            match ThreadTransition::from_u32(event.kind) {
                Some(ThreadTransition::Woken) => self.wakeups += 1,
                Some(ThreadTransition::Exited) | None => {}
                Some(_) => self.switch_transitions += 1,
            }
            self.tracks.apply(out, kind_cap, &event)?;
        }
        Ok(())
    }

    /// What the tracepoints cost the target so far: each program's time
    /// on the whole host, times the target's share of its runs (a switch
    /// between two target threads is one run and two transitions, so the
    /// share errs high).
    pub fn record_cost(&mut self) {
        let stats = |name| self.session.run_stats(name).unwrap_or_default();
        let share = |ours: u64, runs: u64| {
            if runs > 0 {
                (ours as f64 / runs as f64).min(1.0)
            } else {
                1.0
            }
        };
        let (switch, wakeup) = (stats("thread_switch"), stats("thread_wakeup"));
        let run_ns = switch.run_ns as f64 * share(self.switch_transitions, switch.runs)
            + wakeup.run_ns as f64 * share(self.wakeups, wakeup.runs);
        self.governor
            .record(self.switch_transitions + self.wakeups, run_ns as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tid: u32, kind: ThreadTransition, state: u32, at: u64) -> ThreadStateEvent {
        ThreadStateEvent {
            ktime_ns: at,
            tid,
            cpu: 1,
            kind: kind as u32,
            state,
        }
    }

    fn slices(path: &std::path::Path) -> Vec<Value> {
        let text = std::fs::read_to_string(path).unwrap();
        let events: Vec<Value> = serde_json::from_str(&text).unwrap();
        events.into_iter().filter(|e| e["ph"] == "X").collect()
    }

    #[test]
    fn transitions_become_state_slices() {
        let dir = std::env::temp_dir().join(format!("goscope-threads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.json");
        let _ = std::fs::remove_file(&path);
        let mut out = TraceWriter::create(&path, 1000, 0, 7).unwrap();
        let mut tracks = ThreadTracks::new(7, false);
        for e in [
            event(9, ThreadTransition::OnCpu, 0, 1_000),
            event(9, ThreadTransition::Preempted, 0, 3_000),
            event(9, ThreadTransition::OnCpu, 0, 4_000),
            event(9, ThreadTransition::Slept, TASK_INTERRUPTIBLE, 6_000),
            event(9, ThreadTransition::Woken, 0, 9_000),
            event(9, ThreadTransition::Woken, 0, 9_500),
            event(9, ThreadTransition::OnCpu, 0, 10_000),
            event(9, ThreadTransition::Slept, TASK_UNINTERRUPTIBLE, 11_000),
        ] {
            tracks.apply(&mut out, 1000, &e).unwrap();
        }
        tracks.close_all(&mut out, 1000, 12_000).unwrap();
        let totals = tracks.totals();
        out.finish(json!({"name": "end", "ph": "i", "ts": 12, "pid": 7, "tid": 0}))
            .unwrap();
        let got: Vec<(String, f64, f64)> = slices(&path)
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["ts"].as_f64().unwrap(),
                    e["dur"].as_f64().unwrap(),
                )
            })
            .collect();
        let want = [
            ("running", 1.0, 2.0),
            ("runnable (preempted)", 3.0, 1.0),
            ("running", 4.0, 2.0),
            ("sleeping", 6.0, 3.0),
            ("runnable (woken)", 9.0, 1.0),
            ("running", 10.0, 1.0),
            ("uninterruptible (D)", 11.0, 1.0),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((name, ts, dur), (wname, wts, wdur)) in got.iter().zip(want) {
            assert_eq!((name.as_str(), *ts, *dur), (wname, wts, wdur));
        }
        assert_eq!(totals.involuntary_switches, 1);
        assert_eq!(totals.threads, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_exit_closes_the_track_and_unknown_kinds_are_counted() {
        let dir = std::env::temp_dir().join(format!("goscope-threads-exit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.json");
        let _ = std::fs::remove_file(&path);
        let mut out = TraceWriter::create(&path, 1000, 0, 7).unwrap();
        let mut tracks = ThreadTracks::new(7, false);
        tracks
            .apply(&mut out, 1000, &event(5, ThreadTransition::OnCpu, 0, 1_000))
            .unwrap();
        tracks
            .apply(
                &mut out,
                1000,
                &event(5, ThreadTransition::Slept, 0x20, 2_000),
            )
            .unwrap();
        let mut odd = event(5, ThreadTransition::OnCpu, 0, 3_000);
        odd.kind = 99;
        tracks.apply(&mut out, 1000, &odd).unwrap();
        tracks.close_all(&mut out, 1000, 5_000).unwrap();
        assert_eq!(tracks.totals().slices, 1);
        assert_eq!(tracks.totals().ignored, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

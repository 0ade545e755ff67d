//! P-bound or M-bound, the judgement schedtrace teaches, from repeated
//! readings of the scheduler (`SchedTrace`, read from memory): a target
//! whose Ps are all busy while runnable goroutines wait in the global or
//! local run queues is short of Ps (CPU); one whose OS thread count climbs,
//! or that keeps many Ms outside the scheduler (blocked in syscalls or C)
//! or parked idle after such a climb, is short of Ms (blocking syscalls,
//! synchronous DNS, slow C). The thresholds are named constants; the
//! verdict rules (`report::verdicts`) quote these figures.

use serde::Serialize;

use crate::runtime::snapshot::SchedTrace;

/// Readings needed before anything is judged.
pub const MIN_READINGS: u64 = 5;
/// Share of readings with every P busy and goroutines queued that makes
/// a target P-bound.
pub const P_BOUND_SHARE: f64 = 0.5;
/// Ms outside the scheduler (or idle after a climb) that make a target
/// M-bound: at least this many, and at least twice GOMAXPROCS.
pub const M_BOUND_MIN: i64 = 8;
/// Threads created within the window that count as climbing.
pub const THREAD_CLIMB_MIN: i64 = 8;
/// Ms that run no goroutine and are not idle by design: sysmon and the
/// template thread.
const SYSTEM_MS: i64 = 2;

/// What the readings of one window say about Ps and Ms.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SchedBound {
    pub readings: u64,
    /// Readings with no idle P and a non-empty global or local run queue.
    pub saturated_readings: u64,
    /// Runnable goroutines waiting in run queues (global + local), mean
    /// over the saturated readings.
    pub queued_mean: f64,
    pub gomaxprocs: i32,
    /// Ms the runtime has (mnext - nmfreed) at the first reading, at most,
    /// and at the last.
    pub threads_first: i64,
    pub threads_max: i64,
    pub threads_last: i64,
    /// Ms neither idle nor holding a P (nor sysmon or the template
    /// thread): blocked in syscalls or C. Mean over the readings, and the
    /// most at one reading.
    pub blocked_ms_mean: f64,
    pub blocked_ms_max: i64,
    /// Idle Ms (nmidle), most at one reading.
    pub idle_ms_max: i64,
}

/// The judgement.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Short of Ps: add CPU or cut CPU work per request.
    PBound,
    /// Short of Ms: blocking syscalls, synchronous DNS, slow C.
    MBound,
}

/// Accumulates readings.
#[derive(Clone, Debug, Default)]
pub struct SchedBoundTracker {
    bound: SchedBound,
    queued_sum: u64,
    blocked_sum: i64,
}

impl SchedBoundTracker {
    pub fn observe(&mut self, t: &SchedTrace) {
        let b = &mut self.bound;
        if b.readings == 0 {
            b.threads_first = t.threads;
        }
        b.readings += 1;
        b.gomaxprocs = t.gomaxprocs;
        let queued = i64::from(t.runqueue.max(0))
            + t.local_runqueues.iter().map(|&n| i64::from(n)).sum::<i64>();
        if t.idleprocs <= 0 && queued > 0 {
            b.saturated_readings += 1;
            self.queued_sum += queued as u64;
        }
        b.queued_mean = self.queued_sum as f64 / b.saturated_readings.max(1) as f64;
        b.threads_max = b.threads_max.max(t.threads);
        b.threads_last = t.threads;
        let busy_ps = i64::from(t.gomaxprocs - t.idleprocs.max(0)).max(0);
        let blocked = (t.threads - i64::from(t.idlethreads.max(0)) - busy_ps - SYSTEM_MS).max(0);
        self.blocked_sum += blocked;
        b.blocked_ms_mean = self.blocked_sum as f64 / b.readings as f64;
        b.blocked_ms_max = b.blocked_ms_max.max(blocked);
        b.idle_ms_max = b.idle_ms_max.max(i64::from(t.idlethreads));
    }

    pub fn figures(&self) -> SchedBound {
        self.bound.clone()
    }
}

impl SchedBound {
    /// Fraction of readings with every P busy and work queued.
    pub fn saturated_share(&self) -> f64 {
        self.saturated_readings as f64 / self.readings.max(1) as f64
    }

    /// Ms beyond which a target is M-bound.
    pub fn m_threshold(&self) -> i64 {
        M_BOUND_MIN.max(2 * i64::from(self.gomaxprocs))
    }

    /// Threads created within the window.
    pub fn climb(&self) -> i64 {
        self.threads_max - self.threads_first
    }

    /// P-bound, M-bound, or neither (too few readings, or neither holds).
    /// M-bound wins when both hold: Ms blocked outside the scheduler are
    /// the cause, the busy Ps its consequence.
    pub fn judge(&self) -> Option<Bound> {
        if self.readings < MIN_READINGS {
            return None;
        }
        let climbing = self.climb() >= THREAD_CLIMB_MIN;
        let blocked = self.blocked_ms_mean >= self.m_threshold() as f64;
        let idle_after_climb = climbing && self.idle_ms_max >= self.m_threshold();
        if blocked || idle_after_climb {
            return Some(Bound::MBound);
        }
        (self.saturated_share() >= P_BOUND_SHARE).then_some(Bound::PBound)
    }
}

impl Bound {
    /// The verdict's id.
    pub fn id(self) -> &'static str {
        match self {
            Bound::PBound => "p_bound",
            Bound::MBound => "m_bound",
        }
    }

    /// The judgement with the numbers behind it and the fix.
    pub fn message(self, f: &SchedBound) -> String {
        match self {
            Bound::PBound => format!(
                "P-bound: all {} Ps busy with goroutines waiting in the run queues in {} of {} scheduler readings ({:.1} runnable queued on average): the program wants more CPU than GOMAXPROCS gives; add CPU or cut CPU work per request",
                f.gomaxprocs, f.saturated_readings, f.readings, f.queued_mean
            ),
            Bound::MBound => format!(
                "M-bound: OS threads (Ms) {} -> {} (at most {}) for GOMAXPROCS {}, {:.1} Ms blocked in syscalls or C on average (at most {}), up to {} idle: goroutines block their threads; look for blocking syscalls, synchronous DNS (the cgo resolver) or slow C calls",
                f.threads_first,
                f.threads_last,
                f.threads_max,
                f.gomaxprocs,
                f.blocked_ms_mean,
                f.blocked_ms_max,
                f.idle_ms_max
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(idle: i32, threads: i64, idle_ms: i32, runq: i32, local: &[u32]) -> SchedTrace {
        SchedTrace {
            gomaxprocs: 2,
            idleprocs: idle,
            threads,
            idlethreads: idle_ms,
            runqueue: runq,
            local_runqueues: local.to_vec(),
            ..Default::default()
        }
    }

    fn judge(readings: &[SchedTrace]) -> (Option<Bound>, SchedBound) {
        let mut t = SchedBoundTracker::default();
        readings.iter().for_each(|r| t.observe(r));
        let f = t.figures();
        (f.judge(), f)
    }

    #[test]
    fn busy_ps_with_queued_goroutines_are_p_bound() {
        let (bound, f) = judge(&vec![trace(0, 5, 1, 3, &[2, 1]); 10]);
        assert_eq!(bound, Some(Bound::PBound));
        assert_eq!(f.saturated_readings, 10);
        assert_eq!(f.queued_mean, 6.0);
        assert_eq!(f.blocked_ms_max, 0);
    }

    #[test]
    fn a_climbing_thread_count_of_blocked_ms_is_m_bound() {
        let readings: Vec<_> = (0..10)
            .map(|i| trace(2, 5 + 8 * i, 0, 0, &[0, 0]))
            .collect();
        let (bound, f) = judge(&readings);
        assert_eq!(bound, Some(Bound::MBound));
        assert_eq!((f.threads_first, f.threads_max), (5, 77));
        assert_eq!(f.blocked_ms_max, 75);
    }

    #[test]
    fn idle_ms_count_only_after_a_climb() {
        // Many idle Ms left from an earlier burst, Ps idle: neither.
        let (bound, _) = judge(&vec![trace(2, 40, 37, 0, &[0, 0]); 10]);
        assert_eq!(bound, None);
        // The same Ms created inside the window: M-bound.
        let mut readings = vec![trace(2, 5, 2, 0, &[0, 0])];
        readings.extend(vec![trace(2, 40, 37, 0, &[0, 0]); 9]);
        assert_eq!(judge(&readings).0, Some(Bound::MBound));
    }

    #[test]
    fn an_idle_or_barely_busy_target_and_few_readings_are_neither() {
        assert_eq!(judge(&vec![trace(1, 5, 1, 0, &[0, 0]); 10]).0, None);
        // Busy Ps with nothing queued is full use, not a shortage.
        assert_eq!(judge(&vec![trace(0, 5, 1, 0, &[0, 0]); 10]).0, None);
        assert_eq!(judge(&vec![trace(0, 5, 1, 3, &[2, 1]); 4]).0, None);
    }
}

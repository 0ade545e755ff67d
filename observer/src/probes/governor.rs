//! The overhead governor (simple form): keeps high-frequency probes within
//! a budget of the target's CPU. From the probe hits it sees and the
//! measured cost of one hit, it estimates the overhead every second; over
//! budget, it detaches the probes for long enough that the attached
//! fraction of time fits the budget, then attaches them again. Every
//! figure taken from such probes carries the fraction of time sampled.

use std::time::{Duration, Instant};

/// Re-estimate at most this often.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause between sampled windows.
const MAX_OFF: Duration = Duration::from_secs(10);

pub struct Governor {
    budget: f64,
    cost_ns: f64,
    on: bool,
    window_start: Instant,
    window_hits: u64,
    window_cpu_ns: u64,
    off_until: Option<Instant>,
    on_time: Duration,
    on_since: Instant,
    started: Instant,
}

/// What the governor wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Keep,
    Detach,
    Attach,
}

impl Governor {
    /// `budget_percent` of the target's CPU; `cost_ns` per probe hit.
    pub fn new(budget_percent: f64, cost_ns: f64, target_cpu_ns: u64) -> Self {
        let now = Instant::now();
        Self {
            budget: budget_percent / 100.0,
            cost_ns,
            on: true,
            window_start: now,
            window_hits: 0,
            window_cpu_ns: target_cpu_ns,
            off_until: None,
            on_time: Duration::ZERO,
            on_since: now,
            started: now,
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    pub fn record_hits(&mut self, hits: u64) {
        self.window_hits += hits;
    }

    /// Decides, given the target's cumulative CPU time now.
    pub fn tick(&mut self, target_cpu_ns: u64) -> Action {
        let now = Instant::now();
        if !self.on {
            if self.off_until.is_some_and(|t| now >= t) {
                self.on = true;
                self.on_since = now;
                self.window_start = now;
                self.window_hits = 0;
                self.window_cpu_ns = target_cpu_ns;
                return Action::Attach;
            }
            return Action::Keep;
        }
        let elapsed = now - self.window_start;
        if elapsed < CHECK_INTERVAL {
            return Action::Keep;
        }
        let cpu = target_cpu_ns.saturating_sub(self.window_cpu_ns).max(1) as f64;
        let overhead = self.window_hits as f64 * self.cost_ns / cpu;
        self.window_start = now;
        self.window_hits = 0;
        self.window_cpu_ns = target_cpu_ns;
        if overhead <= self.budget {
            return Action::Keep;
        }
        // On for `elapsed`, off long enough that on/(on+off) = budget/overhead.
        let off = elapsed.mul_f64(overhead / self.budget - 1.0).min(MAX_OFF);
        self.on = false;
        self.on_time += now - self.on_since;
        self.off_until = Some(now + off);
        Action::Detach
    }

    /// Fraction of the time so far the probes were attached.
    pub fn sampled_fraction(&self) -> f64 {
        let total = self.started.elapsed().as_secs_f64();
        let on = self.on_time
            + if self.on {
                self.on_since.elapsed()
            } else {
                Duration::ZERO
            };
        if total > 0.0 {
            (on.as_secs_f64() / total).min(1.0)
        } else {
            1.0
        }
    }

    pub fn cost_ns(&self) -> f64 {
        self.cost_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detaches_when_over_budget() {
        let mut g = Governor::new(1.0, 14_000.0, 0);
        g.window_start -= CHECK_INTERVAL;
        // 2000 hits × 14 µs = 28 ms of probe time per 1 s of target CPU: 2.8%.
        g.record_hits(2000);
        assert_eq!(g.tick(1_000_000_000), Action::Detach);
        assert!(!g.is_on());
        let mut cheap = Governor::new(1.0, 14_000.0, 0);
        cheap.window_start -= CHECK_INTERVAL;
        cheap.record_hits(100);
        assert_eq!(cheap.tick(1_000_000_000), Action::Keep);
    }
}

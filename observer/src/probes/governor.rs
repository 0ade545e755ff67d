//! The overhead governor: keeps high-frequency probes within a budget of
//! the target's CPU time. It runs a token bucket of probe time: the target
//! earns `budget` × the CPU time it uses, every probe hit spends the
//! calibrated cost of one hit. Out of credit, the probes are detached; they
//! come back once half a second's worth of credit has built up, and when
//! the expected hit rate (measured while attached, or predicted from the
//! runtime's own counters) would spend that credit within one tick, only
//! for a timed slice that spends exactly it. Ticked every 5 ms while the
//! probes are attached (20 ms while detached), so an unforeseen burst runs
//! unchecked for at most 5 ms, and any overshoot
//! is repaid as debt: over a window the probe time spent stays at the
//! budget. Every figure taken from such probes carries the fraction of time
//! they were attached.

use std::time::{Duration, Instant};

/// How often the governor decides while the probes are detached.
pub const TICK: Duration = Duration::from_millis(20);
/// How often it decides while they are attached (the longest a burst runs
/// unchecked), and so how often callers should poll `Governed::step`.
pub const POLL: Duration = Duration::from_millis(5);
/// Credit is capped at this much of the budget's earnings, so an idle
/// stretch cannot bank a long burst.
const CAP: Duration = Duration::from_secs(1);
/// The smallest cap (probe time), for targets that barely use the CPU.
const MIN_CAP_NS: f64 = 1_000_000.0;
/// Share of the budget the governor lets measured probe time spend; the
/// rest covers what it cannot measure (attaching and detaching rewrite the
/// target's text pages, probes go live one by one while a set attaches).
const MEASURED_SHARE: f64 = 0.5;
/// The first slice, taken to measure the hit rate when nothing predicts it.
const PROBE_SLICE: Duration = Duration::from_millis(2);
/// Shorter slices are not worth an attach and a detach.
const MIN_SLICE: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub struct Governor {
    budget: f64,
    cost_ns: f64,
    on: bool,
    credit_ns: f64,
    /// Smoothed credit earned per second (budget × target CPU rate).
    earn_per_s: f64,
    last_tick: Instant,
    last_cpu_ns: u64,
    pending_hits: u64,
    /// Nanoseconds the programs' bodies reported since the last tick.
    pending_body_ns: u64,
    /// Smoothed body cost per hit (added to the calibrated trap cost).
    body_ns_per_hit: f64,
    total_hits: u64,
    /// Expected probe hits per second while attached.
    expected_rate: Option<f64>,
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
    /// Attach, wait this long, detach, then report the slice's hits with
    /// `slice_done`.
    AttachFor(Duration),
}

impl Governor {
    /// `budget_percent` of the target's CPU; `cost_ns` per probe hit. The
    /// probes start attached with half the minimum cap as credit.
    pub fn new(budget_percent: f64, cost_ns: f64, target_cpu_ns: u64) -> Self {
        let now = Instant::now();
        Self {
            budget: budget_percent / 100.0,
            cost_ns,
            on: true,
            credit_ns: MIN_CAP_NS / 2.0,
            earn_per_s: 0.0,
            last_tick: now,
            last_cpu_ns: target_cpu_ns,
            pending_hits: 0,
            pending_body_ns: 0,
            body_ns_per_hit: 0.0,
            total_hits: 0,
            expected_rate: None,
            on_time: Duration::ZERO,
            on_since: now,
            started: now,
        }
    }

    /// Starts detached; the first attach is a short probing slice (unless a
    /// rate was predicted first), so even the first slice fits the budget.
    pub fn detached(budget_percent: f64, cost_ns: f64, target_cpu_ns: u64) -> Self {
        Self {
            // Without a budget there is nothing to wait for.
            on: budget_percent.is_infinite(),
            ..Self::new(budget_percent, cost_ns, target_cpu_ns)
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Probe hits since the last tick.
    pub fn record_hits(&mut self, hits: u64) {
        self.pending_hits += hits;
    }

    /// Nanoseconds the programs' bodies measured themselves since the last
    /// tick (kernel time spent beyond the trap).
    pub fn record_body_ns(&mut self, ns: u64) {
        self.pending_body_ns += ns;
    }

    /// What one hit costs: the calibrated trap plus the bodies' measured
    /// cost per hit.
    fn hit_cost_ns(&self) -> f64 {
        self.cost_ns + self.body_ns_per_hit
    }

    /// Hits per second the probes would see if attached now, predicted from
    /// the runtime's own event counters (read from memory).
    pub fn predict_rate(&mut self, hits_per_s: f64) {
        if hits_per_s.is_finite() && hits_per_s >= 0.0 {
            self.expected_rate = Some(match self.expected_rate {
                Some(r) if self.on => r.max(hits_per_s),
                _ => hits_per_s,
            });
        }
    }

    /// Accounts a timed slice (after `AttachFor`): its hits and length.
    pub fn slice_done(&mut self, hits: u64, attached: Duration) {
        self.on_time += attached;
        if attached > Duration::ZERO {
            self.expected_rate = Some(hits as f64 / attached.as_secs_f64());
        }
        self.pending_hits += hits;
    }

    fn cap_ns(&self) -> f64 {
        (self.earn_per_s * CAP.as_secs_f64()).max(MIN_CAP_NS)
    }

    /// Settles the credit and decides, given the target's cumulative CPU
    /// time now.
    pub fn tick(&mut self, target_cpu_ns: u64) -> Action {
        if self.budget.is_infinite() {
            // --overhead-budget off: always attached.
            self.total_hits += std::mem::take(&mut self.pending_hits);
            if !self.on {
                self.on = true;
                self.on_since = Instant::now();
                return Action::Attach;
            }
            return Action::Keep;
        }
        let now = Instant::now();
        let dt = (now - self.last_tick).as_secs_f64();
        let earned =
            MEASURED_SHARE * self.budget * target_cpu_ns.saturating_sub(self.last_cpu_ns) as f64;
        if self.pending_hits > 0 {
            let per_hit = self.pending_body_ns as f64 / self.pending_hits as f64;
            self.body_ns_per_hit += 0.5 * (per_hit - self.body_ns_per_hit);
        }
        let spent = self.pending_hits as f64 * self.cost_ns + self.pending_body_ns as f64;
        self.pending_body_ns = 0;
        self.total_hits += self.pending_hits;
        self.pending_hits = 0;
        self.last_tick = now;
        self.last_cpu_ns = target_cpu_ns.max(self.last_cpu_ns);
        if dt > 0.0 {
            // /proc CPU time moves in 10 ms steps: smooth over ~1 s.
            let alpha = (dt / CAP.as_secs_f64()).min(1.0);
            self.earn_per_s += alpha * (earned / dt - self.earn_per_s);
        }
        if self.on && dt > 0.0 {
            self.expected_rate = Some(spent / self.hit_cost_ns() / dt);
        }
        self.credit_ns = (self.credit_ns + earned - spent).min(self.cap_ns());
        if self.on && self.credit_ns <= 0.0 {
            self.on = false;
            self.on_time += now - self.on_since;
            return Action::Detach;
        }
        if !self.on && self.credit_ns >= self.cap_ns() / 2.0 {
            // Rate unknown: a short probing slice measures it.
            let Some(rate) = self.expected_rate else {
                return Action::AttachFor(PROBE_SLICE);
            };
            // How long the credit lasts at the expected rate.
            let cost_per_s = rate * self.hit_cost_ns();
            let lasts = if cost_per_s > 0.0 {
                Duration::from_secs_f64(self.credit_ns / cost_per_s)
            } else {
                Duration::MAX
            };
            if lasts >= TICK {
                self.on = true;
                self.on_since = now;
                return Action::Attach;
            }
            if lasts >= MIN_SLICE {
                return Action::AttachFor(lasts);
            }
            // Not even a minimal slice fits: wait for the cap to grow.
        }
        Action::Keep
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

    /// Estimated probe time spent so far, as a share of the budget's
    /// allowance (for reports).
    pub fn probe_time_ns(&self) -> f64 {
        (self.total_hits + self.pending_hits) as f64 * self.cost_ns
    }

    pub fn cost_ns(&self) -> f64 {
        self.cost_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates `seconds` of a target using one core whose probes would
    /// fire `rate` times per second while attached; returns the probe time
    /// spent as a fraction of the target's CPU.
    fn simulate(rate: f64, seconds: f64) -> (f64, f64) {
        let mut g = Governor::new(1.0, 6_000.0, 0);
        let step = TICK;
        let start = Instant::now() - Duration::from_secs_f64(seconds);
        g.started = start;
        g.on_since = start;
        g.last_tick = start;
        let mut cpu = 0u64;
        let mut spent = 0.0;
        let mut t = Duration::ZERO;
        while t.as_secs_f64() < seconds {
            t += step;
            cpu += step.as_nanos() as u64;
            if g.is_on() {
                let hits = (rate * step.as_secs_f64()) as u64;
                g.record_hits(hits);
                spent += hits as f64 * 6_000.0;
            }
            // Drive the clock by hand: pretend `step` passed.
            g.last_tick -= step;
            let _ = g.tick(cpu);
        }
        (spent / cpu as f64, g.sampled_fraction())
    }

    #[test]
    fn heavy_probes_stay_within_budget() {
        // 100k hits/s × 6 µs = 60% of a core if always on.
        let (overhead, _) = simulate(100_000.0, 10.0);
        assert!(overhead < 0.013, "overhead {overhead}");
    }

    #[test]
    fn cheap_probes_stay_attached() {
        // 100 hits/s × 6 µs = 0.06%: never detached.
        let mut g = Governor::new(1.0, 6_000.0, 0);
        for i in 1..100u64 {
            g.record_hits(2);
            g.last_tick -= TICK;
            assert_eq!(g.tick(i * TICK.as_nanos() as u64), Action::Keep);
        }
        assert!(g.is_on());
    }
}

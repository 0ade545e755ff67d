//! The overhead governor: decides whether a command's per-call probes may
//! be attached, from everything they cost the target, and attaches them at
//! most once per window.
//!
//! What the target pays is counted, not assumed: every run of every program
//! of the set (the kernel's BPF run statistics count each hit, RET probes
//! included, and the time the program body took) plus the calibrated trap
//! of one hit, plus attaching and detaching as measured on this host. The
//! probes start detached. Once the runtime's own counters predict the hit
//! rate, the set is attached only if the predicted cost over the rest of
//! the window fits `budget` × the target's CPU over the window; otherwise it
//! stays off and the report says what it would have cost and which budget
//! would allow it. While attached, the measured cost is projected over the
//! rest of the window every tick, and the set is detached for good as soon
//! as it would overspend. Every figure taken from such probes carries the
//! fraction of the window they were attached.

use std::time::{Duration, Instant};

use serde::Serialize;

/// How often the governor decides (and callers poll `Governed::step`).
pub const POLL: Duration = Duration::from_millis(20);
/// Kept for callers that tick while nothing is attached.
pub const TICK: Duration = POLL;
/// When callers take the reading that first predicts the hit rate (later
/// ones come at their usual cadence): early, so a set that fits is
/// attached for most of the window.
pub const FIRST_PREDICTION: Duration = Duration::from_millis(200);
/// The rest of the window assumed for open-ended commands (`top`).
const OPEN_HORIZON: Duration = Duration::from_secs(10);
/// The CPU rate is only trusted after this much of the window (/proc CPU
/// moves in clock ticks; schedstat in ns, but the target's rate varies).
const MIN_ELAPSED: Duration = Duration::from_millis(150);
/// Measured spending is projected from the last one to two of these of
/// attachment.
const RATE_WINDOW: Duration = Duration::from_millis(500);
/// Spending over less attachment than this is not projected (one hit just
/// after a mark would look like a rate of thousands a second), unless it
/// came from at least MIN_RATE_HITS hits (a busy set shows its rate in
/// milliseconds, and must not overspend while a span fills).
const MIN_RATE_SPAN: Duration = Duration::from_millis(150);
const MIN_RATE_HITS: u64 = 32;

/// What attaching a set costs the target, besides its hits.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct LinkCosts {
    /// Target CPU per attach of the whole set, ns.
    pub attach_ns: f64,
    /// Target CPU per detach of the whole set, ns.
    pub detach_ns: f64,
}

/// Where the governor stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Phase {
    /// Waiting for a predicted rate.
    Waiting,
    Attached,
    /// Detached for good after `reason`.
    Detached {
        reason: String,
    },
    /// Never attached: the prediction did not fit.
    Declined {
        would_cost_percent: f64,
        needs_budget_percent: f64,
    },
}

#[derive(Clone, Debug)]
pub struct Governor {
    /// Fraction of the target's CPU (infinite: off).
    budget: f64,
    /// Calibrated cost of one hit's trap, ns.
    hit_ns: f64,
    links: LinkCosts,
    /// How long the window is planned to last (None: open-ended).
    window: Option<Duration>,
    started: Instant,
    cpu_start_ns: u64,
    cpu_now_ns: u64,
    phase: Phase,
    predicted_rate: Option<f64>,
    /// Measured so far: hits and program time (cumulative).
    hits: u64,
    run_ns: u64,
    /// (when, spent_ns) marks for the current spending rate: the newest,
    /// at most RATE_WINDOW old, and the one before it.
    rate_mark: Option<RateMark>,
    rate_base: Option<RateMark>,
    attaches: u32,
    detaches: u32,
    on_time: Duration,
    on_since: Option<Instant>,
}

/// A point the spending rate is measured from.
#[derive(Clone, Copy, Debug)]
struct RateMark {
    at: Instant,
    spent_ns: f64,
    hits: u64,
}

/// What the governor wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Keep,
    Attach,
    Detach,
}

impl Governor {
    /// `budget_percent` of the target's CPU (infinite: off); `hit_ns` per
    /// probe hit (the calibrated trap). Starts detached.
    pub fn detached(budget_percent: f64, hit_ns: f64, target_cpu_ns: u64) -> Self {
        Self {
            budget: budget_percent / 100.0,
            hit_ns,
            links: LinkCosts::default(),
            window: None,
            started: Instant::now(),
            cpu_start_ns: target_cpu_ns,
            cpu_now_ns: target_cpu_ns,
            phase: Phase::Waiting,
            predicted_rate: None,
            hits: 0,
            run_ns: 0,
            rate_mark: None,
            rate_base: None,
            attaches: 0,
            detaches: 0,
            on_time: Duration::ZERO,
            on_since: None,
        }
    }

    /// The window's planned length (the governor spreads the budget over it).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// What attaching and detaching the set cost the target.
    pub fn with_link_costs(mut self, links: LinkCosts) -> Self {
        self.links = links;
        self
    }

    /// For sets whose rate nothing predicts: attached when the window
    /// begins (that is its one attach), then governed by measured cost.
    pub fn attached_from_start(mut self) -> Self {
        let now = Instant::now();
        self.attach(now);
        self
    }

    /// True once the set was declined or detached: no decision is left.
    pub fn is_settled(&self) -> bool {
        matches!(self.phase, Phase::Detached { .. } | Phase::Declined { .. })
    }

    pub fn is_on(&self) -> bool {
        self.phase == Phase::Attached
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Hits per second the set would see, predicted from the runtime's own
    /// event counters (read from memory).
    pub fn predict_rate(&mut self, hits_per_s: f64) {
        if hits_per_s.is_finite() && hits_per_s >= 0.0 {
            self.predicted_rate = Some(hits_per_s);
        }
    }

    /// The set's cumulative hits and program time, from the kernel.
    pub fn record(&mut self, hits: u64, run_ns: u64) {
        self.hits = self.hits.max(hits);
        self.run_ns = self.run_ns.max(run_ns);
    }

    /// What the probes cost the target so far, ns: hits × trap + program
    /// time + attaches and detaches.
    pub fn spent_ns(&self) -> f64 {
        self.hits as f64 * self.hit_ns
            + self.run_ns as f64
            + f64::from(self.attaches) * self.links.attach_ns
            + f64::from(self.detaches) * self.links.detach_ns
    }

    /// The attach and detach part of `spent_ns`.
    pub fn link_spent_ns(&self) -> f64 {
        f64::from(self.attaches) * self.links.attach_ns
            + f64::from(self.detaches) * self.links.detach_ns
    }

    /// Cost of one hit (trap and program), ns, measured when there were hits.
    fn cost_per_hit_ns(&self) -> f64 {
        if self.hits > 0 {
            self.hit_ns + self.run_ns as f64 / self.hits as f64
        } else {
            // Before any hit: the trap and a body as costly again.
            2.0 * self.hit_ns
        }
    }

    fn remaining(&self, elapsed: Duration) -> Duration {
        match self.window {
            Some(w) => w.saturating_sub(elapsed),
            None => OPEN_HORIZON,
        }
    }

    /// What this set claims of the budget over the window, ns: while
    /// attached, what it spent plus its current spending over the rest of
    /// the window; while waiting, its predicted cost; otherwise what it
    /// spent.
    pub fn claim_ns(&self) -> f64 {
        let elapsed = self.started.elapsed();
        let remaining = self.remaining(elapsed).as_secs_f64();
        match self.phase {
            Phase::Attached => {
                let spent = self.spent_ns();
                spent
                    + self.spending_per_s(Instant::now(), spent) * remaining
                    + self.links.detach_ns
            }
            Phase::Waiting => self.predicted_rate.map_or(0.0, |r| {
                r * self.cost_per_hit_ns() * remaining + self.links.attach_ns + self.links.detach_ns
            }),
            Phase::Detached { .. } | Phase::Declined { .. } => self.spent_ns(),
        }
    }

    /// Decides, given the target's cumulative CPU time now and what other
    /// sets sharing the budget claim of it over the window (ns).
    pub fn tick(&mut self, target_cpu_ns: u64, reserved_ns: f64) -> Action {
        let now = Instant::now();
        self.cpu_now_ns = target_cpu_ns.max(self.cpu_now_ns);
        let elapsed = now - self.started;
        if self.budget.is_infinite() {
            // --overhead-budget off: attached for the whole window.
            return if self.phase == Phase::Waiting {
                self.attach(now)
            } else {
                Action::Keep
            };
        }
        if elapsed < MIN_ELAPSED {
            return Action::Keep;
        }
        let cpu_rate = (self.cpu_now_ns - self.cpu_start_ns) as f64 / elapsed.as_secs_f64();
        let remaining = self.remaining(elapsed);
        // Target CPU over the whole window at its rate so far, and the
        // probe time the budget allows over it.
        let window_cpu = cpu_rate * (elapsed + remaining).as_secs_f64();
        let allowance = self.budget * window_cpu - reserved_ns;
        match self.phase {
            Phase::Waiting => {
                // Nothing predicted, or nothing to probe yet (an idle
                // target): decide later.
                let Some(rate) = self.predicted_rate.filter(|r| *r > 0.0) else {
                    return Action::Keep;
                };
                let cost = rate * self.cost_per_hit_ns() * remaining.as_secs_f64()
                    + self.links.attach_ns
                    + self.links.detach_ns;
                if cost <= allowance && window_cpu > 0.0 {
                    return self.attach(now);
                }
                let would = if window_cpu > 0.0 {
                    100.0 * (cost + reserved_ns) / window_cpu
                } else {
                    f64::INFINITY
                };
                self.phase = Phase::Declined {
                    would_cost_percent: would,
                    needs_budget_percent: (would * 1.2).min(100.0),
                };
                Action::Keep
            }
            Phase::Attached => {
                let spent = self.spent_ns();
                let here = RateMark {
                    at: now,
                    spent_ns: spent,
                    hits: self.hits,
                };
                let mark = *self.rate_mark.get_or_insert(here);
                let spending_per_s = self.spending_per_s(now, spent);
                if now - mark.at >= RATE_WINDOW {
                    self.rate_base = Some(mark);
                    self.rate_mark = Some(here);
                }
                let projected =
                    spent + spending_per_s * remaining.as_secs_f64() + self.links.detach_ns;
                if projected > allowance {
                    self.phase = Phase::Detached {
                        reason: format!(
                            "measured spending projected to {:.2}% of the target's CPU over the window{}, over the {:.2}% budget",
                            100.0 * projected / window_cpu.max(1.0),
                            if reserved_ns > 0.0 {
                                format!(
                                    " with {:.2}% claimed by the other probe sets",
                                    100.0 * reserved_ns / window_cpu.max(1.0)
                                )
                            } else {
                                String::new()
                            },
                            100.0 * self.budget
                        ),
                    };
                    self.close(now);
                    return Action::Detach;
                }
                Action::Keep
            }
            Phase::Detached { .. } | Phase::Declined { .. } => Action::Keep,
        }
    }

    /// The current spending rate, ns/s: since the older mark (one to two
    /// RATE_WINDOWs back); 0 while that is under MIN_RATE_SPAN and under
    /// MIN_RATE_HITS hits.
    fn spending_per_s(&self, now: Instant, spent: f64) -> f64 {
        let Some(base) = self.rate_base.or(self.rate_mark) else {
            return 0.0;
        };
        let span = now.saturating_duration_since(base.at);
        let hits = self.hits.saturating_sub(base.hits);
        if span.is_zero() || (span < MIN_RATE_SPAN && hits < MIN_RATE_HITS) {
            return 0.0;
        }
        (spent - base.spent_ns).max(0.0) / span.as_secs_f64()
    }

    fn attach(&mut self, now: Instant) -> Action {
        self.phase = Phase::Attached;
        self.attaches += 1;
        self.on_since = Some(now);
        self.rate_base = None;
        self.rate_mark = Some(RateMark {
            at: now,
            spent_ns: self.spent_ns(),
            hits: self.hits,
        });
        Action::Attach
    }

    fn close(&mut self, now: Instant) {
        self.detaches += 1;
        if let Some(since) = self.on_since.take() {
            self.on_time += now - since;
        }
    }

    /// The window ended with the set attached: its detach is charged too.
    pub fn finish(&mut self) {
        if self.on_since.is_some() {
            self.close(Instant::now());
        }
    }

    /// Fraction of the time so far the probes were attached.
    pub fn sampled_fraction(&self) -> f64 {
        let total = self.started.elapsed().as_secs_f64();
        let on = self.on_time + self.on_since.map_or(Duration::ZERO, |s| s.elapsed());
        if total > 0.0 {
            (on.as_secs_f64() / total).min(1.0)
        } else {
            1.0
        }
    }

    pub fn cost_ns(&self) -> f64 {
        self.hit_ns
    }

    pub fn budget_percent(&self) -> f64 {
        self.budget * 100.0
    }

    /// Hits the kernel counted so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A governor whose window began `ago`, for driving by hand.
    fn started(budget: f64, ago: Duration, window: Duration) -> Governor {
        let mut g = Governor::detached(budget, 10_000.0, 0).with_window(window);
        g.started = Instant::now() - ago;
        g
    }

    #[test]
    fn a_cheap_set_is_attached_once_the_rate_is_known() {
        // A core busy, 100 hits/s × ~20 µs = 0.2% of it: fits 1%.
        let mut g = started(1.0, Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(g.tick(1_000_000_000, 0.0), Action::Keep, "no rate yet");
        g.predict_rate(100.0);
        assert_eq!(g.tick(1_000_000_000, 0.0), Action::Attach);
        assert!(g.is_on());
    }

    #[test]
    fn an_expensive_set_is_declined_with_the_budget_that_would_allow_it() {
        // 100k hits/s × ~20 µs = two cores' worth: never attached.
        let mut g = started(1.0, Duration::from_secs(1), Duration::from_secs(10));
        g.predict_rate(100_000.0);
        assert_eq!(g.tick(1_000_000_000, 0.0), Action::Keep);
        match g.phase() {
            Phase::Declined {
                would_cost_percent,
                needs_budget_percent,
            } => {
                assert!(*would_cost_percent > 100.0, "{would_cost_percent}");
                assert_eq!(*needs_budget_percent, 100.0);
            }
            other => panic!("{other:?}"),
        }
        // And it stays off.
        g.predict_rate(1.0);
        assert_eq!(g.tick(2_000_000_000, 0.0), Action::Keep);
        assert!(!g.is_on());
    }

    #[test]
    fn attach_and_detach_costs_count_against_the_budget() {
        // No hits at all, but attaching costs 20 ms of a 1 s × 1 core
        // window: more than 1%.
        let mut g = started(1.0, Duration::from_millis(200), Duration::from_secs(1))
            .with_link_costs(LinkCosts {
                attach_ns: 10e6,
                detach_ns: 10e6,
            });
        g.predict_rate(1.0);
        assert_eq!(g.tick(200_000_000, 0.0), Action::Keep);
        assert!(
            matches!(g.phase(), Phase::Declined { .. }),
            "{:?}",
            g.phase()
        );
    }

    #[test]
    fn measured_spending_over_the_budget_detaches_for_good() {
        let mut g = started(1.0, Duration::from_secs(1), Duration::from_secs(10));
        g.predict_rate(10.0);
        assert_eq!(g.tick(1_000_000_000, 0.0), Action::Attach);
        // The rate was mispredicted: 1 s of probe time in one tick.
        g.rate_mark = Some(RateMark {
            at: Instant::now() - Duration::from_millis(100),
            spent_ns: 0.0,
            hits: 0,
        });
        g.record(50_000, 500_000_000);
        assert_eq!(g.tick(1_100_000_000, 0.0), Action::Detach);
        assert!(matches!(g.phase(), Phase::Detached { .. }));
        g.predict_rate(0.0);
        assert_eq!(
            g.tick(5_000_000_000, 0.0),
            Action::Keep,
            "never re-attached"
        );
        assert_eq!(g.attaches, 1);
        assert_eq!(g.detaches, 1);
    }

    #[test]
    fn one_hit_just_after_a_mark_is_not_taken_for_a_rate() {
        // 10 hits/s × 25 µs of a 1-core target: 0.025%. A hit 5 ms after
        // the attach would read as 0.5% a second if projected alone.
        let mut g = started(1.0, Duration::from_secs(1), Duration::from_secs(600));
        g.predict_rate(10.0);
        assert_eq!(g.tick(1_000_000_000, 0.0), Action::Attach);
        assert_eq!(g.tick(1_000_000_000, 0.0), Action::Keep);
        g.record(1, 15_000);
        assert_eq!(g.tick(1_005_000_000, 0.0), Action::Keep);
        assert!(g.is_on());
    }

    #[test]
    fn a_busy_set_is_detached_before_a_rate_span_fills() {
        // 2,000 hits in the first milliseconds at 20 µs each: 40 ms of a
        // 1-core, 10 s window whose budget is 100 ms, at 40 ms per few ms.
        let mut g = started(1.0, Duration::from_secs(1), Duration::from_secs(10));
        g.predict_rate(10.0);
        assert_eq!(g.tick(1_000_000_000, 0.0), Action::Attach);
        std::thread::sleep(Duration::from_millis(2));
        g.record(2_000, 20_000_000);
        assert_eq!(g.tick(1_002_000_000, 0.0), Action::Detach);
    }

    #[test]
    fn off_attaches_at_once_and_keeps() {
        let mut g = Governor::detached(f64::INFINITY, 10_000.0, 0);
        assert_eq!(g.tick(0, 0.0), Action::Attach);
        g.record(1_000_000, 1_000_000_000);
        assert_eq!(g.tick(1, 0.0), Action::Keep);
    }
}

//! Goroutine leak suspects from repeated dumps: goroutines grouped by
//! (creation site, wait reason, blocking frame); a group is a suspect when
//! it keeps growing over the watch while the goroutines in it stay parked.
//! The runtime records a wait's start only in some cases, so goscope keeps
//! when it first saw each goroutine id in its group.
//!
//! Judging: the group's growth rate is the least-squares slope of its size
//! over the samples; it must have grown by at least `MIN_GROWTH` goroutines
//! and its retention (of the goroutines seen in it before the last sample,
//! the fraction still in it at the last) must be at least
//! `MIN_RETENTION`. A churning group (goroutines that come and go) fails
//! retention; a stable pool fails growth.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    goroutine_dump::{self, DumpLimits, GoroutineDump, creation_frame, frames_of},
    memory::TargetMemory,
    runtime::goroutines::{GoStatus, GoroutineReader},
    symbols::SourceSymbolizer,
};

/// A suspect group grew by at least this many goroutines over the watch.
const MIN_GROWTH: f64 = 10.0;
/// ... and kept at least this fraction of the goroutines it had.
const MIN_RETENTION: f64 = 0.9;
/// Samples needed before anything is judged.
const MIN_SAMPLES: usize = 3;
/// Groups tracked at most (keys come from the target's stacks); new ones
/// beyond are counted, not tracked.
pub const MAX_GROUPS: usize = 10_000;
/// A group empty at this many consecutive samples is forgotten.
const FORGET_AFTER_EMPTY: usize = 5;

/// (creation site, wait reason, blocking frame) as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LeakKey {
    pub created_by: String,
    pub wait_reason: String,
    pub blocking_frame: String,
}

/// One suspect, or a group's figures when it is not one.
#[derive(Clone, Debug, Serialize)]
pub struct GroupTrend {
    #[serde(flatten)]
    pub key: LeakKey,
    pub first_count: u64,
    pub last_count: u64,
    /// Least-squares growth, goroutines per minute.
    pub growth_per_min: f64,
    pub retention: f64,
    /// How long the longest-held goroutine of the group has been seen.
    pub oldest_seen_s: f64,
    /// The runtime's own longest recorded wait, where it recorded one.
    pub oldest_wait_s: Option<f64>,
    pub suspect: bool,
}

/// Samples of one watch.
#[derive(Default)]
pub struct LeakWatch {
    /// (seconds since start, size) per group per sample.
    sizes: HashMap<LeakKey, Vec<(f64, u64)>>,
    /// goid → (group, first seen at) of the goroutines in each group.
    seen: HashMap<u64, (LeakKey, f64)>,
    /// Goroutines of the group at the previous sample.
    members: HashMap<LeakKey, HashSet<u64>>,
    /// Of the goroutines in a group at some sample before the last, how
    /// many were still there at the last: (kept, ever).
    retention: HashMap<LeakKey, (u64, u64)>,
    oldest_wait: HashMap<LeakKey, f64>,
    samples: usize,
    last_at: f64,
    /// Group sightings not tracked because of `MAX_GROUPS`.
    untracked_groups: u64,
}

/// The first frame outside the runtime.
fn blocking_frame(dump: &GoroutineDump, pcs: &[u64]) -> String {
    let frames = frames_of(dump, pcs);
    frames
        .iter()
        .find(|f| {
            !f.function.starts_with("runtime.") && !f.function.starts_with("internal/runtime/")
        })
        .or(frames.first())
        .map_or_else(
            || "[no stack]".to_string(),
            |f| format!("{} {}:{}", f.function, f.file, f.line),
        )
}

impl LeakWatch {
    /// Adds a dump taken `at` into the watch.
    pub fn add(&mut self, dump: &GoroutineDump, at: Duration) {
        let at = at.as_secs_f64();
        let mut now: HashMap<LeakKey, HashSet<u64>> = HashMap::new();
        for g in dump
            .goroutines
            .iter()
            .filter(|g| matches!(g.status, GoStatus::Waiting | GoStatus::Syscall) && !g.system)
        {
            let key = LeakKey {
                created_by: creation_frame(dump, g.gopc).map_or_else(
                    || "[main goroutine]".to_string(),
                    |f| format!("{} {}:{}", f.function, f.file, f.line),
                ),
                wait_reason: g
                    .wait_reason
                    .clone()
                    .unwrap_or_else(|| g.status.name().to_string()),
                blocking_frame: blocking_frame(dump, g.pcs()),
            };
            if let Some(wait) = g.waiting {
                let oldest = self.oldest_wait.entry(key.clone()).or_default();
                *oldest = oldest.max(wait.as_secs_f64());
            }
            let entry = self.seen.entry(g.goid).or_insert_with(|| (key.clone(), at));
            if entry.0 != key {
                *entry = (key.clone(), at);
            }
            now.entry(key).or_default().insert(g.goid);
        }
        for (key, sizes) in &mut self.sizes {
            if !now.contains_key(key) {
                sizes.push((at, 0));
            }
        }
        // Forget groups that stayed empty (bounded memory).
        self.sizes.retain(|_, sizes| {
            sizes.len() < FORGET_AFTER_EMPTY
                || sizes[sizes.len() - FORGET_AFTER_EMPTY..]
                    .iter()
                    .any(|&(_, n)| n > 0)
        });
        let sizes = &self.sizes;
        self.oldest_wait.retain(|key, _| sizes.contains_key(key));
        for (key, goids) in &now {
            if !self.sizes.contains_key(key) && self.sizes.len() >= MAX_GROUPS {
                self.untracked_groups += 1;
                continue;
            }
            self.sizes
                .entry(key.clone())
                .or_default()
                .push((at, goids.len() as u64));
        }
        // Retention is judged at the last sample: recompute against it.
        self.retention.clear();
        let ever: HashMap<&LeakKey, HashSet<u64>> = self
            .seen
            .iter()
            .filter(|(_, (_, first))| *first < at)
            .fold(HashMap::new(), |mut acc, (goid, (key, _))| {
                acc.entry(key).or_default().insert(*goid);
                acc
            });
        for (key, before) in ever {
            let kept = now
                .get(key)
                .map_or(0, |n| before.iter().filter(|g| n.contains(g)).count());
            self.retention
                .insert(key.clone(), (kept as u64, before.len() as u64));
        }
        // Forget goroutines gone from every group (bounded memory).
        let alive: HashSet<u64> = now.values().flatten().copied().collect();
        let previous: HashSet<u64> = self.members.values().flatten().copied().collect();
        for goid in previous.difference(&alive) {
            if let Some((key, _)) = self.seen.remove(goid) {
                let r = self.retention.entry(key).or_default();
                r.1 += 1;
            }
        }
        self.members = now;
        self.samples += 1;
        self.last_at = at;
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Group sightings left untracked (more than `MAX_GROUPS` groups).
    pub fn untracked_groups(&self) -> u64 {
        self.untracked_groups
    }

    /// Every group's trend, suspects first, by growth.
    pub fn trends(&self) -> Vec<GroupTrend> {
        let mut trends: Vec<GroupTrend> = self
            .sizes
            .iter()
            .map(|(key, sizes)| {
                let slope = slope(sizes);
                let (first, last) = (sizes[0].1, sizes[sizes.len() - 1].1);
                let (kept, ever) = self.retention.get(key).copied().unwrap_or((0, 0));
                let retention = if ever == 0 {
                    1.0
                } else {
                    kept as f64 / ever as f64
                };
                let oldest_seen = self
                    .members
                    .get(key)
                    .into_iter()
                    .flatten()
                    .filter_map(|g| self.seen.get(g).map(|(_, t)| self.last_at - t))
                    .fold(0.0, f64::max);
                let grew = slope * (self.last_at - sizes[0].0);
                GroupTrend {
                    key: key.clone(),
                    first_count: first,
                    last_count: last,
                    growth_per_min: slope * 60.0,
                    retention,
                    oldest_seen_s: oldest_seen,
                    oldest_wait_s: self.oldest_wait.get(key).copied(),
                    suspect: self.samples >= MIN_SAMPLES
                        && grew >= MIN_GROWTH
                        && retention >= MIN_RETENTION,
                }
            })
            .collect();
        trends.sort_by(|a, b| {
            b.suspect
                .cmp(&a.suspect)
                .then(b.growth_per_min.total_cmp(&a.growth_per_min))
        });
        trends
    }
}

/// A watch on its own thread (doctor's leak section): a dump at most every
/// `interval`, lengthened so dumps take at most 1/`COST_DIVISOR` of a core.
pub struct LeakWatcher {
    shared: Arc<WatcherShared>,
    thread: Option<JoinHandle<()>>,
}

/// Dumps take at most 1/this of a core.
pub const COST_DIVISOR: u32 = 20;

struct WatcherShared {
    watch: Mutex<LeakWatch>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// What a dump needs, moved onto the watcher's thread.
pub struct DumpSource {
    pub reader: GoroutineReader,
    pub memory: Box<dyn TargetMemory + Send>,
    pub symbols: SourceSymbolizer,
    pub bias: u64,
    pub limits: DumpLimits,
}

impl LeakWatcher {
    pub fn start(source: DumpSource, interval: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(WatcherShared {
            watch: Mutex::new(LeakWatch::default()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let inner = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("leak-watch".into())
            .spawn(move || {
                let started = Instant::now();
                loop {
                    let pause = match goroutine_dump::take(
                        &source.reader,
                        &*source.memory,
                        &source.symbols,
                        source.bias,
                        source.limits,
                    ) {
                        Ok(dump) => {
                            let cost = dump.elapsed;
                            inner
                                .watch
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .add(&dump, started.elapsed());
                            interval.max(cost * COST_DIVISOR)
                        }
                        // A failed read (a race, or the target ending) is
                        // a missing sample, not an error of the window.
                        Err(_) => interval,
                    };
                    let stop = inner.stop.lock().unwrap_or_else(|p| p.into_inner());
                    let (stop, _) = inner
                        .wake
                        .wait_timeout_while(stop, pause, |stop| !*stop)
                        .unwrap_or_else(|p| p.into_inner());
                    if *stop {
                        return;
                    }
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The suspects so far and the number of dumps behind them.
    pub fn suspects(&self) -> (Vec<GroupTrend>, usize) {
        let watch = self.shared.watch.lock().unwrap_or_else(|p| p.into_inner());
        let suspects = watch.trends().into_iter().filter(|t| t.suspect).collect();
        (suspects, watch.samples())
    }
}

impl Drop for LeakWatcher {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Least-squares slope of (t, n), per second.
fn slope(points: &[(f64, u64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (st, sn) = points
        .iter()
        .fold((0.0, 0.0), |(st, sn), &(t, c)| (st + t, sn + c as f64));
    let (mt, mn) = (st / n, sn / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), &(t, c)| {
        (num + (t - mt) * (c as f64 - mn), den + (t - mt) * (t - mt))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn the_slope_is_least_squares() {
        assert_eq!(slope(&[(0.0, 10), (1.0, 60), (2.0, 110)]), 50.0);
        assert_eq!(slope(&[(0.0, 5)]), 0.0);
        assert_eq!(slope(&[(1.0, 5), (1.0, 9)]), 0.0);
    }
}

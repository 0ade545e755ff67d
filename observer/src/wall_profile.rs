//! A wall-clock (blocking) profile from outside: the goroutine table and
//! stacks sampled at an interval, each goroutine charged the time since
//! the previous sample in its state class (running, runnable, in a syscall
//! or C, waiting) at its stack. It says where goroutines spend their time,
//! parked ones included, which thread-level off-CPU profilers cannot see
//! (a parked goroutine is no thread). A running goroutine has no saved
//! stack: it is charged at its start function.

use std::collections::HashMap;

use serde::Serialize;

use crate::{
    goroutine_dump::{GoroutineDump, JsonFrame, start_key},
    pprof::{self, Location},
    runtime::{goroutines::GoStatus, labels::Label},
};

/// Where a goroutine's time goes, as the profile's sample types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateClass {
    /// On a thread (running, or growing its stack).
    Running,
    /// Ready, waiting for a P (runnable, preempted).
    Runnable,
    /// In a system call or in C.
    Syscall,
    /// Parked: channel, select, sleep, IO, locks, GC assist, ...
    Waiting,
}

impl StateClass {
    pub const ALL: [StateClass; 4] = [
        StateClass::Running,
        StateClass::Runnable,
        StateClass::Syscall,
        StateClass::Waiting,
    ];

    /// The class of a status (`None`: no goroutine).
    pub fn of(status: GoStatus) -> Option<Self> {
        match status {
            GoStatus::Running | GoStatus::Copystack => Some(StateClass::Running),
            GoStatus::Runnable | GoStatus::Preempted => Some(StateClass::Runnable),
            GoStatus::Syscall => Some(StateClass::Syscall),
            GoStatus::Waiting | GoStatus::Leaked | GoStatus::Unknown(_) => {
                Some(StateClass::Waiting)
            }
            GoStatus::Idle | GoStatus::Dead | GoStatus::DeadExtra => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StateClass::Running => "running",
            StateClass::Runnable => "runnable",
            StateClass::Syscall => "syscall",
            StateClass::Waiting => "waiting",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// (state class, wait reason, stack PCs or start entry, labels).
type Key = (StateClass, Option<String>, Vec<u64>, u64, Vec<Label>);

/// Time accumulated over a profile.
#[derive(Default)]
pub struct WallProfile {
    time_ns: HashMap<Key, u64>,
    locations: HashMap<u64, Location>,
    pub samples: u64,
    pub elapsed_ns: u64,
    /// Time no sample stands for: goscope was late (starved of CPU), and
    /// charging the gap to the state it found would favour the states in
    /// which the target leaves a CPU free.
    pub unobserved_ns: u64,
}

/// One row of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct WallRow {
    pub state: StateClass,
    pub wait_reason: Option<String>,
    pub start_function: Option<String>,
    pub frames: Vec<JsonFrame>,
    pub labels: Vec<Label>,
    pub seconds: f64,
    /// Share of all goroutine time in the profile.
    pub share: f64,
}

impl WallProfile {
    /// Charges every goroutine of `dump` the time since the previous
    /// sample in its state, at most `max_ns` (the rest is unobserved).
    pub fn add(&mut self, dump: &GoroutineDump, elapsed_ns: u64, max_ns: u64) {
        let dt_ns = elapsed_ns.min(max_ns);
        self.samples += 1;
        self.elapsed_ns += elapsed_ns;
        self.unobserved_ns += elapsed_ns - dt_ns;
        for g in &dump.goroutines {
            let Some(class) = StateClass::of(g.status) else {
                continue;
            };
            let start = if g.pcs().is_empty() { g.startpc } else { 0 };
            let key = (
                class,
                g.wait_reason.clone(),
                g.pcs().to_vec(),
                start,
                g.labels.to_vec(),
            );
            *self.time_ns.entry(key).or_default() += dt_ns;
            for &pc in g.pcs() {
                self.locations
                    .entry(pc)
                    .or_insert_with(|| dump.location(pc));
            }
            if start != 0 {
                self.locations
                    .entry(start_key(start))
                    .or_insert_with(|| dump.location(start_key(start)));
            }
        }
    }

    fn location(&self, pc: u64) -> Location {
        self.locations
            .get(&pc)
            .cloned()
            .unwrap_or_else(|| Location::named(pc, "[unknown]"))
    }

    /// Goroutine-seconds by state class.
    pub fn by_state(&self) -> Vec<(StateClass, f64)> {
        let mut totals = [0u64; 4];
        for ((class, ..), ns) in &self.time_ns {
            totals[class.index()] += ns;
        }
        StateClass::ALL
            .iter()
            .map(|&c| (c, totals[c.index()] as f64 / 1e9))
            .collect()
    }

    /// Rows, biggest first.
    pub fn rows(&self) -> Vec<WallRow> {
        let total: u64 = self.time_ns.values().sum();
        let mut rows: Vec<WallRow> = self
            .time_ns
            .iter()
            .map(|((class, reason, pcs, start, labels), &ns)| WallRow {
                state: *class,
                wait_reason: reason.clone(),
                start_function: (*start != 0)
                    .then(|| {
                        self.location(start_key(*start))
                            .lines
                            .last()
                            .map(|l| l.function.clone())
                    })
                    .flatten(),
                frames: pcs
                    .iter()
                    .flat_map(|&pc| {
                        self.location(pc).lines.into_iter().map(|l| JsonFrame {
                            function: l.function,
                            file: l.file,
                            line: l.line,
                        })
                    })
                    .collect(),
                labels: labels.clone(),
                seconds: ns as f64 / 1e9,
                share: if total == 0 {
                    0.0
                } else {
                    ns as f64 / total as f64
                },
            })
            .collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        rows
    }

    /// The pprof profile: one sample type per state class (nanoseconds),
    /// wait reason and pprof labels as sample labels.
    pub fn to_pprof(&self) -> std::io::Result<Vec<u8>> {
        let types: Vec<(&str, &str)> = StateClass::ALL
            .iter()
            .map(|c| (c.name(), "nanoseconds"))
            .collect();
        let mut profile = pprof::Profile::new(&types, ("wall", "nanoseconds"), 1);
        for ((class, reason, pcs, start, labels), &ns) in &self.time_ns {
            let stack: Vec<Location> = if pcs.is_empty() {
                vec![self.location(start_key(*start))]
            } else {
                pcs.iter().map(|&pc| self.location(pc)).collect()
            };
            let mut values = [0i64; 4];
            values[class.index()] = i64::try_from(ns).unwrap_or(i64::MAX);
            let mut tags: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if let Some(reason) = reason.as_deref().filter(|r| !r.is_empty()) {
                tags.push(("wait_reason", reason));
            }
            profile.add_labeled(&stack, &values, &tags);
        }
        profile.encode(self.elapsed_ns)
    }
}

/// The frame a row's time is spent at, for text: the first frame outside
/// the runtime, else the start function.
pub fn row_frame(row: &WallRow) -> String {
    row.frames
        .iter()
        .find(|f| {
            !f.function.starts_with("runtime.") && !f.function.starts_with("internal/runtime/")
        })
        .or(row.frames.first())
        .map_or_else(
            || {
                row.start_function
                    .clone()
                    .unwrap_or_else(|| "[unknown]".into())
            },
            |f| {
                format!(
                    "{} {}:{}",
                    f.function,
                    f.file.rsplit('/').next().unwrap_or(&f.file),
                    f.line
                )
            },
        )
}

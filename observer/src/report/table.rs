//! The figure table: every scalar figure goscope reads from the target
//! (memory or /proc) is declared here once, with its unit, how it is read,
//! where it comes from, its runtime/metrics twin and its Prometheus name.
//! doctor's `figures` (JSON and `--verbose` text), the agent's exposition,
//! `top`'s figures pane and the accuracy test are all driven from it:
//! adding a figure is one entry here (plus the read in `runtime::snapshot`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{cgroup::CpuStat, format, runtime::RuntimeSnapshot};

/// What a figure counts, for rendering.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Bytes,
    /// Objects, cycles, goroutines, calls, threads, periods.
    Count,
    Seconds,
    Percent,
}

/// How a figure behaves over time.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Cumulative since the process started: a window reports the delta
    /// and its rate; Prometheus a counter.
    Counter,
    /// A value at an instant: a window reports its end value.
    Gauge,
}

/// How close goscope's figure is to its runtime/metrics twin over the same
/// window (what the accuracy test holds it to).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    Exact,
    /// Within this fraction of the runtime's value, or `floor` in the unit.
    Within {
        fraction: f64,
        floor: f64,
    },
}

/// Everything a figure may be read from: one reading of the target.
pub struct Inputs<'a> {
    pub runtime: &'a RuntimeSnapshot,
    /// Object size per size class.
    pub class_sizes: &'a [u64],
    /// User + system CPU of the process, ns.
    pub cpu_ns: u64,
    pub threads: u64,
    pub cpu_stat: Option<CpuStat>,
}

/// One figure's declaration.
pub struct Figure {
    /// Dotted key: doctor's `figures` map and the text's row name.
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub kind: Kind,
    /// The cumulative or instantaneous value in one reading, in `unit`;
    /// None when this target's runtime does not keep it.
    pub read: fn(&Inputs<'_>) -> Option<f64>,
    /// Where it is read from.
    pub source: &'static str,
    /// The runtime/metrics name that means the same, if any (counters:
    /// compared as window deltas; gauges: at the window's end).
    pub runtime_metric: Option<(&'static str, Agreement)>,
    /// Prometheus series name and help (type from `kind`).
    pub prometheus: Option<(&'static str, &'static str)>,
}

const COUNT_1PCT: Agreement = Agreement::Within {
    fraction: 0.01,
    floor: 1.0,
};
/// CPU seconds: the runtime accounts GC CPU per cycle, so the two windows'
/// edges may split a cycle differently.
const CPU_10PCT: Agreement = Agreement::Within {
    fraction: 0.10,
    floor: 0.000_1,
};

fn ns(v: Option<i64>) -> Option<f64> {
    v.map(|ns| ns as f64 / 1e9)
}

pub const FIGURES: &[Figure] = &[
    Figure {
        key: "alloc.bytes",
        label: "heap bytes allocated",
        unit: Unit::Bytes,
        kind: Kind::Counter,
        read: |i| Some(i.runtime.alloc.totals(i.class_sizes).1 as f64),
        source: "runtime.memstats.heapStats (consistent stats), size-class rounded",
        runtime_metric: Some(("/gc/heap/allocs:bytes", COUNT_1PCT)),
        prometheus: Some((
            "goscope_alloc_bytes_total",
            "Heap bytes allocated (size-class rounded), as /gc/heap/allocs:bytes.",
        )),
    },
    Figure {
        key: "alloc.objects",
        label: "heap objects allocated",
        unit: Unit::Count,
        kind: Kind::Counter,
        read: |i| Some(i.runtime.alloc.totals(i.class_sizes).0 as f64),
        source: "runtime.memstats.heapStats (consistent stats), tiny objects excluded",
        runtime_metric: Some(("/gc/heap/allocs:objects", COUNT_1PCT)),
        prometheus: Some((
            "goscope_alloc_objects_total",
            "Heap objects allocated (tiny objects excluded), as /gc/heap/allocs:objects.",
        )),
    },
    Figure {
        key: "alloc.tiny_objects",
        label: "tiny objects allocated",
        unit: Unit::Count,
        kind: Kind::Counter,
        read: |i| Some(i.runtime.alloc.tiny_objects as f64),
        source: "runtime.memstats.heapStats.tinyAllocCount",
        runtime_metric: Some(("/gc/heap/tiny/allocs:objects", COUNT_1PCT)),
        prometheus: Some((
            "goscope_alloc_tiny_objects_total",
            "Tiny objects combined into 16-byte blocks, as /gc/heap/tiny/allocs:objects.",
        )),
    },
    Figure {
        key: "heap.frees_bytes",
        label: "heap bytes freed",
        unit: Unit::Bytes,
        kind: Kind::Counter,
        read: |i| i.runtime.heap_frees_bytes.map(|b| b as f64),
        source: "runtime.gcController.totalFree (added by the sweeper)",
        runtime_metric: Some(("/gc/heap/frees:bytes", COUNT_1PCT)),
        prometheus: Some((
            "goscope_heap_frees_bytes_total",
            "Heap bytes freed by the sweeper, as /gc/heap/frees:bytes.",
        )),
    },
    Figure {
        key: "gc.cycles",
        label: "GC cycles",
        unit: Unit::Count,
        kind: Kind::Counter,
        read: |i| Some(f64::from(i.runtime.gc_cycles)),
        source: "runtime.memstats.numgc",
        runtime_metric: Some(("/gc/cycles/total:gc-cycles", Agreement::Exact)),
        prometheus: Some((
            "goscope_gc_cycles_total",
            "Completed GC cycles, as /gc/cycles/total:gc-cycles.",
        )),
    },
    Figure {
        key: "gc.cpu_seconds",
        label: "GC CPU",
        unit: Unit::Seconds,
        kind: Kind::Counter,
        read: |i| ns(i.runtime.gc_total_cpu_ns),
        source: "runtime.work.cpuStats + gcController (the cycle in progress)",
        runtime_metric: Some(("/cpu/classes/gc/total:cpu-seconds", CPU_10PCT)),
        prometheus: Some((
            "goscope_gc_cpu_seconds_total",
            "CPU spent in the GC, as /cpu/classes/gc/total:cpu-seconds.",
        )),
    },
    Figure {
        key: "gc.assist_cpu_seconds",
        label: "mark-assist CPU",
        unit: Unit::Seconds,
        kind: Kind::Counter,
        read: |i| ns(i.runtime.gc_assist_cpu_ns),
        source: "runtime.work.cpuStats.gcAssistTime + gcController.assistTime",
        runtime_metric: Some(("/cpu/classes/gc/mark/assist:cpu-seconds", CPU_10PCT)),
        prometheus: Some((
            "goscope_gc_assist_cpu_seconds_total",
            "CPU goroutines spent mark-assisting, as /cpu/classes/gc/mark/assist:cpu-seconds.",
        )),
    },
    Figure {
        key: "heap.live_bytes",
        label: "heap live (marked by the last GC)",
        unit: Unit::Bytes,
        kind: Kind::Gauge,
        read: |i| Some(i.runtime.heap_marked as f64),
        source: "runtime.gcController.heapMarked",
        runtime_metric: Some(("/gc/heap/live:bytes", Agreement::Exact)),
        prometheus: Some((
            "goscope_heap_live_bytes",
            "Heap marked live by the last GC, as /gc/heap/live:bytes.",
        )),
    },
    Figure {
        key: "heap.goal_bytes",
        label: "heap goal",
        unit: Unit::Bytes,
        kind: Kind::Gauge,
        read: |i| i.runtime.heap_goal.map(|g| g as f64),
        source: "runtime.gcController (heapGoal computed as the runtime does)",
        runtime_metric: Some(("/gc/heap/goal:bytes", Agreement::Exact)),
        prometheus: Some((
            "goscope_heap_goal_bytes",
            "Heap size the GC aims for, as /gc/heap/goal:bytes.",
        )),
    },
    Figure {
        key: "gc.gogc_percent",
        label: "GOGC",
        unit: Unit::Count,
        kind: Kind::Gauge,
        read: |i| Some(f64::from(i.runtime.gc_percent)),
        source: "runtime.gcController.gcPercent",
        runtime_metric: Some(("/gc/gogc:percent", Agreement::Exact)),
        prometheus: Some(("goscope_gogc_percent", "GOGC (negative when GC is off).")),
    },
    Figure {
        key: "gc.gomemlimit_bytes",
        label: "GOMEMLIMIT",
        unit: Unit::Bytes,
        kind: Kind::Gauge,
        read: |i| i.runtime.memory_limit.map(|l| l as f64),
        source: "runtime.gcController.memoryLimit",
        runtime_metric: Some(("/gc/gomemlimit:bytes", Agreement::Exact)),
        prometheus: Some((
            "goscope_gomemlimit_bytes",
            "GOMEMLIMIT, as /gc/gomemlimit:bytes (math.MaxInt64 when unset).",
        )),
    },
    Figure {
        key: "goroutines.created",
        label: "goroutines created",
        unit: Unit::Count,
        kind: Kind::Counter,
        read: |i| Some(i.runtime.goroutines_created as f64),
        source: "runtime.sched.goroutinesCreated + Σ p (1.26+), else goidgen − cached goids",
        runtime_metric: Some(("/sched/goroutines-created:goroutines", COUNT_1PCT)),
        prometheus: Some((
            "goscope_goroutines_created_total",
            "Goroutines created, as /sched/goroutines-created:goroutines.",
        )),
    },
    Figure {
        key: "goroutines.live",
        label: "goroutines (runtime.NumGoroutine)",
        unit: Unit::Count,
        kind: Kind::Gauge,
        read: |i| Some(i.runtime.goroutines_user as f64),
        source: "allglen − free gs − system gs",
        // /sched/goroutines counts system goroutines too from Go 1.26.
        runtime_metric: None,
        prometheus: Some((
            "goscope_goroutines",
            "Live goroutines, as runtime.NumGoroutine counts them.",
        )),
    },
    Figure {
        key: "sched.gomaxprocs",
        label: "GOMAXPROCS",
        unit: Unit::Count,
        kind: Kind::Gauge,
        read: |i| Some(f64::from(i.runtime.gomaxprocs)),
        source: "runtime.gomaxprocs",
        runtime_metric: Some(("/sched/gomaxprocs:threads", Agreement::Exact)),
        prometheus: Some(("goscope_gomaxprocs", "GOMAXPROCS.")),
    },
    Figure {
        key: "cgo.calls",
        label: "cgo calls",
        unit: Unit::Count,
        kind: Kind::Counter,
        read: |i| Some(i.runtime.cgo_calls as f64),
        source: "runtime.ncgocall + Σ m.ncgocall over allm",
        runtime_metric: Some(("/cgo/go-to-c-calls:calls", COUNT_1PCT)),
        prometheus: Some((
            "goscope_cgo_calls_total",
            "Calls from Go to C, as /cgo/go-to-c-calls:calls.",
        )),
    },
    Figure {
        key: "process.threads",
        label: "OS threads",
        unit: Unit::Count,
        kind: Kind::Gauge,
        read: |i| Some(i.threads as f64),
        source: "/proc/PID/status Threads",
        runtime_metric: None,
        prometheus: Some(("goscope_os_threads", "OS threads of the process.")),
    },
    Figure {
        key: "process.cpu_seconds",
        label: "process CPU (user + system)",
        unit: Unit::Seconds,
        kind: Kind::Counter,
        read: |i| Some(i.cpu_ns as f64 / 1e9),
        source: "the process's kernel CPU clock (clock_getcpuclockid, ns)",
        runtime_metric: None,
        prometheus: Some((
            "goscope_process_cpu_seconds_total",
            "User and system CPU of the process.",
        )),
    },
    Figure {
        key: "cfs.periods",
        label: "CFS periods",
        unit: Unit::Count,
        kind: Kind::Counter,
        read: |i| i.cpu_stat.map(|s| s.periods as f64),
        source: "the cgroup's cpu.stat nr_periods",
        runtime_metric: None,
        prometheus: Some((
            "goscope_cfs_periods_total",
            "CFS enforcement periods of the process's cgroup.",
        )),
    },
    Figure {
        key: "cfs.throttled_periods",
        label: "CFS throttled periods",
        unit: Unit::Count,
        kind: Kind::Counter,
        read: |i| i.cpu_stat.map(|s| s.throttled_periods as f64),
        source: "the cgroup's cpu.stat nr_throttled",
        runtime_metric: None,
        prometheus: Some((
            "goscope_cfs_throttled_periods_total",
            "CFS periods in which the process's cgroup was throttled.",
        )),
    },
    Figure {
        key: "cfs.throttled_seconds",
        label: "CFS throttled time",
        unit: Unit::Seconds,
        kind: Kind::Counter,
        read: |i| i.cpu_stat.map(|s| s.throttled_ns as f64 / 1e9),
        source: "the cgroup's cpu.stat throttled_time / throttled_usec",
        runtime_metric: None,
        prometheus: Some((
            "goscope_cfs_throttled_seconds_total",
            "Time the process's cgroup spent throttled.",
        )),
    },
];

/// A figure over a window.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct FigureValue {
    /// Counters: the window's delta; gauges: the value at its end.
    pub value: f64,
    /// Counters: per second over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_s: Option<f64>,
}

impl Figure {
    /// This figure over the window between two readings (None when the
    /// target's runtime does not keep it).
    pub fn over(&self, first: &Inputs<'_>, last: &Inputs<'_>, seconds: f64) -> Option<FigureValue> {
        let end = (self.read)(last)?;
        Some(match self.kind {
            Kind::Gauge => FigureValue {
                value: end,
                per_s: None,
            },
            Kind::Counter => {
                let delta = (end - (self.read)(first)?).max(0.0);
                FigureValue {
                    value: delta,
                    per_s: Some(if seconds > 0.0 { delta / seconds } else { 0.0 }),
                }
            }
        })
    }

    /// A value in this figure's unit, for text.
    pub fn render(&self, value: f64) -> String {
        // The runtime's "no limit" (math.MaxInt64), e.g. GOMEMLIMIT unset.
        if value >= i64::MAX as f64 {
            return "unset".into();
        }
        match self.unit {
            Unit::Bytes => format::bytes(value),
            Unit::Count => format::count(value),
            Unit::Seconds => format::duration_ns(value * 1e9),
            Unit::Percent => format::percent(value / 100.0),
        }
    }

    /// `value` (and `per_s`) as one short text cell.
    pub fn render_value(&self, v: &FigureValue) -> String {
        match v.per_s {
            Some(rate) => format!("{} ({}/s)", self.render(v.value), self.render(rate)),
            None => self.render(v.value),
        }
    }
}

/// Every figure of the table over a window, by key.
pub fn window(
    first: &Inputs<'_>,
    last: &Inputs<'_>,
    seconds: f64,
) -> BTreeMap<&'static str, FigureValue> {
    FIGURES
        .iter()
        .filter_map(|f| Some((f.key, f.over(first, last, seconds)?)))
        .collect()
}

/// The figure declared under `key`.
pub fn figure(key: &str) -> Option<&'static Figure> {
    FIGURES.iter().find(|f| f.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prometheus_names_are_unique() {
        let mut keys = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for f in FIGURES {
            assert!(keys.insert(f.key), "duplicate key {}", f.key);
            if let Some((name, _)) = f.prometheus {
                assert!(names.insert(name), "duplicate series {name}");
                let counter_name = name.ends_with("_total");
                assert_eq!(
                    counter_name,
                    f.kind == Kind::Counter,
                    "{name}: counters end in _total, gauges do not"
                );
            }
        }
    }
}

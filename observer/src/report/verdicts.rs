//! Verdicts: judgements on the collected figures that name the numbers
//! behind them and the fix. Thresholds are named constants; every verdict
//! quotes the figures that triggered it.

use serde::Serialize;

use super::DoctorReport;
use crate::{
    format::{bytes, count, duration_ns, percent},
};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Crit,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "WARN",
            Severity::Crit => "CRIT",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub id: &'static str,
    pub severity: Severity,
    pub message: String,
}

/// GC CPU as a share of the process's CPU.
const GC_CPU_WARN: f64 = 0.10;
const GC_CPU_CRIT: f64 = 0.25;
/// Mark-assist CPU as a share of the process's CPU.
const ASSIST_WARN: f64 = 0.05;
const ASSIST_CRIT: f64 = 0.15;
/// GC cycles per second.
const GC_RATE_WARN: f64 = 10.0;
/// p99 scheduling latency, ns.
const SCHED_P99_WARN: f64 = 10e6;
const SCHED_P99_CRIT: f64 = 50e6;
/// Goroutine growth inside one window that looks like a leak.
const GOROUTINE_GROWTH_MIN: i64 = 1000;
/// Heap goal as a share of the container's memory limit.
const CONTAINER_GOAL_WARN: f64 = 0.8;
/// Share of CFS periods throttled.
const THROTTLE_WARN: f64 = 0.10;
const THROTTLE_CRIT: f64 = 0.50;
/// Runtime share of sampled CPU worth a verdict, and the samples needed.
const RUNTIME_CPU_WARN: f64 = 0.30;
const MIN_CPU_SAMPLES: u64 = 50;
/// cgo p99 latency worth a warning, ns.
const CGO_SLOW_P99_NS: f64 = 1e6;
/// cgo calls per second worth a note.
const CGO_RATE_INFO: f64 = 100_000.0;

fn severity(value: f64, warn: f64, crit: f64) -> Option<Severity> {
    if value >= crit {
        Some(Severity::Crit)
    } else if value >= warn {
        Some(Severity::Warn)
    } else {
        None
    }
}

pub fn judge(r: &DoctorReport) -> Vec<Verdict> {
    let mut v = Vec::new();
    let g = &r.gc;
    let gogc = g.gogc.map_or("off".to_string(), |p| p.to_string());
    let live = bytes(g.heap_live_bytes as f64);
    let goal = g.heap_goal_bytes.map_or("?".into(), |b| bytes(b as f64));
    let alloc_rate = bytes(r.alloc.bytes_per_s);
    let top_class = r
        .alloc
        .by_size
        .iter()
        .max_by_key(|c| c.bytes)
        .filter(|c| c.bytes > 0)
        .map(|c| match c.size {
            Some(size) => format!("; most bytes go to {size} B objects"),
            None => "; most bytes go to large objects".to_string(),
        })
        .unwrap_or_default();

    if let Some(share) = g.gc_cpu_share
        && let Some(severity) = severity(share, GC_CPU_WARN, GC_CPU_CRIT)
    {
        v.push(Verdict {
                id: "gc_cpu",
                severity,
                message: format!(
                    "GC takes {} of the process's CPU ({:.1} cycles/s at {alloc_rate}/s allocated{top_class}): allocate less, or raise GOGC (now {gogc}) or set GOMEMLIMIT so the heap may grow past its goal {goal} (live {live})",
                    percent(share),
                    g.cycles_per_s
                ),
            });
    }
    if let Some(share) = g.assist_cpu_share
        && let Some(severity) = severity(share, ASSIST_WARN, ASSIST_CRIT)
    {
        v.push(Verdict {
                id: "mark_assist",
                severity,
                message: format!(
                    "goroutines spend {} of the process's CPU in GC mark assist, paying for the GC on the request path: give the pacer headroom (GOGC {gogc} -> higher, or a GOMEMLIMIT well above the live heap {live}) or cut the {alloc_rate}/s allocation rate",
                    percent(share)
                ),
            });
    }
    if g.cycles_per_s >= GC_RATE_WARN {
        v.push(Verdict {
            id: "gc_frequency",
            severity: Severity::Warn,
            message: format!(
                "GC runs {:.1} times per second ({} cycles in the window; live heap {live}, goal {goal}): a small live heap with GOGC {gogc} gives a small goal; raise GOGC or set GOMEMLIMIT to trade memory for fewer cycles",
                g.cycles_per_s, g.cycles
            ),
        });
    }
    if g.goal_set_by_memory_limit {
        let limit = g.memory_limit_bytes.map_or("?".into(), |l| bytes(l as f64));
        v.push(Verdict {
            id: "memory_limit_goal",
            severity: Severity::Warn,
            message: format!(
                "GOMEMLIMIT {limit}, not GOGC {gogc}, sets the heap goal ({goal}, live {live}): the heap is pressed against the limit and the GC runs {:.1} times/s; raise the limit or shrink the live heap before the GC thrashes",
                g.cycles_per_s
            ),
        });
    }
    if g.gogc.is_none() && g.memory_limit_bytes.is_none() {
        v.push(Verdict {
            id: "gc_off",
            severity: Severity::Warn,
            message: format!(
                "GOGC=off and no GOMEMLIMIT: the heap (live {live}) grows without bound; set GOMEMLIMIT"
            ),
        });
    }

    if let Some(container) = g.container_memory_limit_bytes {
        let container_text = bytes(container as f64);
        let suggested = bytes(container as f64 * 0.9);
        match (g.memory_limit_bytes, g.heap_goal_bytes) {
            (Some(limit), _) if limit as u64 > container => v.push(Verdict {
                id: "memory_limit_above_container",
                severity: Severity::Warn,
                message: format!(
                    "GOMEMLIMIT {} is above the container's memory limit {container_text}: the kernel kills the process before the GC reacts; set GOMEMLIMIT to about {suggested}",
                    bytes(limit as f64)
                ),
            }),
            (None, Some(heap_goal)) if heap_goal as f64 >= container as f64 * CONTAINER_GOAL_WARN => v.push(Verdict {
                id: "heap_goal_near_container_limit",
                severity: Severity::Crit,
                message: format!(
                    "the heap goal {goal} is {} of the container's memory limit {container_text} and no GOMEMLIMIT is set: the OOM killer will act before the GC; set GOMEMLIMIT to about {suggested}",
                    percent(heap_goal as f64 / container as f64)
                ),
            }),
            _ => {}
        }
    }

    if let Some(cpu) = &r.cpu
        && let Some(share) = cpu
            .runtime_share
            .filter(|s| *s >= RUNTIME_CPU_WARN && cpu.samples >= MIN_CPU_SAMPLES)
    {
        let mut parts: Vec<_> = cpu
            .by_class
            .iter()
            .filter(|(c, s)| c.is_runtime() && **s > 0.0)
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(a.1));
        let parts: Vec<String> = parts
            .iter()
            .map(|(c, s)| format!("{} {}", c.label(), percent(**s)))
            .collect();
        v.push(Verdict {
                id: "runtime_cpu",
                severity: Severity::Warn,
                message: format!(
                    "the Go runtime takes {} of the process's CPU ({}): the application gets the rest; see the GC and allocation verdicts for the fix",
                    percent(share),
                    parts.join(", ")
                ),
            });
    }

    let s = &r.sched;
    let c = &r.cfs;
    if let Some(quota) = c.quota_cpus
        && f64::from(s.gomaxprocs) > quota.ceil()
    {
        v.push(Verdict {
                id: "gomaxprocs_over_quota",
                severity: Severity::Warn,
                message: format!(
                    "GOMAXPROCS {} exceeds the CPU quota of {quota:.2} CPUs ({} of {} CFS periods throttled in the window): the runtime runs more threads than it may use and gets throttled; set GOMAXPROCS={}, use go.uber.org/automaxprocs, or build with Go 1.25+ whose default follows the quota",
                    s.gomaxprocs,
                    c.throttled_periods,
                    c.periods,
                    quota.ceil().max(1.0)
                ),
            });
    }
    if c.periods > 0 {
        let share = c.throttled_periods as f64 / c.periods as f64;
        if share >= THROTTLE_WARN {
            v.push(Verdict {
                id: "cfs_throttling",
                severity: if share >= THROTTLE_CRIT { Severity::Crit } else { Severity::Warn },
                message: format!(
                    "CFS throttled the process in {} of {} periods ({}), for {} in total: latency spikes of up to a period follow; raise the CPU limit or lower GOMAXPROCS (now {})",
                    c.throttled_periods,
                    c.periods,
                    percent(share),
                    duration_ns(c.throttled_ns as f64),
                    s.gomaxprocs
                ),
            });
        }
    }
    if let Some(ncpu) = s.ncpu
        && s.gomaxprocs > ncpu
    {
        v.push(Verdict {
            id: "gomaxprocs_over_cpus",
            severity: Severity::Warn,
            message: format!(
                "GOMAXPROCS {} exceeds the {ncpu} CPUs: set GOMAXPROCS={ncpu} (or unset it)",
                s.gomaxprocs
            ),
        });
    }
    if let Some(p) = s.latency_ns
        && let Some(severity) = severity(p.p99, SCHED_P99_WARN, SCHED_P99_CRIT)
    {
        v.push(Verdict {
                id: "sched_latency",
                severity,
                message: format!(
                    "runnable goroutines wait p99 {} (p50 {}) before they run, with {:.2} cores busy and GOMAXPROCS {}: the process is CPU-saturated or throttled; add CPU, cut work, or check GOMAXPROCS against the CPU quota",
                    duration_ns(p.p99),
                    duration_ns(p.p50),
                    r.process.cpu_cores,
                    s.gomaxprocs
                ),
            });
    }
    let go = &r.goroutines;
    let growth = go.live - go.live_at_start;
    if growth >= GOROUTINE_GROWTH_MIN && growth * 2 >= go.live_at_start {
        v.push(Verdict {
            id: "goroutine_growth",
            severity: Severity::Warn,
            message: format!(
                "live goroutines grew from {} to {} in {:.0} s: a leak if it continues; take a goroutine profile",
                go.live_at_start, go.live, r.window_s
            ),
        });
    }
    if let Some(p) = r.cgo.latency_ns.filter(|p| p.p99 >= CGO_SLOW_P99_NS) {
        let site = r
            .cgo
            .sites
            .first()
            .map_or(String::new(), |s| format!(", mostly {}", s.function));
        let threads = match r.sched.threads_created {
            Some(n) if n > 0 => format!("; {n} OS threads were created in the window"),
            _ => String::new(),
        };
        v.push(Verdict {
            id: "cgo_slow",
            severity: Severity::Warn,
            message: format!(
                "cgo calls take p50 {} p99 {}{site}: each call holds an OS thread for its whole duration ({} calls/s){threads}; move slow C work off the request path or bound its concurrency",
                duration_ns(p.p50),
                duration_ns(p.p99),
                count(r.cgo.calls_per_s)
            ),
        });
    }
    if r.cgo.calls_per_s >= CGO_RATE_INFO {
        v.push(Verdict {
            id: "cgo_rate",
            severity: Severity::Info,
            message: format!(
                "{} cgo calls/s: each call costs far more than a Go call; batch work per call",
                count(r.cgo.calls_per_s)
            ),
        });
    }
    v.sort_by(|a, b| b.severity.cmp(&a.severity));
    v
}

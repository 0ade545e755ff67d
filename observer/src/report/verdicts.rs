//! Verdicts: judgements on the collected figures that name the numbers
//! behind them and the fix, as a list of small rules (one function each,
//! its thresholds named constants), in the style of tokio-console's
//! warnings. Every verdict quotes the figures that triggered it.

use serde::Serialize;

use super::DoctorReport;
use crate::format::{self, bytes, count, duration_ns, percent};

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
/// Stack-growth share of sampled CPU worth a verdict.
const STACK_GROWTH_WARN: f64 = 0.10;
const STACK_GROWTH_CRIT: f64 = 0.30;
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

/// The figures every rule's message quotes, rendered once.
struct Context {
    gogc: String,
    live: String,
    goal: String,
    alloc_rate: String,
    /// "; most bytes go to 48 B objects" (or empty).
    top_class: String,
}

impl Context {
    fn of(r: &DoctorReport) -> Self {
        let g = &r.gc;
        Self {
            gogc: format::gogc(g.gogc),
            live: bytes(g.heap_live_bytes as f64),
            goal: g.heap_goal_bytes.map_or("?".into(), |b| bytes(b as f64)),
            alloc_rate: bytes(r.alloc.bytes_per_s),
            top_class: r
                .alloc
                .by_size
                .iter()
                .max_by_key(|c| c.bytes)
                .filter(|c| c.bytes > 0)
                .map(|c| match c.size {
                    Some(size) => format!("; most bytes go to {size} B objects"),
                    None => "; most bytes go to large objects".to_string(),
                })
                .unwrap_or_default(),
        }
    }
}

/// One verdict rule: looks at the report, says something or nothing.
type Rule = fn(&DoctorReport, &Context) -> Option<Verdict>;

/// Every rule, in the order they are tried (the output is sorted by
/// severity afterwards).
const RULES: &[Rule] = &[
    gc_cpu,
    mark_assist,
    gc_frequency,
    memory_limit_goal,
    gc_off,
    container_memory,
    runtime_cpu,
    stack_growth,
    gomaxprocs_over_quota,
    cfs_throttling,
    gomaxprocs_over_cpus,
    sched_latency,
    sched_bound,
    goroutine_growth,
    goroutine_leak,
    cgo_slow,
    cgo_rate,
];

pub fn judge(r: &DoctorReport) -> Vec<Verdict> {
    let context = Context::of(r);
    let mut v: Vec<Verdict> = RULES.iter().filter_map(|rule| rule(r, &context)).collect();
    v.sort_by_key(|verdict| std::cmp::Reverse(verdict.severity));
    v
}

fn gc_cpu(r: &DoctorReport, c: &Context) -> Option<Verdict> {
    let g = &r.gc;
    let share = g.gc_cpu_share?;
    let severity = severity(share, GC_CPU_WARN, GC_CPU_CRIT)?;
    let Context {
        gogc,
        live,
        goal,
        alloc_rate,
        top_class,
    } = c;
    Some(Verdict {
        id: "gc_cpu",
        severity,
        message: format!(
            "GC takes {} of the process's CPU ({:.1} cycles/s at {alloc_rate}/s allocated{top_class}): allocate less, or raise GOGC (now {gogc}) or set GOMEMLIMIT so the heap may grow past its goal {goal} (live {live})",
            percent(share),
            g.cycles_per_s
        ),
    })
}

fn mark_assist(r: &DoctorReport, c: &Context) -> Option<Verdict> {
    let share = r.gc.assist_cpu_share?;
    let severity = severity(share, ASSIST_WARN, ASSIST_CRIT)?;
    let Context {
        gogc,
        live,
        alloc_rate,
        ..
    } = c;
    Some(Verdict {
        id: "mark_assist",
        severity,
        message: format!(
            "goroutines spend {} of the process's CPU in GC mark assist, paying for the GC on the request path: give the pacer headroom (GOGC {gogc} -> higher, or a GOMEMLIMIT well above the live heap {live}) or cut the {alloc_rate}/s allocation rate",
            percent(share)
        ),
    })
}

fn gc_frequency(r: &DoctorReport, c: &Context) -> Option<Verdict> {
    let g = &r.gc;
    if g.cycles_per_s < GC_RATE_WARN {
        return None;
    }
    let Context {
        gogc, live, goal, ..
    } = c;
    Some(Verdict {
        id: "gc_frequency",
        severity: Severity::Warn,
        message: format!(
            "GC runs {:.1} times per second ({} cycles in the window; live heap {live}, goal {goal}): a small live heap with GOGC {gogc} gives a small goal; raise GOGC or set GOMEMLIMIT to trade memory for fewer cycles",
            g.cycles_per_s, g.cycles
        ),
    })
}

fn memory_limit_goal(r: &DoctorReport, c: &Context) -> Option<Verdict> {
    let g = &r.gc;
    if !g.goal_set_by_memory_limit {
        return None;
    }
    let limit = format::gomemlimit(g.memory_limit_bytes);
    let Context {
        gogc, live, goal, ..
    } = c;
    Some(Verdict {
        id: "memory_limit_goal",
        severity: Severity::Warn,
        message: format!(
            "GOMEMLIMIT {limit}, not GOGC {gogc}, sets the heap goal ({goal}, live {live}): the heap is pressed against the limit and the GC runs {:.1} times/s; raise the limit or shrink the live heap before the GC thrashes",
            g.cycles_per_s
        ),
    })
}

fn gc_off(r: &DoctorReport, c: &Context) -> Option<Verdict> {
    let g = &r.gc;
    if g.gogc.is_some() || g.memory_limit_bytes.is_some() {
        return None;
    }
    let live = &c.live;
    Some(Verdict {
        id: "gc_off",
        severity: Severity::Warn,
        message: format!(
            "GOGC=off and no GOMEMLIMIT: the heap (live {live}) grows without bound; set GOMEMLIMIT"
        ),
    })
}

fn container_memory(r: &DoctorReport, c: &Context) -> Option<Verdict> {
    let g = &r.gc;
    let container = g.container_memory_limit_bytes?;
    let container_text = bytes(container as f64);
    let suggested = bytes(container as f64 * 0.9);
    match (g.memory_limit_bytes, g.heap_goal_bytes) {
        (Some(limit), _) if limit as u64 > container => Some(Verdict {
            id: "memory_limit_above_container",
            severity: Severity::Warn,
            message: format!(
                "GOMEMLIMIT {} is above the container's memory limit {container_text}: the kernel kills the process before the GC reacts; set GOMEMLIMIT to about {suggested}",
                format::gomemlimit(Some(limit))
            ),
        }),
        (None, Some(heap_goal)) if heap_goal as f64 >= container as f64 * CONTAINER_GOAL_WARN => {
            Some(Verdict {
                id: "heap_goal_near_container_limit",
                severity: Severity::Crit,
                message: format!(
                    "the heap goal {} is {} of the container's memory limit {container_text} and no GOMEMLIMIT is set: the OOM killer will act before the GC; set GOMEMLIMIT to about {suggested}",
                    c.goal,
                    percent(heap_goal as f64 / container as f64)
                ),
            })
        }
        _ => None,
    }
}

fn runtime_cpu(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let cpu = r.cpu.as_ref()?;
    let share = cpu
        .runtime_share
        .filter(|s| *s >= RUNTIME_CPU_WARN && cpu.samples >= MIN_CPU_SAMPLES)?;
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
    Some(Verdict {
        id: "runtime_cpu",
        severity: Severity::Warn,
        message: format!(
            "the Go runtime takes {} of the process's CPU ({}): the application gets the rest; the other verdicts name the fix",
            percent(share),
            parts.join(", ")
        ),
    })
}

/// Goroutines growing their stacks: how many start per second, how large
/// their stacks get (the goroutine table), and the fix.
fn stack_growth(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let cpu = r.cpu.as_ref().filter(|c| c.samples >= MIN_CPU_SAMPLES)?;
    let share = *cpu.by_class.get(&crate::cpu::CpuClass::StackGrowth)?;
    let severity = severity(share, STACK_GROWTH_WARN, STACK_GROWTH_CRIT)?;
    let go = &r.goroutines;
    let stacks = match &go.stacks {
        Some(s) => format!(
            "; live goroutines' stacks in the goroutine table ({} read): p50 {}, p99 {}, largest {}",
            count(s.counted as f64),
            bytes(s.p50_bytes as f64),
            bytes(s.p99_bytes as f64),
            bytes(s.max_bytes as f64)
        ),
        None => String::new(),
    };
    let site = go
        .creation_sites
        .first()
        .map_or(String::new(), |s| format!(", mostly at {}", s.function));
    Some(Verdict {
        id: "stack_growth",
        severity,
        message: format!(
            "goroutines spend {} of the process's CPU growing their stacks (runtime.newstack copies the whole stack, frame by frame, each time it doubles): {} goroutines created/s{site}, each starting small{stacks}; reuse goroutines through a worker pool (a live goroutine keeps its grown stack) or cut the per-request stack depth (deep recursion, large frames)",
            percent(share),
            count(go.created_per_s)
        ),
    })
}

fn gomaxprocs_over_quota(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let (s, c) = (&r.sched, &r.cfs);
    let quota = c
        .quota_cpus
        .filter(|q| f64::from(s.gomaxprocs) > q.ceil())?;
    Some(Verdict {
        id: "gomaxprocs_over_quota",
        severity: Severity::Warn,
        message: format!(
            "GOMAXPROCS {} exceeds the CPU quota of {quota:.2} CPUs ({} of {} CFS periods throttled in the window): the runtime runs more threads than it may use and gets throttled; set GOMAXPROCS={}, use go.uber.org/automaxprocs, or build with Go 1.25+ whose default follows the quota",
            s.gomaxprocs,
            c.throttled_periods,
            c.periods,
            quota.ceil().max(1.0)
        ),
    })
}

fn cfs_throttling(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let c = &r.cfs;
    if c.periods == 0 {
        return None;
    }
    let share = c.throttled_periods as f64 / c.periods as f64;
    let severity = severity(share, THROTTLE_WARN, THROTTLE_CRIT)?;
    Some(Verdict {
        id: "cfs_throttling",
        severity,
        message: format!(
            "CFS throttled the process in {} of {} periods ({}), for {} in total: latency spikes of up to a period follow; raise the CPU limit or lower GOMAXPROCS (now {})",
            c.throttled_periods,
            c.periods,
            percent(share),
            duration_ns(c.throttled_ns as f64),
            r.sched.gomaxprocs
        ),
    })
}

fn gomaxprocs_over_cpus(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let s = &r.sched;
    let ncpu = s.ncpu.filter(|n| s.gomaxprocs > *n)?;
    Some(Verdict {
        id: "gomaxprocs_over_cpus",
        severity: Severity::Warn,
        message: format!(
            "GOMAXPROCS {} exceeds the {ncpu} CPUs: set GOMAXPROCS={ncpu} (or unset it)",
            s.gomaxprocs
        ),
    })
}

/// P-bound or M-bound (`report::sched_bound`).
fn sched_bound(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let bound = r.sched.bound?;
    Some(Verdict {
        id: bound.id(),
        severity: Severity::Warn,
        message: bound.message(&r.sched.bound_figures),
    })
}

fn sched_latency(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let p = r.sched.latency_ns?;
    let severity = severity(p.p99, SCHED_P99_WARN, SCHED_P99_CRIT)?;
    Some(Verdict {
        id: "sched_latency",
        severity,
        message: format!(
            "runnable goroutines wait p99 {} (p50 {}) before they run, with {:.2} cores busy and GOMAXPROCS {}: the process is CPU-saturated or throttled; add CPU, cut work, or check GOMAXPROCS against the CPU quota",
            duration_ns(p.p99),
            duration_ns(p.p50),
            r.process.cpu_cores,
            r.sched.gomaxprocs
        ),
    })
}

/// The fastest-growing leak suspect (`leak_watch`).
fn goroutine_leak(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let suspects = r.goroutines.leak_suspects.as_ref()?;
    let top = suspects.first()?;
    let more = match suspects.len() {
        1 => String::new(),
        n => format!(" ({} more suspect groups in --json)", n - 1),
    };
    Some(Verdict {
        id: "goroutine_leak",
        severity: Severity::Warn,
        message: format!(
            "goroutines leak at {}: {:+.0}/min ({} -> {}) parked in {} and none leave ({:.0}% stayed), created by {}{more}: find who should wake them (a send, a close, a cancelled context) or give up the wait with a timeout",
            top.key.blocking_frame,
            top.growth_per_min,
            top.first_count,
            top.last_count,
            top.key.wait_reason,
            top.retention * 100.0,
            top.key.created_by,
        ),
    })
}

fn goroutine_growth(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let go = &r.goroutines;
    let growth = go.live - go.live_at_start;
    if growth < GOROUTINE_GROWTH_MIN || growth * 2 < go.live_at_start {
        return None;
    }
    Some(Verdict {
        id: "goroutine_growth",
        severity: Severity::Warn,
        message: format!(
            "live goroutines grew from {} to {} in {:.0} s: a leak if it continues; take a goroutine profile",
            go.live_at_start, go.live, r.window_s
        ),
    })
}

fn cgo_slow(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    let p = r.cgo.latency_ns.filter(|p| p.p99 >= CGO_SLOW_P99_NS)?;
    let site = r
        .cgo
        .sites
        .first()
        .map_or(String::new(), |s| format!(", mostly {}", s.function));
    let threads = match r.sched.threads_created {
        Some(n) if n > 0 => format!("; {n} OS threads were created in the window"),
        _ => String::new(),
    };
    Some(Verdict {
        id: "cgo_slow",
        severity: Severity::Warn,
        message: format!(
            "cgo calls take p50 {} p99 {}{site}: each call holds an OS thread for its whole duration ({} calls/s){threads}; move slow C work off the request path or bound its concurrency",
            duration_ns(p.p50),
            duration_ns(p.p99),
            count(r.cgo.calls_per_s)
        ),
    })
}

fn cgo_rate(r: &DoctorReport, _: &Context) -> Option<Verdict> {
    if r.cgo.calls_per_s < CGO_RATE_INFO {
        return None;
    }
    Some(Verdict {
        id: "cgo_rate",
        severity: Severity::Info,
        message: format!(
            "{} cgo calls/s: each call costs far more than a Go call; batch work per call",
            count(r.cgo.calls_per_s)
        ),
    })
}

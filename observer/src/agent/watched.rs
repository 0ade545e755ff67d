//! One Go process the agent watches: what was resolved once at discovery
//! (runtime layout, load bias, size classes, cgroup, labels), a reader
//! thread of its own that reads its cumulative counters every
//! `READ_EVERY` (one read in flight at most, so a read stuck on this target
//! delays only this target's figures), and the latest reading added to a
//! snapshot, with its age and the time it was read. Everything comes from the process's
//! memory and /proc: no probe is attached, so watching costs the target
//! nothing.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use super::{
    goroutine_figures::{GoroutineCounter, GoroutineFigures},
    snapshot::{Labels, Snapshot, TargetIdentity},
};
use crate::{
    cgroup::{Cgroups, CpuStat},
    report::table,
    runtime::{
        RuntimeLayout, RuntimeSnapshot,
        goroutines::GoroutineReader,
        histogram::{TimeHistogram, bucket_bounds_ns},
        reader::RuntimeReader,
    },
    target::TargetProcess,
};

/// Longest label value exported (bounded cardinality and size).
const MAX_LABEL_LEN: usize = 160;

/// How often each target's reader thread reads it.
pub const READ_EVERY: Duration = Duration::from_millis(500);
/// A reading older than this is late: exported, and counted as late.
pub const LATE_AFTER: Duration = Duration::from_secs(3);

pub struct Watched {
    pub target: Arc<TargetProcess>,
    cgroups: Cgroups,
    class_sizes: Vec<u64>,
    latest: Arc<Mutex<Latest>>,
    stop: Arc<AtomicBool>,
    pub labels: Labels,
}

/// A reading with when it was taken (monotonic, for its age; wall clock,
/// for its timestamp).
type Timed = (Instant, SystemTime, Arc<Reading>);

/// What the reader thread reads from.
struct Source {
    target: Arc<TargetProcess>,
    runtime: RuntimeReader,
    cgroups: Cgroups,
    /// The goroutine table's figures (`None`: the layout lacks it).
    goroutines: Option<Mutex<GoroutineCounter>>,
}

/// The reader thread's latest result.
#[derive(Default)]
struct Latest {
    reading: Option<Timed>,
    error: Option<String>,
}

/// How a target's figures stood at a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Exported, but older than `LATE_AFTER` (a read is stuck or slow).
    Late,
    /// Nothing to export yet, or its reads fail.
    Missing,
}

/// Counters read at one scrape.
pub struct Reading {
    runtime: RuntimeSnapshot,
    cpu_ns: u64,
    threads: u64,
    cpu_stat: Option<CpuStat>,
    /// `None` when the table was not readable at this reading.
    goroutines: Option<GoroutineFigures>,
}

fn bounded(value: String) -> String {
    if value.len() <= MAX_LABEL_LEN {
        return value;
    }
    let mut cut = MAX_LABEL_LEN;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &value[..cut])
}

impl Watched {
    pub fn new(
        target: TargetProcess,
        layout: Arc<RuntimeLayout>,
        cgroup_root: &std::path::Path,
        pods_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        // Before the first reading: the start of the cumulative series.
        let since = SystemTime::now();
        let goroutines =
            GoroutineReader::new(&layout, target.load_bias()?, target.binary.go_version())
                .ok()
                .map(|reader| {
                    Mutex::new(GoroutineCounter::new(
                        reader,
                        target.load_bias().unwrap_or(0),
                    ))
                });
        let runtime = RuntimeReader::with_layout(&target, layout)?;
        let cgroups = Cgroups::of(target.pid, cgroup_root).unwrap_or_default();
        let cgroup = cgroups
            .cpu_dir()
            .and_then(|d| d.strip_prefix(cgroup_root).ok())
            .map(|d| {
                let text = d.display().to_string();
                // v1 paths start with the controller directory (cpu,cpuacct/...).
                let inner = text.split_once('/').map_or("", |(_, rest)| rest);
                format!(
                    "/{}",
                    if cgroups.is_v2() {
                        text.as_str()
                    } else {
                        inner
                    }
                )
            })
            .unwrap_or_else(|| "/".into());
        let mut identity = crate::k8s::from_cgroup_path(&cgroup);
        crate::k8s::add_pod_names(&mut identity, pods_dir);
        let labels = Labels::of_target(Arc::new(TargetIdentity {
            pid: target.pid,
            exe: bounded(target.exe.display().to_string()),
            comm: bounded(target.comm()),
            go_version: bounded(target.binary.build.go_version_string.clone()),
            cgroup: bounded(cgroup),
            container_id: identity.container_id.map(bounded),
            pod_uid: identity.pod_uid.map(bounded),
            pod: identity.pod.map(bounded),
            namespace: identity.namespace.map(bounded),
            since,
        }));
        let target = Arc::new(target);
        let source = Source {
            target: Arc::clone(&target),
            runtime,
            cgroups: cgroups.clone(),
            goroutines,
        };
        let class_sizes = source.runtime.class_sizes.clone();
        // The first reading is taken here, on the discovery thread, so a
        // target is exported from the first scrape after it is watched.
        let first = source.read()?;
        let latest = Arc::new(Mutex::new(Latest {
            reading: Some((Instant::now(), SystemTime::now(), Arc::new(first))),
            error: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (latest, stop) = (Arc::clone(&latest), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("read-{}", target.pid))
                .spawn(move || source.read_until(&latest, &stop))?;
        }
        Ok(Self {
            target,
            cgroups,
            class_sizes,
            latest,
            stop,
            labels,
        })
    }

    /// Exports the latest reading (with its age and read time) and says
    /// how fresh it was.
    pub fn export_latest(&self, out: &mut Snapshot) -> Freshness {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let Some((at, wall, reading)) = latest.reading.clone() else {
            return Freshness::Missing;
        };
        drop(latest);
        let age = at.elapsed();
        out.read_at(self.target.pid, wall);
        self.export(&reading, out);
        out.gauge(
            "goscope_target_reading_age_seconds",
            "Age of the reading these series come from (each target is read on its own thread).",
            &self.labels,
            age.as_secs_f64(),
        );
        if age > LATE_AFTER {
            Freshness::Late
        } else {
            Freshness::Fresh
        }
    }

    /// The reader thread's last error, if its last read failed.
    pub fn last_error(&self) -> Option<String> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error
            .clone()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // The reader thread ends at its next wake-up (a read stuck in the
        // kernel ends it later; nothing waits for it).
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Source {
    fn read(&self) -> anyhow::Result<Reading> {
        Ok(Reading {
            runtime: self.runtime.read()?,
            cpu_ns: self.target.cpu_time_ns()?,
            threads: self.target.thread_count()?,
            cpu_stat: self.cgroups.cpu_stat(),
            goroutines: self.goroutines.as_ref().and_then(|counter| {
                counter
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .read(&self.runtime.memory, &self.target.binary)
                    .ok()
            }),
        })
    }

    /// Reads every `READ_EVERY` until `stop`, keeping the latest result.
    fn read_until(&self, latest: &Mutex<Latest>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let result = self.read();
            {
                let mut latest = latest.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(reading) => {
                        latest.reading =
                            Some((Instant::now(), SystemTime::now(), Arc::new(reading)));
                        latest.error = None;
                    }
                    Err(e) => latest.error = Some(format!("{e:#}")),
                }
            }
            let until = Instant::now() + READ_EVERY;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Watched {
    /// Writes the reading's series: every figure of the figure table that
    /// has a Prometheus name, then the distributions.
    fn export(&self, r: &Reading, out: &mut Snapshot) {
        let l = &self.labels;
        let rt = &r.runtime;
        let a = &rt.alloc;
        let class_sizes = &self.class_sizes;
        out.gauge(
            "goscope_target_info",
            "A watched Go process (always 1).",
            l,
            1.0,
        );
        let inputs = table::Inputs {
            runtime: rt,
            class_sizes,
            cpu_ns: r.cpu_ns,
            threads: r.threads,
            cpu_stat: r.cpu_stat,
        };
        for figure in table::FIGURES {
            let (Some((name, help)), Some(value)) = (figure.prometheus, (figure.read)(&inputs))
            else {
                continue;
            };
            match figure.kind {
                table::Kind::Counter => out.counter(name, help, l, value),
                table::Kind::Gauge => out.gauge(name, help, l, value),
            }
        }
        if let Some(quota) = self.cgroups.cpu_quota() {
            out.gauge(
                "goscope_cpu_quota_cores",
                "CFS CPU quota of the process's cgroup, in CPUs.",
                l,
                quota,
            );
        }
        // One observation per allocated object, valued at its size class.
        let (_, bytes) = a.totals(class_sizes);
        let mut buckets: Vec<(f64, u64)> = a
            .small_objects
            .iter()
            .enumerate()
            .skip(1)
            .map(|(class, n)| (class_sizes.get(class).copied().unwrap_or(0) as f64, *n))
            .collect();
        buckets.push((f64::INFINITY, a.large_objects));
        out.histogram(
            "goscope_alloc_size_bytes",
            "Allocated objects by size (bucket = size class; +Inf holds large objects); _sum is bytes.",
            l,
            &buckets,
            bytes as f64,
        );
        const CLASS_BYTES_HELP: &str = "Heap bytes allocated per size class (size label; \"large\" above 32 KiB): the allocation heatmap.";
        for (class, n) in a.small_objects.iter().enumerate().skip(1) {
            let size = class_sizes.get(class).copied().unwrap_or(0);
            let labels = l.with("size", &size.to_string());
            out.counter(
                "goscope_alloc_class_bytes_total",
                CLASS_BYTES_HELP,
                &labels,
                n.wrapping_mul(size) as f64,
            );
        }
        out.counter(
            "goscope_alloc_class_bytes_total",
            CLASS_BYTES_HELP,
            &l.with("size", "large"),
            a.large_bytes as f64,
        );
        if let Some(g) = &r.goroutines {
            for (state, n) in &g.by_state {
                out.gauge(
                    "goscope_goroutines_by_state",
                    "Goroutines by state, from the runtime's goroutine table (system goroutines left out, as the goroutine profile does).",
                    &l.with("state", state),
                    *n as f64,
                );
            }
            const SITE_HELP: &str = "Live goroutines by the function whose go statement created them: the largest sites by name, the rest as site=\"other\".";
            for (site, n) in &g.top_sites {
                out.gauge(
                    "goscope_goroutines_by_creation_site",
                    SITE_HELP,
                    &l.with("site", &bounded(site.clone())),
                    *n as f64,
                );
            }
            out.gauge(
                "goscope_goroutines_by_creation_site",
                SITE_HELP,
                &l.with("site", "other"),
                g.other_sites as f64,
            );
        }
        if let Some(h) = &rt.sched_latency {
            export_time_histogram(
                out,
                "goscope_sched_latency_seconds",
                "Time goroutines spent runnable before running, as /sched/latencies:seconds (coarsened to powers of two).",
                l,
                h,
            );
        }
        if let Some(h) = &rt.gc_pauses {
            export_time_histogram(
                out,
                "goscope_gc_pause_seconds",
                "Stop-the-world pause latencies, as /sched/pauses/total/gc:seconds (coarsened to powers of two).",
                l,
                h,
            );
        }
    }
}

/// A runtime timeHistogram as a Prometheus histogram with one bucket per
/// power of two (the runtime's four sub-buckets merged), in seconds. The
/// sum is estimated from bucket midpoints.
fn export_time_histogram(
    out: &mut Snapshot,
    name: &'static str,
    help: &'static str,
    labels: &Labels,
    h: &TimeHistogram,
) {
    let bounds = bucket_bounds_ns(h.counts.len());
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let (mut pending, mut sum) = (0u64, 0.0);
    for (i, &count) in h.counts.iter().enumerate() {
        let (lower, upper) = (bounds[i].max(0.0), bounds[i + 1]);
        let mid = if upper.is_finite() {
            (lower + upper) / 2.0
        } else {
            lower
        };
        sum += count as f64 * mid / 1e9;
        pending += count;
        if upper.is_finite() && upper >= 1.0 && (upper as u64).is_power_of_two() {
            buckets.push((upper / 1e9, pending));
            pending = 0;
        }
    }
    buckets.push((f64::INFINITY, pending));
    out.histogram(name, help, labels, &buckets, sum);
}

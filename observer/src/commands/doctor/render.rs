//! The doctor report as text, laid out to be read in 30 seconds: one block
//! per question, the verdicts last.

use std::fmt::Write as _;

use crate::{
    alloc_sites::{self, SitesSource},
    format::{bytes, count, duration_ns, percent},
    report::{DoctorReport, table},
    runtime::histogram::Percentiles,
    window::WindowEnd,
};

/// Size classes listed in the allocation block.
const TOP_SIZE_CLASSES: usize = 8;

pub fn text(r: &DoctorReport, verbose: bool) -> String {
    let mut out = String::new();
    let t = &r.target;
    let ended = match r.ended_by {
        WindowEnd::Elapsed => "",
        WindowEnd::Interrupted => ", stopped early",
        WindowEnd::TargetExited => ", TARGET EXITED inside the window",
        WindowEnd::TargetExecd => ", TARGET EXEC'D another program inside the window",
    };
    let _ = writeln!(
        out,
        "goscope doctor: pid {} {} ({}), {:.1} s window{ended}, {:.2} cores busy",
        t.pid, t.exe, t.go_version, r.window_s, r.process.cpu_cores
    );

    if let Some(cpu) = &r.cpu {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "CPU         Go runtime {} of the process's CPU ({} samples)",
            cpu.runtime_share.map_or("-".into(), percent),
            cpu.samples
        );
        let mut classes: Vec<_> = cpu.by_class.iter().filter(|(_, s)| **s > 0.0).collect();
        classes.sort_by(|a, b| b.1.total_cmp(a.1));
        let line: Vec<String> = classes
            .iter()
            .map(|(c, s)| format!("{} {}", c.label(), percent(**s)))
            .collect();
        let _ = writeln!(out, "  {}", line.join(", "));
    }

    let a = &r.alloc;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "ALLOCATION  {}/s  {} objects/s  (+{} tiny/s)",
        bytes(a.bytes_per_s),
        count(a.objects_per_s),
        count(if r.window_s > 0.0 {
            a.tiny_objects as f64 / r.window_s
        } else {
            0.0
        })
    );
    let mut classes: Vec<_> = a.by_size.iter().filter(|c| c.bytes > 0).collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.bytes));
    if !classes.is_empty() {
        let _ = writeln!(
            out,
            "  {:<12} {:>12} {:>12} {:>7}",
            "object size", "objects/s", "bytes/s", "share"
        );
    }
    for c in classes.iter().take(TOP_SIZE_CLASSES) {
        let label = match c.size {
            Some(size) => format!("{size} B"),
            None => "large".to_string(),
        };
        let share = if a.bytes > 0 {
            c.bytes as f64 / a.bytes as f64
        } else {
            0.0
        };
        let per_s = |v: u64| {
            if r.window_s > 0.0 {
                v as f64 / r.window_s
            } else {
                0.0
            }
        };
        let _ = writeln!(
            out,
            "  {:<12} {:>12} {:>12} {:>7}  {}",
            label,
            count(per_s(c.objects)),
            format!("{}/s", bytes(per_s(c.bytes))),
            percent(share),
            "█".repeat((share * 20.0).round() as usize)
        );
    }

    if let Some(source) = a.sites_source {
        let source = alloc_sites::source_text(
            source,
            a.sites_sampling_rate_bytes,
            a.sites_sampled_fraction,
        );
        let samples = match (a.sites_source, a.sites_samples) {
            (Some(SitesSource::MemoryProfile), Some(n)) => format!("; {n} sampled allocations"),
            (_, Some(n)) => format!("; {n} span refills and large objects sampled"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  top allocation sites ({source}{samples}):");
        if let Some(why) = &a.sites_skipped {
            let _ = writeln!(out, "  {why}");
        } else if a.sites.is_empty() {
            let _ = writeln!(out, "  none sampled in this window");
        }
        for site in a.sites.iter().take(TOP_ALLOC_SITES) {
            let _ = writeln!(
                out,
                "  {:>10} {:>7}  {}  {}",
                format!("{}/s", bytes(site.bytes_per_s)),
                percent(site.bytes_share),
                site.function,
                short_position(&site.position)
            );
            if let Some(e) = &site.escape {
                let _ = writeln!(
                    out,
                    "                      {} escapes: {}; fix: {}",
                    e.value, e.reason, e.hint
                );
            }
        }
        if a.sites_source == Some(SitesSource::MemoryProfile) && a.sites_skipped.is_none() {
            let _ = writeln!(
                out,
                "  live heap by site (in use as of the last GC cycle the runtime published):"
            );
            if a.live_sites.is_empty() {
                let _ = writeln!(out, "  nothing in use was sampled");
            }
            for site in a.live_sites.iter().take(TOP_ALLOC_SITES) {
                let _ = writeln!(
                    out,
                    "  {:>10} {:>7}  {}  {}",
                    bytes(site.inuse_bytes as f64),
                    percent(site.share),
                    site.function,
                    short_position(&site.position)
                );
            }
        }
    }
    // Without sites by bytes (no heap profile, probes off), the sampler
    // still says who spends the allocator's CPU.
    let no_byte_sites = a.sites.is_empty() || a.sites_sampled_fraction == Some(0.0);
    if no_byte_sites && !a.cpu_sites.is_empty() {
        let _ = writeln!(
            out,
            "  allocation CPU by calling site (CPU sampler, {} samples; a share of allocation CPU, not of bytes):",
            a.cpu_sites_samples
        );
        for site in a.cpu_sites.iter().take(TOP_ALLOC_SITES) {
            let _ = writeln!(
                out,
                "  {:>10} {:>7}  {}",
                format!("{} smp", site.samples),
                percent(site.share),
                site.function
            );
        }
    }

    let g = &r.gc;
    let _ = writeln!(out);
    let gogc = crate::format::gogc(g.gogc);
    let limit = crate::format::gomemlimit(g.memory_limit_bytes);
    let _ = writeln!(
        out,
        "GC          {:.2} cycles/s ({} in window)  GOGC {gogc}  GOMEMLIMIT {limit}",
        g.cycles_per_s, g.cycles
    );
    let goal = g
        .heap_goal_bytes
        .map_or("?".to_string(), |b| bytes(b as f64));
    let goal_by = if g.goal_set_by_memory_limit {
        "GOMEMLIMIT"
    } else {
        "GOGC"
    };
    let _ = writeln!(
        out,
        "  heap live {} -> goal {goal} (set by {goal_by})",
        bytes(g.heap_live_bytes as f64)
    );
    match (g.gc_cpu_share, g.assist_cpu_share) {
        (Some(total), Some(assist)) => {
            let _ = writeln!(
                out,
                "  GC CPU {} of the process's CPU (mark assist {})",
                percent(total),
                percent(assist)
            );
        }
        _ => {
            let _ = writeln!(out, "  GC CPU unavailable for this Go version");
        }
    }
    let _ = writeln!(out, "  STW pauses {}", percentiles(g.pause_ns));
    if let Some(limit) = g.container_memory_limit_bytes {
        let _ = writeln!(out, "  container memory limit {}", bytes(limit as f64));
    }

    let s = &r.sched;
    let _ = writeln!(out);
    let ncpu = s
        .ncpu
        .map_or(String::new(), |n| format!(" ({n} CPUs at start)"));
    let _ = writeln!(
        out,
        "SCHEDULER   GOMAXPROCS {}{ncpu}  {} OS threads",
        s.gomaxprocs, s.threads
    );
    let go = &r.goroutines;
    let stacks = go.stacks.as_ref().map_or(String::new(), |st| {
        format!(
            "; stacks p50 {} p99 {} largest {}",
            bytes(st.p50_bytes as f64),
            bytes(st.p99_bytes as f64),
            bytes(st.max_bytes as f64)
        )
    });
    let _ = writeln!(
        out,
        "  goroutines {} live ({} with system), {} created/s{stacks}",
        go.live,
        go.live_with_system,
        count(go.created_per_s)
    );
    goroutine_sites(&mut out, go);
    for t in go.leak_suspects.iter().flatten().take(3) {
        let _ = writeln!(
            out,
            "  leak suspect: {:+.0} goroutines/min parked in {} at {} ({} -> {}, {:.0}% stayed), created by {}",
            t.growth_per_min,
            t.key.wait_reason,
            t.key.blocking_frame,
            t.first_count,
            t.last_count,
            t.retention * 100.0,
            t.key.created_by
        );
    }
    let _ = writeln!(out, "  scheduling latency {}", percentiles(s.latency_ns));
    if let Some(p) = s.os_runq_latency_ns {
        let _ = writeln!(
            out,
            "  OS run-queue latency {p}; {} involuntary switches; threads +{} -{}",
            s.involuntary_switches.unwrap_or(0),
            s.threads_created.unwrap_or(0),
            s.threads_exited.unwrap_or(0)
        );
    }
    let b = &s.bound_figures;
    if b.readings > 0 {
        let _ = writeln!(
            out,
            "  Ps all busy with work queued in {} of {} readings; Ms {} -> {} (max {}), {:.1} blocked in syscalls/C on average, up to {} idle: {}",
            b.saturated_readings,
            b.readings,
            b.threads_first,
            b.threads_last,
            b.threads_max,
            b.blocked_ms_mean,
            b.idle_ms_max,
            match s.bound {
                Some(crate::report::sched_bound::Bound::PBound) => "P-bound",
                Some(crate::report::sched_bound::Bound::MBound) => "M-bound",
                None => "neither P- nor M-bound",
            }
        );
    }
    let c = &r.cfs;
    match c.quota_cpus {
        Some(quota) => {
            let _ = writeln!(
                out,
                "  CPU quota {quota:.2} CPUs: throttled in {} of {} periods ({})",
                c.throttled_periods,
                c.periods,
                duration_ns(c.throttled_ns as f64)
            );
        }
        None => {
            let _ = writeln!(out, "  no CPU quota");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "CGO         {} calls/s", count(r.cgo.calls_per_s));
    if let Some(p) = r.cgo.latency_ns {
        let sampled = r.cgo.latency_sampled_fraction.unwrap_or(1.0);
        let _ = writeln!(
            out,
            "  call latency {p}  ({} calls timed{})",
            p.count,
            if sampled < 0.999 {
                format!(", probes attached {} of the window", percent(sampled))
            } else {
                String::new()
            }
        );
        for site in r.cgo.sites.iter().take(3) {
            let _ = writeln!(
                out,
                "  {:<40} mean {}  {}",
                site.function,
                duration_ns(site.mean_ns),
                percentiles(site.latency_ns)
            );
        }
    } else if r.cgo.calls > 0 {
        let why = match r.overhead.governor.get("cgo") {
            Some(crate::probes::governor::Phase::Declined {
                would_cost_percent, ..
            }) => format!(
                "its probes would cost about {would_cost_percent:.1}% of the target's CPU, over the budget"
            ),
            Some(crate::probes::governor::Phase::Detached { reason }) => reason.clone(),
            _ => "no cgo probes in this window".to_string(),
        };
        let _ = writeln!(out, "  call latency not measured: {why}");
        if !r.cgo.cpu_sites.is_empty() {
            let _ = writeln!(
                out,
                "  CPU in C by call site (CPU sampler; a share of cgo CPU):"
            );
        }
        for site in r.cgo.cpu_sites.iter().take(3) {
            let _ = writeln!(
                out,
                "  {:>10} {:>7}  {}",
                format!("{} smp", site.samples),
                percent(site.share),
                site.function
            );
        }
    }

    let _ = writeln!(out);
    overhead(&mut out, &r.overhead);
    let _ = writeln!(out);
    let _ = writeln!(out, "VERDICTS");
    if r.verdicts.is_empty() {
        let _ = writeln!(out, "  ok    nothing stands out in this window");
    }
    for v in &r.verdicts {
        let _ = writeln!(out, "  {:<5} {}", v.severity.label(), v.message);
    }
    if verbose {
        let _ = writeln!(out);
        let _ = writeln!(out, "FIGURES (the window; counters with their rate)");
        for figure in table::FIGURES {
            let Some(value) = r.figures.get(figure.key) else {
                continue;
            };
            let twin = figure
                .runtime_metric
                .map_or(String::new(), |(metric, _)| format!("  = {metric}"));
            let _ = writeln!(
                out,
                "  {:<36} {:>26}{twin}",
                figure.label,
                figure.render_value(value)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "SOURCES");
        for (figure, source) in &r.sources {
            let _ = writeln!(out, "  {figure:<44} {source}");
        }
    }
    out
}

/// Allocation sites listed in the text report.
const TOP_ALLOC_SITES: usize = 5;

/// `dir/file.go:line` from a full path (the last two path elements).
/// Goroutine creation sites shown, and live goroutines by creation site.
const TOP_CREATION_SITES: usize = 3;

/// Where the window's goroutines were created and where the live ones were.
fn goroutine_sites(out: &mut String, go: &crate::report::figures::GoroutineFigures) {
    use crate::runtime::goroutines::CreationSource;
    if let Some(why) = &go.creation_sites_skipped {
        let _ = writeln!(out, "  creation sites {why}");
        return;
    }
    let Some(source) = go.creation_sites_source else {
        return;
    };
    if !go.creation_sites.is_empty() {
        let how = match source {
            CreationSource::GoroutineTable => format!(
                "goroutine table, {} readings; {} of the created goroutines seen, the rest shared among the sites seen dying",
                go.creation_sites_readings.unwrap_or(0),
                percent(go.creation_sites_covered_fraction.unwrap_or(0.0))
            ),
            CreationSource::NewprocProbe => format!(
                "runtime.newproc probe, attached {} of the window",
                percent(go.creation_sites_sampled_fraction.unwrap_or(0.0))
            ),
        };
        let failed = match (
            go.creation_sites_failed_readings,
            &go.creation_sites_last_error,
        ) {
            (Some(n), Some(why)) if n > 0 => format!("; {n} readings failed, the last: {why}"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  created by ({how}{failed}):");
    }
    for site in go.creation_sites.iter().take(TOP_CREATION_SITES) {
        let _ = writeln!(
            out,
            "  {:>10} {:>7}  {}  {}",
            format!("{}/s", count(site.per_s)),
            percent(site.share),
            site.function,
            short_position(&site.position)
        );
    }
    if let Some(why) = &go.live_by_creation_site_skipped {
        let _ = writeln!(out, "  live goroutines by creation site {why}");
    } else if !go.live_by_creation_site.is_empty() {
        let _ = writeln!(out, "  live goroutines by creation site:");
    }
    for site in go.live_by_creation_site.iter().take(TOP_CREATION_SITES) {
        let line = format!(
            "  {:>10}  {}  {}",
            site.live,
            site.function,
            short_position(&site.position)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn short_position(position: &str) -> String {
    let parts: Vec<&str> = position.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [file, dir, _] => format!("{dir}/{file}"),
        _ => position.to_string(),
    }
}

fn percentiles(p: Option<Percentiles>) -> String {
    match p {
        Some(p) => format!("{p}  ({} events)", p.count),
        None => "none in window".to_string(),
    }
}

/// The overhead block: goscope's estimate of what it cost the target, and
/// what the governor did with the per-call probes.
fn overhead(out: &mut String, o: &crate::report::overhead::OverheadFigures) {
    use crate::probes::governor::Phase;
    let b = &o.by_source;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "OVERHEAD    goscope cost the target about {:.2}% of its CPU (budget {}): sampler {}, tracepoints {}, GC probe {}, per-call probes {} + attach/detach {}",
        o.estimated_percent,
        o.budget_percent.map_or("off".into(), |p| format!("{p}%")),
        duration_ns(b.sampler_ns),
        duration_ns(b.tracepoints_ns),
        duration_ns(b.gc_probe_ns),
        duration_ns(b.probes_ns),
        duration_ns(b.attach_detach_ns)
    );
    let d = &o.dropped_events;
    if d.any() {
        let _ = writeln!(
            out,
            "  dropped in the kernel: {} stacks, {} map inserts (full maps), {} GC records (ring buffer full): sites and counts from probes undercount by as much",
            d.stacks, d.map_full, d.ring_buffer
        );
    }
    for (set, phase) in &o.governor {
        let what = match *set {
            "alloc" => "allocation-site probes",
            "cgo" => "cgo latency probes",
            "spawn" => "goroutine-creation probes",
            other => other,
        };
        match phase {
            Phase::Declined {
                would_cost_percent,
                needs_budget_percent,
            } => {
                let _ = writeln!(
                    out,
                    "  {what} left off: they would cost about {would_cost_percent:.1}% of the target's CPU; --overhead-budget {needs_budget_percent:.1} would allow them"
                );
            }
            Phase::Detached { reason } => {
                let _ = writeln!(out, "  {what} detached inside the window: {reason}");
            }
            Phase::Waiting => {
                let _ = writeln!(
                    out,
                    "  {what} never attached: the runtime's counters predicted no calls"
                );
            }
            Phase::Attached => {}
        }
    }
}

//! Golden outputs: doctor's text and JSON, a sched line and a heatmap SVG
//! built from fixed readings (recorded values, no live process, no root),
//! compared with the files under observer/tests/golden. A refactor that
//! changes what users read fails here; an intended change is blessed with
//! `GOSCOPE_BLESS=1 cargo test --test integration golden`.

use std::{path::PathBuf, time::Duration};

use goscope::{
    attachment::Sample,
    binary::{prologue::Placement, symbols::AddressSource},
    cgroup::{Cgroups, CpuStat},
    commands::{doctor::render, heatmap, sched::SchedLine},
    probe_points::ProbePoint,
    report::{
        figures::{self, TargetSummary},
        overhead::OverheadFigures,
    },
    runtime::{
        RuntimeSnapshot,
        histogram::TimeHistogram,
        snapshot::{AllocCounters, SchedTrace},
    },
    window::WindowEnd,
};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with the golden file `name` (writes it when blessing).
fn check(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("GOSCOPE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with GOSCOPE_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n  golden: {:?}\n  now:    {:?}\n(GOSCOPE_BLESS=1 accepts the change)",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or(""),
            actual.lines().nth(line).unwrap_or("")
        );
    }
}

/// A runtime reading at `t` seconds into a synthetic GC-heavy window.
fn snapshot(t: u64) -> RuntimeSnapshot {
    let mut small = vec![0u64; 68];
    small[1] = 1_000 * t; // 8 B
    small[5] = 900_000 * t; // 48 B
    small[20] = 40_000 * t;
    let mut latency = vec![0u64; 160];
    latency[40] = 5_000 * t;
    latency[70] = 50 * t;
    let mut pauses = vec![0u64; 160];
    pauses[60] = 20 * t;
    RuntimeSnapshot {
        gc_cycles: 100 + 40 * t as u32,
        alloc: AllocCounters {
            tiny_objects: 30_000 * t,
            large_bytes: (64u64 << 20) * t,
            large_objects: 1_000 * t,
            small_objects: small,
        },
        gc_percent: 100,
        memory_limit: Some(i64::MAX),
        heap_live: 30 << 20,
        heap_marked: 12 << 20,
        heap_goal: Some(24 << 20),
        heap_frees_bytes: Some((60 << 20) * t),
        goal_from_memory_limit: false,
        gc_assist_cpu_ns: Some(20_000_000 * t as i64),
        gc_total_cpu_ns: Some(150_000_000 * t as i64),
        goroutines_created: 50_000 * t,
        goroutines_user: 12,
        goroutines_all: 20,
        gomaxprocs: 2,
        ncpu: Some(2),
        cgo_calls: 1_000 * t,
        sched_latency: Some(TimeHistogram::new(0, latency, 0)),
        gc_pauses: Some(TimeHistogram::new(0, pauses, 0)),
        sched_trace: SchedTrace {
            gomaxprocs: 2,
            idleprocs: 0,
            threads: 7,
            spinningthreads: 1,
            needspinning: Some(0),
            idlethreads: 2,
            runqueue: 3,
            local_runqueues: vec![1, 0],
        },
    }
}

fn sample(t: u64) -> Sample {
    Sample {
        at: Duration::from_secs(t),
        runtime: snapshot(t),
        cpu_ns: 900_000_000 * t,
        threads: 7,
        gc_probe_hits: Some(40 * t),
        cpu_stat: Some(CpuStat {
            periods: 100 * t,
            throttled_periods: 2 * t,
            throttled_ns: 4_000_000 * t,
        }),
        threads_kernel: None,
        heap_profile: None,
        goroutines: None,
    }
}

fn class_sizes() -> Vec<u64> {
    (0..68u64).map(|c| c * 8).collect()
}

fn report() -> goscope::report::DoctorReport {
    let entry = &goscope::runtime::table::table()["1.27"];
    let layout = goscope::fuzzing::image_layout(entry.offsets.clone());
    let (first, last) = (sample(0), sample(10));
    let point = ProbePoint {
        function: "runtime.gcMarkTermination".into(),
        entry: 0x43_2100,
        address: 0x43_210a,
        file_offset: 0x3_210a,
        placement: Placement::AfterPrologue,
        source: AddressSource::Symtab,
    };
    let sizes = class_sizes();
    figures::build(figures::Inputs {
        overhead: OverheadFigures::default(),
        target: TargetSummary {
            pid: 4242,
            exe: "/srv/app".into(),
            go_version: "go1.27.3".into(),
        },
        layout: &layout,
        class_sizes: &sizes,
        gc_point: &point,
        cgroups: &Cgroups::default(),
        thread_view: &goscope::probes::Availability::Unavailable("not in this recording".into()),
        cpu: (
            None,
            &goscope::probes::Availability::Unavailable("not in this recording".into()),
        ),
        alloc_cpu_sites: Vec::new(),
        cgo_cpu_sites: Vec::new(),
        cgo_latency: None,
        creation_sites: None,
        alloc_sites: None,
        sched_bound: {
            let mut t = goscope::report::sched_bound::SchedBoundTracker::default();
            t.observe(&first.runtime.sched_trace);
            t.observe(&last.runtime.sched_trace);
            t.figures()
        },
        goroutine_leaks: None,
        first: &first,
        last: &last,
        ended_by: WindowEnd::Elapsed,
    })
}

#[test]
fn doctor_text_and_json_are_unchanged() {
    let report = report();
    check("doctor.txt", &render::text(&report, true));
    check(
        "doctor.json",
        &format!("{}\n", serde_json::to_string_pretty(&report).unwrap()),
    );
}

#[test]
fn sched_line_is_unchanged() {
    let now = snapshot(10);
    let line = SchedLine {
        at_ms: 12_345,
        trace: now.sched_trace.clone(),
        goroutines_live: now.goroutines_user,
        goroutines_created_per_s: 50_000.0,
        os_threads: 7,
        latency_ns: now.sched_latency.as_ref().and_then(|h| h.percentiles()),
        bound: None,
        verdict: None,
    };
    check("sched.txt", &format!("{}\n", line.text()));
}

#[test]
fn heatmap_svg_is_unchanged() {
    let map = heatmap::Heatmap {
        title: "Allocation by size class: pid 4242 /srv/app (go1.27.3)".into(),
        rows: vec!["8 B".into(), "48 B".into(), "large".into()],
        column_ends_s: vec![1.0, 2.0, 3.0],
        cells: vec![
            vec![8_000, 0, 16_000],
            vec![43_200_000, 40_000_000, 0],
            vec![0, 67_108_864, 1],
        ],
    };
    check("heatmap.svg", &heatmap::svg::svg(&map));
}

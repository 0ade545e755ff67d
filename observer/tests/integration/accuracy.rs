//! Accuracy is the product: `goscope doctor` attached around a fixed batch
//! must agree with what the target's own runtime/metrics say of that batch.
//! Tolerances: counts within 1%, GC cycles exact, gauges exact (the target
//! is idle at both ends), latency percentiles within one bucket of the
//! runtime's own histogram (adjacent bounds differ by at most 25%).

use serde_json::Value;
use testkit::{BuildOptions, WorkloadResult, require_root_or_skip};

use crate::util::{cgo, loadgen};

const COUNT_TOLERANCE: f64 = 0.01;
/// Largest ratio between neighbouring bucket bounds of timeHistogram.
const ONE_BUCKET: f64 = 1.26;

/// Runs one batch of `work` with doctor attached; returns (doctor, truth).
fn observe_batch(version: &str, work: &str, env: &[(&str, &str)]) -> (Value, WorkloadResult) {
    let binary = loadgen(version, &cgo());
    testkit::observe::doctor_around_batch(&binary, work, env)
        .unwrap_or_else(|e| panic!("Go {version}: {e:#}"))
}

fn assert_close(version: &str, what: &str, got: f64, want: f64) {
    let tolerance = (want.abs() * COUNT_TOLERANCE).max(1.0);
    assert!(
        (got - want).abs() <= tolerance,
        "Go {version}: {what}: goscope {got} vs runtime/metrics {want} (tolerance {tolerance})"
    );
}

fn number(report: &Value, path: &str) -> f64 {
    testkit::observe::number(report, path)
        .unwrap_or_else(|| panic!("report lacks numeric {path}: {report}"))
}

/// p50/p99/max of a bucketed histogram, each the upper bound of the bucket
/// that holds it (the open last bucket reports its lower bound).
fn percentiles(counts: &[u64], bounds: &[f64]) -> Option<[f64; 3]> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let upper = |i: usize| {
        if bounds[i + 1].is_finite() {
            bounds[i + 1]
        } else {
            bounds[i].max(0.0)
        }
    };
    let rank_value = |q: f64| {
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        counts
            .iter()
            .position(|&c| {
                seen += c;
                seen >= rank
            })
            .map(upper)
            .unwrap()
    };
    let last = counts.iter().rposition(|&c| c > 0).unwrap();
    Some([rank_value(0.5), rank_value(0.99), upper(last)])
}

fn assert_latency_matches(
    version: &str,
    what: &str,
    report: &Value,
    truth: &WorkloadResult,
    metric: &str,
) {
    let (counts, bounds) = truth.histogram(metric).unwrap();
    let seconds_to_ns: Vec<f64> = bounds.iter().map(|b| b * 1e9).collect();
    let Some(want) = percentiles(&counts, &seconds_to_ns) else {
        return;
    };
    let got = &report_path(report, what);
    for (i, name) in ["p50", "p99"].iter().enumerate() {
        let value = got[name]
            .as_f64()
            .unwrap_or_else(|| panic!("Go {version}: {what}.{name} missing: {got}"));
        let ratio = if value > want[i] {
            value / want[i].max(1.0)
        } else {
            want[i] / value.max(1.0)
        };
        assert!(
            ratio <= ONE_BUCKET || (value - want[i]).abs() <= 64.0,
            "Go {version}: {what}.{name}: goscope {value} ns vs runtime/metrics {} ns",
            want[i]
        );
    }
    // goscope's window contains the target's (the target takes its
    // baseline after goscope attached, its final reading before goscope's
    // last): its maximum is at least the target's, to the bucket.
    let max = got["max"].as_f64().unwrap();
    assert!(
        max * ONE_BUCKET >= want[2],
        "Go {version}: {what}.max {max} ns below the target's own maximum {} ns",
        want[2]
    );
}

fn report_path<'a>(report: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(report, |v, key| &v[key])
}

/// The production build shapes: plain, stripped, PIE and stripped PIE
/// (all with cgo, so externally linked).
fn build_variants() -> Vec<(&'static str, BuildOptions)> {
    let stripped = Some("-s -w".to_string());
    let pie = Some("pie".to_string());
    vec![
        ("plain", cgo()),
        // CGO_ENABLED=0: internally linked, no cgo calls to count.
        ("nocgo", BuildOptions::default()),
        (
            "stripped",
            BuildOptions {
                ldflags: stripped.clone(),
                ..cgo()
            },
        ),
        (
            "pie",
            BuildOptions {
                buildmode: pie.clone(),
                ..cgo()
            },
        ),
        (
            "stripped-pie",
            BuildOptions {
                ldflags: stripped,
                buildmode: pie,
                ..cgo()
            },
        ),
    ]
}

#[test]
fn doctor_agrees_with_runtime_metrics_on_every_ci_version_and_build_shape() {
    if !require_root_or_skip(
        "doctor_agrees_with_runtime_metrics_on_every_ci_version_and_build_shape",
    ) {
        return;
    }
    for version in &testkit::ci_go_versions() {
        for (shape, options) in build_variants() {
            let binary = loadgen(version, &options);
            let (report, truth) = testkit::observe::doctor_around_batch(&binary, "mixed", &[])
                .unwrap_or_else(|e| panic!("Go {version} {shape}: {e:#}"));
            assert_agreement(&format!("{version} {shape}"), &report, &truth);
        }
    }
}

/// Every figure of the figure table that declares a runtime/metrics twin
/// agrees with it: counters as window deltas, gauges at the end.
fn assert_figure_table_agrees(version: &str, report: &Value, truth: &WorkloadResult) {
    use goscope::report::table::{Agreement, FIGURES, Kind};
    let mut checked = 0;
    for figure in FIGURES {
        let Some((metric, agreement)) = figure.runtime_metric else {
            continue;
        };
        if !truth.has(metric) {
            continue; // this Go version does not export it
        }
        let want = match figure.kind {
            Kind::Counter => truth.delta(metric).unwrap(),
            Kind::Gauge => truth.end(metric).unwrap(),
        };
        let got = report["figures"][figure.key]["value"]
            .as_f64()
            .unwrap_or_else(|| {
                panic!(
                    "Go {version}: figures.{} missing: {}",
                    figure.key, report["figures"]
                )
            });
        let tolerance = match agreement {
            Agreement::Exact => 0.0,
            Agreement::Within { fraction, floor } => (want.abs() * fraction).max(floor),
        };
        assert!(
            (got - want).abs() <= tolerance,
            "Go {version}: figure {} = {got} vs {metric} = {want} (tolerance {tolerance})",
            figure.key
        );
        checked += 1;
    }
    assert!(
        checked >= 8,
        "Go {version}: only {checked} figures had a runtime/metrics twin"
    );
}

fn assert_agreement(version: &str, report: &Value, truth: &WorkloadResult) {
    assert_figure_table_agrees(version, report, truth);
    {
        let report = report.clone();
        let delta = |m: &str| truth.delta(m).unwrap();
        let end = |m: &str| truth.end(m).unwrap();

        // Counts over the window.
        assert_eq!(
            number(&report, "gc.cycles"),
            delta("/gc/cycles/total:gc-cycles"),
            "Go {version}: gc.cycles"
        );
        assert_eq!(
            number(&report, "gc.cycles_probe"),
            delta("/gc/cycles/total:gc-cycles"),
            "Go {version}: gc.cycles from the uprobe"
        );
        assert_close(
            version,
            "alloc.objects",
            number(&report, "alloc.objects"),
            delta("/gc/heap/allocs:objects"),
        );
        assert_close(
            version,
            "alloc.bytes",
            number(&report, "alloc.bytes"),
            delta("/gc/heap/allocs:bytes"),
        );
        assert_close(
            version,
            "alloc.tiny_objects",
            number(&report, "alloc.tiny_objects"),
            delta("/gc/heap/tiny/allocs:objects"),
        );
        assert_close(
            version,
            "cgo.calls",
            number(&report, "cgo.calls"),
            delta("/cgo/go-to-c-calls:calls"),
        );
        let created_truth = if truth.has("/sched/goroutines-created:goroutines") {
            delta("/sched/goroutines-created:goroutines")
        } else {
            truth.goroutines_spawned as f64
        };
        assert!(
            created_truth >= 20_000.0,
            "Go {version}: workload created {created_truth} goroutines"
        );
        assert_close(
            version,
            "goroutines.created",
            number(&report, "goroutines.created"),
            created_truth,
        );

        // The size-class breakdown matches the runtime's own allocs-by-size
        // histogram in total.
        let by_size = report["alloc"]["by_size"].as_array().unwrap();
        let sum: f64 = by_size.iter().map(|c| c["objects"].as_f64().unwrap()).sum();
        let (hist, _) = truth.histogram("/gc/heap/allocs-by-size:bytes").unwrap();
        assert_close(
            version,
            "allocs-by-size total",
            sum,
            hist.iter().sum::<u64>() as f64,
        );

        // Gauges at the end (the target is idle then).
        let goroutines_metric = end("/sched/goroutines:goroutines");
        let live_key = if truth.has("/sched/goroutines-created:goroutines") {
            "goroutines.live_with_system" // 1.26+: the metric includes system goroutines
        } else {
            "goroutines.live"
        };
        assert_eq!(
            number(&report, live_key),
            goroutines_metric,
            "Go {version}: {live_key}"
        );
        assert_eq!(
            number(&report, "gc.heap_goal_bytes"),
            end("/gc/heap/goal:bytes"),
            "Go {version}: heap goal"
        );
        assert_eq!(
            number(&report, "sched.gomaxprocs"),
            end("/sched/gomaxprocs:threads")
        );
        if truth.has("/gc/heap/live:bytes") {
            assert_eq!(
                number(&report, "gc.heap_live_bytes"),
                end("/gc/heap/live:bytes"),
                "Go {version}: heap live"
            );
            assert_eq!(number(&report, "gc.gogc"), end("/gc/gogc:percent"));
            assert!(report["gc"]["memory_limit_bytes"].is_null());
        }
        let assist = delta("/cpu/classes/gc/mark/assist:cpu-seconds") * 1e9;
        let assist_tolerance = (assist * 0.10).max(100_000.0);
        assert!(
            (number(&report, "gc.assist_cpu_ns") - assist).abs() <= assist_tolerance,
            "Go {version}: gc.assist_cpu_ns {} vs {assist}",
            number(&report, "gc.assist_cpu_ns")
        );

        // Distributions from the runtime's histograms.
        assert_latency_matches(
            version,
            "sched.latency_ns",
            &report,
            truth,
            "/sched/latencies:seconds",
        );
        assert_latency_matches(version, "gc.pause_ns", &report, truth, "/gc/pauses:seconds");
    }
}

#[test]
fn doctor_reads_gogc_and_gomemlimit_in_force() {
    if !require_root_or_skip("doctor_reads_gogc_and_gomemlimit_in_force") {
        return;
    }
    let (report, truth) = observe_batch("1.25", "gc", &[("GOGC", "250"), ("GOMEMLIMIT", "48MiB")]);
    assert_eq!(report["gc"]["gogc"], 250);
    assert_eq!(report["gc"]["memory_limit_bytes"], 48 << 20);
    assert_eq!(
        number(&report, "gc.heap_goal_bytes"),
        truth.end("/gc/heap/goal:bytes").unwrap()
    );
    assert_eq!(
        number(&report, "gc.cycles"),
        truth.delta("/gc/cycles/total:gc-cycles").unwrap()
    );

    // A limit small enough to bind: the goal comes from GOMEMLIMIT, and
    // goscope says so with the runtime's own goal.
    let (report, truth) = observe_batch("1.25", "gc", &[("GOMEMLIMIT", "20MiB")]);
    assert_eq!(
        report["gc"]["goal_set_by_memory_limit"], true,
        "GOMEMLIMIT 20MiB over an 8 MiB live set must set the goal: {}",
        report["gc"]
    );
    // The limit's goal follows the memory the runtime holds, which the
    // background scavenger keeps returning after the target's last reading
    // and before goscope's: close, not equal.
    let goal = number(&report, "gc.heap_goal_bytes");
    let want = truth.end("/gc/heap/goal:bytes").unwrap();
    assert!(
        (goal - want).abs() <= want * 0.05,
        "memory-limit goal: goscope {goal} vs runtime/metrics {want}"
    );

    let (report, _) = observe_batch("1.27", "idle", &[("GOGC", "off")]);
    assert!(report["gc"]["gogc"].is_null(), "{}", report["gc"]);
    assert!(
        report["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == "gc_off"),
        "GOGC=off without a limit gives a verdict: {}",
        report["verdicts"]
    );
}

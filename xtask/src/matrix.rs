//! The Go-version matrix: for every installed toolchain, one observed batch
//! of the mixed workload, and a table of goscope's figures against the
//! target's own runtime/metrics.

use clap::Args;
use serde_json::Value;
use testkit::{BuildOptions, WorkloadResult, observe};

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Go versions (default: every toolchain installed by scripts/setup.sh,
    /// plus Debian's go 1.19 when present).
    #[arg(long, value_delimiter = ',')]
    go: Vec<String>,
    /// loadgen workload.
    #[arg(long, default_value = "mixed")]
    work: String,
}

/// A figure, where the truth comes from, and the relative tolerance.
struct Figure {
    report: &'static str,
    truth: fn(&WorkloadResult) -> Option<f64>,
    tolerance: f64,
}

const FIGURES: &[Figure] = &[
    Figure {
        report: "gc.cycles",
        truth: |t| t.delta("/gc/cycles/total:gc-cycles").ok(),
        tolerance: 0.0,
    },
    Figure {
        report: "alloc.objects",
        truth: |t| t.delta("/gc/heap/allocs:objects").ok(),
        tolerance: 0.01,
    },
    Figure {
        report: "alloc.bytes",
        truth: |t| t.delta("/gc/heap/allocs:bytes").ok(),
        tolerance: 0.01,
    },
    Figure {
        report: "alloc.tiny_objects",
        truth: |t| t.delta("/gc/heap/tiny/allocs:objects").ok(),
        tolerance: 0.01,
    },
    Figure {
        report: "cgo.calls",
        truth: |t| t.delta("/cgo/go-to-c-calls:calls").ok(),
        tolerance: 0.01,
    },
    Figure {
        report: "goroutines.created",
        truth: |t| {
            t.delta("/sched/goroutines-created:goroutines")
                .ok()
                .or(Some(t.goroutines_spawned as f64))
        },
        tolerance: 0.01,
    },
    Figure {
        report: "gc.heap_goal_bytes",
        truth: |t| t.end("/gc/heap/goal:bytes").ok(),
        tolerance: 0.0,
    },
    Figure {
        report: "gc.heap_live_bytes",
        truth: |t| t.end("/gc/heap/live:bytes").ok(),
        tolerance: 0.0,
    },
    Figure {
        report: "gc.assist_cpu_ns",
        truth: |t| {
            t.delta("/cpu/classes/gc/mark/assist:cpu-seconds")
                .ok()
                .map(|s| s * 1e9)
        },
        tolerance: 0.10,
    },
];

pub fn run(args: &MatrixArgs) -> anyhow::Result<()> {
    let versions = if args.go.is_empty() {
        testkit::all_go_versions()
    } else {
        args.go.clone()
    };
    println!(
        "{:<10} {:<22} {:>16} {:>16} {:>9}  verdict",
        "go", "figure", "goscope", "runtime/metrics", "diff"
    );
    let mut failures = 0;
    for version in &versions {
        let outcome = testkit::build_workload(
            version,
            "loadgen",
            &BuildOptions {
                cgo: true,
                ..Default::default()
            },
        )
        .and_then(|binary| observe::doctor_around_batch(&binary, &args.work, &[]));
        let (report, truth) = match outcome {
            Ok(pair) => pair,
            Err(e) => {
                println!("{version:<10} {:<22} error: {e:#}", "(all)");
                failures += 1;
                continue;
            }
        };
        for figure in FIGURES {
            failures += usize::from(!print_row(version, figure, &report, &truth));
        }
    }
    println!(
        "{failures} disagreement(s) across {} version(s)",
        versions.len()
    );
    anyhow::ensure!(
        failures == 0,
        "{failures} figure(s) disagree with runtime/metrics"
    );
    Ok(())
}

/// Prints one row; returns true when it agrees (or has no ground truth).
fn print_row(version: &str, figure: &Figure, report: &Value, truth: &WorkloadResult) -> bool {
    let got = observe::number(report, figure.report);
    let want = (figure.truth)(truth);
    let (agrees, diff, verdict) = match (got, want) {
        (Some(g), Some(w)) => {
            let diff = if w == 0.0 {
                g.abs()
            } else {
                (g - w).abs() / w.abs()
            };
            let ok = diff <= figure.tolerance || (g - w).abs() <= 1.0;
            (
                ok,
                format!("{:.3}%", diff * 100.0),
                if ok { "ok" } else { "DISAGREE" },
            )
        }
        (None, Some(_)) => (false, "-".into(), "MISSING in goscope"),
        (_, None) => (true, "-".into(), "no metric in this Go"),
    };
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    println!(
        "{version:<10} {:<22} {:>16} {:>16} {:>9}  {verdict}",
        figure.report,
        show(got),
        show(want),
        diff
    );
    agrees
}

//! The CPU split by runtime activity, in production mode (doctor with the
//! default budget): a target that spends most of its CPU growing goroutine
//! stacks gets the stack-growth class, as large as its own profile's share
//! of samples under runtime.newstack, and the stack-growth verdict with its
//! goroutine rate and stack sizes; the other test workloads leave at most
//! 10% of their CPU to the catch-all class.

use std::{path::Path, process::Command};

use serde_json::Value;
use testkit::require_root_or_skip;

use crate::util::{cgo, loadgen};

/// Samples the split needs for a share to mean something (about 1 s of
/// two busy cores at doctor's 99 Hz).
const MIN_SAMPLES: u64 = 100;
/// The catch-all's ceiling on every test workload.
const CATCH_ALL_MAX: f64 = 0.10;

/// `cpu.by_class` of a doctor report, with the number of samples.
fn split(report: &Value) -> (u64, Vec<(String, f64)>) {
    let cpu = &report["cpu"];
    let samples = cpu["samples"]
        .as_u64()
        .unwrap_or_else(|| panic!("no CPU split: {cpu}"));
    let mut classes: Vec<(String, f64)> = cpu["by_class"]
        .as_object()
        .unwrap_or_else(|| panic!("no by_class: {cpu}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    classes.sort_by(|a, b| b.1.total_cmp(&a.1));
    (samples, classes)
}

fn share(classes: &[(String, f64)], class: &str) -> f64 {
    classes
        .iter()
        .find(|(c, _)| c == class)
        .map_or(0.0, |(_, s)| *s)
}

/// The share of the profile's samples with `function` on the stack, per
/// `go tool pprof -top -focus` ("Showing nodes accounting for X, Y% of Z
/// total" is the focused share when every node is shown).
fn focused_share(version: &str, profile: &Path, function: &str) -> f64 {
    let go = testkit::go_binary(version).unwrap();
    let out = Command::new(go)
        .args([
            "tool",
            "pprof",
            "-top",
            "-nodecount=1000000",
            "-nodefraction=0",
            "-edgefraction=0",
            &format!("-focus=^{}$", function.replace('.', "\\.")),
        ])
        .arg(profile)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("Showing nodes accounting for"))
        .unwrap_or_else(|| panic!("pprof -top printed no summary:\n{text}"));
    let pct = line
        .split_whitespace()
        .find(|w| w.ends_with("%"))
        .and_then(|w| w.trim_end_matches('%').parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no share in {line:?}"));
    pct / 100.0
}

#[test]
fn stack_growth_gets_its_class_and_verdict() {
    if !require_root_or_skip("stack_growth_gets_its_class_and_verdict") {
        return;
    }
    let dir = testkit::workspace_root().join("target/cpu-classes-test");
    std::fs::create_dir_all(&dir).unwrap();
    for version in ["1.22", "1.27"] {
        let own = dir.join(format!("stack-growth-{version}.pb.gz"));
        let binary = loadgen(version, &cgo());
        // 2,000 goroutines a batch, each recursing 8,000 frames deep (about
        // 1 MiB of stack); 4 batches' worth of work, about 1 s of CPU.
        let (report, truth) = testkit::observe::doctor_around_batch_with(
            &binary,
            &[
                "-work",
                "stack-growth",
                "-scale",
                "4",
                "-cpuprofile",
                own.to_str().unwrap(),
            ],
            &[],
            &[],
        )
        .unwrap();
        let (samples, classes) = split(&report);
        assert!(samples >= MIN_SAMPLES, "Go {version}: {samples} samples");
        assert_eq!(
            classes[0].0, "stack_growth",
            "Go {version}: largest class {classes:?}"
        );
        // Ground truth: the target's own profile of the same batch, the
        // share of its samples with runtime.newstack on the stack.
        let theirs = focused_share(version, &own, "runtime.newstack");
        let mine = classes[0].1;
        assert!(
            theirs > 0.5,
            "Go {version}: the workload spends only {theirs} under newstack"
        );
        assert!(
            (mine - theirs).abs() <= 0.10,
            "Go {version}: stack growth {:.1}% vs {:.1}% of the target's own samples under runtime.newstack",
            mine * 100.0,
            theirs * 100.0
        );
        eprintln!(
            "Go {version}: stack growth {:.1}% ({samples} samples), target's own profile {:.1}% under newstack",
            mine * 100.0,
            theirs * 100.0
        );
        let verdict = report["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == "stack_growth")
            .unwrap_or_else(|| {
                panic!(
                    "Go {version}: no stack_growth verdict: {}",
                    report["verdicts"]
                )
            });
        let message = verdict["message"].as_str().unwrap();
        for needle in ["worker pool", "goroutines created/s", "main.stackGrowth"] {
            assert!(message.contains(needle), "Go {version}: {message}");
        }
        // The goroutine rate it quotes is the runtime's created count; the
        // workload spawned its goroutines inside the window.
        let created = report["goroutines"]["created"].as_u64().unwrap();
        let spawned = truth.goroutines_spawned;
        assert!(
            created >= spawned && created <= spawned + spawned / 20,
            "Go {version}: {created} created vs {spawned} spawned"
        );
        // How deep they grow: 8,000 frames of 80 B or more need a stack of
        // 1 MiB or more (stacks are powers of two); the table saw it.
        let stacks = &report["goroutines"]["stacks"];
        let max = stacks["max_bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{stacks}"));
        assert!(
            (1 << 20..=4 << 20).contains(&max),
            "Go {version}: largest stack {max} B: {stacks}"
        );
    }
}

#[test]
fn no_catch_all_class_above_ten_percent_on_the_test_workloads() {
    if !require_root_or_skip("no_catch_all_class_above_ten_percent_on_the_test_workloads") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    // Each batch is sized to one to two seconds of CPU on this machine.
    let workloads = [
        ("alloc", "50"),
        ("gc", "40"),
        ("sites-pair", "40"),
        ("service", "30"),
        ("cgo", "4000"),
        ("goroutines", "200"),
        ("mixed", "20"),
    ];
    let mut failures = Vec::new();
    for (work, scale) in workloads {
        let (report, _) = testkit::observe::doctor_around_batch_with(
            &binary,
            &["-work", work, "-scale", scale],
            &[],
            &[],
        )
        .unwrap();
        let (samples, classes) = split(&report);
        assert!(samples >= MIN_SAMPLES, "{work}: {samples} samples");
        let catch_all = share(&classes, "runtime_other");
        eprintln!("{work}: {samples} samples, {classes:?}");
        if catch_all > CATCH_ALL_MAX {
            failures.push(format!("{work}: other runtime {:.1}%", catch_all * 100.0));
        }
        // Only the stack-growth target and a service that starts a
        // goroutine per request grow stacks enough for a verdict.
        if !matches!(work, "service") {
            assert!(
                !report["verdicts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v["id"] == "stack_growth"),
                "{work}: stack_growth verdict with {classes:?}"
            );
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

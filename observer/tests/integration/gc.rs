//! `goscope gc` against the runtime's own gctrace: every cycle gctrace
//! prints inside the window appears with the same number and heap sizes,
//! STW pauses within 20% or 100 µs; assist CPU agrees with
//! /cpu/classes/gc/mark/assist:cpu-seconds; no GC pressure, no assists.

use std::collections::BTreeMap;

use serde_json::Value;
use testkit::{Goscope, Target, WorkloadResult, require_root_or_skip};

use crate::util::{cgo, loadgen};

/// One parsed gctrace line.
#[derive(Debug)]
struct Gctrace {
    cycle: u64,
    clock_ms: [f64; 3],
    heap_mb: [u64; 3],
    goal_mb: u64,
    procs: u64,
}

fn parse_gctrace(line: &str) -> Option<Gctrace> {
    // gc 12 @2.005s 3%: 0.39+8.4+0.065 ms clock, ... , 14->16->10 MB, 16 MB goal, ..., 2 P
    let rest = line.strip_prefix("gc ")?;
    let cycle = rest.split_whitespace().next()?.parse().ok()?;
    let clock = rest.split(": ").nth(1)?.split(' ').next()?;
    let clock: Vec<f64> = clock.split('+').filter_map(|v| v.parse().ok()).collect();
    let heap = rest
        .split(" MB, ")
        .find(|p| p.contains("->"))?
        .rsplit(", ")
        .next()?;
    let heap: Vec<u64> = heap.split("->").filter_map(|v| v.parse().ok()).collect();
    let goal = rest
        .split(" MB goal")
        .next()?
        .rsplit(", ")
        .next()?
        .parse()
        .ok()?;
    let procs = rest.split(" P").next()?.rsplit(", ").next()?.parse().ok()?;
    Some(Gctrace {
        cycle,
        clock_ms: clock.try_into().ok()?,
        heap_mb: heap.try_into().ok()?,
        goal_mb: goal,
        procs,
    })
}

/// Runs one batch with `goscope gc --json` attached and GODEBUG=gctrace=1.
fn observe(version: &str, work: &str) -> (BTreeMap<u64, Value>, Vec<Gctrace>, u64, WorkloadResult) {
    let binary = loadgen(version, &cgo());
    let mut target =
        Target::start_capturing_stderr(&binary, &["-work", work], &[("GODEBUG", "gctrace=1")])
            .unwrap();
    let pid = target.pid.to_string();
    let mut goscope =
        Goscope::start(&["gc", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
    goscope.wait_attached().unwrap();
    let truth = target.run_batch().unwrap();
    // gctrace for the last cycle is printed by the target after it ends:
    // wait for that line (bounded), not for a fixed time.
    let last_cycle = truth.end("/gc/cycles/total:gc-cycles").unwrap() as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !target
        .stderr_lines()
        .iter()
        .filter_map(|l| parse_gctrace(l))
        .any(|t| t.cycle >= last_cycle)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "Go {version}: no gctrace line for cycle {last_cycle} within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let finished = goscope.interrupt().unwrap();
    assert!(
        finished.status.success(),
        "Go {version}: {}",
        finished.stderr
    );
    let first = finished
        .stderr
        .split("from cycle ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no 'from cycle' in {}", finished.stderr));
    let records: BTreeMap<u64, Value> = finished
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| (v["cycle"].as_u64().unwrap(), v))
        .collect();
    let traces: Vec<Gctrace> = target
        .stderr_lines()
        .iter()
        .filter_map(|l| parse_gctrace(l))
        .filter(|t| t.cycle >= first)
        .collect();
    target.quit().unwrap();
    (records, traces, first, truth)
}

fn close_enough(got_ns: f64, want_ms: f64) -> bool {
    let want_ns = want_ms * 1e6;
    (got_ns - want_ns).abs() <= (want_ns * 0.20).max(100_000.0)
}

#[test]
fn gc_cycles_match_gctrace_and_assist_cpu_matches_runtime_metrics() {
    if !require_root_or_skip("gc_cycles_match_gctrace") {
        return;
    }
    for version in ["1.22", "1.27"] {
        let (records, traces, _, truth) = observe(version, "gc");
        assert!(
            traces.len() >= 10,
            "Go {version}: gctrace printed only {} cycles",
            traces.len()
        );
        for t in &traces {
            let r = records.get(&t.cycle).unwrap_or_else(|| {
                panic!(
                    "Go {version}: gctrace cycle {} missing from goscope gc",
                    t.cycle
                )
            });
            let mb = |key: &str| r[key].as_u64().unwrap() >> 20;
            assert_eq!(
                [
                    mb("heap_start_bytes"),
                    mb("heap_end_bytes"),
                    mb("heap_live_bytes")
                ],
                t.heap_mb,
                "Go {version} cycle {}",
                t.cycle
            );
            assert_eq!(
                mb("heap_goal_bytes"),
                t.goal_mb,
                "Go {version} cycle {} goal",
                t.cycle
            );
            assert_eq!(r["nprocs"].as_u64(), Some(t.procs));
            for (key, want) in [
                ("stw_sweep_term_ns", t.clock_ms[0]),
                ("stw_mark_term_ns", t.clock_ms[2]),
            ] {
                let got = r[key].as_f64().unwrap();
                assert!(
                    close_enough(got, want),
                    "Go {version} cycle {}: {key} {got} ns vs gctrace {want} ms",
                    t.cycle
                );
            }
        }
        let assist_ns: f64 = records
            .values()
            .map(|r| r["cpu"]["assist_ns"].as_f64().unwrap())
            .sum();
        let metric_ns = truth
            .delta("/cpu/classes/gc/mark/assist:cpu-seconds")
            .unwrap()
            * 1e9;
        assert!(
            (assist_ns - metric_ns).abs() <= (metric_ns * 0.10).max(100_000.0),
            "Go {version}: assist CPU {assist_ns} ns vs runtime/metrics {metric_ns} ns"
        );
        let assists: u64 = records
            .values()
            .map(|r| r["assist_count"].as_u64().unwrap())
            .sum();
        if metric_ns > 1e6 {
            assert!(
                assists > 0,
                "Go {version}: {metric_ns} ns of assist CPU but no assist timed"
            );
        }
    }
}

#[test]
fn no_gc_pressure_no_assists() {
    if !require_root_or_skip("no_gc_pressure_no_assists") {
        return;
    }
    let (records, traces, _, _) = observe("1.27", "idle");
    assert!(
        !records.is_empty() && !traces.is_empty(),
        "the batch's runtime.GC() gives one cycle"
    );
    for r in records.values() {
        assert_eq!(r["assist_count"], 0, "{r}");
        assert_eq!(r["cpu"]["assist_ns"], 0, "{r}");
    }
}

/// With a tiny overhead budget the governor detaches the assist probes for
/// part of the time: those cycles say they were not sampled, the summary
/// gives the fraction, and the cycle records themselves stay complete.
#[test]
fn governor_samples_assists_under_a_small_budget() {
    if !require_root_or_skip("governor_samples_assists_under_a_small_budget") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let (finished, truth) = testkit::observe::around_batch(
        &binary,
        &["-work", "gc", "-scale", "12"],
        &[],
        "gc",
        &["--json", "--overhead-budget", "0.01"],
    )
    .unwrap();
    let records: Vec<Value> = finished
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cycles = truth.delta("/gc/cycles/total:gc-cycles").unwrap() as usize;
    assert_eq!(
        records.len(),
        cycles,
        "every cycle is reported whatever the budget"
    );
    let unsampled = records
        .iter()
        .filter(|r| r["assists_sampled"] == false)
        .count();
    assert!(unsampled > 0, "a 0.01% budget must leave cycles unsampled");
    let fraction: f64 = finished
        .stderr
        .split("assist probes attached ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no sampled fraction in: {}", finished.stderr));
    assert!(fraction < 100.0, "{}", finished.stderr);
}

//! The P-bound / M-bound verdict against targets built to be one or the
//! other: loadgen's cpu-bound batch (4 x GOMAXPROCS goroutines of pure
//! computation: every P busy, goroutines queued) and its blocking batch
//! (64 goroutines in blocking nanosleep system calls: the thread count
//! climbs). Each gets its verdict and not the other, from doctor (verdict
//! and sched.bound) and from `goscope sched` (the judgement on its last JSON line), with
//! default settings, on the oldest and newest CI Go versions.

use serde_json::Value;
use testkit::{BuildOptions, require_root_or_skip};

use crate::util::loadgen;

/// (workload, the verdict it must get, the one it must not).
const CASES: [(&str, &str, &str); 2] = [
    ("cpu-bound", "p_bound", "m_bound"),
    ("blocking", "m_bound", "p_bound"),
];

fn versions() -> Vec<String> {
    let all = testkit::ci_go_versions();
    let mut ends = vec![all[0].clone(), all[all.len() - 1].clone()];
    ends.dedup();
    ends
}

#[test]
fn p_bound_and_m_bound_targets_each_get_their_verdict_in_doctor() {
    if !require_root_or_skip("p_bound_and_m_bound_targets_each_get_their_verdict_in_doctor") {
        return;
    }
    for version in versions() {
        let binary = loadgen(&version, &BuildOptions::default());
        for (work, want, other) in CASES {
            let label = format!("Go {version} {work}");
            let (report, _) = testkit::observe::doctor_around_batch(&binary, work, &[])
                .unwrap_or_else(|e| panic!("{label}: {e:#}"));
            let sched = &report["sched"];
            assert_eq!(sched["bound"], want, "{label}: {sched}");
            let ids: Vec<&str> = report["verdicts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap())
                .collect();
            assert!(ids.contains(&want), "{label}: verdicts {ids:?}");
            assert!(!ids.contains(&other), "{label}: verdicts {ids:?}");
            let f = &sched["bound_figures"];
            match want {
                "p_bound" => assert!(
                    f["saturated_readings"].as_u64().unwrap() * 2
                        >= f["readings"].as_u64().unwrap(),
                    "{label}: {f}"
                ),
                _ => assert!(
                    f["threads_max"].as_i64().unwrap() >= f["threads_first"].as_i64().unwrap() + 8,
                    "{label}: the thread count did not climb: {f}"
                ),
            }
            eprintln!("{label}: {want}: {f}");
        }
    }
}

#[test]
fn goscope_sched_closes_with_the_same_verdicts() {
    if !require_root_or_skip("goscope_sched_closes_with_the_same_verdicts") {
        return;
    }
    for version in versions() {
        let binary = loadgen(&version, &BuildOptions::default());
        for (work, want, _) in CASES {
            let label = format!("Go {version} {work}");
            let (finished, _) = testkit::observe::around_batch(
                &binary,
                &["-work", work],
                &[],
                "sched",
                &["--json", "--interval", "100"],
            )
            .unwrap_or_else(|e| panic!("{label}: {e:#}"));
            let last: Value = finished
                .stdout
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| panic!("{label}: no JSON line: {}", finished.stdout));
            assert_eq!(last["bound"], want, "{label}: {last}");
            assert!(
                last["verdict"].as_str().unwrap().starts_with(match want {
                    "p_bound" => "P-bound",
                    _ => "M-bound",
                }),
                "{label}: {last}"
            );
        }
    }
}

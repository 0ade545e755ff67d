//! Allocation sites against ground truth: the "sites" workload allocates
//! known bytes from three functions and reports them itself; goscope's byte
//! shares per function (text report, JSON and the pprof profile read by
//! `go tool pprof`) must be within 5 percentage points, on Go 1.22 and 1.27,
//! plain and stripped.

use std::collections::HashMap;

use testkit::{BuildOptions, require_root_or_skip};

use crate::util::{cgo, loadgen};

/// Tolerance on each function's share of the bytes.
const SHARE_TOLERANCE: f64 = 0.05;

/// Byte shares per function from `go tool pprof -top` of an alloc profile.
fn pprof_shares(go: &std::path::Path, profile: &std::path::Path) -> HashMap<String, f64> {
    let out = std::process::Command::new(go)
        .args([
            "tool",
            "pprof",
            "-sample_index=alloc_space",
            "-top",
            "-unit=bytes",
        ])
        .arg(profile)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rows: flat flat% sum% cum cum% name
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [_, flat_pct, _, _, _, name] = cols.as_slice() else {
                return None;
            };
            let pct: f64 = flat_pct.strip_suffix('%')?.parse().ok()?;
            Some((name.to_string(), pct / 100.0))
        })
        .collect()
}

#[test]
fn allocation_site_shares_match_the_workloads_own_counts() {
    if !require_root_or_skip("allocation_site_shares_match_the_workloads_own_counts") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("goscope-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for version in ["1.22", "1.27"] {
        for stripped in [false, true] {
            let options = BuildOptions {
                ldflags: stripped.then(|| "-s -w".to_string()),
                ..cgo()
            };
            let binary = loadgen(version, &options);
            let label = format!("Go {version} stripped={stripped}");
            let profile = dir.join(format!("allocs-{version}-{stripped}.pb.gz"));
            let profile_arg = profile.display().to_string();
            let (finished, truth) = testkit::observe::around_batch(
                &binary,
                &["-work", "sites", "-scale", "6"],
                &[],
                "alloc",
                // Accuracy, not the budget, is under test here (the
                // benchmark measures the budget).
                &["--json", "-o", &profile_arg, "--overhead-budget", "off"],
            )
            .unwrap_or_else(|e| panic!("{label}: {e:#}"));
            let report: serde_json::Value = serde_json::from_str(&finished.stdout)
                .unwrap_or_else(|e| panic!("{label}: {e}: {}", finished.stdout));
            let total: u64 = truth.site_bytes.values().sum();
            assert!(total > 0, "{label}: the workload reported no site bytes");
            let go = testkit::go_binary(version).unwrap();
            let from_pprof = pprof_shares(&go, &profile);
            for (function, bytes) in &truth.site_bytes {
                let want = *bytes as f64 / total as f64;
                let site = report["sites"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["function"] == function.as_str())
                    .unwrap_or_else(|| panic!("{label}: {function} missing: {report}"));
                let got = site["bytes_share"].as_f64().unwrap();
                assert!(
                    (got - want).abs() <= SHARE_TOLERANCE,
                    "{label}: {function} share {got:.3} vs truth {want:.3}"
                );
                assert!(
                    site["position"].as_str().unwrap().contains("sites.go:"),
                    "{label}: {function} position {}",
                    site["position"]
                );
                let in_profile = from_pprof.get(function).copied().unwrap_or(0.0);
                assert!(
                    (in_profile - want).abs() <= SHARE_TOLERANCE,
                    "{label}: pprof flat share of {function} {in_profile:.3} vs truth {want:.3}"
                );
            }
        }
    }
}

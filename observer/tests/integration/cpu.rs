//! `goscope cpu` against the target's own CPU profile (runtime/pprof) of
//! the same batch: the share of samples whose leaf is in the Go runtime
//! agrees within 5 percentage points among the samples whose stack goscope
//! could walk, both measured by `go tool pprof`, which must read goscope's
//! profile; the samples it could not walk (`[no user stack]`,
//! `[unknown]`) are at most 10%.

use std::{path::Path, process::Command};

use testkit::{Goscope, Target, require_root_or_skip};

use crate::util::{cgo, loadgen};

/// Share of flat samples in runtime.* functions among those with a known
/// leaf, and the share without one, per `go tool pprof -top`.
fn runtime_leaf_share(version: &str, profile: &Path) -> (f64, f64) {
    let go = testkit::go_binary(version).unwrap();
    let out = Command::new(go)
        .args([
            "tool",
            "pprof",
            "-top",
            "-nodecount=1000000",
            "-nodefraction=0",
            "-edgefraction=0",
        ])
        .arg(profile)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof failed on {}: {}",
        profile.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut runtime = 0.0;
    let mut total = 0.0;
    let mut unwalked = 0.0;
    for line in text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(flat_pct), Some(name)) = (fields.get(1), fields.get(5)) else {
            continue;
        };
        let Ok(pct) = flat_pct.trim_end_matches('%').parse::<f64>() else {
            continue;
        };
        total += pct;
        if matches!(*name, "[no" | "[unknown]") {
            // goscope's leaves for a sample whose user stack it could not
            // walk ("[no user stack]" is split by the whitespace).
            unwalked += pct;
        } else if name.starts_with("runtime.") || name.starts_with("internal/runtime/") {
            runtime += pct;
        }
    }
    assert!(
        total > 90.0,
        "pprof -top of {} lists only {total}% of samples:\n{text}",
        profile.display()
    );
    (runtime / (total - unwalked), unwalked / total)
}

#[test]
fn cpu_split_agrees_with_the_targets_own_profile() {
    if !require_root_or_skip("cpu_split_agrees_with_the_targets_own_profile") {
        return;
    }
    let version = "1.22";
    let dir = testkit::workspace_root().join("target/cpu-test");
    std::fs::create_dir_all(&dir).unwrap();
    let own = dir.join("self.pb.gz");
    let ours = dir.join("goscope.pb.gz");
    let binary = loadgen(version, &cgo());
    let mut target = Target::start(
        &binary,
        &[
            "-work",
            "mixed",
            "-scale",
            "8",
            "-cpuprofile",
            own.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    let pid = target.pid.to_string();
    let mut goscope = Goscope::start(&[
        "cpu",
        "--pid",
        &pid,
        "--duration",
        "600",
        "--hz",
        "499",
        "--json",
        "-o",
        ours.to_str().unwrap(),
    ])
    .unwrap();
    goscope.wait_attached().unwrap();
    target.run_batch().unwrap();
    let finished = goscope.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    target.quit().unwrap();
    let split: serde_json::Value = serde_json::from_str(&finished.stdout).unwrap();
    assert!(split["samples"].as_u64().unwrap() > 500, "{split}");
    let (theirs, _) = runtime_leaf_share(version, &own);
    let (mine, unwalked) = runtime_leaf_share(version, &ours);
    assert!(
        unwalked <= 0.10,
        "goscope could not walk {:.1}% of its samples' stacks",
        unwalked * 100.0
    );
    assert!(
        (mine - theirs).abs() <= 0.05,
        "runtime share: goscope {:.1}% vs the target's own profile {:.1}%",
        mine * 100.0,
        theirs * 100.0
    );
    eprintln!(
        "runtime leaf share: goscope {:.1}% (of its samples with a stack; {:.1}% without), target profile {:.1}%",
        mine * 100.0,
        unwalked * 100.0,
        theirs * 100.0
    );
}

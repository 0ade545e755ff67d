//! `goscope sched` against the runtime's own GODEBUG=schedtrace=500: the
//! same gomaxprocs throughout, the same thread count and idle Ps when the
//! target is idle, goroutine creation seen during the batch.

use serde_json::Value;
use testkit::{Goscope, Target, require_root_or_skip};

use crate::util::{cgo, loadgen};

/// (gomaxprocs, idleprocs, threads) of a schedtrace line.
fn parse_schedtrace(line: &str) -> Option<(u64, u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))?
            .parse()
            .ok()
    };
    line.starts_with("SCHED ")
        .then(|| Some((field("gomaxprocs")?, field("idleprocs")?, field("threads")?)))?
}

/// The most frequent value (the largest of those tied).
fn mode(values: &[u64]) -> u64 {
    let count = |v: u64| values.iter().filter(|&&x| x == v).count();
    values
        .iter()
        .copied()
        .max_by_key(|&v| (count(v), v))
        .expect("no readings")
}

#[test]
fn sched_lines_agree_with_schedtrace() {
    if !require_root_or_skip("sched_lines_agree_with_schedtrace") {
        return;
    }
    for version in ["1.22", "1.27"] {
        let binary = loadgen(version, &cgo());
        let mut target = Target::start_capturing_stderr(
            &binary,
            &["-work", "goroutines", "-scale", "3"],
            &[("GODEBUG", "schedtrace=500")],
        )
        .unwrap();
        let pid = target.pid.to_string();
        let mut goscope = Goscope::start(&[
            "sched",
            "--pid",
            &pid,
            "--interval",
            "250",
            "--duration",
            "600",
            "--json",
        ])
        .unwrap();
        goscope.wait_attached().unwrap();
        target.run_batch().unwrap();
        // Idle afterwards: both views settle on the same numbers. Three
        // more schedtrace lines (1.5 s of the target's own), in which
        // goscope reads every 250 ms.
        let schedtraces = |target: &Target| {
            target
                .stderr_lines()
                .iter()
                .filter(|l| parse_schedtrace(l).is_some())
                .count()
        };
        let after_batch = schedtraces(&target);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while schedtraces(&target) < after_batch + 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "Go {version}: no schedtrace lines for 60 s after the batch"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let finished = goscope.interrupt().unwrap();
        assert!(
            finished.status.success(),
            "Go {version}: {}",
            finished.stderr
        );
        let ours: Vec<Value> = finished
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let theirs: Vec<(u64, u64, u64)> = target
            .stderr_lines()
            .iter()
            .filter_map(|l| parse_schedtrace(l))
            .collect();
        target.quit().unwrap();
        assert!(
            ours.len() >= 3 && theirs.len() >= 3,
            "Go {version}: {} vs {} lines",
            ours.len(),
            theirs.len()
        );
        let gomaxprocs = theirs[0].0;
        assert!(
            ours.iter()
                .all(|l| l["gomaxprocs"].as_u64() == Some(gomaxprocs)),
            "Go {version}"
        );
        // The idle target, by the most frequent value of each side's last
        // three readings: a background goroutine (the scavenger returning
        // the batch's memory) may hold a P at one instant of either.
        let their_idle = &theirs[theirs.len() - 3..];
        let our_idle = &ours[ours.len() - 3..];
        let field = |name: &str| -> Vec<u64> {
            our_idle
                .iter()
                .map(|l| l[name].as_u64().unwrap_or_else(|| panic!("{l}")))
                .collect()
        };
        assert_eq!(
            mode(&field("threads")),
            mode(&their_idle.iter().map(|t| t.2).collect::<Vec<_>>()),
            "Go {version}: threads, idle target: goscope {:?}, schedtrace {their_idle:?}",
            field("threads")
        );
        assert_eq!(
            mode(&field("idleprocs")),
            mode(&their_idle.iter().map(|t| t.1).collect::<Vec<_>>()),
            "Go {version}: idle Ps, idle target: goscope {:?}, schedtrace {their_idle:?}",
            field("idleprocs")
        );
        let peak_created = ours
            .iter()
            .filter_map(|l| l["goroutines_created_per_s"].as_f64())
            .fold(0.0, f64::max);
        assert!(
            peak_created > 1000.0,
            "Go {version}: goroutine creation not seen ({peak_created}/s)"
        );
    }
}

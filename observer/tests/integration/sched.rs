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
        // Idle afterwards: both views settle on the same numbers.
        std::thread::sleep(std::time::Duration::from_millis(1200));
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
            ours.len() >= 4 && theirs.len() >= 2,
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
        let (_, idle_ps, threads) = *theirs.last().unwrap();
        let last = ours.last().unwrap();
        assert_eq!(
            last["threads"].as_u64(),
            Some(threads),
            "Go {version}: threads, idle target"
        );
        assert_eq!(
            last["idleprocs"].as_u64(),
            Some(idle_ps),
            "Go {version}: idle Ps, idle target"
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

//! `goscope doctor` attached to real Go targets: figures against the
//! target's own runtime/metrics, and clean detachment however goscope ends.

use testkit::{Goscope, Target, require_root_or_skip};

use crate::util::{self, cgo, goscope_json, hex_address, loadgen, read_process_memory};

const INT3: u8 = 0xcc;

fn doctor_json(finished: &testkit::goscope::Finished) -> serde_json::Value {
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed invalid JSON ({e}): {}\nstderr: {}",
            finished.stdout, finished.stderr
        )
    })
}

#[test]
fn gc_cycles_equal_runtime_metrics() {
    if !require_root_or_skip("gc_cycles_equal_runtime_metrics") {
        return;
    }
    for version in util::GC_PROBE_VERSIONS {
        let binary = loadgen(version, &cgo());
        let mut target = Target::start(&binary, &["-work", "gc", "-scale", "2"], &[]).unwrap();
        let pid = target.pid.to_string();
        let mut goscope =
            Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
        goscope.wait_attached().unwrap();
        let truth = target.run_batch().unwrap();
        let finished = goscope.interrupt().unwrap();
        assert!(
            finished.status.success(),
            "doctor failed: {}",
            finished.stderr
        );
        let report = doctor_json(&finished);
        let expected = truth.delta("/gc/cycles/total:gc-cycles").unwrap() as u64;
        assert!(
            expected >= 10,
            "Go {version}: workload ran only {expected} GC cycles"
        );
        assert_eq!(
            report["gc"]["cycles"].as_u64(),
            Some(expected),
            "Go {version}: goscope's GC cycle count against /gc/cycles/total:gc-cycles"
        );
        assert_eq!(report["target"]["pid"], target.pid);
        assert_eq!(report["target"]["go_version"], truth.go_version);
        assert_eq!(report["ended_by"], "interrupted");
        target.quit().unwrap();
    }
}

/// While attached, the kernel has put a breakpoint at the probe address in
/// the target's memory; after goscope dies (even by SIGKILL) the original
/// instruction is back, no uprobe event is left in tracefs, and the target
/// keeps running.
#[test]
fn no_probe_remains_after_sigkill_or_ctrl_c() {
    if !require_root_or_skip("no_probe_remains_after_sigkill_or_ctrl_c") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let inspect = goscope_json(&["inspect", binary.to_str().unwrap(), "--json"]);
    let address = hex_address(&inspect["functions"]["runtime.gcMarkTermination"]);
    let original = std::fs::read(&binary).unwrap();
    let uprobe_events_before = uprobe_events();

    let mut target = Target::start(&binary, &["-work", "gc"], &[]).unwrap();
    let pid = target.pid.to_string();
    let before = read_process_memory(target.pid, address, 1)[0];
    assert_ne!(before, INT3, "probe address already holds a breakpoint");

    for stop in ["kill", "interrupt"] {
        let mut goscope = Goscope::start(&["doctor", "--pid", &pid, "--duration", "600"]).unwrap();
        goscope.wait_attached().unwrap();
        assert_eq!(
            read_process_memory(target.pid, address, 1)[0],
            INT3,
            "no breakpoint at the probe address while attached"
        );
        let finished = match stop {
            "kill" => goscope.kill().unwrap(),
            _ => goscope.interrupt().unwrap(),
        };
        if stop == "interrupt" {
            assert!(finished.status.success(), "{}", finished.stderr);
            assert!(finished.stdout.contains("GC"), "{}", finished.stdout);
        }
        assert_eq!(
            read_process_memory(target.pid, address, 1)[0],
            before,
            "breakpoint left in the target after goscope's {stop}"
        );
        assert_eq!(uprobe_events(), uprobe_events_before);
        let result = target.run_batch().unwrap();
        assert!(result.delta("/gc/cycles/total:gc-cycles").unwrap() > 0.0);
        assert!(target.is_running());
    }
    drop(original);
    assert!(target.quit().unwrap().success());
}

fn uprobe_events() -> String {
    std::fs::read_to_string("/sys/kernel/tracing/uprobe_events").unwrap_or_default()
}

#[test]
fn target_exiting_inside_the_window_gives_a_report_and_nonzero_exit() {
    if !require_root_or_skip("target_exiting_inside_the_window") {
        return;
    }
    let binary = loadgen("1.22", &cgo());
    let target = Target::start(&binary, &["-work", "idle"], &[]).unwrap();
    let pid = target.pid.to_string();
    let mut goscope =
        Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
    goscope.wait_attached().unwrap();
    target.quit().unwrap();
    let finished = goscope.wait().unwrap();
    assert_eq!(finished.status.code(), Some(3), "{}", finished.stderr);
    let report = doctor_json(&finished);
    assert_eq!(report["ended_by"], "target_exited");
    assert!(finished.stderr.contains(&format!("pid {pid} exited")));
}

/// A target in its own mount namespace, run from a path that does not
/// exist outside it: goscope reads the executable through /proc/PID/exe and
/// its figures still agree with the target's own.
#[test]
fn target_in_another_mount_namespace() {
    if !require_root_or_skip("target_in_another_mount_namespace") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let dir = testkit::workspace_root().join("target/ns-test");
    std::fs::create_dir_all(&dir).unwrap();
    let inside = dir.join("app");
    assert!(
        !inside.exists(),
        "{} must not exist outside the namespace",
        inside.display()
    );
    let script = format!(
        "mount -t tmpfs goscope-ns {dir} && cp {bin} {inside} && exec {inside} -work gc",
        dir = dir.display(),
        bin = binary.display(),
        inside = inside.display()
    );
    let mut target = Target::start_command(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script),
    )
    .unwrap();
    assert!(!inside.exists(), "the namespace's tmpfs leaked outside");
    let pid = target.pid.to_string();
    let inspect = goscope_json(&["inspect", &pid, "--json"]);
    assert_eq!(inspect["exe"], inside.to_str().unwrap());
    assert!(inspect["functions"]["runtime.gcMarkTermination"].is_string());

    let mut goscope =
        Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
    goscope.wait_attached().unwrap();
    let truth = target.run_batch().unwrap();
    let finished = goscope.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    let report = doctor_json(&finished);
    let cycles = truth.delta("/gc/cycles/total:gc-cycles").unwrap();
    assert_eq!(report["gc"]["cycles"].as_f64(), Some(cycles));
    assert_eq!(report["gc"]["cycles_probe"].as_f64(), Some(cycles));
    target.quit().unwrap();
}

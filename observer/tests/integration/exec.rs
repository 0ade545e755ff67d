//! A target that execve's while goscope has probes attached: goscope parsed
//! and probes only the executable it pinned, so the new program's code
//! stays byte-identical to its file, its batch computes the right checksum,
//! and goscope ends the window saying the pid exec'd (exit status 3)
//! instead of reporting the new program's figures as the old one's.

use std::path::Path;

use testkit::{BuildOptions, Goscope, Target, require_root_or_skip};

use crate::util::{assert_code_matches_file, cgo, loadgen};

/// Runs `doctor` (default overhead budget, per-call probes on) on a
/// `from` target, makes it exec `to`, and checks what both sides saw.
fn exec_under_doctor(from: &Path, to: &Path, doctor_extra: &[&str]) {
    let mut target = Target::start(from, &["-work", "mixed", "-checksum"], &[]).unwrap();
    let expected = target.run_batch().unwrap().checksum;
    assert_ne!(expected, 0, "the target reports no checksum");
    let pid = target.pid.to_string();
    let mut args = vec!["doctor", "--pid", &pid, "--duration", "600", "--json"];
    args.extend_from_slice(doctor_extra);
    let mut goscope = Goscope::start(&args).unwrap();
    goscope.wait_attached().unwrap();
    // One batch under the probes first, so the governor has attached and
    // detached at least once before the exec.
    assert_eq!(target.run_batch().unwrap().checksum, expected);

    target.exec(to, &["-work", "mixed", "-checksum"]).unwrap();
    let message = goscope
        .wait_for_stderr(|line| line.contains("exec'd"))
        .unwrap();
    assert!(
        message.contains(&format!("pid {pid} exec'd {}", to.display()))
            && message.contains("no figures of the new program are reported"),
        "{message}"
    );
    let finished = goscope.wait().unwrap();
    assert_eq!(finished.status.code(), Some(3), "{}", finished.stderr);
    let report: serde_json::Value = serde_json::from_str(&finished.stdout)
        .unwrap_or_else(|e| panic!("doctor printed invalid JSON ({e}): {}", finished.stdout));
    assert_eq!(report["ended_by"], "target_execd", "{}", finished.stdout);

    // The new program runs unharmed: its code is its file's, byte for byte,
    // and a whole batch computes the same checksum.
    assert_code_matches_file(target.pid, to);
    let after = target.run_batch().unwrap();
    assert_eq!(
        after.checksum, expected,
        "the exec'd program computed a wrong checksum"
    );
    assert_code_matches_file(target.pid, to);
    assert!(target.quit().unwrap().success());
}

#[test]
fn exec_into_another_go_program_while_probes_are_attached() {
    if !require_root_or_skip("exec_into_another_go_program_while_probes_are_attached") {
        return;
    }
    let from = loadgen("1.22", &cgo());
    let to = loadgen("1.27", &cgo());
    exec_under_doctor(&from, &to, &[]);
}

#[test]
fn exec_into_the_same_binary_while_probes_are_attached() {
    if !require_root_or_skip("exec_into_the_same_binary_while_probes_are_attached") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    exec_under_doctor(&binary, &binary, &["--overhead-budget", "off"]);
}

/// Memory-only commands notice the exec too (the held /proc/PID/mem reads
/// nothing once the address space is gone).
#[test]
fn heatmap_ends_on_exec() {
    if !require_root_or_skip("heatmap_ends_on_exec") {
        return;
    }
    let from = loadgen("1.27", &BuildOptions::default());
    let to = loadgen("1.27", &cgo());
    // Five mixed batches last seconds, many 100 ms columns, so the heatmap
    // has columns of the first program when it execs.
    let mut target = Target::start(&from, &["-work", "mixed", "-scale", "5"], &[]).unwrap();
    let pid = target.pid.to_string();
    let dir = std::env::temp_dir().join(format!("goscope-exec-heatmap-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("map.svg");
    let mut goscope = Goscope::start(&[
        "heatmap",
        "--pid",
        &pid,
        "--duration",
        "600",
        "--interval-ms",
        "100",
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    goscope.wait_attached().unwrap();
    target.run_batch().unwrap();
    target.exec(&to, &["-work", "idle"]).unwrap();
    let finished = goscope.wait().unwrap();
    assert_eq!(finished.status.code(), Some(3), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains(&format!("pid {pid} exec'd {}", to.display())),
        "{}",
        finished.stderr
    );
    target.run_batch().unwrap();
    assert!(target.quit().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

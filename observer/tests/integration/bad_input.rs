//! Bad input: one line on stderr naming the problem, a non-zero exit, never
//! a panic or a hang.

use std::process::{Command, Stdio};

use testkit::{BuildOptions, goscope::run, require_root_or_skip};

use crate::util::loadgen;

fn assert_clean_failure(args: &[&str], expected: &str) {
    let finished = run(args).unwrap();
    assert!(!finished.status.success(), "goscope {args:?} succeeded");
    assert_eq!(
        finished.status.code(),
        Some(1),
        "goscope {args:?}: {}",
        finished.stderr
    );
    let stderr = finished.stderr.trim();
    assert_eq!(
        stderr.lines().count(),
        1,
        "goscope {args:?} stderr: {stderr}"
    );
    assert!(stderr.starts_with("goscope: error: "), "{stderr}");
    assert!(
        stderr.contains(expected),
        "goscope {args:?}: {stderr:?} lacks {expected:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn inspect_rejects_non_go_input() {
    assert_clean_failure(&["inspect", "/etc/hostname"], "is not an ELF file");
    assert_clean_failure(&["inspect", "/bin/sleep"], "is not a Go program");
    assert_clean_failure(
        &["inspect", "/nonexistent/app"],
        "cannot read /nonexistent/app",
    );
    assert_clean_failure(&["inspect", "4000000"], "no such process: 4000000");
}

#[test]
fn doctor_rejects_bad_targets() {
    if !require_root_or_skip("doctor_rejects_bad_targets") {
        return;
    }
    assert_clean_failure(&["doctor", "--pid", "4000000"], "no such process: 4000000");
    let mut sleep = Command::new("sleep")
        .arg("600")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sleep.id().to_string();
    assert_clean_failure(&["doctor", "--pid", &pid], "is not a Go program");
    let _ = sleep.kill();
    let _ = sleep.wait();

    let stripped = loadgen(
        "1.22",
        &BuildOptions {
            ldflags: Some("-s -w".into()),
            ..Default::default()
        },
    );
    let target = testkit::Target::start(&stripped, &["-work", "idle"], &[]).unwrap();
    let pid = target.pid.to_string();
    assert_clean_failure(
        &["doctor", "--pid", &pid, "--duration", "1"],
        "refuses to guess",
    );
    target.quit().unwrap();
}

#[test]
fn doctor_rejects_bad_arguments() {
    let finished = run(&["doctor", "--pid", "1", "--duration", "0"]).unwrap();
    assert_eq!(finished.status.code(), Some(2));
    assert!(finished.stderr.contains("duration"), "{}", finished.stderr);
}

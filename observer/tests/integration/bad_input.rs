//! Bad input: one line on stderr naming the problem, a non-zero exit, never
//! a panic or a hang.

use std::process::{Command, Stdio};

use testkit::{goscope::run, require_root_or_skip};

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
}

#[test]
fn doctor_rejects_bad_arguments() {
    let finished = run(&["doctor", "--pid", "1", "--duration", "0"]).unwrap();
    assert_eq!(finished.status.code(), Some(2));
    assert!(finished.stderr.contains("duration"), "{}", finished.stderr);
}

/// A copy of a real target whose build info claims an unsupported Go
/// release (the version string patched in place, same length): doctor
/// refuses it naming the version and the supported range; inspect says so.
#[test]
fn unsupported_go_version_is_refused() {
    let binary = loadgen("1.22", &crate::util::cgo());
    let mut bytes = std::fs::read(&binary).unwrap();
    let magic = b"\xff Go buildinf:";
    let header = bytes
        .windows(magic.len())
        .position(|w| w == magic)
        .expect("build info magic");
    let version_at = header + 33; // 32-byte header, then a 1-byte length
    let version = bytes[version_at..version_at + 9].to_vec();
    assert!(
        version.starts_with(b"go1.22."),
        "{:?}",
        String::from_utf8_lossy(&version)
    );
    bytes[version_at + 4..version_at + 6].copy_from_slice(b"17");
    let patched = binary.with_file_name("loadgen-claims-go1.17");
    std::fs::write(&patched, &bytes).unwrap();
    // Executable by its owner (root) and readable, never world-writable.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&patched, std::fs::Permissions::from_mode(0o755)).unwrap();

    let report = crate::util::goscope_json(&["inspect", patched.to_str().unwrap(), "--json"]);
    assert!(
        report["go_version"]
            .as_str()
            .unwrap()
            .starts_with("go1.17.")
    );
    assert_eq!(report["supported"], false);

    if !require_root_or_skip("unsupported_go_version_is_refused (doctor part)") {
        return;
    }
    let target = testkit::Target::start(&patched, &["-work", "idle"], &[]).unwrap();
    let pid = target.pid.to_string();
    assert_clean_failure(
        &["doctor", "--pid", &pid, "--duration", "1"],
        "outside the supported range go1.19 to go1.27",
    );
    target.quit().unwrap();
}

//! Files goscope writes as root never follow a planted link: a symbolic
//! link at `heatmap -o` or at `top --log` is refused with a one-line error
//! naming the path, goscope exits non-zero and the link's target is
//! untouched.

use std::{os::unix::fs::symlink, path::PathBuf};

use testkit::{Target, require_root_or_skip};

use crate::util::loadgen;

const PRECIOUS: &[u8] = b"not goscope's to overwrite\n";

/// A scratch directory holding `victim` and a link to it named `link`.
fn planted(test: &str, link: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("goscope-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, PRECIOUS).unwrap();
    let link = dir.join(link);
    symlink(&victim, &link).unwrap();
    (dir, victim, link)
}

fn assert_refused(
    finished: &testkit::goscope::Finished,
    link: &std::path::Path,
    victim: &std::path::Path,
) {
    assert!(
        !finished.status.success(),
        "goscope exited 0 writing through a link: {}",
        finished.stderr
    );
    let want = format!(
        "refusing to write {}: it is a symbolic link",
        link.display()
    );
    let error_lines: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|l| l.contains("error"))
        .collect();
    assert!(
        error_lines.len() == 1 && error_lines[0].contains(&want),
        "want one error line with {want:?}, stderr: {}",
        finished.stderr
    );
    assert_eq!(
        std::fs::read(victim).unwrap(),
        PRECIOUS,
        "the link's target changed"
    );
    assert!(
        std::fs::symlink_metadata(link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
}

#[test]
fn heatmap_refuses_a_symlink_at_its_output() {
    if !require_root_or_skip("heatmap_refuses_a_symlink_at_its_output") {
        return;
    }
    let (dir, victim, link) = planted("outfile-heatmap", "map.svg");
    let binary = loadgen("1.22", &Default::default());
    let target = Target::start(&binary, &["-work", "sites", "-scale", "1"], &[]).unwrap();
    let pid = target.pid.to_string();
    let finished = testkit::goscope::run(&[
        "heatmap",
        "--pid",
        &pid,
        "--duration",
        "0.5",
        "--interval-ms",
        "100",
        "-o",
        link.to_str().unwrap(),
    ])
    .unwrap();
    assert!(target.quit().unwrap().success());
    assert_refused(&finished, &link, &victim);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn top_refuses_a_symlink_as_its_log() {
    if !require_root_or_skip("top_refuses_a_symlink_as_its_log") {
        return;
    }
    let (dir, victim, link) = planted("outfile-top", "top.log");
    let binary = loadgen("1.22", &Default::default());
    let target = Target::start(&binary, &["-work", "sites", "-scale", "1"], &[]).unwrap();
    let pid = target.pid.to_string();
    // The log is opened before the terminal is taken over: no tty needed.
    let finished = testkit::goscope::run(&[
        "top",
        "--pid",
        &pid,
        "--no-sites",
        "--log",
        link.to_str().unwrap(),
    ])
    .unwrap();
    assert!(target.quit().unwrap().success());
    assert_refused(&finished, &link, &victim);
    std::fs::remove_dir_all(dir).unwrap();
}

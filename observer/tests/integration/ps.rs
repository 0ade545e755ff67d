//! `goscope ps` lists Go processes with their version and build flags and
//! whether goscope supports them; `--pid NAME` takes a process by name
//! when exactly one matches, and lists the candidates (exit 1) when
//! several do. Targets run under names unique to the test (copies of
//! workloads), so other tests' processes never match.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use serde_json::Value;
use testkit::{BuildOptions, require_root_or_skip};

/// A copy of gstates named `name`, started and parked.
fn start_named(name: &str, options: &BuildOptions) -> (Child, PathBuf) {
    let binary = testkit::build_workload("1.27", "gstates", options).unwrap();
    let dir = std::env::temp_dir().join(format!("goscope-ps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(name);
    if !copy.exists() {
        std::fs::copy(&binary, &copy).unwrap();
    }
    let mut child = Command::new(&copy)
        .args(["-recv", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "{line:?}");
    (child, copy)
}

fn goscope(args: &[&str]) -> std::process::Output {
    Command::new(testkit::goscope_binary())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn ps_lists_go_processes_and_names_pick_one() {
    if !require_root_or_skip("ps_lists_go_processes_and_names_pick_one") {
        return;
    }
    let name = format!("gsps{}", std::process::id() % 100_000);
    let options = BuildOptions {
        cgo: true,
        buildmode: Some("pie".into()),
        ldflags: Some("-s -w".into()),
    };
    let (mut first, copy) = start_named(&name, &options);
    let out = goscope(&["ps", "--json"]);
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == first.id())
        .unwrap_or_else(|| panic!("pid {} not listed: {listed:#}", first.id()));
    assert_eq!(me["exe"], copy.display().to_string());
    assert_eq!(me["go_version"], crate::util::toolchain_version("1.27"));
    assert_eq!(me["stripped"], true, "{me}");
    assert_eq!(me["pie"], true, "{me}");
    assert_eq!(me["cgo"], true, "{me}");
    assert_eq!(me["supported"], true, "{me}");
    // Not Go: not listed.
    let mut sleep = Command::new("sleep").arg("600").spawn().unwrap();
    let out = goscope(&["ps", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == sleep.id())
    );
    let _ = sleep.kill();
    let _ = sleep.wait();

    // By name: the one process.
    let out = goscope(&["goroutines", "--pid", &name, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dump["pid"], first.id());
    // Two of them: both listed, exit 1, one line.
    let (mut second, _) = start_named(&name, &options);
    let out = goscope(&["goroutines", "--pid", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for pid in [first.id(), second.id()] {
        assert!(stderr.contains(&pid.to_string()), "{stderr}");
    }
    let out = goscope(&["goroutines", "--pid", "no-such-process-name"]);
    assert_eq!(out.status.code(), Some(1));
    for child in [&mut first, &mut second] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(copy.parent().unwrap());
}

//! `goscope explain` against workloads/escapes, a module with one hot site
//! per escape reason class that measures its own bytes per function. On Go
//! 1.22 and 1.27 (and a stripped 1.27 build: the source gives the
//! diagnostics, the binary the sites), each function's hot site gets its
//! reason class and its share of the module's bytes is within 5 points of
//! the workload's own count; the toolchain matching the binary is used.
//! Bad input (a directory that is no module, another module than the
//! binary's) is a one-line error and exit 1.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
};

use serde_json::Value;
use testkit::{BuildOptions, require_root_or_skip};

fn src() -> PathBuf {
    testkit::workspace_root().join("workloads/escapes")
}

/// (function, the class its hot site must get).
const EXPECTED: &[(&str, &str)] = &[
    ("main.retPtr", "returned_pointer"),
    ("main.toIface", "interface_conversion"),
    ("main.goClosure", "closure"),
    ("main.sprint", "variadic_arguments"),
    ("main.grow", "append_growth"),
    ("main.big", "too_large"),
    ("main.mapValue", "stored_in_container"),
];

fn counts(child: &mut Child, out: &mut BufReader<ChildStdout>) -> HashMap<String, f64> {
    writeln!(child.stdin.as_mut().unwrap(), "count").unwrap();
    let mut counts = HashMap::new();
    loop {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let line = line.trim();
        if line == "end" || line.is_empty() {
            return counts;
        }
        let (name, bytes) = line.split_once(' ').unwrap();
        counts.insert(name.to_string(), bytes.parse().unwrap());
    }
}

#[test]
fn each_hot_site_gets_its_reason_and_its_share() {
    if !require_root_or_skip("each_hot_site_gets_its_reason_and_its_share") {
        return;
    }
    for (version, stripped) in [("1.22", false), ("1.27", false), ("1.27", true)] {
        let label = format!("Go {version} stripped={stripped}");
        let options = BuildOptions {
            ldflags: stripped.then(|| "-s -w".to_string()),
            ..Default::default()
        };
        let binary = testkit::build_workload(version, "escapes", &options).unwrap();
        let mut child = Command::new(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{label}");
        let before = counts(&mut child, &mut out);
        let pid = child.id().to_string();
        let run = Command::new(testkit::goscope_binary())
            .args([
                "explain",
                "--pid",
                &pid,
                "--duration",
                "4",
                "--json",
                "--top",
                "30",
                "--src",
            ])
            .arg(src())
            .output()
            .unwrap();
        let after = counts(&mut child, &mut out);
        writeln!(child.stdin.as_mut().unwrap(), "quit").unwrap();
        child.wait().unwrap();
        assert!(
            run.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let report: Value = serde_json::from_slice(&run.stdout).unwrap();
        let toolchain = report["toolchain_version"].as_str().unwrap();
        assert_eq!(
            Some(toolchain),
            report["binary_go_version"].as_str(),
            "{label}: the matching toolchain is used"
        );
        assert_eq!(report["warnings"], serde_json::json!([]), "{label}");
        let sites = report["sites"].as_array().unwrap();
        let truth: HashMap<&str, f64> = EXPECTED
            .iter()
            .map(|(f, _)| (*f, after[*f] - before[*f]))
            .collect();
        let truth_total: f64 = truth.values().sum();
        let share_of = |function: &str| -> f64 {
            sites
                .iter()
                .filter(|s| s["function"] == function)
                .map(|s| s["bytes_share"].as_f64().unwrap())
                .sum()
        };
        let ours_total: f64 = EXPECTED.iter().map(|(f, _)| share_of(f)).sum();
        for (function, class) in EXPECTED {
            let hottest = sites
                .iter()
                .filter(|s| s["function"] == *function)
                .max_by(|a, b| {
                    a["bytes_share"]
                        .as_f64()
                        .unwrap()
                        .total_cmp(&b["bytes_share"].as_f64().unwrap())
                })
                .unwrap_or_else(|| panic!("{label}: no site of {function}: {report:#}"));
            assert_eq!(hottest["class"], *class, "{label}: {function}: {hottest:#}");
            let (ours, want) = (
                share_of(function) / ours_total,
                truth[function] / truth_total,
            );
            assert!(
                (ours - want).abs() <= 0.05,
                "{label}: {function} share {ours:.3} vs the workload's {want:.3}"
            );
        }
        // fmt allocates the string itself: the site says where.
        let sprint = sites
            .iter()
            .find(|s| s["function"] == "main.sprint")
            .unwrap();
        assert!(
            sprint["allocated_in"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c[0].as_str().unwrap().starts_with("fmt.")),
            "{label}: {sprint:#}"
        );
    }
}

#[test]
fn bad_sources_are_one_line_errors() {
    if !require_root_or_skip("bad_sources_are_one_line_errors") {
        return;
    }
    let binary = testkit::build_workload("1.27", "escapes", &BuildOptions::default()).unwrap();
    let not_a_module = std::env::temp_dir().join(format!("goscope-notmod-{}", std::process::id()));
    std::fs::create_dir_all(&not_a_module).unwrap();
    let other_module = testkit::workspace_root().join("workloads");
    for (src, expect) in [
        (not_a_module.clone(), "not a Go module"),
        (other_module, "not the code the binary was built from"),
    ] {
        let out = Command::new(testkit::goscope_binary())
            .args(["explain", "--profile", "/nonexistent.pb.gz", "--binary"])
            .arg(&binary)
            .arg("--src")
            .arg(&src)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", src.display());
        assert!(stderr.contains(expect), "{}: {stderr}", src.display());
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    std::fs::remove_dir_all(&not_a_module).unwrap();
}

/// A copy of workloads/escapes in a fresh directory, `edit` applied to
/// its main.go.
fn copy_of_escapes(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("goscope-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["go.mod", "main.go"] {
        let text = std::fs::read_to_string(src().join(file)).unwrap();
        let text = if file == "main.go" { edit(text) } else { text };
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn explain_json(args: &[&str], src: &std::path::Path) -> (bool, Value, String) {
    let out = Command::new(testkit::goscope_binary())
        .arg("explain")
        .args(args)
        .arg("--src")
        .arg(src)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

#[test]
fn the_summary_counts_each_class_and_an_edited_tree_is_said() {
    if !require_root_or_skip("the_summary_counts_each_class_and_an_edited_tree_is_said") {
        return;
    }
    let binary = testkit::build_workload("1.27", "escapes", &BuildOptions::default()).unwrap();
    let binary = binary.to_str().unwrap();
    let (ok, json, stderr) = explain_json(&["--summary", "--json", "--binary", binary], &src());
    assert!(ok, "{stderr}");
    assert_eq!(json["warnings"], serde_json::json!([]), "{json:#}");
    for (_, class) in EXPECTED {
        assert!(
            json["by_class"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["class"] == *class && c["count"].as_u64().unwrap() >= 1),
            "{class}: {json:#}"
        );
    }
    // Three lines added above the functions: every declaration moved.
    let edited = copy_of_escapes("edited", |t| {
        t.replacen("type point", "\n\n\ntype point", 1)
    });
    let (ok, json, stderr) = explain_json(&["--summary", "--json", "--binary", binary], &edited);
    assert!(ok, "{stderr}");
    let warnings = json["warnings"].to_string();
    assert!(
        warnings.contains("not the code the binary was built from"),
        "{json:#}"
    );
    std::fs::remove_dir_all(&edited).unwrap();
    // A dependency the (offline) module cache does not have.
    let needs = copy_of_escapes("deps", |t| {
        t.replacen("import (", "import (\n\t_ \"example.invalid/nothere\"", 1)
    });
    std::fs::write(
        needs.join("go.mod"),
        "module goscope.dev/escapes\n\ngo 1.21\n\nrequire example.invalid/nothere v1.0.0\n",
    )
    .unwrap();
    let (ok, _, stderr) = explain_json(&["--summary", "--binary", binary], &needs);
    assert!(!ok);
    assert!(stderr.contains("lacks a dependency"), "{stderr}");
    std::fs::remove_dir_all(&needs).unwrap();
}

#[test]
fn doctor_with_src_shows_the_reason_next_to_each_top_site() {
    if !require_root_or_skip("doctor_with_src_shows_the_reason_next_to_each_top_site") {
        return;
    }
    let binary = testkit::build_workload("1.27", "escapes", &BuildOptions::default()).unwrap();
    let mut child = Command::new(&binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = child.id().to_string();
    let (ok, report, stderr) = explain_json_doctor(&pid);
    writeln!(child.stdin.as_mut().unwrap(), "quit").unwrap();
    child.wait().unwrap();
    assert!(ok, "{stderr}");
    let sites = report["alloc"]["sites"].as_array().unwrap();
    for (function, class) in EXPECTED {
        // sprint's top site is inside fmt; the others are the module's.
        if *function == "main.sprint" {
            continue;
        }
        let site = sites
            .iter()
            .find(|s| s["function"] == *function)
            .unwrap_or_else(|| panic!("{function}: {sites:#?}"));
        assert_eq!(site["escape"]["class"], *class, "{function}: {site:#}");
    }
}

fn explain_json_doctor(pid: &str) -> (bool, Value, String) {
    let out = Command::new(testkit::goscope_binary())
        .args(["doctor", "--pid", pid, "--duration", "3", "--json", "--src"])
        .arg(src())
        .output()
        .unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

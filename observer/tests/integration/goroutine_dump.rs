//! `goscope goroutines` against the runtime's own goroutine profile.
//! workloads/gstates starts goroutines in known states (channel receive,
//! select, sleep, sync.Mutex, a CPU spinner, blocked in C, and receive
//! under pprof labels), writes its own runtime/pprof goroutine profile
//! (debug=1) once every one is parked, and announces "ready". goscope's
//! dump taken then must have the same total, the same groups with the same
//! counts, labels and function/file:line frames for every goroutine that
//! is not running (the spinner and the announcing main goroutine, which
//! the runtime's profile catches running, are compared by count), on every
//! CI Go version, plain and stripped. The JSON gives each group's state
//! and wait reason, a running goroutine's thread, and the pprof profile
//! opens in `go tool pprof` with the same total.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
};

use serde_json::Value;
use testkit::{BuildOptions, require_root_or_skip};

/// gstates' goroutines per state.
const ARGS: &[&str] = &[
    "-recv", "5", "-select", "3", "-sleep", "2", "-lock", "4", "-spin", "1", "-cgo", "2",
    "-labeled", "4",
];

/// One debug=1 group: labels line and frames as "function file:line".
type Group = (String, Vec<String>);

/// debug=1 text → (total, groups with their counts).
fn parse_debug1(text: &str) -> (u64, Vec<(u64, Group)>) {
    let mut lines = text.lines();
    let total = lines
        .next()
        .and_then(|l| l.strip_prefix("goroutine profile: total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no debug=1 header in {text}"));
    let mut groups = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block
            .lines()
            .skip_while(|l| l.starts_with("goroutine profile"));
        let Some(head) = lines.next() else { continue };
        let Some((count, _)) = head.split_once(" @") else {
            continue;
        };
        let count: u64 = count.trim().parse().unwrap();
        let (mut labels, mut frames) = (String::new(), Vec::new());
        for line in lines {
            if let Some(l) = line.strip_prefix("# labels: ") {
                labels = l.to_string();
                continue;
            }
            let cols: Vec<&str> = line.split('\t').filter(|c| !c.is_empty()).collect();
            // "#", pc, function+offset, file:line (ours: no offset;
            // running groups: "#", "[running]", start function).
            if let [_, _, function, position] = cols.as_slice() {
                let function = function.split('+').next().unwrap();
                frames.push(format!("{function} {position}"));
            } else if let [_, marker, start] = cols.as_slice() {
                frames.push(format!("{marker} {start}"));
            }
        }
        groups.push((count, (labels, frames)));
    }
    (total, groups)
}

/// Groups compared by count only: running or the announcing goroutine.
fn compared_by_count(group: &Group) -> bool {
    group.1.iter().any(|f| {
        f.starts_with("main.main ") || f.starts_with("main.spin ") || f.starts_with("[running]")
    })
}

fn start(binary: &std::path::Path, dir: &std::path::Path) -> (Child, u32) {
    let mut child = Command::new(binary)
        .args(ARGS)
        .arg("-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "gstates said {line:?}");
    let pid = child.id();
    (child, pid)
}

fn goscope(args: &[&str]) -> String {
    let out = Command::new(testkit::goscope_binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "goscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dumps_match_the_runtimes_own_goroutine_profile() {
    if !require_root_or_skip("dumps_match_the_runtimes_own_goroutine_profile") {
        return;
    }
    for version in testkit::ci_go_versions() {
        for stripped in [false, true] {
            let options = BuildOptions {
                cgo: true,
                ldflags: stripped.then(|| "-s -w".to_string()),
                ..Default::default()
            };
            let label = format!("Go {version} stripped={stripped}");
            let binary = testkit::build_workload(&version, "gstates", &options)
                .unwrap_or_else(|e| panic!("{label}: building gstates: {e:#}"));
            let dir = std::env::temp_dir().join(format!(
                "goscope-gdump-{}-{version}-{stripped}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let (mut child, pid) = start(&binary, &dir);
            let pid_arg = pid.to_string();
            let ours = goscope(&["goroutines", "--pid", &pid_arg, "--debug", "1"]);
            let profile = dir.join("ours.pb.gz");
            let json: Value = serde_json::from_str(&goscope(&[
                "goroutines",
                "--pid",
                &pid_arg,
                "--json",
                "-o",
                profile.to_str().unwrap(),
            ]))
            .unwrap();
            let theirs = std::fs::read_to_string(dir.join("goroutine.txt")).unwrap();
            check_against_runtime(&label, &theirs, &ours);
            check_json(&label, pid, &json);
            check_pprof(&label, &version, &profile, json["total"].as_u64().unwrap());
            writeln!(child.stdin.as_mut().unwrap(), "quit").unwrap();
            assert!(child.wait().unwrap().success(), "{label}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

fn check_against_runtime(label: &str, theirs: &str, ours: &str) {
    let (their_total, their_groups) = parse_debug1(theirs);
    let (our_total, our_groups) = parse_debug1(ours);
    assert_eq!(
        our_total, their_total,
        "{label}: totals\n{theirs}\n---\n{ours}"
    );
    let split = |groups: Vec<(u64, Group)>| {
        let mut exact: BTreeMap<Group, u64> = BTreeMap::new();
        let mut by_count = 0;
        for (count, group) in groups {
            if compared_by_count(&group) {
                by_count += count;
            } else {
                *exact.entry(group).or_default() += count;
            }
        }
        (exact, by_count)
    };
    let (their_exact, their_running) = split(their_groups);
    let (our_exact, our_running) = split(our_groups);
    assert_eq!(
        our_exact, their_exact,
        "{label}: groups differ\n{theirs}\n---\n{ours}"
    );
    assert_eq!(our_running, their_running, "{label}: running goroutines");
    assert_eq!(our_running, 2, "{label}: the spinner and main");
}

fn check_json(label: &str, pid: u32, json: &Value) {
    let groups = json["groups"].as_array().unwrap();
    let group_with = |function: &str| {
        groups
            .iter()
            .filter(|g| {
                g["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["function"] == function)
            })
            .collect::<Vec<_>>()
    };
    for (function, reason, count) in [
        ("main.blockRecv", "chan receive", 5),
        ("main.blockSelect", "select", 3),
        ("main.sleeper", "sleep", 2),
        ("main.lockWaiter", "sync.Mutex.Lock", 4),
    ] {
        let found = group_with(function);
        assert_eq!(found.len(), 1, "{label}: {function}: {found:?}");
        assert_eq!(found[0]["status"], "waiting", "{label}: {function}");
        assert_eq!(found[0]["wait_reason"], reason, "{label}: {function}");
        assert_eq!(found[0]["count"], count, "{label}: {function}");
        assert!(
            found[0]["created_by"]["function"]
                .as_str()
                .unwrap()
                .starts_with("main.start"),
            "{label}: {function} created by {}",
            found[0]["created_by"]
        );
    }
    let cgo = group_with("main.cgoBlock");
    assert_eq!(cgo.len(), 1, "{label}: cgo: {cgo:?}");
    assert_eq!(cgo[0]["status"], "syscall", "{label}");
    let labeled = group_with("main.labeledRecv");
    assert_eq!(labeled.len(), 2, "{label}: one group per label value");
    for g in labeled {
        assert_eq!(g["labels"][0][0], "worker", "{label}: {g}");
    }
    let goroutines = json["goroutines"].as_array().unwrap();
    assert_eq!(goroutines.len() as u64, json["total"].as_u64().unwrap());
    assert_eq!(json["partial"], 0, "{label}: partial walks");
    for g in goroutines.iter().filter(|g| g["status"] == "running") {
        let thread = g["thread"]
            .as_u64()
            .unwrap_or_else(|| panic!("{label}: {g}"));
        assert!(
            std::path::Path::new(&format!("/proc/{pid}/task/{thread}")).exists(),
            "{label}: running on thread {thread}, not one of pid {pid}'s"
        );
        assert!(g["frames"].as_array().unwrap().is_empty(), "{label}: {g}");
    }
}

fn check_pprof(label: &str, version: &str, profile: &std::path::Path, total: u64) {
    let go = testkit::go_binary(version).unwrap();
    let out = Command::new(go)
        .args(["tool", "pprof", "-raw"])
        .arg(profile)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Samples: "   COUNT: loc loc ..." after "goroutine/count".
    let sum: u64 = text
        .lines()
        .skip_while(|l| !l.starts_with("goroutine/count"))
        .skip(1)
        .take_while(|l| !l.starts_with("Locations"))
        .filter_map(|l| l.trim().split(':').next()?.trim().parse::<u64>().ok())
        .sum();
    assert_eq!(sum, total, "{label}: pprof samples\n{text}");
}

/// gstates' leaked goroutines so far and its seconds since ready.
fn leaked_so_far(child: &mut Child, out: &mut BufReader<std::process::ChildStdout>) -> (f64, f64) {
    writeln!(child.stdin.as_mut().unwrap(), "count").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    let ["leaked", n, t] = cols.as_slice() else {
        panic!("gstates said {line:?}")
    };
    (n.parse().unwrap(), t.parse().unwrap())
}

fn watch(args: &[&str], seconds: &str) -> (Value, f64) {
    observe_leaks(args, &["goroutines", "--watch", seconds, "--json"])
}

/// Runs gstates with `args` and goscope `command` (plus `--pid`) against
/// it: goscope's JSON and the workload's own leak rate per minute.
fn observe_leaks(args: &[&str], command: &[&str]) -> (Value, f64) {
    let binary = testkit::build_workload(
        "1.27",
        "gstates",
        &BuildOptions {
            cgo: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "gstates said {line:?}");
    let before = leaked_so_far(&mut child, &mut out);
    let pid = child.id().to_string();
    let mut full: Vec<&str> = command.to_vec();
    full.extend(["--pid", &pid]);
    let json: Value = serde_json::from_str(&goscope(&full)).unwrap();
    let after = leaked_so_far(&mut child, &mut out);
    writeln!(child.stdin.as_mut().unwrap(), "quit").unwrap();
    assert!(child.wait().unwrap().success());
    (json, (after.0 - before.0) / (after.1 - before.1) * 60.0)
}

#[test]
fn a_leaking_site_is_the_top_suspect_and_churn_is_none() {
    if !require_root_or_skip("a_leaking_site_is_the_top_suspect_and_churn_is_none") {
        return;
    }
    let (json, truth_per_min) = watch(&["-leak", "50", "-churn", "200", "-recv", "5"], "20");
    let suspects = json["suspects"].as_array().unwrap();
    assert_eq!(suspects.len(), 1, "one suspect: {json:#}");
    let top = &suspects[0];
    assert!(
        top["blocking_frame"]
            .as_str()
            .unwrap()
            .starts_with("main.leakyHandler "),
        "{top}"
    );
    assert!(
        top["created_by"]
            .as_str()
            .unwrap()
            .starts_with("main.every"),
        "{top}"
    );
    assert_eq!(top["wait_reason"], "chan receive", "{top}");
    let growth = top["growth_per_min"].as_f64().unwrap();
    assert!(
        (growth - truth_per_min).abs() <= 0.10 * truth_per_min,
        "growth {growth:.0}/min vs the workload's {truth_per_min:.0}/min"
    );
    assert!(json["samples"].as_u64().unwrap() >= 10, "{json}");

    let (json, _) = watch(&["-churn", "200", "-recv", "5"], "10");
    assert_eq!(json["suspects"], serde_json::json!([]), "no leak: {json:#}");
    // The churning group was seen, and did not stay.
    assert!(
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["blocking_frame"]
                .as_str()
                .unwrap()
                .starts_with("main.churnHandler ")),
        "{json:#}"
    );
}

/// gstates' phase totals (spin, sleep, channel wait), nanoseconds.
fn phases_so_far(child: &mut Child, out: &mut BufReader<std::process::ChildStdout>) -> [f64; 3] {
    writeln!(child.stdin.as_mut().unwrap(), "phases").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let cols: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|c| c.parse().unwrap())
        .collect();
    [cols[0], cols[1], cols[2]]
}

#[test]
fn the_wall_clock_profile_splits_time_as_the_goroutines_measured_it() {
    if !require_root_or_skip("the_wall_clock_profile_splits_time_as_the_goroutines_measured_it") {
        return;
    }
    for version in ["1.21", "1.27"] {
        let binary = testkit::build_workload(version, "gstates", &BuildOptions::default()).unwrap();
        let mut child = Command::new(binary)
            .args(["-phased", "1", "-recv", "3"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "gstates said {line:?}");
        let dir =
            std::env::temp_dir().join(format!("goscope-wall-{}-{version}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let profile = dir.join("wall.pb.gz");
        let before = phases_so_far(&mut child, &mut out);
        let pid = child.id().to_string();
        let json: Value = serde_json::from_str(&goscope(&[
            "goroutines",
            "--pid",
            &pid,
            "--profile",
            "8",
            "--json",
            "-o",
            profile.to_str().unwrap(),
        ]))
        .unwrap();
        let after = phases_so_far(&mut child, &mut out);
        writeln!(child.stdin.as_mut().unwrap(), "quit").unwrap();
        assert!(child.wait().unwrap().success());
        let truth: Vec<f64> = (0..3).map(|i| after[i] - before[i]).collect();
        let truth_total: f64 = truth.iter().sum();
        // The phased goroutines' rows: by their frames, or (running, no
        // stack) by their start function.
        let (mut cpu, mut sleep, mut chan) = (0.0, 0.0, 0.0);
        for row in json["rows"].as_array().unwrap() {
            let phased = row["frames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["function"] == "main.phased")
                || row["start_function"]
                    .as_str()
                    .is_some_and(|s| s == "main.phased" || s.starts_with("main.startPhased"));
            if !phased {
                continue;
            }
            let s = row["seconds"].as_f64().unwrap();
            // A runnable goroutine parked in time.Sleep or a channel
            // receive has been woken and waits for a P: the goroutine's
            // own clock, read after it runs again, counts that wait to
            // the phase it woke from.
            let in_frames = |prefix: &str| {
                row["frames"].as_array().unwrap().iter().any(|f| {
                    f["function"]
                        .as_str()
                        .is_some_and(|name| name.starts_with(prefix))
                })
            };
            match (row["state"].as_str().unwrap(), row["wait_reason"].as_str()) {
                ("runnable", _) if in_frames("time.Sleep") => sleep += s,
                ("runnable", _) if in_frames("runtime.chanrecv") => chan += s,
                ("running" | "runnable", _) => cpu += s,
                (_, Some("sleep")) => sleep += s,
                (_, Some("chan receive")) => chan += s,
                other => panic!("Go {version}: phased goroutine in {other:?}: {row}"),
            }
        }
        let ours_total = cpu + sleep + chan;
        assert!(
            json["samples"].as_u64().unwrap() >= 100,
            "Go {version}: {json}"
        );
        for (name, ours, truth) in [
            ("cpu", cpu, truth[0]),
            ("sleep", sleep, truth[1]),
            ("chan", chan, truth[2]),
        ] {
            let (ours, truth) = (ours / ours_total, truth / truth_total);
            assert!(
                (ours - truth).abs() <= 0.05,
                "Go {version}: {name} share {ours:.3} vs the goroutines' own {truth:.3}"
            );
        }
        let go = testkit::go_binary(version).unwrap();
        let top = Command::new(go)
            .args(["tool", "pprof", "-sample_index=waiting", "-top"])
            .arg(&profile)
            .output()
            .unwrap();
        assert!(
            top.status.success(),
            "Go {version}: {}",
            String::from_utf8_lossy(&top.stderr)
        );
        assert!(
            String::from_utf8_lossy(&top.stdout).contains("main.phased"),
            "Go {version}: {}",
            String::from_utf8_lossy(&top.stdout)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Values of `name{...}` series of pid `pid` by the value of `label`.
fn series_by(body: &str, name: &str, pid: u32, label: &str) -> BTreeMap<String, f64> {
    let pid_label = format!("pid=\"{pid}\"");
    let key = format!("{label}=\"");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&pid_label))
        .filter_map(|l| {
            let at = l.find(&key)? + key.len();
            let value = &l[at..at + l[at..].find('"')?];
            let number = l.rsplit(' ').next()?.parse().ok()?;
            Some((value.to_string(), number))
        })
        .collect()
}

#[test]
fn the_agent_exports_goroutines_by_state_and_creation_site() {
    if !require_root_or_skip("the_agent_exports_goroutines_by_state_and_creation_site") {
        return;
    }
    let binary = testkit::build_workload("1.27", "gstates", &BuildOptions::default()).unwrap();
    let mut child = Command::new(binary)
        .args(["-recv", "5", "-select", "3", "-sleep", "2", "-lock", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // runtime.NumGoroutine() at the quiescent point.
    let live: f64 = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
    let (agent, port) = crate::util::start_agent("200");
    let scraper = crate::util::Scraper::new(port);
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        let (body, _) = scraper.scrape_body("waiting for the target");
        if !series_by(&body, "goscope_goroutines_by_state", pid, "state").is_empty() {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} never exported goroutines"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let states = series_by(&body, "goscope_goroutines_by_state", pid, "state");
    assert_eq!(states.get("waiting"), Some(&14.0), "{states:?}");
    // main blocks in a read of stdin.
    assert_eq!(states.get("syscall"), Some(&1.0), "{states:?}");
    assert_eq!(
        states.values().sum::<f64>(),
        live,
        "{states:?} vs NumGoroutine {live}"
    );
    let sites = series_by(&body, "goscope_goroutines_by_creation_site", pid, "site");
    for (site, n) in [
        ("main.startRecv", 5.0),
        ("main.startLock", 4.0),
        ("main.startSelect", 3.0),
        ("main.startSleep", 2.0),
        ("[main goroutine]", 1.0),
        ("other", 0.0),
    ] {
        assert_eq!(sites.get(site), Some(&n), "{site}: {sites:?}");
    }
    writeln!(child.stdin.as_mut().unwrap(), "quit").unwrap();
    assert!(child.wait().unwrap().success());
    agent.interrupt().unwrap();
}

#[test]
fn doctor_names_a_leaking_site_and_not_churn() {
    if !require_root_or_skip("doctor_names_a_leaking_site_and_not_churn") {
        return;
    }
    let (report, truth_per_min) = observe_leaks(
        &["-leak", "50", "-churn", "200", "-recv", "5"],
        &["doctor", "--duration", "15", "--json"],
    );
    let suspects = report["goroutines"]["leak_suspects"].as_array().unwrap();
    assert_eq!(suspects.len(), 1, "{:#}", report["goroutines"]);
    let top = &suspects[0];
    assert!(
        top["blocking_frame"]
            .as_str()
            .unwrap()
            .starts_with("main.leakyHandler "),
        "{top}"
    );
    let growth = top["growth_per_min"].as_f64().unwrap();
    assert!(
        (growth - truth_per_min).abs() <= 0.10 * truth_per_min,
        "growth {growth:.0}/min vs the workload's {truth_per_min:.0}/min"
    );
    let verdicts = report["verdicts"].as_array().unwrap();
    assert!(
        verdicts.iter().any(|v| v["id"] == "goroutine_leak"
            && v["message"].as_str().unwrap().contains("main.leakyHandler")),
        "{verdicts:#?}"
    );

    let (report, _) = observe_leaks(
        &["-churn", "200", "-recv", "5"],
        &["doctor", "--duration", "8", "--json"],
    );
    assert_eq!(report["goroutines"]["leak_suspects"], serde_json::json!([]));
    assert!(report["goroutines"]["leak_dumps"].as_u64().unwrap() >= 5);
    assert!(
        !report["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == "goroutine_leak"),
        "{:#}",
        report["verdicts"]
    );
}

//! `goscope doctor` attached to real Go targets: figures against the
//! target's own runtime/metrics, and clean detachment however goscope ends.

use testkit::{Goscope, Target, require_root_or_skip};

use crate::util::{self, TestCgroup, cgo, goscope_json, hex_address, loadgen, read_process_memory};

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
/// instruction is back and the target
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
        let result = target.run_batch().unwrap();
        assert!(result.delta("/gc/cycles/total:gc-cycles").unwrap() > 0.0);
        assert!(target.is_running());
    }
    drop(original);
    assert!(target.quit().unwrap().success());
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

/// A target in a cpu cgroup with a 0.5 CPU quota and a 256 MiB memory
/// limit: doctor's throttled periods equal cpu.stat's delta over the window
/// (the target is idle at both ends), the quota and limit are reported, and
/// Go 1.22 (which ignores the quota) gets the GOMAXPROCS verdict. Without a
/// quota: no throttling and no verdict.
#[test]
fn cpu_quota_throttling_and_gomaxprocs_verdict() {
    if !require_root_or_skip("cpu_quota_throttling_and_gomaxprocs_verdict") {
        return;
    }
    let binary = loadgen("1.22", &cgo());
    let cgroup = TestCgroup::new(
        &format!("goscope-test-{}", std::process::id()),
        &[
            ("cpu", "cpu.cfs_period_us", "100000"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
            ("memory", "memory.limit_in_bytes", "268435456"),
        ],
    );
    let script = format!(
        "{}exec {} -work gc -scale 2",
        cgroup.enter(),
        binary.display()
    );
    let mut target =
        Target::start_command(std::process::Command::new("sh").arg("-c").arg(&script)).unwrap();
    let pid = target.pid.to_string();
    let mut goscope =
        Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
    goscope.wait_attached().unwrap();
    let before = cgroup.throttled_periods();
    target.run_batch().unwrap();
    let after = cgroup.throttled_periods();
    let report = doctor_json(&goscope.interrupt().unwrap());
    target.quit().unwrap();
    assert_eq!(report["cfs"]["quota_cpus"], 0.5);
    assert_eq!(report["gc"]["container_memory_limit_bytes"], 268_435_456u64);
    assert!(
        after > before,
        "the batch was not throttled ({before} -> {after})"
    );
    assert_eq!(
        report["cfs"]["throttled_periods"].as_u64(),
        Some(after - before)
    );
    let ids: Vec<&str> = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert!(ids.contains(&"gomaxprocs_over_quota"), "{ids:?}");

    let mut free = Target::start(&binary, &["-work", "gc"], &[]).unwrap();
    let pid = free.pid.to_string();
    let mut goscope =
        Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
    goscope.wait_attached().unwrap();
    free.run_batch().unwrap();
    let report = doctor_json(&goscope.interrupt().unwrap());
    free.quit().unwrap();
    assert!(report["cfs"]["quota_cpus"].is_null(), "{}", report["cfs"]);
    assert_eq!(report["cfs"]["throttled_periods"], 0);
    let ids: Vec<&str> = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"gomaxprocs_over_quota") && !ids.contains(&"cfs_throttling"),
        "{ids:?}"
    );
}

/// Sum of nonvoluntary_ctxt_switches over the process's threads.
fn involuntary_switches(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// The OS-thread view from sched tracepoints: involuntary switches agree
/// with the kernel's own per-thread counters (nonvoluntary_ctxt_switches)
/// over the window, and a run-queue latency distribution is reported.
#[test]
fn os_thread_view_agrees_with_the_kernels_counters() {
    if !require_root_or_skip("os_thread_view_agrees_with_the_kernels_counters") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    // Two CPU-hungry targets on two cores: plenty of preemption.
    let mut rival = Target::start(&binary, &["-work", "gc", "-scale", "6"], &[]).unwrap();
    let mut target = Target::start(&binary, &["-work", "mixed", "-scale", "2"], &[]).unwrap();
    let pid = target.pid.to_string();
    let before = involuntary_switches(target.pid);
    let mut goscope =
        Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
    goscope.wait_attached().unwrap();
    let rival_batch = std::thread::spawn(move || {
        rival.run_batch().unwrap();
        rival
    });
    target.run_batch().unwrap();
    let report = doctor_json(&goscope.interrupt().unwrap());
    let after = involuntary_switches(target.pid);
    rival_batch.join().unwrap().quit().unwrap();
    target.quit().unwrap();
    let truth = after - before;
    let ours = report["sched"]["involuntary_switches"]
        .as_u64()
        .unwrap_or_else(|| panic!("no thread view: {}", report["sources"]));
    assert!(truth >= 10, "the workload was barely preempted ({truth})");
    let tolerance = (truth as f64 * 0.10).max(5.0);
    assert!(
        (ours as f64 - truth as f64).abs() <= tolerance,
        "involuntary switches: goscope {ours} vs /proc nonvoluntary_ctxt_switches {truth}"
    );
    let runq = &report["sched"]["os_runq_latency_ns"];
    assert!(
        runq["count"].as_u64().unwrap() > 0
            && runq["p99"].as_f64().unwrap() >= runq["p50"].as_f64().unwrap()
    );
}

/// cgo latency: a C function that sleeps 200 µs, timed by the workload
/// itself from Go around each call and from C inside it. Each probed call
/// lies between the two, so their medians bracket the calls' median and
/// doctor's p50 (a fine bucket's upper bound, 1/16 of a power of two
/// wide) lies between them too, whatever the load: the call site named.
#[test]
fn cgo_latency_matches_the_workloads_own_timing() {
    if !require_root_or_skip("cgo_latency_matches_the_workloads_own_timing") {
        return;
    }
    for version in ["1.22", "1.27"] {
        let binary = loadgen(version, &cgo());
        let (report, truth) = testkit::observe::doctor_around_batch_with(
            &binary,
            &["-work", "cgo-slow"],
            &[],
            &["--overhead-budget", "off"],
        )
        .unwrap();
        let median = |calls: &[u64]| {
            let mut sorted = calls.to_vec();
            sorted.sort_unstable();
            sorted.get(sorted.len() / 2).copied().unwrap_or(0) as f64
        };
        let (inside, around) = (
            median(&truth.cgo_call_inside_ns),
            median(&truth.cgo_call_ns),
        );
        assert!(
            inside > 0.0 && around >= inside,
            "Go {version}: the workload's medians: {inside} ns inside, {around} ns around"
        );
        // The bucket's upper bound and the HDR histogram's precision.
        let between = |p50: f64| inside - 1_000.0 <= p50 && p50 <= around * 1.07 + 1_000.0;
        let got = report["cgo"]["latency_ns"]["p50"]
            .as_f64()
            .unwrap_or_else(|| panic!("{}", report["cgo"]));
        assert!(
            between(got),
            "Go {version}: cgo p50 {got} ns, the workload's median {inside} ns inside the call and {around} ns around it"
        );
        assert!(report["cgo"]["latency_ns"]["count"].as_u64().unwrap() >= 1000);
        let site = report["cgo"]["sites"][0]["function"]
            .as_str()
            .unwrap_or_default();
        assert!(
            site.contains("_Cfunc_cwait"),
            "Go {version}: top cgo site {site}"
        );
        // The site's own distribution agrees with the workload's timing too.
        let site_p50 = report["cgo"]["sites"][0]["latency_ns"]["p50"]
            .as_f64()
            .unwrap_or_else(|| panic!("{}", report["cgo"]["sites"][0]));
        assert!(
            between(site_p50),
            "Go {version}: site p50 {site_p50} ns, the workload's median {inside} ns inside the call and {around} ns around it"
        );
    }
}

/// Goroutine creation sites, from the goroutine table in memory (no
/// newproc probe): the function whose `go` statement created the batch's
/// goroutines is the top site, and its rate accounts for the runtime's own
/// count over the window (default overhead budget). tests/integration/
/// goroutines.rs checks shares and live goroutines by site.
#[test]
fn goroutine_creation_sites() {
    if !require_root_or_skip("goroutine_creation_sites") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let (report, truth) = testkit::observe::doctor_around_batch_with(
        &binary,
        &["-work", "goroutines", "-scale", "20"],
        &[],
        &[],
    )
    .unwrap();
    let goroutines = &report["goroutines"];
    assert_eq!(
        goroutines["creation_sites_source"], "goroutine_table",
        "{goroutines}"
    );
    let top = &goroutines["creation_sites"][0];
    assert_eq!(top["function"], "main.spawnGoroutines", "{goroutines}");
    assert!(
        top["position"]
            .as_str()
            .is_some_and(|p| p.contains("loadgen/work.go:")),
        "{goroutines}"
    );
    assert!(top["created_sampled"].as_u64().unwrap() > 0);
    let estimated = top["per_s"].as_f64().unwrap() * report["window_s"].as_f64().unwrap();
    let spawned = truth.goroutines_spawned as f64;
    assert!(
        (estimated - spawned).abs() <= spawned * 0.02,
        "main.spawnGoroutines: {estimated} estimated vs {spawned} spawned"
    );
}

/// Two goscopes on one target: the second notices the first (the observer
/// lock on the executable's inode) and takes half the overhead budget
/// instead of doubling the cost; the first keeps the whole budget.
#[test]
fn a_second_goscope_on_the_same_target_shares_the_budget() {
    if !require_root_or_skip("a_second_goscope_on_the_same_target_shares_the_budget") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let target = Target::start(&binary, &["-work", "idle"], &[]).unwrap();
    let pid = target.pid.to_string();
    let mut first = Goscope::start(&["doctor", "--pid", &pid, "--duration", "600"]).unwrap();
    first.wait_attached().unwrap();
    let mut second = Goscope::start(&["doctor", "--pid", &pid, "--duration", "600"]).unwrap();
    let shared = second
        .wait_for_stderr(|l| l.contains("another goscope") || l.starts_with("goscope: attached"))
        .unwrap();
    assert!(
        shared.contains("another goscope is observing")
            && shared.contains("half the overhead budget (0.5%)"),
        "{shared}"
    );
    // Another process of the same executable is not "the same target".
    let neighbour = Target::start(&binary, &["-work", "idle"], &[]).unwrap();
    let neighbour_pid = neighbour.pid.to_string();
    let mut third =
        Goscope::start(&["doctor", "--pid", &neighbour_pid, "--duration", "600"]).unwrap();
    third.wait_attached().unwrap();
    let third = third.interrupt().unwrap();
    assert!(third.status.success(), "{}", third.stderr);
    assert!(
        !third.stderr.contains("another goscope"),
        "{}",
        third.stderr
    );
    neighbour.quit().unwrap();
    let second = second.interrupt().unwrap();
    assert!(second.status.success(), "{}", second.stderr);
    let first = first.interrupt().unwrap();
    assert!(first.status.success(), "{}", first.stderr);
    assert!(
        !first.stderr.contains("another goscope"),
        "the first instance had the target alone: {}",
        first.stderr
    );
    target.quit().unwrap();
}

/// Production mode on a target calling C far too often for per-call
/// probes: doctor says the latency was not measured and why, and gives the
/// CPU in C by call site from the sampler instead (the `_Cfunc_` wrapper
/// names the C function).
#[test]
fn cgo_cpu_by_site_when_latency_probes_are_over_budget() {
    if !require_root_or_skip("cgo_cpu_by_site_when_latency_probes_are_over_budget") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let (report, _) = testkit::observe::doctor_around_batch_with(
        &binary,
        &["-work", "cgo", "-scale", "1500"],
        &[],
        &[],
    )
    .unwrap();
    let cgo = &report["cgo"];
    assert!(cgo["calls"].as_u64().unwrap() >= 1_000_000, "{cgo}");
    assert!(
        cgo["latency_ns"].is_null(),
        "millions of calls cannot be timed within 1%: {cgo}"
    );
    assert!(
        report["overhead"]["governor"]["cgo"]["state"] == "declined",
        "{}",
        report["overhead"]
    );
    let sites = cgo["cpu_sites"].as_array().unwrap();
    let top = sites
        .first()
        .and_then(|s| s["function"].as_str())
        .unwrap_or_else(|| panic!("no CPU-in-C sites: {cgo}"));
    assert!(
        top.contains("_Cfunc_cadd"),
        "top CPU-in-C site {top}: {cgo}"
    );
}

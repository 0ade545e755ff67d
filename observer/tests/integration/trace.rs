//! `goscope trace` against the target's own records of its GC cycles.
//! The STW slices are the runtime's phase times (work.tSweepTerm, tMark,
//! tMarkTerm, tEnd), so each is held to the same phases in the target's
//! gctrace line ("A+B+C ms clock", printed to two digits: the slice must
//! fall inside the printed digit). runtime.MemStats PauseNs/PauseEnd
//! (printed by loadgen on SIGUSR1 with LOADGEN_PAUSES=1) check the rest:
//! PauseNs starts when stopping begins, a little after the phase's
//! timestamp (later still when the OS runs another thread in between), so
//! the two STW slices contain it, held by the median over the window; and
//! every cycle ends within 100 µs of PauseEnd. PauseEnd is wall-clock unix
//! ns, the trace is CLOCK_MONOTONIC: the clocks are aligned on the first
//! cycle of the window (offset = PauseEnd - end of its mark termination
//! slice), then every later cycle is held to that offset. Every file goes
//! through `check_format` (the trace-event format's required fields, B/E
//! balanced per track, X with a duration, numeric counters); Perfetto's
//! trace processor does not install offline, so this checker stands in
//! for it.

use std::{
    collections::{BTreeMap, HashMap},
    io::Read as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use testkit::{Goscope, Target, require_root_or_skip};

use crate::util::{GC_PROBE_VERSIONS, TestCgroup, cgo, loadgen};

const PHASES: [&str; 3] = [
    "sweep termination (STW)",
    "concurrent mark",
    "mark termination (STW)",
];

fn out_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("goscope-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The file's text (gunzipped for .gz; a cut-short gzip decodes up to its
/// last flush).
fn read_text(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        let _ = flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut text);
        text
    } else {
        String::from_utf8(raw).unwrap()
    }
}

fn load(path: &Path) -> Vec<Value> {
    let text = read_text(path);
    assert!(
        text.ends_with("\n]\n"),
        "{} is not closed: ends {:?}",
        path.display(),
        &text[text.len().saturating_sub(80)..]
    );
    let events: Vec<Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    check_format(&events);
    events
}

/// The trace event format, as chrome://tracing and Perfetto read it.
fn check_format(events: &[Value]) {
    let mut open: HashMap<(i64, i64), Vec<String>> = HashMap::new();
    for e in events {
        let ph = e["ph"].as_str().unwrap_or_else(|| panic!("no ph: {e}"));
        assert!(e["name"].is_string(), "no name: {e}");
        assert!(e["pid"].is_i64(), "pid not an integer: {e}");
        assert!(e["tid"].is_i64(), "tid not an integer: {e}");
        if ph != "M" {
            assert!(
                e["ts"].as_f64().is_some_and(|t| t >= 0.0),
                "ts not a number: {e}"
            );
        }
        let track = (e["pid"].as_i64().unwrap(), e["tid"].as_i64().unwrap());
        let name = e["name"].as_str().unwrap().to_string();
        match ph {
            "X" => assert!(
                e["dur"].as_f64().is_some_and(|d| d >= 0.0),
                "X without a duration: {e}"
            ),
            "B" => open.entry(track).or_default().push(name),
            "E" => {
                let top = open.entry(track).or_default().pop();
                assert!(top.is_some(), "E without B on {track:?}: {e}");
            }
            "C" => {
                let args = e["args"].as_object().unwrap_or_else(|| panic!("{e}"));
                assert!(!args.is_empty(), "counter without values: {e}");
                assert!(
                    args.values().all(Value::is_number),
                    "counter value not numeric: {e}"
                );
            }
            "i" | "I" => {
                if let Some(s) = e.get("s") {
                    assert!(matches!(s.as_str(), Some("g" | "p" | "t")), "{e}");
                }
            }
            "M" => assert!(e["args"].is_object(), "metadata without args: {e}"),
            other => panic!("unexpected phase {other:?}: {e}"),
        }
    }
    for (track, names) in open {
        assert!(
            names.is_empty(),
            "unclosed B events on {track:?}: {names:?}"
        );
    }
}

fn ns(value: &Value) -> i128 {
    (value.as_f64().unwrap() * 1000.0).round() as i128
}

/// Slices named `name` by cycle: (start ns, duration ns).
fn phase(events: &[Value], name: &str) -> BTreeMap<u64, (i128, i128)> {
    events
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"] == name)
        .map(|e| {
            (
                e["args"]["cycle"].as_u64().unwrap(),
                (ns(&e["ts"]), ns(&e["dur"])),
            )
        })
        .collect()
}

/// The runtime's "ms clock" phases by cycle from its gctrace lines: for
/// each phase the printed text and the half-open ns range it stands for
/// (fmtNSAsMS truncates to two digits, at most three decimals; "0" is
/// under 1 µs).
fn gctrace_clock_phases(lines: &[String]) -> BTreeMap<u64, Vec<(String, i128, i128)>> {
    let mut cycles = BTreeMap::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("gc ") else {
            continue;
        };
        let Some((number, rest)) = rest.split_once(' ') else {
            continue;
        };
        let (Ok(number), Some((_, rest))) = (number.parse::<u64>(), rest.split_once(": ")) else {
            continue;
        };
        let Some((clock, _)) = rest.split_once(" ms clock") else {
            continue;
        };
        let phases: Vec<_> = clock.split('+').map(printed_ms_range).collect();
        assert_eq!(phases.len(), 3, "gctrace clock {clock:?} in {line:?}");
        cycles.insert(number, phases);
    }
    cycles
}

fn printed_ms_range(text: &str) -> (String, i128, i128) {
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len() as u32);
    let digits: i128 = text
        .replace('.', "")
        .parse()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let unit = 10i128.pow(6 - decimals);
    if digits == 0 {
        return (text.to_string(), 0, 1000);
    }
    (text.to_string(), digits * unit, (digits + 1) * unit)
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} event"))
}

/// Waits for a stderr line of the target starting with `prefix` (bounded).
fn wait_stderr(target: &Target, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = target
            .stderr_lines()
            .into_iter()
            .find(|l| l.starts_with(prefix))
        {
            return line;
        }
        assert!(Instant::now() < deadline, "no {prefix:?} line within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn trace_gc_pauses_match_the_targets_own_record() {
    if !require_root_or_skip("trace_gc_pauses_match_the_targets_own_record") {
        return;
    }
    for version in GC_PROBE_VERSIONS {
        let binary = loadgen(version, &cgo());
        let mut target = Target::start_capturing_stderr(
            &binary,
            // GOGC=400: some 20 cycles a second, a busy service's rate, where
            // the one-hit-per-cycle probe costs a small part of the budget
            // (at the default GOGC this workload collects 150 times a
            // second, which can use the whole 1% on a loaded host: the
            // governor then detaches the probe and cycles are missed,
            // as the file says).
            &["-work", "gc", "-scale", "12"],
            &[
                ("LOADGEN_PAUSES", "1"),
                ("GODEBUG", "gctrace=1"),
                ("GOGC", "400"),
            ],
        )
        .unwrap();
        let pid = target.pid.to_string();
        let path = out_path(&format!("pauses-{version}.json"));
        let mut goscope = Goscope::start(&[
            "trace",
            "--pid",
            &pid,
            "--duration",
            "600",
            "-o",
            path.to_str().unwrap(),
        ])
        .unwrap();
        goscope.wait_attached().unwrap();
        target.run_batch().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(target.pid as i32, libc::SIGUSR1) };
        let line = wait_stderr(&target, "pauses ");
        let ring: Value = serde_json::from_str(&line["pauses ".len()..]).unwrap();
        let finished = goscope.interrupt().unwrap();
        assert!(finished.status.success(), "{}", finished.stderr);
        let gctrace = gctrace_clock_phases(&target.stderr_lines());
        target.quit().unwrap();

        let events = load(&path);
        let first = event(&events, "goscope: trace started")["args"]["first_gc_cycle"]
            .as_u64()
            .unwrap();
        let last = ring["num_gc"].as_u64().unwrap();
        let truth: BTreeMap<u64, (i128, i128)> = ring["cycles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["cycle"].as_u64().unwrap(),
                    (
                        i128::from(c["pause_ns"].as_u64().unwrap()),
                        i128::from(c["pause_end_unix_ns"].as_u64().unwrap()),
                    ),
                )
            })
            .collect();
        let sweep = phase(&events, PHASES[0]);
        let mark = phase(&events, PHASES[1]);
        let term = phase(&events, PHASES[2]);
        assert!(
            last >= first + 10,
            "Go {version}: only {} cycles in the window",
            last + 1 - first
        );
        // Every cycle of the window, each with its three phases; if the
        // governor detached the probe (a loaded host), the cycles missing
        // are exactly those the file counts as missed.
        let ended = event(&events, "goscope: trace ended")["args"].clone();
        let detached = !ended["gc_probe_detached_at_us"].is_null();
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for cycle in first..=last {
            let slices = [&sweep, &mark, &term].map(|s| s.contains_key(&cycle));
            let named = events.iter().any(|e| e["name"] == format!("GC {cycle}"));
            if slices.iter().all(|&s| s) && named {
                present.push(cycle);
            } else {
                assert!(
                    slices.iter().all(|&s| !s) && !named,
                    "Go {version}: cycle {cycle} is partly there ({slices:?}, GC slice {named})"
                );
                missing.push(cycle);
            }
        }
        assert!(
            missing.is_empty() || detached,
            "Go {version}: cycles {missing:?} missing with the probe attached; {ended}; goscope said: {}",
            finished.stderr
        );
        assert!(
            missing.len() as u64 <= ended["gc_cycles_missed"].as_u64().unwrap(),
            "Go {version}: {} cycles missing, the file counts {} missed; {ended}; goscope said: {}",
            missing.len(),
            ended["gc_cycles_missed"],
            finished.stderr
        );
        assert!(
            present.len() >= 10,
            "Go {version}: only {} cycles to compare; {ended}; goscope said: {}",
            present.len(),
            finished.stderr
        );
        let first = present[0];
        let end = |cycle: u64| term[&cycle].0 + term[&cycle].1;
        let offset = truth[&first].1 - end(first);
        let mut pause_excess = Vec::new();
        let mut worst_end = 0i128;
        for &cycle in &present {
            let (pause_ns, pause_end) = truth[&cycle];
            let printed = gctrace
                .get(&cycle)
                .unwrap_or_else(|| panic!("Go {version}: no gctrace line for gc {cycle}"));
            for (name, slices, (text, low, high)) in [
                (PHASES[0], &sweep, &printed[0]),
                (PHASES[2], &term, &printed[2]),
            ] {
                let traced = slices[&cycle].1;
                assert!(
                    *low <= traced && traced < *high,
                    "Go {version}: cycle {cycle}: {name:?} slice {traced} ns, gctrace {text} ms"
                );
            }
            let traced = sweep[&cycle].1 + term[&cycle].1;
            pause_excess.push(traced - pause_ns);
            let drift = end(cycle) + offset - pause_end;
            assert!(
                drift.abs() <= 100_000,
                "Go {version}: cycle {cycle} ends {drift} ns from PauseEnd after aligning on cycle {first}"
            );
            worst_end = worst_end.max(drift.abs());
        }
        check_assists(&events, version, &sweep, &term);
        pause_excess.sort_unstable();
        let median_excess = pause_excess[pause_excess.len() / 2];
        assert!(
            (0..=20_000).contains(&median_excess),
            "Go {version}: STW slices exceed PauseNs by a median {median_excess} ns (all: {pause_excess:?})"
        );
        eprintln!(
            "Go {version}: {} cycles match gctrace ({} missed, probe detached: {detached}); STW slices exceed PauseNs by a median {median_excess} ns; worst end drift {worst_end} ns",
            present.len(),
            missing.len()
        );
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn trace_has_every_track_for_a_throttled_target() {
    if !require_root_or_skip("trace_has_every_track_for_a_throttled_target") {
        return;
    }
    let binary = loadgen("1.22", &cgo());
    let cgroup = TestCgroup::new(
        &format!("goscope-trace-{}", std::process::id()),
        &[
            ("cpu", "cpu.cfs_period_us", "100000"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
        ],
    );
    // GOGC=400: the GC rate of a busy service, so the GC-cycle probe
    // leaves the budget to the other sets (see the test above).
    // GOMAXPROCS=1: one P against the 0.5-CPU quota, throttled every
    // period; with more Ps, each throttle switches every thread and the
    // GC workers churn, and on a loaded host the thread tracepoints then
    // cost the target more than the budget (they are detached, as the
    // file says).
    let script = format!(
        "{}GOMAXPROCS=1 GOGC=400 exec {} -work gc -scale 12",
        cgroup.enter(),
        binary.display()
    );
    let mut target =
        Target::start_command(std::process::Command::new("sh").arg("-c").arg(&script)).unwrap();
    let pid = target.pid.to_string();
    let path = out_path("tracks.json.gz");
    // No budget: this test is about the tracks and their clock. The
    // tracepoints' cost is charged by the host's switches times the
    // target's share of them, and a throttled target switches every thread
    // each period: on a loaded CI host that was once projected at 6.5% of
    // its CPU, and the governor rightly detached the tracks. The governor
    // itself is tested at the default budget above and in the benchmarks.
    let mut goscope = Goscope::start(&[
        "trace",
        "--pid",
        &pid,
        "--duration",
        "600",
        "--overhead-budget",
        "off",
        "-o",
        path.to_str().unwrap(),
    ])
    .unwrap();
    goscope.wait_attached().unwrap();
    let (before, before_us) = (cgroup.throttled_periods(), cgroup.throttled_usec());
    target.run_batch().unwrap();
    let (after, after_us) = (cgroup.throttled_periods(), cgroup.throttled_usec());
    let finished = goscope.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    target.quit().unwrap();

    let events = load(&path);
    let count = |ph: &str, name: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == ph && e["name"] == name)
            .count()
    };
    for name in PHASES.iter().chain(&["throttled"]) {
        assert!(count("X", name) > 0, "no {name:?} slices");
    }
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "X" && e["name"].as_str().unwrap().starts_with("GC ")),
        "no GC cycle slices"
    );
    for name in ["heap live", "heap goal", "goroutines", "goroutines created"] {
        assert!(count("C", name) > 10, "too few {name:?} counters");
    }
    // Throttled periods: the cpu.stat delta over the batch, within the
    // one period whose time the kernel adds after the trace's last reading.
    let periods: u64 = events
        .iter()
        .filter(|e| e["name"] == "throttled")
        .map(|e| e["args"]["periods"].as_u64().unwrap())
        .sum();
    let delta = after - before;
    assert!(delta > 0, "the target was not throttled");
    assert!(
        periods <= delta + 1 && periods + 1 >= delta,
        "trace has {periods} throttled periods, cpu.stat moved by {delta}"
    );
    let tracks = event(&events, "goscope: trace started")["args"]["throttling"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(tracks.contains("polled every 10 ms"), "{tracks}");
    check_threads_against_throttling(&events, target_pid(&pid), &finished.stderr);
    // Their time: what cpu.stat added over the batch, within one period's
    // worth (a throttle that straddles a reading of the test's or the
    // trace's own) and the rounding of throttled_usec.
    let traced_ns: u64 = events
        .iter()
        .filter(|e| e["name"] == "throttled")
        .map(|e| e["args"]["throttled_ns"].as_u64().unwrap())
        .sum();
    let stat_ns = (after_us - before_us) * 1000;
    assert!(
        traced_ns.abs_diff(stat_ns) <= 100_000_000 + stat_ns / 20,
        "trace's throttled slices hold {traced_ns} ns, cpu.stat added {stat_ns} ns"
    );
    let _ = std::fs::remove_file(&path);
}

/// Mark assists: on goroutine tracks, each begun inside a GC cycle's
/// stop-the-world edges, from its sweep termination's start to its mark
/// termination's end, on the trace's one clock. The runtime enables
/// assists while the world is stopped before mark and disables them while
/// it is stopped at mark termination, so this holds exactly; the mark
/// phase's own edges (tMark, tMarkTerm) are stamped while other Ps may
/// still run, so an assist can begin a moment outside them. Except for the
/// runtime's own race, below.
fn check_assists(
    events: &[Value],
    version: &str,
    sweep: &BTreeMap<u64, (i128, i128)>,
    term: &BTreeMap<u64, (i128, i128)>,
) {
    let ended = &event(events, "goscope: trace ended")["args"];
    let summary = &ended["mark_assists"];
    assert!(
        summary.is_object(),
        "Go {version}: no mark-assist summary: {ended}"
    );
    let assists: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["ph"] == "X"
                && e["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("mark assist"))
        })
        .collect();
    assert!(
        !assists.is_empty(),
        "Go {version}: no mark-assist slices ({summary})"
    );
    let cycles: Vec<(i128, i128)> = sweep
        .iter()
        .filter_map(|(cycle, &(from, _))| term.get(cycle).map(|&(at, dur)| (from, at + dur)))
        .collect();
    let mut raced = 0;
    for slice in &assists {
        let (start, dur) = (ns(&slice["ts"]), ns(&slice["dur"]));
        if !cycles
            .iter()
            .any(|&(from, to)| from <= start && start <= to)
        {
            // The runtime's own race (gcAssistAlloc1 says so): a goroutine
            // that saw assists enabled and was preempted at gcAssistAlloc's
            // prologue for mark termination enters it after the cycle, and
            // returns at once. After a cycle, and short: nothing else.
            assert!(
                cycles.iter().any(|&(_, to)| to < start) && dur <= 100_000,
                "Go {version}: an assist begins at {start} ns and lasts {dur} ns, outside every GC cycle's stop-the-world edges: {slice}"
            );
            raced += 1;
        }
        let goid = slice["args"]["goid"].as_u64().unwrap();
        let tid = slice["tid"].as_i64().unwrap();
        assert!(goid > 0, "Go {version}: assist without a goid: {slice}");
        assert!(
            events.iter().any(|e| e["ph"] == "M"
                && e["name"] == "thread_name"
                && e["tid"] == tid
                && e["args"]["name"] == format!("goroutine {goid} (mark assists)")),
            "Go {version}: no track name for goroutine {goid}"
        );
    }
    assert!(
        raced * 4 <= assists.len(),
        "Go {version}: {raced} of {} assists begin after their cycle",
        assists.len()
    );
    eprintln!(
        "Go {version}: {} mark-assist slices inside GC cycles, {raced} entered just after one ({summary})",
        assists.len() - raced
    );
}

fn target_pid(pid: &str) -> i64 {
    pid.parse().unwrap()
}

/// Merged [start, end) ns intervals.
fn union(mut spans: Vec<(i128, i128)>) -> Vec<(i128, i128)> {
    spans.sort_unstable();
    let mut merged: Vec<(i128, i128)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Thread tracks: every state is there, each of the target's tracks has a
/// name, and they share a clock with the throttled slices. A throttled
/// slice names the cpu.stat reading before the one that saw its time: the
/// period was unthrottled between the two. The target's threads resume
/// running (after a gap of at least 1 ms with none of them on a CPU) after
/// that unthrottle and before they can be throttled again, so, for every
/// slice, between that earlier reading and the next slice's end; load
/// delays a wake-up or a reading, never moves either bound. And the clocks
/// agree closely: by the median, the threads resume by the reading that
/// saw their time, give or take 5 ms. Where the slice begins is not
/// checked: cgroup v2 adds each CPU's throttled time to throttled_usec, so
/// a slice can be longer than the wall time the threads were held back.
fn check_threads_against_throttling(events: &[Value], pid: i64, stderr: &str) {
    let sched: Vec<&Value> = events
        .iter()
        .filter(|e| e["cat"] == "sched" && e["ph"] == "X" && e["pid"] == pid)
        .collect();
    for name in [
        "running",
        "runnable (preempted)",
        "runnable (woken)",
        "sleeping",
    ] {
        assert!(
            sched.iter().any(|e| e["name"] == name),
            "no {name:?} thread slices"
        );
    }
    let tids: std::collections::BTreeSet<i64> =
        sched.iter().map(|e| e["tid"].as_i64().unwrap()).collect();
    assert!(tids.len() >= 2, "thread tracks for {tids:?} only");
    for tid in &tids {
        assert!(
            events.iter().any(|e| e["ph"] == "M"
                && e["name"] == "thread_name"
                && e["tid"] == *tid
                && e["args"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("thread {tid}")))),
            "thread {tid} has no track name"
        );
    }
    let ended = &event(events, "goscope: trace ended")["args"];
    assert!(
        ended["threads_detached_at_us"].is_null(),
        "thread tracks were detached: {ended}; goscope said: {stderr}"
    );
    let running = union(
        sched
            .iter()
            .filter(|e| e["name"] == "running")
            .map(|e| (ns(&e["ts"]), ns(&e["ts"]) + ns(&e["dur"])))
            .collect(),
    );
    // When the threads resumed: a running span after at least 1 ms of none.
    let resumed: Vec<i128> = running
        .windows(2)
        .filter(|w| w[1].0 - w[0].1 >= 1_000_000)
        .map(|w| w[1].0)
        .collect();
    let (first_run, last_run) = (running[0].0, running[running.len() - 1].1);
    // The readings that saw throttled time: the slices of one reading
    // name the same reading before it. (when it began, when it ended,
    // periods, throttled ns)
    let mut readings: BTreeMap<i128, (i128, u64, u64)> = BTreeMap::new();
    for slice in events
        .iter()
        .filter(|e| e["name"] == "throttled" && e["ph"] == "X")
    {
        let args = &slice["args"];
        let after = ns(&args["unthrottled_after_us"]);
        let end = ns(&slice["ts"]) + ns(&slice["dur"]);
        let reading = readings.entry(after).or_insert((end, 0, 0));
        reading.0 = reading.0.max(end);
        reading.1 += args["periods"].as_u64().unwrap();
        reading.2 += args["throttled_ns"].as_u64().unwrap();
    }
    let readings: Vec<(i128, i128, u64, u64)> = readings
        .into_iter()
        .map(|(after, (end, periods, throttled))| (after, end, periods, throttled))
        .collect();
    let mut late_by = Vec::new();
    for (i, &(after, end, periods, throttled)) in readings.iter().enumerate() {
        assert!(
            after < end,
            "a reading ending at {end} names the one before it at {after}"
        );
        // Periods throttled inside the trace, held back long enough to
        // leave a gap.
        if periods == 0 || throttled < 5_000_000 {
            continue;
        }
        if end < first_run + 100_000_000 || end > last_run {
            continue; // before the tracks had a period to show, or after
        }
        // The next throttle: the end of the next reading with a period.
        let before = readings[i + 1..]
            .iter()
            .find(|r| r.2 > 0)
            .map_or(i128::MAX, |r| r.1);
        let Some(&resumed_at) = resumed.iter().find(|&&r| r >= after) else {
            panic!(
                "the threads never resumed after the throttle seen at {end} (unthrottled after {after})"
            );
        };
        assert!(
            resumed_at <= before,
            "no resumption between the reading at {after} before a throttled slice's end at {end} and the next throttle's reading at {before}; the first after is at {resumed_at}"
        );
        late_by.push(resumed_at - end);
    }
    assert!(
        late_by.len() >= 3,
        "only {} throttled slices checked",
        late_by.len()
    );
    late_by.sort_unstable();
    let median = late_by[late_by.len() / 2];
    assert!(
        median <= 5_000_000,
        "the threads resume a median {median} ns after the reading that saw their unthrottle (each: {late_by:?})"
    );
    eprintln!(
        "{} throttled slices: each followed by a resumption in its bracket; median resumption {median} ns after the reading",
        late_by.len()
    );
}

#[test]
fn trace_of_a_target_that_exits_is_valid_and_closed() {
    if !require_root_or_skip("trace_of_a_target_that_exits_is_valid_and_closed") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let mut target = Target::start(&binary, &["-work", "gc"], &[]).unwrap();
    let pid = target.pid.to_string();
    let path = out_path("exits.json");
    let killed_path = out_path("killed.json");
    // A small cap: the counters (every 10 ms) overflow it.
    let mut goscope = Goscope::start(&[
        "trace",
        "--pid",
        &pid,
        "--duration",
        "600",
        "--max-events-per-sec",
        "60",
        "-o",
        path.to_str().unwrap(),
    ])
    .unwrap();
    goscope.wait_attached().unwrap();
    // A second one, SIGKILLed mid-trace: its file is a prefix that loads.
    let mut killed = Goscope::start(&[
        "trace",
        "--pid",
        &pid,
        "--duration",
        "600",
        "-o",
        killed_path.to_str().unwrap(),
    ])
    .unwrap();
    killed.wait_attached().unwrap();
    target.run_batch().unwrap();
    let killed_stderr = killed.kill().unwrap().stderr;
    target.quit().unwrap();
    let finished = goscope.wait().unwrap();
    assert_eq!(finished.status.code(), Some(3), "{}", finished.stderr);

    let events = load(&path);
    let closing = events.last().unwrap();
    assert_eq!(closing["name"], "goscope: trace ended");
    assert_eq!(closing["args"]["why"], "TargetExited");
    let dropped: u64 = closing["args"]["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(dropped > 0, "the cap of 60/s dropped nothing");
    assert!(
        events
            .iter()
            .any(|e| e["name"] == "goscope: events dropped"),
        "no drop note"
    );
    // No second holds more events than the cap (notes and metadata apart).
    let origin = event(&events, "goscope: trace started")["ts"]
        .as_f64()
        .unwrap();
    let mut per_second: BTreeMap<i64, u32> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e["ph"] != "M" && e["cat"] != "goscope")
    {
        let second = ((e["ts"].as_f64().unwrap() - origin) / 1e6)
            .floor()
            .max(0.0) as i64;
        *per_second.entry(second).or_default() += 1;
    }
    assert!(
        per_second.values().all(|&n| n <= 60),
        "over the cap: {per_second:?}"
    );

    // The SIGKILLed file: drop the last (possibly partial) line, close the
    // array, and it parses and checks.
    let text = read_text(&killed_path);
    assert!(text.starts_with("[\n"), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    let complete = lines[..lines.len() - 1]
        .join("\n")
        .trim_end_matches(',')
        .to_string();
    let prefix: Vec<Value> = serde_json::from_str(&format!("{complete}\n]"))
        .unwrap_or_else(|e| panic!("the killed trace's prefix does not parse: {e}"));
    check_format(&prefix);
    assert!(
        prefix.iter().any(|e| e["name"] == "mark termination (STW)"),
        "the killed trace holds no GC cycle: {}",
        killed_stderr
    );
    // Only this test's files: the other trace tests share the directory
    // and may be running.
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&killed_path);
}

/// A long window on a terminal shows the live status line (elapsed of
/// total and the cycles so far, redrawn in place and cleared at the end);
/// with stderr on a pipe there is none. The terminal is util-linux
/// `script`'s pty.
#[test]
fn a_terminal_gets_a_live_status_line_and_a_pipe_does_not() {
    if !require_root_or_skip("a_terminal_gets_a_live_status_line_and_a_pipe_does_not") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let target =
        Target::start(&binary, &["-work", "gc", "-background"], &[("GOGC", "400")]).unwrap();
    let pid = target.pid.to_string();
    let path = out_path("status.json");
    let goscope = testkit::goscope_binary();
    let command = format!(
        "{} trace --pid {pid} --duration 3 -o {}",
        goscope.display(),
        path.display()
    );
    let on_terminal = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .output()
        .unwrap();
    assert!(on_terminal.status.success(), "{on_terminal:?}");
    let shown = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(
        shown.contains("\r\x1b[2Kgoscope: ")
            && shown.contains(" of 3 s; ")
            && shown.contains("GC cycles"),
        "no live status on a terminal: {shown:?}"
    );
    assert!(
        shown.contains("\r\x1b[2Kgoscope: wrote"),
        "the status line is not cleared before the summary: {shown:?}"
    );
    let piped = testkit::goscope::run(&[
        "trace",
        "--pid",
        &pid,
        "--duration",
        "3",
        "-o",
        path.to_str().unwrap(),
    ])
    .unwrap();
    assert!(piped.status.success(), "{}", piped.stderr);
    assert!(
        !piped.stderr.contains('\x1b') && !piped.stderr.contains(" of 3 s"),
        "a status line on a pipe: {:?}",
        piped.stderr
    );
    drop(target); // -background: killed
    let _ = std::fs::remove_file(&path);
}

/// cgo call slices against the workload's own timing of each call
/// (cgo-slow: 1000 calls of a C function that sleeps 200 µs, each timed
/// from Go with time.Now/time.Since around the call and by the C function
/// itself with clock_gettime inside it). The probes are attached before
/// the batch (goscope announces "attached" after they are) and a goroutine
/// making cgo calls holds its thread, so the slices, in time order, are
/// the batch's calls in order: the first N of them, N = all 1000 while the
/// probes stay attached. Each slice (cgocall's entry to its RET) lies
/// inside the Go timing around `C.cwait` and holds C's own timing inside
/// it, so its duration is between the two, call by call.
///
/// Two windows over one target. Unbudgeted: a C call that sleeps costs
/// the target a few µs of CPU and the two probe traps ~10 µs each, more
/// than the target's own CPU, so no percentage budget keeps them attached
/// over a sleeping workload; this window checks every call. At the
/// default budget (as users run it) the governor detaches them: the file
/// says when and the fraction attached, and the slices it holds are
/// exactly the calls made until then.
#[test]
fn trace_cgo_slices_match_the_targets_own_timing() {
    if !require_root_or_skip("trace_cgo_slices_match_the_targets_own_timing") {
        return;
    }
    for version in ["1.22", "1.27"] {
        let binary = loadgen(version, &cgo());
        let mut target = Target::start(&binary, &["-work", "cgo-slow"], &[]).unwrap();
        for (budget, name) in [(Some("off"), "unbudgeted"), (None, "default budget")] {
            let path = out_path(&format!("cgo-{version}-{}.json", budget.unwrap_or("1")));
            let pid = target.pid.to_string();
            let mut args = vec![
                "trace",
                "--pid",
                &pid,
                "--duration",
                "600",
                "-o",
                path.to_str().unwrap(),
            ];
            if let Some(budget) = budget {
                args.extend(["--overhead-budget", budget]);
            }
            let mut goscope = Goscope::start(&args).unwrap();
            goscope.wait_attached().unwrap();
            let truth = target.run_batch().unwrap();
            let finished = goscope.interrupt().unwrap();
            assert!(finished.status.success(), "{}", finished.stderr);
            let events = load(&path);
            let context = format!("Go {version}, {name}");
            check_cgo(
                &events,
                &truth.cgo_call_ns,
                &truth.cgo_call_inside_ns,
                budget.is_some(),
                &context,
                &finished.stderr,
            );
            let _ = std::fs::remove_file(&path);
        }
        target.quit().unwrap();
    }
}

/// Checks the cgo slices of one window against the calls the target timed
/// (see the test above).
fn check_cgo(
    events: &[Value],
    around: &[u64],
    inside: &[u64],
    unbudgeted: bool,
    context: &str,
    stderr: &str,
) {
    const CGO_TRACK_BASE: i64 = 1 << 29;
    assert!(
        around.len() == 1000 && inside.len() == 1000,
        "{context}: the target timed {} calls around and {} inside",
        around.len(),
        inside.len()
    );
    let calls = around;
    let started = event(events, "goscope: trace started");
    let ended = event(events, "goscope: trace ended");
    let summary = &ended["args"]["cgo_calls"];
    assert!(
        summary.is_object(),
        "{context}: no cgo summary ({}); goscope said: {stderr}",
        started["args"]["cgo_calls"]
    );
    let mut slices: Vec<&Value> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"] == "cgo call")
        .collect();
    slices.sort_by_key(|e| ns(&e["ts"]));
    let detached_at = ended["args"]["cgo_calls_detached_at_us"]
        .as_f64()
        .map(|us| (us * 1000.0).round() as i128);
    let fraction = summary["probes_attached_fraction"].as_f64().unwrap();
    if unbudgeted {
        assert!(
            detached_at.is_none(),
            "{context}: detached without a budget: {summary}; goscope said: {stderr}"
        );
    }
    match detached_at {
        None => assert_eq!(
            slices.len(),
            calls.len(),
            "{context}: attached all along ({summary}), {} slices for {} calls",
            slices.len(),
            calls.len()
        ),
        Some(at) => {
            // The file and goscope's stderr both say so.
            assert!(
                fraction < 1.0,
                "{context}: detached, yet attached fraction {fraction}"
            );
            assert!(
                stderr.contains("the cgo probes would overspend the overhead budget"),
                "{context}: {stderr}"
            );
            assert!(
                slices.len() <= calls.len(),
                "{context}: {} slices",
                slices.len()
            );
            // Attached from before the trace began until the detach, of
            // the whole window.
            let (from, to) = (ns(&started["ts"]), ns(&ended["ts"]));
            let most = (at - from) as f64 / (to - from) as f64;
            assert!(
                fraction <= most + 0.01,
                "{context}: attached fraction {fraction}, detached {most:.3} of the way through"
            );
            if let Some(last) = slices.last() {
                let end = ns(&last["ts"]) + ns(&last["dur"]);
                assert!(
                    end <= at,
                    "{context}: a slice ends at {end}, after the detach at {at}"
                );
            }
        }
    }
    assert_eq!(
        summary["calls"].as_u64().unwrap(),
        slices.len() as u64,
        "{context}: {summary}"
    );
    assert_eq!(
        summary["slices_dropped_over_cap"], 0,
        "{context}: {summary}"
    );
    // Inside the trace window, on named per-thread cgo tracks.
    let (from, to) = (ns(&started["ts"]), ns(&ended["ts"]));
    for slice in &slices {
        let (start, end) = (ns(&slice["ts"]), ns(&slice["ts"]) + ns(&slice["dur"]));
        assert!(
            from <= start && end <= to,
            "{context}: outside the window [{from}, {to}]: {slice}"
        );
        let thread = slice["args"]["thread"].as_i64().unwrap();
        assert_eq!(
            slice["tid"].as_i64().unwrap(),
            CGO_TRACK_BASE + thread,
            "{slice}"
        );
        assert!(
            slice["args"]["goid"].as_u64().unwrap() > 0,
            "{context}: no goid: {slice}"
        );
        assert_eq!(
            slice["args"]["duration_ns"].as_i64().map(i128::from),
            Some(ns(&slice["dur"]))
        );
    }
    let threads: std::collections::BTreeSet<i64> = slices
        .iter()
        .map(|s| s["args"]["thread"].as_i64().unwrap())
        .collect();
    for thread in &threads {
        assert!(
            events.iter().any(|e| e["ph"] == "M"
                && e["name"] == "thread_name"
                && e["tid"].as_i64() == Some(CGO_TRACK_BASE + thread)
                && e["args"]["name"] == format!("cgo calls (thread {thread})")),
            "{context}: no track name for thread {thread}'s cgo calls"
        );
    }
    if unbudgeted {
        assert!(slices.len() >= 1000, "{context}");
    }
    if slices.is_empty() {
        eprintln!("{context}: no cgo slices before the detach ({summary})");
        return;
    }
    // Call by call: the i-th slice is the i-th call the target timed, and
    // lies between the target's two clocks: C's own inside the call (the
    // probes fire before and after it) and Go's around it (they fire
    // inside it). Both are CLOCK_MONOTONIC, the probes' clock, so this
    // holds on a loaded host too: a preempted thread lengthens the outer
    // bracket, never the inner one.
    let slack_ns = 1_000;
    let mut traced = Vec::new();
    for (i, ((slice, &around), &inside)) in slices.iter().zip(around).zip(inside).enumerate() {
        let dur = ns(&slice["dur"]);
        let (around, inside) = (i128::from(around), i128::from(inside));
        assert!(
            dur <= around + slack_ns,
            "{context}: call {i}: slice {dur} ns, longer than the target's own {around} ns around the call"
        );
        assert!(
            inside <= dur + slack_ns,
            "{context}: call {i}: slice {dur} ns, shorter than the C function's own {inside} ns inside the call"
        );
        traced.push(dur);
    }
    let n = traced.len();
    traced.sort_unstable();
    let median_of = |calls: &[u64]| {
        let mut sorted: Vec<i128> = calls[..n].iter().map(|&c| i128::from(c)).collect();
        sorted.sort_unstable();
        sorted[n / 2]
    };
    let (median, around_median, inside_median) =
        (traced[n / 2], median_of(around), median_of(inside));
    eprintln!(
        "{context}: {n} cgo slices for {} calls (attached fraction {fraction:.3}, detached: {}); median {median} ns, the target's {inside_median} ns inside and {around_median} ns around the call; {} thread tracks",
        calls.len(),
        detached_at.is_some(),
        threads.len()
    );
}

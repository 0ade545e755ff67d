//! Goroutines from the runtime's goroutine table (runtime::goroutines),
//! read from memory with no probe, against workloads/spawner: two `go`
//! statements (main.startShort, main.startLong) creating goroutines at 4:1,
//! the first's living microseconds and the second's 100 ms, and a
//! quiescent point at which the target holds a number of goroutines of
//! each site that it announces. doctor's creation-site shares (default
//! overhead budget) must be within 3 points of 80/20, live goroutines by
//! creation site exact, on Go 1.22 and 1.27 and a stripped 1.27 build.
//! Reading another process's memory needs root.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use goscope::{
    runtime::{
        GlobalsSource, LayoutSource, RuntimeLayout, RuntimeSnapshot,
        goroutines::{GoStatus, GoroutineReader, SystemGoroutines, live_by_gopc, site_of},
    },
    symbols::{SourceSymbolizer, Symbolizer},
    target::TargetProcess,
};
use serde_json::Value;
use testkit::{BuildOptions, Goscope, require_root_or_skip};

const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// The builds checked: (Go version, stripped).
const BUILDS: &[(&str, bool)] = &[("1.22", false), ("1.27", false), ("1.27", true)];

fn spawner(version: &str, stripped: bool) -> PathBuf {
    let options = BuildOptions {
        ldflags: stripped.then(|| "-s -w".to_string()),
        ..Default::default()
    };
    testkit::build_workload(version, "spawner", &options)
        .unwrap_or_else(|e| panic!("building spawner with Go {version}: {e:#}"))
}

fn what(version: &str, stripped: bool) -> String {
    format!("Go {version}{}", if stripped { " stripped" } else { "" })
}

/// A running workloads/spawner.
struct Spawner {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    pid: u32,
}

impl Spawner {
    fn start(binary: &PathBuf) -> Self {
        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut spawner = Self {
            child,
            stdin,
            lines,
            pid: 0,
        };
        let ready = spawner.wait_line("ready ");
        spawner.pid = ready.split_whitespace().nth(1).unwrap().parse().unwrap();
        spawner
    }

    fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(e) => panic!("spawner gave no {prefix:?} line: {e}"),
            }
        }
    }

    /// Sends a command and waits for the line starting with `reply`;
    /// returns its `key=value` fields.
    fn command(&mut self, command: &str, reply: &str) -> HashMap<String, u64> {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let line = self.wait_line(reply);
        line.split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The entry of `list` whose function is `function`.
fn site<'a>(list: &'a Value, function: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|s| s["function"] == function)
        .unwrap_or_else(|| panic!("no site {function} in {list:#}"))
}

#[test]
fn creation_site_shares_follow_the_go_statements() {
    if !require_root_or_skip("creation_site_shares_follow_the_go_statements") {
        return;
    }
    for &(version, stripped) in BUILDS {
        let what = what(version, stripped);
        let mut target = Spawner::start(&spawner(version, stripped));
        let pid = target.pid.to_string();
        let mut goscope =
            Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"]).unwrap();
        goscope.wait_attached().unwrap();
        let truth = target.command("churn 4", "churned ");
        let finished = goscope.interrupt().unwrap();
        assert!(
            finished.status.success(),
            "{what}: doctor failed: {}",
            finished.stderr
        );
        let report: Value = serde_json::from_str(&finished.stdout).unwrap();
        let g = &report["goroutines"];
        assert_eq!(
            g["creation_sites_source"], "goroutine_table",
            "{what}: {g:#}"
        );
        assert_eq!(g["creation_sites_skipped"], Value::Null, "{what}: {g:#}");
        assert_eq!(g["creation_sites_sampled_fraction"], 1.0, "{what}");
        let (short, long) = (truth["short"] as f64, truth["long"] as f64);
        let sites = &g["creation_sites"];
        let share_short = site(sites, "main.startShort")["share"].as_f64().unwrap();
        let share_long = site(sites, "main.startLong")["share"].as_f64().unwrap();
        let covered = g["creation_sites_covered_fraction"].as_f64().unwrap();
        let long_seen = site(sites, "main.startLong")["created_sampled"]
            .as_u64()
            .unwrap();
        eprintln!(
            "{what}: created {} (target: {short} short, {long} long); shares short {:.2}% long {:.2}% (target {:.2}%/{:.2}%); covered {:.1}%, long goroutines seen {long_seen}, {} readings",
            g["created"],
            share_short * 100.0,
            share_long * 100.0,
            short / (short + long) * 100.0,
            long / (short + long) * 100.0,
            covered * 100.0,
            g["creation_sites_readings"],
        );
        assert!(
            (share_short - 0.8).abs() <= 0.03 && (share_long - 0.2).abs() <= 0.03,
            "{what}: shares {share_short} / {share_long}, expected 0.8 / 0.2: {g:#}"
        );
        // The goroutines living 100 ms outlive the reading interval: every
        // one of them is seen. goscope's window contains the batch, so a
        // goroutine started at the batch's edge (before the target's own
        // count begins) may be seen too: at most 0.5% (or 2) more.
        assert!(
            long_seen as f64 >= 0.95 * long && long_seen as f64 <= long + (0.005 * long).max(2.0),
            "{what}: {long_seen} of {long} long-lived goroutines seen"
        );
        assert!(covered > 0.0 && covered <= 1.0, "{what}: covered {covered}");
        // The `go` statements' positions.
        for function in ["main.startShort", "main.startLong"] {
            let position = site(sites, function)["position"].as_str().unwrap();
            assert!(
                position.contains("spawner/main.go:"),
                "{what}: {function} at {position:?}"
            );
        }
        // The runtime's own created count is what the sites share.
        let per_s: f64 = sites
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["per_s"].as_f64().unwrap())
            .sum();
        let created_per_s = g["created_per_s"].as_f64().unwrap();
        assert!(
            (per_s - created_per_s).abs() <= 0.001 * created_per_s,
            "{what}: sites sum to {per_s}/s, created {created_per_s}/s"
        );
    }
}

#[test]
fn live_goroutines_by_creation_site_are_exact_at_a_quiescent_point() {
    if !require_root_or_skip("live_goroutines_by_creation_site_are_exact_at_a_quiescent_point") {
        return;
    }
    for &(version, stripped) in BUILDS {
        let what = what(version, stripped);
        let mut target = Spawner::start(&spawner(version, stripped));
        let held = target.command("hold 300 75", "holding ");
        let pid = target.pid.to_string();
        let finished =
            testkit::goscope::run(&["doctor", "--pid", &pid, "--duration", "1", "--json"]).unwrap();
        assert!(
            finished.status.success(),
            "{what}: doctor failed: {}",
            finished.stderr
        );
        let report: Value = serde_json::from_str(&finished.stdout).unwrap();
        let g = &report["goroutines"];
        let live = &g["live_by_creation_site"];
        eprintln!("{what}: live by creation site {live}");
        assert_eq!(
            site(live, "main.startShort")["live"].as_u64(),
            Some(held["short"]),
            "{what}: {live:#}"
        );
        assert_eq!(
            site(live, "main.startLong")["live"].as_u64(),
            Some(held["long"]),
            "{what}: {live:#}"
        );
        assert_eq!(site(live, "[main goroutine]")["live"].as_u64(), Some(1));
        // They are all the user goroutines the runtime counts.
        let total: u64 = live
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["live"].as_u64().unwrap())
            .sum();
        assert_eq!(Some(total as i64), g["live"].as_i64(), "{what}: {g:#}");
        target.command("release", "released");
    }
}

/// What one reading of the table says about the held goroutines, and what
/// it cost.
#[test]
fn the_table_read_from_memory_is_what_the_target_holds() {
    if !require_root_or_skip("the_table_read_from_memory_is_what_the_target_holds") {
        return;
    }
    for &(version, stripped) in BUILDS {
        let what = what(version, stripped);
        let mut target = Spawner::start(&spawner(version, stripped));
        let held = target.command("hold 200 50", "holding ");
        let process = TargetProcess::open(target.pid).unwrap();
        let layout = RuntimeLayout::resolve(&process.binary, false).unwrap();
        if stripped {
            assert_eq!(layout.offsets_source, LayoutSource::VersionTable, "{what}");
            assert_eq!(
                layout.globals_source,
                GlobalsSource::CodeReferences,
                "{what}"
            );
        } else {
            assert_eq!(layout.offsets_source, LayoutSource::Dwarf, "{what}");
        }
        let bias = process.load_bias().unwrap();
        let memory = process.memory();
        let reader = GoroutineReader::new(&layout, bias, process.binary.go_version())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let reasons = reader.wait_reasons(&memory).unwrap();
        assert!(reasons.len() > 30, "{what}: {} wait reasons", reasons.len());
        let symbols = SourceSymbolizer::new(&process.binary, bias);
        let names = Symbolizer::new(&process.binary, bias);
        // The held goroutines park on the channel: wait until they all do.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (table, by_site) = loop {
            let table = reader
                .read(&memory)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut by_site: HashMap<String, Vec<(GoStatus, Option<&str>)>> = HashMap::new();
            for g in &table.goroutines {
                let (function, _) = site_of(g.gopc, &symbols);
                by_site
                    .entry(function)
                    .or_default()
                    .push((g.status, reasons.name(g.wait_reason)));
            }
            let parked = ["main.startShort", "main.startLong"].iter().all(|f| {
                by_site.get(*f).is_some_and(|gs| {
                    gs.iter()
                        .all(|(s, r)| *s == GoStatus::Waiting && *r == Some("chan receive"))
                })
            });
            if parked || Instant::now() > deadline {
                let owned: HashMap<String, Vec<(GoStatus, Option<String>)>> = by_site
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            v.into_iter()
                                .map(|(s, r)| (s, r.map(str::to_string)))
                                .collect(),
                        )
                    })
                    .collect();
                break (table, owned);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for (function, count) in [
            ("main.startShort", held["short"]),
            ("main.startLong", held["long"]),
        ] {
            let gs = &by_site[function];
            assert_eq!(gs.len() as u64, count, "{what}: {function}");
            assert!(
                gs.iter()
                    .all(|(s, r)| *s == GoStatus::Waiting && r.as_deref() == Some("chan receive")),
                "{what}: {function}: {gs:?}"
            );
        }
        // Start functions are the closures; the main goroutine's parent is 0.
        let main = table.goroutines.iter().find(|g| g.goid == 1).unwrap();
        assert_eq!(names.function(main.startpc), Some("runtime.main"), "{what}");
        assert!(
            table
                .goroutines
                .iter()
                .filter(|g| site_of(g.gopc, &symbols).0 == "main.startShort")
                .all(|g| g.parent_goid == Some(1))
        );
        // User goroutines as runtime.NumGoroutine counts them.
        let mut system = SystemGoroutines::new(|pc| names.function(pc).map(str::to_string));
        let live: u64 = live_by_gopc(&table, |g| system.is_system(g, table.finalizer_running))
            .iter()
            .map(|(_, n)| n)
            .sum();
        let snapshot = RuntimeSnapshot::read(&memory, &layout, bias).unwrap();
        assert_eq!(live as i64, snapshot.goroutines_user, "{what}");
        assert_eq!(live, held["short"] + held["long"] + 1, "{what}");
        target.command("release", "released");
    }
}

/// goscope's own CPU time to read a table of N goroutines (printed for
/// the record; bounded so that a regression to one read per field shows).
#[test]
fn reading_a_large_table_is_cheap() {
    if !require_root_or_skip("reading_a_large_table_is_cheap") {
        return;
    }
    let mut target = Spawner::start(&spawner("1.27", false));
    let process = TargetProcess::open(target.pid).unwrap();
    let layout = RuntimeLayout::resolve(&process.binary, false).unwrap();
    let bias = process.load_bias().unwrap();
    let memory = process.memory();
    let reader = GoroutineReader::new(&layout, bias, process.binary.go_version()).unwrap();
    for n in [10_000u64, 100_000] {
        target.command(&format!("hold {n} 0"), "holding ");
        let reads = 5;
        let cpu_start = thread_cpu_ns();
        let wall_start = Instant::now();
        let mut len = 0;
        for _ in 0..reads {
            len = reader.read(&memory).unwrap().goroutines.len();
        }
        let cpu = (thread_cpu_ns() - cpu_start) as f64 / reads as f64;
        let wall = wall_start.elapsed().as_secs_f64() / reads as f64;
        eprintln!(
            "reading a table of {len} gs ({n} held): {:.2} ms CPU, {:.2} ms wall per reading ({:.0} ns CPU per g)",
            cpu / 1e6,
            wall * 1e3,
            cpu / len as f64
        );
        assert!(len as u64 >= n, "{len} gs for {n} held");
        assert!(
            cpu / (len as f64) < 5_000.0,
            "{:.0} ns of CPU per g",
            cpu / len as f64
        );
        target.command("release", "released");
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

//! The host agent scraped by Debian's real Prometheus server: PromQL
//! answers (allocation bytes by size class, GC cycles, throttled periods)
//! must match what the Go targets report of themselves (runtime/metrics)
//! and what the kernel reports (cpu.stat); targets started and stopped
//! while the agent runs appear and disappear; a port in use is a clear
//! error.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use testkit::{Goscope, Target, require_root_or_skip};

use crate::util::{TestCgroup, cgo, loadgen};

/// Prometheus scrapes the agent this often.
const SCRAPE: Duration = Duration::from_secs(1);
/// Bytes the target may allocate per size class after its own reading
/// (encoding and printing the result line).
const RESULT_PRINTING_SLACK: f64 = 64.0 * 1024.0;
/// Long enough for a scrape after the targets went idle.
const SETTLE: Duration = Duration::from_millis(2500);

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of GET `path`, or None when the server is not up yet.
fn try_http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

fn http_get(port: u16, path: &str) -> String {
    try_http_get(port, path).unwrap_or_else(|| panic!("GET 127.0.0.1:{port}{path} failed"))
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping one target, with its own data directory.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(agent_port: u16) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("goscope-prom-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {}s\nscrape_configs:\n  - job_name: goscope\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n",
                SCRAPE.as_secs()
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus (scripts/setup.sh installs it)");
        Self { child, port, dir }
    }

    /// An instant query: (labels, value) per series.
    fn query(&self, promql: &str) -> Vec<(HashMap<String, String>, f64)> {
        let body = http_get(
            self.port,
            &format!("/api/v1/query?query={}", url_encode(promql)),
        );
        let reply: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered {promql:?} with {body:?}: {e}"));
        assert_eq!(reply["status"], "success", "{promql}: {reply}");
        reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|series| {
                let labels = series["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }

    /// Waits until the agent was last scraped after `unix_time`.
    fn wait_for_scrape_after(&self, unix_time: f64) {
        self.wait_for("max(timestamp(goscope_agent_targets))", |t| {
            t.is_some_and(|t| t > unix_time)
        });
    }

    fn scalar(&self, promql: &str) -> Option<f64> {
        self.query(promql).first().map(|(_, v)| *v)
    }

    /// Polls until `promql` has an answer satisfying `ok`.
    fn wait_for(&self, promql: &str, ok: impl Fn(Option<f64>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let up = try_http_get(self.port, "/-/ready").is_some_and(|b| b.contains("Ready"));
            if up && ok(self.scalar(promql)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("prometheus never answered {promql:?} as expected");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `metric{pid=...}` now minus its value at unix time `since` (the
/// targets are idle at both instants, so the latest scrapes are exact;
/// `@` pins the earlier one however long the queries take).
fn increase(
    prometheus: &Prometheus,
    series: &str,
    since: f64,
) -> Vec<(HashMap<String, String>, f64)> {
    prometheus.query(&format!("{series} - {series} @ {since:.3}"))
}

#[test]
fn prometheus_scraping_the_agent_agrees_with_the_targets() {
    if !require_root_or_skip("prometheus_scraping_the_agent_agrees_with_the_targets") {
        return;
    }
    let agent_port = free_port();
    let listen = format!("127.0.0.1:{agent_port}");
    let mut agent =
        Goscope::start(&["agent", "--listen", &listen, "--scan-interval-ms", "200"]).unwrap();
    agent.wait_for_stderr(|l| l.contains("serving")).unwrap();

    // A second agent on the same port: a clear error, non-zero exit.
    let clash = testkit::goscope::run(&["agent", "--listen", &listen]).unwrap();
    assert!(!clash.status.success());
    assert!(
        clash.stderr.contains("cannot listen on") && clash.stderr.contains(&listen),
        "{}",
        clash.stderr
    );

    let cgroup = TestCgroup::new(
        &format!("goscope-agent-test-{}", std::process::id()),
        &[
            ("cpu", "cpu.cfs_period_us", "100000"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
        ],
    );
    let alloc_binary = loadgen("1.27", &cgo());
    let mut alloc_target =
        Target::start(&alloc_binary, &["-work", "alloc", "-scale", "3"], &[]).unwrap();
    let throttled_binary = loadgen("1.22", &cgo());
    let script = format!(
        "{}exec {} -work gc -scale 2",
        cgroup.enter(),
        throttled_binary.display()
    );
    let mut throttled = Target::start_command(Command::new("sh").arg("-c").arg(&script)).unwrap();
    // A process that is not Go: looked at, skipped, counted.
    let mut not_go = Command::new("sleep").arg("60").spawn().unwrap();
    for pid in [alloc_target.pid, throttled.pid] {
        agent
            .wait_for_stderr(|l| l.contains(&format!("watching pid {pid} ")))
            .unwrap();
    }

    let prometheus = Prometheus::start(agent_port);
    let a = alloc_target.pid;
    let b = throttled.pid;
    prometheus.wait_for(&format!("goscope_target_info{{pid=\"{b}\"}}"), |v| {
        v == Some(1.0)
    });
    prometheus.wait_for(&format!("goscope_target_info{{pid=\"{a}\"}}"), |v| {
        v == Some(1.0)
    });
    // An idle instant before the batches: the newest scrape once both are
    // watched. Prometheus stores a sample after the agent rendered it, so
    // it was rendered before the batches begin.
    prometheus.wait_for_scrape_after(unix_now());
    let idle_before = prometheus
        .query("max(timestamp(goscope_agent_targets))")
        .first()
        .map(|(_, t)| *t)
        .expect("no scrape timestamp");

    let started = Instant::now();
    let before = cgroup.throttled_periods();
    let alloc_truth = alloc_target.run_batch().unwrap();
    let throttled_truth = throttled.run_batch().unwrap();
    let batches_done = unix_now();
    std::thread::sleep(SETTLE);
    prometheus.wait_for_scrape_after(batches_done + 0.2);
    let after = cgroup.throttled_periods();
    // The rate query's range: back past the first batch.
    let window = (started.elapsed() + Duration::from_millis(1200)).as_secs();

    // GC cycles: exact, for both targets.
    for (pid, truth) in [(a, &alloc_truth), (b, &throttled_truth)] {
        let got = increase(
            &prometheus,
            &format!("goscope_gc_cycles_total{{pid=\"{pid}\"}}"),
            idle_before,
        );
        assert_eq!(
            got.first().map(|(_, v)| *v),
            Some(truth.delta("/gc/cycles/total:gc-cycles").unwrap()),
            "pid {pid}: GC cycles"
        );
    }

    // Allocation bytes by size class against the runtime's own
    // allocs-by-size histogram (bucket upper bounds are size + 1).
    let (objects, bounds) = alloc_truth
        .histogram("/gc/heap/allocs-by-size:bytes")
        .unwrap();
    let mut truth_bytes: HashMap<String, f64> = HashMap::new();
    for (i, count) in objects.iter().enumerate() {
        let upper = bounds[i + 1];
        if upper.is_finite() && *count > 0 {
            let size = upper - 1.0;
            truth_bytes.insert(format!("{size}"), *count as f64 * size);
        }
    }
    let by_class = increase(
        &prometheus,
        &format!("goscope_alloc_class_bytes_total{{pid=\"{a}\"}}"),
        idle_before,
    );
    assert!(
        by_class.len() > 60,
        "one series per size class: {}",
        by_class.len()
    );
    let mut compared = 0;
    for (labels, got) in &by_class {
        let size = &labels["size"];
        if size == "large" {
            continue;
        }
        let want = truth_bytes.get(size).copied().unwrap_or(0.0);
        // The target prints its result (allocating a little) after its
        // own reading; the agent reads after that.
        assert!(
            (got - want).abs() <= want * 0.01 + RESULT_PRINTING_SLACK,
            "size class {size}: {got} bytes from PromQL vs {want} from runtime/metrics"
        );
        compared += usize::from(want > 0.0);
    }
    assert!(compared >= 3, "only {compared} size classes allocated");
    let total = increase(
        &prometheus,
        &format!("goscope_alloc_bytes_total{{pid=\"{a}\"}}"),
        idle_before,
    );
    let want_total = alloc_truth.delta("/gc/heap/allocs:bytes").unwrap();
    let got_total = total.first().map_or(0.0, |(_, v)| *v);
    assert!(
        (got_total - want_total).abs() <= want_total * 0.01,
        "allocated bytes {got_total} vs {want_total}"
    );
    // The heatmap query a dashboard runs: bytes/s by size class.
    let rates = prometheus.query(&format!(
        "sum by (size) (rate(goscope_alloc_class_bytes_total{{pid=\"{a}\"}}[{}s]))",
        window + 10
    ));
    assert!(
        rates.iter().any(|(_, v)| *v > 0.0),
        "no allocation rate by size class over {window}s: {rates:?}"
    );

    // CFS throttling: the kernel's cpu.stat delta over the batch.
    assert!(after > before, "the batch was not throttled");
    let got = increase(
        &prometheus,
        &format!("goscope_cfs_throttled_periods_total{{pid=\"{b}\"}}"),
        idle_before,
    );
    assert_eq!(
        got.first().map(|(_, v)| *v),
        Some((after - before) as f64),
        "throttled periods"
    );
    assert_eq!(
        prometheus.scalar(&format!("goscope_cpu_quota_cores{{pid=\"{b}\"}}")),
        Some(0.5)
    );

    // The agent's own figures, and the skipped non-Go process.
    assert!(
        prometheus
            .scalar("goscope_agent_cpu_seconds_total")
            .unwrap()
            > 0.0
    );
    assert!(
        prometheus
            .scalar("goscope_agent_resident_memory_bytes")
            .unwrap()
            > 1e6
    );
    assert!(
        prometheus
            .scalar("goscope_agent_skipped_processes_total{reason=\"not_go\"}")
            .unwrap_or(0.0)
            >= 1.0
    );

    // The Grafana dashboard: every query is valid PromQL on names the agent
    // exports, and the allocation heatmap has data.
    dashboard_queries_run(&prometheus, agent_port);

    // A target that exits disappears; one that starts appears.
    alloc_target.quit().unwrap();
    let late = Target::start(&alloc_binary, &["-work", "idle"], &[]).unwrap();
    let c = late.pid;
    prometheus.wait_for(&format!("goscope_target_info{{pid=\"{a}\"}}"), |v| {
        v.is_none()
    });
    prometheus.wait_for(&format!("goscope_target_info{{pid=\"{c}\"}}"), |v| {
        v == Some(1.0)
    });
    late.quit().unwrap();
    throttled.quit().unwrap();
    let _ = not_go.kill();
    let _ = not_go.wait();
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// Runs every query of grafana/goscope-dashboard.json against Prometheus.
fn dashboard_queries_run(prometheus: &Prometheus, agent_port: u16) {
    let path = testkit::workspace_root().join("grafana/goscope-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exported = http_get(agent_port, "/metrics");
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|t| t.starts_with("goscope_"))
            {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    exported.contains(&format!("# TYPE {family} ")),
                    "panel {:?} uses {name}, which the agent does not export",
                    panel["title"]
                );
            }
            let promql = expr
                .replace("$__rate_interval", "30s")
                .replace("$exe", ".*")
                .replace("$pid", ".*");
            let _ = prometheus.query(&promql);
            queries += 1;
        }
    }
    assert!(queries >= 20, "only {queries} dashboard queries");
    let heatmap = prometheus.query(
        "sum by (size) (rate(goscope_alloc_class_bytes_total{exe=~\".*\", pid=~\".*\"}[30s]))",
    );
    assert!(heatmap.len() > 60, "heatmap rows: {}", heatmap.len());
}

/// Churn: a thousand short-lived non-Go processes and Go processes that
/// exit while being scraped. The agent answers every scrape, counts what
/// it skipped, and ends up watching only the live ones.
#[test]
fn agent_keeps_serving_through_process_churn() {
    if !require_root_or_skip("agent_keeps_serving_through_process_churn") {
        return;
    }
    let agent_port = free_port();
    let listen = format!("127.0.0.1:{agent_port}");
    let mut agent =
        Goscope::start(&["agent", "--listen", &listen, "--scan-interval-ms", "100"]).unwrap();
    agent.wait_for_stderr(|l| l.contains("serving")).unwrap();
    let binary = loadgen("1.22", &cgo());
    let stayer = Target::start(&binary, &["-work", "idle"], &[]).unwrap();
    let churn = std::thread::spawn(move || {
        // Go processes that run one batch and exit (stdin closed).
        let short_lived: Vec<Child> = (0..8)
            .map(|_| {
                Command::new(&binary)
                    .args(["-work", "alloc", "-auto"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for _ in 0..1000 {
            let _ = Command::new("true").status();
        }
        let pids: Vec<u32> = short_lived.iter().map(Child::id).collect();
        for mut child in short_lived {
            let _ = child.wait();
        }
        pids
    });
    let mut scrapes = 0;
    while !churn.is_finished() {
        let body = http_get(agent_port, "/metrics");
        assert!(
            body.contains("goscope_agent_targets"),
            "a scrape failed: {body}"
        );
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let short_lived = churn.join().unwrap();
    assert!(scrapes >= 5, "only {scrapes} scrapes during the churn");
    // Settle: the exited ones are dropped at the agent's next scan (which
    // may be parsing other executables first), the stayer remains.
    let exported =
        |body: &str, pid: u32| body.contains(&format!("goscope_target_info{{pid=\"{pid}\""));
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = http_get(agent_port, "/metrics");
        assert!(exported(&body, stayer.pid), "the live target is missing");
        let stale: Vec<u32> = short_lived
            .iter()
            .copied()
            .filter(|&pid| exported(&body, pid))
            .collect();
        if stale.is_empty() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "pids {stale:?} exited 30 s ago but are still exported"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let skipped_not_go: f64 = body
        .lines()
        .find(|l| l.starts_with("goscope_agent_skipped_processes_total{reason=\"not_go\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(skipped_not_go >= 1.0, "no skipped non-Go processes counted");
    stayer.quit().unwrap();
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// Cgroup directories made under the cpu controller, deepest last;
/// removed (deepest first) on drop.
struct KubeCgroup(Vec<std::path::PathBuf>);

impl KubeCgroup {
    fn new(path: &str) -> Self {
        let mut dirs = Vec::new();
        let mut at = std::path::PathBuf::from("/sys/fs/cgroup/cpu");
        if !at.exists() {
            at = std::path::PathBuf::from("/sys/fs/cgroup");
        }
        for part in path.trim_matches('/').split('/') {
            at = at.join(part);
            std::fs::create_dir_all(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display()));
            dirs.push(at.clone());
        }
        Self(dirs)
    }

    fn enter(&self, pid: u32) {
        let procs = self.0.last().unwrap().join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
    }
}

impl Drop for KubeCgroup {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn agent_labels_targets_with_their_container_and_pod() {
    if !testkit::require_root_or_skip("agent_labels_targets_with_their_container_and_pod") {
        return;
    }
    const UID: &str = "7f0e3b1c-5d2a-4c8e-9b6f-0a1b2c3d4e5f";
    let id_a = "a".repeat(64);
    let id_b = "b".repeat(64);
    let tag = std::process::id();
    // cgroupfs driver (containerd), and systemd driver (CRI-O).
    let cgroupfs = KubeCgroup::new(&format!("kubepods{tag}/burstable/pod{UID}/{id_a}"));
    let uid_ = UID.replace('-', "_");
    let systemd = KubeCgroup::new(&format!(
        "kubepods{tag}.slice/kubepods{tag}-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{id_b}.scope"
    ));
    let pods = std::env::temp_dir().join(format!("goscope-pods-{tag}"));
    std::fs::create_dir_all(pods.join(format!("shop_checkout-7d9f_{UID}"))).unwrap();
    let binary =
        testkit::build_workload("1.27", "gstates", &testkit::BuildOptions::default()).unwrap();
    let start = |cgroup: &KubeCgroup| {
        let child = std::process::Command::new(&binary)
            .args(["-recv", "1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        cgroup.enter(child.id());
        child
    };
    let mut a = start(&cgroupfs);
    let mut b = start(&systemd);
    let (agent, port) =
        crate::util::start_agent_with("200", &["--kubelet-pods-dir", pods.to_str().unwrap()]);
    let scraper = crate::util::Scraper::new(port);
    let info = |body: &str, pid: u32| {
        body.lines()
            .find(|l| {
                l.starts_with("goscope_target_info{") && l.contains(&format!("pid=\"{pid}\""))
            })
            .map(str::to_string)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (line_a, line_b) = loop {
        let (body, _) = scraper.scrape_body("waiting for both targets");
        if let (Some(x), Some(y)) = (info(&body, a.id()), info(&body, b.id())) {
            break (x, y);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "targets never exported:\n{body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for want in [
        format!("container_id=\"{id_a}\""),
        format!("pod_uid=\"{UID}\""),
        "pod=\"checkout-7d9f\"".to_string(),
        "namespace=\"shop\"".to_string(),
    ] {
        assert!(line_a.contains(&want), "{want} missing: {line_a}");
    }
    for want in [
        format!("container_id=\"{id_b}\""),
        format!("pod_uid=\"{UID}\""),
    ] {
        assert!(line_b.contains(&want), "{want} missing: {line_b}");
    }
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    agent.interrupt().unwrap();
    drop((cgroupfs, systemd));
    std::fs::remove_dir_all(&pods).unwrap();
}

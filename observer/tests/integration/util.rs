//! Helpers shared by the integration tests.

use std::path::PathBuf;

use serde_json::Value;
use testkit::BuildOptions;

/// Go versions the per-version tests cover in CI.
pub const GC_PROBE_VERSIONS: &[&str] = &["1.22", "1.27"];

pub fn loadgen(version: &str, options: &BuildOptions) -> PathBuf {
    testkit::build_workload(version, "loadgen", options)
        .unwrap_or_else(|e| panic!("building loadgen with Go {version}: {e:#}"))
}

pub fn cgo() -> BuildOptions {
    BuildOptions {
        cgo: true,
        ..Default::default()
    }
}

/// Runs goscope to completion and parses its stdout as JSON.
pub fn goscope_json(args: &[&str]) -> Value {
    let finished = testkit::goscope::run(args).expect("running goscope");
    assert!(
        finished.status.success(),
        "goscope {args:?} failed: {}",
        finished.stderr
    );
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "goscope {args:?} printed invalid JSON ({e}): {}",
            finished.stdout
        )
    })
}

/// The full version string `go version` prints for a toolchain, e.g. go1.22.10.
pub fn toolchain_version(version: &str) -> String {
    let go = testkit::go_binary(version).expect("toolchain");
    let out = std::process::Command::new(go)
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go version");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .expect("go version output")
        .to_string()
}

/// Reads `len` bytes of a process's memory at `address` through /proc/PID/mem.
pub fn read_process_memory(pid: u32, address: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt as _;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut buf = vec![0; len];
    mem.read_exact_at(&mut buf, address)
        .expect("read /proc/PID/mem");
    buf
}

pub fn hex_address(value: &Value) -> u64 {
    let text = value.as_str().expect("address is a string");
    u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex address")
}

/// A v1 cgroup directory made for one test, removed on drop.
pub struct TestCgroup {
    dirs: Vec<std::path::PathBuf>,
}

impl TestCgroup {
    pub fn new(name: &str, files: &[(&str, &str, &str)]) -> Self {
        let mut dirs = Vec::new();
        for controller in ["cpu", "memory"] {
            let dir = std::path::Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(name);
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            dirs.push(dir);
        }
        for (controller, file, value) in files {
            let path = std::path::Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(name)
                .join(file);
            std::fs::write(&path, value)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        Self { dirs }
    }

    /// A shell prefix that moves the shell (then exec'd target) in.
    pub fn enter(&self) -> String {
        self.dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs; ", d.display()))
            .collect()
    }

    pub fn throttled_periods(&self) -> u64 {
        self.cpu_stat("nr_throttled")
    }

    /// cpu.stat's throttled time in µs (cgroup v2 `throttled_usec`, v1
    /// `throttled_time` in ns, converted).
    pub fn throttled_usec(&self) -> u64 {
        let stat = std::fs::read_to_string(self.dirs[0].join("cpu.stat")).unwrap();
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        field("throttled_usec ")
            .or_else(|| field("throttled_time ").map(|ns| ns / 1000))
            .unwrap()
    }

    fn cpu_stat(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.dirs[0].join("cpu.stat"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Fails unless every executable mapping of `path` in process `pid` holds
/// exactly the file's bytes (no breakpoint left, no instruction changed).
pub fn assert_code_matches_file(pid: u32, path: &std::path::Path) {
    use std::os::unix::fs::MetadataExt as _;
    let file = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let inode = std::fs::metadata(path).unwrap().ino();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut checked = 0;
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6
            || !fields[1].contains('x')
            || fields[4].parse::<u64>().ok() != Some(inode)
        {
            continue;
        }
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let offset = usize::try_from(u64::from_str_radix(fields[2], 16).unwrap()).unwrap();
        let len = usize::try_from(end - start)
            .unwrap()
            .min(file.len() - offset);
        let memory = read_process_memory(pid, start, len);
        let differ = memory
            .iter()
            .zip(&file[offset..offset + len])
            .position(|(m, f)| m != f);
        assert_eq!(
            differ,
            None,
            "pid {pid}: code at {:#x} differs from {} (memory {:#04x}, file {:#04x})",
            start + differ.unwrap_or(0) as u64,
            path.display(),
            memory[differ.unwrap_or(0)],
            file[offset + differ.unwrap_or(0)]
        );
        checked += len;
    }
    assert!(checked > 0, "pid {pid} maps no code of {}", path.display());
}

// The agent and a client scraping it (shared by the agent_hostile and
// hostile tests).

/// A scrape must be answered within this, whatever else the agent faces.
pub const SCRAPE_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);
/// The client gives up on a scrape after this (a stalled server).
pub const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running agent on a free loopback port, ready to accept, scanning
/// /proc every `scan_interval_ms`.
pub fn start_agent(scan_interval_ms: &str) -> (testkit::Goscope, u16) {
    start_agent_with(scan_interval_ms, &[])
}

/// Like `start_agent`, with more agent arguments (`--force-version`).
pub fn start_agent_with(scan_interval_ms: &str, extra: &[&str]) -> (testkit::Goscope, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "agent",
        "--listen",
        &listen,
        "--scan-interval-ms",
        scan_interval_ms,
    ];
    args.extend_from_slice(extra);
    let mut agent = testkit::Goscope::start(&args).unwrap();
    agent.wait_for_stderr(|l| l.contains("serving")).unwrap();
    (agent, port)
}

/// A process's anonymous resident memory, KiB (RssAnon of /proc/PID/status).
pub fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RssAnon in /proc/{pid}/status:\n{status}"))
}

/// A real HTTP client scraping the agent.
pub struct Scraper {
    pub client: ureq::Agent,
    pub url: String,
}

impl Scraper {
    pub fn new(port: u16) -> Self {
        let client = ureq::Agent::config_builder()
            .timeout_global(Some(CLIENT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            client,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// GET `path`: status, body and how long the answer took.
    pub fn get(&self, path: &str) -> (u16, String, std::time::Duration) {
        let begun = std::time::Instant::now();
        let url = format!("{}{path}", self.url);
        let mut response = self
            .client
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url} failed after {:?}: {e}", begun.elapsed()));
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_else(|e| panic!("reading the body of GET {url}: {e}"));
        (status, body, begun.elapsed())
    }

    /// A scrape that must answer 200 with the exposition within the
    /// budget; returns how long it took.
    pub fn scrape(&self, during: &str) -> std::time::Duration {
        self.scrape_body(during).1
    }

    /// Like `scrape`, also returning the exposition.
    pub fn scrape_body(&self, during: &str) -> (String, std::time::Duration) {
        let (status, body, took) = self.get("/metrics");
        assert_eq!(status, 200, "scrape {during}: {body}");
        assert!(
            body.contains("# TYPE goscope_agent_targets gauge"),
            "scrape {during} has no goscope_agent_targets:\n{body}"
        );
        assert!(
            took <= SCRAPE_BUDGET,
            "scrape {during} took {took:?} (budget {SCRAPE_BUDGET:?})"
        );
        (body, took)
    }
}

/// The value of an unlabelled gauge in an exposition.
pub fn gauge(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls the agent until `goscope_agent_targets` satisfies `done` (or fails
/// after `within`); returns the last value.
pub fn wait_for_targets(
    scraper: &Scraper,
    within: std::time::Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (_, body, _) = scraper.get("/metrics");
        let targets = gauge(&body, "goscope_agent_targets").unwrap_or(-1.0);
        if done(targets) {
            return targets;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "goscope_agent_targets stayed at {targets} for {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

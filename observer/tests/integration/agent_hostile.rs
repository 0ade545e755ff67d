//! The agent's HTTP server under hostile local clients: a client that
//! trickles its request a byte at a time, one that streams a gigabyte
//! without a newline and hundreds that connect and say nothing must not
//! stall a scrape (each answers 200 within a second), grow the agent's
//! memory, or hold a connection past the agent's deadline.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use testkit::{Target, require_root_or_skip};

use crate::util::{
    CLIENT_TIMEOUT, Scraper, cgo, loadgen, rss_anon_kib, start_agent, wait_for_targets,
};

/// How long the attacks run while the test scrapes.
const ATTACK: Duration = Duration::from_secs(14);
/// The trickling client sends one byte this often (below the old per-read
/// timeout of 5 s, so a per-read timeout never fires).
const TRICKLE_EVERY: Duration = Duration::from_secs(4);
/// The agent cuts every connection 5 s after accepting it; with slack.
const CUT_BY: Duration = Duration::from_secs(8);
/// What the flooding client sends per connection, without a newline.
const FLOOD_BYTES: usize = 1 << 30;
const FLOOD_CHUNK: usize = 1 << 20;
/// A flooding connection the agent neither reads nor closes for this long
/// is a failure.
const FLOOD_STALL: Duration = Duration::from_secs(10);
/// Pause between two flooding connections (pacing, so the flood does not
/// take both cores of a small machine away from the agent).
const FLOOD_PAUSE: Duration = Duration::from_millis(100);
/// Pause between two scrapes of the test's own client.
const SCRAPE_PAUSE: Duration = Duration::from_millis(200);
/// The agent's anonymous memory may grow this much under attack.
const RSS_SLACK_KIB: u64 = 32 * 1024;
/// Connecting must succeed within this (a backlog left to fill is a
/// failure).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A scan interval longer than the test: the agent scans once, at start-up.
const SCAN_ONCE_MS: &str = "600000";
/// Idle connections held open at once.
const IDLE_CONNECTIONS: usize = 300;
/// Of which the agent must hold at least this many at once (a few file
/// descriptors of its own may come and go meanwhile).
const IDLE_HELD: usize = IDLE_CONNECTIONS - 10;

/// The agent's open file descriptors (one per accepted connection).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("listing /proc/{pid}/fd: {e}"))
        .count()
}

/// Sends a request head and then one byte every `TRICKLE_EVERY`,
/// reconnecting whenever the agent cuts it, until `stop`. Returns how long
/// each connection lived before the agent cut it.
fn trickle(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut lifetimes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let opened = Instant::now();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream.set_read_timeout(Some(TRICKLE_EVERY)).unwrap();
            let mut answer = [0u8; 4096];
            loop {
                if stop.load(Ordering::Relaxed) {
                    return lifetimes;
                }
                // Waiting for the agent to answer or close is the pacing:
                // a timeout means "still open, send the next byte".
                let cut = match stream.read(&mut answer) {
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        stream.write_all(b"a").is_err()
                    }
                    // Closed, reset, or an error status before closing.
                    _ => true,
                };
                if cut {
                    lifetimes.push(opened.elapsed());
                    break;
                }
            }
        }
        lifetimes
    })
}

/// Streams up to `FLOOD_BYTES` of request line without a newline per
/// connection, again and again until `stop`. Returns the bytes written to
/// each connection before the agent closed it, or what went wrong.
fn flood(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<Result<Vec<usize>, String>> {
    std::thread::spawn(move || {
        let chunk = vec![b'a'; FLOOD_CHUNK];
        let mut accepted = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
            stream
                .set_write_timeout(Some(FLOOD_STALL))
                .map_err(|e| e.to_string())?;
            let mut sent = 0;
            let mut closed = stream.write_all(b"GET /").is_err();
            while !closed && sent < FLOOD_BYTES {
                match stream.write_all(&chunk) {
                    Ok(()) => sent += chunk.len(),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Err(format!(
                            "the agent neither read nor closed a connection for {FLOOD_STALL:?} after {sent} bytes"
                        ));
                    }
                    Err(_) => closed = true,
                }
            }
            if !closed {
                return Err(format!(
                    "the agent took {sent} bytes of request line without closing"
                ));
            }
            accepted.push(sent);
            std::thread::sleep(FLOOD_PAUSE);
        }
        Ok(accepted)
    })
}

#[test]
fn agent_scrapes_answer_while_clients_trickle_and_flood() {
    if !require_root_or_skip("agent_scrapes_answer_while_clients_trickle_and_flood") {
        return;
    }
    // The target runs before the agent's one scan at start-up; no later
    // scan comes inside the test, so Go processes that others start on
    // this host (each parsed and watched) do not add to the agent's memory.
    let target = Target::start(&loadgen("1.22", &cgo()), &["-work", "idle"], &[]).unwrap();
    let (mut agent, port) = start_agent(SCAN_ONCE_MS);
    agent
        .wait_for_stderr(|l| l.contains(&format!("watching pid {} ", target.pid)))
        .unwrap();
    let scraper = Scraper::new(port);
    for _ in 0..5 {
        scraper.scrape("before the attack");
    }
    let baseline = rss_anon_kib(agent.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let trickler = trickle(port, Arc::clone(&stop));
    let flooder = flood(port, Arc::clone(&stop));
    let begun = Instant::now();
    let mut latencies = Vec::new();
    let mut peak = baseline;
    while begun.elapsed() < ATTACK {
        let took = scraper.scrape(&format!("{:?} into the attack", begun.elapsed()));
        latencies.push(took);
        peak = peak.max(rss_anon_kib(agent.pid()));
        std::thread::sleep(SCRAPE_PAUSE);
    }
    let (_, body, _) = scraper.get("/metrics");
    assert!(
        body.contains(&format!("goscope_target_info{{pid=\"{}\"", target.pid)),
        "the watched target is missing from the scrape:\n{body}"
    );
    stop.store(true, Ordering::Relaxed);
    let lifetimes = trickler.join().unwrap();
    let floods = flooder.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    peak = peak.max(rss_anon_kib(agent.pid()));

    latencies.sort();
    eprintln!(
        "agent under attack: {} scrapes, latency median {:?} max {:?}; RssAnon baseline {baseline} KiB, peak {peak} KiB; \
         trickling connections cut after {lifetimes:?}; {} floods, most bytes taken {}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        floods.len(),
        floods.iter().max().unwrap_or(&0),
    );
    assert!(latencies.len() >= 10, "only {} scrapes", latencies.len());
    assert!(
        !lifetimes.is_empty(),
        "the agent never cut the trickling connection in {ATTACK:?}"
    );
    for lifetime in &lifetimes {
        assert!(
            *lifetime <= CUT_BY,
            "a trickling connection lived {lifetime:?} (deadline {CUT_BY:?})"
        );
    }
    assert!(!floods.is_empty(), "no flood ran to its end");
    assert!(
        peak <= baseline + RSS_SLACK_KIB,
        "the agent's RssAnon grew from {baseline} KiB to {peak} KiB under attack"
    );
    target.quit().unwrap();
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

#[test]
fn agent_scrapes_answer_past_300_idle_connections() {
    if !require_root_or_skip("agent_scrapes_answer_past_300_idle_connections") {
        return;
    }
    let (agent, port) = start_agent("200");
    let pid = agent.pid();
    let scraper = Scraper::new(port);
    scraper.scrape("before the idle connections");
    let before = open_fds(pid);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    // A server that stops accepting fills its backlog; then connecting
    // hangs, which is a failure, not a wait.
    let idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
        .map(|i| {
            TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).unwrap_or_else(|e| {
                panic!(
                    "idle connection {i} to {address} not accepted within {CONNECT_TIMEOUT:?}: {e}"
                )
            })
        })
        .collect();
    // Ready when the agent has accepted (nearly) all of them.
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds(pid) < before + IDLE_HELD {
        assert!(
            Instant::now() < deadline,
            "the agent accepted only {} of {IDLE_CONNECTIONS} connections",
            open_fds(pid).saturating_sub(before)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let accepted = Instant::now();
    let mut latencies: Vec<Duration> = (0..5)
        .map(|i| scraper.scrape(&format!("{i} with {IDLE_CONNECTIONS} idle connections")))
        .collect();
    // The scrapes were answered while the idle connections were held.
    let held = open_fds(pid).saturating_sub(before);
    assert!(
        held >= IDLE_HELD,
        "only {held} idle connections still held after the scrapes"
    );
    latencies.sort();
    eprintln!(
        "{IDLE_CONNECTIONS} idle connections: scrape latency median {:?} max {:?}",
        latencies[2], latencies[4]
    );
    // And the agent cuts each by its deadline.
    for mut stream in idle {
        let left = (accepted + CUT_BY).saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 512];
        if let Err(e) = stream.read(&mut buf) {
            assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "an idle connection was still open {CUT_BY:?} after it was accepted"
            );
        }
    }
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

#[test]
fn agent_answers_only_its_two_pages() {
    if !require_root_or_skip("agent_answers_only_its_two_pages") {
        return;
    }
    let (agent, port) = start_agent("200");
    let scraper = Scraper::new(port);
    let (status, body, _) = scraper.get("/");
    assert_eq!(status, 200);
    assert!(body.contains("href=\"/metrics\""), "{body}");
    let (status, _, _) = scraper.get("/metrics?x=1");
    assert_eq!(status, 200);
    let (status, _, _) = scraper.get("/nope");
    assert_eq!(status, 404);
    let response = scraper
        .client
        .post(&format!("{}/metrics", scraper.url))
        .send("")
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let head = scraper
        .client
        .head(&format!("{}/metrics", scraper.url))
        .call()
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    // A request line longer than the agent buffers: refused, not read on.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 * 1024));
    let _ = stream.write_all(long.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 414"),
        "a 64 KiB request line was answered {answer:?}"
    );
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// Distinct executables (each its own inode, padded to 8 MiB) are watched
/// and then all exit: the agent forgets their parsed files, so its memory
/// returns near its baseline instead of keeping every executable it ever
/// saw; and a shell that execs a Go program after 300 ms is watched.
#[test]
fn agent_forgets_executables_and_watches_a_shell_that_execs_go() {
    if !require_root_or_skip("agent_forgets_executables_and_watches_a_shell_that_execs_go") {
        return;
    }
    const COPIES: usize = 30;
    const PADDED: u64 = 8 << 20;
    let original = loadgen("1.27", &cgo());
    let dir = std::env::temp_dir().join(format!("goscope-agent-copies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copies: Vec<std::path::PathBuf> = (0..COPIES)
        .map(|i| {
            let path = dir.join(format!("server-{i}"));
            std::fs::copy(&original, &path).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(PADDED)
                .unwrap();
            path
        })
        .collect();
    let (agent, port) = start_agent("200");
    let scraper = Scraper::new(port);
    wait_for_targets(&scraper, Duration::from_secs(30), |t| t >= 0.0);
    // The agent watches every Go process on the host (other tests' too):
    // wait on our own pids, never on the total.
    let watched = |pid: u32| {
        let body = scraper.get("/metrics").1;
        body.contains(&format!("pid=\"{pid}\""))
    };
    let wait_pid = |pid: u32, present: bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while watched(pid) != present {
            assert!(
                Instant::now() < deadline,
                "pid {pid} {} the agent's metrics for 30 s",
                if present {
                    "never reached"
                } else {
                    "stayed in"
                }
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Warm up: one copy watched and gone, so the baseline includes what
    // watching anything at all costs (threads, buffers).
    let warm = Target::start(&copies[0], &["-work", "idle"], &[]).unwrap();
    let warm_pid = warm.pid;
    wait_pid(warm_pid, true);
    warm.quit().unwrap();
    wait_pid(warm_pid, false);
    let baseline = rss_anon_kib(agent.pid());

    // A shell that becomes a Go program: skipped first, watched after its exec.
    let mut shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("sleep 0.3; exec {} -work idle", original.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let targets: Vec<Target> = copies
        .iter()
        .map(|p| Target::start(p, &["-work", "idle"], &[]).unwrap())
        .collect();
    let shell_metric = format!("pid=\"{}\"", shell.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body, _) = scraper.get("/metrics");
        let watched = targets
            .iter()
            .filter(|t| body.contains(&format!("pid=\"{}\"", t.pid)))
            .count();
        if watched == COPIES && body.contains(&shell_metric) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s the agent watches {watched} of {COPIES} copies; the exec'd shell {}",
            if body.contains(&shell_metric) {
                "too"
            } else {
                "not"
            }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let peak = rss_anon_kib(agent.pid());
    let pids: Vec<u32> = targets.iter().map(|t| t.pid).collect();
    for t in targets {
        t.quit().unwrap();
    }
    let shell_pid = shell.id();
    let _ = shell.kill();
    let _ = shell.wait();
    for pid in pids.into_iter().chain([shell_pid]) {
        wait_pid(pid, false);
    }
    // The cache is evicted at a scan after the last exit; a scan may be
    // busy first with other Go programs the host runs meanwhile (another
    // test's toolchain), which come and go. A leak of the copies' tables
    // never comes back down.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = rss_anon_kib(agent.pid());
        if after <= baseline + RSS_SLACK_KIB || Instant::now() >= deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "agent RssAnon: baseline {baseline} KiB, {COPIES} copies watched {peak} KiB, after they exit {after} KiB"
    );
    assert!(
        after <= baseline + RSS_SLACK_KIB,
        "30 s after every copy exited, the agent kept {} KiB (baseline {baseline} KiB, peak {peak} KiB)",
        after.saturating_sub(baseline)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A watched process that execs another Go program is re-parsed: the
/// agent drops what it knew of the old program and watches the new one
/// under the same pid, with the new program's Go version, never the old
/// layout over the new memory.
#[test]
fn a_watched_process_that_execs_is_reparsed() {
    if !require_root_or_skip("a_watched_process_that_execs_is_reparsed") {
        return;
    }
    let old = loadgen("1.22", &cgo());
    let new = loadgen("1.27", &cgo());
    let (_agent, port) = start_agent("200");
    let scraper = Scraper::new(port);
    let mut target = Target::start(&old, &["-work", "idle"], &[]).unwrap();
    let pid = target.pid;
    let series = |body: &str, version: &str| {
        body.lines().any(|l| {
            l.starts_with("goscope_target_info{")
                && l.contains(&format!("pid=\"{pid}\""))
                && l.contains(&format!("go_version=\"{version}\""))
        })
    };
    let old_version = crate::util::toolchain_version("1.22");
    let new_version = crate::util::toolchain_version("1.27");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !series(&scraper.get("/metrics").1, &old_version) {
        assert!(
            Instant::now() < deadline,
            "the agent never watched the first program"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    target.exec(&new, &["-work", "idle"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = scraper.get("/metrics").1;
        if series(&body, &new_version) {
            assert!(
                !series(&body, &old_version),
                "both programs exported for one pid"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not re-parse pid {} after its exec",
            target.pid
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(target.quit().unwrap().success());
}

//! `goscope agent`: a host daemon that watches every Go process on the
//! host (found by build info, attached as they start, dropped as they
//! exit) and serves what doctor reports as Prometheus metrics on /metrics,
//! and, with `--otlp-endpoint`, pushes the same metrics over OTLP/HTTP.
//! It reads the targets' memory and /proc only, so the targets pay nothing;
//! it exports its own CPU and memory use. Discovery and reading the
//! targets run on their own threads; a renderer thread takes readings of
//! the registry (snapshots) that both outputs are rendered from; the HTTP
//! server (one thread, tokio) only hands out renderings and the OTLP push
//! has a thread of its own, so no client, no endpoint and no slow scan
//! stalls a scrape.

mod exposition;
mod goroutine_figures;
mod http;
mod otlp;
pub mod otlp_config;
mod otlp_push;
mod registry;
mod snapshot;
mod watched;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use prost::Message as _;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::watch,
};

use crate::{cli::AgentArgs, privilege, window::StopSignal};
use registry::Registry;
use snapshot::{Labels, Snapshot};

/// The agent's own CPU (user + system) and resident memory.
fn own_usage() -> (f64, f64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    let rss_pages: f64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    (cpu, rss_pages * page)
}

/// A scrape waits at most this long for a rendering begun after it
/// arrived; past it (a slow scan holds the registry) it gets the latest.
const FRESH_WAIT: Duration = Duration::from_millis(500);
/// How often the renderer looks at the stop signal while idle.
const RENDERER_POLL: Duration = Duration::from_millis(100);
/// File descriptors the agent asks for (connections plus targets).
const WANTED_FILES: libc::rlim_t = 4096;

/// A push reuses a rendering younger than this (a scrape's, say) instead
/// of taking its own: the targets are read this often, so a newer
/// rendering would hold the same target figures.
const REUSE_WITHIN: Duration = watched::READ_EVERY;

/// One reading of the registry (the targets' series and the registry's
/// counters), taken once for every scrape that asked before it began; its
/// Prometheus text is rendered once, its OTLP form by each push.
struct Rendering {
    /// The last request (scrape or push) this rendering answers.
    seq: u64,
    /// This reading's number (`goscope_agent_reading_sequence`).
    reading: u64,
    /// When it was taken.
    at: Instant,
    snapshot: Snapshot,
    text: String,
}

/// Renders every target, the number watched and what was skipped.
fn render_registry(registry: &Mutex<Registry>, seq: u64, reading: u64) -> Rendering {
    let at = Instant::now();
    let mut out = Snapshot::new(SystemTime::now());
    let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    let (read_errors, late) = registry.export(&mut out);
    let none = Labels::default();
    out.gauge(
        "goscope_agent_targets",
        "Go processes the agent watches.",
        &none,
        registry.targets.len() as f64,
    );
    for (reason, n) in &registry.skipped {
        out.counter(
            "goscope_agent_skipped_processes_total",
            "Processes the agent looked at and did not watch, by reason.",
            &Labels::new(&[("reason", reason.label().to_string())]),
            *n as f64,
        );
    }
    for (reason, n) in &registry.dropped {
        out.counter(
            "goscope_agent_dropped_events_total",
            "Target readings scrapes could not export fresh, by reason (read_failed: left out; late: an old reading exported).",
            &Labels::new(&[("reason", reason.to_string())]),
            *n as f64,
        );
    }
    drop(registry);
    out.gauge(
        "goscope_agent_scrape_read_errors",
        "Targets left out of this scrape because reading them failed.",
        &none,
        read_errors as f64,
    );
    out.gauge(
        "goscope_agent_late_targets",
        "Targets whose latest reading is older than 3 s (a read stuck or slow on that target); their series are from that reading.",
        &none,
        late as f64,
    );
    out.gauge(
        "goscope_agent_reading_sequence",
        "The number of this reading of the targets (one per scrape or push that asked for a fresh one); an OTLP push carries the number of the reading it sent.",
        &none,
        reading as f64,
    );
    let text = exposition::render(&out);
    Rendering {
        seq,
        reading,
        at,
        snapshot: out,
        text,
    }
}

/// The renderer's readings, as scrapes and pushes ask for them: a request
/// rings the renderer and waits at most `FRESH_WAIT` for a rendering begun
/// after it; requests at the same moment share one.
struct Renderings {
    latest: watch::Receiver<Arc<Rendering>>,
    requested: AtomicU64,
    doorbell: SyncSender<()>,
}

impl Renderings {
    /// A rendering begun after this call, or past `FRESH_WAIT` the latest.
    async fn fresh(&self) -> Arc<Rendering> {
        let seq = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        // Full means a rendering is already due, and it will see `seq`.
        let _ = self.doorbell.try_send(());
        let mut latest = self.latest.clone();
        let fresh = tokio::time::timeout(FRESH_WAIT, latest.wait_for(|r| r.seq >= seq))
            .await
            .ok()
            .and_then(|r| r.ok().map(|r| Arc::clone(&r)));
        fresh.unwrap_or_else(|| Arc::clone(&latest.borrow()))
    }

    fn latest(&self) -> Arc<Rendering> {
        Arc::clone(&self.latest.borrow())
    }

    /// Whether the renderer thread still runs (it ends only on stop).
    fn renderer_alive(&self) -> bool {
        self.latest.has_changed().is_ok()
    }
}

/// The agent's own figures as of now (CPU, memory, uptime, and the OTLP
/// push's counters when it pushes).
fn own_figures(out: &mut Snapshot, started: Instant, otlp: Option<&otlp_push::Stats>) {
    let none = Labels::default();
    let (cpu, rss) = own_usage();
    out.counter(
        "goscope_agent_cpu_seconds_total",
        "CPU the agent itself used.",
        &none,
        cpu,
    );
    out.gauge(
        "goscope_agent_resident_memory_bytes",
        "The agent's resident memory.",
        &none,
        rss,
    );
    out.gauge(
        "goscope_agent_uptime_seconds",
        "Seconds since the agent started.",
        &none,
        started.elapsed().as_secs_f64(),
    );
    if let Some(stats) = otlp {
        stats.export(out);
    }
}

/// What /metrics serves. The targets are read by the renderer thread, off
/// the request path: a scrape asks for a rendering and waits for it at
/// most `FRESH_WAIT`, concurrent scrapes share one, and none waits on
/// discovery for longer than that.
struct Metrics {
    renderings: Arc<Renderings>,
    started: Instant,
    otlp: Option<Arc<otlp_push::Stats>>,
}

impl Metrics {
    /// Every target (as of the freshest rendering), then the agent's own
    /// figures (as of now).
    async fn scrape(&self) -> String {
        let begun = Instant::now();
        let rendering = self.renderings.fresh().await;
        let mut out = Snapshot::default();
        own_figures(&mut out, self.started, self.otlp.as_deref());
        out.gauge(
            "goscope_agent_scrape_duration_seconds",
            "How long rendering this scrape took.",
            &Labels::default(),
            begun.elapsed().as_secs_f64(),
        );
        let own = exposition::render(&out);
        let mut text = String::with_capacity(rendering.text.len() + own.len());
        text.push_str(&rendering.text);
        text.push_str(&own);
        text
    }

    fn renderer_alive(&self) -> bool {
        self.renderings.renderer_alive()
    }
}

/// What each push sends: the latest reading when a scrape just took it
/// (younger than `REUSE_WITHIN`, not pushed yet), else a fresh one, with
/// the agent's own figures as of now, as one encoded OTLP request.
struct PushSource {
    renderings: Arc<Renderings>,
    started: Instant,
    stats: Arc<otlp_push::Stats>,
    origin: otlp::Origin,
    last_pushed: u64,
}

impl otlp_push::Source for PushSource {
    async fn next(&mut self) -> Option<Vec<u8>> {
        let latest = self.renderings.latest();
        let rendering = if latest.reading > self.last_pushed && latest.at.elapsed() < REUSE_WITHIN {
            latest
        } else {
            self.renderings.fresh().await
        };
        // The renderer is stuck: nothing new to say.
        if rendering.reading <= self.last_pushed {
            return None;
        }
        self.last_pushed = rendering.reading;
        let mut own = Snapshot::default();
        own_figures(&mut own, self.started, Some(&self.stats));
        Some(otlp::request(&[&rendering.snapshot, &own], &self.origin).encode_to_vec())
    }
}

/// Renders whenever a scrape or push rings, until `stop`.
fn render_on_request(
    registry: &Mutex<Registry>,
    requested: &AtomicU64,
    doorbell: &Receiver<()>,
    publish: &watch::Sender<Arc<Rendering>>,
    stop: &StopSignal,
) {
    let mut reading = publish.borrow().reading;
    while !stop.raised() {
        match doorbell.recv_timeout(RENDERER_POLL) {
            Ok(()) => {
                // Answers every request counted so far (each counts itself
                // before it rings).
                let seq = requested.load(Ordering::SeqCst);
                reading += 1;
                publish.send_replace(Arc::new(render_registry(registry, seq, reading)));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Raises the soft open-files limit towards `WANTED_FILES` (bounded by the
/// hard limit), so the connection cap, not the limit, bounds connections.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = WANTED_FILES.min(limit.rlim_max);
    if limit.rlim_cur < wanted {
        limit.rlim_cur = wanted;
        // SAFETY: setrlimit reads the struct we pass. Failing leaves the
        // limit as it was, which is still correct, only tighter.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

/// Binds the listening socket (a port in use is an error naming it).
fn listen(address: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("cannot listen on {address}: creating a socket"))?;
    socket
        .set_reuseaddr(true)
        .with_context(|| format!("cannot listen on {address}: setting SO_REUSEADDR"))?;
    socket
        .bind(address)
        .with_context(|| format!("cannot listen on {address}"))?;
    socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("cannot listen on {address}"))
}

/// How long stopping waits for the server's runtime to wind down.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);
/// Pending connections the kernel queues before the agent accepts them.
const LISTEN_BACKLOG: u32 = 1024;

pub fn run(args: &AgentArgs) -> anyhow::Result<i32> {
    privilege::require_root("goscope agent")?;
    let stop = StopSignal::install()?;
    raise_file_limit();
    // One thread serves every connection; the targets are read elsewhere.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the HTTP server's runtime")?;
    let listener = runtime.block_on(async { listen(args.listen) })?;
    // Before anything starts: a CA file that cannot be used is an error.
    let otlp = match &args.otlp_endpoint {
        Some(endpoint) => Some((
            otlp_push::Config {
                endpoint: endpoint.clone(),
                headers: args.otlp_header.clone(),
                compression: args.otlp_compression,
                interval: Duration::from_millis(args.otlp_interval_ms),
                timeout: Duration::from_millis(args.otlp_timeout_ms),
            },
            otlp_push::tls_config(args.otlp_ca_file.as_deref())?,
        )),
        None => None,
    };
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let registry = Arc::new(Mutex::new(Registry::new(
        args.max_targets,
        registry::cgroup_root(),
        args.kubelet_pods_dir.clone(),
        args.force_version,
    )));
    eprintln!(
        "goscope agent: serving http://{}/metrics; scanning for Go processes every {} ms",
        listener.local_addr().unwrap_or(args.listen),
        args.scan_interval_ms
    );
    if let Some((config, _)) = &otlp {
        eprintln!(
            "goscope agent: pushing OTLP to {} every {} ms",
            config.endpoint,
            config.interval.as_millis()
        );
        if args.otlp_ca_file.is_some() && !config.endpoint.tls {
            eprintln!(
                "goscope agent: --otlp-ca-file is not used: {} is not https",
                config.endpoint
            );
        }
    }
    // Before the first scan: nothing watched yet, which is the truth.
    let (publish, latest) = watch::channel(Arc::new(render_registry(&registry, 0, 1)));
    let scanner = {
        let registry = Arc::clone(&registry);
        let interval = Duration::from_millis(args.scan_interval_ms);
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("discovery".into())
            .spawn(move || {
                while !stop.raised() {
                    Registry::scan(&registry);
                    let until = Instant::now() + interval;
                    while !stop.raised() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .context("starting the discovery thread")?
    };
    let (doorbell, rung) = mpsc::sync_channel(1);
    let renderings = Arc::new(Renderings {
        latest,
        requested: AtomicU64::new(0),
        doorbell,
    });
    let otlp_stats = otlp.as_ref().map(|_| Arc::new(otlp_push::Stats::default()));
    let metrics = Arc::new(Metrics {
        renderings: Arc::clone(&renderings),
        started,
        otlp: otlp_stats.clone(),
    });
    let renderer = {
        let renderings = Arc::clone(&renderings);
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("renderer".into())
            .spawn(move || {
                render_on_request(&registry, &renderings.requested, &rung, &publish, &stop);
            })
            .context("starting the renderer thread")?
    };
    let pusher = match (otlp, otlp_stats) {
        (Some((config, tls)), Some(stats)) => {
            let source = PushSource {
                renderings: Arc::clone(&renderings),
                started,
                stats: Arc::clone(&stats),
                origin: otlp::Origin::of_this_agent(started_wall),
                last_pushed: 0,
            };
            Some(otlp_push::start(config, tls, source, stats, stop.clone())?)
        }
        _ => None,
    };
    runtime.block_on(http::serve(listener, Arc::clone(&metrics), stop.clone()));
    // Connections still open are cut here.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    let renderer_ended = renderer.join();
    if !stop.raised() {
        // The server stops early only when the renderer is gone: scrapes
        // would be stale from now on.
        let why = match renderer_ended {
            Err(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()),
            Ok(()) => "no reason given".into(),
        };
        anyhow::bail!("the thread reading the targets stopped ({why}); the agent stops too");
    }
    let _ = scanner.join();
    if let Some(pusher) = pusher {
        let _ = pusher.join();
    }
    eprintln!("goscope agent: stopped");
    Ok(0)
}

//! `goscope agent`: a host daemon that watches every Go process on the
//! host (found by build info, attached as they start, dropped as they
//! exit) and serves what doctor reports as Prometheus metrics on /metrics.
//! It reads the targets' memory and /proc only, so the targets pay nothing;
//! it exports its own CPU and memory use.

mod exposition;
mod http;
mod registry;
mod watched;

use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{cli::AgentArgs, privilege, window::StopSignal};
use exposition::{Exposition, Labels};
use registry::Registry;

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

/// Renders /metrics: every target, then the agent's own figures.
fn scrape(registry: &Mutex<Registry>, started: Instant) -> String {
    let begun = Instant::now();
    let mut out = Exposition::default();
    let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    let read_errors = registry.export(&mut out);
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
    out.gauge(
        "goscope_agent_scrape_duration_seconds",
        "How long rendering this scrape took.",
        &none,
        begun.elapsed().as_secs_f64(),
    );
    out.render()
}

pub fn run(args: &AgentArgs) -> anyhow::Result<i32> {
    privilege::require_root("goscope agent")?;
    let stop = StopSignal::install()?;
    let listener = TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    let started = Instant::now();
    let registry = Arc::new(Mutex::new(Registry::new(
        args.max_targets,
        registry::cgroup_root(),
        args.force_version,
    )));
    eprintln!(
        "goscope agent: serving http://{}/metrics; scanning for Go processes every {} ms",
        listener
            .local_addr()
            .map_or(args.listen.clone(), |a| a.to_string()),
        args.scan_interval_ms
    );
    let scanner = {
        let registry = Arc::clone(&registry);
        let interval = Duration::from_millis(args.scan_interval_ms);
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("discovery".into())
            .spawn(move || {
                while !stop.raised() {
                    registry.lock().unwrap_or_else(|p| p.into_inner()).scan();
                    let until = Instant::now() + interval;
                    while !stop.raised() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .context("starting the discovery thread")?
    };
    while !stop.raised() {
        match listener.accept() {
            Ok((stream, _)) => {
                let body = || scrape(&registry, started);
                if let Err(e) = http::serve(stream, body) {
                    eprintln!("goscope agent: a request failed: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => eprintln!("goscope agent: accept failed: {e}"),
        }
    }
    let _ = scanner.join();
    eprintln!("goscope agent: stopped");
    Ok(0)
}

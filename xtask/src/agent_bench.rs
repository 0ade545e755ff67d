//! `cargo xtask agent-bench`: the host agent watching N Go processes,
//! scraped like Prometheus would; prints the agent's own CPU (share of one
//! core) and resident memory, and how long scrapes take.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use testkit::{BuildOptions, Goscope};

#[derive(Args)]
pub struct AgentBenchArgs {
    /// Go processes to start for the agent to watch.
    #[arg(long, default_value_t = 20)]
    targets: usize,
    /// loadgen workload each target runs in the background.
    #[arg(long, default_value = "mixed")]
    work: String,
    /// Measurement length in seconds (after all targets are watched).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Milliseconds between scrapes.
    #[arg(long, default_value_t = 1000)]
    scrape_ms: u64,
    #[arg(long, default_value = "1.27")]
    go: String,
}

fn scrape(port: u16) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat")? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn rss_bytes(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024.0)
}

pub fn run(args: &AgentBenchArgs) -> anyhow::Result<()> {
    let binary = testkit::build_workload(
        &args.go,
        "loadgen",
        &BuildOptions {
            cgo: true,
            ..Default::default()
        },
    )?;
    let mut targets: Vec<Child> = (0..args.targets)
        .map(|_| {
            Command::new(&binary)
                .args(["-work", &args.work, "-background"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting a target")
        })
        .collect::<anyhow::Result<_>>()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = Goscope::start(&["agent", "--listen", &listen])?;
    agent.wait_for_stderr(|l| l.contains("serving"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = scrape(port).unwrap_or_default();
        let watched = body.matches("goscope_target_info{").count();
        if watched >= args.targets {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the agent watches only {watched} of {} targets",
                args.targets
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = agent.pid();
    let cpu_start = cpu_seconds(pid)?;
    let started = Instant::now();
    let (mut scrapes, mut scrape_time, mut bytes, mut max_rss) = (0u32, Duration::ZERO, 0, 0.0f64);
    while started.elapsed() < Duration::from_secs(args.seconds) {
        let t = Instant::now();
        let body = scrape(port)?;
        scrape_time += t.elapsed();
        bytes = body.len();
        scrapes += 1;
        max_rss = max_rss.max(rss_bytes(pid)?);
        std::thread::sleep(Duration::from_millis(args.scrape_ms));
    }
    let cpu = cpu_seconds(pid)? - cpu_start;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "agent-bench: {} {} targets (go {}), {scrapes} scrapes every {} ms over {elapsed:.0} s",
        args.targets, args.work, args.go, args.scrape_ms
    );
    println!(
        "agent CPU {:.2}% of one core; RSS max {:.1} MB; scrape {:.1} ms mean, {:.0} KB",
        cpu / elapsed * 100.0,
        max_rss / 1e6,
        scrape_time.as_secs_f64() * 1000.0 / f64::from(scrapes.max(1)),
        bytes as f64 / 1024.0
    );
    agent.interrupt()?;
    for t in &mut targets {
        let _ = t.kill();
        let _ = t.wait();
    }
    Ok(())
}

//! The overhead benchmark: a fixed Go workload batch, timed by the target
//! itself (median of a few batches per run), run alternately without and
//! with goscope attached, several pairs in one run; prints each pair's
//! ratio (with / without) and the median.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use testkit::{BuildOptions, Goscope, Target};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Go version of the target (installed by scripts/setup.sh).
    #[arg(long, default_value = "1.27")]
    go: String,
    /// loadgen workload: gc, alloc, goroutines, cgo, mixed.
    #[arg(long, default_value = "mixed")]
    work: String,
    /// Batch size multiplier.
    #[arg(long, default_value_t = 3)]
    scale: u32,
    /// Pairs of runs (without, with).
    #[arg(long, default_value_t = 9)]
    pairs: u32,
    /// goscope subcommand attached during the "with" runs ("agent": the
    /// host agent, scraped every second).
    #[arg(long, default_value = "doctor")]
    mode: String,
    /// Pause between start (and attach) and the batch, in both arms, so
    /// that attach-time work (DWARF parsing, eBPF load) is not measured.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Batches per run; the run's time is their median (damps VM noise).
    #[arg(long, default_value_t = 3)]
    batches: u32,
    /// Extra arguments for the goscope command, e.g. "--no-sites" or
    /// "--overhead-budget off" (to measure what the probes cost left on).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    goscope_args: String,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let binary = testkit::build_workload(
        &args.go,
        "loadgen",
        &BuildOptions {
            cgo: true,
            ..Default::default()
        },
    )?;
    let scale = args.scale.to_string();
    let loadgen_args = ["-work", args.work.as_str(), "-scale", scale.as_str()];
    println!(
        "bench: go {} workload {} x{} mode {} {}, {} pairs",
        args.go, args.work, args.scale, args.mode, args.goscope_args, args.pairs
    );
    let mut ratios = Vec::new();
    for pair in 0..args.pairs {
        // Alternate the order so drift in machine load cancels out.
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut times = [Duration::ZERO; 2];
        for attached in order {
            let mut target = Target::start(&binary, &loadgen_args, &[])?;
            let pid = target.pid.to_string();
            let goscope = if attached && args.mode == "agent" {
                Some(start_agent(target.pid)?)
            } else if attached {
                let mut command = vec![
                    args.mode.as_str(),
                    "--pid",
                    &pid,
                    "--duration",
                    "3600",
                    "--json",
                ];
                command.extend(args.goscope_args.split_whitespace());
                let mut g = Goscope::start(&command)?;
                g.wait_attached()?;
                Some(g)
            } else {
                None
            };
            std::thread::sleep(Duration::from_millis(args.settle_ms));
            let mut batch_ns = Vec::new();
            for _ in 0..args.batches.max(1) {
                batch_ns.push(target.run_batch()?.elapsed_ns);
            }
            batch_ns.sort_unstable();
            if let Some(g) = goscope {
                let finished = g.interrupt()?;
                anyhow::ensure!(
                    finished.status.success(),
                    "goscope failed: {}",
                    finished.stderr
                );
            }
            target.quit().context("stopping the target")?;
            times[usize::from(attached)] = Duration::from_nanos(batch_ns[batch_ns.len() / 2]);
        }
        let ratio = times[1].as_secs_f64() / times[0].as_secs_f64();
        println!(
            "pair {}: without {:.3} s  with {:.3} s  ratio {:.4}",
            pair + 1,
            times[0].as_secs_f64(),
            times[1].as_secs_f64(),
            ratio
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!("median ratio {median:.4} ({:+.2}%)", (median - 1.0) * 100.0);
    Ok(())
}

/// `goscope agent` on a free loopback port, scraped every second by a
/// background thread (as Prometheus would), once it watches `pid`.
fn start_agent(pid: u32) -> anyhow::Result<Goscope> {
    use std::io::{Read as _, Write as _};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = Goscope::start(&["agent", "--listen", &listen])?;
    agent.wait_for_stderr(|l| l.contains(&format!("watching pid {pid} ")))?;
    std::thread::spawn(move || {
        loop {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let _ = write!(stream, "GET /metrics HTTP/1.0\r\n\r\n");
            let mut body = Vec::new();
            let _ = stream.read_to_end(&mut body);
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    Ok(agent)
}

//! `goscope alloc`: samples allocation call sites for a window under the
//! overhead budget, prints the top sites with MB/s and writes a pprof
//! allocation profile whose totals are the runtime's exact counts.

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    cli::AllocArgs,
    format::{bytes, count, percent},
    output,
    probes::{
        ProbeSession,
        alloc::{AllocProbe, AllocSamples, AllocSites, ExactAllocation},
        calibrate,
        governed::{Governed, ProbeSet},
        governor::{self, Governor},
    },
    session::Session,
    symbols::SourceSymbolizer,
    window,
};

/// How often the runtime's counters are read to predict the probe rate.
const PREDICT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct AllocReport {
    pid: u32,
    window_s: f64,
    bytes_per_s: f64,
    objects_per_s: f64,
    /// Fraction of the window the probes were attached.
    sampled_fraction: f64,
    #[serde(flatten)]
    sites: AllocSites,
    profile: String,
}

pub fn run(args: &AllocArgs) -> anyhow::Result<i32> {
    let Session {
        target,
        stop,
        runtime,
    } = Session::open("goscope alloc", args.target)?;
    let context = || format!("pid {}", target.pid);
    let class_sizes = &runtime.class_sizes;
    let bias = runtime.bias;
    let probe = AllocProbe::resolve(&target.binary).with_context(context)?;
    let symbols = SourceSymbolizer::new(&target.binary, bias);
    let pid = std::num::NonZeroU32::new(target.pid).context("pid 0")?;
    let mut session =
        ProbeSession::load(target.pid, None).map_err(|e| target.explain_attach_failure(e))?;
    let cost = calibrate::probe_hit_cost_ns(&mut session)
        .context("calibrating the cost of a probe hit")?;
    let read = || runtime.read();
    let first = read()?;
    let mut governed = Governed::attach(
        vec![ProbeSet::Alloc(probe)],
        &mut session,
        &target.exe_handle,
        pid,
        Governor::detached(args.overhead_budget.percent(), cost, target.cpu_time_ns()?),
    )
    .map_err(|e| target.explain_attach_failure(e))?;
    eprintln!(
        "goscope: attached to pid {} ({}); sampling allocation sites for {} s, Ctrl-C to stop early",
        target.pid,
        crate::target::display_path(&target.exe),
        args.duration
    );
    // The runtime's counters, read every second, predict the probes' rate.
    let mut previous = (Duration::ZERO, first.clone());
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        &target,
        &stop,
        Some(governor::POLL),
        |at| {
            if at >= previous.0 + PREDICT_INTERVAL {
                let now = read()?;
                governed.predict(
                    &previous.1,
                    &now,
                    class_sizes,
                    (at - previous.0).as_secs_f64(),
                );
                previous = (at, now);
            }
            governed
                .step(&mut session, &target.exe_handle, || Ok(target.cpu_time_ns()?))
                .context("governing the allocation probes")
        },
    );
    if let Some(e) = window.error.take() {
        return Err(e);
    }
    let elapsed = window.elapsed;
    // Once the target ended, the last reading of the window is its last.
    let last = if window.end.target_ended() {
        previous.1.clone()
    } else {
        match read() {
            Ok(last) => last,
            Err(e) => match target.liveness() {
                crate::target::Liveness::Alive => return Err(e),
                gone => {
                    window.ended(gone);
                    previous.1.clone()
                }
            },
        }
    };
    let samples = AllocSamples::read(&session, &symbols)?;
    let sampled_fraction = governed.governor.sampled_fraction();
    drop(session);
    let exact = ExactAllocation::between(&first.alloc, &last.alloc, class_sizes);
    let window_s = elapsed.as_secs_f64();
    let profile = samples
        .pprof(&exact, elapsed.as_nanos() as u64)
        .context("encoding the pprof profile")?;
    crate::outfile::write(&args.output, &profile)?;
    let total_bytes = exact.class_bytes.iter().sum::<u64>() + exact.large_bytes;
    let total_objects = exact
        .class_bytes
        .iter()
        .zip(&exact.class_sizes)
        .map(|(b, s)| if *s > 0 { b / s } else { 0 })
        .sum::<u64>()
        + exact.large_objects;
    let per_s = |v: u64| {
        if window_s > 0.0 {
            v as f64 / window_s
        } else {
            0.0
        }
    };
    let report = AllocReport {
        pid: target.pid,
        window_s,
        bytes_per_s: per_s(total_bytes),
        objects_per_s: per_s(total_objects),
        sampled_fraction,
        sites: samples.sites(&exact, window_s),
        profile: args.output.display().to_string(),
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        output::print_text(&render(&report))?;
    }
    Ok(window.announce_end(&target, "the sites cover what was observed until then"))
}

fn render(r: &AllocReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ALLOCATION  {}/s  {} objects/s over {:.1} s; {} span refills and large objects sampled (probes attached {} of the window)",
        bytes(r.bytes_per_s),
        count(r.objects_per_s),
        r.window_s,
        r.sites.samples,
        percent(r.sampled_fraction)
    );
    let _ = writeln!(
        out,
        "  {:>11} {:>7} {:>12}  site",
        "bytes/s", "share", "objects/s"
    );
    for site in r.sites.sites.iter().take(15) {
        let _ = writeln!(
            out,
            "  {:>11} {:>7} {:>12}  {}  {}",
            format!("{}/s", bytes(site.bytes_per_s)),
            percent(site.bytes_share),
            count(site.objects_per_s),
            site.function,
            site.position
        );
    }
    if r.sites.unattributed_share > 0.005 {
        let _ = writeln!(
            out,
            "  {} of the bytes are in size classes no sample covered (lengthen the window or raise --overhead-budget)",
            percent(r.sites.unattributed_share)
        );
    }
    let _ = writeln!(
        out,
        "profile written to {} (go tool pprof -sample_index=alloc_space -top {})",
        r.profile, r.profile
    );
    out
}

//! `goscope alloc`: where allocation comes from over a window. When the
//! target's runtime keeps a heap profile (MemProfileRate > 0: programs
//! linking runtime/pprof or net/http/pprof), its published buckets are read
//! from memory at both ends of the window and nothing is attached: the
//! sites are the window's delta scaled as runtime/pprof scales heap
//! samples, the live heap by site is the end's in-use figures, and the
//! pprof heap profile has all four sample types. Otherwise span refills
//! and large allocations are sampled by probes under the overhead budget
//! and each size class's exact bytes are shared among the sampled stacks
//! (`probes::alloc`). Prints the top sites with MB/s and writes the pprof
//! profile.

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    alloc_sites::{AllocSites, HeapProfile, SitesSource},
    cli::AllocArgs,
    format::{bytes, count, percent},
    output,
    probes::{
        ProbeSession,
        alloc::{AllocProbe, AllocSamples, ExactAllocation},
        calibrate,
        governed::{Governed, ProbeSet},
        governor::{self, Governor},
    },
    runtime::{MemProfile, RuntimeSnapshot, reader::RuntimeReader},
    session::Session,
    symbols::SourceSymbolizer,
    target::{Liveness, TargetProcess},
    window::{self, StopSignal, Window},
};

/// How often the runtime is read during the window (to predict the
/// probes' rate, and so that a target that exits leaves a recent reading).
const READ_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct AllocReport {
    pid: u32,
    window_s: f64,
    bytes_per_s: f64,
    objects_per_s: f64,
    /// Fraction of the window the probes were attached (null: no probe,
    /// the sites came from the heap profile).
    sampled_fraction: Option<f64>,
    #[serde(flatten)]
    sites: AllocSites,
    profile: String,
}

/// What one window gave, whichever the source.
struct Observed {
    window: Window,
    first: RuntimeSnapshot,
    last: RuntimeSnapshot,
    sites: AllocSites,
    sampled_fraction: Option<f64>,
    /// The gzipped pprof profile.
    profile: Vec<u8>,
}

pub fn run(args: &AllocArgs) -> anyhow::Result<i32> {
    let Session {
        target,
        stop,
        runtime,
        others,
    } = Session::open("goscope alloc", args.target.clone())?;
    let symbols = SourceSymbolizer::new(&target.binary, runtime.bias);
    let source = HeapProfile::open(
        &runtime.layout,
        runtime.bias,
        &runtime.memory,
        target.binary.go_version(),
    );
    let observed = match source {
        Ok((heap, _)) => from_heap_profile(args, &target, &stop, &runtime, &symbols, &heap)?,
        Err(why) => {
            eprintln!("goscope: allocation sites from span-refill probes: {why}");
            from_probes(
                args,
                others.share(args.overhead_budget.percent()),
                &target,
                &stop,
                &runtime,
                &symbols,
            )?
        }
    };
    let Observed {
        window,
        first,
        last,
        sites,
        sampled_fraction,
        profile,
    } = observed;
    let title =
        crate::flamegraph::title("alloc", target.pid, &target.exe, target.binary.go_version());
    crate::flamegraph::write_profile(&args.output, &profile, &title)?;
    let exact = ExactAllocation::between(&first.alloc, &last.alloc, &runtime.class_sizes);
    let window_s = window.elapsed.as_secs_f64();
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
        sites,
        profile: args.output.display().to_string(),
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        output::print_text(&render(&report))?;
    }
    Ok(window.announce_end(&target, "the sites cover what was observed until then"))
}

/// The reading that ends the window: a fresh one, or once the target has
/// ended (or vanishes now), the last one taken inside the window.
fn final_reading<T>(
    window: &mut Window,
    target: &TargetProcess,
    previous: T,
    read: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if window.end.target_ended() {
        return Ok(previous);
    }
    match read() {
        Ok(last) => Ok(last),
        Err(e) => match target.liveness() {
            Liveness::Alive => Err(e),
            gone => {
                window.ended(gone);
                Ok(previous)
            }
        },
    }
}

/// The heap-profile source: no probe; the runtime and its heap profile
/// read at the window's ends (and every second, for a target that exits).
fn from_heap_profile(
    args: &AllocArgs,
    target: &TargetProcess,
    stop: &StopSignal,
    runtime: &RuntimeReader,
    symbols: &SourceSymbolizer,
    heap: &HeapProfile,
) -> anyhow::Result<Observed> {
    let read = || -> anyhow::Result<(RuntimeSnapshot, MemProfile)> {
        let snapshot = runtime.read()?;
        let profile = heap
            .read(&runtime.memory)
            .with_context(|| format!("reading the heap profile of pid {}", target.pid))?;
        Ok((snapshot, profile))
    };
    let first = read()?;
    eprintln!(
        "goscope: attached to pid {} ({}); reading the runtime's heap profile (1 sample per {}, no probe) for {} s, Ctrl-C to stop early",
        target.pid,
        crate::target::display_path(&target.exe),
        crate::alloc_sites::binary_bytes(first.1.rate.max(0) as u64),
        args.duration
    );
    let mut previous = (Duration::ZERO, first.clone());
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        target,
        stop,
        Some(READ_INTERVAL),
        |at| {
            previous = (at, read()?);
            Ok(())
        },
    );
    if let Some(e) = window.error.take() {
        return Err(e);
    }
    let last = final_reading(&mut window, target, previous.1, read)?;
    let window_s = window.elapsed.as_secs_f64();
    let sites = heap.sites(&first.1, &last.1, window_s, symbols);
    let profile = heap
        .pprof(&first.1, &last.1, window.elapsed.as_nanos() as u64, symbols)
        .context("encoding the pprof profile")?;
    Ok(Observed {
        window,
        first: first.0,
        last: last.0,
        sites,
        sampled_fraction: None,
        profile,
    })
}

/// The probe source: span refills and large allocations sampled under the
/// overhead governor, the runtime's counters predicting their rate.
fn from_probes(
    args: &AllocArgs,
    budget_percent: f64,
    target: &TargetProcess,
    stop: &StopSignal,
    runtime: &RuntimeReader,
    symbols: &SourceSymbolizer,
) -> anyhow::Result<Observed> {
    let context = || format!("pid {}", target.pid);
    let class_sizes = &runtime.class_sizes;
    let probe = AllocProbe::resolve(&target.binary).with_context(context)?;
    let pid = std::num::NonZeroU32::new(target.pid).context("pid 0")?;
    let mut session =
        ProbeSession::load(target.pid, None).map_err(|e| target.explain_attach_failure(e))?;
    let costs = calibrate::costs(&mut session).context("calibrating probe costs")?;
    let read = || runtime.read();
    let first = read()?;
    let mut governed = Governed::attach(
        vec![ProbeSet::Alloc(probe)],
        &mut session,
        &target.exe_handle,
        pid,
        Governor::detached(budget_percent, costs.hit_ns, target.cpu_time_ns()?)
            .with_window(Duration::from_secs_f64(args.duration)),
        &costs,
    )
    .map_err(|e| target.explain_attach_failure(e))?;
    eprintln!(
        "goscope: attached to pid {} ({}); sampling allocation sites for {} s, Ctrl-C to stop early",
        target.pid,
        crate::target::display_path(&target.exe),
        args.duration
    );
    let mut previous = (Duration::ZERO, first.clone());
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        target,
        stop,
        Some(governor::POLL),
        |at| {
            let due = if previous.0.is_zero() {
                governor::FIRST_PREDICTION
            } else {
                previous.0 + READ_INTERVAL
            };
            if at >= due {
                let now = read()?;
                governed.predict(
                    &previous.1,
                    &now,
                    class_sizes,
                    (at - previous.0).as_secs_f64(),
                );
                previous = (at, now);
            }
            let attached = governed
                .step(&mut session, &target.exe_handle, || {
                    Ok(target.cpu_time_ns()?)
                })
                .context("governing the allocation probes")?;
            if attached && !target.is_alive() {
                governed.finish(&mut session)?;
                anyhow::bail!("pid {} ended while its probes were attached", target.pid);
            }
            Ok(())
        },
    );
    if let Some(e) = window.error.take() {
        return Err(e);
    }
    governed.finish(&mut session)?;
    let last = final_reading(&mut window, target, previous.1, read)?;
    let samples = AllocSamples::read(&session, symbols)?;
    let sampled_fraction = governed.sampled_fraction();
    drop(session);
    let exact = ExactAllocation::between(&first.alloc, &last.alloc, class_sizes);
    let profile = samples
        .pprof(
            &exact,
            target.binary.go_version(),
            window.elapsed.as_nanos() as u64,
        )
        .context("encoding the pprof profile")?;
    Ok(Observed {
        sites: samples.sites(&exact, window.elapsed.as_secs_f64()),
        window,
        first,
        last,
        sampled_fraction: Some(sampled_fraction),
        profile,
    })
}

fn render(r: &AllocReport) -> String {
    let mut out = String::new();
    let s = &r.sites;
    let samples = match s.source {
        SitesSource::MemoryProfile => format!("{} sampled allocations", s.samples),
        SitesSource::SpanRefillProbes => {
            format!("{} span refills and large objects sampled", s.samples)
        }
    };
    let _ = writeln!(
        out,
        "ALLOCATION  {}/s  {} objects/s over {:.1} s; sites {} ({samples})",
        bytes(r.bytes_per_s),
        count(r.objects_per_s),
        r.window_s,
        s.source_text(r.sampled_fraction),
    );
    let _ = writeln!(
        out,
        "  {:>11} {:>7} {:>12}  site",
        "bytes/s", "share", "objects/s"
    );
    for site in s.sites.iter().take(15) {
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
    if s.sites.is_empty() {
        let _ = writeln!(out, "  no allocation sampled in this window");
    }
    if s.unattributed_share > 0.005 {
        let _ = writeln!(
            out,
            "  {} of the bytes are in size classes no sample covered (lengthen the window or raise --overhead-budget)",
            percent(s.unattributed_share)
        );
    }
    if let Some(live) = &s.live_sites {
        let total: u64 = live.iter().map(|l| l.inuse_bytes).sum();
        let _ = writeln!(
            out,
            "LIVE HEAP   {} in use by site at the end (as of the last GC cycle the runtime published)",
            bytes(total as f64)
        );
        let _ = writeln!(
            out,
            "  {:>11} {:>7} {:>12}  site",
            "in use", "share", "objects"
        );
        for site in live.iter().take(15) {
            let _ = writeln!(
                out,
                "  {:>11} {:>7} {:>12}  {}  {}",
                bytes(site.inuse_bytes as f64),
                percent(site.share),
                count(site.inuse_objects as f64),
                site.function,
                site.position
            );
        }
    }
    if crate::flamegraph::is_svg(std::path::Path::new(&r.profile)) {
        let _ = writeln!(
            out,
            "flame graph of the bytes allocated written to {}",
            r.profile
        );
        return out;
    }
    let _ = writeln!(
        out,
        "profile written to {} (go tool pprof -sample_index=alloc_space -top {}{})",
        r.profile,
        r.profile,
        if s.live_sites.is_some() {
            "; -sample_index=inuse_space for the live heap"
        } else {
            ""
        }
    );
    out
}

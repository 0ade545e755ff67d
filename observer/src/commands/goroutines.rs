//! `goscope goroutines`: what every goroutine is doing, from the runtime's
//! goroutine table and each goroutine's stack in memory, without stopping
//! or changing the target (`goroutine_dump`); printed grouped by state and
//! stack, as runtime/pprof's debug=1 or debug=2 text, as JSON, as a pprof
//! goroutine profile, or as the difference from an earlier dump.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::Context as _;

use crate::{
    cli::GoroutinesArgs,
    goroutine_dump::{self, DumpLimits, GoroutineDump, JsonGoroutine, start_key},
    leak_watch::LeakWatch,
    output, pprof,
    report::goroutines::{self as text, DumpJson, EarlierDump},
    runtime::{
        goroutines::{GoroutineReader, Limits},
        labels::Label,
    },
    session::Session,
    symbols::SourceSymbolizer,
    target::{Liveness, display_path},
    wall_profile::WallProfile,
    window,
};

/// An earlier dump larger than this is refused (a JSON dump of a million
/// goroutines is about 300 MB; its groups are what a diff reads).
const MAX_EARLIER_BYTES: u64 = 1 << 30;

pub fn run(args: &GoroutinesArgs) -> anyhow::Result<i32> {
    let earlier = args.against.as_deref().map(read_earlier).transpose()?;
    let session = Session::open("goscope goroutines", args.target.clone())?;
    let (target, runtime) = (&session.target, &session.runtime);
    let version = target.binary.go_version();
    let reader = GoroutineReader::new(&runtime.layout, runtime.bias, version)
        .with_context(|| format!("pid {}: the goroutine table", target.pid))?
        .with_limits(Limits {
            max_goroutines: args.max_goroutines,
        });
    let symbols = SourceSymbolizer::new(&target.binary, runtime.bias);
    let limits = DumpLimits {
        max_stacks: usize::try_from(args.max_stacks).unwrap_or(usize::MAX),
        max_frames: usize::try_from(args.max_frames).unwrap_or(usize::MAX),
        include_system: args.system,
    };
    if let Some(seconds) = args.watch {
        return watch(args, &session, &reader, &symbols, limits, seconds);
    }
    if let Some(seconds) = args.profile {
        return profile(args, &session, &reader, &symbols, limits, seconds);
    }
    let dump = goroutine_dump::take(&reader, &runtime.memory, &symbols, runtime.bias, limits);
    // A dump of a program that exited or exec'd under it is no dump.
    match target.liveness() {
        Liveness::Alive => {}
        Liveness::Exited => anyhow::bail!("pid {} exited during the goroutine dump", target.pid),
        Liveness::Execd { path } => anyhow::bail!(
            "pid {} exec'd {} during the goroutine dump; no goroutines of the new program are reported",
            target.pid,
            display_path(&path)
        ),
    }
    let dump = dump.with_context(|| format!("pid {}: reading its goroutines", target.pid))?;
    let header = format!(
        "goscope goroutines: pid {} {} ({})",
        target.pid,
        display_path(&target.exe),
        version
    );
    if let Some(path) = &args.output {
        let title = crate::flamegraph::title("goroutines", target.pid, &target.exe, version);
        crate::flamegraph::write_profile(path, &goroutine_profile(&dump)?, &title)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("goscope: wrote the goroutine profile to {}", path.display());
    }
    if args.json {
        output::print_json(&DumpJson {
            pid: target.pid,
            executable: display_path(&target.exe),
            go_version: version.to_string(),
            allglen: dump.allglen,
            total: dump.goroutines.len(),
            system_left_out: dump.system_left_out,
            partial: dump.partial(),
            retried: dump.retried,
            truncated_stacks: dump.truncated(),
            stacks_not_walked: dump.stacks_not_walked,
            max_frames: dump.limits.max_frames,
            elapsed_ms: dump.elapsed.as_secs_f64() * 1e3,
            by_state: text::by_state(&dump),
            groups: text::groups(&dump),
            goroutines: dump
                .goroutines
                .iter()
                .map(|g| JsonGoroutine::of(&dump, g))
                .collect(),
        })?;
        return Ok(0);
    }
    let body = match (args.debug, &earlier) {
        (_, Some(earlier)) => format!(
            "{}\n{}",
            text::summary(&dump, &header),
            text::diff_text(earlier, &text::groups(&dump), dump.goroutines.len())
        ),
        (Some(1), None) => text::debug1_text(&dump),
        (Some(_), None) => text::debug2_text(&dump),
        (None, None) => text::grouped_text(&dump, &header, args.stacks, args.groups),
    };
    output::print_text(&body)?;
    Ok(0)
}

/// goscope's dumps take at most 1/this of a core while watching.
const WATCH_COST_DIVISOR: u32 = 20;

/// `--watch`: dumps at an interval, then the groups' trends with the leak
/// suspects first.
fn watch(
    args: &GoroutinesArgs,
    session: &Session,
    reader: &GoroutineReader,
    symbols: &SourceSymbolizer,
    limits: DumpLimits,
    seconds: f64,
) -> anyhow::Result<i32> {
    let (target, runtime) = (&session.target, &session.runtime);
    let interval = Duration::from_millis(args.watch_interval_ms);
    session.announce(&format!(
        "watching goroutines for {seconds:.0} s (a dump every {} ms or slower), Ctrl-C to stop early",
        args.watch_interval_ms
    ));
    let mut leaks = LeakWatch::default();
    let mut next_due = Duration::ZERO;
    let mut last_cost = Duration::ZERO;
    let window = window::observe(
        Duration::from_secs_f64(seconds),
        target,
        &session.stop,
        Some(Duration::from_millis(20)),
        |elapsed| {
            if elapsed < next_due {
                return Ok(());
            }
            let dump =
                goroutine_dump::take(reader, &runtime.memory, symbols, runtime.bias, limits)?;
            last_cost = dump.elapsed;
            leaks.add(&dump, elapsed);
            next_due = elapsed + interval.max(dump.elapsed * WATCH_COST_DIVISOR);
            Ok(())
        },
    );
    if let Some(error) = window.error {
        return Err(error.context(format!("pid {}: watching its goroutines", target.pid)));
    }
    let trends = leaks.trends();
    if args.json {
        output::print_json(&serde_json::json!({
            "pid": target.pid,
            "window_s": window.elapsed.as_secs_f64(),
            "samples": leaks.samples(),
            "untracked_groups": leaks.untracked_groups(),
            "last_dump_ms": last_cost.as_secs_f64() * 1e3,
            "suspects": trends.iter().filter(|t| t.suspect).collect::<Vec<_>>(),
            "groups": trends,
        }))?;
    } else {
        output::print_text(&text::watch_text(&trends, leaks.samples(), window.elapsed))?;
    }
    Ok(window.announce_end(target, "the trends cover what was observed until then"))
}

/// `--profile`: the wall-clock profile of the window.
fn profile(
    args: &GoroutinesArgs,
    session: &Session,
    reader: &GoroutineReader,
    symbols: &SourceSymbolizer,
    limits: DumpLimits,
    seconds: f64,
) -> anyhow::Result<i32> {
    let (target, runtime) = (&session.target, &session.runtime);
    let interval = Duration::from_millis(args.profile_interval_ms);
    session.announce(&format!(
        "sampling goroutines for {seconds:.0} s (every {} ms or slower), Ctrl-C to stop early",
        args.profile_interval_ms
    ));
    let mut wall = WallProfile::default();
    let (mut next_due, mut previous) = (Duration::ZERO, None::<Duration>);
    let mut step = interval;
    let mut slowest = Duration::ZERO;
    let window = window::observe(
        Duration::from_secs_f64(seconds),
        target,
        &session.stop,
        Some(Duration::from_millis(1)),
        |elapsed| {
            if elapsed < next_due {
                return Ok(());
            }
            let dump =
                goroutine_dump::take(reader, &runtime.memory, symbols, runtime.bias, limits)?;
            slowest = slowest.max(dump.elapsed);
            // Each sample stands for the time since the previous one, up
            // to twice the interval it was due after.
            let dt = previous.map_or(interval, |p| elapsed.saturating_sub(p));
            wall.add(&dump, dt.as_nanos() as u64, 2 * step.as_nanos() as u64);
            previous = Some(elapsed);
            step = interval.max(dump.elapsed * WATCH_COST_DIVISOR);
            next_due = elapsed + step;
            Ok(())
        },
    );
    if let Some(error) = window.error {
        return Err(error.context(format!("pid {}: sampling its goroutines", target.pid)));
    }
    if let Some(path) = &args.output {
        let title = crate::flamegraph::title(
            "goroutines --profile",
            target.pid,
            &target.exe,
            target.binary.go_version(),
        );
        crate::flamegraph::write_profile(path, &wall.to_pprof()?, &title)
            .with_context(|| format!("writing {}", path.display()))?;
        if crate::flamegraph::is_svg(path) {
            eprintln!(
                "goscope: wrote the wall-clock flame graph to {}",
                path.display()
            );
        } else {
            eprintln!(
                "goscope: wrote the wall-clock profile to {} (go tool pprof -sample_index=waiting -top {})",
                path.display(),
                path.display()
            );
        }
    }
    let rows = wall.rows();
    if args.json {
        output::print_json(&serde_json::json!({
            "pid": target.pid,
            "window_s": window.elapsed.as_secs_f64(),
            "samples": wall.samples,
            "unobserved_s": wall.unobserved_ns as f64 / 1e9,
            "slowest_sample_ms": slowest.as_secs_f64() * 1e3,
            "by_state_s": wall.by_state().into_iter().map(|(c, s)| (c.name(), s)).collect::<HashMap<_, _>>(),
            "rows": rows,
        }))?;
    } else {
        output::print_text(&text::wall_text(&wall, &rows, args.groups))?;
    }
    Ok(window.announce_end(target, "the profile covers what was sampled until then"))
}

fn read_earlier(path: &Path) -> anyhow::Result<EarlierDump> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("--against {}", path.display()))?;
    // Read through a cap, not by the size the file claims (a FIFO or a
    // /proc file says 0).
    let mut bytes = Vec::new();
    file.take(MAX_EARLIER_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("--against {}", path.display()))?;
    if bytes.len() as u64 > MAX_EARLIER_BYTES {
        anyhow::bail!(
            "--against {}: more than a goroutine dump's {MAX_EARLIER_BYTES} bytes",
            path.display()
        );
    }
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "--against {}: not a `goscope goroutines --json` dump",
            path.display()
        )
    })
}

/// The dump as runtime/pprof's goroutine profile: one sample per stack
/// (and state) with its goroutine count; a running goroutine, which has
/// no saved stack, is its start function; state and wait reason are
/// sample labels (`go tool pprof -tagfocus=state=waiting`).
fn goroutine_profile(dump: &GoroutineDump) -> anyhow::Result<Vec<u8>> {
    let mut profile = pprof::Profile::new(&[("goroutine", "count")], ("goroutine", "count"), 1);
    for (stack, state, reason, labels, n) in grouped_for_profile(dump) {
        let mut tags: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        tags.push(("state", state));
        if let Some(reason) = reason.filter(|r| !r.is_empty()) {
            tags.push(("wait_reason", reason));
        }
        profile.add_labeled(&stack, &[n], &tags);
    }
    Ok(profile.encode(0)?)
}

/// A stack with its state, wait reason, labels and goroutine count.
type ProfileRow<'a> = (
    Vec<pprof::Location>,
    &'static str,
    Option<&'a str>,
    &'a [Label],
    i64,
);

/// One row per distinct stack, state, wait reason and labels.
fn grouped_for_profile(dump: &GoroutineDump) -> Vec<ProfileRow<'_>> {
    type Key<'a> = (&'a [u64], u64, &'static str, Option<&'a str>, &'a [Label]);
    let mut counts: HashMap<Key<'_>, i64> = HashMap::new();
    for g in &dump.goroutines {
        let start = if g.pcs().is_empty() { g.startpc } else { 0 };
        *counts
            .entry((
                g.pcs(),
                start,
                g.status.name(),
                g.wait_reason.as_deref(),
                &g.labels[..],
            ))
            .or_default() += 1;
    }
    let mut rows: Vec<ProfileRow<'_>> = counts
        .into_iter()
        .map(|((pcs, start, state, reason, labels), n)| {
            let stack = if pcs.is_empty() {
                vec![dump.location(start_key(start))]
            } else {
                pcs.iter().map(|&pc| dump.location(pc)).collect()
            };
            (stack, state, reason, labels, n)
        })
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.4));
    rows
}

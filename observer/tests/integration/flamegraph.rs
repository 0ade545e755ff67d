//! Flame graphs of a real CPU profile: `goscope cpu -o x.svg` writes one
//! titled with the target and the measure; `goscope flamegraph` renders a
//! `goscope cpu -o x.pb.gz` profile whose hot functions' widths (the
//! outermost frames of each, as a share of all samples) agree with their
//! cumulative shares per `go tool pprof -top -cum` of the same file within
//! 2 percentage points.

use std::{collections::HashMap, path::Path, process::Command};

use testkit::{Goscope, Target, require_root_or_skip};

use crate::util::{cgo, loadgen};

/// The Go release the target is built with.
const VERSION: &str = "1.27";
/// Functions whose cumulative share is at least this are compared.
const HOT_PCT: f64 = 3.0;
/// Largest difference allowed between a width and pprof's cum%.
const TOLERANCE_PCT: f64 = 2.0;

/// One drawn frame: name, depth (0 = root), first sample and width.
struct Frame {
    name: String,
    y: i64,
    x: u64,
    w: u64,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The frames and total samples of an inferno SVG: each frame is
/// `<g><title>NAME (N unit, P%)</title><rect ... fg:x=".." fg:w=".."/>`.
fn frames(svg: &str) -> (Vec<Frame>, u64) {
    let total = svg
        .find("total_samples=\"")
        .and_then(|i| attr(&svg[i - 1..], "total_samples"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no total_samples in the SVG"));
    let mut frames = Vec::new();
    for group in svg.split("<g>").skip(1) {
        let (Some(t0), Some(t1)) = (group.find("<title>"), group.find("</title>")) else {
            continue;
        };
        let title = unescape(&group[t0 + 7..t1]);
        let Some(rect) = group.find("<rect").map(|i| &group[i..]) else {
            continue;
        };
        let rect = &rect[..rect.find("/>").unwrap_or(rect.len())];
        let name = title.rsplit_once(" (").map_or(title.as_str(), |(n, _)| n);
        if name == "all" {
            continue;
        }
        frames.push(Frame {
            name: name.to_string(),
            y: attr(rect, "y").unwrap().parse().unwrap(),
            x: attr(rect, "fg:x").unwrap().parse().unwrap(),
            w: attr(rect, "fg:w").unwrap().parse().unwrap(),
        });
    }
    (frames, total)
}

/// Each function's share of all samples in the flame graph: the widths of
/// its outermost frames (a frame inside another of the same function, a
/// recursive call, is already counted).
fn widths(svg: &str) -> HashMap<String, f64> {
    let (frames, total) = frames(svg);
    let mut shares: HashMap<String, f64> = HashMap::new();
    for f in &frames {
        // The root is drawn at the bottom: a caller has a larger y.
        let nested = frames
            .iter()
            .any(|g| g.name == f.name && g.y > f.y && g.x <= f.x && g.x + g.w >= f.x + f.w);
        if !nested {
            *shares.entry(f.name.clone()).or_default() += 100.0 * f.w as f64 / total as f64;
        }
    }
    shares
}

/// Function → cum% per `go tool pprof -top -cum` (every node shown).
fn pprof_cum(profile: &Path) -> Vec<(String, f64)> {
    let go = testkit::go_binary(VERSION).unwrap();
    let out = Command::new(go)
        .args([
            "tool",
            "pprof",
            "-top",
            "-cum",
            "-nodecount=1000000",
            "-nodefraction=0",
            "-edgefraction=0",
        ])
        .arg(profile)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof failed on {}: {}",
        profile.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let cum = fields.get(4)?.trim_end_matches('%').parse::<f64>().ok()?;
            Some((fields.get(5..)?.join(" "), cum))
        })
        .collect()
}

/// Runs `goscope cpu -o output` around one batch of the target.
fn profile_one_batch(target: &mut Target, output: &Path) {
    let pid = target.pid.to_string();
    let mut goscope = Goscope::start(&[
        "cpu",
        "--pid",
        &pid,
        "--duration",
        "600",
        "--hz",
        "499",
        "-o",
        output.to_str().unwrap(),
    ])
    .unwrap();
    goscope.wait_attached().unwrap();
    target.run_batch().unwrap();
    let finished = goscope.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

#[test]
fn flame_graph_widths_agree_with_pprof_cum() {
    if !require_root_or_skip("flame_graph_widths_agree_with_pprof_cum") {
        return;
    }
    let dir = testkit::workspace_root().join("target/flamegraph-test");
    std::fs::create_dir_all(&dir).unwrap();
    let direct = dir.join("cpu.svg");
    let profile = dir.join("cpu.pb.gz");
    let rendered = dir.join("rendered.svg");
    let binary = loadgen(VERSION, &cgo());
    // The JSON service workload: transactions in goroutines, encoding/json,
    // fmt, maps; one batch is one to two seconds of CPU.
    let mut target = Target::start(&binary, &["-work", "service", "-scale", "30"], &[]).unwrap();
    let pid = target.pid;

    // `-o x.svg`: the flame graph itself, titled with the target and measure.
    profile_one_batch(&mut target, &direct);
    let svg = std::fs::read_to_string(&direct).unwrap();
    let version = crate::util::toolchain_version(VERSION);
    let exe = binary.file_name().unwrap().to_string_lossy();
    let title = format!("goscope cpu pid {pid} ({exe}, {version}): cpu nanoseconds");
    assert!(svg.contains(&title), "no {title:?} in {}", direct.display());
    assert!(
        widths(&svg)
            .get("main.serviceTransaction")
            .is_some_and(|w| *w > 10.0),
        "main.serviceTransaction is not a wide frame of {}",
        direct.display()
    );

    // `-o x.pb.gz`, then `goscope flamegraph` of that very profile.
    profile_one_batch(&mut target, &profile);
    target.quit().unwrap();
    let finished = testkit::goscope::run(&[
        "flamegraph",
        profile.to_str().unwrap(),
        "-o",
        rendered.to_str().unwrap(),
    ])
    .unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    let svg = std::fs::read_to_string(&rendered).unwrap();
    assert!(svg.contains(": cpu nanoseconds"), "{}", rendered.display());
    let widths = widths(&svg);
    let hot: Vec<(String, f64)> = pprof_cum(&profile)
        .into_iter()
        .filter(|(name, cum)| *cum >= HOT_PCT && !name.contains(' '))
        .collect();
    assert!(
        hot.iter().any(|(n, _)| n == "main.serviceTransaction"),
        "main.serviceTransaction is not hot per pprof: {hot:?}"
    );
    let mut failures = Vec::new();
    for (name, cum) in &hot {
        let width = widths.get(name).copied().unwrap_or(0.0);
        eprintln!("{name}: flame graph {width:.2}%, pprof cum {cum:.2}%");
        if (width - cum).abs() > TOLERANCE_PCT {
            failures.push(format!("{name}: width {width:.2}% vs cum {cum:.2}%"));
        }
    }
    assert!(
        hot.len() >= 5,
        "only {} functions at {HOT_PCT}% or more: {hot:?}",
        hot.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
}

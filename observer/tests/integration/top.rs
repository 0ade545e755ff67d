//! `goscope top` in a real terminal (tmux): it draws the live figures of a
//! real target, switches panes on keys, quits on `q` with the terminal
//! restored and the target unharmed, and keeps its own messages in the log
//! file.

use std::time::Duration;

use testkit::{Target, TmuxSession, require_root_or_skip};

use crate::util::{cgo, loadgen};

/// Polls the pane until `wanted` returns true (30 s at most: a loaded
/// host may take seconds before the CPU sampler has seen every site).
fn wait_for_pane(session: &TmuxSession, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    session
        .wait_for(what, Duration::from_secs(30), wanted)
        .unwrap_or_else(|e| panic!("top: {e}"))
}

#[test]
fn top_draws_switches_panes_and_restores_the_terminal() {
    if !require_root_or_skip("top_draws_switches_panes_and_restores_the_terminal") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let mut target = Target::start(&binary, &["-work", "alloc", "-background"], &[]).unwrap();
    let name = format!("goscope-top-{}", std::process::id());
    let log = std::env::temp_dir().join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let command = format!(
        "{} top --pid {} --overhead-budget off --log {}; echo GOSCOPE_EXIT=$?; sleep 30",
        testkit::goscope_binary().display(),
        target.pid,
        log.display()
    );
    let session = TmuxSession::start(&name, 150, 45, &command).unwrap();

    let screen = wait_for_pane(&session, "allocation figures", |s| {
        s.contains("/s allocated") && s.contains("cycles/s")
    });
    assert!(screen.contains(&format!("pid {}", target.pid)), "{screen}");
    assert!(screen.contains("go1.27"), "{screen}");
    // The alloc workload allocates hundreds of MB/s: the figure is not 0.
    let rate_line = screen.lines().find(|l| l.contains("/s allocated")).unwrap();
    assert!(!rate_line.contains("│0 B/s"), "{rate_line}");

    session.send_keys("2").unwrap();
    wait_for_pane(&session, "the size-class pane", |s| {
        s.contains("Allocation by size class") && s.contains("48 B")
    });
    session.send_keys("3").unwrap();
    wait_for_pane(&session, "the sites pane", |s| {
        s.contains("Top allocation sites") && s.contains("main.allocMix")
    });
    // The figures pane: the figure table, with each runtime/metrics twin.
    session.send_keys("4").unwrap();
    wait_for_pane(&session, "the figures pane", |s| {
        s.contains("heap bytes allocated") && s.contains("/gc/heap/allocs:bytes")
    });
    session.send_keys("q").unwrap();
    let screen = wait_for_pane(&session, "its exit", |s| s.contains("GOSCOPE_EXIT="));
    drop(session);
    assert!(screen.contains("GOSCOPE_EXIT=0"), "{screen}");
    // The alternate screen is gone: nothing of the view is left.
    assert!(!screen.contains("goscope top ·"), "{screen}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("attached to pid"), "log: {logged}");
    assert!(target.is_running(), "the target died");
    let _ = std::fs::remove_file(&log);
}

/// Starts top on `target` in a detached tmux session of `width` x
/// `height`, its log in the temporary directory.
fn top_in_tmux(target: &Target, tag: &str, width: u16, height: u16) -> TmuxSession {
    let name = format!("goscope-top-{tag}-{}", std::process::id());
    let log = std::env::temp_dir().join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let command = format!(
        "{} top --pid {} --log {}; echo GOSCOPE_EXIT=$?; sleep 30",
        testkit::goscope_binary().display(),
        target.pid,
        log.display()
    );
    TmuxSession::start(&name, width, height, &command).unwrap()
}

/// Quits top and waits for it to detach and exit (killing the pane first
/// would SIGHUP it on its way out).
fn quit_top(session: TmuxSession, tag: &str) {
    session.send_keys("q").unwrap();
    let screen = wait_for_pane(&session, "its exit", |s| s.contains("GOSCOPE_EXIT="));
    drop(session);
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("goscope-top-{tag}-{}.log", std::process::id())),
    );
    assert!(screen.contains("GOSCOPE_EXIT=0"), "{screen}");
}

/// GOMEMLIMIT as top prints it (decimal units, two decimals).
fn shown_limit(limit_bytes: u64) -> String {
    format!("GOMEMLIMIT {:.2} GB", limit_bytes as f64 / 1e9)
}

const SITES: [&str; 3] = ["main.allocNodes", "main.allocBuffers", "main.allocLarge"];
/// The GOMEMLIMIT the sites target runs with.
const LIMIT: u64 = 1500 << 20;

/// The `sites` workload (three allocation sites) under GOMEMLIMIT=LIMIT.
fn sites_target() -> Target {
    let binary = loadgen("1.27", &cgo());
    Target::start(
        &binary,
        &["-work", "sites", "-background"],
        &[("GOMEMLIMIT", &LIMIT.to_string())],
    )
    .unwrap()
}

#[test]
fn top_at_80x24_keeps_the_limit_the_sites_and_the_verdicts_whole() {
    if !require_root_or_skip("top_at_80x24_keeps_the_limit_the_sites_and_the_verdicts_whole") {
        return;
    }
    let mut target = sites_target();
    let session = top_in_tmux(&target, "small", 80, 24);
    // Wait for the figures and for all three sites (since attach).
    let screen = wait_for_pane(&session, "the compact overview with three sites", |s| {
        s.contains("GOMEMLIMIT") && SITES.iter().all(|site| s.contains(site))
    });
    let lines: Vec<&str> = screen.lines().collect();
    let limit_line = lines
        .iter()
        .find(|l| l.starts_with("heap live "))
        .unwrap_or_else(|| panic!("no heap line:\n{screen}"));
    assert!(
        limit_line.contains(&shown_limit(LIMIT)),
        "GOMEMLIMIT cut off or wrong at 80 columns: {limit_line:?}\n{screen}"
    );
    // The three questions each have their line: CPU, allocation, GC pacing.
    for start in ["CPU ", "alloc ", "heap live ", "STW ", "goroutines "] {
        assert!(
            lines.iter().any(|l| l.starts_with(start)),
            "no line starts with {start:?} at 80x24:\n{screen}"
        );
    }
    // The verdicts come first, whole: the line under the tabs is a verdict
    // (or the all-clear), and the figures follow them on the screen.
    let first = lines[2];
    assert!(
        first.starts_with("nothing stands out")
            || ["info ", "WARN ", "CRIT "]
                .iter()
                .any(|s| first.starts_with(s)),
        "the first body line is not a verdict: {first:?}\n{screen}"
    );
    let cpu_row = lines.iter().position(|l| l.starts_with("CPU ")).unwrap();
    assert!(
        lines[2..cpu_row].iter().all(|l| !l.trim().is_empty()),
        "{screen}"
    );
    assert!(lines.last().unwrap().contains("q quit"), "{screen}");
    quit_top(session, "small");
    assert!(target.is_running(), "the target died");
}

#[test]
fn top_at_160x50_keeps_the_full_overview() {
    if !require_root_or_skip("top_at_160x50_keeps_the_full_overview") {
        return;
    }
    let mut target = sites_target();
    let session = top_in_tmux(&target, "large", 160, 50);
    let screen = wait_for_pane(&session, "the full overview with three sites", |s| {
        s.contains("heap live vs goal") && SITES.iter().all(|site| s.contains(site))
    });
    for panel in [
        " Allocation ",
        " GC ",
        " Scheduler ",
        " Verdicts (last second) ",
    ] {
        assert!(screen.contains(panel), "no {panel:?} panel:\n{screen}");
    }
    assert!(screen.contains(&shown_limit(LIMIT)), "{screen}");
    assert!(
        screen.contains(" MB/s "),
        "no allocation sparkline:\n{screen}"
    );
    quit_top(session, "large");
    assert!(target.is_running(), "the target died");
}

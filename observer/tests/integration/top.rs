//! `goscope top` in a real terminal (tmux): it draws the live figures of a
//! real target, switches panes on keys, quits on `q` with the terminal
//! restored and the target unharmed, and keeps its own messages in the log
//! file.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use testkit::{Target, require_root_or_skip};

use crate::util::{cgo, loadgen};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("running tmux (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn capture(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// Polls the pane until `wanted` returns true (10 s at most).
fn wait_for_pane(session: &str, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let screen = capture(session);
        if wanted(&screen) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "top never showed {what}; the pane:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn top_draws_switches_panes_and_restores_the_terminal() {
    if !require_root_or_skip("top_draws_switches_panes_and_restores_the_terminal") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    let mut target = Target::start(&binary, &["-work", "alloc", "-background"], &[]).unwrap();
    let session = format!("goscope-top-{}", std::process::id());
    let log = std::env::temp_dir().join(format!("{session}.log"));
    let _ = std::fs::remove_file(&log);
    let command = format!(
        "{} top --pid {} --overhead-budget off --log {}; echo GOSCOPE_EXIT=$?; sleep 30",
        testkit::goscope_binary().display(),
        target.pid,
        log.display()
    );
    tmux(&["kill-session", "-t", &session]);
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "150",
        "-y",
        "45",
        &command,
    ]);

    let screen = wait_for_pane(&session, "allocation figures", |s| {
        s.contains("/s allocated") && s.contains("cycles/s")
    });
    assert!(screen.contains(&format!("pid {}", target.pid)), "{screen}");
    assert!(screen.contains("go1.27"), "{screen}");
    // The alloc workload allocates hundreds of MB/s: the figure is not 0.
    let rate_line = screen.lines().find(|l| l.contains("/s allocated")).unwrap();
    assert!(!rate_line.contains("│0 B/s"), "{rate_line}");

    tmux(&["send-keys", "-t", &session, "2"]);
    wait_for_pane(&session, "the size-class pane", |s| {
        s.contains("Allocation by size class") && s.contains("48 B")
    });
    tmux(&["send-keys", "-t", &session, "3"]);
    wait_for_pane(&session, "the sites pane", |s| {
        s.contains("Top allocation sites") && s.contains("main.allocMix")
    });
    // The figures pane: the figure table, with each runtime/metrics twin.
    tmux(&["send-keys", "-t", &session, "4"]);
    wait_for_pane(&session, "the figures pane", |s| {
        s.contains("heap bytes allocated") && s.contains("/gc/heap/allocs:bytes")
    });
    tmux(&["send-keys", "-t", &session, "q"]);
    let screen = wait_for_pane(&session, "its exit", |s| s.contains("GOSCOPE_EXIT="));
    tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("GOSCOPE_EXIT=0"), "{screen}");
    // The alternate screen is gone: nothing of the view is left.
    assert!(!screen.contains("goscope top ·"), "{screen}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("attached to pid"), "log: {logged}");
    assert!(target.is_running(), "the target died");
    let _ = std::fs::remove_file(&log);
}

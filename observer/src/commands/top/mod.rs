//! `goscope top`: a live terminal view (ratatui) of the figures doctor
//! computes, refreshed every second from the same attachment and the same
//! code (no figure computed twice). Keys switch panes and quit; the
//! terminal is restored on every exit, panics included; stderr goes to a
//! log file while the view is up, so nothing writes into it.

mod compact;
mod terminal;
mod view;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::{
    attachment::{self, Sample},
    cli::TopArgs,
    probes::governor,
    report::DoctorReport,
    session::Session,
    target::Liveness,
    window::WindowEnd,
};

/// Seconds of history the sparklines keep.
const HISTORY: usize = 300;

/// Which pane is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Overview,
    SizeClasses,
    Sites,
    Figures,
}

impl Pane {
    pub const ALL: [Pane; 4] = [
        Pane::Overview,
        Pane::SizeClasses,
        Pane::Sites,
        Pane::Figures,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Overview => "1 Overview",
            Pane::SizeClasses => "2 Size classes",
            Pane::Sites => "3 Sites",
            Pane::Figures => "4 Figures",
        }
    }
}

/// What the view shows: the last second's report, the report since
/// attach (for sites), and per-second history for sparklines.
pub struct State {
    pub pane: Pane,
    pub last: Option<DoctorReport>,
    pub since_attach: Option<DoctorReport>,
    pub alloc_bytes: VecDeque<u64>,
    pub alloc_objects: VecDeque<u64>,
    pub gc_cycles: VecDeque<u64>,
    pub goroutines_created: VecDeque<u64>,
    pub started: Instant,
    pub header: String,
    /// The header for small terminals: the executable's name, not its path.
    pub short_header: String,
    pub log: String,
}

fn push(history: &mut VecDeque<u64>, value: f64) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(value.max(0.0).round() as u64);
}

pub fn run(args: &TopArgs) -> anyhow::Result<i32> {
    let session = Session::open("goscope top", args.target.clone())?;
    let pid = session.target.pid;
    let stop = session.stop.clone();
    let attachment = attachment::attach(
        session,
        args.overhead_budget.percent(),
        !args.no_sites,
        None,
    )?;
    // Never through a link: $XDG_RUNTIME_DIR/goscope or /run/goscope (0700).
    let (log_path, log) = match &args.log {
        Some(path) => (path.clone(), crate::outfile::open_log(path)?),
        None => crate::outfile::open_private_log(&format!("top-{pid}.log"))?,
    };
    let started = Instant::now();
    let first = attachment.sample(Duration::ZERO)?;
    let t = attachment.target();
    let mut state = State {
        pane: Pane::Overview,
        last: None,
        since_attach: None,
        alloc_bytes: VecDeque::new(),
        alloc_objects: VecDeque::new(),
        gc_cycles: VecDeque::new(),
        goroutines_created: VecDeque::new(),
        started,
        header: format!(
            "pid {}  {}  {}",
            t.pid,
            t.exe.display(),
            crate::format::bounded(&t.binary.build.go_version_string, crate::format::MAX_SHOWN)
        ),
        short_header: format!(
            "pid {} {} {}",
            t.pid,
            crate::format::bounded(
                &t.exe.file_name().map_or_else(
                    || t.exe.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                24
            ),
            crate::format::bounded(&t.binary.build.go_version_string, 16)
        ),
        log: log_path.display().to_string(),
    };
    let interval = Duration::from_millis(args.interval_ms);
    let mut terminal = terminal::Screen::enter(&log)
        .with_context(|| format!("setting up the terminal (log: {})", log_path.display()))?;
    eprintln!("goscope top: attached to pid {}", t.pid);
    let mut previous: Sample = attachment.sample(started.elapsed())?;
    let mut next_sample = interval;
    let mut ended = None;
    terminal.draw(&state)?;
    let mut quit = false;
    while ended.is_none() && !quit {
        if stop.raised() {
            break;
        }
        if event::poll(governor::POLL)?
            && let Event::Key(key) = event::read()?
            && key.kind != KeyEventKind::Release
        {
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => quit = true,
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    quit = true;
                }
                KeyCode::Char('1') => state.pane = Pane::Overview,
                KeyCode::Char('2') => state.pane = Pane::SizeClasses,
                KeyCode::Char('3') => state.pane = Pane::Sites,
                KeyCode::Char('4') => state.pane = Pane::Figures,
                KeyCode::Tab | KeyCode::Right => {
                    let i = Pane::ALL.iter().position(|p| *p == state.pane).unwrap_or(0);
                    state.pane = Pane::ALL[(i + 1) % Pane::ALL.len()];
                }
                KeyCode::BackTab | KeyCode::Left => {
                    let i = Pane::ALL.iter().position(|p| *p == state.pane).unwrap_or(0);
                    state.pane = Pane::ALL[(i + Pane::ALL.len() - 1) % Pane::ALL.len()];
                }
                _ => {}
            }
            terminal.draw(&state)?;
        }
        let liveness = attachment.target().liveness();
        if liveness != Liveness::Alive {
            ended = Some(liveness);
            break;
        }
        if let Err(e) = attachment.govern() {
            eprintln!("goscope top: governing the probes: {e:#}");
        }
        let at = started.elapsed();
        if at < next_sample {
            continue;
        }
        next_sample = at + interval;
        match attachment.sample(at) {
            Ok(now) => {
                match attachment.report(&previous, &now, WindowEnd::Elapsed) {
                    Ok(report) => {
                        push(&mut state.alloc_bytes, report.alloc.bytes_per_s);
                        push(&mut state.alloc_objects, report.alloc.objects_per_s);
                        push(&mut state.gc_cycles, report.gc.cycles_per_s);
                        push(
                            &mut state.goroutines_created,
                            report.goroutines.created_per_s,
                        );
                        state.last = Some(report);
                    }
                    Err(e) => eprintln!("goscope top: {e:#}"),
                }
                match attachment.report(&first, &now, WindowEnd::Elapsed) {
                    Ok(report) => state.since_attach = Some(report),
                    Err(e) => eprintln!("goscope top: {e:#}"),
                }
                attachment.predict(&previous, &now);
                previous = now;
            }
            Err(e) => match attachment.target().liveness() {
                Liveness::Alive => eprintln!("goscope top: {e:#}"),
                gone => ended = Some(gone),
            },
        }
        terminal.draw(&state)?;
    }
    drop(terminal);
    drop(attachment);
    Ok(match ended {
        Some(Liveness::Execd { path }) => {
            eprintln!(
                "goscope top: pid {} exec'd {} inside the window; no figures of the new program are reported",
                pid,
                crate::target::display_path(&path)
            );
            WindowEnd::TargetExecd.exit_status()
        }
        Some(_) => {
            eprintln!("goscope top: pid {pid} exited");
            WindowEnd::TargetExited.exit_status()
        }
        None => WindowEnd::Interrupted.exit_status(),
    })
}

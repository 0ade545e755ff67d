//! The observation window: runs until its duration elapses, Ctrl-C (SIGINT)
//! or SIGTERM arrives, the target exits or execs another program, or a
//! reading fails while the target lives; whichever comes first.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::target::{Liveness, TargetProcess};

/// Exit status when the target ended (exited or exec'd) inside the window;
/// the report of what was observed until then is still printed.
pub const EXIT_TARGET_ENDED: i32 = 3;

const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the target's liveness is checked (reading /proc/PID/stat
/// walks the target's threads, so not at every tick).
const LIVENESS_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowEnd {
    Elapsed,
    Interrupted,
    TargetExited,
    /// The process exec'd another program (or the same binary anew).
    TargetExecd,
}

impl WindowEnd {
    /// The process exit status for a window that ended this way.
    pub fn exit_status(self) -> i32 {
        match self {
            Self::Elapsed | Self::Interrupted => 0,
            Self::TargetExited | Self::TargetExecd => EXIT_TARGET_ENDED,
        }
    }

    /// True when the target is gone (or is another program now).
    pub fn target_ended(self) -> bool {
        matches!(self, Self::TargetExited | Self::TargetExecd)
    }

    /// How a liveness check ends the window, if it does.
    pub fn from_liveness(liveness: &Liveness) -> Option<Self> {
        match liveness {
            Liveness::Alive => None,
            Liveness::Exited => Some(Self::TargetExited),
            Liveness::Execd { .. } => Some(Self::TargetExecd),
        }
    }
}

/// How a window ended: why, after how long, and the first error a reading
/// raised while the target still ran the program goscope parsed.
pub struct Window {
    pub end: WindowEnd,
    pub elapsed: Duration,
    pub error: Option<anyhow::Error>,
    /// The program the target exec'd, when it did.
    pub execd: Option<std::path::PathBuf>,
}

impl Window {
    /// Tells the user how the window ended when the target did not last it
    /// (on stderr), and returns the exit status. `report_covers` says what
    /// the printed figures cover, e.g. "the report covers what was observed
    /// until then".
    pub fn announce_end(&self, target: &TargetProcess, report_covers: &str) -> i32 {
        match self.end {
            WindowEnd::TargetExited => eprintln!(
                "goscope: pid {} exited {:.1} s into the window; {report_covers}",
                target.pid,
                self.elapsed.as_secs_f64()
            ),
            WindowEnd::TargetExecd => eprintln!(
                "goscope: pid {} exec'd {} inside the window ({:.1} s in); no figures of the new program are reported; {report_covers}",
                target.pid,
                self.execd.as_deref().map_or_else(
                    || "another program".to_string(),
                    crate::target::display_path
                ),
                self.elapsed.as_secs_f64()
            ),
            WindowEnd::Elapsed | WindowEnd::Interrupted => {}
        }
        self.end.exit_status()
    }

    /// Records that the target ended, as a later check found.
    pub fn ended(&mut self, liveness: Liveness) {
        if let Some(end) = WindowEnd::from_liveness(&liveness) {
            self.end = end;
            if let Liveness::Execd { path } = liveness {
                self.execd = Some(path);
            }
        }
    }
}

/// Catches SIGINT/SIGTERM/SIGHUP from process start, so that a signal arriving
/// during attach still ends the window cleanly (and detaches).
#[derive(Clone)]
pub struct StopSignal {
    raised: Arc<AtomicBool>,
}

impl StopSignal {
    pub fn install() -> anyhow::Result<Self> {
        let raised = Arc::new(AtomicBool::new(false));
        // SIGHUP too, unless it is ignored (nohup): a closed terminal or
        // ssh session ends the window as Ctrl-C does, with the probes
        // detached on goscope's way out rather than by the kernel while it
        // is being killed (where it can fail: "leaking uprobe" in dmesg).
        let mut signals = vec![signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
        if !ignored(signal_hook::consts::SIGHUP) {
            signals.push(signal_hook::consts::SIGHUP);
        }
        for signal in signals {
            // A second signal while the first is being handled (a read stuck
            // on the target, say) ends goscope at once; the kernel removes
            // its probes whatever way it exits.
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&raised))?;
            signal_hook::flag::register(signal, Arc::clone(&raised))?;
        }
        Ok(Self { raised })
    }

    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }
}

/// Whether `signal`'s disposition is SIG_IGN (inherited from nohup, say).
fn ignored(signal: i32) -> bool {
    // SAFETY: a query (no new action); `old` is written by the kernel.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Waits out the window, calling `on_tick` every `tick` (if given) with the
/// time since the window began. The first error `on_tick` returns while the
/// target lives ends the window and is returned; an error after the target
/// ended is the target's end, not a failure.
pub fn observe(
    duration: Duration,
    target: &TargetProcess,
    stop: &StopSignal,
    tick: Option<Duration>,
    mut on_tick: impl FnMut(Duration) -> anyhow::Result<()>,
) -> Window {
    let start = Instant::now();
    let mut next_tick = tick;
    let mut next_liveness = Duration::ZERO;
    let mut status = crate::live_status::LiveStatus::new(duration);
    let finish = |end, error, execd| Window {
        end,
        elapsed: start.elapsed(),
        error,
        execd,
    };
    loop {
        let elapsed = start.elapsed();
        if stop.raised() {
            return finish(WindowEnd::Interrupted, None, None);
        }
        if elapsed >= next_liveness {
            match target.liveness() {
                Liveness::Alive => {}
                Liveness::Exited => return finish(WindowEnd::TargetExited, None, None),
                Liveness::Execd { path } => {
                    return finish(WindowEnd::TargetExecd, None, Some(path));
                }
            }
            next_liveness = elapsed + LIVENESS_INTERVAL;
        }
        if elapsed >= duration {
            return finish(WindowEnd::Elapsed, None, None);
        }
        if let (Some(due), Some(step)) = (next_tick, tick)
            && elapsed >= due
        {
            if let Err(e) = on_tick(elapsed) {
                return match target.liveness() {
                    Liveness::Alive => finish(WindowEnd::Elapsed, Some(e), None),
                    Liveness::Exited => finish(WindowEnd::TargetExited, None, None),
                    Liveness::Execd { path } => finish(WindowEnd::TargetExecd, None, Some(path)),
                };
            }
            next_tick = Some(due + step);
        }
        status.tick(start.elapsed());
        let nap = tick.map_or(POLL_INTERVAL, |t| t.min(POLL_INTERVAL));
        std::thread::sleep(nap.min(duration.saturating_sub(start.elapsed())));
    }
}

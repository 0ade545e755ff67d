//! The one-line live status a long window shows on stderr when stderr is
//! a terminal: elapsed of total and what the command says it has so far
//! (`set_detail`); nothing at all when stderr is not a terminal.

use std::{
    io::{IsTerminal as _, Write as _},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Windows shorter than this show no status.
const MIN_WINDOW: Duration = Duration::from_secs(2);
/// Redraws at most this often.
const REDRAW: Duration = Duration::from_millis(250);
/// The detail is cut to this many characters (a terminal line).
const MAX_DETAIL: usize = 100;

static DETAIL: Mutex<String> = Mutex::new(String::new());
static SUPPRESSED: AtomicBool = AtomicBool::new(false);

/// For commands whose output streams to the terminal as the window goes
/// (`gc`, `sched`, `goroutines --watch`): a status line would be drawn
/// between their lines.
pub fn suppress() {
    SUPPRESSED.store(true, Ordering::Relaxed);
}

/// What the command has so far, e.g. "142 GC cycles; assist probes
/// detached (budget)"; shown after the elapsed time.
pub fn set_detail(detail: impl Into<String>) {
    if let Ok(mut d) = DETAIL.lock() {
        *d = detail.into();
    }
}

/// The status line of one window.
pub struct LiveStatus {
    enabled: bool,
    total: Duration,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl LiveStatus {
    /// On when stderr is a terminal and the window is long.
    pub fn new(total: Duration) -> Self {
        set_detail(String::new());
        Self {
            enabled: std::io::stderr().is_terminal()
                && total >= MIN_WINDOW
                && !SUPPRESSED.load(Ordering::Relaxed),
            total,
            last_draw: None,
            drawn: false,
        }
    }

    /// The line for `elapsed` (without control characters).
    pub fn line(&self, elapsed: Duration, detail: &str) -> String {
        let total = if self.total >= Duration::from_secs(86_400) {
            String::new()
        } else {
            format!(" of {:.0}", self.total.as_secs_f64())
        };
        let detail: String = detail
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DETAIL)
            .collect();
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!("; {detail}")
        };
        format!(
            "goscope: {:.0}{total} s{detail} (Ctrl-C to stop)",
            elapsed.as_secs_f64()
        )
    }

    /// Redraws the line if it is due. The cursor is left at the start of
    /// the line, so a message printed next overwrites it.
    pub fn tick(&mut self, elapsed: Duration) {
        if !self.enabled || self.last_draw.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let detail = DETAIL.lock().map(|d| d.clone()).unwrap_or_default();
        let line = self.line(elapsed, &detail);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}\r");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line (at the window's end).
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for LiveStatus {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_elapsed_of_total_and_the_detail_without_controls() {
        let status = LiveStatus {
            enabled: false,
            total: Duration::from_secs(30),
            last_draw: None,
            drawn: false,
        };
        assert_eq!(
            status.line(Duration::from_secs(12), "5 cycles\x1b[31m\n"),
            "goscope: 12 of 30 s; 5 cycles[31m (Ctrl-C to stop)"
        );
        let open = LiveStatus {
            total: Duration::from_secs(1 << 40),
            ..status
        };
        assert_eq!(
            open.line(Duration::from_secs(3), ""),
            "goscope: 3 s (Ctrl-C to stop)"
        );
    }
}

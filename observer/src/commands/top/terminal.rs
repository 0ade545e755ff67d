//! The terminal while `top` runs: raw mode and the alternate screen,
//! stderr redirected to a log file; all undone on drop and by a panic hook,
//! so the user's terminal comes back whatever happens.

use std::{
    fs::File,
    io::{Stdout, stdout},
    os::fd::AsRawFd as _,
};

use crossterm::{
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{Terminal, backend::CrosstermBackend};

use super::State;

pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    saved_stderr: i32,
}

/// Leaves raw mode and the alternate screen (idempotent).
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

impl Screen {
    /// Takes over the terminal; stderr goes to `log` (opened by the
    /// caller, see `outfile::open_log`) until drop.
    pub fn enter(log: &File) -> anyhow::Result<Self> {
        // SAFETY: dup/dup2 on valid descriptors; the saved one is restored
        // on drop.
        let saved_stderr = unsafe { libc::dup(2) };
        // SAFETY: as above.
        if saved_stderr < 0 || unsafe { libc::dup2(log.as_raw_fd(), 2) } < 0 {
            anyhow::bail!(
                "redirecting stderr to the log: {}",
                std::io::Error::last_os_error()
            );
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        execute!(stdout(), EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        Ok(Self {
            terminal,
            saved_stderr,
        })
    }

    pub fn draw(&mut self, state: &State) -> anyhow::Result<()> {
        self.terminal
            .draw(|frame| super::view::draw(frame, state))?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
        // SAFETY: restores the stderr saved in `enter`.
        unsafe {
            libc::dup2(self.saved_stderr, 2);
            libc::close(self.saved_stderr);
        }
    }
}

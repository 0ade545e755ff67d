//! A detached tmux session as a real terminal for goscope's live views:
//! started at a size, captured (text, or with its colours), fed keys,
//! waited on for what it shows, and killed when dropped.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// One detached session running one shell command.
pub struct TmuxSession {
    name: String,
}

fn tmux(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .context("running tmux (scripts/setup.sh installs it)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl TmuxSession {
    /// Starts `command` in a new session `name` (an old one of that name
    /// is killed first) of `columns` x `rows`.
    pub fn start(name: &str, columns: u16, rows: u16, command: &str) -> anyhow::Result<Self> {
        let _ = tmux(&["kill-session", "-t", name]);
        tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &columns.to_string(),
            "-y",
            &rows.to_string(),
            command,
        ])?;
        Ok(Self {
            name: name.to_string(),
        })
    }

    /// The pane's text.
    pub fn capture(&self) -> anyhow::Result<String> {
        tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// The pane's text with its SGR escape sequences (colours, bold).
    pub fn capture_with_escapes(&self) -> anyhow::Result<String> {
        tmux(&["capture-pane", "-p", "-e", "-t", &self.name])
    }

    pub fn send_keys(&self, keys: &str) -> anyhow::Result<()> {
        tmux(&["send-keys", "-t", &self.name, keys]).map(|_| ())
    }

    /// Polls the pane until `wanted` holds, for `timeout` at most; the
    /// error shows the pane as it last was.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture()?;
            if wanted(&screen) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                bail!("the pane never showed {what}; the pane:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.name]);
    }
}

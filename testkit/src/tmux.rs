//! A detached tmux session as a real terminal for goscope's live views:
//! on a tmux server of its own (no user configuration, no other test's
//! sessions), started at a size, captured (text, or with its colours), fed
//! keys, waited on for what it shows, and killed with its server when
//! dropped.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// One detached session running one shell command.
pub struct TmuxSession {
    name: String,
}

impl TmuxSession {
    /// tmux on this session's own server socket, without a config file.
    fn tmux(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Command::new("tmux")
            .args(["-L", &self.name, "-f", "/dev/null"])
            .args(args)
            .output()
            .context("running tmux (scripts/setup.sh installs it)")
    }

    fn text(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.tmux(args)?;
        if !out.status.success() {
            bail!(
                "tmux {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The session's pane: on its own server, nothing else can match.
    fn target(&self) -> String {
        format!("{}:", self.name)
    }
}

impl TmuxSession {
    /// Starts `command` in a new session `name` (an old one of that name
    /// is killed first) of `columns` x `rows`.
    pub fn start(name: &str, columns: u16, rows: u16, command: &str) -> anyhow::Result<Self> {
        let session = Self {
            name: name.to_string(),
        };
        let _ = session.tmux(&["kill-server"]);
        session.text(&[
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
        Ok(session)
    }

    /// The pane's text.
    pub fn capture(&self) -> anyhow::Result<String> {
        self.text(&["capture-pane", "-p", "-t", &self.target()])
    }

    /// The pane's text with its SGR escape sequences (colours, bold).
    pub fn capture_with_escapes(&self) -> anyhow::Result<String> {
        self.text(&["capture-pane", "-p", "-e", "-t", &self.target()])
    }

    pub fn send_keys(&self, keys: &str) -> anyhow::Result<()> {
        self.text(&["send-keys", "-t", &self.target(), keys])
            .map(|_| ())
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
        let _ = self.tmux(&["kill-server"]);
    }
}

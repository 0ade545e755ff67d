//! Drives a running goscope: waits for its `goscope: attached` line, stops
//! it with SIGINT (as Ctrl-C would) or SIGKILL, collects its output.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, bail};

const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a goscope asked to stop (or expected to stop) may take.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A goscope process started by a test.
pub struct Goscope {
    child: Child,
    stderr_lines: Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: Option<JoinHandle<String>>,
}

/// What a finished goscope printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Goscope {
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        Self::start_pinned(args, &[])
    }

    /// Like `start`, with goscope and all its threads restricted to `cpus`
    /// (none: no restriction).
    pub fn start_pinned(args: &[&str], cpus: &[usize]) -> anyhow::Result<Self> {
        let binary = crate::goscope_binary();
        let mut command = Command::new(&binary);
        if !cpus.is_empty() {
            crate::target::pin_to_cpus(&mut command, cpus)?;
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stderr_lines,
            stderr_seen: Vec::new(),
            stdout: Some(stdout),
        })
    }

    /// Waits for the `goscope: attached` line on stderr.
    pub fn wait_attached(&mut self) -> anyhow::Result<()> {
        self.wait_for_stderr(|line| line.starts_with("goscope: attached"))
            .map(|_| ())
    }

    /// Waits for a stderr line that `matches` and returns it.
    pub fn wait_for_stderr(&mut self, matches: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        loop {
            match self.stderr_lines.recv_timeout(ATTACH_TIMEOUT) {
                Ok(line) => {
                    let found = matches(&line);
                    self.stderr_seen.push(line.clone());
                    if found {
                        return Ok(line);
                    }
                }
                Err(_) => bail!(
                    "goscope did not attach within {ATTACH_TIMEOUT:?}; stderr so far:\n{}",
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the window as Ctrl-C would and collects the output.
    pub fn interrupt(self) -> anyhow::Result<Finished> {
        self.signal(libc::SIGINT)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(self) -> anyhow::Result<Finished> {
        self.signal(libc::SIGKILL)
    }

    fn signal(self, signal: i32) -> anyhow::Result<Finished> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(pid, signal) };
        self.wait()
    }

    /// Waits for goscope to exit by itself (killing it, with an error,
    /// after EXIT_TIMEOUT).
    pub fn wait(mut self) -> anyhow::Result<Finished> {
        let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "goscope did not exit within {EXIT_TIMEOUT:?}; stderr so far:\n{}",
                    self.stderr_seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        stderr.extend(self.stderr_lines.try_iter());
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_millis(200)) {
            stderr.push(line);
        }
        Ok(Finished {
            status,
            stdout,
            stderr: stderr.join("\n"),
        })
    }
}

impl Drop for Goscope {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs goscope to completion (for commands that end by themselves).
pub fn run(args: &[&str]) -> anyhow::Result<Finished> {
    let output = Command::new(crate::goscope_binary()).args(args).output()?;
    Ok(Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

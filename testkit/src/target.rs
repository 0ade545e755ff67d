//! Drives a running workload (workloads/loadgen): waits for `ready`, asks
//! for batches, parses the runtime/metrics deltas the target reports.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

/// Generous: a batch on a loaded 2-core VM.
const RESULT_TIMEOUT: Duration = Duration::from_secs(300);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a target asked to quit may take (it finishes its batch first).
const QUIT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the target reported for one batch (runtime/metrics deltas).
#[derive(Debug, Deserialize)]
pub struct WorkloadResult {
    pub go_version: String,
    pub pid: u32,
    pub elapsed_ns: u64,
    /// Goroutines the workload's own `go` statements created in the batch.
    pub goroutines_spawned: u64,
    /// Median duration of the batch's cgo calls as the workload timed them
    /// (cgo-slow workload), ns.
    #[serde(default)]
    pub cgo_call_ns_median: u64,
    /// Each cgo call's duration as the workload timed it, in call order
    /// (cgo-slow workload: 1000 per scale step), ns.
    #[serde(default)]
    pub cgo_call_ns: Vec<u64>,
    /// The same calls as the C function timed itself from inside
    /// (CLOCK_MONOTONIC around its sleep), in call order, ns.
    #[serde(default)]
    pub cgo_call_inside_ns: Vec<u64>,
    /// The batch's deterministic checksum (`-checksum` targets; 0 otherwise).
    #[serde(default)]
    pub checksum: u64,
    /// Bytes each function of the "sites" workload allocated (its own
    /// count of objects times their size).
    #[serde(default)]
    pub site_bytes: HashMap<String, u64>,
    pub scalars: HashMap<String, Scalar>,
    pub histograms: HashMap<String, Histogram>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Scalar {
    pub delta: f64,
    pub end: f64,
}

#[derive(Debug, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<String>,
    pub counts: Vec<u64>,
}

impl WorkloadResult {
    /// The delta of a cumulative metric over the batch.
    pub fn delta(&self, metric: &str) -> anyhow::Result<f64> {
        Ok(self
            .scalars
            .get(metric)
            .ok_or_else(|| anyhow!("target did not report {metric}"))?
            .delta)
    }

    /// A metric's histogram delta over the batch, as (counts, bounds) with
    /// bounds parsed (`len = counts + 1`).
    pub fn histogram(&self, metric: &str) -> anyhow::Result<(Vec<u64>, Vec<f64>)> {
        let h = self
            .histograms
            .get(metric)
            .ok_or_else(|| anyhow!("target did not report {metric}"))?;
        let bounds = h
            .bounds
            .iter()
            .map(|b| {
                b.parse::<f64>()
                    .with_context(|| format!("bound {b:?} of {metric}"))
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        Ok((h.counts.clone(), bounds))
    }

    /// True when the target's runtime reports `metric` at all.
    pub fn has(&self, metric: &str) -> bool {
        self.scalars.contains_key(metric) || self.histograms.contains_key(metric)
    }

    /// The value of a metric at the end of the batch.
    pub fn end(&self, metric: &str) -> anyhow::Result<f64> {
        Ok(self
            .scalars
            .get(metric)
            .ok_or_else(|| anyhow!("target did not report {metric}"))?
            .end)
    }
}

/// Restricts the process `cmd` starts, and every thread it creates, to
/// the CPUs in `cpus` (sched_setaffinity between fork and exec), e.g. to
/// keep a benchmark's target and goscope off each other's CPU. A Go
/// program sizes GOMAXPROCS from this set unless GOMAXPROCS is given.
pub fn pin_to_cpus<'a>(cmd: &'a mut Command, cpus: &[usize]) -> anyhow::Result<&'a mut Command> {
    use std::os::unix::process::CommandExt as _;
    anyhow::ensure!(!cpus.is_empty(), "no CPU to pin to");
    // SAFETY: cpu_set_t is a plain bit set; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        anyhow::ensure!(
            cpu < capacity,
            "CPU {cpu} is beyond the affinity mask ({capacity} CPUs)"
        );
        // SAFETY: `cpu` is within the set (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let hook = move || {
        // SAFETY: one async-signal-safe system call on a set we own.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook allocates nothing and only calls sched_setaffinity,
    // which is async-signal-safe, so it may run between fork and exec.
    Ok(unsafe { cmd.pre_exec(hook) })
}

/// A running workload process.
pub struct Target {
    child: Child,
    stderr: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub pid: u32,
    pub go_version: String,
}

impl Target {
    /// Starts `binary` with `args` and waits for its `ready` line.
    pub fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_command(Command::new(binary).args(args).envs(env.iter().copied()))
    }

    /// Like `start`, keeping the target's stderr (e.g. GODEBUG=gctrace=1
    /// output) for `stderr_lines`.
    pub fn start_capturing_stderr(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped());
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().context("no stderr")?;
        let sink = std::sync::Arc::clone(&captured);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().map(|mut v| v.push(line)).ok();
            }
        });
        let mut target = Self::from_child(child)?;
        target.stderr = Some(captured);
        Ok(target)
    }

    /// What the target printed on stderr so far (capturing targets only).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .as_ref()
            .and_then(|s| s.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    /// Starts a prepared command (e.g. wrapped in unshare) speaking the
    /// loadgen protocol.
    pub fn start_command(cmd: &mut Command) -> anyhow::Result<Self> {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Self::from_child(child)
    }

    fn from_child(mut child: Child) -> anyhow::Result<Self> {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut target = Self {
            child,
            stderr: None,
            stdin,
            lines,
            pid: 0,
            go_version: String::new(),
        };
        let ready = target.wait_line("ready ", READY_TIMEOUT)?;
        let mut fields = ready.split_whitespace().skip(1);
        target.pid = fields
            .next()
            .and_then(|p| p.parse().ok())
            .context("ready line lacks pid")?;
        target.go_version = fields.next().unwrap_or_default().to_string();
        Ok(target)
    }

    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("target gave no {prefix:?} line within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("target closed stdout before a {prefix:?} line (exited?)")
                }
            }
        }
    }

    /// Makes the target take its next batch's baseline now (no GC) and
    /// waits until it has: an observer attached before this call has a
    /// window that contains the target's.
    pub fn baseline(&mut self) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("target stdin closed")?;
        writeln!(stdin, "baseline")?;
        stdin.flush()?;
        self.wait_line("baseline", READY_TIMEOUT).map(|_| ())
    }

    /// Runs one batch and returns what the target measured of itself.
    pub fn run_batch(&mut self) -> anyhow::Result<WorkloadResult> {
        let stdin = self.stdin.as_mut().context("target stdin closed")?;
        writeln!(stdin, "run")?;
        stdin.flush()?;
        let line = self.wait_line("result ", RESULT_TIMEOUT)?;
        serde_json::from_str(&line["result ".len()..]).context("parsing the target's result")
    }

    /// Asks the target to execve `path` with `args` in place (same pid) and
    /// waits for the new program's `ready` line.
    pub fn exec(&mut self, path: &Path, args: &[&str]) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("target stdin closed")?;
        writeln!(stdin, "exec {} {}", path.display(), args.join(" "))?;
        stdin.flush()?;
        let ready = self.wait_line("ready ", READY_TIMEOUT)?;
        let mut fields = ready.split_whitespace().skip(1);
        let pid: u32 = fields
            .next()
            .and_then(|p| p.parse().ok())
            .context("ready line lacks pid")?;
        anyhow::ensure!(
            pid == self.pid,
            "exec'd program reports pid {pid}, not {}",
            self.pid
        );
        self.go_version = fields.next().unwrap_or_default().to_string();
        Ok(())
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the target to quit and waits for it.
    pub fn quit(mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let deadline = std::time::Instant::now() + QUIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                bail!("target {} did not quit within {QUIT_TIMEOUT:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

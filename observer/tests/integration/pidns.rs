//! goscope inside the target's PID namespace (as from an ephemeral debug
//! container sharing a pod's PID namespace): the target runs under
//! `unshare --pid --fork --mount-proc`, goscope is started in the same
//! PID and mount namespaces with nsenter and given the pid the target has
//! there. Every kernel-side figure must be there: `goscope gc` prints each
//! cycle of the batch, doctor's probe count equals the runtime's, the CPU
//! sampler and the scheduler tracepoints see the target. The same target
//! observed from the host (its initial-namespace pid) too.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;
use testkit::{Goscope, Target, WorkloadResult, require_root_or_skip};

use crate::util::{cgo, loadgen};

const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A loadgen target (`-work gc`) in new PID and mount namespaces (and
/// with `--cgroup` a cgroup namespace), not PID 1 there: a shell is.
struct NamespacedTarget {
    target: Target,
    /// unshare's pid: its pid_for_children, mnt and cgroup links name the
    /// target's namespaces.
    unshare: u32,
    _pid_file: TempFile,
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl NamespacedTarget {
    fn start(unshare_flags: &[&str]) -> Self {
        let binary = loadgen("1.27", &cgo());
        let pid_file = TempFile(testkit::workspace_root().join(format!(
            "target/pidns-test-{}-{}.pid",
            std::process::id(),
            unshare_flags.len()
        )));
        // The outer shell writes its pid and execs unshare (same pid); the
        // namespace's PID 1 is a shell that hands its stdin to the target.
        let script = format!(
            "echo $$ > {pid_file} && exec unshare --pid --fork --mount-proc --kill-child {flags} \
             sh -c 'exec 3<&0; {binary} -work gc -scale 4 <&3 3<&- & wait'",
            pid_file = pid_file.0.display(),
            flags = unshare_flags.join(" "),
            binary = binary.display(),
        );
        let target = Target::start_command(Command::new("sh").arg("-c").arg(&script))
            .unwrap_or_else(|e| {
                panic!("starting the target under unshare {unshare_flags:?}: {e:#}")
            });
        let unshare = std::fs::read_to_string(&pid_file.0)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", pid_file.0.display()));
        let inside = Self {
            target,
            unshare,
            _pid_file: pid_file,
        };
        assert_ne!(
            inside.namespace_inode(),
            std::fs::metadata("/proc/self/ns/pid").unwrap().ino(),
            "unshare made no PID namespace"
        );
        inside
    }

    fn namespace_link(&self, ns: &str) -> String {
        format!("/proc/{}/ns/{ns}", self.unshare)
    }

    fn namespace_inode(&self) -> u64 {
        std::fs::metadata(self.namespace_link("pid_for_children"))
            .unwrap()
            .ino()
    }

    /// The target's pid in the initial namespace: the process in the new
    /// namespace whose pid there is the one its ready line gave.
    fn host_pid(&self) -> u32 {
        let inode = self.namespace_inode();
        let found: Vec<u32> = processes()
            .filter(|pid| {
                std::fs::metadata(format!("/proc/{pid}/ns/pid")).is_ok_and(|m| m.ino() == inode)
                    && innermost_pid(*pid) == Some(self.target.pid)
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "target pid {} in namespace {inode}: found {found:?}",
            self.target.pid
        );
        found[0]
    }

    /// Starts `goscope ARGS` in the target's PID and mount namespaces (and
    /// cgroup namespace when `cgroup`).
    fn goscope_inside(&self, args: &[&str], cgroup: bool) -> Inside {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--pid={}", self.namespace_link("pid_for_children")))
            .arg(format!("--mount={}", self.namespace_link("mnt")));
        if cgroup {
            cmd.arg(format!("--cgroup={}", self.namespace_link("cgroup")));
        }
        cmd.arg("--").arg(testkit::goscope_binary()).args(args);
        Inside::start(&mut cmd)
    }
}

/// Every pid under /proc.
fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .expect("listing /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// The last NSpid entry of a process: its pid in its own namespace.
fn innermost_pid(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The parent pid of a process (the field after the command name).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A goscope started through nsenter, which forks it into the namespace
/// and waits for it (it does not pass signals on: Ctrl-C goes to goscope).
struct Inside {
    nsenter: Child,
    stderr_lines: Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: Option<JoinHandle<String>>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Inside {
    fn start(cmd: &mut Command) -> Self {
        let mut nsenter = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let mut stdout = nsenter.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let stderr = nsenter.stderr.take().expect("stderr");
        let (tx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            nsenter,
            stderr_lines,
            stderr_seen: Vec::new(),
            stdout: Some(stdout),
        }
    }

    fn wait_attached(&mut self) {
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let attached = line.starts_with("goscope: attached");
                    self.stderr_seen.push(line);
                    if attached {
                        return;
                    }
                }
                Err(_) => panic!(
                    "goscope in the namespace did not attach within {ATTACH_TIMEOUT:?}; stderr:\n{}",
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// Ends the window as Ctrl-C would (to goscope, nsenter's only child)
    /// and collects the output; nsenter exits with goscope's status.
    fn interrupt(mut self) -> Finished {
        let nsenter = self.nsenter.id();
        let goscope: Vec<u32> = processes()
            .filter(|pid| parent_pid(*pid) == Some(nsenter))
            .collect();
        assert_eq!(
            goscope.len(),
            1,
            "children of nsenter {nsenter}: {goscope:?}"
        );
        // SAFETY: signalling the goscope this test started.
        unsafe { libc::kill(goscope[0] as i32, libc::SIGINT) };
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.nsenter.try_wait().expect("waiting for nsenter") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "goscope in the namespace did not exit within {EXIT_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            stderr.push(line);
        }
        Finished {
            status,
            stdout,
            stderr: stderr.join("\n"),
        }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        if matches!(self.nsenter.try_wait(), Ok(None)) {
            let nsenter = self.nsenter.id();
            for pid in processes().filter(|pid| parent_pid(*pid) == Some(nsenter)) {
                // SAFETY: killing the goscope this test started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = self.nsenter.wait();
        }
    }
}

fn cycles(truth: &WorkloadResult) -> u64 {
    let cycles = truth.delta("/gc/cycles/total:gc-cycles").unwrap() as u64;
    assert!(cycles >= 10, "the batch ran only {cycles} GC cycles");
    cycles
}

/// `goscope gc --json` around one batch: one record per cycle the target
/// counted (the target is idle at both ends of the window), numbered
/// consecutively from the cycle after attach.
fn check_gc(finished: &Finished, truth: &WorkloadResult, context: &str) -> usize {
    assert!(
        finished.status.success(),
        "{context}: goscope gc failed: {}",
        finished.stderr
    );
    let first: u64 = finished
        .stderr
        .split("from cycle ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{context}: no 'from cycle' in {}", finished.stderr));
    let numbers: Vec<u64> = finished
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{context}: {e}: {l}"))
                ["cycle"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected = cycles(truth);
    assert_eq!(
        numbers.len() as u64,
        expected,
        "{context}: goscope gc printed {} cycles, the target counted {expected}; stderr: {}",
        numbers.len(),
        finished.stderr
    );
    let want: Vec<u64> = (first..first + expected).collect();
    assert_eq!(numbers, want, "{context}: cycle numbers");
    numbers.len()
}

/// doctor's kernel-side figures: the probe's cycles equal the runtime's
/// and the batch's, the CPU sampler and the scheduler tracepoints saw the
/// target. Returns (cycles, CPU samples, run-queue events).
fn check_doctor(report: &Value, truth: &WorkloadResult, context: &str) -> (u64, u64, u64) {
    let expected = cycles(truth);
    assert_eq!(
        report["gc"]["cycles"].as_u64(),
        Some(expected),
        "{context}: gc.cycles (memory) against the batch"
    );
    assert_eq!(
        report["gc"]["cycles_probe"].as_u64(),
        Some(expected),
        "{context}: gc.cycles_probe against the batch"
    );
    let samples = report["cpu"]["samples"].as_u64().unwrap_or(0);
    assert!(samples > 0, "{context}: no CPU samples: {}", report["cpu"]);
    let sched = &report["sched"];
    let runq = sched["os_runq_latency_ns"]["count"].as_u64().unwrap_or(0);
    assert!(runq > 0, "{context}: no run-queue latency events: {sched}");
    assert!(
        sched["involuntary_switches"].is_u64(),
        "{context}: involuntary switches missing: {sched}"
    );
    (expected, samples, runq)
}

fn parse_report(finished: &Finished, context: &str) -> Value {
    assert!(
        finished.status.success(),
        "{context}: goscope doctor failed: {}",
        finished.stderr
    );
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "{context}: doctor printed invalid JSON ({e}): {}\nstderr: {}",
            finished.stdout, finished.stderr
        )
    })
}

/// gc and doctor run inside the target's namespaces, one batch each.
fn observe_inside(unshare_flags: &[&str]) {
    let context = format!("inside unshare --pid --fork --mount-proc {unshare_flags:?}");
    let cgroup = unshare_flags.contains(&"--cgroup");
    let mut ns = NamespacedTarget::start(unshare_flags);
    let pid = ns.target.pid.to_string();
    assert_ne!(ns.host_pid(), ns.target.pid, "{context}: pids must differ");

    let mut gc = ns.goscope_inside(
        &["gc", "--pid", &pid, "--duration", "600", "--json"],
        cgroup,
    );
    gc.wait_attached();
    let truth = ns.target.run_batch().unwrap();
    let printed = check_gc(&gc.interrupt(), &truth, &context);

    let mut doctor = ns.goscope_inside(
        &["doctor", "--pid", &pid, "--duration", "600", "--json"],
        cgroup,
    );
    doctor.wait_attached();
    let truth = ns.target.run_batch().unwrap();
    let report = parse_report(&doctor.interrupt(), &context);
    assert_eq!(report["target"]["pid"], ns.target.pid, "{context}");
    let (cycles, samples, runq) = check_doctor(&report, &truth, &context);
    eprintln!(
        "{context}: gc printed {printed} cycles; doctor: {cycles} cycles (probe = memory = target), {samples} CPU samples, {runq} run-queue events"
    );
    ns.target.quit().unwrap();
}

#[test]
fn gc_and_doctor_inside_the_targets_pid_namespace() {
    if !require_root_or_skip("gc_and_doctor_inside_the_targets_pid_namespace") {
        return;
    }
    observe_inside(&[]);
}

#[test]
fn gc_and_doctor_inside_the_targets_pid_and_cgroup_namespaces() {
    if !require_root_or_skip("gc_and_doctor_inside_the_targets_pid_and_cgroup_namespaces") {
        return;
    }
    observe_inside(&["--cgroup"]);
}

/// From the host (the initial namespace) with the target's host pid: the
/// kernel programs match the target in its own namespace, not goscope's.
#[test]
fn doctor_from_the_host_on_a_target_in_a_pid_namespace() {
    if !require_root_or_skip("doctor_from_the_host_on_a_target_in_a_pid_namespace") {
        return;
    }
    let context = "from the host";
    let mut ns = NamespacedTarget::start(&[]);
    let host_pid = ns.host_pid().to_string();
    let mut goscope =
        Goscope::start(&["doctor", "--pid", &host_pid, "--duration", "600", "--json"]).unwrap();
    goscope.wait_attached().unwrap();
    let truth = ns.target.run_batch().unwrap();
    let finished = goscope.interrupt().unwrap();
    let finished = Finished {
        status: finished.status,
        stdout: finished.stdout,
        stderr: finished.stderr,
    };
    let report = parse_report(&finished, context);
    let (cycles, samples, runq) = check_doctor(&report, &truth, context);
    eprintln!(
        "{context}: doctor: {cycles} cycles (probe = memory = target), {samples} CPU samples, {runq} run-queue events"
    );
    ns.target.quit().unwrap();
}

//! goscope and the agent next to hostile processes (issue 14's remaining
//! acceptance tests):
//!
//! - a PID reused while doctor watches it: the target, inside a PID
//!   namespace, exits and a new process is given its very pid there
//!   (clone3 with `set_tid`, which either gets that pid or fails: no race
//!   with other processes forking); goscope ends the window saying the pid
//!   exited, reports only the old program's figures, and leaves the new
//!   program's code byte-identical to its file and its batch correct;
//! - a one-terabyte (sparse) executable: the agent skips it saying why and
//!   keeps serving, doctor refuses it in one line naming the size;
//! - a FIFO and a symbolic link to /dev/zero planted, inside the target's
//!   mount namespace, where its executable's path points: goscope and the
//!   agent read only through /proc/PID/exe, so they parse the real file and
//!   the target is watched normally;
//! - comm, executable path and build-info Go version full of quotes,
//!   backslashes, newlines and escape sequences, the path as long as Linux
//!   allows, the version a megabyte long: every label stays bounded and
//!   valid Prometheus text, no log line carries a raw control character.
//!
//! Every wait is for a readiness line or a polled condition, with a
//! deadline.

use std::{
    collections::{HashMap, HashSet},
    ffi::{CString, OsStr},
    fs::File,
    io::{BufRead as _, BufReader, Read, Write},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{
            ffi::OsStrExt as _,
            fs::{FileTypeExt as _, PermissionsExt as _},
        },
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use serde_json::Value;
use testkit::{BuildOptions, Target, WorkloadResult, require_root_or_skip};

use crate::util::{Scraper, assert_code_matches_file, cgo, loadgen, start_agent};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A batch on a loaded 2-core VM.
const RESULT_TIMEOUT: Duration = Duration::from_secs(300);
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the agent may take to watch (or skip) a new process.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// The agent's scan interval in these tests.
const SCAN_MS: &str = "200";
/// Longest label value the agent exports, in bytes (MAX_LABEL_LEN in
/// observer/src/agent/watched.rs), before the "…" that marks a cut.
const MAX_LABEL_LEN: usize = 160;
const TERABYTE: u64 = 1 << 40;
/// Longest log line the agent may print about a target: its path (at
/// most PATH_MAX bytes, each control byte escaped as up to 6 characters)
/// and a bounded version.
const MAX_LOG_LINE: usize = 32 << 10;

// ---------------------------------------------------------------------
// Line-protocol plumbing: loadgen's stdout, goscope's stderr.

/// The lines `read` yields, from a thread of their own.
fn lines_of(read: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(read).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line that `matches`, keeping every line in `seen`; fails
/// after `timeout` saying what it waited for and what came.
fn wait_line(
    lines: &Receiver<String>,
    seen: &mut Vec<String>,
    timeout: Duration,
    what: &str,
    matches: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if matches(&line) {
                    return line;
                }
            }
            Err(e) => panic!(
                "no {what} within {timeout:?} ({e}); lines so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// A process speaking loadgen's protocol on some stdin and stdout.
struct Loadgen {
    stdin: Box<dyn Write + Send>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Loadgen {
    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("sending {command:?} to the target: {e}"));
    }

    fn wait(&mut self, prefix: &str, timeout: Duration) -> String {
        wait_line(
            &self.lines,
            &mut self.seen,
            timeout,
            &format!("{prefix:?} line from the target"),
            |l| l.starts_with(prefix),
        )
    }

    /// Waits for `ready PID VERSION` and returns the pid.
    fn ready(&mut self) -> u32 {
        let line = self.wait("ready ", READY_TIMEOUT);
        line.split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("ready line without a pid: {line}"))
    }

    /// The next batch result the target prints.
    fn result(&mut self) -> WorkloadResult {
        let line = self.wait("result ", RESULT_TIMEOUT);
        serde_json::from_str(&line["result ".len()..])
            .unwrap_or_else(|e| panic!("parsing the target's result ({e}): {line}"))
    }

    fn run(&mut self) -> WorkloadResult {
        self.send("run");
        self.result()
    }
}

// ---------------------------------------------------------------------
// A target in a PID namespace, goscope in it, and a process given a
// chosen pid there.

/// A loadgen in new PID and mount namespaces (`unshare --pid --fork
/// --mount-proc`), started by a shell that is the namespace's PID 1: it
/// reaps the target, says `reaped STATUS`, and keeps the namespace alive
/// until the test closes its stdin.
struct PidNamespace {
    unshare: Child,
    target: Loadgen,
}

/// PID 1's script: $0 is the target's binary, "$@" its arguments.
const PID1_SCRIPT: &str = r#"exec 3<&0; "$0" "$@" <&3 3<&-; echo "reaped $?"; read -r _ <&3"#;

impl PidNamespace {
    /// Starts `binary ARGS` and returns the namespace and the target's pid
    /// in it.
    fn start(binary: &Path, args: &[&str]) -> (Self, u32) {
        let mut unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
            ])
            .arg(PID1_SCRIPT)
            .arg(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting unshare: {e}"));
        let stdin: ChildStdin = unshare.stdin.take().unwrap();
        let lines = lines_of(unshare.stdout.take().unwrap());
        let mut ns = Self {
            unshare,
            target: Loadgen {
                stdin: Box::new(stdin),
                lines,
                seen: Vec::new(),
            },
        };
        let pid = ns.target.ready();
        (ns, pid)
    }

    fn link(&self, ns: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{ns}", self.unshare.id()))
    }

    /// Waits for PID 1 to reap the target; returns its exit status.
    fn wait_reaped(&mut self) -> i32 {
        let line = self.target.wait("reaped ", EXIT_TIMEOUT);
        line["reaped ".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad reaped line: {line}"))
    }

    /// Starts `goscope ARGS` in the namespace's PID and mount namespaces.
    fn goscope_inside(&self, args: &[&str]) -> Inside {
        let mut nsenter = Command::new("nsenter")
            .arg(format!("--pid={}", self.link("pid_for_children").display()))
            .arg(format!("--mount={}", self.link("mnt").display()))
            .arg("--")
            .arg(testkit::goscope_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting goscope under nsenter: {e}"));
        let stdout = lines_of(nsenter.stdout.take().unwrap());
        let stderr = lines_of(nsenter.stderr.take().unwrap());
        Inside {
            nsenter,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        // PID 1 reads its stdin to the end, then the namespace ends (and
        // the kernel kills whatever still runs in it).
        self.target.stdin = Box::new(std::io::sink());
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// goscope started through nsenter (which waits for it and exits with its
/// status). It dies with the namespace.
struct Inside {
    nsenter: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Inside {
    fn wait_attached(&mut self) {
        wait_line(
            &self.stderr,
            &mut self.seen,
            ATTACH_TIMEOUT,
            "'goscope: attached' line",
            |l| l.starts_with("goscope: attached"),
        );
    }

    fn is_running(&mut self) -> bool {
        matches!(self.nsenter.try_wait(), Ok(None))
    }

    /// Waits for goscope to end by itself.
    fn wait(mut self) -> Finished {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.nsenter.try_wait().expect("waiting for nsenter") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "goscope did not end within {EXIT_TIMEOUT:?}; stderr:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let drain = |lines: &Receiver<String>| {
            let mut all = Vec::new();
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
                all.push(line);
            }
            all
        };
        let mut stderr = std::mem::take(&mut self.seen);
        stderr.extend(drain(&self.stderr));
        Finished {
            status,
            stdout: drain(&self.stdout).join("\n"),
            stderr: stderr.join("\n"),
        }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = self.nsenter.kill();
        let _ = self.nsenter.wait();
    }
}

/// The kernel's `struct clone_args` (include/uapi/linux/sched.h).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A process this test started with a chosen pid in a namespace.
struct Reborn {
    /// Its pid in the initial namespace (where the test reads /proc).
    host_pid: i32,
    loadgen: Loadgen,
    reaped: bool,
}

impl Reborn {
    fn quit(mut self) -> i32 {
        self.loadgen.send("quit");
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is ours to fill.
        let rc = unsafe { libc::waitpid(self.host_pid, &mut status, 0) };
        assert_eq!(
            rc,
            self.host_pid,
            "waitpid: {}",
            std::io::Error::last_os_error()
        );
        self.reaped = true;
        status
    }
}

impl Drop for Reborn {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: killing and reaping the child this test started.
            unsafe {
                libc::kill(self.host_pid, libc::SIGKILL);
                libc::waitpid(self.host_pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds we pass.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel just created both fds; nobody else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Starts `binary ARGS` as a child of the test with pid `pid` in the PID
/// namespace `pid_ns` (a `pid_for_children` link): a thread enters the
/// namespace for its children (setns) and forks with clone3, `set_tid`
/// naming the pid. The kernel gives exactly that pid or fails (EEXIST when
/// it is taken), so no other process forking meanwhile can take it.
fn spawn_with_pid(pid_ns: &Path, pid: u32, binary: &Path, args: &[&str]) -> Reborn {
    let ns = File::open(pid_ns).unwrap_or_else(|e| panic!("opening {}: {e}", pid_ns.display()));
    let path = CString::new(binary.as_os_str().as_bytes()).unwrap();
    let argv: Vec<CString> = std::iter::once(path.clone())
        .chain(args.iter().map(|a| CString::new(*a).unwrap()))
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut pair = k.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            CString::new(pair).unwrap()
        })
        .collect();
    let (stdin_r, stdin_w) = pipe();
    let (stdout_r, stdout_w) = pipe();
    let (child_in, child_out) = (stdin_r.as_raw_fd(), stdout_w.as_raw_fd());
    let forked = std::thread::scope(|s| {
        s.spawn(|| {
            let null_terminated = |strings: &[CString]| -> Vec<*const libc::c_char> {
                strings
                    .iter()
                    .map(|c| c.as_ptr())
                    .chain(std::iter::once(std::ptr::null()))
                    .collect()
            };
            let argv = null_terminated(&argv);
            let envp = null_terminated(&env);
            // SAFETY: setns on an fd we opened; it changes only this
            // thread's namespace for children, and the thread ends below.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
                return Err(format!(
                    "setns {}: {}",
                    pid_ns.display(),
                    std::io::Error::last_os_error()
                ));
            }
            let tid = libc::pid_t::try_from(pid).unwrap();
            let mut clone = CloneArgs {
                flags: 0,
                pidfd: 0,
                child_tid: 0,
                parent_tid: 0,
                exit_signal: libc::SIGCHLD as u64,
                stack: 0,
                stack_size: 0,
                tls: 0,
                set_tid: std::ptr::from_ref(&tid) as u64,
                set_tid_size: 1,
                cgroup: 0,
            };
            // SAFETY: clone3 like fork (no shared VM, no new stack). The
            // child of this multithreaded process only calls
            // async-signal-safe functions (dup2, execve, _exit) on data
            // prepared before the fork.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    std::ptr::from_mut(&mut clone),
                    std::mem::size_of::<CloneArgs>(),
                )
            };
            if rc == 0 {
                // SAFETY: see above; execve only returns on failure.
                unsafe {
                    libc::dup2(child_in, 0);
                    libc::dup2(child_out, 1);
                    libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127);
                }
            }
            if rc < 0 {
                return Err(format!(
                    "clone3 with set_tid {pid} in {}: {}",
                    pid_ns.display(),
                    std::io::Error::last_os_error()
                ));
            }
            Ok(i32::try_from(rc).unwrap())
        })
        .join()
        .unwrap()
    });
    drop((stdin_r, stdout_w));
    let host_pid = forked.unwrap_or_else(|e| panic!("{e}"));
    let mut reborn = Reborn {
        host_pid,
        loadgen: Loadgen {
            stdin: Box::new(File::from(stdin_w)),
            lines: lines_of(File::from(stdout_r)),
            seen: Vec::new(),
        },
        reaped: false,
    };
    let got = reborn.loadgen.ready();
    assert_eq!(
        got, pid,
        "the new process reports pid {got} in the namespace, not {pid}"
    );
    reborn
}

// ---------------------------------------------------------------------
// 1. PID reuse under doctor.

/// doctor (default overhead budget, per-call probes governed) watches
/// `old` inside a PID namespace; `old` exits and `new` gets its pid there
/// at once, busy from its first instant (`-auto`).
fn pid_reused_under_doctor(old: &Path, old_go: &str, new: &Path) {
    // Batches of a few seconds: doctor reads the runtime every second, so
    // its report holds most of the old program's batch.
    const ARGS: [&str; 5] = ["-work", "mixed", "-checksum", "-scale", "32"];
    let (mut ns, pid) = PidNamespace::start(old, &ARGS);
    let expected = ns.target.run().checksum;
    assert_ne!(expected, 0, "the target reports no checksum");
    let old_version = crate::util::toolchain_version(old_go);
    let pid_arg = pid.to_string();
    let mut doctor =
        ns.goscope_inside(&["doctor", "--pid", &pid_arg, "--duration", "600", "--json"]);
    doctor.wait_attached();
    // One batch under the probes, the governor attaching and detaching.
    let truth = ns.target.run();
    assert_eq!(truth.checksum, expected);
    ns.target.send("quit");
    assert_eq!(ns.wait_reaped(), 0, "the old target's exit status");

    // Its pid is free: the new program gets it and starts a batch at once.
    let mut args = ARGS.to_vec();
    args.push("-auto");
    let mut reborn = spawn_with_pid(&ns.link("pid_for_children"), pid, new, &args);
    let doctor_still_ran = doctor.is_running();
    let first = reborn.loadgen.result();
    assert_eq!(first.pid, pid);
    assert_eq!(
        first.checksum, expected,
        "the new program's first batch computed a wrong checksum"
    );

    let finished = doctor.wait();
    assert_eq!(
        finished.status.code(),
        Some(3),
        "doctor's exit status; stderr:\n{}",
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .contains(&format!("goscope: pid {pid} exited")),
        "doctor did not say pid {pid} exited:\n{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains("exec'd"), "{}", finished.stderr);
    let report: Value = serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed invalid JSON ({e}): {}\nstderr: {}",
            finished.stdout, finished.stderr
        )
    });
    assert_eq!(report["ended_by"], "target_exited", "{}", finished.stdout);
    assert_eq!(report["target"]["pid"], pid);

    // Only the old program's figures: the window holds at most its batch
    // (the target was idle before and after it), none of the new one's.
    let cycles = truth.delta("/gc/cycles/total:gc-cycles").unwrap();
    let bytes = truth.delta("/gc/heap/allocs:bytes").unwrap();
    let number = |v: &Value, what: &str| {
        v.as_f64()
            .unwrap_or_else(|| panic!("{what} missing from the report: {}", finished.stdout))
    };
    let memory_cycles = number(&report["gc"]["cycles"], "gc.cycles");
    let probe_cycles = number(&report["gc"]["cycles_probe"], "gc.cycles_probe");
    let alloc_bytes = number(
        &report["figures"]["alloc.bytes"]["value"],
        "figures.alloc.bytes",
    );
    eprintln!(
        "pid {pid} reused (doctor {} when the new program was ready): old batch {cycles} cycles {bytes} B; doctor {memory_cycles} cycles (probe {probe_cycles}), {alloc_bytes} B; new program's first batch {} cycles",
        if doctor_still_ran {
            "still running"
        } else {
            "already gone"
        },
        first.delta("/gc/cycles/total:gc-cycles").unwrap()
    );
    let batch_s = truth.elapsed_ns as f64 / 1e9;
    assert!(
        batch_s > 1.5,
        "the batch under doctor lasted {batch_s:.2} s, too short for doctor (one reading a second) to see it: raise -scale"
    );
    assert!(
        memory_cycles >= 1.0 && alloc_bytes > 0.0,
        "doctor's report holds nothing of the old program's {batch_s:.1} s batch: {memory_cycles} cycles, {alloc_bytes} B"
    );
    assert!(
        (0.0..=cycles).contains(&memory_cycles) && (0.0..=cycles).contains(&probe_cycles),
        "doctor reports {memory_cycles} GC cycles ({probe_cycles} by the probe); the old program ran {cycles} in the window"
    );
    assert!(
        (0.0..=bytes * 1.01 + 65536.0).contains(&alloc_bytes),
        "doctor reports {alloc_bytes} B allocated; the old program allocated {bytes} B in the window"
    );
    let exe = report["target"]["exe"].as_str().unwrap_or_default();
    assert_eq!(Path::new(exe), old, "the report's executable");
    let version = report["target"]["go_version"].as_str().unwrap_or_default();
    assert_eq!(version, old_version, "the report's Go version");

    // The new program runs unharmed: its code is its file's, byte for
    // byte, and another whole batch computes the same checksum.
    assert_code_matches_file(u32::try_from(reborn.host_pid).unwrap(), new);
    assert_eq!(reborn.loadgen.run().checksum, expected);
    assert_code_matches_file(u32::try_from(reborn.host_pid).unwrap(), new);
    let status = reborn.quit();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the new program ended with wait status {status:#x}"
    );
}

#[test]
fn pid_reused_by_the_same_binary_while_doctor_watches() {
    if !require_root_or_skip("pid_reused_by_the_same_binary_while_doctor_watches") {
        return;
    }
    let binary = loadgen("1.27", &cgo());
    pid_reused_under_doctor(&binary, "1.27", &binary);
}

#[test]
fn pid_reused_by_another_go_program_while_doctor_watches() {
    if !require_root_or_skip("pid_reused_by_another_go_program_while_doctor_watches") {
        return;
    }
    let old = loadgen("1.27", &cgo());
    let new = loadgen("1.22", &cgo());
    pid_reused_under_doctor(&old, "1.27", &new);
}

// ---------------------------------------------------------------------
// Agent helpers: files, exposition parsing.

/// A directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("goscope-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_executable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// One sample of an exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{k="v",...}` at the start of `text`: the labels (values
/// unescaped) and the rest. Only `\\`, `\"` and `\n` may be escaped.
fn parse_labels(text: &str) -> Result<(HashMap<String, String>, &str), String> {
    let mut labels = HashMap::new();
    let mut rest = text.strip_prefix('{').ok_or("no '{'")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("an unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("a dangling backslash")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => return Err(format!("an invalid escape \\{other}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Checks an exposition against the Prometheus text format (0.0.4):
/// every line a HELP/TYPE comment or `name{labels} value`, label values
/// escaped, each sample of a family that has a TYPE, no series twice.
/// Returns the samples.
fn parse_exposition(body: &str) -> Vec<Sample> {
    assert!(
        body.ends_with('\n'),
        "the exposition does not end with a newline"
    );
    let mut typed = HashSet::new();
    let mut series = HashSet::new();
    let mut samples = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let bad = |why: &str| -> ! { panic!("exposition line {}: {why}: {line:?}", n + 1) };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    if !is_metric_name(name) {
                        bad("bad metric name");
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        bad("bad type");
                    }
                    if !typed.insert(name.to_string()) {
                        bad("a second TYPE line");
                    }
                }
                ["HELP", name, ..] if !is_metric_name(name) => bad("bad metric name"),
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad("no value"));
        let name = &line[..name_end];
        if !is_metric_name(name) {
            bad("bad metric name");
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).unwrap_or_else(|e| bad(&e))
        } else {
            (HashMap::new(), &line[name_end..])
        };
        let fields: Vec<&str> = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| bad("no space before the value"))
            .split(' ')
            .collect();
        let value = match fields.as_slice() {
            [value] | [value, _] => match *value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v
                    .parse()
                    .unwrap_or_else(|_| bad("a value that is not a number")),
            },
            _ => bad("not `name{labels} value [timestamp]`"),
        };
        if let [_, timestamp] = fields.as_slice()
            && timestamp.parse::<i64>().is_err()
        {
            bad("a bad timestamp");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        if !typed.contains(family) {
            bad("a sample before its family's TYPE line");
        }
        let mut key: Vec<(&String, &String)> = labels.iter().collect();
        key.sort();
        if !series.insert(format!("{name}{key:?}")) {
            bad("a series twice");
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The labels of `goscope_target_info` for `pid`, if it is watched.
fn target_info(samples: &[Sample], pid: u32) -> Option<&HashMap<String, String>> {
    samples
        .iter()
        .find(|s| {
            s.name == "goscope_target_info"
                && s.labels.get("pid").map(String::as_str) == Some(pid.to_string().as_str())
        })
        .map(|s| &s.labels)
}

/// The value of a series of `name` whose labels include `labels`.
fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Scrapes (each within the budget) until `done` holds for the parsed
/// exposition; returns it. Fails after `within`.
fn scrape_until(
    scraper: &Scraper,
    within: Duration,
    what: &str,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + within;
    loop {
        let (body, _) = scraper.scrape_body(what);
        let samples = parse_exposition(&body);
        if done(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; last scrape:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the agent's labels hold for `value`: at most MAX_LABEL_LEN bytes
/// (cut at a character boundary), "…" marking a cut.
fn bounded(value: &str) -> String {
    if value.len() <= MAX_LABEL_LEN {
        return value.to_string();
    }
    let mut cut = MAX_LABEL_LEN;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &value[..cut])
}

/// Every label value of every sample is bounded.
fn assert_labels_bounded(samples: &[Sample]) {
    for s in samples {
        for (k, v) in &s.labels {
            assert!(
                v.len() <= MAX_LABEL_LEN + '…'.len_utf8(),
                "{} has a {}-byte {k} label",
                s.name,
                v.len()
            );
        }
    }
}

/// Every line the agent logged is one of its own (a raw newline in a
/// name would start a foreign line) and none carries a raw escape byte.
fn assert_log_lines_clean(stderr: &str) {
    assert!(
        !stderr.contains('\u{1b}'),
        "the agent logged a raw ESC byte (at {:?})",
        stderr.find('\u{1b}')
    );
    for line in stderr.lines() {
        assert!(
            line.starts_with("goscope agent: ") || line.starts_with("goscope: "),
            "a log line that is not the agent's (a raw newline?): {:?}",
            line.chars().take(300).collect::<String>()
        );
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "a log line with a raw control character: {:?}",
            line.chars().take(300).collect::<String>()
        );
    }
}

// ---------------------------------------------------------------------
// 2a. A one-terabyte executable.

#[test]
fn agent_and_doctor_refuse_a_terabyte_executable() {
    if !require_root_or_skip("agent_and_doctor_refuse_a_terabyte_executable") {
        return;
    }
    let scratch = Scratch::new("terabyte");
    // Linux execs an ELF file with trailing data: a loadgen padded to 1 TB
    // (sparse: no disk) runs and is a one-terabyte executable.
    let huge = scratch.0.join("huge");
    std::fs::copy(loadgen("1.27", &BuildOptions::default()), &huge).unwrap();
    File::options()
        .write(true)
        .open(&huge)
        .and_then(|f| f.set_len(TERABYTE))
        .unwrap_or_else(|e| panic!("extending {} to 1 TB: {e}", huge.display()));
    make_executable(&huge);

    let (mut agent, port) = start_agent(SCAN_MS);
    let scraper = Scraper::new(port);
    scraper.scrape("before the huge executable runs");
    let target = Target::start(&huge, &["-work", "idle"], &[]).unwrap();
    let pid = target.pid;
    let deadline = Instant::now() + DISCOVERY_TIMEOUT;
    let skipped = agent
        .wait_for_stderr(|l| {
            assert!(
                Instant::now() < deadline,
                "the agent said nothing of pid {pid} in {DISCOVERY_TIMEOUT:?}"
            );
            l.contains(&format!("pid {pid}"))
        })
        .unwrap();
    assert!(
        skipped.contains(&format!("skipping pid {pid}"))
            && skipped.contains(&format!("{TERABYTE} bytes"))
            && skipped.contains("GOSCOPE_MAX_EXECUTABLE_BYTES"),
        "the agent's line on the 1 TB executable: {skipped}"
    );
    // It keeps serving, counts the process as unreadable, does not watch it.
    let samples = scrape_until(&scraper, DISCOVERY_TIMEOUT, "the skip counted", |s| {
        value_of(
            s,
            "goscope_agent_skipped_processes_total",
            &[("reason", "unreadable")],
        )
        .is_some_and(|n| n >= 1.0)
    });
    assert!(
        target_info(&samples, pid).is_none(),
        "the agent watches the 1 TB executable"
    );
    let unreadable = |s: &[Sample]| {
        value_of(
            s,
            "goscope_agent_skipped_processes_total",
            &[("reason", "unreadable")],
        )
        .unwrap_or(0.0)
    };
    // Skipped once, not again at every scan: over ten scans the count
    // grows by less than one per scan (other processes on the host may
    // start and be skipped meanwhile).
    let before = unreadable(&samples);
    let watch = Instant::now();
    let mut after = before;
    while watch.elapsed() < Duration::from_secs(2) {
        let (body, _) = scraper.scrape_body("after the skip");
        after = unreadable(&parse_exposition(&body));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        after - before < 3.0,
        "the 1 TB process is counted again and again: skipped as unreadable {before} then {after} times in 10 scans"
    );

    let pid_arg = pid.to_string();
    for args in [
        &["doctor", "--pid", &pid_arg, "--duration", "1"][..],
        &["inspect", &pid_arg][..],
    ] {
        let finished = testkit::goscope::run(args).unwrap();
        let stderr = finished.stderr.trim_end();
        assert_eq!(
            finished.status.code(),
            Some(1),
            "goscope {args:?}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "goscope {args:?} said more than one line:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("pid {pid}"))
                && stderr.contains(&format!("{TERABYTE} bytes"))
                && stderr.contains("GOSCOPE_MAX_EXECUTABLE_BYTES"),
            "goscope {args:?}: {stderr}"
        );
    }
    assert!(target.quit().unwrap().success());
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert_log_lines_clean(&finished.stderr);
}

// ---------------------------------------------------------------------
// 2b. A FIFO and a symbolic link to /dev/zero where the exe path points.

/// A target in a mount namespace of its own (a container's), whose
/// executable path names, in that namespace, something else than the file
/// it runs: the directory holding the binary is covered by a bind mount of
/// a directory where that name is a FIFO or a symbolic link to /dev/zero.
/// /proc/PID/exe still reads the path and still reaches the real file;
/// /proc/PID/root/PATH reaches the plant.
struct Planted {
    target: Target,
    /// The executable's path as the process sees it.
    path: PathBuf,
}

fn plant(scratch: &Path, kind: &str, binary: &Path) -> Planted {
    let base = scratch.join(kind);
    let (real, mnt, plant) = (base.join("real"), base.join("mnt"), base.join("plant"));
    for dir in [&real, &mnt, &plant] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::copy(binary, real.join("app")).unwrap();
    make_executable(&real.join("app"));
    let planted = plant.join("app");
    match kind {
        "fifo" => {
            let c = CString::new(planted.as_os_str().as_bytes()).unwrap();
            // SAFETY: mkfifo reads a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        }
        _ => std::os::unix::fs::symlink("/dev/zero", &planted).unwrap(),
    }
    let path = mnt.join("app");
    let script = format!(
        "mount --bind {real} {mnt} && exec {path} -work idle",
        real = real.display(),
        mnt = mnt.display(),
        path = path.display()
    );
    // unshare --mount makes every mount private: nothing reaches the host.
    let target =
        Target::start_command(Command::new("unshare").args(["--mount", "sh", "-c", &script]))
            .unwrap_or_else(|e| panic!("starting the {kind} target: {e:#}"));
    let status = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", target.pid))
        .args(["--", "mount", "--bind"])
        .args([&plant, &mnt])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "planting the {kind}: mount --bind exited {status}"
    );
    // The attack is in place: the exe link still names the path, which in
    // the target's namespace is now the plant.
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", target.pid)).unwrap(),
        path
    );
    let through_root = PathBuf::from(format!("/proc/{}/root{}", target.pid, path.display()));
    let meta = std::fs::symlink_metadata(&through_root).unwrap();
    match kind {
        "fifo" => assert!(
            meta.file_type().is_fifo(),
            "{} is no FIFO",
            through_root.display()
        ),
        _ => assert_eq!(
            std::fs::read_link(&through_root).unwrap(),
            Path::new("/dev/zero")
        ),
    }
    Planted { target, path }
}

#[test]
fn a_fifo_or_dev_zero_planted_at_the_exe_path_is_never_opened() {
    if !require_root_or_skip("a_fifo_or_dev_zero_planted_at_the_exe_path_is_never_opened") {
        return;
    }
    let scratch = Scratch::new("planted");
    let binary = loadgen("1.27", &BuildOptions::default());
    let version = crate::util::toolchain_version("1.27");
    let planted: Vec<Planted> = ["fifo", "zero"]
        .iter()
        .map(|k| plant(&scratch.0, k, &binary))
        .collect();

    // The agent looks at them only after the plants are in place.
    let (agent, port) = start_agent(SCAN_MS);
    let scraper = Scraper::new(port);
    let samples = scrape_until(
        &scraper,
        DISCOVERY_TIMEOUT,
        "both planted targets watched",
        |s| {
            planted
                .iter()
                .all(|p| target_info(s, p.target.pid).is_some())
        },
    );
    for p in &planted {
        let labels = target_info(&samples, p.target.pid).unwrap();
        assert_eq!(labels["exe"], bounded(&p.path.display().to_string()));
        assert_eq!(labels["go_version"], version);
        let pid = p.target.pid.to_string();
        let gomaxprocs = value_of(&samples, "goscope_gomaxprocs", &[("pid", &pid)]);
        assert!(
            gomaxprocs.is_some_and(|n| n >= 1.0),
            "pid {pid}: gomaxprocs {gomaxprocs:?}"
        );
    }
    // Discovery never stalls the server: scrapes answer within the budget.
    for i in 0..10 {
        scraper.scrape(&format!("{i} with the planted targets watched"));
    }

    // goscope reads the real file too.
    for p in &planted {
        let pid = p.target.pid.to_string();
        let inspect = crate::util::goscope_json(&["inspect", &pid, "--json"]);
        assert_eq!(
            inspect["go_version"],
            version.as_str(),
            "inspect of pid {pid}: {inspect}"
        );
        let report =
            crate::util::goscope_json(&["doctor", "--pid", &pid, "--duration", "1", "--json"]);
        assert_eq!(report["ended_by"], "elapsed", "doctor on pid {pid}");
        assert_eq!(report["target"]["pid"], p.target.pid);
    }
    for p in planted {
        assert!(p.target.quit().unwrap().success());
    }
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert_log_lines_clean(&finished.stderr);
}

// ---------------------------------------------------------------------
// 2c. Hostile names and versions.

/// Bytes a name or a version may carry to break a log line, a label or a
/// terminal: quotes, backslashes, newlines, CSI and OSC sequences, a C1
/// CSI, a right-to-left override, an invalid UTF-8 byte, shell syntax.
const HOSTILE: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\n",
    b"\x1b[31m",
    b"\x1b]0;pwned\x07",
    b"\r",
    b"\t",
    b"\xc2\x9b2J",
    b"\xe2\x80\xae",
    b"\xff",
    b"$(id)",
    b"'",
    b"{a=\"b\"} 1\n# TYPE",
    b"\\n",
];

/// `len` bytes of hostile text (no '/', no NUL), starting at pattern `from`.
fn hostile_bytes(len: usize, from: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = from;
    while out.len() < len {
        out.extend_from_slice(HOSTILE[i % HOSTILE.len()]);
        out.push(b'a' + (i % 26) as u8);
        i += 1;
    }
    out.truncate(len);
    out
}

/// The first 15 bytes of each target's file name: its comm (TASK_COMM_LEN
/// 16), set from the name at exec.
fn hostile_comm(tag: u8) -> Vec<u8> {
    let mut comm = b"\"\n\x1b[31m\\'$(id)".to_vec();
    comm.push(tag);
    assert_eq!(comm.len(), 15);
    comm
}

/// A directory chain under `base` as long as PATH_MAX allows, each
/// component hostile; returns it and room left for a file name.
fn longest_hostile_dir(base: &Path, name_len: usize) -> PathBuf {
    const PATH_MAX: usize = 4096;
    const COMPONENT: usize = 250;
    let mut dir = base.to_path_buf();
    let mut i = 0;
    // +2: the '/' before each component and the path's NUL.
    while dir.as_os_str().len() + 1 + COMPONENT + 1 + name_len + 1 < PATH_MAX {
        dir.push(OsStr::from_bytes(&hostile_bytes(COMPONENT, i)));
        i += 3;
    }
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("creating a {}-byte path: {e}", dir.as_os_str().len()));
    dir
}

fn read_uvarint(data: &[u8], mut pos: usize) -> (usize, usize) {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let byte = data[pos];
        pos += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return (value, pos);
        }
        shift += 7;
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Copies the ELF executable `src` to `dst` with `version` as the Go
/// version of its build info: a new `.go.buildinfo` (same header, the
/// version, the same module info) is appended to the file and the section
/// header pointed at it. The kernel and the Go runtime never read section
/// headers, so the program runs as before; a reader of `.go.buildinfo`
/// (`go version`, goscope) sees the new version.
fn with_build_version(src: &Path, dst: &Path, version: &[u8]) {
    let mut data = std::fs::read(src).unwrap();
    let u16_at =
        |d: &[u8], at: usize| usize::from(u16::from_le_bytes(d[at..at + 2].try_into().unwrap()));
    let u32_at =
        |d: &[u8], at: usize| u32::from_le_bytes(d[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |d: &[u8], at: usize| {
        usize::try_from(u64::from_le_bytes(d[at..at + 8].try_into().unwrap())).unwrap()
    };
    assert!(
        data.starts_with(b"\x7fELF\x02\x01"),
        "{} is no little-endian ELF64",
        src.display()
    );
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&data, 0x28),
        u16_at(&data, 0x3a),
        u16_at(&data, 0x3c),
        u16_at(&data, 0x3e),
    );
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(&data, header(shstrndx) + 24);
    let section = (0..shnum)
        .find(|&i| {
            let name = names + u32_at(&data, header(i));
            data[name..].starts_with(b".go.buildinfo\0")
        })
        .unwrap_or_else(|| panic!("{} has no .go.buildinfo", src.display()));
    let (offset, size) = (
        u64_at(&data, header(section) + 24),
        u64_at(&data, header(section) + 32),
    );
    let old = data[offset..offset + size].to_vec();
    assert!(
        old.starts_with(b"\xff Go buildinf:") && old[15] & 2 != 0,
        "unexpected build info"
    );
    let (version_len, at) = read_uvarint(&old, 32);
    let (modinfo_len, at) = read_uvarint(&old, at + version_len);
    let mut blob = old[..32].to_vec();
    put_uvarint(&mut blob, version.len());
    blob.extend_from_slice(version);
    put_uvarint(&mut blob, modinfo_len);
    blob.extend_from_slice(&old[at..at + modinfo_len]);
    data.resize(data.len().next_multiple_of(16), 0);
    let new_offset = data.len() as u64;
    data.extend_from_slice(&blob);
    let h = header(section);
    data[h + 24..h + 32].copy_from_slice(&new_offset.to_le_bytes());
    data[h + 32..h + 40].copy_from_slice(&(blob.len() as u64).to_le_bytes());
    std::fs::write(dst, &data).unwrap_or_else(|e| panic!("writing {}: {e}", dst.display()));
    make_executable(dst);
}

#[test]
fn hostile_names_and_versions_keep_labels_and_logs_valid() {
    if !require_root_or_skip("hostile_names_and_versions_keep_labels_and_logs_valid") {
        return;
    }
    const NAME_LEN: usize = 200;
    const MEGABYTE: usize = 1 << 20;
    let scratch = Scratch::new("hostile-names");
    let binary = loadgen("1.27", &BuildOptions::default());
    let real_version = crate::util::toolchain_version("1.27");
    let dir = longest_hostile_dir(&scratch.0, NAME_LEN);
    let name = |tag: u8| {
        let mut name = hostile_comm(tag);
        name.extend(hostile_bytes(NAME_LEN - name.len(), tag.into()));
        dir.join(OsStr::from_bytes(&name))
    };
    // A: a hostile comm and the longest path the kernel runs.
    let plain = name(b'A');
    std::fs::copy(&binary, &plain).unwrap();
    // B: a megabyte of hostile build-info version around the real one
    // (goscope takes the version from the first "go1."): supported, watched.
    let mut supported = hostile_bytes(64, 0);
    supported.extend_from_slice(real_version.as_bytes());
    supported.extend(hostile_bytes(MEGABYTE, 5));
    let watched_version = name(b'B');
    with_build_version(&binary, &watched_version, &supported);
    // C: the same around an unsupported version: skipped, and logged.
    let mut unsupported = hostile_bytes(64, 7);
    unsupported.extend_from_slice(b"go1.99.0");
    unsupported.extend(hostile_bytes(MEGABYTE, 9));
    let skipped_version = name(b'C');
    with_build_version(&binary, &skipped_version, &unsupported);
    eprintln!(
        "hostile executables: paths of {} bytes, versions of {} and {} bytes",
        plain.as_os_str().len(),
        supported.len(),
        unsupported.len()
    );
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // goscope sees the crafted version (the file still runs: below); a
    // copy at a plain path, as inspect takes only UTF-8 arguments.
    let check = scratch.0.join("version-check");
    std::fs::copy(&watched_version, &check).unwrap();
    let inspect = crate::util::goscope_json(&["inspect", check.to_str().unwrap(), "--json"]);
    assert_eq!(
        inspect["go_version"],
        lossy(&supported).as_str(),
        "inspect's go_version"
    );

    let (agent, port) = start_agent(SCAN_MS);
    let scraper = Scraper::new(port);
    let targets: Vec<Target> = [&plain, &watched_version, &skipped_version]
        .iter()
        .map(|p| Target::start(p, &["-work", "idle"], &[]).unwrap())
        .collect();
    let (a, b, c) = (targets[0].pid, targets[1].pid, targets[2].pid);
    let samples = scrape_until(
        &scraper,
        DISCOVERY_TIMEOUT,
        "the hostile targets looked at",
        |s| {
            target_info(s, a).is_some()
                && target_info(s, b).is_some()
                && value_of(
                    s,
                    "goscope_agent_skipped_processes_total",
                    &[("reason", "unsupported_version")],
                )
                .is_some_and(|n| n >= 1.0)
        },
    );
    assert!(target_info(&samples, c).is_none(), "go1.99 is watched");
    assert_labels_bounded(&samples);
    let comm = lossy(&hostile_comm(b'A'));
    let labels_a = target_info(&samples, a).unwrap();
    assert_eq!(labels_a["comm"], comm, "pid {a}'s comm label");
    assert_eq!(
        labels_a["exe"],
        bounded(&lossy(plain.as_os_str().as_bytes())),
        "pid {a}'s exe label"
    );
    assert_eq!(labels_a["go_version"], real_version);
    let labels_b = target_info(&samples, b).unwrap();
    assert_eq!(labels_b["comm"], lossy(&hostile_comm(b'B')));
    assert_eq!(
        labels_b["go_version"],
        bounded(&lossy(&supported)),
        "pid {b}'s go_version label"
    );
    for pid in [a, b] {
        let pid = pid.to_string();
        let gomaxprocs = value_of(&samples, "goscope_gomaxprocs", &[("pid", &pid)]);
        assert!(
            gomaxprocs.is_some_and(|n| n >= 1.0),
            "pid {pid} is not read: {gomaxprocs:?}"
        );
    }
    for i in 0..5 {
        let (body, _) = scraper.scrape_body(&format!("{i} with hostile targets"));
        assert_labels_bounded(&parse_exposition(&body));
    }
    for t in targets {
        assert!(t.quit().unwrap().success());
    }
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert_log_lines_clean(&finished.stderr);
    let about = |pid: u32| {
        finished
            .stderr
            .lines()
            .filter(|l| l.contains(&format!("pid {pid} ")) || l.contains(&format!("pid {pid}:")))
            .map(str::len)
            .collect::<Vec<_>>()
    };
    let (lines_a, lines_b, lines_c) = (about(a), about(b), about(c));
    eprintln!("agent log lines (bytes) about A {lines_a:?}, B {lines_b:?}, C {lines_c:?}");
    // Bounded too: a 4 KiB path escaped, a version cut (not a megabyte).
    for len in lines_a.iter().chain(&lines_b).chain(&lines_c) {
        assert!(
            *len <= MAX_LOG_LINE,
            "a {len}-byte log line about a hostile target"
        );
    }
    assert!(
        finished.stderr.contains(&format!("watching pid {a} "))
            && finished.stderr.contains(&format!("watching pid {b} ")),
        "{}",
        finished.stderr.chars().take(4000).collect::<String>()
    );
    assert!(
        finished.stderr.contains(&format!("skipping pid {c} "))
            && finished.stderr.contains("outside the supported"),
        "the agent did not say why it skipped pid {c}"
    );
}

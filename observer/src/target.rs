//! The observed process, pinned: validating a PID, opening its executable
//! once (also in another mount namespace) and noticing when it exits or
//! execs another program.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::{
    binary::{BinaryError, GoBinary},
    memory::ProcessMemory,
};

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("no such process: {pid}")]
    NoSuchProcess { pid: u32 },
    #[error("pid {pid} is a kernel thread, not a Go program")]
    KernelThread { pid: u32 },
    #[error(
        "permission denied reading /proc/{pid}/exe: {}",
        crate::privilege::proc_denied_advice()
    )]
    PermissionDenied { pid: u32 },
    #[error("cannot read /proc/{pid}/{file}: {cause}")]
    Proc {
        pid: u32,
        file: &'static str,
        cause: io::Error,
    },
    #[error("pid {pid} ({exe}): {cause}")]
    Binary {
        pid: u32,
        exe: String,
        cause: BinaryError,
    },
    #[error("process {pid} exited while goscope was attaching")]
    ExitedDuringAttach { pid: u32 },
    #[error(
        "pid {pid} exec'd {path} while goscope was attaching; nothing was attached to the new program"
    )]
    ExecdDuringAttach { pid: u32, path: String },
    #[error("pid {pid}: its executable {exe} is not a regular file; refusing to read it")]
    NotRegularFile { pid: u32, exe: String },
    #[error(
        "pid {pid}: its executable {exe} is {size} bytes, over the {limit}-byte limit (GOSCOPE_MAX_EXECUTABLE_BYTES)"
    )]
    ExecutableTooLarge {
        pid: u32,
        exe: String,
        size: u64,
        limit: u64,
    },
}

/// Largest executable goscope parses (a sparse file of a terabyte is refused,
/// not read). Overridden by `GOSCOPE_MAX_EXECUTABLE_BYTES`.
pub const DEFAULT_MAX_EXECUTABLE_BYTES: u64 = 1 << 30;

/// Whether the process goscope pinned is still the program it parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// The process ended (or is a zombie).
    Exited,
    /// The same process now runs another program (execve), at this path.
    Execd {
        path: PathBuf,
    },
}

/// A live process and its Go executable, pinned: a pidfd for the process,
/// the executable opened once (parsed and probed only through that open
/// file), and the process's memory opened once. After an execve the held
/// memory file reads nothing (it belongs to the old address space), even
/// when the new program is the same binary; after an exit the pidfd says so.
/// A reused PID therefore never passes for the process goscope parsed.
pub struct TargetProcess {
    pub pid: u32,
    /// The executable's path as the process sees it (its mount namespace).
    pub exe: PathBuf,
    /// `/proc/self/fd/N` of the pinned executable: probes are attached
    /// through it, so the kernel pins that very inode at perf_event_open.
    pub exe_handle: PathBuf,
    /// Shared: the agent parses each executable once for all its processes.
    pub binary: std::sync::Arc<GoBinary>,
    exe_file: std::sync::Arc<File>,
    pidfd: OwnedFd,
    /// /proc/PID/mem opened at attach: the exec sentinel and the memory reader.
    mem: std::sync::Arc<File>,
    /// An address mapped from the executable (its first PT_LOAD), read to
    /// check the sentinel.
    sentinel_address: u64,
    load_bias: u64,
    /// /proc/PID/auxv when pinned (every exec writes a new one).
    auxv: Vec<u8>,
}

/// The pinned executable handed to a loader: its path as the process sees
/// it, the open file and its metadata (identity and size).
pub struct PinnedExe<'a> {
    pub path: &'a Path,
    pub file: &'a File,
    pub meta: &'a std::fs::Metadata,
}

impl TargetProcess {
    pub fn open(pid: u32) -> Result<Self, TargetError> {
        Self::open_with(pid, |exe| {
            read_binary(pid, exe.path, exe.file, exe.meta).map(std::sync::Arc::new)
        })
    }

    /// Opens `pid` with its executable parsed by `load` (a cache keyed by
    /// the file's identity, say).
    pub fn open_with(
        pid: u32,
        load: impl FnOnce(&PinnedExe<'_>) -> Result<std::sync::Arc<GoBinary>, TargetError>,
    ) -> Result<Self, TargetError> {
        if pid == 0 || i32::try_from(pid).is_err() {
            return Err(TargetError::NoSuchProcess { pid });
        }
        let pidfd = pidfd_open(pid)?;
        // Memory first: an exec after this point kills the sentinel, so
        // everything opened below is checked against it at the end.
        let mem = open_mem(pid)?;
        let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(exe) => exe,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if proc_dir_exists(pid) {
                    TargetError::KernelThread { pid }
                } else {
                    TargetError::NoSuchProcess { pid }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(TargetError::PermissionDenied { pid });
            }
            Err(cause) => {
                return Err(TargetError::Proc {
                    pid,
                    file: "exe",
                    cause,
                });
            }
        };
        let exe_file = open_executable(pid, &exe)?;
        let meta = exe_file.metadata().map_err(|cause| TargetError::Proc {
            pid,
            file: "exe",
            cause,
        })?;
        let binary = load(&PinnedExe {
            path: &exe,
            file: &exe_file,
            meta: &meta,
        })?;
        let load_bias = load_bias(pid, &binary, &meta)?;
        let sentinel_address = binary
            .first_load_vaddr()
            .unwrap_or(0)
            .checked_add(load_bias)
            .ok_or(TargetError::ExitedDuringAttach { pid })?;
        let exe_handle = PathBuf::from(format!("/proc/self/fd/{}", exe_file.as_raw_fd()));
        let auxv = read_auxv(pid).unwrap_or_default();
        let target = Self {
            pid,
            exe,
            exe_handle,
            binary,
            exe_file: std::sync::Arc::new(exe_file),
            pidfd,
            mem: std::sync::Arc::new(mem),
            sentinel_address,
            load_bias,
            auxv,
        };
        match target.liveness() {
            Liveness::Alive => Ok(target),
            Liveness::Exited => Err(TargetError::NoSuchProcess { pid }),
            Liveness::Execd { path } => Err(TargetError::ExecdDuringAttach {
                pid,
                path: display_path(&path),
            }),
        }
    }

    /// The process's command name (/proc/PID/comm).
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// Whether the pinned process still runs the program goscope parsed.
    pub fn liveness(&self) -> Liveness {
        if pidfd_exited(&self.pidfd) {
            return Liveness::Exited;
        }
        let mut byte = [0u8; 1];
        match self.mem.read_at(&mut byte, self.sentinel_address) {
            // The old address space is alive, but a CLONE_VM child can keep
            // it alive past an exec: the auxiliary vector is written anew by
            // every exec, so it tells.
            Ok(1) if read_auxv(self.pid).is_none_or(|now| now == self.auxv) => Liveness::Alive,
            Ok(1) if pidfd_exited(&self.pidfd) => Liveness::Exited,
            Ok(1) => Liveness::Execd {
                path: std::fs::read_link(format!("/proc/{}/exe", self.pid)).unwrap_or_default(),
            },
            // Zero bytes (or an error) from the held memory file: the address
            // space it was opened on is gone, by exit or by exec. A process
            // in the middle of exiting has dropped its memory before its
            // pidfd becomes readable: wait for that a little before calling
            // it an exec (an exec'd process never becomes readable).
            _ if pidfd_exits_within(&self.pidfd, EXIT_GRACE_MS) => Liveness::Exited,
            _ => Liveness::Execd {
                path: std::fs::read_link(format!("/proc/{}/exe", self.pid)).unwrap_or_default(),
            },
        }
    }

    /// True while the same process runs the same program.
    pub fn is_alive(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// The process's memory, read through the file opened at attach (so
    /// reads after an exec fail instead of reading another program).
    pub fn memory(&self) -> ProcessMemory {
        ProcessMemory::pinned(self.pid, std::sync::Arc::clone(&self.mem))
    }

    /// Takes goscope's observer lock for this process and says whether
    /// another goscope held it already. The lock is an open-file-description
    /// read lock on one byte of the pinned executable's inode (which every
    /// mount and PID namespace shares), at an offset named by the process's
    /// start time (the same in every PID namespace), far beyond any real
    /// file: it does not disturb the target's own flock or fcntl locks, and
    /// the kernel drops it when goscope exits however it exits. Read locks
    /// do not exclude each other, so goscope asks first whether a write
    /// lock would conflict. False when another goscope observes this
    /// process.
    pub fn try_lock_observer(&self) -> bool {
        let Some(start) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| stat_field(&s, 22).and_then(|f| f.parse::<i64>().ok()))
        else {
            return true;
        };
        let offset = OBSERVER_LOCK_BASE.saturating_add(start % OBSERVER_LOCK_SPAN);
        let fd = self.exe_file.as_raw_fd();
        let mut probe = observer_lock(libc::F_WRLCK as i16, offset);
        // SAFETY: fcntl with a flock struct we own.
        let asked = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut probe) };
        let other = asked == 0 && probe.l_type != libc::F_UNLCK as i16;
        let mut lock = observer_lock(libc::F_RDLCK as i16, offset);
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut lock) };
        !other
    }

    /// The pinned executable file.
    pub fn executable_file(&self) -> &File {
        &self.exe_file
    }

    /// CPU time the process has used (user + system, every thread, the
    /// exited ones included), in nanoseconds: the kernel's CPU clock of the
    /// process (what /proc/PID/task/*/schedstat sums), not clock ticks.
    /// Falls back to /proc/PID/stat (10 ms ticks) if the clock is refused.
    pub fn cpu_time_ns(&self) -> Result<u64, TargetError> {
        if let Some(ns) = process_cpu_clock_ns(self.pid) {
            return self.still_ours(ns);
        }
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).map_err(|cause| {
                TargetError::Proc {
                    pid: self.pid,
                    file: "stat",
                    cause,
                }
            })?;
        let ticks = |n| {
            stat_field(&stat, n)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .unwrap_or(100)
            .max(1);
        let total = u128::from(ticks(14)) + u128::from(ticks(15));
        self.still_ours(u64::try_from(total * 1_000_000_000 / u128::from(hz)).unwrap_or(u64::MAX))
    }

    /// `value`, read by PID, if the pinned process still lives (so the PID
    /// was not reused by another process during the read).
    fn still_ours<T>(&self, value: T) -> Result<T, TargetError> {
        if pidfd_exited(&self.pidfd) {
            Err(TargetError::NoSuchProcess { pid: self.pid })
        } else {
            Ok(value)
        }
    }

    /// OS threads of the process (Threads: in /proc/PID/status).
    pub fn thread_count(&self) -> Result<u64, TargetError> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).map_err(|cause| {
                TargetError::Proc {
                    pid: self.pid,
                    file: "status",
                    cause,
                }
            })?;
        self.still_ours(
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        )
    }

    /// What to add to the binary's link-time addresses to get run-time ones:
    /// 0 for a position-dependent executable, the mapping base for PIE.
    /// Read once, when the process was pinned.
    pub fn load_bias(&self) -> Result<u64, TargetError> {
        Ok(self.load_bias)
    }

    /// Turns an attach failure into "the target exited" (or exec'd) when
    /// that is what happened.
    pub fn explain_attach_failure(&self, error: anyhow::Error) -> anyhow::Error {
        match self.liveness() {
            Liveness::Alive => error,
            Liveness::Exited => TargetError::ExitedDuringAttach { pid: self.pid }.into(),
            Liveness::Execd { path } => TargetError::ExecdDuringAttach {
                pid: self.pid,
                path: display_path(&path),
            }
            .into(),
        }
    }
}

/// A path for a message: control characters escaped.
pub fn display_path(path: &Path) -> String {
    crate::format::escape_control(&path.display().to_string())
}

/// The largest executable goscope will parse, from the environment or the default.
fn max_executable_bytes() -> u64 {
    std::env::var("GOSCOPE_MAX_EXECUTABLE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_EXECUTABLE_BYTES)
}

/// Opens the executable of `pid` through the /proc/PID/exe magic link (it
/// reaches the very file the process runs, in whatever mount namespace,
/// even deleted), refusing anything but a regular file.
fn open_executable(pid: u32, exe: &Path) -> Result<File, TargetError> {
    let file = open_proc(
        pid,
        "exe",
        libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY,
    )?;
    let meta = file.metadata().map_err(|cause| TargetError::Proc {
        pid,
        file: "exe",
        cause,
    })?;
    if !meta.file_type().is_file() {
        return Err(TargetError::NotRegularFile {
            pid,
            exe: display_path(exe),
        });
    }
    let limit = max_executable_bytes();
    if meta.len() > limit {
        return Err(TargetError::ExecutableTooLarge {
            pid,
            exe: display_path(exe),
            size: meta.len(),
            limit,
        });
    }
    Ok(file)
}

/// Reads and parses the pinned executable of `pid`.
pub fn read_binary(
    pid: u32,
    exe: &Path,
    file: &File,
    meta: &std::fs::Metadata,
) -> Result<GoBinary, TargetError> {
    let limit = max_executable_bytes();
    if meta.len() > limit {
        return Err(TargetError::ExecutableTooLarge {
            pid,
            exe: display_path(exe),
            size: meta.len(),
            limit,
        });
    }
    let len = usize::try_from(meta.len()).map_err(|_| TargetError::ExecutableTooLarge {
        pid,
        exe: display_path(exe),
        size: meta.len(),
        limit,
    })?;
    // Most executables on a host are not Go: read only the headers they
    // need to say so (the ELF and section headers and the section names)
    // before reading a whole file.
    if !has_go_buildinfo(file) {
        return Err(TargetError::Binary {
            pid,
            exe: display_path(exe),
            cause: BinaryError::NotGo {
                path: exe.to_path_buf(),
            },
        });
    }
    let mut data = vec![0; len];
    file.read_exact_at(&mut data, 0)
        .map_err(|cause| TargetError::Proc {
            pid,
            file: "exe",
            cause,
        })?;
    GoBinary::parse(exe, data).map_err(|cause| TargetError::Binary {
        pid,
        exe: display_path(exe),
        cause,
    })
}

/// True when `file` is an ELF file with a `.go.buildinfo` section, read on
/// demand (headers only); false for anything else, unreadable included.
fn has_go_buildinfo(file: &File) -> bool {
    use object::{Object as _, ObjectSection as _};
    let mut reader = file;
    if std::io::Seek::rewind(&mut reader).is_err() {
        return false;
    }
    let cache = object::ReadCache::new(reader);
    object::File::parse(&cache).is_ok_and(|elf| {
        elf.sections()
            .any(|s| s.name().is_ok_and(|n| n == ".go.buildinfo"))
    })
}

/// The CPU-time clock of process `pid`, ns (clock_getcpuclockid).
fn process_cpu_clock_ns(pid: u32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: writes the clock id into `clock`, which we own.
    if unsafe { libc::clock_getcpuclockid(i32::try_from(pid).ok()?, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into `ts`, which we own.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, TargetError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => TargetError::NoSuchProcess { pid },
            Some(libc::ENOSYS) => TargetError::Proc {
                pid,
                file: "pidfd",
                cause: io::Error::other("this kernel lacks pidfd_open (Linux 5.3+ is needed)"),
            },
            _ => TargetError::Proc {
                pid,
                file: "pidfd",
                cause: e,
            },
        });
    }
    let fd = i32::try_from(fd).map_err(|_| TargetError::NoSuchProcess { pid })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// True once the process behind `pidfd` has exited (zombies included).
fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    pidfd_exits_within(pidfd, 0)
}

/// How long an address space that vanished is given to turn out an exit
/// rather than an exec (exit_mm runs before the exit is signalled).
const EXIT_GRACE_MS: i32 = 250;

/// Whether the process has exited, or does within `timeout_ms`.
fn pidfd_exits_within(pidfd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return n != 0 && (n < 0 || poll.revents != 0);
    }
}

/// The process's auxiliary vector (a few hundred bytes, written by exec);
/// None when unreadable.
fn read_auxv(pid: u32) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut auxv = Vec::new();
    File::open(format!("/proc/{pid}/auxv"))
        .ok()?
        .take(MAX_AUXV_BYTES)
        .read_to_end(&mut auxv)
        .ok()?;
    Some(auxv)
}

/// Where observer locks live in the executable's byte range: beyond any
/// real file, one byte per process start time.
const OBSERVER_LOCK_BASE: i64 = 1 << 62;
const OBSERVER_LOCK_SPAN: i64 = 1 << 60;

fn observer_lock(kind: i16, offset: i64) -> libc::flock {
    // SAFETY: flock is plain data; zero is a valid value for every field.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as i16;
    lock.l_start = offset;
    lock.l_len = 1;
    lock
}

/// Far more than any auxiliary vector (about 400 bytes on x86-64).
const MAX_AUXV_BYTES: u64 = 16 << 10;
/// Longest /proc/PID/maps goscope reads for the load bias (a hostile
/// process can have tens of thousands of mappings with long names).
const MAX_MAPS_BYTES: u64 = 8 << 20;

fn open_mem(pid: u32) -> Result<File, TargetError> {
    open_proc(pid, "mem", libc::O_CLOEXEC)
}

/// Opens /proc/PID/`file` for reading with `flags`, naming what failed.
fn open_proc(pid: u32, file: &'static str, flags: libc::c_int) -> Result<File, TargetError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(format!("/proc/{pid}/{file}"))
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => TargetError::NoSuchProcess { pid },
            io::ErrorKind::PermissionDenied => TargetError::PermissionDenied { pid },
            _ => TargetError::Proc {
                pid,
                file,
                cause: e,
            },
        })
}

/// The load bias of `binary` in `pid`: 0 unless PIE, else the start of the
/// mapping of the executable's inode at file offset 0.
fn load_bias(
    pid: u32,
    binary: &GoBinary,
    exe_meta: &std::fs::Metadata,
) -> Result<u64, TargetError> {
    if !binary.pie {
        return Ok(0);
    }
    let proc_err = |cause| TargetError::Proc {
        pid,
        file: "maps",
        cause,
    };
    let maps = File::open(format!("/proc/{pid}/maps")).map_err(proc_err)?;
    let first_load = binary.first_load_vaddr().unwrap_or(0);
    let dev = exe_meta.dev();
    // The kernel prints dev_t as major:minor in hex.
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    // The executable is mapped early: read line by line, bounded, and stop
    // at the first mapping of its (device, inode) at offset 0.
    let mut reader = io::BufReader::new(io::Read::take(maps, MAX_MAPS_BYTES));
    let mut line = String::new();
    let mut found = None;
    while found.is_none() {
        line.clear();
        match io::BufRead::read_line(&mut reader, &mut line) {
            Ok(0) => break,
            Ok(_) => {
                found = bias_from_maps(&line, Some((major, minor)), exe_meta.ino(), first_load)
            }
            Err(e) => return Err(proc_err(e)),
        }
    }
    found.ok_or_else(|| {
        proc_err(io::Error::new(
            io::ErrorKind::NotFound,
            "no mapping of the executable at file offset 0",
        ))
    })
}

/// The load bias from the text of /proc/PID/maps: the start of the first
/// mapping of inode `inode` at file offset 0, minus `first_load` (the
/// binary's lowest PT_LOAD address); `None` when there is none.
pub fn bias_from_maps(
    maps: &str,
    dev: Option<(u64, u64)>,
    inode: u64,
    first_load: u64,
) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let _perms = fields.next()?;
        let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
        let mapped_dev = fields.next()?;
        let mapped: u64 = fields.next()?.parse().ok()?;
        if offset != 0 || mapped != inode {
            return None;
        }
        if let Some((major, minor)) = dev {
            let (ma, mi) = mapped_dev.split_once(':')?;
            if u64::from_str_radix(ma, 16).ok()? != major
                || u64::from_str_radix(mi, 16).ok()? != minor
            {
                return None;
            }
        }
        let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
        start.checked_sub(first_load)
    })
}

fn proc_dir_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The 1-based field `n` of a /proc/PID/stat line (the command name in
/// parentheses may contain spaces).
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(n.checked_sub(3)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_the_command_name() {
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0";
        assert_eq!(stat_field(line, 3), Some("S"));
        assert_eq!(stat_field(line, 22), Some("12345"));
        assert_eq!(stat_field("garbage", 3), None);
    }

    #[test]
    fn the_bias_is_the_mapping_of_the_inode_at_offset_zero() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00001000 08:01 77 /srv/app
55d0c0100000-55d0c0200000 r-xp 00000000 08:01 78 /srv/other
55d0c0200000-55d0c0300000 r--p 00000000 08:01 77 /srv/app
garbage line
";
        assert_eq!(bias_from_maps(maps, None, 77, 0), Some(0x55d0_c020_0000));
        assert_eq!(
            bias_from_maps(maps, None, 77, 0x1000),
            Some(0x55d0_c01f_f000)
        );
        assert_eq!(bias_from_maps(maps, None, 79, 0), None);
        // A start below the first PT_LOAD address does not wrap.
        assert_eq!(bias_from_maps(maps, None, 78, u64::MAX), None);
        // The same inode number on another device is another file.
        assert_eq!(bias_from_maps(maps, Some((8, 2)), 77, 0), None);
        assert_eq!(
            bias_from_maps(maps, Some((8, 1)), 77, 0),
            Some(0x55d0_c020_0000)
        );
    }

    #[test]
    fn missing_pid_is_reported_by_number() {
        let err = TargetProcess::open(u32::MAX - 1).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("no such process: {}", u32::MAX - 1)
        );
    }
}

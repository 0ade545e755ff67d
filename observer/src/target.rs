//! The observed process: validating a PID, finding its executable (also in
//! another mount namespace) and noticing when it exits or is replaced.

use std::{
    io,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::binary::{BinaryError, GoBinary};

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("no such process: {pid}")]
    NoSuchProcess { pid: u32 },
    #[error("pid {pid} is a kernel thread, not a Go program")]
    KernelThread { pid: u32 },
    #[error("permission denied reading /proc/{pid}/exe: run goscope as root")]
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
}

/// A live process and its Go executable.
pub struct TargetProcess {
    pub pid: u32,
    /// The executable's path as the process sees it (its mount namespace).
    pub exe: PathBuf,
    /// A path that reaches the same file from goscope's mount namespace.
    pub exe_handle: PathBuf,
    /// Shared: the agent parses each executable once for all its processes.
    pub binary: std::sync::Arc<GoBinary>,
    start_time: u64,
}

impl TargetProcess {
    pub fn open(pid: u32) -> Result<Self, TargetError> {
        Self::open_with(pid, |exe, handle| {
            read_binary(pid, exe, handle).map(std::sync::Arc::new)
        })
    }

    /// Opens `pid` with its executable from `load(exe, exe_handle)` (a
    /// cache keyed by the file's identity, say).
    pub fn open_with(
        pid: u32,
        load: impl FnOnce(&Path, &Path) -> Result<std::sync::Arc<GoBinary>, TargetError>,
    ) -> Result<Self, TargetError> {
        let start_time = start_time(pid)?;
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
        let exe_handle = PathBuf::from(format!("/proc/{pid}/exe"));
        let binary = load(&exe, &exe_handle)?;
        Ok(Self {
            pid,
            exe,
            exe_handle,
            binary,
            start_time,
        })
    }

    /// The process's command name (/proc/PID/comm).
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// True while the same process (not a reused PID) is alive.
    pub fn is_alive(&self) -> bool {
        let alive = start_time(self.pid).is_ok_and(|t| t == self.start_time);
        alive && !is_zombie(self.pid)
    }

    /// CPU time the process has used (user + system), in nanoseconds.
    pub fn cpu_time_ns(&self) -> Result<u64, TargetError> {
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
        Ok((ticks(14) + ticks(15)) * 1_000_000_000 / hz)
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
        Ok(status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// What to add to the binary's link-time addresses to get run-time ones:
    /// 0 for a position-dependent executable, the mapping base for PIE.
    pub fn load_bias(&self) -> Result<u64, TargetError> {
        if !self.binary.pie {
            return Ok(0);
        }
        let proc_err = |cause| TargetError::Proc {
            pid: self.pid,
            file: "maps",
            cause,
        };
        let exe_meta = std::fs::metadata(&self.exe_handle).map_err(proc_err)?;
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).map_err(proc_err)?;
        let first_load = self.binary.first_load_vaddr().unwrap_or(0);
        maps.lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                let range = fields.next()?;
                let _perms = fields.next()?;
                let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
                let _dev = fields.next()?;
                let inode: u64 = fields.next()?.parse().ok()?;
                if offset != 0 || inode != std::os::unix::fs::MetadataExt::ino(&exe_meta) {
                    return None;
                }
                let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
                start.checked_sub(first_load)
            })
            .ok_or_else(|| {
                proc_err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no mapping of the executable at file offset 0",
                ))
            })
    }

    /// Turns an attach failure into "the target exited" when that is what
    /// happened.
    pub fn explain_attach_failure(&self, error: anyhow::Error) -> anyhow::Error {
        if self.is_alive() {
            error
        } else {
            TargetError::ExitedDuringAttach { pid: self.pid }.into()
        }
    }
}

/// Reads and parses the executable of `pid`.
pub fn read_binary(pid: u32, exe: &Path, handle: &Path) -> Result<GoBinary, TargetError> {
    // /proc/PID/exe opens the very file the process runs, whatever mount
    // namespace it lives in, and even if it was deleted or replaced.
    let data = std::fs::read(handle).or_else(|first| {
        let via_root =
            Path::new(&format!("/proc/{pid}/root")).join(exe.strip_prefix("/").unwrap_or(exe));
        std::fs::read(via_root).map_err(|_| first)
    });
    let data = match data {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TargetError::NoSuchProcess { pid });
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
    GoBinary::parse(exe, data).map_err(|cause| TargetError::Binary {
        pid,
        exe: exe.display().to_string(),
        cause,
    })
}

fn proc_dir_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
fn start_time(pid: u32) -> Result<u64, TargetError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            TargetError::NoSuchProcess { pid }
        } else {
            TargetError::Proc {
                pid,
                file: "stat",
                cause: e,
            }
        }
    })?;
    stat_field(&stat, 22)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| TargetError::Proc {
            pid,
            file: "stat",
            cause: io::Error::new(io::ErrorKind::InvalidData, "malformed stat line"),
        })
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_field(&s, 3).map(|state| state == "Z" || state == "X"))
        .unwrap_or(true)
}

/// The 1-based field `n` of a /proc/PID/stat line (the command name in
/// parentheses may contain spaces).
fn stat_field(stat: &str, n: usize) -> Option<&str> {
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
    fn missing_pid_is_reported_by_number() {
        let err = TargetProcess::open(u32::MAX - 1).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("no such process: {}", u32::MAX - 1)
        );
    }
}

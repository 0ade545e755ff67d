//! The host's processes from /proc: finding a target by name (what
//! `--pid NAME` accepts) and listing every Go process with its version,
//! build flags, cgroup and whether goscope supports it (`goscope ps`).
//! Each distinct executable is parsed once (by file identity); kernel
//! threads and processes that vanish mid-scan are left out.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    binary::GoBinary,
    runtime::RuntimeLayout,
    target::{self, TargetError, TargetProcess},
};

/// Processes scanned at most.
const MAX_PROCESSES: usize = 1 << 20;

/// A live process as /proc names it.
#[derive(Clone, Debug)]
pub struct ProcessName {
    pub pid: u32,
    pub comm: String,
    /// The executable (None: kernel thread, or not readable by us).
    pub exe: Option<PathBuf>,
}

/// Every process but goscope itself, by pid.
pub fn processes() -> Vec<ProcessName> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<ProcessName> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .take(MAX_PROCESSES)
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some(ProcessName {
                pid,
                comm: comm.trim_end().to_string(),
                exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
            })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// The kernel keeps 15 bytes of a command name.
const COMM_LEN: usize = 15;

/// Whether `name` names the process: its executable's path or file name,
/// or its command name (compared as the kernel truncates it).
fn matches(p: &ProcessName, name: &str) -> bool {
    let Some(exe) = &p.exe else { return false };
    exe.as_os_str() == name
        || exe.file_name().is_some_and(|f| f == name)
        || (name.len() <= COMM_LEN && p.comm == name)
}

/// The one process `name` names, or an error listing the candidates.
pub fn find_by_name(name: &str) -> anyhow::Result<u32> {
    let found: Vec<ProcessName> = processes()
        .into_iter()
        .filter(|p| matches(p, name))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.pid),
        [] => anyhow::bail!(
            "no process is named {}",
            crate::format::escape_control(name)
        ),
        many => {
            let listed: Vec<String> = many
                .iter()
                .take(10)
                .map(|p| {
                    format!(
                        "{} ({})",
                        p.pid,
                        p.exe
                            .as_deref()
                            .map_or_else(String::new, target::display_path)
                    )
                })
                .collect();
            anyhow::bail!(
                "{} processes are named {}: {}{}; give one with --pid PID",
                many.len(),
                crate::format::escape_control(name),
                listed.join(", "),
                if many.len() > 10 { ", ..." } else { "" }
            )
        }
    }
}

/// One Go process of `goscope ps`.
#[derive(Clone, Debug, Serialize)]
pub struct GoProcess {
    pub pid: u32,
    pub comm: String,
    pub exe: String,
    pub go_version: String,
    pub stripped: bool,
    pub pie: bool,
    pub cgo: bool,
    /// The process's cgroup (v2 path, or the v1 cpu controller's).
    pub cgroup: String,
    pub supported: bool,
    /// Why not, when not.
    pub unsupported_reason: Option<String>,
}

/// (dev, inode, size, mtime) of an executable.
type FileKey = (u64, u64, u64, i64);

/// What an executable is, decided once.
#[derive(Clone)]
enum Executable {
    Go {
        binary: std::sync::Arc<GoBinary>,
        reason: Option<String>,
    },
    NotGo,
}

/// The process's cgroup from /proc/PID/cgroup ("" when unreadable).
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
    let v1 = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    });
    crate::format::escape_control(v2.or(v1).unwrap_or_default())
}

/// Why goscope cannot observe a binary (None: it can).
fn unsupported(binary: &GoBinary) -> Option<String> {
    let version = binary.go_version();
    if !version.is_supported() {
        return Some(format!(
            "{} is outside the supported Go versions",
            crate::format::escape_control(&binary.build.go_version_string)
        ));
    }
    if !version.is_verified() {
        return Some(format!(
            "{} is not verified (--force-version to try)",
            crate::format::escape_control(&binary.build.go_version_string)
        ));
    }
    RuntimeLayout::resolve(binary, false)
        .err()
        .map(|e| format!("its runtime layout cannot be resolved: {e}"))
}

/// Every Go process, each executable parsed once.
pub fn go_processes() -> Vec<GoProcess> {
    let mut cache: HashMap<FileKey, Executable> = HashMap::new();
    let mut out = Vec::new();
    for p in processes() {
        let Some(exe) = &p.exe else { continue };
        let mut found = None;
        let opened = TargetProcess::open_with(p.pid, |pinned| {
            let m = pinned.meta;
            let key = (m.dev(), m.ino(), m.size(), m.mtime());
            if let Some(known) = cache.get(&key) {
                found = Some(known.clone());
                return match known {
                    Executable::Go { binary, .. } => Ok(binary.clone()),
                    Executable::NotGo => Err(TargetError::NoSuchProcess { pid: p.pid }),
                };
            }
            match target::read_binary(p.pid, pinned.path, pinned.file, pinned.meta) {
                Ok(binary) => {
                    // Judged while the file's bytes are at hand (the layout
                    // needs its DWARF), then kept as tables only.
                    let reason = unsupported(&binary);
                    let light = std::sync::Arc::new(binary.without_file_data());
                    let executable = Executable::Go {
                        binary: light.clone(),
                        reason,
                    };
                    cache.insert(key, executable.clone());
                    found = Some(executable);
                    Ok(light)
                }
                Err(e) => {
                    cache.insert(key, Executable::NotGo);
                    Err(e)
                }
            }
        });
        let (Ok(_), Some(Executable::Go { binary, reason })) = (opened, found) else {
            continue;
        };
        out.push(GoProcess {
            pid: p.pid,
            comm: crate::format::escape_control(&p.comm),
            exe: target::display_path(Path::new(exe)),
            go_version: crate::format::escape_control(&binary.build.go_version_string),
            stripped: !binary.has_symtab,
            pie: binary.pie,
            cgo: binary.cgo(),
            cgroup: cgroup_of(p.pid),
            supported: reason.is_none(),
            unsupported_reason: reason,
        });
    }
    out
}

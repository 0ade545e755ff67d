//! Which processes the agent watches: scans /proc, recognizes Go programs
//! by their build info (each executable parsed once, cached by file
//! identity), starts watching supported ones and drops them when they
//! exit. Everything it skips is counted by reason, and each skipped Go
//! executable is logged once.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// Why a process is not watched: the `reason` label of
/// goscope_agent_skipped_processes_total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    NotGo,
    Exited,
    UnsupportedVersion,
    NoLayout,
    MaxTargets,
    ReadError,
    Unreadable,
}

impl SkipReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotGo => "not_go",
            Self::Exited => "exited",
            Self::UnsupportedVersion => "unsupported_version",
            Self::NoLayout => "no_layout",
            Self::MaxTargets => "max_targets",
            Self::ReadError => "read_error",
            Self::Unreadable => "unreadable",
        }
    }
}

/// How long one discovery pass may spend looking at new PIDs.
const SCAN_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Most executables remembered (skipped ones are forgotten past it).
const MAX_CACHED_EXECUTABLES: usize = 4096;
/// Most bytes of a build-info version a log line carries (a crafted
/// binary's version can be megabytes long).
const LOGGED_VERSION_LEN: usize = 160;

use super::{
    snapshot::Snapshot,
    watched::{Freshness, Watched},
};
use crate::{
    binary::GoBinary,
    runtime::RuntimeLayout,
    target::{self, TargetError, TargetProcess},
};

/// Identity of an executable file: device, inode, size, mtime.
type FileKey = (u64, u64, u64, i64);

/// What one executable turned out to be.
#[derive(Clone)]
enum Executable {
    Go {
        binary: Arc<GoBinary>,
        layout: Arc<RuntimeLayout>,
    },
    /// Not watchable; the reason is a metric label.
    Skip(SkipReason),
}

pub struct Registry {
    pub targets: BTreeMap<u32, Watched>,
    /// PIDs looked at and skipped, with their start identity (exe key).
    ignored: HashMap<u32, FileKey>,
    /// Parsed executables by file identity, shared with `examine` (which
    /// runs without the registry's lock).
    executables: Arc<Mutex<HashMap<FileKey, Executable>>>,
    logged: HashSet<FileKey>,
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Target readings a scrape could not export fresh, by reason
    /// (`read_failed`: no reading; `late`: an old one was exported).
    pub dropped: BTreeMap<&'static str, u64>,
    max_targets: usize,
    cgroup_root: PathBuf,
    /// The kubelet's pod log directories (pod names and namespaces).
    pods_dir: PathBuf,
    own_pid: u32,
    force_version: bool,
}

impl Registry {
    pub fn new(
        max_targets: usize,
        cgroup_root: PathBuf,
        pods_dir: PathBuf,
        force_version: bool,
    ) -> Self {
        Self {
            targets: BTreeMap::new(),
            ignored: HashMap::new(),
            executables: Arc::new(Mutex::new(HashMap::new())),
            logged: HashSet::new(),
            skipped: BTreeMap::new(),
            dropped: BTreeMap::new(),
            max_targets,
            cgroup_root,
            pods_dir,
            own_pid: std::process::id(),
            force_version,
        }
    }

    /// One pass over /proc: drops exited targets, looks at new PIDs. The
    /// registry is locked only to read and update it, never while an
    /// executable is parsed, so scrapes do not wait on discovery.
    pub fn scan(registry: &Mutex<Self>) {
        let lock = || registry.lock().unwrap_or_else(|p| p.into_inner());
        let (fresh, cache, force_version) = {
            let mut r = lock();
            (r.fresh_pids(), Arc::clone(&r.executables), r.force_version)
        };
        // Discovery's own time budget: PIDs not looked at in this pass are
        // still fresh at the next one (nothing is marked for them).
        let begun = std::time::Instant::now();
        for pid in fresh {
            if begun.elapsed() > SCAN_BUDGET {
                break;
            }
            let examined = examine(pid, &cache, force_version);
            lock().admit(pid, examined);
        }
        lock().evict();
    }

    /// Drops exited (or exec'd) targets; returns the PIDs not looked at yet.
    fn fresh_pids(&mut self) -> Vec<u32> {
        let exited: Vec<u32> = self
            .targets
            .iter()
            .filter(|(_, w)| !w.target.is_alive())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in exited {
            if let Some(w) = self.targets.remove(&pid) {
                eprintln!(
                    "goscope agent: pid {pid} ({}) exited or exec'd; no longer watched as that program",
                    target::display_path(&w.target.exe)
                );
            }
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let live: HashSet<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        // A skipped process is looked at again when it runs another file
        // (a shell that execs a Go server).
        self.ignored.retain(|pid, key| {
            live.contains(pid) && current_key(*pid).unwrap_or((0, 0, 0, 0)) == *key
        });
        let mut fresh: Vec<u32> = live
            .into_iter()
            .filter(|pid| {
                *pid != self.own_pid
                    && !self.targets.contains_key(pid)
                    && !self.ignored.contains_key(pid)
            })
            .collect();
        fresh.sort_unstable();
        fresh
    }

    fn skip(&mut self, pid: u32, key: FileKey, reason: SkipReason) {
        self.ignored.insert(pid, key);
        *self.skipped.entry(reason).or_default() += 1;
    }

    /// What `examine` found, applied to the registry (counts, logs,
    /// `--max-targets`, the watched set).
    fn admit(&mut self, pid: u32, examined: Examined) {
        let (key, target, layout) = match examined {
            Examined::Gone(key) => {
                self.ignored.insert(pid, key);
                if key != (0, 0, 0, 0) {
                    *self.skipped.entry(SkipReason::Exited).or_default() += 1;
                }
                return;
            }
            Examined::Skip { key, reason, log } => {
                if let Some(message) = log {
                    self.log_once(key, &message);
                }
                self.skip(pid, key, reason);
                return;
            }
            Examined::Watch {
                key,
                target,
                layout,
            } => (key, target, layout),
        };
        if self.targets.len() >= self.max_targets {
            self.log_once(
                key,
                &format!(
                    "skipping pid {pid}: already watching --max-targets {} processes",
                    self.max_targets
                ),
            );
            self.skip(pid, key, SkipReason::MaxTargets);
            return;
        }
        match Watched::new(*target, layout, &self.cgroup_root, &self.pods_dir) {
            Ok(w) => {
                eprintln!(
                    "goscope agent: watching pid {pid} ({}, {})",
                    target::display_path(&w.target.exe),
                    logged_version(&w.target.binary.build.go_version_string)
                );
                self.targets.insert(pid, w);
            }
            Err(e) => {
                self.log_once(key, &format!("skipping pid {pid}: {e:#}"));
                self.skip(pid, key, SkipReason::ReadError);
            }
        }
    }

    /// Drops cached executables no watched process runs any more (their
    /// whole file is held in memory), and bounds the cache of skipped ones.
    fn evict(&mut self) {
        let mut cache = self.executables.lock().unwrap_or_else(|p| p.into_inner());
        let before = cache.len();
        cache.retain(|_, e| match e {
            Executable::Go { binary, .. } => Arc::strong_count(binary) > 1,
            Executable::Skip(_) => true,
        });
        if cache.len() < before {
            // Hand the freed executables' pages back to the kernel.
            // SAFETY: malloc_trim has no preconditions.
            unsafe { libc::malloc_trim(0) };
        }
        if cache.len() > MAX_CACHED_EXECUTABLES {
            cache.retain(|_, e| matches!(e, Executable::Go { .. }));
        }
        if self.logged.len() > MAX_CACHED_EXECUTABLES {
            self.logged.clear();
        }
    }

    fn log_once(&mut self, key: FileKey, message: &str) {
        if self.logged.insert(key) {
            eprintln!("goscope agent: {message}");
        }
    }

    /// Reads every target; those that fail are left out of this scrape
    /// (and dropped if they exited).
    /// Exports every target's latest reading (read on the target's own
    /// thread, so nothing here waits on a target); returns how many had no
    /// reading to export and how many exported a late one.
    pub fn export(&mut self, out: &mut Snapshot) -> (u64, u64) {
        let (mut missing, mut late) = (0, 0);
        for (pid, w) in &self.targets {
            match w.export_latest(out) {
                Freshness::Fresh => {}
                Freshness::Late => late += 1,
                Freshness::Missing => {
                    missing += 1;
                    if let Some(e) = w.last_error() {
                        eprintln!("goscope agent: pid {pid} left out of this scrape: {e}");
                    }
                }
            }
        }
        *self.dropped.entry("read_failed").or_default() += missing;
        *self.dropped.entry("late").or_default() += late;
        (missing, late)
    }
}

/// What looking at one PID found (done without the registry's lock: it
/// parses executables).
enum Examined {
    /// Gone, a kernel thread, or no executable.
    Gone(FileKey),
    Skip {
        key: FileKey,
        reason: SkipReason,
        /// A message worth logging once per executable.
        log: Option<String>,
    },
    Watch {
        key: FileKey,
        target: Box<TargetProcess>,
        layout: Arc<RuntimeLayout>,
    },
}

/// Opens and pins `pid`, parsing its executable unless `cache` knows it.
/// The key is the identity of the file the process runs, read from the
/// executable goscope pinned (not from a second lookup).
fn examine(pid: u32, cache: &Mutex<HashMap<FileKey, Executable>>, force_version: bool) -> Examined {
    let lock = || cache.lock().unwrap_or_else(|p| p.into_inner());
    let mut key: FileKey = (0, 0, 0, 0);
    let mut known = None;
    let mut parsed = None;
    let opened = TargetProcess::open_with(pid, |exe| {
        key = file_key(exe.meta);
        known = lock().get(&key).cloned();
        match &known {
            Some(Executable::Go { binary, .. }) => Ok(binary.clone()),
            Some(Executable::Skip(_)) => Err(TargetError::NoSuchProcess { pid }),
            None => {
                // Classified while the file's bytes are at hand (the layout
                // needs its DWARF), then kept without them: the agent holds
                // tables, not whole executables.
                let full = target::read_binary(pid, exe.path, exe.file, exe.meta)?;
                let (binary, executable) = classify(full, force_version);
                parsed = Some(executable);
                Ok(binary)
            }
        }
    });
    // Refused before the executable was pinned (not a regular file, over
    // the size cap): key it by the file the link names now (a stat, no
    // open). With the zero key every such executable shared one log line
    // (only the first ever was said) and, its current key never zero, the
    // process was looked at and counted again at every scan.
    if opened.is_err() && key == (0, 0, 0, 0) {
        key = current_key(pid).unwrap_or(key);
    }
    let skip = |key, reason, log| Examined::Skip { key, reason, log };
    let (executable, target) = match (known, opened) {
        (Some(Executable::Skip(reason)), _) => return skip(key, reason, None),
        (_, Err(TargetError::NoSuchProcess { .. } | TargetError::KernelThread { .. })) => {
            return Examined::Gone(key);
        }
        (None, Err(TargetError::Binary { .. })) => {
            lock().insert(key, Executable::Skip(SkipReason::NotGo));
            return skip(key, SkipReason::NotGo, None);
        }
        (
            None,
            Err(e @ (TargetError::NotRegularFile { .. } | TargetError::ExecutableTooLarge { .. })),
        ) => {
            lock().insert(key, Executable::Skip(SkipReason::Unreadable));
            return skip(
                key,
                SkipReason::Unreadable,
                Some(format!("skipping pid {pid}: {e}")),
            );
        }
        (_, Err(e)) => {
            return skip(
                key,
                SkipReason::Unreadable,
                Some(format!("skipping pid {pid}: {e}")),
            );
        }
        (Some(known), Ok(target)) => (known, target),
        (None, Ok(target)) => {
            let executable = parsed.unwrap_or(Executable::Skip(SkipReason::NoLayout));
            lock().insert(key, executable.clone());
            (executable, target)
        }
    };
    match executable {
        Executable::Go { layout, .. } => Examined::Watch {
            key,
            target: Box::new(target),
            layout,
        },
        Executable::Skip(reason) => {
            let why = match reason {
                SkipReason::UnsupportedVersion => format!(
                    "{} is outside the supported or verified Go versions",
                    logged_version(&target.binary.build.go_version_string)
                ),
                _ => "its runtime layout could not be resolved".to_string(),
            };
            skip(
                key,
                reason,
                Some(format!(
                    "skipping pid {pid} ({}): {why}",
                    target::display_path(&target.exe)
                )),
            )
        }
    }
}

fn file_key(meta: &std::fs::Metadata) -> FileKey {
    (meta.dev(), meta.ino(), meta.size(), meta.mtime())
}

/// A build-info version for a log line: bounded, control characters escaped.
fn logged_version(version: &str) -> String {
    let mut cut = version.len().min(LOGGED_VERSION_LEN);
    while !version.is_char_boundary(cut) {
        cut -= 1;
    }
    let more = if cut < version.len() { "…" } else { "" };
    format!("{}{more}", crate::format::escape_control(&version[..cut]))
}

/// The identity of the file `pid` runs now (None for kernel threads and
/// processes gone).
fn current_key(pid: u32) -> Option<FileKey> {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| file_key(&m))
}

/// Whether an executable can be watched, and its runtime layout.
/// `binary` without its file bytes (kept by the cache and the target), and
/// whether it can be watched.
fn classify(binary: GoBinary, force_version: bool) -> (Arc<GoBinary>, Executable) {
    let version = binary.go_version();
    let layout = if !force_version && (!version.is_supported() || !version.is_verified()) {
        Err(SkipReason::UnsupportedVersion)
    } else {
        RuntimeLayout::resolve(&binary, force_version).map_err(|_| SkipReason::NoLayout)
    };
    let binary = Arc::new(binary.without_file_data());
    let executable = match layout {
        Ok(layout) => Executable::Go {
            binary: Arc::clone(&binary),
            layout: Arc::new(layout),
        },
        Err(reason) => Executable::Skip(reason),
    };
    (binary, executable)
}

/// The cgroup mount root.
pub fn cgroup_root() -> PathBuf {
    Path::new("/sys/fs/cgroup").to_path_buf()
}

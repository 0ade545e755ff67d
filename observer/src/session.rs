//! Opening a target for any command, in one place: the root check, the
//! stop signals, the pinned process (see `target`), the supported-version
//! check and one `RuntimeReader` (layout, load bias, memory, size classes,
//! resolved once). Commands start here and never open a target themselves.

use crate::{
    binary::version, cli::TargetArgs, privilege, runtime::reader::RuntimeReader,
    target::TargetProcess, window::StopSignal,
};

/// A pinned target with its runtime reader, ready for a window.
pub struct Session {
    pub target: TargetProcess,
    pub stop: StopSignal,
    pub runtime: RuntimeReader,
    /// Whether another goscope observes a process of this executable.
    pub others: OtherObservers,
}

/// Whether another goscope observes the same process (the observer lock is
/// a byte-range lock on the executable's inode at an offset named by the
/// process's start time: it works across mount and PID namespaces, where a
/// lock file under /run would not, see `TargetProcess::try_lock_observer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherObservers {
    None,
    /// Per-call probes then get half the budget, so two instances together
    /// stay within what one asked for.
    Present,
}

impl OtherObservers {
    /// The overhead budget this instance may spend, in percent.
    pub fn share(self, budget_percent: f64) -> f64 {
        match self {
            Self::None => budget_percent,
            Self::Present => {
                eprintln!(
                    "goscope: another goscope is observing this process; per-call probes get half the overhead budget ({}) so the two stay within it",
                    crate::format::budget(budget_percent / 2.0)
                );
                budget_percent / 2.0
            }
        }
    }
}

impl Session {
    /// Opens `--pid` for `command` (e.g. "goscope doctor"): needs root; the
    /// signals are caught from here on, so Ctrl-C during attach still
    /// detaches; refuses an unsupported Go version unless `force_version`.
    pub fn open(command: &str, args: TargetArgs) -> anyhow::Result<Self> {
        let TargetArgs { pid, force_version } = args;
        let pid = pid.resolve()?;
        let ProcessSession { target, stop } = ProcessSession::open(command, pid)?;
        check_version(&target, force_version)?;
        let runtime = RuntimeReader::open(&target, force_version)
            .map_err(|e| target.explain_attach_failure(e))?;
        let others = if target.try_lock_observer() {
            OtherObservers::None
        } else {
            OtherObservers::Present
        };
        Ok(Self {
            target,
            stop,
            runtime,
            others,
        })
    }

    /// The line every observing command prints on stderr when its window
    /// begins: "goscope: attached to pid N (PATH, goX.Y.Z); WHAT".
    pub fn announce(&self, what: &str) {
        announce(&self.target, what);
    }
}

/// A pinned target for commands that do not read the Go runtime (the CPU
/// sampler works on any version).
pub struct ProcessSession {
    pub target: TargetProcess,
    pub stop: StopSignal,
}

impl ProcessSession {
    pub fn open(command: &str, pid: u32) -> anyhow::Result<Self> {
        privilege::require_root(command)?;
        let stop = StopSignal::install()?;
        let target = TargetProcess::open(pid)?;
        Ok(Self { target, stop })
    }

    pub fn announce(&self, what: &str) {
        announce(&self.target, what);
    }
}

fn announce(target: &TargetProcess, what: &str) {
    eprintln!(
        "goscope: attached to pid {} ({}, {}); {what}",
        target.pid,
        crate::target::display_path(&target.exe),
        crate::format::bounded(
            &target.binary.build.go_version_string,
            crate::format::MAX_SHOWN
        ),
    );
}

/// Refuses a Go version outside the supported range, or one whose layout
/// could not be verified, unless forced.
pub fn check_version(target: &TargetProcess, force: bool) -> anyhow::Result<()> {
    let go = target.binary.go_version();
    if force {
        return Ok(());
    }
    let shown = crate::format::bounded(
        &target.binary.build.go_version_string,
        crate::format::MAX_SHOWN,
    );
    if !go.is_supported() {
        anyhow::bail!(
            "pid {} runs {shown}, outside the supported range {} (--force-version tries anyway)",
            target.pid,
            version::supported_range()
        );
    }
    if !go.is_verified() {
        anyhow::bail!(
            "pid {} runs {shown}, a version goscope could not verify (no toolchain was available to check its runtime layout); --force-version tries anyway",
            target.pid,
        );
    }
    Ok(())
}

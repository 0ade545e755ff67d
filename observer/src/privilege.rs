//! Privilege checks and advice: turns EPERM/EACCES from the kernel into what
//! the user should do about it.

use std::io;

/// The capabilities goscope uses, numbered as in linux/capability.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    DacReadSearch = 2,
    SysPtrace = 19,
    SysAdmin = 21,
    Perfmon = 38,
    Bpf = 39,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Capability::SysPtrace => "CAP_SYS_PTRACE",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }
}

/// What the eBPF commands load and attach with (CAP_SYS_ADMIN stands in
/// for CAP_BPF and CAP_PERFMON, and is the only one before Linux 5.8).
pub const EBPF: &[Capability] = &[Capability::Bpf, Capability::Perfmon];

/// The effective set of this process (CapEff of /proc/self/status).
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The capabilities of `needed` this process lacks (none when the set
/// cannot be read: the kernel's own refusal then says it).
pub fn missing(needed: &[Capability]) -> Vec<Capability> {
    let Some(set) = effective() else {
        return Vec::new();
    };
    let has = |c: Capability| set & (1u64 << c as u32) != 0;
    needed
        .iter()
        .copied()
        .filter(|&c| {
            let admin_covers =
                matches!(c, Capability::Bpf | Capability::Perfmon) && has(Capability::SysAdmin);
            !has(c) && !admin_covers
        })
        .collect()
}

fn names(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// Fails unless goscope runs as root; `action` names what needs it. The
/// capabilities are checked where they are used: the eBPF ones before
/// loading, CAP_SYS_PTRACE when the kernel refuses the target's /proc
/// files (it is not needed for a process of the same user whose
/// capabilities are a subset of goscope's).
pub fn require_root(action: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        anyhow::bail!(
            "{action} needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE); running as uid {euid}: retry with sudo"
        );
    }
    Ok(())
}

/// Why the kernel refused the target's /proc files to this process: a
/// missing CAP_SYS_PTRACE when root lacks it, else root itself.
pub fn proc_denied_advice() -> String {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 && !missing(&[Capability::SysPtrace]).is_empty() {
        "this process runs as root without CAP_SYS_PTRACE (dropped from its capability set, as in a container or a systemd unit): grant it (docker run --cap-add SYS_PTRACE, the unit's AmbientCapabilities) or run from the host".into()
    } else {
        "run goscope as root".into()
    }
}

/// Fails when root lacks any of `needed` (a container or a systemd unit
/// that left them out of its bounding set), naming the missing ones.
pub fn require_capabilities(action: &str, needed: &[Capability]) -> anyhow::Result<()> {
    let lacking = missing(needed);
    if lacking.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{action} needs {} (or CAP_SYS_ADMIN); this process runs as root without {} (dropped from its capability set, as in a container or a systemd unit): grant them (docker run --cap-add, the unit's AmbientCapabilities) or run from the host",
        names(needed),
        names(&lacking)
    )
}

/// Adds advice to a kernel error when its cause is a permission problem.
pub fn advise(error: anyhow::Error, doing: &str) -> anyhow::Error {
    let denied = error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)))
            || cause.to_string().contains("Operation not permitted")
    });
    if denied {
        let lacking = missing(&[Capability::Bpf, Capability::Perfmon, Capability::SysPtrace]);
        let why = if lacking.is_empty() {
            format!(
                "the capabilities are there, so the kernel refused it: under kernel lockdown ({}), an LSM policy or a seccomp filter some probes are refused",
                lockdown().unwrap_or_else(|| "none reported".into())
            )
        } else {
            format!("this process lacks {}", names(&lacking))
        };
        error.context(format!(
            "{doing}: permission denied. goscope needs root with CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE; {why}"
        ))
    } else {
        error.context(doing.to_string())
    }
}

/// The kernel's lockdown mode as /sys/kernel/security/lockdown shows it
/// (the bracketed word: none, integrity or confidentiality).
fn lockdown() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(format!("lockdown={}", &text[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_in_ci_lacks_nothing_and_names_are_the_kernels() {
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(missing(&[Capability::SysPtrace]), Vec::new());
        }
        assert_eq!(names(EBPF), "CAP_BPF, CAP_PERFMON");
    }
}

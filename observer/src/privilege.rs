//! Privilege checks and advice: turns EPERM/EACCES from the kernel into what
//! the user should do about it.

use std::io;

/// Fails unless goscope runs as root; `action` names what needs it.
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

/// Adds advice to a kernel error when its cause is a permission problem.
pub fn advise(error: anyhow::Error, doing: &str) -> anyhow::Error {
    let denied = error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)))
            || cause.to_string().contains("Operation not permitted")
    });
    if denied {
        error.context(format!(
            "{doing}: permission denied. goscope needs root with CAP_BPF and CAP_PERFMON; under kernel lockdown (integrity/confidentiality) some probes are refused"
        ))
    } else {
        error.context(doing.to_string())
    }
}

//! The exact CFS throttles of the target's cgroup for `goscope trace`:
//! fentry programs on the scheduler's throttle_cfs_rq and
//! unthrottle_cfs_rq (see observer-ebpf/src/throttle.rs), attached only
//! when kallsyms names both and the kernel's BTF describes them.

use anyhow::{anyhow, bail};
use observer_common::ThrottleEvent;

use super::ProbeSession;

/// The kernel functions probed: static functions of kernel/sched/fair.c.
pub const THROTTLE_FUNCTION: &str = "throttle_cfs_rq";
pub const UNTHROTTLE_FUNCTION: &str = "unthrottle_cfs_rq";

/// Throttles drained per call at most.
const MAX_DRAINED: usize = 65536;

/// Whether /proc/kallsyms lists `function` as a text symbol of the kernel
/// proper (not a module's, not an inlined-away name).
fn kernel_has(kallsyms: &str, function: &str) -> bool {
    kallsyms.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, kind, name) = (fields.next(), fields.next(), fields.next());
        matches!(kind, Some("t" | "T")) && name == Some(function) && fields.next().is_none()
    })
}

/// Loads and attaches both kprobes and turns the events on.
pub fn attach(session: &mut ProbeSession) -> anyhow::Result<()> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms")
        .map_err(|e| anyhow!("reading /proc/kallsyms: {e}"))?;
    for function in [THROTTLE_FUNCTION, UNTHROTTLE_FUNCTION] {
        if !kernel_has(&kallsyms, function) {
            bail!("this kernel has no {function} to probe");
        }
    }
    let btf = aya::Btf::from_sys_fs()
        .map_err(|e| anyhow!("reading the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"))?;
    session.attach_fentry("cfs_throttle", THROTTLE_FUNCTION, &btf)?;
    session.attach_fentry("cfs_unthrottle", UNTHROTTLE_FUNCTION, &btf)?;
    session.switch_on("THROTTLE_EVENTS_ON")
}

/// The throttles that ended since the last drain.
pub fn drain(session: &mut ProbeSession) -> anyhow::Result<Vec<ThrottleEvent>> {
    session.drain_ring("THROTTLE_EVENTS", MAX_DRAINED)
}

#[cfg(test)]
mod tests {
    use super::kernel_has;

    #[test]
    fn only_the_kernels_own_text_symbols_count() {
        let kallsyms = "ffffffff813b7a10 t throttle_cfs_rq\n\
                        ffffffff813c4530 T unthrottle_cfs_rq\n\
                        ffffffffc0000000 t throttle_cfs_rq_work [some_module]\n\
                        ffffffff81000000 d throttle_data\n";
        assert!(kernel_has(kallsyms, "throttle_cfs_rq"));
        assert!(kernel_has(kallsyms, "unthrottle_cfs_rq"));
        assert!(!kernel_has(kallsyms, "throttle_cfs_rq_work"));
        assert!(!kernel_has(kallsyms, "throttle_data"));
        assert!(!kernel_has(kallsyms, "throttle"));
    }
}

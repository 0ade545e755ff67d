//! The exact CFS throttles of the target's cgroup for `goscope trace`:
//! fentry programs on the scheduler's throttle_cfs_rq and
//! unthrottle_cfs_rq (see observer-ebpf/src/throttle.rs), attached only
//! when kallsyms names both and the kernel's BTF describes them.

use anyhow::{anyhow, bail};
use aya::maps::{Array, RingBuf};
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
    let map = session
        .ebpf_mut()
        .map_mut("THROTTLE_EVENTS_ON")
        .ok_or_else(|| anyhow!("kernel object lacks map THROTTLE_EVENTS_ON"))?;
    let mut on: Array<_, u32> = Array::try_from(map)?;
    on.set(0, 1, 0)?;
    Ok(())
}

/// The throttles that ended since the last drain.
pub fn drain(session: &mut ProbeSession) -> anyhow::Result<Vec<ThrottleEvent>> {
    let map = session
        .ebpf_mut()
        .map_mut("THROTTLE_EVENTS")
        .ok_or_else(|| anyhow!("kernel object lacks map THROTTLE_EVENTS"))?;
    let mut ring = RingBuf::try_from(map)?;
    let mut events = Vec::new();
    while events.len() < MAX_DRAINED {
        let Some(item) = ring.next() else { break };
        if item.len() >= std::mem::size_of::<ThrottleEvent>() {
            // SAFETY: the kernel wrote a whole ThrottleEvent (repr(C),
            // plain integers).
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ThrottleEvent>()) });
        }
    }
    Ok(events)
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

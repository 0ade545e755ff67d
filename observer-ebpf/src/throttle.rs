//! CFS throttling of the target's cgroup, exactly, from fentry programs
//! on the scheduler's throttle_cfs_rq and unthrottle_cfs_rq (static
//! functions of kernel/sched/fair.c, not a stable interface: userspace
//! attaches them only where the kernel's BTF has both, through the BPF
//! trampoline, which needs no CONFIG_KPROBES, and falls back to cpu.stat
//! otherwise).
//!
//! Both take the cfs_rq (one per CPU and task group) as their first
//! argument. Which cfs_rqs are the target's is learned here with no
//! kernel struct offset: a cfs_rq throttled while one of the target's
//! threads is current (the usual path: the thread ran out of runtime and
//! is being switched out) is the target's from then on, whoever is current
//! at its later throttles. A throttle in progress is kept by cfs_rq and
//! emitted to a ring at its unthrottle, while THROTTLE_EVENTS_ON holds 1.
use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{fentry, map},
    maps::{Array, HashMap, RingBuf},
    programs::FEntryContext,
};
use observer_common::{CounterSlot, ThrottleEvent, ThrottleStart};

use crate::target::is_target;

/// Slot 0 holds 1 while `goscope trace` wants throttles.
#[map]
static THROTTLE_EVENTS_ON: Array<u32> = Array::with_max_entries(1, 0);
/// The cfs_rqs learned to be the target's (CPUs × hierarchy levels).
#[map]
static TARGET_CFS_RQS: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);
/// cfs_rq → its throttle in progress.
#[map]
static THROTTLED_SINCE: HashMap<u64, ThrottleStart> = HashMap::with_max_entries(4096, 0);
#[map]
static THROTTLE_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

fn on() -> bool {
    THROTTLE_EVENTS_ON.get(0).is_some_and(|on| *on == 1)
}

#[fentry(function = "throttle_cfs_rq")]
pub fn cfs_throttle(ctx: FEntryContext) -> u32 {
    if !on() {
        return 0;
    }
    let cfs_rq: u64 = ctx.arg(0);
    // SAFETY: a lookup in a map of this program.
    let known = unsafe { TARGET_CFS_RQS.get(&cfs_rq) }.is_some();
    if !known {
        if !is_target() {
            return 0;
        }
        crate::counters::note_insert(TARGET_CFS_RQS.insert(&cfs_rq, &1, 0));
    }
    // SAFETY: helpers without preconditions.
    let (start_ns, cpu) = unsafe { (bpf_ktime_get_ns(), bpf_get_smp_processor_id()) };
    crate::counters::note_insert(THROTTLED_SINCE.insert(
        &cfs_rq,
        &ThrottleStart {
            start_ns,
            cpu,
            _pad: 0,
        },
        0,
    ));
    0
}

#[fentry(function = "unthrottle_cfs_rq")]
pub fn cfs_unthrottle(ctx: FEntryContext) -> u32 {
    let cfs_rq: u64 = ctx.arg(0);
    // SAFETY: copy out before deleting.
    let Some(start) = (unsafe { THROTTLED_SINCE.get(&cfs_rq) }).copied() else {
        return 0;
    };
    let _ = THROTTLED_SINCE.remove(&cfs_rq);
    if !on() {
        return 0;
    }
    let Some(mut entry) = THROTTLE_EVENTS.reserve::<ThrottleEvent>(0) else {
        crate::counters::count(CounterSlot::DroppedRingBuffer);
        return 0;
    };
    entry.write(ThrottleEvent {
        start_ns: start.start_ns,
        // SAFETY: helper without preconditions.
        end_ns: unsafe { bpf_ktime_get_ns() },
        cfs_rq,
        cpu: start.cpu,
        _pad: 0,
    });
    entry.submit(0);
    0
}

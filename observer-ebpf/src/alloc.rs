//! Allocation sites at span granularity: probes after the stack checks of
//! runtime.(*mcache).refill (an mcache ran out of one size class: fires
//! once per span's worth of objects, whichever malloc entry point asked,
//! Go 1.27's size-specialized ones included) and
//! runtime.(*mcache).allocLarge (one large object). Each hit records the
//! user stack, the return address at [RSP] and the span class or size.
use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{PerCpuHashMap, StackTrace},
    programs::{ProbeContext, tracing::StackIdContext},
};
use observer_common::{AllocSampleKey, CounterSlot, LARGE_ALLOC};

use crate::{
    counters::{add, count},
    target::is_target,
};

#[map]
static ALLOC_STACKS: StackTrace = StackTrace::with_max_entries(8192, 0);
#[map]
static ALLOC_SAMPLES: PerCpuHashMap<AllocSampleKey, u64> =
    PerCpuHashMap::with_max_entries(16384, 0);

fn record(ctx: &ProbeContext, span_class: u32, size: u64) {
    // SAFETY: helper without preconditions.
    let started = unsafe { bpf_ktime_get_ns() };
    count(CounterSlot::AllocProbeHits);
    // SAFETY: regs points at the saved user registers; the stack word is
    // read through bpf_probe_read_user.
    let caller = unsafe { bpf_probe_read_user((*ctx.regs).rsp as *const u64) }.unwrap_or(0);
    let user_stack = crate::counters::stack_or_dropped(
        ctx.get_stackid(&ALLOC_STACKS, u64::from(BPF_F_USER_STACK)),
    );
    let key = AllocSampleKey {
        user_stack,
        span_class,
        caller,
        size,
    };
    match ALLOC_SAMPLES.get_ptr_mut(&key) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        Some(samples) => unsafe { *samples += 1 },
        None => {
            crate::counters::note_insert(ALLOC_SAMPLES.insert(&key, &1, 0));
        }
    }
    // The body's own cost (the stack walk dominates), for the governor.
    // SAFETY: helper without preconditions.
    let elapsed = unsafe { bpf_ktime_get_ns() }.saturating_sub(started);
    add(CounterSlot::GovernedProbeNs, elapsed);
}

/// (*mcache).refill(c RAX, spc BL): spanClass is a uint8.
#[uprobe]
pub fn alloc_refill(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    // SAFETY: regs points at the saved user registers of this hit.
    let span_class = unsafe { (*ctx.regs).rbx } as u32 & 0xff;
    record(&ctx, span_class, 0);
    0
}

/// (*mcache).allocLarge(c RAX, size RBX, noscan CL).
#[uprobe]
pub fn alloc_large(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    // SAFETY: regs points at the saved user registers of this hit.
    let size = unsafe { (*ctx.regs).rbx };
    record(&ctx, LARGE_ALLOC, size);
    0
}

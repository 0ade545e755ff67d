//! Counting uprobes: one program, attached at many addresses, adds one to the
//! per-CPU slot named by the attach cookie when the target process hits it.
use aya_ebpf::{
    EbpfContext,
    helpers::generated::bpf_get_attach_cookie,
    macros::{map, uprobe},
    maps::PerCpuArray,
    programs::ProbeContext,
};
use observer_common::COUNTER_SLOTS;

#[map]
static EVENT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// The per-CPU counter of `slot`, for other programs.
pub fn counter(slot: observer_common::CounterSlot) -> Option<*mut u64> {
    EVENT_COUNTERS.get_ptr_mut(slot.index())
}

/// Adds `n` to `slot`.
pub fn add(slot: observer_common::CounterSlot, n: u64) {
    if let Some(c) = counter(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += n };
    }
}

/// Adds one to `slot` (probe programs count their own hits for the
/// overhead governor).
pub fn count(slot: observer_common::CounterSlot) {
    if let Some(c) = counter(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// Counts an insert into a full map (or any failed insert) as dropped.
pub fn note_insert<E>(result: Result<(), E>) {
    if result.is_err() {
        count(observer_common::CounterSlot::DroppedMapFull);
    }
}

/// A stack id, counting a failed walk or a full stack map as dropped.
pub fn stack_or_dropped<E>(id: Result<i64, E>) -> i32 {
    match id {
        Ok(id) => id as i32,
        Err(_) => {
            count(observer_common::CounterSlot::DroppedStacks);
            -1
        }
    }
}

#[uprobe]
pub fn count_hit(ctx: ProbeContext) -> u32 {
    if !crate::target::is_target() {
        return 0;
    }
    // SAFETY: the helper only reads the attach cookie of the running program.
    let slot = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    if let Some(counter) = EVENT_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
    0
}

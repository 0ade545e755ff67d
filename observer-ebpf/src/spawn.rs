//! Goroutine creation sites: a probe after runtime.newproc's stack check
//! reads the return address at [RSP] (inside the function whose `go`
//! statement ran) and counts per site.
use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{map, uprobe},
    maps::PerCpuHashMap,
    programs::ProbeContext,
};

use observer_common::CounterSlot;

use crate::{counters::count, target::is_target};

#[map]
static SPAWN_SITES: PerCpuHashMap<u64, u64> = PerCpuHashMap::with_max_entries(4096, 0);

#[uprobe]
pub fn goroutine_spawn(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    count(CounterSlot::SpawnProbeHits);
    // SAFETY: regs points at the saved user registers; the stack word is
    // read through bpf_probe_read_user.
    let site = unsafe { bpf_probe_read_user((*ctx.regs).rsp as *const u64) }.unwrap_or(0);
    match SPAWN_SITES.get_ptr_mut(&site) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        Some(count) => unsafe { *count += 1 },
        None => {
            crate::counters::note_insert(SPAWN_SITES.insert(&site, &1, 0));
        }
    }
    0
}

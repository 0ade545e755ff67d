//! CPU sampling: a perf CPU-clock event on every CPU runs `cpu_sample`; when
//! the target is on the CPU it records the user stack (frame pointers,
//! walked by the kernel) and counts the sample per stack.
use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    macros::{map, perf_event},
    maps::{PerCpuHashMap, StackTrace},
    programs::{PerfEventContext, tracing::StackIdContext},
};
use observer_common::CpuSampleKey;

use crate::target::is_target;

#[map]
static CPU_STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);
#[map]
static CPU_SAMPLES: PerCpuHashMap<CpuSampleKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

#[perf_event]
pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
    if !is_target() {
        return 0;
    }
    let user_stack = crate::counters::stack_or_dropped(
        ctx.get_stackid(&CPU_STACKS, u64::from(BPF_F_USER_STACK)),
    );
    // SAFETY: ctx points at this sample's bpf_perf_event_data.
    let cs = unsafe { (*ctx.ctx).regs.cs };
    let key = CpuSampleKey {
        user_stack,
        in_kernel: u32::from(cs & 3 == 0),
    };
    match CPU_SAMPLES.get_ptr_mut(&key) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        Some(count) => unsafe { *count += 1 },
        None => {
            crate::counters::note_insert(CPU_SAMPLES.insert(&key, &1, 0));
        }
    }
    0
}

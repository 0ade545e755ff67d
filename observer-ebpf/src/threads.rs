//! The target's OS threads from scheduler tracepoints, aggregated in the
//! kernel: run-queue latency (wakeup, or preemption while runnable, to
//! on-CPU) as a log2 histogram, involuntary switches, threads created and
//! exited. Tracepoint field offsets come from tracefs, set before load.
//!
//! The pids in tracepoint records (prev/next_pid, the woken pid, the child
//! pid) are the initial PID namespace's thread ids, which goscope cannot
//! see from inside a PID namespace. So the target's threads are kept by
//! those ids, learned in the kernel: a task that `is_target` recognizes
//! while it is current (switching out, forking, exiting) is added with its
//! id from bpf_get_current_pid_tgid, and the threads it forks by their
//! child pid. Userspace seeds the map from /proc/PID/task only when its
//! ids are the initial namespace's.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use observer_common::{CounterSlot, Log2Histogram};

use crate::{counters::counter, gc::log2, target::current_target_thread};

#[unsafe(no_mangle)]
static SWITCH_PREV_PID: u32 = 24;
#[unsafe(no_mangle)]
static SWITCH_PREV_STATE: u32 = 32;
#[unsafe(no_mangle)]
static SWITCH_NEXT_PID: u32 = 56;
#[unsafe(no_mangle)]
static WAKEUP_PID: u32 = 24;
#[unsafe(no_mangle)]
static FORK_CHILD_PID: u32 = 20;

/// prev_state bits that mean "not runnable" (TASK_REPORT, idle included).
const NOT_RUNNABLE_MASK: i64 = 0xff;

/// The target's thread ids in the initial PID namespace (learned here,
/// seeded by userspace where /proc shows those ids).
#[map]
static TARGET_TIDS: HashMap<u32, u8> = HashMap::with_max_entries(65536, 0);
/// Thread id → when it became runnable.
#[map]
static RUNNABLE_SINCE: HashMap<u32, u64> = HashMap::with_max_entries(65536, 0);
#[map]
static RUNQ_HIST: PerCpuArray<Log2Histogram> = PerCpuArray::with_max_entries(1, 0);

fn offset(value: &u32) -> usize {
    // SAFETY: volatile read of a constant patched by the loader.
    unsafe { core::ptr::read_volatile(value) as usize }
}

fn bump(slot: CounterSlot) {
    if let Some(c) = counter(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

fn is_target_tid(tid: u32) -> bool {
    // SAFETY: plain hash map lookup.
    unsafe { TARGET_TIDS.get(&tid) }.is_some()
}

#[tracepoint]
pub fn thread_wakeup(ctx: TracePointContext) -> u32 {
    // SAFETY: reading a field of this tracepoint's record.
    let Ok(tid) = (unsafe { ctx.read_at::<i32>(offset(&WAKEUP_PID)) }) else {
        return 0;
    };
    let tid = tid as u32;
    if is_target_tid(tid) {
        // SAFETY: helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        crate::counters::note_insert(RUNNABLE_SINCE.insert(&tid, &now, 0));
    }
    0
}

#[tracepoint]
pub fn thread_switch(ctx: TracePointContext) -> u32 {
    // SAFETY: reading fields of this tracepoint's record.
    let (prev, state, next) = unsafe {
        (
            ctx.read_at::<i32>(offset(&SWITCH_PREV_PID)),
            ctx.read_at::<i64>(offset(&SWITCH_PREV_STATE)),
            ctx.read_at::<i32>(offset(&SWITCH_NEXT_PID)),
        )
    };
    let (Ok(prev), Ok(state), Ok(next)) = (prev, state, next) else {
        return 0;
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // `prev` is the current task: recognize it directly and remember its
    // id for the wakeups and switches that name it later.
    if let Some(tid) = current_target_thread()
        && tid == prev as u32
    {
        let _ = TARGET_TIDS.insert(&tid, &1, u64::from(BPF_NOEXIST));
        if state & NOT_RUNNABLE_MASK == 0 {
            bump(CounterSlot::InvoluntarySwitches);
            crate::counters::note_insert(RUNNABLE_SINCE.insert(&tid, &now, 0));
        }
    }
    let next = next as u32;
    // SAFETY: copy out of the map before deleting.
    if let Some(since) = unsafe { RUNNABLE_SINCE.get(&next) }.copied() {
        let _ = RUNNABLE_SINCE.remove(&next);
        if let Some(hist) = RUNQ_HIST.get_ptr_mut(0) {
            let slot = (log2(now.saturating_sub(since)) & 63) as usize;
            // SAFETY: per-CPU value; index masked into bounds.
            unsafe { (*hist).slots[slot] += 1 };
        }
    }
    0
}

#[tracepoint]
pub fn thread_fork(ctx: TracePointContext) -> u32 {
    let Some(parent) = current_target_thread() else {
        return 0;
    };
    let _ = TARGET_TIDS.insert(&parent, &1, u64::from(BPF_NOEXIST));
    // SAFETY: reading a field of this tracepoint's record.
    if let Ok(child) = unsafe { ctx.read_at::<i32>(offset(&FORK_CHILD_PID)) } {
        crate::counters::note_insert(TARGET_TIDS.insert(&(child as u32), &1, 0));
        bump(CounterSlot::ThreadsCreated);
    }
    0
}

#[tracepoint]
pub fn thread_exit(_ctx: TracePointContext) -> u32 {
    let Some(tid) = current_target_thread() else {
        return 0;
    };
    let _ = TARGET_TIDS.remove(&tid);
    let _ = RUNNABLE_SINCE.remove(&tid);
    bump(CounterSlot::ThreadsExited);
    0
}

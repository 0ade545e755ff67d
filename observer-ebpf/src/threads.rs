//! The target's OS threads from scheduler tracepoints, aggregated in the
//! kernel: run-queue latency (wakeup, or preemption while runnable, to
//! on-CPU) as a log2 histogram, involuntary switches, threads created and
//! exited. Tracepoint field offsets come from tracefs, set before load.
//! For `goscope trace`, each transition of a target thread (switched in,
//! preempted, slept, woken, exited) also goes to a ring buffer while
//! userspace sets THREAD_EVENTS_ON.
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
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use observer_common::{CounterSlot, Log2Histogram, ThreadStateEvent, ThreadTransition};

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
/// Slot 0 holds 1 while userspace wants each transition (`goscope trace`);
/// the aggregates above are kept either way.
#[map]
static THREAD_EVENTS_ON: Array<u32> = Array::with_max_entries(1, 0);
/// The transitions, drained by userspace every few milliseconds.
#[map]
static THREAD_EVENTS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

fn events_on() -> bool {
    THREAD_EVENTS_ON.get(0).is_some_and(|on| *on == 1)
}

/// Emits one transition (dropped and counted when the ring is full).
fn emit(tid: u32, kind: ThreadTransition, state: u32, now: u64) {
    let Some(mut entry) = THREAD_EVENTS.reserve::<ThreadStateEvent>(0) else {
        crate::counters::count(CounterSlot::DroppedRingBuffer);
        return;
    };
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    entry.write(ThreadStateEvent {
        ktime_ns: now,
        tid,
        cpu,
        kind: kind as u32,
        state,
    });
    entry.submit(0);
}

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
        if events_on() {
            emit(tid, ThreadTransition::Woken, 0, now);
        }
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
    let on = events_on();
    if let Some(tid) = current_target_thread()
        && tid == prev as u32
    {
        let _ = TARGET_TIDS.insert(&tid, &1, u64::from(BPF_NOEXIST));
        let runnable = state & NOT_RUNNABLE_MASK == 0;
        if runnable {
            bump(CounterSlot::InvoluntarySwitches);
            crate::counters::note_insert(RUNNABLE_SINCE.insert(&tid, &now, 0));
        }
        if on {
            if runnable {
                emit(tid, ThreadTransition::Preempted, 0, now);
            } else {
                emit(tid, ThreadTransition::Slept, state as u32, now);
            }
        }
    }
    let next = next as u32;
    if on && is_target_tid(next) {
        emit(next, ThreadTransition::OnCpu, 0, now);
    }
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
    if events_on() {
        // SAFETY: helper without preconditions.
        emit(tid, ThreadTransition::Exited, 0, unsafe {
            bpf_ktime_get_ns()
        });
    }
    0
}

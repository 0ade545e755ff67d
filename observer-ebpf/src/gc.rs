//! GC cycle records and mark-assist latency. `gc_cycle_end` runs once per
//! cycle after mark termination and copies the runtime's bookkeeping
//! (runtime.work, gcController, memstats fields) into a ring buffer.
//! `assist_enter` / `assist_exit` (at every RET of runtime.gcAssistAlloc)
//! time each assist keyed by the goroutine (R14 = g), so an assist that
//! parks and resumes on another thread is still one assist;
//! `assist_park` marks it as parked.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf,
    },
    macros::{map, uprobe},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use observer_common::{
    ASSIST_EVENT_PARKED, ASSIST_EVENT_WORKED, ASSIST_HIST_SLOTS, ASSIST_PARKED_BASE, AssistEvent,
    AssistHistogram, GcCycleEvent,
};

use crate::target::is_target;

/// Target addresses (run-time, load bias applied), set before load.
#[unsafe(no_mangle)]
static WORK_ADDR: u64 = 0;
#[unsafe(no_mangle)]
static CONTROLLER_ADDR: u64 = 0;
#[unsafe(no_mangle)]
static NUMGC_ADDR: u64 = 0;
#[unsafe(no_mangle)]
static GC_CPU_FRACTION_ADDR: u64 = 0;
#[unsafe(no_mangle)]
static INIT_TIME_ADDR: u64 = 0;
/// Offset of runtime.g.goid (0: unknown), set before load.
#[unsafe(no_mangle)]
static G_GOID_OFFSET: u64 = 0;

const PARKED_FLAG: u64 = 1 << 63;
const WORKED_FLAG: u64 = 1 << 62;
const FLAGS: u64 = PARKED_FLAG | WORKED_FLAG;

#[map]
static GC_EVENTS: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);
/// Slot 0 holds 1 while userspace wants each assist (`goscope trace`).
#[map]
static ASSIST_EVENTS_ON: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static ASSIST_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);
/// Goroutine (g pointer) → assist start time, PARKED_FLAG when it parked.
#[map]
static ASSIST_START: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);
/// Completed assists per goroutine since userspace last drained it.
#[map]
static ASSIST_GOROUTINES: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);
#[map]
static ASSIST_HIST: PerCpuArray<AssistHistogram> = PerCpuArray::with_max_entries(1, 0);

fn global(value: &u64) -> u64 {
    // SAFETY: volatile read of a constant patched by the loader.
    unsafe { core::ptr::read_volatile(value) }
}

fn current_g(ctx: &ProbeContext) -> u64 {
    // SAFETY: regs points at the saved user registers of this probe hit.
    unsafe { (*ctx.regs).r14 }
}

#[uprobe]
pub fn gc_cycle_end(_ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    let Some(mut entry) = GC_EVENTS.reserve::<GcCycleEvent>(0) else {
        crate::counters::count(observer_common::CounterSlot::DroppedRingBuffer);
        return 0;
    };
    let event = entry.as_mut_ptr();
    let mut errors = 0u32;
    // SAFETY: `event` points at a reserved ring buffer record we own until
    // submit; every target read goes through bpf_probe_read_user.
    unsafe {
        (*event).ktime_ns = bpf_ktime_get_ns();
        (*event).numgc =
            bpf_probe_read_user(global(&NUMGC_ADDR) as *const u32).unwrap_or_else(|_| {
                errors += 1;
                0
            });
        (*event).gc_cpu_fraction_bits =
            bpf_probe_read_user(global(&GC_CPU_FRACTION_ADDR) as *const u64).unwrap_or_else(|_| {
                errors += 1;
                0
            });
        (*event).runtime_init_time =
            bpf_probe_read_user(global(&INIT_TIME_ADDR) as *const i64).unwrap_or(0);
        if bpf_probe_read_user_buf(global(&WORK_ADDR) as *const u8, &mut (*event).work).is_err() {
            errors += 1;
        }
        if bpf_probe_read_user_buf(
            global(&CONTROLLER_ADDR) as *const u8,
            &mut (*event).controller,
        )
        .is_err()
        {
            errors += 1;
        }
        (*event).read_errors = errors;
    }
    entry.submit(0);
    0
}

#[uprobe]
pub fn assist_enter(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    let g = current_g(&ctx);
    // SAFETY: plain hash map update.
    let now = unsafe { bpf_ktime_get_ns() } & !FLAGS;
    crate::counters::note_insert(ASSIST_START.insert(&g, &now, 0));
    0
}

#[uprobe]
pub fn assist_park(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    let g = current_g(&ctx);
    if let Some(start) = ASSIST_START.get_ptr_mut(&g) {
        // SAFETY: the value belongs to this goroutine, running here.
        unsafe { *start |= PARKED_FLAG };
    }
    0
}

/// runtime.gcAssistAlloc1 (on the system stack: its `gp` argument in RAX
/// is the assisting goroutine): the assist does scan work.
#[uprobe]
pub fn assist_work(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    // SAFETY: regs points at the saved user registers of this probe hit.
    let g = unsafe { (*ctx.regs).rax };
    if let Some(start) = ASSIST_START.get_ptr_mut(&g) {
        // SAFETY: the value belongs to this goroutine's assist.
        unsafe { *start |= WORKED_FLAG };
    }
    0
}

#[uprobe]
pub fn assist_exit(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    let g = current_g(&ctx);
    // SAFETY: copy out of the map before deleting the entry.
    let Some(start) = (unsafe { ASSIST_START.get(&g) }).copied() else {
        return 0;
    };
    let _ = ASSIST_START.remove(&g);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if start & FLAGS == 0 {
        // Paid from background credit: not an assist in the runtime's sense.
        if let Some(steals) =
            crate::counters::counter(observer_common::CounterSlot::AssistCreditSteals)
        {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe { *steals += 1 };
        }
        return 0;
    }
    let elapsed = now.saturating_sub(start & !FLAGS);
    let mut slot = log2(elapsed);
    if start & PARKED_FLAG != 0 {
        slot += ASSIST_PARKED_BASE;
    }
    if let Some(hist) = ASSIST_HIST.get_ptr_mut(0) {
        let index = (slot & (ASSIST_HIST_SLOTS - 1)) as usize;
        // SAFETY: per-CPU value, no concurrent writer on this CPU; the
        // index is masked into bounds.
        unsafe { (*hist).slots[index] += 1 };
    }
    // SAFETY: plain hash map lookup.
    let done = unsafe { ASSIST_GOROUTINES.get(&g) }.copied().unwrap_or(0);
    crate::counters::note_insert(ASSIST_GOROUTINES.insert(&g, &(done + 1), 0));
    if ASSIST_EVENTS_ON.get(0).is_some_and(|on| *on == 1) {
        emit_assist(g, start, now);
    }
    0
}

/// One finished assist for the timeline (dropped and counted when the
/// ring is full).
fn emit_assist(g: u64, start: u64, now: u64) {
    let Some(mut entry) = ASSIST_EVENTS.reserve::<AssistEvent>(0) else {
        crate::counters::count(observer_common::CounterSlot::DroppedRingBuffer);
        return;
    };
    let goid = goid_of(g);
    let mut flags = 0;
    if start & PARKED_FLAG != 0 {
        flags |= ASSIST_EVENT_PARKED;
    }
    if start & WORKED_FLAG != 0 {
        flags |= ASSIST_EVENT_WORKED;
    }
    entry.write(AssistEvent {
        start_ns: start & !FLAGS,
        end_ns: now,
        goid,
        tid: bpf_get_current_pid_tgid() as u32,
        flags,
    });
    entry.submit(0);
}

/// The goid of goroutine `g` (0 when the offset is unknown or the read
/// fails).
pub fn goid_of(g: u64) -> u64 {
    let offset = global(&G_GOID_OFFSET);
    if offset == 0 {
        return 0;
    }
    // SAFETY: a read of target memory through the helper.
    unsafe { bpf_probe_read_user(g.wrapping_add(offset) as *const u64) }.unwrap_or(0)
}

/// floor(log2(v)) for v > 0, 0 for 0; branch-light for the verifier.
pub fn log2(mut v: u64) -> u32 {
    let mut r = 0;
    for shift in [32u32, 16, 8, 4, 2, 1] {
        if v >> shift != 0 {
            v >>= shift;
            r += shift;
        }
    }
    r
}

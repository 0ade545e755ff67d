//! cgo call latency: runtime.cgocall (NOSPLIT: its entry is safe) and every
//! RET in it, keyed by goroutine (R14). The call site is the return address
//! at entry ([RSP], inside the `_Cfunc_` wrapper that names the C function).
//! While `CGO_EVENTS_ON` holds 1 (`goscope trace`) each call is also
//! written to the `CGO_EVENTS` ring at its RET.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::ProbeContext,
};
use observer_common::{
    CgoCallEvent, CgoSiteSlot, CgoSiteStats, CounterSlot, FINE_SLOTS, FINE_SUB_BUCKETS,
    FineHistogram,
};

use crate::{
    counters::count,
    gc::{goid_of, log2},
    target::is_target,
};

#[repr(C)]
#[derive(Clone, Copy)]
struct CgoStart {
    ts: u64,
    site: u64,
}

#[map]
static CGO_START: HashMap<u64, CgoStart> = HashMap::with_max_entries(16384, 0);
#[map]
static CGO_HIST: PerCpuArray<FineHistogram> = PerCpuArray::with_max_entries(1, 0);
#[map]
static CGO_SITES: PerCpuHashMap<u64, CgoSiteStats> = PerCpuHashMap::with_max_entries(1024, 0);
/// Per-site latency distribution: (site, fine slot) → calls.
#[map]
static CGO_SITE_HIST: PerCpuHashMap<CgoSiteSlot, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// Slot 0 holds 1 while userspace wants each call (`goscope trace`).
#[map]
static CGO_EVENTS_ON: Array<u32> = Array::with_max_entries(1, 0);
/// Sized like ASSIST_EVENTS (32-byte records: 8192 calls between drains).
#[map]
static CGO_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Fine slot of a duration: power of two and 4 more bits.
fn fine_slot(ns: u64) -> u32 {
    let top = log2(ns);
    let sub = if top >= 4 {
        ((ns >> (top - 4)) & 15) as u32
    } else {
        ((ns << (4 - top)) & 15) as u32
    };
    (top * FINE_SUB_BUCKETS + sub) & (FINE_SLOTS - 1)
}

#[uprobe]
pub fn cgo_enter(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    // SAFETY: regs points at the saved user registers of this probe hit;
    // the stack word is read through bpf_probe_read_user.
    let (g, site) = unsafe {
        let regs = &*ctx.regs;
        (
            regs.r14,
            bpf_probe_read_user(regs.rsp as *const u64).unwrap_or(0),
        )
    };
    count(CounterSlot::CgoProbeHits);
    // SAFETY: helper without preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    crate::counters::note_insert(CGO_START.insert(&g, &CgoStart { ts, site }, 0));
    0
}

#[uprobe]
pub fn cgo_exit(ctx: ProbeContext) -> u32 {
    if !is_target() {
        return 0;
    }
    // SAFETY: regs points at the saved user registers of this probe hit.
    let g = unsafe { (*ctx.regs).r14 };
    count(CounterSlot::CgoProbeHits);
    // SAFETY: copy out before deleting.
    let Some(start) = (unsafe { CGO_START.get(&g) }).copied() else {
        return 0;
    };
    let _ = CGO_START.remove(&g);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let elapsed = now.saturating_sub(start.ts);
    if CGO_EVENTS_ON.get(0).is_some_and(|on| *on == 1) {
        emit_call(g, start.ts, now);
    }
    let slot = fine_slot(elapsed);
    if let Some(hist) = CGO_HIST.get_ptr_mut(0) {
        // SAFETY: per-CPU value; slot masked into bounds.
        unsafe { (*hist).slots[slot as usize] += 1 };
    }
    let site_slot = CgoSiteSlot {
        site: start.site,
        slot,
        _pad: 0,
    };
    match CGO_SITE_HIST.get_ptr_mut(&site_slot) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        Some(calls) => unsafe { *calls += 1 },
        None => {
            crate::counters::note_insert(CGO_SITE_HIST.insert(&site_slot, &1, 0));
        }
    }
    match CGO_SITES.get_ptr_mut(&start.site) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        Some(stats) => unsafe {
            (*stats).calls += 1;
            (*stats).total_ns += elapsed;
        },
        None => {
            crate::counters::note_insert(CGO_SITES.insert(
                &start.site,
                &CgoSiteStats {
                    calls: 1,
                    total_ns: elapsed,
                },
                0,
            ));
        }
    }
    0
}

/// One finished call for the timeline (dropped and counted when the ring
/// is full).
fn emit_call(g: u64, start: u64, now: u64) {
    let Some(mut entry) = CGO_EVENTS.reserve::<CgoCallEvent>(0) else {
        count(CounterSlot::DroppedRingBuffer);
        return;
    };
    entry.write(CgoCallEvent {
        start_ns: start,
        end_ns: now,
        goid: goid_of(g),
        tid: bpf_get_current_pid_tgid() as u32,
        _pad: 0,
    });
    entry.submit(0);
}

//! Types and constants shared by goscope's kernel programs and its userspace:
//! `#[repr(C)]`, explicit widths, no `bool`.
#![no_std]

/// Number of slots in the per-CPU event counter array.
pub const COUNTER_SLOTS: u32 = 16;

/// What a counting uprobe counts. The discriminant is the slot in the
/// `EVENT_COUNTERS` per-CPU array and is passed to the kernel program as the
/// uprobe's attach cookie, so one program serves every counting probe.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterSlot {
    /// `runtime.gcMarkTermination` entered past its stack check: one per
    /// completed GC cycle.
    GcCycles = 0,
    /// Calls of runtime.gcAssistAlloc that neither scanned nor parked
    /// (paid their debt from background credit).
    AssistCreditSteals = 1,
    /// Threads the target created (sched_process_fork from its threads).
    ThreadsCreated = 2,
    /// Threads of the target that exited.
    ThreadsExited = 3,
    /// Target threads switched out while still runnable (R, R+).
    InvoluntarySwitches = 4,
    /// Hits of the cgo latency probes (entry and returns), for the governor.
    CgoProbeHits = 5,
    /// Hits of the goroutine creation probe, for the governor.
    SpawnProbeHits = 6,
    /// Hits of the allocation sampling probe, for the governor.
    AllocProbeHits = 7,
    /// Nanoseconds governed programs spent in their bodies (stack walks,
    /// map updates), on top of the trap the calibration measures.
    GovernedProbeNs = 8,
    /// Events lost because a user stack could not be stored (the stack
    /// map is full or the walk failed): the sample is kept without it.
    DroppedStacks = 9,
    /// Events lost because a hash map was full (sample, site, start-time
    /// and thread maps).
    DroppedMapFull = 10,
    /// GC cycle records lost because the ring buffer was full.
    DroppedRingBuffer = 11,
}

impl CounterSlot {
    /// Every slot, in discriminant order.
    pub const ALL: [CounterSlot; 12] = [
        CounterSlot::GcCycles,
        CounterSlot::AssistCreditSteals,
        CounterSlot::ThreadsCreated,
        CounterSlot::ThreadsExited,
        CounterSlot::InvoluntarySwitches,
        CounterSlot::CgoProbeHits,
        CounterSlot::SpawnProbeHits,
        CounterSlot::AllocProbeHits,
        CounterSlot::GovernedProbeNs,
        CounterSlot::DroppedStacks,
        CounterSlot::DroppedMapFull,
        CounterSlot::DroppedRingBuffer,
    ];

    /// The array index (and attach cookie) of this slot.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// Bytes of `runtime.work` copied at the end of each GC cycle (the struct
/// is at most 816 bytes in Go 1.19 – 1.27).
pub const WORK_SNAPSHOT_BYTES: usize = 1024;
/// Bytes of `runtime.gcController` copied (392 – 424 bytes).
pub const CONTROLLER_SNAPSHOT_BYTES: usize = 512;

/// One completed GC cycle, copied by the kernel program from the target's
/// memory at a point after mark termination where gctrace reads the same
/// fields (the world restarted, the next cycle not yet begun).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GcCycleEvent {
    pub ktime_ns: u64,
    pub numgc: u32,
    pub read_errors: u32,
    /// memstats.gc_cpu_fraction (float64 bits).
    pub gc_cpu_fraction_bits: u64,
    pub runtime_init_time: i64,
    pub work: [u8; WORK_SNAPSHOT_BYTES],
    pub controller: [u8; CONTROLLER_SNAPSHOT_BYTES],
}

/// What happened to one of the target's threads (`ThreadStateEvent::kind`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadTransition {
    /// Switched in: running on `cpu` from now.
    OnCpu = 0,
    /// Switched out while runnable (an involuntary switch): waiting for a
    /// CPU from now.
    Preempted = 1,
    /// Switched out to sleep (`prev_state` says how).
    Slept = 2,
    /// Woken: runnable, waiting for a CPU, from now.
    Woken = 3,
    /// The thread exited.
    Exited = 4,
}

impl ThreadTransition {
    pub const fn from_u32(kind: u32) -> Option<Self> {
        Some(match kind {
            0 => Self::OnCpu,
            1 => Self::Preempted,
            2 => Self::Slept,
            3 => Self::Woken,
            4 => Self::Exited,
            _ => return None,
        })
    }
}

/// One scheduler transition of a target thread, emitted by the scheduler
/// tracepoints only while `THREAD_EVENTS_ON` holds 1 (`goscope trace`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThreadStateEvent {
    /// bpf_ktime_get_ns: CLOCK_MONOTONIC.
    pub ktime_ns: u64,
    /// Thread id in the initial PID namespace.
    pub tid: u32,
    pub cpu: u32,
    /// A `ThreadTransition`.
    pub kind: u32,
    /// sched_switch's prev_state for `Slept` (TASK_INTERRUPTIBLE 1,
    /// TASK_UNINTERRUPTIBLE 2, ...), else 0.
    pub state: u32,
}

/// One mark assist, emitted at its end by `assist_exit` only while
/// `ASSIST_EVENTS_ON` holds 1 (`goscope trace`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AssistEvent {
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC) at gcAssistAlloc's entry and RET.
    pub start_ns: u64,
    pub end_ns: u64,
    /// The assisting goroutine's goid (0 when its offset is unknown or
    /// the read failed).
    pub goid: u64,
    /// The thread it ended on (initial PID namespace).
    pub tid: u32,
    /// Bit 0: it parked (waited for background credit); bit 1: it
    /// scanned.
    pub flags: u32,
}

/// One cgo call (runtime.cgocall, entry to RET), emitted at its RET by
/// `cgo_exit` only while `CGO_EVENTS_ON` holds 1 (`goscope trace`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgoCallEvent {
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC) at cgocall's entry and RET.
    pub start_ns: u64,
    pub end_ns: u64,
    /// The calling goroutine's goid (0 when its offset is unknown or the
    /// read failed).
    pub goid: u64,
    /// The thread it returned on (initial PID namespace): a goroutine in
    /// C holds its M, so the thread it entered on.
    pub tid: u32,
    pub _pad: u32,
}

pub const ASSIST_EVENT_PARKED: u32 = 1;
pub const ASSIST_EVENT_WORKED: u32 = 2;

/// log2(ns) slots of the mark-assist latency histogram; the second half
/// holds assists that parked (waited for background credit).
pub const ASSIST_HIST_SLOTS: u32 = 128;
pub const ASSIST_PARKED_BASE: u32 = 64;

/// The whole assist histogram in one per-CPU map value, so userspace reads
/// it with one lookup.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AssistHistogram {
    pub slots: [u64; ASSIST_HIST_SLOTS as usize],
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for AssistHistogram {}

/// A log2(ns) latency histogram in one per-CPU map value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Log2Histogram {
    pub slots: [u64; 64],
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for Log2Histogram {}

/// Key of a CPU sample: the user stack (id in the stack trace map, negative
/// when it could not be taken) and whether the CPU was in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuSampleKey {
    pub user_stack: i32,
    pub in_kernel: u32,
}

#[cfg(feature = "user")]
// SAFETY: two 32-bit integers, no padding.
unsafe impl aya::Pod for CpuSampleKey {}

/// Sub-buckets per power of two in the fine latency histogram (about 6%
/// resolution): slot = log2(ns) * FINE_SUB_BUCKETS + the next 4 bits.
pub const FINE_SUB_BUCKETS: u32 = 16;
pub const FINE_SLOTS: u32 = 64 * FINE_SUB_BUCKETS;

/// A fine-grained latency histogram in one per-CPU map value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FineHistogram {
    pub slots: [u64; FINE_SLOTS as usize],
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for FineHistogram {}

/// Per cgo call site (the return address into the `_Cfunc_` wrapper):
/// calls timed and their total nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct CgoSiteStats {
    pub calls: u64,
    pub total_ns: u64,
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for CgoSiteStats {}

/// Key of the per-site cgo latency histogram: call site and fine slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CgoSiteSlot {
    pub site: u64,
    pub slot: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: integers, explicit padding.
unsafe impl aya::Pod for CgoSiteSlot {}

/// `AllocSampleKey::span_class` of a large object (no size class).
pub const LARGE_ALLOC: u32 = u32::MAX;

/// Key of one allocation-site sample: the user stack when an mcache ran out
/// of a size class (runtime.(*mcache).refill: one span's worth of objects)
/// or allocated a large object (runtime.(*mcache).allocLarge), the return
/// address at [RSP] (the frame the stack walk misses at a function's
/// start), the span class, and for large objects their size.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocSampleKey {
    pub user_stack: i32,
    pub span_class: u32,
    pub caller: u64,
    pub size: u64,
}

#[cfg(feature = "user")]
// SAFETY: integers, no padding.
unsafe impl aya::Pod for AllocSampleKey {}

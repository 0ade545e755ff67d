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
}

impl CounterSlot {
    /// Every slot, in discriminant order.
    pub const ALL: [CounterSlot; 1] = [CounterSlot::GcCycles];

    /// The array index (and attach cookie) of this slot.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

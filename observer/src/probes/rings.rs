//! The kernel programs' ring buffers and the switches that turn their
//! events on: one way to read every record kind.

use anyhow::anyhow;
use aya::maps::{Array, RingBuf};
use observer_common::{AssistEvent, CgoCallEvent, GcCycleEvent, ThreadStateEvent};

use super::ProbeSession;

/// A record the kernel writes whole into a ring buffer.
///
/// # Safety
/// Implementors are `repr(C)` types of plain integers and bytes, valid
/// for any bit pattern, and shared with the kernel programs as written.
pub unsafe trait RingRecord: Copy {}

// SAFETY: repr(C) plain integers and bytes (observer-common).
unsafe impl RingRecord for GcCycleEvent {}
// SAFETY: as above.
unsafe impl RingRecord for AssistEvent {}
// SAFETY: as above.
unsafe impl RingRecord for CgoCallEvent {}
// SAFETY: as above.
unsafe impl RingRecord for ThreadStateEvent {}

impl ProbeSession {
    /// Sets slot 0 of `switch`, a one-slot array the kernel programs read
    /// before they emit optional events, to 1.
    pub fn switch_on(&mut self, switch: &str) -> anyhow::Result<()> {
        let map = self
            .ebpf_mut()
            .map_mut(switch)
            .ok_or_else(|| anyhow!("kernel object lacks map {switch}"))?;
        let mut on: Array<_, u32> = Array::try_from(map)?;
        on.set(0, 1, 0)?;
        Ok(())
    }

    /// At most `max` records of ring buffer `ring`, oldest first (the rest
    /// wait for the next drain); a short item is skipped.
    pub fn drain_ring<T: RingRecord>(&mut self, ring: &str, max: usize) -> anyhow::Result<Vec<T>> {
        let map = self
            .ebpf_mut()
            .map_mut(ring)
            .ok_or_else(|| anyhow!("kernel object lacks map {ring}"))?;
        let mut ring = RingBuf::try_from(map)?;
        let mut records = Vec::new();
        while records.len() < max {
            let Some(item) = ring.next() else { break };
            if item.len() >= std::mem::size_of::<T>() {
                // SAFETY: the kernel wrote a whole T (RingRecord: any bit
                // pattern is valid); read unaligned, the ring's alignment is
                // 8 bytes at most.
                records.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<T>()) });
            }
        }
        Ok(records)
    }
}

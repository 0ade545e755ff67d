//! The Go runtime's own heap profile, read from the target's memory with no
//! probe: the `runtime.mbuckets` list of sampled allocation stacks that
//! programs linking runtime/pprof (or net/http/pprof) keep, reported the
//! way `runtime.MemProfile` would, plus runtime/pprof's heap figures and
//! the allocation site of a stack.
//!
//! What the runtime's reader (`memProfileInternal`/`MemProfile` in
//! runtime/mprof.go, Go 1.21-1.27) reports, and this one too: each
//! bucket's `active` record (the published cycles) plus `future[C % 3]`
//! (C = `mProfCycle >> 1`), which MemProfile flushes first in case the
//! reader runs between `mProf_NextCycle` and `mProf_Flush`. When no bucket
//! has any published allocation or free (no GC finished yet), it
//! accumulates every future cycle instead. `MemProfile(p, false)` skips
//! buckets whose bytes are all freed; runtime/pprof asks for them
//! (`inuseZero = true`): `MemProfile::records` has every bucket,
//! `MemProfile::in_use_records` what `MemProfile(p, false)` returns.
//!
//! The walk is bounded (bucket count, stack depth, a visited set), every
//! pointer is checked before use, and `mProfCycle` is read before and
//! after: a walk during which it moved is retried. `mProf_PostSweep`
//! publishes a cycle without moving `mProfCycle`, so a walk racing the end
//! of a sweep may see some buckets before and some after it.

use std::collections::HashSet;

use serde::Serialize;
use thiserror::Error;

use super::{
    globals::OptionalGlobal,
    layout::{MemProfileLayout, RuntimeLayout},
};
use crate::memory::{MemoryError, TargetMemory};

/// `memProfile` of runtime.bucketType: the only type on the mbuckets list.
pub const MEM_PROFILE_BUCKET: u64 = 1;

/// The runtime throws on deeper stacks (`maxProfStackDepth`, Go 1.23+;
/// `maxStack` = 32 before).
pub const MAX_STACK_DEPTH: u64 = 1024;

#[derive(Debug, Error)]
pub enum MemProfileError {
    #[error("no memory profile in this binary: {missing} not found")]
    Unavailable { missing: &'static str },
    #[error("reading {what} at {address:#x}: {cause}")]
    Memory {
        what: &'static str,
        address: u64,
        cause: MemoryError,
    },
    #[error("bucket list longer than {limit} buckets (runtime.mbuckets at {head:#x})")]
    TooManyBuckets { limit: usize, head: u64 },
    #[error("bucket list loops: bucket at {address:#x} reached twice")]
    Loop { address: u64 },
    #[error("bucket pointer {address:#x} is not 8-byte aligned")]
    Misaligned { address: u64 },
    #[error("bucket at {address:#x} has type {typ}, not a memory-profile bucket")]
    WrongType { address: u64, typ: u64 },
    #[error("bucket at {address:#x} has nstk {nstk} (at most {limit})")]
    StackTooDeep { address: u64, nstk: u64, limit: u64 },
    #[error("bucket at {address:#x}: {what} overflows ({count} objects of {size} B)")]
    Overflow {
        address: u64,
        what: &'static str,
        count: u64,
        size: u64,
    },
    #[error("bucket at {address:#x} runs past the end of the address space")]
    OutOfRange { address: u64 },
    #[error("implausible memory-profile layout: {detail}")]
    Layout { detail: String },
    #[error(
        "runtime.mProfCycle moved during each of {attempts} walks (last {before:#x} -> {after:#x})"
    )]
    Unstable {
        attempts: u32,
        before: u32,
        after: u32,
    },
}

impl MemProfileError {
    /// True when the process disappeared (rather than a bad read).
    pub fn process_gone(&self) -> bool {
        matches!(
            self,
            MemProfileError::Memory {
                cause: MemoryError::Gone { .. },
                ..
            }
        )
    }
}

/// Bounds of one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// More buckets than this is an error (a real list has thousands).
    pub max_buckets: usize,
    pub max_stack: u64,
    /// Walks tried while `mProfCycle` keeps moving.
    pub attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_buckets: 1 << 18,
            max_stack: MAX_STACK_DEPTH,
            attempts: 3,
        }
    }
}

/// Run-time addresses (load bias added) of the globals read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemProfileAddresses {
    pub mbuckets: u64,
    pub mem_profile_rate: u64,
    pub mprof_cycle: u64,
    /// runtime.disableMemoryProfiling (a bool); optional.
    pub disable_memory_profiling: Option<u64>,
}

/// One bucket as `runtime.MemProfile` reports it (cumulative since start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemProfileRecord {
    /// Return PCs, leaf first, as `callers()` recorded them.
    pub stack: Vec<u64>,
    /// Object size of the bucket.
    pub size: u64,
    pub allocs: u64,
    pub frees: u64,
    pub alloc_bytes: u64,
    pub free_bytes: u64,
}

impl MemProfileRecord {
    pub fn in_use_objects(&self) -> i64 {
        self.allocs as i64 - self.frees as i64
    }

    pub fn in_use_bytes(&self) -> i64 {
        self.alloc_bytes as i64 - self.free_bytes as i64
    }

    /// runtime/pprof's four heap values for this record (sampled counts
    /// scaled by the sampling rate, as `writeHeapProto` does).
    pub fn heap_sample(&self, rate: i64) -> HeapSample {
        let (alloc_objects, alloc_space) =
            scale_heap_sample(self.allocs as i64, self.alloc_bytes as i64, rate);
        let (inuse_objects, inuse_space) =
            scale_heap_sample(self.in_use_objects(), self.in_use_bytes(), rate);
        HeapSample {
            alloc_objects,
            alloc_space,
            inuse_objects,
            inuse_space,
        }
    }
}

/// The runtime's memory profile at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemProfile {
    /// runtime.MemProfileRate: average bytes between samples (0: off).
    pub rate: i64,
    /// runtime.disableMemoryProfiling: the linker found nothing that reads
    /// heap profiles, so nothing is recorded (`None`: global not found).
    pub disabled: Option<bool>,
    /// mProfCycle's cycle number during the walk.
    pub cycle: u32,
    /// No cycle was published yet: records sum every future cycle, as
    /// MemProfile does then.
    pub unpublished: bool,
    /// Go 1.27+: the runtime keeps counts only (bytes = counts × size).
    pub counts_only: bool,
    /// Every bucket, in list order (newest first).
    pub records: Vec<MemProfileRecord>,
    /// Walks it took (mProfCycle moved during the others).
    pub attempts: u32,
}

impl MemProfile {
    /// Whether the target samples allocations at all.
    pub fn enabled(&self) -> bool {
        self.rate > 0 && self.disabled != Some(true)
    }

    /// What `runtime.MemProfile(p, false)` returns: buckets with bytes in
    /// use (Go 1.27+: objects in use).
    pub fn in_use_records(&self) -> impl Iterator<Item = &MemProfileRecord> {
        let counts_only = self.counts_only;
        self.records.iter().filter(move |r| {
            if counts_only {
                r.allocs != r.frees
            } else {
                r.alloc_bytes != r.free_bytes
            }
        })
    }
}

/// runtime/pprof's sample values of one record (sample types
/// alloc_objects/count, alloc_space/bytes, inuse_objects/count,
/// inuse_space/bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeapSample {
    pub alloc_objects: i64,
    pub alloc_space: i64,
    pub inuse_objects: i64,
    pub inuse_space: i64,
}

/// runtime/pprof's `scaleHeapSample`: an estimate of the objects and bytes
/// that `count` samples totalling `bytes` stand for when one sample is
/// taken per `rate` bytes on average (Poisson sampling). Go 1.27 passes
/// (count, object size) and multiplies; every bucket holds one object size,
/// so both forms give the same numbers.
pub fn scale_heap_sample(count: i64, bytes: i64, rate: i64) -> (i64, i64) {
    if count == 0 || bytes == 0 {
        return (0, 0);
    }
    if rate <= 1 {
        // rate 1: everything sampled; below: unknown, not scaled.
        return (count, bytes);
    }
    let average = bytes as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-average / rate as f64).exp());
    ((count as f64 * scale) as i64, (bytes as f64 * scale) as i64)
}

/// Packages whose frames belong to the runtime: an allocation site is the
/// first frame outside them.
pub const RUNTIME_PACKAGE_PREFIXES: &[&str] = &[
    "runtime.",
    // runtime/internal/{atomic,math,sys} up to Go 1.22.
    "runtime/internal/",
    // internal/runtime/{maps,atomic,sys,gc,...} from Go 1.23.
    "internal/runtime/",
    "internal/bytealg.",
    "internal/abi.",
    "internal/cpu.",
    "internal/goarch.",
    "internal/chacha8rand.",
];

/// True for a function of the runtime or a runtime-internal package.
pub fn is_runtime_function(function: &str) -> bool {
    RUNTIME_PACKAGE_PREFIXES
        .iter()
        .any(|p| function.starts_with(p))
}

/// Where a stack allocated: its first frame outside the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Index of the frame in the stack (leaf = 0).
    pub frame: usize,
    pub pc: u64,
    /// The innermost function outside the runtime at that PC; `None` when
    /// the symbolizer did not know the PC (runtime/pprof stops trimming
    /// there as well).
    pub function: Option<String>,
}

/// The allocation site of `stack` (leaf first, return PCs as recorded).
/// `functions_at(pc)` gives the functions at a recorded return PC,
/// innermost first with inlined calls expanded (e.g. from
/// `SourceSymbolizer::location(pc, true)`), or just one name, or none when
/// unknown. `None` when every frame is the runtime's.
pub fn allocation_site<F, I, S>(stack: &[u64], mut functions_at: F) -> Option<Site>
where
    F: FnMut(u64) -> I,
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    stack.iter().enumerate().find_map(|(frame, &pc)| {
        let mut known = false;
        for function in functions_at(pc) {
            known = true;
            let function = function.as_ref();
            if !is_runtime_function(function) {
                return Some(Site {
                    frame,
                    pc,
                    function: Some(function.to_string()),
                });
            }
        }
        (!known).then_some(Site {
            frame,
            pc,
            function: None,
        })
    })
}

/// Reads the memory profile of one target; resolved once, read on demand.
#[derive(Clone, Debug)]
pub struct MemProfileReader {
    layout: MemProfileLayout,
    addresses: MemProfileAddresses,
    limits: Limits,
}

/// One memRecordCycle.
#[derive(Clone, Copy, Debug, Default)]
struct Cycle {
    allocs: u64,
    frees: u64,
    alloc_bytes: u64,
    free_bytes: u64,
}

impl Cycle {
    fn add(&mut self, other: &Cycle) {
        self.allocs = self.allocs.wrapping_add(other.allocs);
        self.frees = self.frees.wrapping_add(other.frees);
        self.alloc_bytes = self.alloc_bytes.wrapping_add(other.alloc_bytes);
        self.free_bytes = self.free_bytes.wrapping_add(other.free_bytes);
    }
}

/// A bucket as read: its active record and future cycles.
struct RawBucket {
    stack: Vec<u64>,
    size: u64,
    active: Cycle,
    future: Vec<Cycle>,
}

fn le_u64(raw: &[u8], offset: u64) -> u64 {
    let o = offset as usize;
    raw.get(o..o + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl MemProfileReader {
    /// The reader for a resolved runtime layout; `Unavailable` when the
    /// binary lacks the bucket layout or one of the globals (no memory
    /// profile source, not an error of the target).
    pub fn new(layout: &RuntimeLayout, bias: u64) -> Result<Self, MemProfileError> {
        let g = &layout.globals;
        let global = |global: OptionalGlobal, missing: &'static str| {
            g.optional(global)
                .map(|a| a.wrapping_add(bias))
                .ok_or(MemProfileError::Unavailable { missing })
        };
        let bucket_layout =
            layout
                .offsets
                .mem_profile
                .clone()
                .ok_or(MemProfileError::Unavailable {
                    missing: "the layout of runtime.bucket",
                })?;
        let addresses = MemProfileAddresses {
            mbuckets: global(OptionalGlobal::Mbuckets, "runtime.mbuckets")?,
            mem_profile_rate: global(OptionalGlobal::MemProfileRate, "runtime.MemProfileRate")?,
            mprof_cycle: global(OptionalGlobal::MprofCycle, "runtime.mProfCycle")?,
            disable_memory_profiling: g
                .optional(OptionalGlobal::DisableMemoryProfiling)
                .map(|a| a.wrapping_add(bias)),
        };
        Self::from_parts(bucket_layout, addresses)
    }

    /// A reader over an explicit layout and addresses (a layout whose
    /// fields fall outside its structs is refused).
    pub fn from_parts(
        layout: MemProfileLayout,
        addresses: MemProfileAddresses,
    ) -> Result<Self, MemProfileError> {
        check_layout(&layout)?;
        Ok(Self {
            layout,
            addresses,
            limits: Limits::default(),
        })
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads the profile: the rate, the disable flag, then walks until a
    /// walk sees `mProfCycle` unchanged (at most `Limits::attempts`).
    pub fn read(&self, memory: &dyn TargetMemory) -> Result<MemProfile, MemProfileError> {
        let a = &self.addresses;
        let rate = read_u64(memory, "runtime.MemProfileRate", a.mem_profile_rate)? as i64;
        let disabled = match a.disable_memory_profiling {
            Some(address) => {
                let mut flag = [0u8; 1];
                memory
                    .read(address, &mut flag)
                    .map_err(|cause| MemProfileError::Memory {
                        what: "runtime.disableMemoryProfiling",
                        address,
                        cause,
                    })?;
                Some(flag[0] != 0)
            }
            None => None,
        };
        let cycle_word = a.mprof_cycle + self.layout.mprof_cycle_value;
        let read_cycle = || -> Result<u32, MemProfileError> {
            memory
                .read_u32(cycle_word)
                .map_err(|cause| MemProfileError::Memory {
                    what: "runtime.mProfCycle",
                    address: cycle_word,
                    cause,
                })
        };
        let attempts = self.limits.attempts.max(1);
        let mut last = (0, 0);
        for attempt in 1..=attempts {
            let before = read_cycle()?;
            let buckets = self.walk(memory)?;
            let after = read_cycle()?;
            if before != after {
                last = (before, after);
                continue;
            }
            let cycle = before >> 1;
            let (records, unpublished) = self.publish(buckets, cycle);
            return Ok(MemProfile {
                rate,
                disabled,
                cycle,
                unpublished,
                counts_only: self.layout.alloc_bytes.is_none(),
                records,
                attempts: attempt,
            });
        }
        Err(MemProfileError::Unstable {
            attempts,
            before: last.0,
            after: last.1,
        })
    }

    /// What memProfileInternal computes from the buckets at `cycle`.
    fn publish(&self, buckets: Vec<RawBucket>, cycle: u32) -> (Vec<MemProfileRecord>, bool) {
        let index = (u64::from(cycle) % self.layout.future_cycles.max(1)) as usize;
        let mut published: Vec<Cycle> = buckets
            .iter()
            .map(|b| {
                let mut c = b.active;
                if let Some(f) = b.future.get(index) {
                    c.add(f);
                }
                c
            })
            .collect();
        let clear = published.iter().all(|c| c.allocs == 0 && c.frees == 0);
        if clear {
            for (c, b) in published.iter_mut().zip(&buckets) {
                *c = b.active;
                for f in &b.future {
                    c.add(f);
                }
            }
        }
        let records = buckets
            .into_iter()
            .zip(published)
            .map(|(b, c)| MemProfileRecord {
                stack: b.stack,
                size: b.size,
                allocs: c.allocs,
                frees: c.frees,
                alloc_bytes: c.alloc_bytes,
                free_bytes: c.free_bytes,
            })
            .collect();
        (records, clear)
    }

    /// Reads every bucket on the list, checking each pointer and length.
    fn walk(&self, memory: &dyn TargetMemory) -> Result<Vec<RawBucket>, MemProfileError> {
        let l = &self.layout;
        let head = read_u64(memory, "runtime.mbuckets", self.addresses.mbuckets)?;
        let mut visited = HashSet::new();
        let mut buckets = Vec::new();
        let mut address = head;
        while address != 0 {
            if buckets.len() >= self.limits.max_buckets {
                return Err(MemProfileError::TooManyBuckets {
                    limit: self.limits.max_buckets,
                    head,
                });
            }
            if address % 8 != 0 {
                return Err(MemProfileError::Misaligned { address });
            }
            if !visited.insert(address) {
                return Err(MemProfileError::Loop { address });
            }
            let header = read_vec(memory, "bucket header", address, l.bucket_size)?;
            let typ = le_u64(&header, l.typ);
            if typ != MEM_PROFILE_BUCKET {
                return Err(MemProfileError::WrongType { address, typ });
            }
            let nstk = le_u64(&header, l.nstk);
            if nstk > self.limits.max_stack {
                return Err(MemProfileError::StackTooDeep {
                    address,
                    nstk,
                    limit: self.limits.max_stack,
                });
            }
            let size = le_u64(&header, l.size);
            let stack_len = nstk * 8;
            let body_at = address
                .checked_add(l.bucket_size)
                .filter(|a| a.checked_add(stack_len + l.record_size).is_some())
                .ok_or(MemProfileError::OutOfRange { address })?;
            let body = read_vec(
                memory,
                "bucket stack and record",
                body_at,
                stack_len + l.record_size,
            )?;
            let stack = body[..stack_len as usize]
                .chunks_exact(8)
                .map(|c| le_u64(c, 0))
                .collect();
            let record = &body[stack_len as usize..];
            let cycle_at = |offset: u64| -> Result<Cycle, MemProfileError> {
                let allocs = le_u64(record, offset + l.allocs);
                let frees = le_u64(record, offset + l.frees);
                let bytes = |field: Option<u64>, count: u64, what| match field {
                    Some(f) => Ok(le_u64(record, offset + f)),
                    None => count.checked_mul(size).ok_or(MemProfileError::Overflow {
                        address,
                        what,
                        count,
                        size,
                    }),
                };
                Ok(Cycle {
                    allocs,
                    frees,
                    alloc_bytes: bytes(l.alloc_bytes, allocs, "allocated bytes")?,
                    free_bytes: bytes(l.free_bytes, frees, "freed bytes")?,
                })
            };
            let active = cycle_at(l.active)?;
            let future = (0..l.future_cycles)
                .map(|i| cycle_at(l.future + i * l.cycle_size))
                .collect::<Result<_, _>>()?;
            buckets.push(RawBucket {
                stack,
                size,
                active,
                future,
            });
            address = le_u64(&header, l.allnext);
        }
        Ok(buckets)
    }
}

/// Largest bucket header or memRecord believed (they are 48 and 128 B).
const MAX_STRUCT_SIZE: u64 = 4096;

fn check_layout(l: &MemProfileLayout) -> Result<(), MemProfileError> {
    let bad = |detail: String| Err(MemProfileError::Layout { detail });
    if l.bucket_size > MAX_STRUCT_SIZE || l.record_size > MAX_STRUCT_SIZE {
        return bad(format!(
            "bucket header {} B, memRecord {} B",
            l.bucket_size, l.record_size
        ));
    }
    for (name, offset) in [
        ("allnext", l.allnext),
        ("typ", l.typ),
        ("size", l.size),
        ("nstk", l.nstk),
    ] {
        if offset + 8 > l.bucket_size {
            return bad(format!(
                "bucket.{name} at {offset} outside the {} B header",
                l.bucket_size
            ));
        }
    }
    let cycle_fields = [Some(l.allocs), Some(l.frees), l.alloc_bytes, l.free_bytes];
    if let Some(offset) = cycle_fields
        .into_iter()
        .flatten()
        .find(|o| o + 8 > l.cycle_size)
    {
        return bad(format!(
            "memRecordCycle field at {offset} outside its {} B",
            l.cycle_size
        ));
    }
    if l.future_cycles == 0
        || l.future_cycles > 8
        || l.active + l.cycle_size > l.record_size
        || l.future + l.future_cycles * l.cycle_size > l.record_size
    {
        return bad(format!(
            "memRecord of {} B with active at {} and {} future cycles of {} B at {}",
            l.record_size, l.active, l.future_cycles, l.cycle_size, l.future
        ));
    }
    Ok(())
}

fn read_u64(
    memory: &dyn TargetMemory,
    what: &'static str,
    address: u64,
) -> Result<u64, MemProfileError> {
    memory
        .read_u64(address)
        .map_err(|cause| MemProfileError::Memory {
            what,
            address,
            cause,
        })
}

fn read_vec(
    memory: &dyn TargetMemory,
    what: &'static str,
    address: u64,
    len: u64,
) -> Result<Vec<u8>, MemProfileError> {
    memory
        .read_vec(address, len as usize)
        .map_err(|cause| MemProfileError::Memory {
            what,
            address,
            cause,
        })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::memory::SnapshotMemory;

    /// Go 1.21-1.26 (DWARF of 1.21.13, 1.22.10, 1.24.11, 1.25.5).
    fn layout_122() -> MemProfileLayout {
        MemProfileLayout {
            bucket_size: 48,
            allnext: 8,
            typ: 16,
            size: 32,
            nstk: 40,
            record_size: 128,
            active: 0,
            future: 32,
            future_cycles: 3,
            cycle_size: 32,
            allocs: 0,
            frees: 8,
            alloc_bytes: Some(16),
            free_bytes: Some(24),
            mprof_cycle_value: 0,
        }
    }

    /// Go 1.27 (DWARF of 1.27.3): counts only.
    fn layout_127() -> MemProfileLayout {
        MemProfileLayout {
            record_size: 64,
            future: 16,
            cycle_size: 16,
            alloc_bytes: None,
            free_bytes: None,
            ..layout_122()
        }
    }

    const MBUCKETS: u64 = 0x10_0000;
    const RATE: u64 = 0x10_0100;
    const CYCLE: u64 = 0x10_0200;
    const DISABLE: u64 = 0x10_0300;

    fn addresses() -> MemProfileAddresses {
        MemProfileAddresses {
            mbuckets: MBUCKETS,
            mem_profile_rate: RATE,
            mprof_cycle: CYCLE,
            disable_memory_profiling: Some(DISABLE),
        }
    }

    /// (allocs, frees, alloc_bytes, free_bytes) of one memRecordCycle.
    type Counts = [u64; 4];

    struct Bucket {
        typ: u64,
        size: u64,
        stack: Vec<u64>,
        active: Counts,
        future: [Counts; 3],
    }

    fn bucket(size: u64, stack: &[u64], active: Counts, future: [Counts; 3]) -> Bucket {
        Bucket {
            typ: MEM_PROFILE_BUCKET,
            size,
            stack: stack.to_vec(),
            active,
            future,
        }
    }

    fn bucket_bytes(l: &MemProfileLayout, b: &Bucket, allnext: u64, nstk: u64) -> Vec<u8> {
        let mut bytes =
            vec![0u8; (l.bucket_size + 8 * b.stack.len() as u64 + l.record_size) as usize];
        let mut put = |offset: u64, value: u64| {
            bytes[offset as usize..offset as usize + 8].copy_from_slice(&value.to_le_bytes());
        };
        put(l.allnext, allnext);
        put(l.typ, b.typ);
        put(l.size, b.size);
        put(l.nstk, nstk);
        for (i, pc) in b.stack.iter().enumerate() {
            put(l.bucket_size + 8 * i as u64, *pc);
        }
        let record = l.bucket_size + 8 * b.stack.len() as u64;
        let cycles = std::iter::once((l.active, b.active)).chain(
            b.future
                .iter()
                .enumerate()
                .map(|(i, c)| (l.future + i as u64 * l.cycle_size, *c)),
        );
        for (at, c) in cycles {
            put(record + at + l.allocs, c[0]);
            put(record + at + l.frees, c[1]);
            if let (Some(ab), Some(fb)) = (l.alloc_bytes, l.free_bytes) {
                put(record + at + ab, c[2]);
                put(record + at + fb, c[3]);
            }
        }
        bytes
    }

    /// A target whose list holds `buckets` (head first) at 0x20_0000,
    /// 0x20_1000, ...; `link(i)` is bucket i's allnext.
    fn target(
        l: &MemProfileLayout,
        buckets: &[Bucket],
        cycle_word: u32,
        link: impl Fn(usize) -> u64,
    ) -> SnapshotMemory {
        let mut memory = SnapshotMemory::default();
        let at = |i: usize| 0x20_0000 + 0x1000 * i as u64;
        memory.insert(
            MBUCKETS,
            if buckets.is_empty() { 0 } else { at(0) }
                .to_le_bytes()
                .to_vec(),
        );
        memory.insert(RATE, 524_288u64.to_le_bytes().to_vec());
        memory.insert(CYCLE, cycle_word.to_le_bytes().to_vec());
        memory.insert(DISABLE, vec![0]);
        for (i, b) in buckets.iter().enumerate() {
            memory.insert(at(i), bucket_bytes(l, b, link(i), b.stack.len() as u64));
        }
        memory
    }

    fn chain(n: usize) -> impl Fn(usize) -> u64 {
        move |i| {
            if i + 1 < n {
                0x20_0000 + 0x1000 * (i as u64 + 1)
            } else {
                0
            }
        }
    }

    fn reader(l: MemProfileLayout) -> MemProfileReader {
        MemProfileReader::from_parts(l, addresses()).unwrap()
    }

    #[test]
    fn reports_active_plus_the_current_cycle_like_mem_profile() {
        let l = layout_122();
        // Cycle 5 (flushed flag set): future[5 % 3 = 2] is what MemProfile
        // flushes into active; futures 0 and 1 are not published yet.
        let buckets = [
            bucket(
                64,
                &[0x401000, 0x402000],
                [10, 4, 640, 256],
                [[100, 0, 6400, 0], [200, 0, 12800, 0], [1, 1, 64, 64]],
            ),
            bucket(4096, &[0x403000], [3, 3, 12288, 12288], [[0; 4]; 3]),
        ];
        let memory = target(&l, &buckets, 5 << 1 | 1, chain(2));
        let profile = reader(l).read(&memory).unwrap();
        assert_eq!(profile.rate, 524_288);
        assert_eq!(profile.disabled, Some(false));
        assert!(profile.enabled());
        assert_eq!(profile.cycle, 5);
        assert!(!profile.unpublished && !profile.counts_only);
        assert_eq!(profile.attempts, 1);
        assert_eq!(
            profile.records,
            vec![
                MemProfileRecord {
                    stack: vec![0x401000, 0x402000],
                    size: 64,
                    allocs: 11,
                    frees: 5,
                    alloc_bytes: 704,
                    free_bytes: 320,
                },
                MemProfileRecord {
                    stack: vec![0x403000],
                    size: 4096,
                    allocs: 3,
                    frees: 3,
                    alloc_bytes: 12288,
                    free_bytes: 12288,
                },
            ]
        );
        // MemProfile(p, false) skips the bucket whose bytes are all freed.
        let in_use: Vec<_> = profile.in_use_records().collect();
        assert_eq!(in_use.len(), 1);
        assert_eq!(in_use[0].in_use_objects(), 6);
        assert_eq!(in_use[0].in_use_bytes(), 384);
    }

    #[test]
    fn before_the_first_published_cycle_every_future_cycle_counts() {
        let l = layout_122();
        let buckets = [bucket(
            32,
            &[0x401000],
            [0; 4],
            [[1, 0, 32, 0], [2, 1, 64, 32], [0; 4]],
        )];
        let memory = target(&l, &buckets, 2 << 1, chain(1));
        let profile = reader(l).read(&memory).unwrap();
        assert!(profile.unpublished);
        assert_eq!(
            (
                profile.records[0].allocs,
                profile.records[0].frees,
                profile.records[0].alloc_bytes
            ),
            (3, 1, 96)
        );
    }

    #[test]
    fn go_1_27_buckets_count_objects_and_bytes_follow_from_the_size() {
        let l = layout_127();
        let buckets = [bucket(
            48,
            &[0x401000],
            [7, 2, 0, 0],
            [[0; 4], [5, 0, 0, 0], [0; 4]],
        )];
        let memory = target(&l, &buckets, 0, chain(1));
        let profile = reader(l).read(&memory).unwrap();
        assert!(profile.counts_only);
        let r = &profile.records[0];
        assert_eq!(
            (r.allocs, r.frees, r.alloc_bytes, r.free_bytes),
            (7, 2, 336, 96)
        );
    }

    #[test]
    fn an_empty_list_and_a_disabled_profile() {
        let l = layout_122();
        let mut memory = target(&l, &[], 0, chain(0));
        memory.insert(DISABLE, vec![1]);
        memory.insert(RATE, 0u64.to_le_bytes().to_vec());
        let profile = reader(l).read(&memory).unwrap();
        assert!(profile.records.is_empty());
        assert_eq!(profile.disabled, Some(true));
        assert!(!profile.enabled());
    }

    #[test]
    fn a_cyclic_list_is_an_error_naming_the_bucket() {
        let l = layout_122();
        let buckets: Vec<_> = (0..3)
            .map(|i| bucket(16, &[0x401000 + i], [1, 0, 16, 0], [[0; 4]; 3]))
            .collect();
        // The last bucket points back at the second.
        let memory = target(&l, &buckets, 0, |i| {
            0x20_0000 + 0x1000 * ((i as u64 + 1) % 3).max(1)
        });
        let err = reader(l).read(&memory).unwrap_err();
        assert!(
            matches!(err, MemProfileError::Loop { address: 0x20_1000 }),
            "{err}"
        );
        assert!(err.to_string().contains("0x201000"), "{err}");
    }

    #[test]
    fn an_absurd_stack_depth_is_refused() {
        let l = layout_122();
        let buckets = [bucket(16, &[0x401000], [1, 0, 16, 0], [[0; 4]; 3])];
        let mut memory = target(&l, &buckets, 0, chain(1));
        let b = &buckets[0];
        memory.insert(0x20_0000, bucket_bytes(&l, b, 0, 4000));
        let err = reader(l).read(&memory).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bucket at 0x200000 has nstk 4000 (at most 1024)"
        );
    }

    #[test]
    fn a_pointer_into_unmapped_memory_is_a_read_error() {
        let l = layout_122();
        let buckets = [bucket(16, &[0x401000], [1, 0, 16, 0], [[0; 4]; 3])];
        let memory = target(&l, &buckets, 0, |_| 0xdead_0000);
        let err = reader(l).read(&memory).unwrap_err();
        assert!(
            matches!(
                err,
                MemProfileError::Memory {
                    address: 0xdead_0000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("0xdead0000"), "{err}");
    }

    #[test]
    fn misaligned_pointers_and_foreign_bucket_types_are_refused() {
        let l = layout_122();
        let buckets = [bucket(16, &[0x401000], [1, 0, 16, 0], [[0; 4]; 3])];
        let memory = target(&l, &buckets, 0, |_| 0x20_0003);
        let err = reader(l.clone()).read(&memory).unwrap_err();
        assert!(
            matches!(err, MemProfileError::Misaligned { address: 0x20_0003 }),
            "{err}"
        );

        let mut block = bucket(16, &[0x401000], [0; 4], [[0; 4]; 3]);
        block.typ = 2;
        let memory = target(&l, &[block], 0, chain(1));
        let err = reader(l).read(&memory).unwrap_err();
        assert!(
            matches!(err, MemProfileError::WrongType { typ: 2, .. }),
            "{err}"
        );
    }

    /// A list of `count` one-frame buckets generated on demand (too many
    /// to record), every `STRIDE` bytes from `BASE`.
    struct LongList {
        count: u64,
    }

    impl LongList {
        const BASE: u64 = 0x1000_0000;
        const STRIDE: u64 = 192;
    }

    impl TargetMemory for LongList {
        fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            let missing = || MemoryError::Read {
                pid: 0,
                address,
                len: buf.len(),
                reason: "unmapped".into(),
            };
            let word = |value: u64| value.to_le_bytes().to_vec();
            let bytes = match address {
                MBUCKETS => word(Self::BASE),
                RATE => word(1),
                CYCLE => word(0),
                DISABLE => vec![0],
                a if a >= Self::BASE && a < Self::BASE + self.count * Self::STRIDE => {
                    let i = (a - Self::BASE) / Self::STRIDE;
                    let next = if i + 1 < self.count {
                        Self::BASE + (i + 1) * Self::STRIDE
                    } else {
                        0
                    };
                    let b = bucket(8, &[0x401000 + i], [1, 0, 8, 0], [[0; 4]; 3]);
                    let all = bucket_bytes(&layout_122(), &b, next, 1);
                    let start = (a - Self::BASE - i * Self::STRIDE) as usize;
                    all.get(start..).ok_or_else(missing)?.to_vec()
                }
                _ => return Err(missing()),
            };
            let src = bytes.get(..buf.len()).ok_or_else(missing)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    #[test]
    fn a_list_of_a_million_buckets_is_a_bounded_error() {
        let started = std::time::Instant::now();
        let err = reader(layout_122())
            .read(&LongList { count: 1_000_000 })
            .unwrap_err();
        assert!(
            matches!(err, MemProfileError::TooManyBuckets { limit: 262_144, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("bucket list longer than 262144"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        // Within the limit, the same list reads completely.
        let limits = Limits {
            max_buckets: 1_000_000,
            ..Limits::default()
        };
        let profile = reader(layout_122())
            .with_limits(limits)
            .read(&LongList { count: 1_000_000 })
            .unwrap();
        assert_eq!(profile.records.len(), 1_000_000);
    }

    /// Wraps a target so that mProfCycle advances on each of its first
    /// `moves` reads after the first.
    struct MovingCycle<'a> {
        inner: &'a SnapshotMemory,
        reads: Cell<u32>,
        moves: u32,
    }

    impl TargetMemory for MovingCycle<'_> {
        fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.inner.read(address, buf)?;
            if address == CYCLE {
                let n = self.reads.get();
                self.reads.set(n + 1);
                let value = n.min(self.moves) << 1;
                buf.copy_from_slice(&value.to_le_bytes());
            }
            Ok(())
        }
    }

    #[test]
    fn a_walk_during_which_the_cycle_moved_is_retried_a_bounded_number_of_times() {
        let l = layout_122();
        let buckets = [bucket(16, &[0x401000], [1, 0, 16, 0], [[0; 4]; 3])];
        let memory = target(&l, &buckets, 0, chain(1));
        let once = MovingCycle {
            inner: &memory,
            reads: Cell::new(0),
            moves: 1,
        };
        let profile = reader(l.clone()).read(&once).unwrap();
        assert_eq!((profile.attempts, profile.cycle), (2, 1));

        let always = MovingCycle {
            inner: &memory,
            reads: Cell::new(0),
            moves: u32::MAX,
        };
        let err = reader(l).read(&always).unwrap_err();
        assert!(
            matches!(err, MemProfileError::Unstable { attempts: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn layouts_outside_their_structs_are_refused() {
        let mut l = layout_122();
        l.future_cycles = 5;
        assert!(matches!(
            MemProfileReader::from_parts(l, addresses()),
            Err(MemProfileError::Layout { .. })
        ));
        let mut l = layout_127();
        l.alloc_bytes = Some(16);
        assert!(MemProfileReader::from_parts(l, addresses()).is_err());
    }

    #[test]
    fn heap_samples_are_scaled_like_runtime_pprof() {
        // Values computed with scaleHeapSample's formula (truncating).
        assert_eq!(scale_heap_sample(10, 10240, 524_288), (5125, 5_248_001));
        assert_eq!(scale_heap_sample(3, 3 * 65536, 524_288), (25, 1_673_215));
        assert_eq!(scale_heap_sample(-2, -2048, 524_288), (-1025, -1_049_600));
        assert_eq!(
            scale_heap_sample(7, 7 * 4096 * 256, 524_288),
            (8, 8_488_876)
        );
        assert_eq!(scale_heap_sample(0, 0, 524_288), (0, 0));
        assert_eq!(scale_heap_sample(5, 0, 524_288), (0, 0));
        assert_eq!(scale_heap_sample(5, 80, 1), (5, 80));
        assert_eq!(scale_heap_sample(5, 80, 0), (5, 80));
        let record = MemProfileRecord {
            stack: vec![],
            size: 1024,
            allocs: 10,
            frees: 8,
            alloc_bytes: 10240,
            free_bytes: 8192,
        };
        assert_eq!(
            record.heap_sample(524_288),
            HeapSample {
                alloc_objects: 5125,
                alloc_space: 5_248_001,
                inuse_objects: scale_heap_sample(2, 2048, 524_288).0,
                inuse_space: scale_heap_sample(2, 2048, 524_288).1,
            }
        );
    }

    #[test]
    fn the_site_is_the_first_frame_outside_the_runtime() {
        let names = |pc: u64| -> Vec<&'static str> {
            match pc {
                1 => vec!["runtime.mallocgc"],
                2 => vec!["internal/runtime/maps.newarray", "runtime.makemap"],
                3 => vec!["internal/bytealg.MakeNoZero"],
                // An inlined runtime helper inside a user function.
                4 => vec!["runtime.growslice", "main.appendAll"],
                5 => vec!["main.main"],
                _ => vec![],
            }
        };
        let site = allocation_site(&[1, 2, 3, 4, 5], names).unwrap();
        assert_eq!((site.frame, site.pc), (3, 4));
        assert_eq!(site.function.as_deref(), Some("main.appendAll"));
        assert_eq!(allocation_site(&[1, 2], names), None);
        // An unknown frame ends the runtime's frames (as runtime/pprof).
        let site = allocation_site(&[1, 9, 5], names).unwrap();
        assert_eq!((site.frame, site.function), (1, None));
        // A plain pc -> name symbolizer works too.
        let site = allocation_site(&[1, 5], |pc| {
            Some(if pc == 5 {
                "main.f"
            } else {
                "runtime.mallocgc"
            })
        })
        .unwrap();
        assert_eq!(site.function.as_deref(), Some("main.f"));
        assert!(is_runtime_function("runtime/internal/atomic.Xadd64"));
        assert!(!is_runtime_function("runtime/pprof.writeHeap"));
        assert!(!is_runtime_function("main.runtimeish"));
    }
}

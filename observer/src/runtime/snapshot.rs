//! One reading of the runtime's own counters from the target's memory: the
//! figures runtime/metrics would print, taken at one instant without
//! stopping or changing the target.

use std::collections::HashSet;

use thiserror::Error;

use super::{
    globals::{OptionalGlobal, RequiredGlobal},
    histogram::TimeHistogram,
    layout::{RuntimeLayout, TimeHistogramLayout},
};
use crate::memory::{MemoryError, TargetMemory};

/// Longest `allm` list walked before assuming the list is corrupt (the
/// runtime's default thread limit, debug.SetMaxThreads, is 10 000).
pub const MAX_MS: usize = 100_000;
/// Most Ps believed: GOMAXPROCS has no hard cap in the runtime, but 65 536
/// Ps is far above any machine, and `len(runtime.allp)` sizes a read.
pub const MAX_PS: u64 = 1 << 16;
/// Largest runtime structure read in one piece (mstats, gcController,
/// sched and work are a few KiB): a larger size in the layout is refused
/// before it sizes a buffer.
pub const MAX_RUNTIME_STRUCT: u64 = 1 << 20;
/// Most size classes believed (the runtime has 68).
pub const MAX_SIZE_CLASSES: u64 = 256;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{what}: {cause}")]
    Memory {
        what: &'static str,
        cause: MemoryError,
    },
    #[error("implausible {what}: {value}")]
    Implausible { what: &'static str, value: u64 },
    #[error("implausible {what}: {value} (at most {limit})")]
    OverLimit {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("{what} at {address:#x} plus offset {offset} leaves the address space")]
    BadPointer {
        what: &'static str,
        address: u64,
        offset: u64,
    },
    #[error("runtime.allm loops: m at {address:#x} reached twice")]
    Loop { address: u64 },
}

/// `value` if it is at most `limit`, else an error naming both.
pub(crate) fn at_most(what: &'static str, value: u64, limit: u64) -> Result<u64, SnapshotError> {
    if value > limit {
        return Err(SnapshotError::OverLimit { what, value, limit });
    }
    Ok(value)
}

/// `address + offset`, refusing to wrap.
fn offset_from(what: &'static str, address: u64, offset: u64) -> Result<u64, SnapshotError> {
    address
        .checked_add(offset)
        .ok_or(SnapshotError::BadPointer {
            what,
            address,
            offset,
        })
}

impl SnapshotError {
    /// True when the process disappeared (rather than a bad read).
    pub fn process_gone(&self) -> bool {
        matches!(
            self,
            SnapshotError::Memory {
                cause: MemoryError::Gone { .. },
                ..
            }
        )
    }
}

/// Cumulative allocation counters (runtime.memstats.heapStats, summed over
/// its three generations as the runtime's unsafeRead does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocCounters {
    pub tiny_objects: u64,
    pub large_bytes: u64,
    pub large_objects: u64,
    /// Objects allocated per size class (index = size class).
    pub small_objects: Vec<u64>,
}

/// What was allocated between two readings: the one place per-class deltas
/// and rates are computed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocDelta {
    /// Objects per size class (index = size class; class 0 unused).
    pub class_objects: Vec<u64>,
    /// Bytes per size class (objects × class size).
    pub class_bytes: Vec<u64>,
    pub large_objects: u64,
    pub large_bytes: u64,
    pub tiny_objects: u64,
}

impl AllocDelta {
    /// Objects and bytes as /gc/heap/allocs counts them (tiny excluded).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.class_objects.iter().sum::<u64>() + self.large_objects,
            self.class_bytes.iter().sum::<u64>() + self.large_bytes,
        )
    }

    /// `value` per second over `seconds` (0 for an empty window).
    pub fn per_s(value: u64, seconds: f64) -> f64 {
        if seconds > 0.0 {
            value as f64 / seconds
        } else {
            0.0
        }
    }
}

impl AllocCounters {
    /// The allocation since an `earlier` reading (counters wrap as the
    /// runtime's do).
    pub fn since(&self, earlier: &AllocCounters, class_sizes: &[u64]) -> AllocDelta {
        let class_objects: Vec<u64> = self
            .small_objects
            .iter()
            .zip(&earlier.small_objects)
            .map(|(end, start)| end.wrapping_sub(*start))
            .collect();
        let class_bytes = class_objects
            .iter()
            .enumerate()
            .map(|(class, n)| n.wrapping_mul(class_sizes.get(class).copied().unwrap_or(0)))
            .collect();
        AllocDelta {
            class_objects,
            class_bytes,
            large_objects: self.large_objects.wrapping_sub(earlier.large_objects),
            large_bytes: self.large_bytes.wrapping_sub(earlier.large_bytes),
            tiny_objects: self.tiny_objects.wrapping_sub(earlier.tiny_objects),
        }
    }

    /// Objects and bytes as /gc/heap/allocs:objects and :bytes count them
    /// (bytes rounded up to the size class; tiny objects excluded).
    pub fn totals(&self, class_sizes: &[u64]) -> (u64, u64) {
        let mut objects = self.large_objects;
        let mut bytes = self.large_bytes;
        for (class, &count) in self.small_objects.iter().enumerate() {
            objects = objects.wrapping_add(count);
            bytes = bytes
                .wrapping_add(count.wrapping_mul(class_sizes.get(class).copied().unwrap_or(0)));
        }
        (objects, bytes)
    }
}

#[derive(Clone, Debug)]
pub struct RuntimeSnapshot {
    pub gc_cycles: u32,
    pub alloc: AllocCounters,
    /// GOGC; negative when off.
    pub gc_percent: i32,
    pub memory_limit: Option<i64>,
    pub heap_live: u64,
    pub heap_marked: u64,
    pub heap_goal: Option<u64>,
    /// Heap bytes freed by the sweeper so far (gcController.totalFree), as
    /// /gc/heap/frees:bytes counts them.
    pub heap_frees_bytes: Option<u64>,
    /// True when GOMEMLIMIT, not GOGC, set the current goal.
    pub goal_from_memory_limit: bool,
    /// Cumulative CPU ns, as /cpu/classes/gc/mark/assist and gc/total.
    pub gc_assist_cpu_ns: Option<i64>,
    pub gc_total_cpu_ns: Option<i64>,
    pub goroutines_created: u64,
    /// What runtime.NumGoroutine reports (system goroutines excluded).
    pub goroutines_user: i64,
    /// Including system goroutines (what /sched/goroutines counts in 1.26+).
    pub goroutines_all: i64,
    pub gomaxprocs: i32,
    pub ncpu: Option<i32>,
    pub cgo_calls: u64,
    pub sched_latency: Option<TimeHistogram>,
    pub gc_pauses: Option<TimeHistogram>,
    pub sched_trace: SchedTrace,
}

/// What GODEBUG=schedtrace prints, read at one instant.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct SchedTrace {
    pub gomaxprocs: i32,
    pub idleprocs: i32,
    /// Ms the runtime created and has not freed (schedtrace's threads).
    pub threads: i64,
    pub spinningthreads: i32,
    pub needspinning: Option<u32>,
    pub idlethreads: i32,
    /// Global run queue length.
    pub runqueue: i32,
    /// Each P's local run queue length.
    pub local_runqueues: Vec<u32>,
}

struct Reader<'a, M: TargetMemory> {
    memory: &'a M,
    bias: u64,
}

impl<M: TargetMemory> Reader<'_, M> {
    fn bytes(
        &self,
        what: &'static str,
        link_address: u64,
        len: u64,
    ) -> Result<Vec<u8>, SnapshotError> {
        let len = at_most(what, len, MAX_RUNTIME_STRUCT)?;
        self.memory
            .read_vec(offset_from(what, link_address, self.bias)?, len as usize)
            .map_err(|cause| SnapshotError::Memory { what, cause })
    }

    /// The word at `offset` inside the structure at run-time `address`.
    fn field_u64(
        &self,
        what: &'static str,
        address: u64,
        offset: u64,
    ) -> Result<u64, SnapshotError> {
        self.u64_at(what, offset_from(what, address, offset)?)
    }

    fn field_u32(
        &self,
        what: &'static str,
        address: u64,
        offset: u64,
    ) -> Result<u32, SnapshotError> {
        self.u32_at(what, offset_from(what, address, offset)?)
    }

    fn u64_at(&self, what: &'static str, address: u64) -> Result<u64, SnapshotError> {
        self.memory
            .read_u64(address)
            .map_err(|cause| SnapshotError::Memory { what, cause })
    }

    fn u32_at(&self, what: &'static str, address: u64) -> Result<u32, SnapshotError> {
        self.memory
            .read_u32(address)
            .map_err(|cause| SnapshotError::Memory { what, cause })
    }

    fn global_u64(&self, what: &'static str, link_address: u64) -> Result<u64, SnapshotError> {
        self.field_u64(what, link_address, self.bias)
    }

    fn global_u32(&self, what: &'static str, link_address: u64) -> Result<u32, SnapshotError> {
        self.field_u32(what, link_address, self.bias)
    }

    /// A histogram inside the global at link-time address `container`.
    fn histogram(
        &self,
        what: &'static str,
        container: u64,
        h: &TimeHistogramLayout,
    ) -> Result<TimeHistogram, SnapshotError> {
        let len = h.overflow.max(h.underflow).saturating_add(8);
        let raw = self.bytes(what, offset_from(what, container, h.offset)?, len)?;
        let buckets = at_most(what, h.buckets, MAX_RUNTIME_STRUCT / 8)?;
        let counts = (0..buckets)
            .map(|i| le_u64(&raw, h.counts + i * 8))
            .collect();
        Ok(TimeHistogram::new(
            le_u64(&raw, h.underflow),
            counts,
            le_u64(&raw, h.overflow),
        ))
    }
}

pub(crate) fn le_u64(raw: &[u8], offset: u64) -> u64 {
    usize::try_from(offset)
        .ok()
        .and_then(|o| raw.get(o..o.checked_add(8)?))
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

pub(crate) fn le_u32(raw: &[u8], offset: u64) -> u32 {
    usize::try_from(offset)
        .ok()
        .and_then(|o| raw.get(o..o.checked_add(4)?))
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
}

/// Size classes' object sizes (runtime.class_to_size), read once.
pub fn read_class_sizes(
    memory: &impl TargetMemory,
    layout: &RuntimeLayout,
    bias: u64,
) -> Result<Vec<u64>, SnapshotError> {
    let reader = Reader { memory, bias };
    let classes = at_most(
        "number of size classes",
        layout.offsets.heap.size_classes,
        MAX_SIZE_CLASSES,
    )?;
    let raw = reader.bytes(
        "runtime.class_to_size",
        layout.globals.required(RequiredGlobal::ClassToSize),
        classes * 2,
    )?;
    let sizes: Vec<u64> = raw
        .chunks_exact(2)
        .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    // A wrong address shows at once: the table is 0, 8, 16, ... increasing.
    let plausible = sizes.len() > 2
        && sizes[0] == 0
        && sizes[1] == 8
        && sizes.windows(2).skip(1).all(|w| w[0] < w[1]);
    if !plausible {
        return Err(SnapshotError::Implausible {
            what: "size class table (runtime.class_to_size)",
            value: sizes.get(1).copied().unwrap_or(0),
        });
    }
    Ok(sizes)
}

impl RuntimeSnapshot {
    pub fn read(
        memory: &impl TargetMemory,
        layout: &RuntimeLayout,
        bias: u64,
    ) -> Result<Self, SnapshotError> {
        let r = Reader { memory, bias };
        let g = &layout.globals;

        // memstats: numgc and the three heapStats generations in one read.
        let h = &layout.offsets.heap;
        let mstats = r.bytes(
            "runtime.memstats",
            g.required(RequiredGlobal::Memstats),
            h.mstats_size,
        )?;
        let gc_cycles = le_u32(&mstats, h.numgc);
        let classes = at_most("number of size classes", h.size_classes, MAX_SIZE_CLASSES)?;
        let mut alloc = AllocCounters {
            small_objects: vec![0; classes as usize],
            ..Default::default()
        };
        // Offsets past the structure read as 0 (the size is capped above,
        // so these sums cannot wrap for a layout within the caps).
        let at = |base: u64, field: u64| le_u64(&mstats, base.saturating_add(field));
        for generation in 0..3u64 {
            let base = h
                .stats
                .saturating_add(generation.saturating_mul(h.delta_size));
            alloc.tiny_objects = alloc
                .tiny_objects
                .wrapping_add(at(base, h.tiny_alloc_count));
            alloc.large_bytes = alloc.large_bytes.wrapping_add(at(base, h.large_alloc));
            alloc.large_objects = alloc
                .large_objects
                .wrapping_add(at(base, h.large_alloc_count));
            for (class, count) in alloc.small_objects.iter_mut().enumerate() {
                let field = h.small_alloc_count.saturating_add(class as u64 * 8);
                *count = count.wrapping_add(at(base, field));
            }
        }

        // The GC pacer.
        let c = &layout.offsets.gc;
        let ctl = r.bytes(
            "runtime.gcController",
            g.required(RequiredGlobal::GcController),
            c.controller_size,
        )?;
        let field = |offset: Option<u64>| offset.map(|o| le_u64(&ctl, o));
        let gc_percent = le_u32(&ctl, c.gc_percent) as i32;
        let memory_limit = field(c.memory_limit).map(|v| v as i64);
        let heap_marked = le_u64(&ctl, c.heap_marked);
        let (heap_goal, goal_from_memory_limit) = heap_goal(&ctl, c, heap_marked);
        let in_mark_phase = match g.optional(OptionalGlobal::Gcphase) {
            Some(address) => r.global_u32("runtime.gcphase", address)? == GC_PHASE_MARK,
            None => false,
        };
        let in_progress = |offset: u64| {
            if in_mark_phase {
                le_u64(&ctl, offset) as i64
            } else {
                0
            }
        };
        let (gc_assist_cpu_ns, gc_total_cpu_ns) = match (
            g.optional(OptionalGlobal::Work),
            c.cpu_stats_assist,
            c.cpu_stats_total,
        ) {
            (Some(work), Some(assist), Some(total)) => {
                let what = "runtime.work.cpuStats";
                let assist_done = r.global_u64(what, offset_from(what, work, assist)?)? as i64;
                let total_done = r.global_u64(what, offset_from(what, work, total)?)? as i64;
                let marking = in_progress(c.assist_time)
                    .wrapping_add(in_progress(c.dedicated_mark_time))
                    .wrapping_add(in_progress(c.fractional_mark_time))
                    .wrapping_add(in_progress(c.idle_mark_time));
                (
                    Some(assist_done.wrapping_add(in_progress(c.assist_time))),
                    Some(total_done.wrapping_add(marking)),
                )
            }
            _ => (None, None),
        };

        // The scheduler.
        let s = &layout.offsets.sched;
        let sched = r.bytes("runtime.sched", g.required(RequiredGlobal::Sched), s.size)?;
        let gomaxprocs =
            r.global_u32("runtime.gomaxprocs", g.required(RequiredGlobal::Gomaxprocs))? as i32;
        let ncpu = match g.optional(OptionalGlobal::Ncpu) {
            Some(address) => Some(r.global_u32("runtime.ncpu", address)? as i32),
            None => None,
        };
        let allp = r.bytes("runtime.allp", g.required(RequiredGlobal::Allp), 16)?;
        let (allp_ptr, allp_len) = (le_u64(&allp, 0), le_u64(&allp, 8));
        if gomaxprocs < 1 {
            return Err(SnapshotError::Implausible {
                what: "runtime.gomaxprocs",
                value: gomaxprocs as u64,
            });
        }
        at_most("runtime.gomaxprocs", gomaxprocs as u64, MAX_PS)?;
        at_most("len(runtime.allp)", allp_len, MAX_PS)?;
        let mut unused_goids = 0u64;
        let mut p_created = 0u64;
        let mut p_free = 0i64;
        let mut local_runqueues = Vec::with_capacity(allp_len as usize);
        // The allp array in one read (at most MAX_PS pointers).
        let allp_array = if allp_len == 0 {
            Vec::new()
        } else {
            r.memory
                .read_vec(allp_ptr, allp_len as usize * 8)
                .map_err(|cause| SnapshotError::Memory {
                    what: "runtime.allp[:]",
                    cause,
                })?
        };
        let o = &layout.offsets.p;
        for i in 0..allp_len {
            let p = le_u64(&allp_array, i * 8);
            if p == 0 {
                continue;
            }
            let head = r.field_u32("p.runqhead", p, o.runqhead)?;
            let tail = r.field_u32("p.runqtail", p, o.runqtail)?;
            local_runqueues.push(tail.wrapping_sub(head));
            if let (Some(cache), Some(end)) = (o.goidcache, o.goidcacheend) {
                let cache = r.field_u64("p.goidcache", p, cache)?;
                let end = r.field_u64("p.goidcacheend", p, end)?;
                unused_goids = unused_goids.wrapping_add(end.saturating_sub(cache));
            }
            if let Some(created) = o.goroutines_created {
                p_created =
                    p_created.wrapping_add(r.field_u64("p.goroutinesCreated", p, created)?);
            }
            p_free += i64::from(r.field_u32("p.gFree", p, o.gfree_count)? as i32);
        }
        let goroutines_created = match s.goroutines_created {
            // Go 1.26+: the runtime counts creations itself.
            Some(offset) => le_u64(&sched, offset).wrapping_add(p_created),
            // Before: goids handed out, minus those still cached by Ps.
            None => le_u64(&sched, s.goidgen).saturating_sub(unused_goids),
        };
        let allglen = r.global_u64("runtime.allglen", g.required(RequiredGlobal::Allglen))? as i64;
        let sched_free: i64 = s
            .gfree_counts
            .iter()
            .map(|&o| i64::from(le_u32(&sched, o) as i32))
            .sum();
        let ngsys = i64::from(le_u32(&sched, s.ngsys) as i32);
        let goroutines_all = allglen
            .saturating_sub(sched_free)
            .saturating_sub(p_free)
            .max(1);
        let goroutines_user = goroutines_all.saturating_sub(ngsys).max(1);

        // cgo calls: runtime.ncgocall plus every M's own count.
        let mut cgo_calls =
            r.global_u64("runtime.ncgocall", g.required(RequiredGlobal::Ncgocall))?;
        let mut m = r.global_u64("runtime.allm", g.required(RequiredGlobal::Allm))?;
        let mut visited = HashSet::new();
        while m != 0 {
            if visited.len() >= MAX_MS {
                return Err(SnapshotError::OverLimit {
                    what: "length of runtime.allm",
                    value: visited.len() as u64 + 1,
                    limit: MAX_MS as u64,
                });
            }
            if !visited.insert(m) {
                return Err(SnapshotError::Loop { address: m });
            }
            cgo_calls =
                cgo_calls.wrapping_add(r.field_u64("m.ncgocall", m, layout.offsets.m.ncgocall)?);
            m = r.field_u64("m.alllink", m, layout.offsets.m.alllink)?;
        }

        let sched_latency = match &s.time_to_run {
            Some(h) => Some(r.histogram(
                "runtime.sched.timeToRun",
                g.required(RequiredGlobal::Sched),
                h,
            )?),
            None => None,
        };
        let gc_pauses = match (&s.stw_total_gc, &h.pause_hist_in_mstats) {
            (Some(hist), _) => Some(r.histogram(
                "sched.stwTotalTimeGC",
                g.required(RequiredGlobal::Sched),
                hist,
            )?),
            (None, Some(hist)) => Some(r.histogram(
                "memstats.gcPauseDist",
                g.required(RequiredGlobal::Memstats),
                hist,
            )?),
            (None, None) => None,
        };

        let t = &s.trace;
        let i32_at = |o: u64| le_u32(&sched, o) as i32;
        let sched_trace = SchedTrace {
            gomaxprocs,
            idleprocs: i32_at(t.npidle),
            threads: (le_u64(&sched, t.mnext) as i64)
                .wrapping_sub(le_u64(&sched, t.nmfreed) as i64),
            spinningthreads: i32_at(t.nmspinning),
            needspinning: t.needspinning.map(|o| le_u32(&sched, o)),
            idlethreads: i32_at(t.nmidle),
            runqueue: i32_at(t.runq_size),
            local_runqueues,
        };
        Ok(Self {
            sched_trace,
            gc_cycles,
            alloc,
            gc_percent,
            memory_limit,
            heap_live: le_u64(&ctl, c.heap_live),
            heap_marked,
            heap_goal,
            heap_frees_bytes: field(c.total_free),
            goal_from_memory_limit,
            gc_assist_cpu_ns,
            gc_total_cpu_ns,
            goroutines_created,
            goroutines_user,
            goroutines_all,
            gomaxprocs,
            ncpu,
            cgo_calls,
            sched_latency,
            gc_pauses,
        })
    }
}

/// runtime.gcphase value during concurrent mark.
const GC_PHASE_MARK: u32 = 1;
const MIN_RUNWAY: u64 = 64 << 10;
const MEMORY_LIMIT_HEADROOM_PERCENT: u64 = 3;
const MEMORY_LIMIT_MIN_HEADROOM: u64 = 1 << 20;

/// The heap goal as gcControllerState.heapGoalInternal computes it (what
/// /gc/heap/goal:bytes reports), and whether the memory limit set it.
pub(crate) fn heap_goal(
    ctl: &[u8],
    c: &super::layout::GcLayout,
    heap_marked: u64,
) -> (Option<u64>, bool) {
    let get = |o: Option<u64>| o.map(|o| le_u64(ctl, o));
    let (Some(mut goal), Some(sweep_trigger), Some(triggered)) = (
        get(c.gc_percent_heap_goal),
        get(c.sweep_dist_min_trigger),
        get(c.triggered),
    ) else {
        return (None, false);
    };
    if let Some(limit_goal) = memory_limit_heap_goal(ctl, c, heap_marked)
        && limit_goal < goal
    {
        return (Some(limit_goal), true);
    }
    goal = goal.max(sweep_trigger);
    if triggered != u64::MAX && goal < triggered.wrapping_add(MIN_RUNWAY) {
        goal = triggered.saturating_add(MIN_RUNWAY);
    }
    (Some(goal), false)
}

fn memory_limit_heap_goal(
    ctl: &[u8],
    c: &super::layout::GcLayout,
    heap_marked: u64,
) -> Option<u64> {
    let get = |o: Option<u64>| o.map(|o| le_u64(ctl, o));
    let limit = get(c.memory_limit)?;
    let heap_free = get(c.heap_free)?;
    let heap_alloc = get(c.total_alloc)?.wrapping_sub(get(c.total_free)?);
    let mapped_ready = get(c.mapped_ready)?;
    let non_heap = mapped_ready
        .saturating_sub(heap_free)
        .saturating_sub(heap_alloc);
    let overage = mapped_ready.saturating_sub(limit);
    let over = non_heap.saturating_add(overage);
    if over >= limit {
        return Some(heap_marked);
    }
    let mut goal = limit - over;
    let headroom = (goal / 100 * MEMORY_LIMIT_HEADROOM_PERCENT).max(MEMORY_LIMIT_MIN_HEADROOM);
    goal = if goal < headroom || goal - headroom < headroom {
        headroom
    } else {
        goal - headroom
    };
    Some(goal.max(heap_marked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{RuntimeShape, image_layout, image_memory, runtime_image};
    use crate::runtime::table;

    fn read(
        shape: RuntimeShape,
        edit: impl Fn(&mut super::super::RuntimeOffsets),
    ) -> Result<RuntimeSnapshot, SnapshotError> {
        let mut offsets = table::table()["1.22"].offsets.clone();
        let memory = image_memory(&runtime_image(&offsets, shape));
        edit(&mut offsets);
        RuntimeSnapshot::read(&memory, &image_layout(offsets), 0)
    }

    #[test]
    fn a_synthetic_runtime_reads() {
        let s = read(RuntimeShape::Healthy, |_| {}).unwrap();
        assert_eq!(s.gomaxprocs, 2);
        assert_eq!(s.gc_cycles, 7);
        assert_eq!(s.gc_percent, 100);
        // runtime.ncgocall plus the three Ms' own counts.
        assert_eq!(s.cgo_calls, 3 + 1 + 2 + 3);
        assert_eq!(s.sched_trace.local_runqueues, vec![3, 0]);
        assert_eq!(s.goroutines_all, 12 - 2);
    }

    #[test]
    fn a_looping_allm_list_is_an_error_naming_the_m() {
        let err = read(RuntimeShape::AllmLoop, |_| {}).unwrap_err();
        assert!(matches!(err, SnapshotError::Loop { .. }), "{err}");
        assert!(err.to_string().contains("0x1018000"), "{err}");
    }

    #[test]
    fn an_implausible_allp_length_is_refused_before_it_sizes_a_read() {
        let err = read(RuntimeShape::AllpHuge, |_| {})
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "implausible len(runtime.allp): {} (at most {MAX_PS})",
                1u64 << 21
            )
        );
    }

    #[test]
    fn implausible_struct_sizes_and_class_counts_are_refused() {
        let err = read(RuntimeShape::Healthy, |o| o.heap.mstats_size = 1 << 40)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&(1u64 << 40).to_string()), "{err}");
        assert!(err.contains("runtime.memstats"), "{err}");
        let err = read(RuntimeShape::Healthy, |o| o.heap.size_classes = 1 << 36)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&(1u64 << 36).to_string()), "{err}");
        let err = read(RuntimeShape::Healthy, |o| o.m.alllink = u64::MAX)
            .unwrap_err()
            .to_string();
        assert!(err.contains("leaves the address space"), "{err}");
    }
}

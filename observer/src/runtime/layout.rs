//! Where the Go runtime keeps the figures goscope reads: global addresses
//! and struct field offsets, resolved once per binary from its DWARF and
//! symbol table. Names vary across Go versions; each field lists the paths
//! it has had, and a field the binary lacks is `None` (figure unavailable),
//! never a guessed offset.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::globals::{Globals, GlobalsSource};
use crate::binary::{
    GoBinary,
    dwarf::{DwarfError, DwarfTypes, Field},
};

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error(
        "{binary}: no DWARF/.symtab and goscope has no runtime table for {version}; rebuild without -ldflags=-s -w or use a supported Go release"
    )]
    NoTable { binary: String, version: String },
    #[error(
        "{binary}: no DWARF/.symtab, and the runtime table entry for {version} could not be verified (copied from {from}); --force-version uses it anyway"
    )]
    Unverified {
        binary: String,
        version: String,
        from: String,
    },
    #[error("{cause}")]
    Globals { cause: super::globals::GlobalsError },
    #[error("{binary}: {cause}; goscope needs DWARF to read runtime structures of this binary")]
    Dwarf { binary: String, cause: DwarfError },
    #[error("{binary}: runtime {what} not found; cannot read the runtime's counters safely")]
    Missing { binary: String, what: String },
    #[error("{binary}: {what} has an unexpected shape ({detail})")]
    Shape {
        binary: String,
        what: String,
        detail: String,
    },
    #[error("{binary}: implausible runtime layout: {what} is {value} (at most {limit})")]
    Implausible {
        binary: String,
        what: String,
        value: u64,
        limit: u64,
    },
}

/// Where the struct offsets came from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LayoutSource {
    Dwarf,
    /// The per-Go-version table generated from reference builds' DWARF.
    VersionTable,
}

/// A runtime time histogram (`runtime.timeHistogram`, Go 1.21+ layout):
/// `counts [160]uint64` then `underflow`, `overflow`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimeHistogramLayout {
    /// Offset of the histogram inside the global that holds it.
    pub offset: u64,
    pub counts: u64,
    pub buckets: u64,
    pub underflow: u64,
    pub overflow: u64,
}

/// Number of counting buckets of the Go 1.21+ time histogram
/// ((48 - 9 + 1) buckets × 4 sub-buckets).
pub const TIME_HISTOGRAM_BUCKETS: u64 = 160;

/// Everything the runtime reader needs: global addresses (link-time; add
/// the load bias) and offsets inside the structs they point to.
#[derive(Clone, Debug)]
pub struct RuntimeLayout {
    pub offsets_source: LayoutSource,
    pub globals_source: GlobalsSource,
    pub globals: Globals,
    pub offsets: RuntimeOffsets,
}

/// Struct offsets, sizes and array lengths of the runtime structures read;
/// what the per-version table stores.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeOffsets {
    pub heap: HeapStatsLayout,
    pub gc: GcLayout,
    pub sched: SchedLayout,
    pub p: PLayout,
    pub m: MLayout,
    pub cycle: CycleLayout,
    /// The memory-profile buckets (runtime/mprof.go); `None` when the
    /// binary's DWARF lacks them (and in table entries generated before
    /// goscope read them).
    #[serde(default)]
    pub mem_profile: Option<MemProfileLayout>,
    /// The runtime.g fields the goroutine table reader reads; `None` when
    /// the binary's DWARF lacks one (and in table entries generated before
    /// goscope read them).
    #[serde(default)]
    pub goroutine: Option<GoroutineLayout>,
}

/// Fields of runtime.g (runtime/runtime2.go) read from every entry of the
/// goroutine table (`runtime.allgs`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GoroutineLayout {
    /// unsafe.Sizeof(g{}).
    pub g_size: u64,
    /// uint64 (int64 before Go 1.21).
    pub goid: u64,
    /// atomic.Uint32: the status, `_Gscan` (0x1000) ORed in during scans.
    pub atomicstatus: u64,
    /// runtime.waitReason (uint8): why a waiting goroutine waits.
    pub waitreason: u64,
    /// PC of the `go` statement that created the goroutine (the return
    /// address of its call to runtime.newproc).
    pub gopc: u64,
    /// PC of the goroutine's start function.
    pub startpc: u64,
    /// The creating goroutine's goid (Go 1.21+).
    pub parent_goid: Option<u64>,
    /// int64 nanotime when the goroutine started waiting (set in a few
    /// places only).
    pub waitsince: Option<u64>,
    /// atomic.Bool (Go 1.25+): a cleanup goroutine running user code.
    pub running_cleanups: Option<u64>,
    /// len(runtime.waitReasonStrings), from its symbol's size (the table
    /// entry keeps it for binaries without .symtab).
    pub wait_reasons: Option<u64>,
    /// Where the goroutine's stack and saved registers are (goroutine
    /// dumps); `None` when the DWARF lacks one of them (and in table
    /// entries generated before goscope read them).
    #[serde(default)]
    pub stack: Option<GStackLayout>,
}

/// The runtime.g fields a stack walk starts from (runtime2.go: `stack`,
/// `sched` gobuf, the syscall save area, `m`) and runtime.m.procid.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GStackLayout {
    /// g.stack.lo / g.stack.hi: the stack is [lo, hi).
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// g.sched.{pc,sp,bp}: where a descheduled goroutine stopped.
    pub sched_pc: u64,
    pub sched_sp: u64,
    pub sched_bp: u64,
    /// g.syscallsp / g.syscallpc: set while in a syscall or in C.
    pub syscall_sp: u64,
    pub syscall_pc: u64,
    /// g.syscallbp (Go 1.23+).
    pub syscall_bp: Option<u64>,
    /// g.m: the M (thread) running the goroutine.
    pub m: u64,
    /// runtime.m.procid: the thread's id.
    pub m_procid: u64,
    /// g.labels: the pprof labels (an unsafe.Pointer).
    pub labels: Option<u64>,
}

/// runtime.bucket (a header followed by `nstk` PCs and a memRecord) and
/// runtime.memRecord{active memRecordCycle; future [3]memRecordCycle}.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemProfileLayout {
    /// Size of the bucket header (unsafe.Sizeof(bucket{})): the stack
    /// starts there.
    pub bucket_size: u64,
    pub allnext: u64,
    pub typ: u64,
    pub size: u64,
    pub nstk: u64,
    /// Size of runtime.memRecord.
    pub record_size: u64,
    pub active: u64,
    pub future: u64,
    /// Length of memRecord.future (3 in every version).
    pub future_cycles: u64,
    /// Size of runtime.memRecordCycle.
    pub cycle_size: u64,
    pub allocs: u64,
    pub frees: u64,
    /// memRecordCycle.alloc_bytes/free_bytes; absent from Go 1.27, where
    /// bytes are counts × bucket.size.
    pub alloc_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// mProfCycleHolder.value (atomic.Uint32: cycle << 1 | flushed).
    pub mprof_cycle_value: u64,
}

/// What gctrace prints of a finished cycle: runtime.work fields, the
/// pacer's per-cycle CPU counters and memstats.gc_cpu_fraction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CycleLayout {
    pub work_size: u64,
    pub t_sweep_term: u64,
    pub t_mark: u64,
    pub t_mark_term: u64,
    pub t_end: u64,
    pub heap0: u64,
    pub heap1: u64,
    pub heap2: u64,
    pub stwprocs: u64,
    pub maxprocs: u64,
    pub user_forced: u64,
    pub last_heap_goal: u64,
    pub gc_cpu_fraction: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeapStatsLayout {
    pub numgc: u64,
    /// Offset of consistentHeapStats.stats inside mstats, and the size of
    /// one heapStatsDelta (three of them).
    pub stats: u64,
    pub delta_size: u64,
    pub tiny_alloc_count: u64,
    pub large_alloc: u64,
    pub large_alloc_count: u64,
    pub small_alloc_count: u64,
    pub size_classes: u64,
    /// Size of runtime.mstats (read whole, in one call).
    pub mstats_size: u64,
    /// Go 1.21: GC pauses live in memstats.gcPauseDist.
    pub pause_hist_in_mstats: Option<TimeHistogramLayout>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GcLayout {
    pub controller_size: u64,
    pub gc_percent: u64,
    pub memory_limit: Option<u64>,
    pub heap_marked: u64,
    pub heap_live: u64,
    pub gc_percent_heap_goal: Option<u64>,
    pub sweep_dist_min_trigger: Option<u64>,
    pub triggered: Option<u64>,
    pub heap_free: Option<u64>,
    pub total_alloc: Option<u64>,
    pub total_free: Option<u64>,
    pub mapped_ready: Option<u64>,
    pub assist_time: u64,
    pub dedicated_mark_time: u64,
    pub fractional_mark_time: u64,
    pub idle_mark_time: u64,
    /// work.cpuStats.{gcAssistTime,gcTotalTime} (Go 1.20+).
    pub cpu_stats_assist: Option<u64>,
    pub cpu_stats_total: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SchedLayout {
    pub size: u64,
    pub goidgen: u64,
    pub goroutines_created: Option<u64>,
    pub ngsys: u64,
    /// int32 counts of free goroutines held by sched (summed).
    pub gfree_counts: Vec<u64>,
    pub time_to_run: Option<TimeHistogramLayout>,
    /// Go 1.22+: sched.stwTotalTimeGC backs /gc/pauses:seconds.
    pub stw_total_gc: Option<TimeHistogramLayout>,
    /// What schedtrace prints.
    pub trace: SchedTraceLayout,
}

/// sched fields behind GODEBUG=schedtrace's line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SchedTraceLayout {
    pub npidle: u64,
    pub nmspinning: u64,
    pub needspinning: Option<u64>,
    pub nmidle: u64,
    pub mnext: u64,
    pub nmfreed: u64,
    /// sched.runqsize (≤ 1.24) or sched.runq.size (1.25+), int32.
    pub runq_size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PLayout {
    pub runqhead: u64,
    pub runqtail: u64,
    pub goidcache: Option<u64>,
    pub goidcacheend: Option<u64>,
    pub goroutines_created: Option<u64>,
    pub gfree_count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MLayout {
    pub alllink: u64,
    pub ncgocall: u64,
}

struct Resolver<'a> {
    binary: &'a GoBinary,
    types: DwarfTypes,
}

impl Resolver<'_> {
    fn name(&self) -> String {
        self.binary.path.display().to_string()
    }

    fn missing(&self, what: impl Into<String>) -> LayoutError {
        LayoutError::Missing {
            binary: self.name(),
            what: what.into(),
        }
    }

    /// The first of `paths` that exists in `outer`.
    fn field_any(&self, outer: &str, paths: &[&str]) -> Option<Field> {
        paths.iter().find_map(|p| self.types.field(outer, p))
    }

    fn offset(&self, outer: &str, paths: &[&str]) -> Result<u64, LayoutError> {
        self.field_any(outer, paths)
            .map(|f| f.offset)
            .ok_or_else(|| self.missing(format!("{outer}.{}", paths.join("|"))))
    }

    fn optional_offset(&self, outer: &str, paths: &[&str]) -> Option<u64> {
        self.field_any(outer, paths).map(|f| f.offset)
    }

    fn size(&self, name: &str) -> Result<u64, LayoutError> {
        self.types
            .struct_size(name)
            .ok_or_else(|| self.missing(format!("type {name}")))
    }

    /// A timeHistogram field at `base + field offset`; `None` when absent or
    /// not of the Go 1.21+ shape.
    fn time_histogram(&self, outer: &str, path: &str) -> Option<TimeHistogramLayout> {
        let field = self.types.field(outer, path)?;
        let counts = self.types.field("runtime.timeHistogram", "counts")?;
        let buckets = self.types.array_len(counts)?;
        if buckets != TIME_HISTOGRAM_BUCKETS {
            return None;
        }
        Some(TimeHistogramLayout {
            offset: field.offset,
            counts: counts.offset,
            buckets,
            underflow: self
                .types
                .field("runtime.timeHistogram", "underflow")?
                .offset,
            overflow: self
                .types
                .field("runtime.timeHistogram", "overflow")?
                .offset,
        })
    }
}

impl Resolver<'_> {
    /// The runtime.g fields the goroutine table reader needs, `None` unless
    /// every required one is in the DWARF.
    fn goroutine(&self) -> Option<GoroutineLayout> {
        const G: &str = "runtime.g";
        /// Size of a Go string header {ptr, len}.
        const GO_STRING_SIZE: u64 = 16;
        let at = |path: &str| self.types.field(G, path).map(|f| f.offset);
        Some(GoroutineLayout {
            g_size: self.types.struct_size(G)?,
            goid: at("goid")?,
            atomicstatus: at("atomicstatus")?,
            waitreason: at("waitreason")?,
            gopc: at("gopc")?,
            startpc: at("startpc")?,
            parent_goid: at("parentGoid"),
            waitsince: at("waitsince"),
            running_cleanups: at("runningCleanups"),
            wait_reasons: self
                .binary
                .globals
                .get("runtime.waitReasonStrings")
                .map(|s| s.size / GO_STRING_SIZE),
            stack: self.goroutine_stack(),
        })
    }

    /// The g and m fields a stack walk needs, `None` unless all are there.
    fn goroutine_stack(&self) -> Option<GStackLayout> {
        let g = |path: &str| self.types.field("runtime.g", path).map(|f| f.offset);
        Some(GStackLayout {
            stack_lo: g("stack.lo")?,
            stack_hi: g("stack.hi")?,
            sched_pc: g("sched.pc")?,
            sched_sp: g("sched.sp")?,
            sched_bp: g("sched.bp")?,
            syscall_sp: g("syscallsp")?,
            syscall_pc: g("syscallpc")?,
            syscall_bp: g("syscallbp"),
            m: g("m")?,
            m_procid: self.types.field("runtime.m", "procid")?.offset,
            labels: g("labels"),
        })
    }

    /// The memory-profile bucket layout, `None` unless every part of it is
    /// in the DWARF with the expected shape.
    fn mem_profile(&self) -> Option<MemProfileLayout> {
        const BUCKET: &str = "runtime.bucket";
        const RECORD: &str = "runtime.memRecord";
        const CYCLE: &str = "runtime.memRecordCycle";
        let t = &self.types;
        let at = |outer: &str, path: &str| t.field(outer, path).map(|f| f.offset);
        let future = t.field(RECORD, "future")?;
        let cycle_size = t.struct_size(CYCLE)?;
        if t.array_element_size(future) != Some(cycle_size) {
            return None;
        }
        Some(MemProfileLayout {
            bucket_size: t.struct_size(BUCKET)?,
            allnext: at(BUCKET, "allnext")?,
            typ: at(BUCKET, "typ")?,
            size: at(BUCKET, "size")?,
            nstk: at(BUCKET, "nstk")?,
            record_size: t.struct_size(RECORD)?,
            active: at(RECORD, "active")?,
            future: future.offset,
            future_cycles: t.array_len(future)?,
            cycle_size,
            allocs: at(CYCLE, "allocs")?,
            frees: at(CYCLE, "frees")?,
            alloc_bytes: at(CYCLE, "alloc_bytes"),
            free_bytes: at(CYCLE, "free_bytes"),
            mprof_cycle_value: at("runtime.mProfCycleHolder", "value")?,
        })
    }
}

impl RuntimeLayout {
    /// Offsets from DWARF, else from the version table; globals from
    /// .symtab, else from the table's reference sites. `allow_unverified`
    /// accepts a table entry that could not be verified (--force-version).
    pub fn resolve(binary: &GoBinary, allow_unverified: bool) -> Result<Self, LayoutError> {
        let name = || binary.path.display().to_string();
        let version = binary.go_version();
        let entry = super::table::entry(version);
        let usable_entry = || match entry {
            Some(e) if e.verified || allow_unverified => Ok(e),
            Some(e) => Err(LayoutError::Unverified {
                binary: name(),
                version: binary.build.go_version_string.clone(),
                from: e.generated_from.clone(),
            }),
            None => Err(LayoutError::NoTable {
                binary: name(),
                version: binary.build.go_version_string.clone(),
            }),
        };
        let (offsets, offsets_source) = if binary.has_dwarf {
            (RuntimeOffsets::from_dwarf(binary)?, LayoutSource::Dwarf)
        } else {
            (usable_entry()?.offsets.clone(), LayoutSource::VersionTable)
        };
        let (globals, globals_source) = if binary.globals.is_empty() {
            let sites = &usable_entry()?.globals;
            (
                Globals::from_sites(binary, sites)
                    .map_err(|cause| LayoutError::Globals { cause })?,
                GlobalsSource::CodeReferences,
            )
        } else {
            (
                Globals::from_symtab(binary).map_err(|cause| LayoutError::Globals { cause })?,
                GlobalsSource::Symtab,
            )
        };
        Ok(Self {
            offsets_source,
            globals_source,
            globals,
            offsets,
        })
    }
}

impl RuntimeOffsets {
    /// Resolves the offsets from the binary's DWARF.
    pub fn from_dwarf(binary: &GoBinary) -> Result<Self, LayoutError> {
        let name = binary.path.display().to_string();
        let object = binary.object().map_err(|e| LayoutError::Dwarf {
            binary: name.clone(),
            cause: DwarfError::Section {
                section: "ELF".into(),
                reason: e.to_string(),
            },
        })?;
        let types = DwarfTypes::load(&object).map_err(|cause| LayoutError::Dwarf {
            binary: name.clone(),
            cause,
        })?;
        let r = Resolver { binary, types };

        let heap_stats = r.offset("runtime.mstats", &["heapStats"])?;
        let stats = r
            .types
            .field("runtime.consistentHeapStats", "stats")
            .ok_or_else(|| r.missing("runtime.consistentHeapStats.stats"))?;
        let stats_count = r.types.array_len(stats);
        if stats_count != Some(3) {
            return Err(LayoutError::Shape {
                binary: name,
                what: "consistentHeapStats.stats".into(),
                detail: format!("{stats_count:?} generations, expected 3"),
            });
        }
        let small = r
            .types
            .field("runtime.heapStatsDelta", "smallAllocCount")
            .ok_or_else(|| r.missing("runtime.heapStatsDelta.smallAllocCount"))?;
        let size_classes = r
            .types
            .array_len(small)
            .ok_or_else(|| r.missing("length of heapStatsDelta.smallAllocCount"))?;
        let heap = HeapStatsLayout {
            numgc: r.offset("runtime.mstats", &["numgc"])?,
            stats: heap_stats + stats.offset,
            delta_size: r.size("runtime.heapStatsDelta")?,
            tiny_alloc_count: r.offset("runtime.heapStatsDelta", &["tinyAllocCount"])?,
            large_alloc: r.offset("runtime.heapStatsDelta", &["largeAlloc"])?,
            large_alloc_count: r.offset("runtime.heapStatsDelta", &["largeAllocCount"])?,
            small_alloc_count: small.offset,
            size_classes,
            mstats_size: r.size("runtime.mstats")?,
            pause_hist_in_mstats: r.time_histogram("runtime.mstats", "gcPauseDist"),
        };

        const GC: &str = "runtime.gcControllerState";
        const WORK: &str = "runtime.workType";
        let gc = GcLayout {
            controller_size: r.size(GC)?,
            gc_percent: r.offset(GC, &["gcPercent"])?,
            memory_limit: r.optional_offset(GC, &["memoryLimit"]),
            heap_marked: r.offset(GC, &["heapMarked"])?,
            heap_live: r.offset(GC, &["heapLive"])?,
            gc_percent_heap_goal: r.optional_offset(GC, &["gcPercentHeapGoal"]),
            sweep_dist_min_trigger: r.optional_offset(GC, &["sweepDistMinTrigger"]),
            triggered: r.optional_offset(GC, &["triggered"]),
            heap_free: r.optional_offset(GC, &["heapFree"]),
            total_alloc: r.optional_offset(GC, &["totalAlloc"]),
            total_free: r.optional_offset(GC, &["totalFree"]),
            mapped_ready: r.optional_offset(GC, &["mappedReady"]),
            assist_time: r.offset(GC, &["assistTime"])?,
            dedicated_mark_time: r.offset(GC, &["dedicatedMarkTime"])?,
            fractional_mark_time: r.offset(GC, &["fractionalMarkTime"])?,
            idle_mark_time: r.offset(GC, &["idleMarkTime"])?,
            cpu_stats_assist: r
                .optional_offset(WORK, &["cpuStats.gcAssistTime", "cpuStats.GCAssistTime"]),
            cpu_stats_total: r
                .optional_offset(WORK, &["cpuStats.gcTotalTime", "cpuStats.GCTotalTime"]),
        };

        const SCHED: &str = "runtime.schedt";
        let gfree_counts = match r.optional_offset(SCHED, &["gFree.n"]) {
            Some(n) => vec![n],
            None => vec![
                r.offset(SCHED, &["gFree.stack.size"])?,
                r.offset(SCHED, &["gFree.noStack.size"])?,
            ],
        };
        let sched_layout = SchedLayout {
            size: r.size(SCHED)?,
            goidgen: r.offset(SCHED, &["goidgen"])?,
            goroutines_created: r.optional_offset(SCHED, &["goroutinesCreated"]),
            ngsys: r.offset(SCHED, &["ngsys"])?,
            gfree_counts,
            time_to_run: r.time_histogram(SCHED, "timeToRun"),
            stw_total_gc: r.time_histogram(SCHED, "stwTotalTimeGC"),
            trace: SchedTraceLayout {
                npidle: r.offset(SCHED, &["npidle"])?,
                nmspinning: r.offset(SCHED, &["nmspinning"])?,
                needspinning: r.optional_offset(SCHED, &["needspinning"]),
                nmidle: r.offset(SCHED, &["nmidle"])?,
                mnext: r.offset(SCHED, &["mnext"])?,
                nmfreed: r.offset(SCHED, &["nmfreed"])?,
                runq_size: r.offset(SCHED, &["runqsize", "runq.size"])?,
            },
        };

        const P: &str = "runtime.p";
        let p = PLayout {
            runqhead: r.offset(P, &["runqhead"])?,
            runqtail: r.offset(P, &["runqtail"])?,
            goidcache: r.optional_offset(P, &["goidcache"]),
            goidcacheend: r.optional_offset(P, &["goidcacheend"]),
            goroutines_created: r.optional_offset(P, &["goroutinesCreated"]),
            gfree_count: r.offset(P, &["gFree.n", "gFree.size"])?,
        };
        let m = MLayout {
            alllink: r.offset("runtime.m", &["alllink"])?,
            ncgocall: r.offset("runtime.m", &["ncgocall"])?,
        };
        const WORK_T: &str = "runtime.workType";
        let cycle = CycleLayout {
            work_size: r.size(WORK_T)?,
            t_sweep_term: r.offset(WORK_T, &["tSweepTerm"])?,
            t_mark: r.offset(WORK_T, &["tMark"])?,
            t_mark_term: r.offset(WORK_T, &["tMarkTerm"])?,
            t_end: r.offset(WORK_T, &["tEnd"])?,
            heap0: r.offset(WORK_T, &["heap0"])?,
            heap1: r.offset(WORK_T, &["heap1"])?,
            heap2: r.offset(WORK_T, &["heap2"])?,
            stwprocs: r.offset(WORK_T, &["stwprocs"])?,
            maxprocs: r.offset(WORK_T, &["maxprocs"])?,
            user_forced: r.offset(WORK_T, &["userForced"])?,
            last_heap_goal: r.offset(GC, &["lastHeapGoal"])?,
            gc_cpu_fraction: r.offset("runtime.mstats", &["gc_cpu_fraction"])?,
        };
        Self {
            heap,
            gc,
            sched: sched_layout,
            p,
            m,
            cycle,
            mem_profile: r.mem_profile(),
            goroutine: r.goroutine(),
        }
        .checked(&name)
    }
}

/// A size or offset from the binary's DWARF that no Go runtime has.
#[derive(Debug, PartialEq, Eq)]
pub struct ImplausibleLayout {
    pub what: String,
    pub value: u64,
    pub limit: u64,
}

impl RuntimeOffsets {
    /// The offsets, if every struct size, array length and field offset is
    /// within a plausible range: sizes that would size a buffer (mstats,
    /// gcController, sched, work: a few KiB each) at most
    /// `MAX_RUNTIME_STRUCT`, the size classes at most `MAX_SIZE_CLASSES`,
    /// and every field inside its struct. Checked before anything reads.
    pub fn checked(self, binary: &str) -> Result<Self, LayoutError> {
        match self.plausibility() {
            Ok(()) => Ok(self),
            Err(e) => Err(LayoutError::Implausible {
                binary: binary.to_string(),
                what: e.what,
                value: e.value,
                limit: e.limit,
            }),
        }
    }

    pub fn plausibility(&self) -> Result<(), ImplausibleLayout> {
        use super::snapshot::{MAX_RUNTIME_STRUCT, MAX_SIZE_CLASSES};
        let check = |what: &str, value: u64, limit: u64| {
            if value > limit {
                Err(ImplausibleLayout {
                    what: what.to_string(),
                    value,
                    limit,
                })
            } else {
                Ok(())
            }
        };
        // `width` bytes at `offset` inside a struct of `size` (1 for a
        // scalar: its offset must lie inside the struct).
        let inside = |what: &str, offset: u64, width: u64, size: u64| {
            check(
                &format!("the end of {what}"),
                offset.saturating_add(width),
                size,
            )
        };
        let h = &self.heap;
        for (what, size) in [
            ("size of runtime.mstats", h.mstats_size),
            ("size of runtime.heapStatsDelta", h.delta_size),
            ("size of runtime.gcControllerState", self.gc.controller_size),
            ("size of runtime.schedt", self.sched.size),
            ("size of runtime.workType", self.cycle.work_size),
        ] {
            check(what, size, MAX_RUNTIME_STRUCT)?;
        }
        check("number of size classes", h.size_classes, MAX_SIZE_CLASSES)?;
        inside("mstats.numgc", h.numgc, 1, h.mstats_size)?;
        inside(
            "mstats.heapStats.stats[3]",
            h.stats,
            3 * h.delta_size,
            h.mstats_size,
        )?;
        inside(
            "mstats.gc_cpu_fraction",
            self.cycle.gc_cpu_fraction,
            1,
            h.mstats_size,
        )?;
        for (what, offset) in [
            ("heapStatsDelta.tinyAllocCount", h.tiny_alloc_count),
            ("heapStatsDelta.largeAlloc", h.large_alloc),
            ("heapStatsDelta.largeAllocCount", h.large_alloc_count),
        ] {
            inside(what, offset, 1, h.delta_size)?;
        }
        inside(
            "heapStatsDelta.smallAllocCount",
            h.small_alloc_count,
            8 * h.size_classes,
            h.delta_size,
        )?;
        let histogram = |what: &str, hist: &Option<TimeHistogramLayout>, size: u64| match hist {
            None => Ok(()),
            Some(t) => {
                check(
                    &format!("bucket count of {what}"),
                    t.buckets,
                    TIME_HISTOGRAM_BUCKETS,
                )?;
                inside(
                    &format!("{what}.counts"),
                    t.offset.saturating_add(t.counts),
                    8 * t.buckets,
                    size,
                )?;
                let last = t.underflow.max(t.overflow);
                inside(what, t.offset.saturating_add(last), 8, size)
            }
        };
        histogram(
            "memstats.gcPauseDist",
            &h.pause_hist_in_mstats,
            h.mstats_size,
        )?;
        let c = &self.gc;
        let gc_fields = [
            Some(c.gc_percent),
            c.memory_limit,
            Some(c.heap_marked),
            Some(c.heap_live),
            c.gc_percent_heap_goal,
            c.sweep_dist_min_trigger,
            c.triggered,
            c.heap_free,
            c.total_alloc,
            c.total_free,
            c.mapped_ready,
            Some(c.assist_time),
            Some(c.dedicated_mark_time),
            Some(c.fractional_mark_time),
            Some(c.idle_mark_time),
            Some(self.cycle.last_heap_goal),
        ];
        for offset in gc_fields.into_iter().flatten() {
            inside("a gcControllerState field", offset, 1, c.controller_size)?;
        }
        let s = &self.sched;
        let sched_fields = [
            Some(s.goidgen),
            s.goroutines_created,
            Some(s.ngsys),
            Some(s.trace.npidle),
            Some(s.trace.nmspinning),
            s.trace.needspinning,
            Some(s.trace.nmidle),
            Some(s.trace.mnext),
            Some(s.trace.nmfreed),
            Some(s.trace.runq_size),
        ];
        for offset in sched_fields
            .into_iter()
            .flatten()
            .chain(s.gfree_counts.iter().copied())
        {
            inside("a schedt field", offset, 1, s.size)?;
        }
        histogram("sched.timeToRun", &s.time_to_run, s.size)?;
        histogram("sched.stwTotalTimeGC", &s.stw_total_gc, s.size)?;
        let w = &self.cycle;
        for offset in [
            Some(w.t_sweep_term),
            Some(w.t_mark),
            Some(w.t_mark_term),
            Some(w.t_end),
            Some(w.heap0),
            Some(w.heap1),
            Some(w.heap2),
            Some(w.stwprocs),
            Some(w.maxprocs),
            Some(w.user_forced),
            c.cpu_stats_assist,
            c.cpu_stats_total,
        ]
        .into_iter()
        .flatten()
        {
            inside("a workType field", offset, 1, w.work_size)?;
        }
        // p and m are read field by field (their sizes are not kept).
        let p = &self.p;
        for offset in [
            Some(p.runqhead),
            Some(p.runqtail),
            p.goidcache,
            p.goidcacheend,
            p.goroutines_created,
            Some(p.gfree_count),
            Some(self.m.alllink),
            Some(self.m.ncgocall),
        ]
        .into_iter()
        .flatten()
        {
            check("a p or m field offset", offset, MAX_RUNTIME_STRUCT)?;
        }
        Ok(())
    }
}

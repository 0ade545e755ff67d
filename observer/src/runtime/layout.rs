//! Where the Go runtime keeps the figures goscope reads: global addresses
//! and struct field offsets, resolved once per binary from its DWARF and
//! symbol table. Names vary across Go versions; each field lists the paths
//! it has had, and a field the binary lacks is `None` (figure unavailable),
//! never a guessed offset.

use serde::Serialize;
use thiserror::Error;

use crate::binary::{
    GoBinary,
    dwarf::{DwarfError, DwarfTypes, Field},
};

#[derive(Debug, Error)]
pub enum LayoutError {
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
}

/// Where the offsets came from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LayoutSource {
    Dwarf,
}

/// A runtime time histogram (`runtime.timeHistogram`, Go 1.21+ layout):
/// `counts [160]uint64` then `underflow`, `overflow`.
#[derive(Clone, Copy, Debug)]
pub struct TimeHistogramLayout {
    /// Absolute link-time address of the histogram.
    pub address: u64,
    pub counts: u64,
    pub buckets: u64,
    pub underflow: u64,
    pub overflow: u64,
}

/// Number of counting buckets of the Go 1.21+ time histogram
/// ((48 - 9 + 1) buckets × 4 sub-buckets).
pub const TIME_HISTOGRAM_BUCKETS: u64 = 160;

/// Everything the runtime reader needs, as link-time addresses (add the
/// load bias) and offsets inside the structs they point to.
#[derive(Clone, Debug)]
pub struct RuntimeLayout {
    pub source: LayoutSource,
    pub globals: Globals,
    pub heap: HeapStatsLayout,
    pub gc: GcLayout,
    pub sched: SchedLayout,
    pub p: PLayout,
    pub m: MLayout,
}

#[derive(Clone, Debug)]
pub struct Globals {
    pub memstats: u64,
    pub gc_controller: u64,
    pub sched: u64,
    pub work: Option<u64>,
    pub allp: u64,
    pub allglen: u64,
    pub allm: u64,
    pub gomaxprocs: u64,
    pub ncpu: Option<u64>,
    pub ncgocall: u64,
    pub gcphase: Option<u64>,
    pub class_to_size: u64,
    pub class_to_size_len: u64,
}

#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
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
}

#[derive(Clone, Debug)]
pub struct PLayout {
    pub goidcache: Option<u64>,
    pub goidcacheend: Option<u64>,
    pub goroutines_created: Option<u64>,
    pub gfree_count: u64,
}

#[derive(Clone, Debug)]
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

    fn global(&self, name: &str) -> Result<u64, LayoutError> {
        self.binary
            .globals
            .get(name)
            .map(|g| g.address)
            .ok_or_else(|| self.missing(format!("global {name}")))
    }

    /// The first of `names` (a global renamed across versions) present.
    fn global_any(&self, names: &[&str]) -> Result<crate::binary::GlobalSymbol, LayoutError> {
        names
            .iter()
            .find_map(|n| self.binary.globals.get(n))
            .ok_or_else(|| self.missing(format!("global {}", names.join("|"))))
    }

    fn optional_global(&self, name: &str) -> Option<u64> {
        self.binary.globals.get(name).map(|g| g.address)
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
    fn time_histogram(&self, base: u64, outer: &str, path: &str) -> Option<TimeHistogramLayout> {
        let field = self.types.field(outer, path)?;
        let counts = self.types.field("runtime.timeHistogram", "counts")?;
        let buckets = self.types.array_len(counts)?;
        if buckets != TIME_HISTOGRAM_BUCKETS {
            return None;
        }
        Some(TimeHistogramLayout {
            address: base + field.offset,
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

impl RuntimeLayout {
    /// Resolves the layout from the binary's DWARF and symbol table.
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

        let memstats = r.global("runtime.memstats")?;
        let sched = r.global("runtime.sched")?;
        // [_NumSizeClasses]uint16; moved to internal/runtime/gc in Go 1.25.
        let class_to_size = r.global_any(&[
            "runtime.class_to_size",
            "internal/runtime/gc.SizeClassToSize",
        ])?;
        let globals = Globals {
            memstats,
            gc_controller: r.global("runtime.gcController")?,
            sched,
            work: r.optional_global("runtime.work"),
            allp: r.global("runtime.allp")?,
            allglen: r.global("runtime.allglen")?,
            allm: r.global("runtime.allm")?,
            gomaxprocs: r.global("runtime.gomaxprocs")?,
            ncpu: r
                .optional_global("runtime.numCPUStartup")
                .or_else(|| r.optional_global("runtime.ncpu")),
            ncgocall: r.global("runtime.ncgocall")?,
            gcphase: r.optional_global("runtime.gcphase"),
            class_to_size: class_to_size.address,
            class_to_size_len: class_to_size.size / 2,
        };

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
            pause_hist_in_mstats: r.time_histogram(memstats, "runtime.mstats", "gcPauseDist"),
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
            time_to_run: r.time_histogram(sched, SCHED, "timeToRun"),
            stw_total_gc: r.time_histogram(sched, SCHED, "stwTotalTimeGC"),
        };

        const P: &str = "runtime.p";
        let p = PLayout {
            goidcache: r.optional_offset(P, &["goidcache"]),
            goidcacheend: r.optional_offset(P, &["goidcacheend"]),
            goroutines_created: r.optional_offset(P, &["goroutinesCreated"]),
            gfree_count: r.offset(P, &["gFree.n", "gFree.size"])?,
        };
        let m = MLayout {
            alllink: r.offset("runtime.m", &["alllink"])?,
            ncgocall: r.offset("runtime.m", &["ncgocall"])?,
        };
        Ok(Self {
            source: LayoutSource::Dwarf,
            globals,
            heap,
            gc,
            sched: sched_layout,
            p,
            m,
        })
    }
}

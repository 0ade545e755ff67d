//! Allocation sites, whichever source they come from: the runtime's own
//! heap profile read from the target's memory (no probe at all; programs
//! that link runtime/pprof or net/http/pprof keep one) or span refills and
//! large allocations sampled by probes (`probes::alloc`, the fallback when
//! the runtime does not sample).
//!
//! One naming rule for both: a site is the first frame outside the runtime
//! (`runtime::memprofile::allocation_site`), so a map growth or a slice
//! append is charged to the function that grew it. pprof output trims the
//! leading runtime frames the way runtime/pprof does for the target's Go
//! version, so `go tool pprof -top` on goscope's profile and on the
//! target's own agree.
//!
//! The heap-profile window: the runtime publishes cumulative counts per
//! bucket (stack and object size), so the sites of a window are the
//! difference of two readings, bucket by bucket, scaled as runtime/pprof
//! scales heap samples; the live heap by site is the last reading's in-use
//! figures. Both lag the allocations by up to two GC cycles, as every heap
//! profile does.

use std::{cell::RefCell, collections::HashMap};

use serde::Serialize;

use crate::{
    binary::version::GoVersion,
    memory::TargetMemory,
    pprof::{Location, Profile, SourceLine},
    runtime::{
        RuntimeLayout,
        memprofile::{
            MemProfile, MemProfileError, MemProfileReader, MemProfileRecord, allocation_site,
            scale_heap_sample,
        },
    },
    symbols::SourceSymbolizer,
};

/// Where the allocation sites came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SitesSource {
    /// The runtime's heap profile (runtime.mbuckets), read from memory.
    MemoryProfile,
    /// Span refills and large allocations sampled by uprobes.
    #[default]
    SpanRefillProbes,
}

/// One allocation site: the first frame outside the runtime.
#[derive(Clone, Debug, Serialize)]
pub struct AllocSite {
    pub function: String,
    /// `file:line` of the allocating statement.
    pub position: String,
    /// Samples behind the site: span refills and large objects (probes),
    /// sampled allocations (heap profile).
    pub samples: u64,
    /// Share of the window's allocated bytes.
    pub bytes_share: f64,
    pub bytes_per_s: f64,
    pub objects_per_s: f64,
    /// Why the compiler put the site's value on the heap (doctor --src).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escape: Option<crate::escapes::SiteReason>,
}

/// The live heap of one site (heap profile only).
#[derive(Clone, Debug, Serialize)]
pub struct LiveSite {
    pub function: String,
    pub position: String,
    /// In-use bytes and objects, scaled as runtime/pprof scales them.
    pub inuse_bytes: u64,
    pub inuse_objects: u64,
    /// Share of the in-use bytes of every site.
    pub share: f64,
}

/// The sites of a window, what they came from, and what they miss.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AllocSites {
    pub source: SitesSource,
    /// runtime.MemProfileRate (average bytes between two samples) when the
    /// heap profile is the source; null for probes.
    pub sampling_rate_bytes: Option<u64>,
    pub sites: Vec<AllocSite>,
    /// Samples behind the sites (see `AllocSite::samples`).
    pub samples: u64,
    /// Probes: share of the window's bytes in size classes no sample
    /// covered. Heap profile: 0 (its estimate covers every class).
    pub unattributed_share: f64,
    /// In-use bytes by site at the window's end, as of the last GC cycle
    /// the runtime published (heap profile only; null for probes).
    pub live_sites: Option<Vec<LiveSite>>,
    /// Why the source gave no sites for this window (e.g. a reading of
    /// the heap profile was refused); null when it did.
    pub skipped: Option<String>,
}

impl AllocSites {
    /// Nothing from `source`, for the reason given.
    pub fn skipped(source: SitesSource, reason: String) -> Self {
        Self {
            source,
            skipped: Some(reason),
            ..Self::default()
        }
    }

    /// "from the runtime's heap profile, 1 sample per 512 KiB" or "from
    /// span-refill probes, attached 12.3% of the window".
    pub fn source_text(&self, attached_fraction: Option<f64>) -> String {
        source_text(self.source, self.sampling_rate_bytes, attached_fraction)
    }
}

/// Where sites came from, in words: the heap profile and its sampling
/// rate, or the probes and the fraction of the window they were attached.
pub fn source_text(
    source: SitesSource,
    sampling_rate_bytes: Option<u64>,
    attached_fraction: Option<f64>,
) -> String {
    match source {
        SitesSource::MemoryProfile => format!(
            "from the runtime's heap profile, 1 sample per {}",
            sampling_rate_bytes.map_or("?".into(), binary_bytes)
        ),
        SitesSource::SpanRefillProbes => format!(
            "from span-refill probes, attached {} of the window",
            crate::format::percent(attached_fraction.unwrap_or(1.0))
        ),
    }
}

/// 512 KiB, 4 MiB, 1000 B: a sampling rate as the runtime's docs give it.
pub fn binary_bytes(value: u64) -> String {
    match value {
        v if v >= 1 << 20 && v % (1 << 20) == 0 => format!("{} MiB", v >> 20),
        v if v >= 1 << 10 && v % (1 << 10) == 0 => format!("{} KiB", v >> 10),
        v => format!("{v} B"),
    }
}

/// The allocating line of a symbolized stack (leaf first, inlined calls
/// expanded in each location): the innermost frame outside the runtime by
/// `memprofile::allocation_site`'s rule. When every frame is the
/// runtime's (the runtime allocating for itself), its outermost frame, the
/// runtime's own job (e.g. runtime.gcBgMarkWorker), rather than the
/// allocator at the leaf.
pub fn site_line(stack: &[Location]) -> Option<&SourceLine> {
    let frames: Vec<u64> = (0..stack.len() as u64).collect();
    let site = allocation_site(&frames, |i| {
        stack[i as usize].lines.iter().map(|l| l.function.as_str())
    });
    let named = site.and_then(|site| {
        let function = site.function?;
        stack[site.frame]
            .lines
            .iter()
            .find(|l| l.function == function)
    });
    named.or_else(|| {
        stack
            .iter()
            .flat_map(|l| &l.lines)
            .rfind(|l| l.function != "runtime.goexit")
    })
}

/// `file:line`, or "" when the file is unknown.
pub fn position(line: &SourceLine) -> String {
    if line.file.is_empty() {
        String::new()
    } else {
        format!("{}:{}", line.file, line.line)
    }
}

/// The (function, position) a stack is charged to.
fn site_key(stack: &[Location]) -> (String, String) {
    match site_line(stack) {
        Some(line) => (line.function.clone(), position(line)),
        None => ("[unknown]".into(), String::new()),
    }
}

/// Whether runtime/pprof of Go `go` hides a leading frame of `function`
/// in a heap profile: `runtime.*` always, `internal/runtime/*` from Go
/// 1.24 (writeHeapProto in runtime/pprof/protomem.go).
pub fn pprof_hides(function: &str, go: GoVersion) -> bool {
    function.starts_with("runtime.")
        || (go.at_least(24) && function.starts_with("internal/runtime/"))
}

/// Drops the leading locations runtime/pprof hides (by the innermost
/// function at each PC, as its FuncForPC check); keeps the whole stack
/// when nothing else would remain, as runtime/pprof's second try does.
pub fn trim_for_pprof(stack: Vec<Location>, go: GoVersion) -> Vec<Location> {
    let hidden = |l: &Location| {
        l.lines
            .first()
            .is_some_and(|line| pprof_hides(&line.function, go))
    };
    match stack.iter().position(|l| !hidden(l)) {
        Some(first) => stack.into_iter().skip(first).collect(),
        None => stack,
    }
}

/// The locations of a stack the runtime's `callers()` recorded (heap
/// profile buckets): there every inlined call is a PC of its own, so each
/// PC's expansion would repeat the callers that follow. As runtime/pprof's
/// profile builder does, a PC whose frames are exactly the remaining outer
/// frames of the location before is folded into it; runtime.goexit is
/// dropped. `symbolize(pc)` expands inlined calls (innermost first).
pub fn callers_locations(
    stack: &[u64],
    mut symbolize: impl FnMut(u64) -> Location,
) -> Vec<Location> {
    let mut out: Vec<Location> = Vec::new();
    // Outer frames of the last location still expected as their own PCs.
    let mut expected = 0usize;
    for &pc in stack {
        let location = symbolize(pc);
        if location
            .lines
            .first()
            .is_some_and(|l| l.function == "runtime.goexit")
        {
            continue;
        }
        if let Some(last) = out.last()
            && expected > 0
        {
            let outer = &last.lines[last.lines.len() - expected..];
            let same = outer.len() == location.lines.len()
                && outer
                    .iter()
                    .zip(&location.lines)
                    .all(|(a, b)| a.function == b.function);
            if same {
                expected -= 1;
                continue;
            }
        }
        expected = location.lines.len().saturating_sub(1);
        out.push(location);
    }
    out
}

/// One bucket's allocation between two readings.
struct BucketDelta<'a> {
    record: &'a MemProfileRecord,
    allocs: u64,
    alloc_bytes: u64,
}

/// Each bucket of `last` with what it allocated since `first` (buckets are
/// matched by stack and object size, the runtime's own bucket identity;
/// one absent from `first` was created in the window). Counts are
/// cumulative; a count that went down (a first reading taken before any
/// cycle was published sums the unpublished ones) gives zero.
fn deltas<'a>(first: &MemProfile, last: &'a MemProfile) -> Vec<BucketDelta<'a>> {
    let before: HashMap<(&[u64], u64), &MemProfileRecord> = first
        .records
        .iter()
        .map(|r| ((r.stack.as_slice(), r.size), r))
        .collect();
    last.records
        .iter()
        .map(|record| {
            let (allocs, alloc_bytes) = before
                .get(&(record.stack.as_slice(), record.size))
                .map_or((0, 0), |b| (b.allocs, b.alloc_bytes));
            BucketDelta {
                record,
                allocs: record.allocs.saturating_sub(allocs),
                alloc_bytes: record.alloc_bytes.saturating_sub(alloc_bytes),
            }
        })
        .collect()
}

fn ratio(part: f64, total: f64) -> f64 {
    if total > 0.0 { part / total } else { 0.0 }
}

/// The sites of the window between two heap-profile readings: allocation
/// by site over the window (bytes/s, objects/s, share of the profile's
/// scaled bytes) and the live heap by site at its end, each stack named by
/// `site_line` over `callers_locations`.
pub fn heap_sites(
    first: &MemProfile,
    last: &MemProfile,
    window_s: f64,
    mut symbolize: impl FnMut(u64) -> Location,
) -> AllocSites {
    let rate = last.rate;
    // Deltas come in `last.records` order: one name per record.
    let names: Vec<(String, String)> = last
        .records
        .iter()
        .map(|r| site_key(&callers_locations(&r.stack, &mut symbolize)))
        .collect();
    let mut allocated: HashMap<&(String, String), (u64, f64, f64)> = HashMap::new();
    let mut samples = 0;
    for (d, name) in deltas(first, last).iter().zip(&names) {
        if d.allocs == 0 && d.alloc_bytes == 0 {
            continue;
        }
        let (objects, bytes) = scale_heap_sample(d.allocs as i64, d.alloc_bytes as i64, rate);
        let e = allocated.entry(name).or_default();
        e.0 += d.allocs;
        e.1 += bytes.max(0) as f64;
        e.2 += objects.max(0) as f64;
        samples += d.allocs;
    }
    let mut live: HashMap<&(String, String), (u64, u64)> = HashMap::new();
    for (record, name) in last.records.iter().zip(&names) {
        let s = record.heap_sample(rate);
        if s.inuse_space <= 0 {
            continue;
        }
        let e = live.entry(name).or_default();
        e.0 += s.inuse_space as u64;
        e.1 += s.inuse_objects.max(0) as u64;
    }
    let total: f64 = allocated.values().map(|v| v.1).sum();
    let per_s = |v: f64| ratio(v, window_s);
    let mut sites: Vec<AllocSite> = allocated
        .into_iter()
        .map(
            |((function, position), (samples, bytes, objects))| AllocSite {
                function: function.clone(),
                position: position.clone(),
                samples,
                bytes_share: ratio(bytes, total),
                bytes_per_s: per_s(bytes),
                objects_per_s: per_s(objects),
                escape: None,
            },
        )
        .collect();
    sites.sort_by(|a, b| {
        b.bytes_per_s
            .total_cmp(&a.bytes_per_s)
            .then_with(|| a.function.cmp(&b.function))
    });
    let live_total: u64 = live.values().map(|v| v.0).sum();
    let mut live_sites: Vec<LiveSite> = live
        .into_iter()
        .map(
            |((function, position), (inuse_bytes, inuse_objects))| LiveSite {
                function: function.clone(),
                position: position.clone(),
                inuse_bytes,
                inuse_objects,
                share: ratio(inuse_bytes as f64, live_total as f64),
            },
        )
        .collect();
    live_sites.sort_by(|a, b| {
        b.inuse_bytes
            .cmp(&a.inuse_bytes)
            .then_with(|| a.function.cmp(&b.function))
    });
    AllocSites {
        source: SitesSource::MemoryProfile,
        sampling_rate_bytes: Some(rate.max(0) as u64),
        sites,
        samples,
        unattributed_share: 0.0,
        live_sites: Some(live_sites),
        skipped: None,
    }
}

/// runtime/pprof's heap profile of the window: sample types
/// alloc_objects/count and alloc_space/bytes over the window,
/// inuse_objects/count and inuse_space/bytes at its end, period = the
/// sampling rate; leading runtime frames trimmed for Go `go`.
pub fn heap_pprof(
    first: &MemProfile,
    last: &MemProfile,
    go: GoVersion,
    duration_ns: u64,
    mut symbolize: impl FnMut(u64) -> Location,
) -> std::io::Result<Vec<u8>> {
    let rate = last.rate;
    let mut profile = Profile::new(
        &[
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ],
        ("space", "bytes"),
        rate.max(0) as u64,
    );
    for d in deltas(first, last) {
        let (alloc_objects, alloc_space) =
            scale_heap_sample(d.allocs as i64, d.alloc_bytes as i64, rate);
        let live = d.record.heap_sample(rate);
        let values = [
            alloc_objects,
            alloc_space,
            live.inuse_objects,
            live.inuse_space,
        ];
        if values.iter().all(|v| *v == 0) {
            continue;
        }
        let stack = trim_for_pprof(callers_locations(&d.record.stack, &mut symbolize), go);
        profile.add(&stack, &values);
    }
    profile.encode(duration_ns)
}

/// The heap-profile source of one target: the reader, and symbolized PCs
/// kept across readings (a bucket's stack never changes).
pub struct HeapProfile {
    reader: MemProfileReader,
    go: GoVersion,
    locations: RefCell<HashMap<u64, Location>>,
}

impl HeapProfile {
    /// The source when the target's runtime samples allocations
    /// (MemProfileRate > 0, profiling not disabled by the linker), with a
    /// first reading; otherwise why not, in words for the report.
    pub fn open(
        layout: &RuntimeLayout,
        bias: u64,
        memory: &dyn TargetMemory,
        go: GoVersion,
    ) -> Result<(Self, MemProfile), String> {
        let reader = MemProfileReader::new(layout, bias).map_err(|e| e.to_string())?;
        let profile = reader
            .read(memory)
            .map_err(|e| format!("reading the heap profile: {e}"))?;
        if profile.disabled == Some(true) {
            return Err("the runtime's heap profile is off (nothing in the program reads it, so the linker disabled it)".into());
        }
        if !profile.enabled() {
            return Err(format!(
                "the runtime's heap profile is off (runtime.MemProfileRate {})",
                profile.rate
            ));
        }
        Ok((
            Self {
                reader,
                go,
                locations: RefCell::new(HashMap::new()),
            },
            profile,
        ))
    }

    pub fn read(&self, memory: &dyn TargetMemory) -> Result<MemProfile, MemProfileError> {
        self.reader.read(memory)
    }

    fn symbolize<'a>(&'a self, symbols: &'a SourceSymbolizer) -> impl FnMut(u64) -> Location + 'a {
        move |pc| {
            self.locations
                .borrow_mut()
                .entry(pc)
                .or_insert_with(|| symbols.location(pc, true))
                .clone()
        }
    }

    /// `heap_sites` symbolized from the target's binary.
    pub fn sites(
        &self,
        first: &MemProfile,
        last: &MemProfile,
        window_s: f64,
        symbols: &SourceSymbolizer,
    ) -> AllocSites {
        heap_sites(first, last, window_s, self.symbolize(symbols))
    }

    /// `heap_pprof` symbolized from the target's binary.
    pub fn pprof(
        &self,
        first: &MemProfile,
        last: &MemProfile,
        duration_ns: u64,
        symbols: &SourceSymbolizer,
    ) -> std::io::Result<Vec<u8>> {
        heap_pprof(first, last, self.go, duration_ns, self.symbolize(symbols))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use prost::Message as _;

    use super::*;
    use crate::pprof::generated as proto;

    fn line(function: &str, line: i64) -> SourceLine {
        SourceLine {
            function: function.into(),
            file: "/src/main.go".into(),
            line,
        }
    }

    fn loc(pc: u64, functions: &[(&str, i64)]) -> Location {
        Location {
            pc,
            lines: functions.iter().map(|(f, l)| line(f, *l)).collect(),
        }
    }

    /// A fake binary: what `SourceSymbolizer::location(pc, true)` would
    /// give for a few PCs.
    fn symbolize(pc: u64) -> Location {
        match pc {
            0x10 => loc(pc, &[("runtime.mallocgc", 1)]),
            0x20 => loc(pc, &[("internal/runtime/maps.newarray", 2)]),
            0x30 => loc(pc, &[("runtime.mapassign_fast64", 3)]),
            0x40 => loc(pc, &[("main.growMap", 40)]),
            0x50 => loc(pc, &[("main.main", 50)]),
            0x60 => loc(pc, &[("runtime.goexit", 60)]),
            // main.leaf inlined into main.mid inlined into main.outer, and
            // the two parent PCs callers() records for the inlined calls.
            0x70 => loc(pc, &[("main.leaf", 7), ("main.mid", 8), ("main.outer", 9)]),
            0x71 => loc(pc, &[("main.mid", 8), ("main.outer", 9)]),
            0x72 => loc(pc, &[("main.outer", 9)]),
            0x80 => loc(pc, &[("runtime.growslice", 80)]),
            0x90 => loc(pc, &[("main.appendAll", 90)]),
            _ => Location::named(pc, "[unknown]"),
        }
    }

    fn functions(stack: &[Location]) -> Vec<Vec<&str>> {
        stack
            .iter()
            .map(|l| l.lines.iter().map(|s| s.function.as_str()).collect())
            .collect()
    }

    #[test]
    fn inlined_parents_recorded_as_their_own_pcs_are_folded_and_goexit_dropped() {
        let stack = callers_locations(&[0x10, 0x70, 0x71, 0x72, 0x50, 0x60], symbolize);
        assert_eq!(
            functions(&stack),
            vec![
                vec!["runtime.mallocgc"],
                vec!["main.leaf", "main.mid", "main.outer"],
                vec!["main.main"],
            ]
        );
        // A stack truncated inside the inlined calls: expanded once.
        let stack = callers_locations(&[0x70, 0x71], symbolize);
        assert_eq!(
            functions(&stack),
            vec![vec!["main.leaf", "main.mid", "main.outer"]]
        );
        // A genuine caller that happens to equal an outer frame but comes
        // after the expected ones is kept.
        let stack = callers_locations(&[0x70, 0x71, 0x72, 0x72], symbolize);
        assert_eq!(stack.len(), 2);
    }

    #[test]
    fn a_map_growth_or_an_append_is_charged_to_the_function_that_grew_it() {
        let stack: Vec<Location> = [0x10, 0x20, 0x30, 0x40, 0x50].map(symbolize).into();
        let site = site_line(&stack).unwrap();
        assert_eq!((site.function.as_str(), site.line), ("main.growMap", 40));
        let stack: Vec<Location> = [0x10, 0x80, 0x90].map(symbolize).into();
        assert_eq!(site_line(&stack).unwrap().function, "main.appendAll");
        // Every frame the runtime's: its outermost (goexit aside) names it.
        let stack: Vec<Location> = [0x10, 0x80, 0x30, 0x60].map(symbolize).into();
        assert_eq!(
            site_line(&stack).unwrap().function,
            "runtime.mapassign_fast64"
        );
        assert!(site_line(&[]).is_none());
    }

    #[test]
    fn pprof_trimming_follows_the_targets_go_version() {
        let stack = || -> Vec<Location> { [0x10, 0x20, 0x30, 0x40].map(symbolize).into() };
        let new = trim_for_pprof(stack(), GoVersion::new(24, 0));
        assert_eq!(functions(&new), vec![vec!["main.growMap"]]);
        // Before 1.24 runtime/pprof shows internal/runtime frames (there
        // are none in maps then, but the rule is the version's).
        let old = trim_for_pprof(stack(), GoVersion::new(23, 0));
        assert_eq!(old[0].lines[0].function, "internal/runtime/maps.newarray");
        let all_runtime: Vec<Location> = [0x10, 0x30].map(symbolize).into();
        assert_eq!(trim_for_pprof(all_runtime, GoVersion::new(27, 0)).len(), 2);
    }

    fn record(stack: &[u64], size: u64, allocs: u64, frees: u64) -> MemProfileRecord {
        MemProfileRecord {
            stack: stack.to_vec(),
            size,
            allocs,
            frees,
            alloc_bytes: allocs * size,
            free_bytes: frees * size,
        }
    }

    fn profile(records: Vec<MemProfileRecord>) -> MemProfile {
        MemProfile {
            rate: 524_288,
            disabled: Some(false),
            cycle: 4,
            unpublished: false,
            counts_only: false,
            records,
            attempts: 1,
        }
    }

    #[test]
    fn window_sites_are_the_scaled_delta_of_each_bucket_and_live_sites_the_end() {
        let map = [0x10, 0x20, 0x30, 0x40, 0x50];
        let append = [0x10, 0x80, 0x90, 0x50];
        let first = profile(vec![record(&map, 4096, 10, 5), record(&append, 1024, 7, 7)]);
        let last = profile(vec![
            // Created in the window.
            record(&[0x10, 0x70, 0x71, 0x72, 0x50], 512, 40, 0),
            record(&map, 4096, 130, 5),
            // Same stack, another size: another bucket.
            record(&map, 8192, 20, 20),
            record(&append, 1024, 7, 7),
        ]);
        let sites = heap_sites(&first, &last, 2.0, symbolize);
        assert_eq!(sites.source, SitesSource::MemoryProfile);
        assert_eq!(sites.sampling_rate_bytes, Some(524_288));
        assert_eq!(sites.samples, 120 + 20 + 40);
        let names: Vec<&str> = sites.sites.iter().map(|s| s.function.as_str()).collect();
        assert_eq!(names, ["main.growMap", "main.leaf"]);
        let (objects, bytes) = scale_heap_sample(120, 120 * 4096, 524_288);
        let (o8, b8) = scale_heap_sample(20, 20 * 8192, 524_288);
        let grow = &sites.sites[0];
        assert_eq!(grow.samples, 140);
        assert_eq!(grow.bytes_per_s, (bytes + b8) as f64 / 2.0);
        assert_eq!(grow.objects_per_s, (objects + o8) as f64 / 2.0);
        assert_eq!(grow.position, "/src/main.go:40");
        let (_, leaf_bytes) = scale_heap_sample(40, 40 * 512, 524_288);
        let total = (bytes + b8 + leaf_bytes) as f64;
        assert!((grow.bytes_share - (bytes + b8) as f64 / total).abs() < 1e-12);
        let share_sum: f64 = sites.sites.iter().map(|s| s.bytes_share).sum();
        assert!((share_sum - 1.0).abs() < 1e-12);

        let live = sites.live_sites.unwrap();
        let (_, live_map) = scale_heap_sample(125, 125 * 4096, 524_288);
        let (_, live_leaf) = scale_heap_sample(40, 40 * 512, 524_288);
        assert_eq!(live[0].function, "main.growMap");
        assert_eq!(live[0].inuse_bytes, live_map as u64);
        assert_eq!(live[1].inuse_bytes, live_leaf as u64);
        // Fully freed buckets have no live row.
        assert_eq!(live.len(), 2);
        assert!((live[0].share + live[1].share - 1.0).abs() < 1e-12);
    }

    #[test]
    fn counts_that_went_down_give_zero_not_a_wrapped_delta() {
        let first = profile(vec![record(&[0x10, 0x40], 64, 50, 0)]);
        let last = profile(vec![record(&[0x10, 0x40], 64, 30, 0)]);
        let sites = heap_sites(&first, &last, 1.0, symbolize);
        assert!(sites.sites.is_empty());
        assert_eq!(sites.samples, 0);
    }

    #[test]
    fn the_window_pprof_has_the_four_heap_sample_types_and_trimmed_stacks() {
        let first = profile(vec![record(
            &[0x10, 0x20, 0x30, 0x40, 0x50, 0x60],
            4096,
            10,
            2,
        )]);
        let last = profile(vec![
            record(&[0x10, 0x20, 0x30, 0x40, 0x50, 0x60], 4096, 30, 4),
            record(&[0x10, 0x80, 0x90], 2048, 0, 0),
        ]);
        let gz = heap_pprof(
            &first,
            &last,
            GoVersion::new(27, 3),
            1_000_000_000,
            symbolize,
        )
        .unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        let p = proto::Profile::decode(raw.as_slice()).unwrap();
        let s = |i: i64| p.string_table[i as usize].as_str();
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(
            types,
            [
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes")
            ]
        );
        assert_eq!(p.period, 524_288);
        // The all-zero bucket is left out.
        assert_eq!(p.sample.len(), 1);
        let (ao, ab) = scale_heap_sample(20, 20 * 4096, 524_288);
        let (io, ib) = scale_heap_sample(26, 26 * 4096, 524_288);
        assert_eq!(p.sample[0].value, vec![ao, ab, io, ib]);
        // Leading runtime and internal/runtime frames trimmed, goexit gone.
        let leaf = p.sample[0].location_id[0];
        let location = &p.location[leaf as usize - 1];
        let function = &p.function[location.line[0].function_id as usize - 1];
        assert_eq!(s(function.name), "main.growMap");
        assert_eq!(p.sample[0].location_id.len(), 2);
    }

    #[test]
    fn the_rate_reads_as_the_runtime_states_it() {
        assert_eq!(binary_bytes(524_288), "512 KiB");
        assert_eq!(binary_bytes(4 << 20), "4 MiB");
        assert_eq!(binary_bytes(1000), "1000 B");
        let sites = AllocSites {
            source: SitesSource::MemoryProfile,
            sampling_rate_bytes: Some(524_288),
            ..AllocSites::default()
        };
        assert_eq!(
            sites.source_text(None),
            "from the runtime's heap profile, 1 sample per 512 KiB"
        );
        let probes = AllocSites::default();
        assert_eq!(
            probes.source_text(Some(0.25)),
            "from span-refill probes, attached 25.0% of the window"
        );
    }
}

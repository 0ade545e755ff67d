//! The goroutine-table fuzz target: `GoroutineReader::read` (allglen, the
//! allgs slice, every g), the wait-reason table, and the creation-site
//! arithmetic fed with what was read, over a hostile memory image (see the
//! parent module's doc for the image and its chunks). Its seeds are
//! synthetic tables: a healthy one and the shapes a corrupt or racing
//! target shows (a g listed twice, an absurd allglen, an enormous array,
//! a wild g pointer).

use super::{IMAGE_BASE, chunk, entries, global_offset, image_memory};
use crate::{
    binary::GoVersion,
    memory::{MemoryError, TargetMemory},
    runtime::{
        globals::{Global, OptionalGlobal, RequiredGlobal},
        goroutines::{
            CreationCounts, CreationTracker, GoroutineAddresses, GoroutineError, GoroutineReader,
            GoroutineTable, estimate, live_by_gopc,
        },
        layout::GoroutineLayout,
    },
};

/// Image offset of the allgs pointer array.
pub const ARRAY: u64 = 0x1_0000;
/// Image offset of the first g; gs follow every `STRIDE` bytes.
pub const GS: u64 = 0x1_8000;
pub const STRIDE: u64 = 512;
/// Image offsets of runtime.waitReasonStrings and of its strings' bytes
/// (the table is larger than a global's 32-byte slot).
pub const WAIT_REASONS: u64 = 0xa000;
pub const WAIT_REASON_TEXT: u64 = 0xb000;

/// The table entries that have a goroutine layout: (minor version, layout).
pub fn layouts() -> Vec<(GoVersion, GoroutineLayout)> {
    entries()
        .into_iter()
        .filter_map(|e| {
            let version = GoVersion::parse(&e.generated_from)?;
            Some((version, e.offsets.goroutine.clone()?))
        })
        .collect()
}

/// Where the image keeps the goroutine globals.
pub fn addresses() -> GoroutineAddresses {
    let at = |g: Global| IMAGE_BASE + global_offset(g);
    GoroutineAddresses {
        allgs: at(Global::Optional(OptionalGlobal::Allgs)),
        allglen: at(Global::Required(RequiredGlobal::Allglen)),
        fing_status: Some(at(Global::Optional(OptionalGlobal::FingStatus))),
        wait_reason_strings: Some(IMAGE_BASE + WAIT_REASONS),
    }
}

/// What the body did with one input (for the tests of the seeds).
#[derive(Debug)]
pub struct Outcome {
    pub table: Result<GoroutineTable, GoroutineError>,
    /// Bytes the reader asked the target for.
    pub bytes_read: u64,
}

/// Counts what is read through it.
struct Counting<'a> {
    inner: &'a dyn TargetMemory,
    bytes: std::cell::Cell<u64>,
}

impl TargetMemory for Counting<'_> {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.bytes.set(self.bytes.get() + buf.len() as u64);
        self.inner.read(address, buf)
    }
}

/// The body: byte 0 picks the version-table entry (its g layout), byte 1
/// the runtime's created count fed to the creation tracker, the rest are
/// chunks.
pub fn run(data: &[u8]) -> Option<Outcome> {
    let [pick, created, chunks @ ..] = data else {
        return None;
    };
    let layouts = layouts();
    let (version, layout) = layouts.get(usize::from(*pick) % layouts.len().max(1))?;
    let reader = GoroutineReader::from_parts(layout.clone(), addresses(), *version).ok()?;
    let image = image_memory(chunks);
    let memory = Counting {
        inner: &image,
        bytes: 0.into(),
    };
    let _ = reader.wait_reasons(&memory);
    let table = reader.read(&memory);
    if let Ok(table) = &table {
        // Two readings of the same table: the second sees nothing new and
        // the runtime's count (from the input) says how many were missed.
        let mut tracker = CreationTracker::default();
        tracker.observe(table, Some(0));
        let first = tracker.counts().clone();
        tracker.observe(table, Some(u64::from(*created) << 8));
        let e = estimate(&CreationCounts::default(), tracker.counts(), 1 << 20);
        let _ = estimate(&first, tracker.counts(), u64::from(*created));
        let _ = e.covered_fraction();
        let _ = live_by_gopc(table, |g| g.startpc % 2 == 1);
    }
    Some(Outcome {
        table,
        bytes_read: memory.bytes.get(),
    })
}

/// The fuzz target's body.
pub fn body(data: &[u8]) {
    let _ = run(data);
}

/// What a synthetic goroutine table looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableShape {
    /// Six gs in several states from two creation sites, the wait
    /// reasons, fingStatus.
    Healthy,
    /// allgs[4] is allgs[1] again (a cycle through the table).
    Duplicate,
    /// allglen of 2^40.
    AllglenHuge,
    /// allglen = len = cap = 900,000 (under the default cap), the array
    /// running far past the image.
    ArrayEnormous,
    /// allgs[2] points near the end of the address space.
    WildPointer,
}

impl TableShape {
    pub const ALL: [Self; 5] = [
        Self::Healthy,
        Self::Duplicate,
        Self::AllglenHuge,
        Self::ArrayEnormous,
        Self::WildPointer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "table",
            Self::Duplicate => "duplicate",
            Self::AllglenHuge => "allglen-huge",
            Self::ArrayEnormous => "array-enormous",
            Self::WildPointer => "wild-pointer",
        }
    }
}

/// Statuses of the healthy table's gs: running, waiting, runnable, dead,
/// syscall, waiting while its stack is scanned.
const STATUSES: [u32; 6] = [2, 4, 1, 6, 3, 0x1004];

/// Chunks of a goroutine-table image for `layout` in shape `shape`.
pub fn table_image(layout: &GoroutineLayout, shape: TableShape) -> Vec<u8> {
    let mut out = Vec::new();
    let n = STATUSES.len() as u64;
    let (allglen, len) = match shape {
        TableShape::AllglenHuge => (1 << 40, 1 << 40),
        TableShape::ArrayEnormous => (900_000, 900_000),
        _ => (n, n + 2),
    };
    chunk(
        &mut out,
        global_offset(Global::Required(RequiredGlobal::Allglen)),
        &allglen.to_le_bytes(),
    );
    let header: Vec<u8> = [IMAGE_BASE + ARRAY, len, len.next_power_of_two()]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    chunk(
        &mut out,
        global_offset(Global::Optional(OptionalGlobal::Allgs)),
        &header,
    );
    chunk(
        &mut out,
        global_offset(Global::Optional(OptionalGlobal::FingStatus)),
        &0u32.to_le_bytes(),
    );
    let pointers: Vec<u8> = (0..n)
        .map(|i| match (shape, i) {
            (TableShape::Duplicate, 4) => IMAGE_BASE + GS + STRIDE,
            (TableShape::WildPointer, 2) => u64::MAX - 7,
            _ => IMAGE_BASE + GS + i * STRIDE,
        })
        .flat_map(|p| p.to_le_bytes())
        .collect();
    chunk(&mut out, ARRAY, &pointers);
    for (i, status) in (0u64..).zip(STATUSES) {
        let g = GS + i * STRIDE;
        chunk(&mut out, g + layout.goid, &(i + 1).to_le_bytes());
        chunk(&mut out, g + layout.atomicstatus, &status.to_le_bytes());
        chunk(&mut out, g + layout.waitreason, &[(i % 3) as u8]);
        let gopc = 0x40_1000 + (i % 2) * 0x100;
        chunk(&mut out, g + layout.gopc, &gopc.to_le_bytes());
        chunk(&mut out, g + layout.startpc, &0x40_2000u64.to_le_bytes());
        if let Some(parent) = layout.parent_goid {
            chunk(&mut out, g + parent, &1u64.to_le_bytes());
        }
        if let Some(since) = layout.waitsince {
            chunk(&mut out, g + since, &(1_000 * i).to_le_bytes());
        }
    }
    let mut text_at = WAIT_REASON_TEXT;
    for (i, name) in (0u64..).zip(["", "GC assist marking", "chan receive"]) {
        let header: Vec<u8> = [IMAGE_BASE + text_at, name.len() as u64]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        chunk(&mut out, WAIT_REASONS + 16 * i, &header);
        chunk(&mut out, text_at, name.as_bytes());
        text_at += 64;
    }
    out
}

/// The seeds: every shape for Go 1.22 and 1.27.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let layouts = layouts();
    let mut seeds = Vec::new();
    for minor in [22, 27] {
        let Some(index) = layouts.iter().position(|(v, _)| v.minor == minor) else {
            continue;
        };
        for shape in TableShape::ALL {
            let mut input = vec![index as u8, 3];
            input.extend(table_image(&layouts[index].1, shape));
            seeds.push(("goroutines", format!("{}-1.{minor}", shape.name()), input));
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::goroutines::GoStatus;

    /// Bytes a well-behaved reading of `allglen` gs may ask for: the
    /// globals, the wait reasons, the array and each g once or twice
    /// (a chunk that fails is read again g by g).
    fn bound(allglen: u64) -> u64 {
        4096 + 8 * allglen + 2 * allglen * STRIDE
    }

    #[test]
    fn the_healthy_table_reads_every_g() {
        for (_, name, input) in seeds().into_iter().filter(|s| s.1.starts_with("table-")) {
            let outcome = run(&input).unwrap();
            let table = outcome.table.unwrap();
            assert_eq!(table.allglen, 6, "{name}");
            let statuses: Vec<_> = table.goroutines.iter().map(|g| g.status).collect();
            assert_eq!(
                statuses,
                [
                    GoStatus::Running,
                    GoStatus::Waiting,
                    GoStatus::Runnable,
                    GoStatus::Dead,
                    GoStatus::Syscall,
                    GoStatus::Waiting
                ],
                "{name}"
            );
            assert!(table.goroutines[5].scanning, "{name}");
            assert_eq!(table.goroutines[1].gopc, 0x40_1100, "{name}");
            assert_eq!(table.finalizer_running, Some(false), "{name}");
            assert!(
                outcome.bytes_read <= bound(6),
                "{name}: {}",
                outcome.bytes_read
            );
        }
    }

    /// Each hostile shape is a one-line error naming the value, after a
    /// read bounded by what the table could legitimately hold.
    #[test]
    fn hostile_tables_are_bounded_errors_naming_the_value() {
        let want = |name: &str| match name.rsplit_once('-').unwrap().0 {
            "duplicate" => "allgs[1] and allgs[4] both point at the g at 0x1018200",
            "allglen-huge" => "runtime.allglen is 1099511627776: more than the limit",
            "array-enormous" => "reading the runtime.allgs array at 0x1010000",
            "wild-pointer" => "allgs[2] = 0xfffffffffffffff8",
            other => panic!("unexpected seed {other}"),
        };
        for (_, name, input) in seeds().into_iter().filter(|s| !s.1.starts_with("table-")) {
            let outcome = run(&input).unwrap();
            let err = outcome.table.unwrap_err().to_string();
            assert!(err.contains(want(&name)), "{name}: {err}");
            assert!(!err.contains('\n'), "{name}: {err}");
            // The enormous array is asked for once (7.2 MB, refused by
            // the image); nothing else is read past the table's size.
            let limit = if name.starts_with("array-enormous") {
                bound(6) + 8 * 900_000
            } else {
                bound(6)
            };
            assert!(
                outcome.bytes_read <= limit,
                "{name}: {}",
                outcome.bytes_read
            );
        }
    }
}

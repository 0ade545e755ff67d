//! Fuzz target bodies, shared by the cargo-fuzz targets (fuzz/) and by a
//! test that replays the committed seed corpus (fuzz/corpus/<target>/)
//! plus deterministic mutations of it on every `cargo test`. Each body
//! takes arbitrary bytes and must neither panic, nor abort on an
//! allocation, nor hang: hostile targets and binaries get errors.
//!
//! Inputs of the memory targets (`snapshot`, `memprofile`, `goroutines`) are a header
//! and a list of chunks `[u32 offset][u16 len][len bytes]` written into a
//! zeroed image of `IMAGE_SPAN` bytes at `IMAGE_BASE`; runtime globals sit
//! at fixed offsets in it (`global_offset`), and every pointer and length
//! the reader follows comes from the fuzzer.

pub mod goroutines;
pub mod synth;

use crate::{
    binary::{GoBinary, lines::LineTable},
    memory::SnapshotMemory,
    runtime::{
        Globals, GlobalsSource, LayoutSource, MemProfileReader, RuntimeLayout, RuntimeOffsets,
        RuntimeSnapshot,
        globals::{Global, OptionalGlobal, RequiredGlobal, rip_relative_targets},
        memprofile::MemProfileAddresses,
        snapshot::read_class_sizes,
        table::{self, VersionEntry},
    },
};

/// Where the memory image of the memory targets is mapped.
pub const IMAGE_BASE: u64 = 0x100_0000;
/// Its size (zeros where no chunk wrote).
pub const IMAGE_SPAN: usize = 256 << 10;

/// A fuzz target's body.
pub type Body = fn(&[u8]);

/// Every fuzz target: its name (a directory under fuzz/corpus) and body.
pub const TARGETS: &[(&str, Body)] = &[
    ("lines", lines),
    ("layout", layout),
    ("globals", globals),
    ("snapshot", snapshot),
    ("memprofile", memprofile),
    ("goroutines", goroutines::body),
    ("cgroup", cgroup),
    ("proc", proc),
];

/// The version-table entries, in key order (the first input byte picks one).
fn entries() -> Vec<&'static VersionEntry> {
    table::table().values().collect()
}

/// Offset of a runtime global in the snapshot image: the big structures
/// each in a slot of their own, every other global in a 32-byte slot
/// after them (by its position in `Global::all`).
pub fn global_offset(global: Global) -> u64 {
    match global {
        Global::Required(RequiredGlobal::Memstats) => 0x0000,
        Global::Required(RequiredGlobal::GcController) => 0x4000,
        Global::Required(RequiredGlobal::Sched) => 0x5000,
        Global::Required(RequiredGlobal::ClassToSize) => 0x7800,
        Global::Optional(OptionalGlobal::Work) => 0x8000,
        other => 0x7000 + 0x20 * Global::all().position(|g| g == other).unwrap_or(0) as u64,
    }
}

/// The image described by `chunks` (see the module doc), as target memory.
pub fn image_memory(chunks: &[u8]) -> SnapshotMemory {
    let mut image = vec![0u8; IMAGE_SPAN];
    let mut rest = chunks;
    while rest.len() >= 6 {
        let offset = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize % IMAGE_SPAN;
        let len = u16::from_le_bytes([rest[4], rest[5]]) as usize;
        rest = &rest[6..];
        let data = &rest[..len.min(rest.len())];
        let end = (offset + data.len()).min(IMAGE_SPAN);
        image[offset..end].copy_from_slice(&data[..end - offset]);
        rest = &rest[data.len()..];
    }
    let mut memory = SnapshotMemory::default();
    memory.insert(IMAGE_BASE, image);
    memory
}

/// Appends a chunk writing `bytes` at image offset `offset`.
pub fn chunk(out: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    for piece in bytes.chunks(u16::MAX as usize) {
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        out.extend_from_slice(&(piece.len() as u16).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// A runtime layout: the offsets of table entry `entry`, every global at
/// its `global_offset` in the image.
pub fn image_layout(offsets: RuntimeOffsets) -> RuntimeLayout {
    let globals = Globals::from_addresses(|g| Some(IMAGE_BASE + global_offset(g)))
        .expect("every global has an address");
    RuntimeLayout {
        offsets_source: LayoutSource::VersionTable,
        globals_source: GlobalsSource::Symtab,
        globals,
        offsets,
    }
}

/// `RuntimeSnapshot::read` and the size-class read over a hostile image:
/// byte 0 picks the version-table entry, the rest are chunks.
pub fn snapshot(data: &[u8]) {
    let Some((&pick, chunks)) = data.split_first() else {
        return;
    };
    let entries = entries();
    let entry = entries[pick as usize % entries.len()];
    let layout = image_layout(entry.offsets.clone());
    let memory = image_memory(chunks);
    let _ = read_class_sizes(&memory, &layout, 0);
    let _ = RuntimeSnapshot::read(&memory, &layout, 0);
}

/// Addresses of the memory-profile globals in the image.
pub fn memprofile_addresses() -> MemProfileAddresses {
    let at = |g: OptionalGlobal| IMAGE_BASE + global_offset(Global::Optional(g));
    MemProfileAddresses {
        mbuckets: at(OptionalGlobal::Mbuckets),
        mem_profile_rate: at(OptionalGlobal::MemProfileRate),
        mprof_cycle: at(OptionalGlobal::MprofCycle),
        disable_memory_profiling: Some(at(OptionalGlobal::DisableMemoryProfiling)),
    }
}

/// The memory-profile reader over a hostile image: byte 0 picks the
/// version-table entry (its bucket layout), the rest are chunks.
pub fn memprofile(data: &[u8]) {
    let Some((&pick, chunks)) = data.split_first() else {
        return;
    };
    let layouts: Vec<_> = entries()
        .into_iter()
        .filter_map(|e| e.offsets.mem_profile.clone())
        .collect();
    let Some(layout) = layouts.get(pick as usize % layouts.len().max(1)) else {
        return;
    };
    let memory = image_memory(chunks);
    if let Ok(reader) = MemProfileReader::from_parts(layout.clone(), memprofile_addresses()) {
        let _ = reader.read(&memory);
    }
}

/// The line tables: `[u64 text start][u16 n][n bytes go:func.*][pclntab]`,
/// then frames at every function entry, just after it, and at a PC the
/// input names.
pub fn lines(data: &[u8]) {
    if data.len() < 10 {
        return;
    }
    let text_start = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
    let n = u16::from_le_bytes([data[8], data[9]]) as usize;
    let rest = &data[10..];
    let (gofunc, pclntab) = rest.split_at(n.min(rest.len()));
    let Ok(table) = LineTable::from_tables(pclntab, text_start, gofunc) else {
        return;
    };
    let mut pcs = vec![text_start.wrapping_add(u64::from(data[9]))];
    for entry in table.entries(16) {
        pcs.extend([entry, entry.wrapping_add(1), entry.wrapping_add(5)]);
    }
    for pc in pcs {
        let _ = table.frames(pc);
    }
}

/// Layout resolution on a fuzzed executable: DWARF types, offsets and
/// their plausibility, globals, the line tables.
pub fn layout(data: &[u8]) {
    let Ok(binary) = GoBinary::parse(std::path::Path::new("fuzz"), data.to_vec()) else {
        return;
    };
    if binary.has_dwarf {
        let _ = RuntimeOffsets::from_dwarf(&binary);
    }
    let _ = RuntimeLayout::resolve(&binary, true);
    let _ = LineTable::parse(&binary);
}

/// Global-address recovery: every version's reference sites against a
/// fuzzed executable, and the operand decoder on raw bytes.
pub fn globals(data: &[u8]) {
    let _ = rip_relative_targets(synth::TEXT_BASE, &data[..data.len().min(1 << 16)]);
    let Ok(binary) = GoBinary::parse(std::path::Path::new("fuzz"), data.to_vec()) else {
        return;
    };
    for entry in entries() {
        let _ = Globals::from_sites(&binary, &entry.globals);
    }
}

/// The cgroup parsers: /proc/PID/cgroup (against a root that does not
/// exist), cpu.stat and cpu.max.
pub fn cgroup(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let cgroups =
        crate::cgroup::Cgroups::parse(&text, std::path::Path::new("/nonexistent-goscope"));
    let _ = cgroups.cpu_quota();
    let _ = cgroups.memory_limit();
    let _ = crate::cgroup::CpuStat::parse(&text);
    let _ = crate::cgroup::parse_cpu_max(&text);
}

/// The /proc parsers: stat fields and the load bias from maps.
pub fn proc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for n in 0..60 {
        let _ = crate::target::stat_field(&text, n);
    }
    let inode = data.first().map_or(0, |&b| u64::from(b));
    for first_load in [0, 0x1000, synth::TEXT_BASE, u64::MAX] {
        let _ = crate::target::bias_from_maps(&text, None, inode, first_load);
    }
}

/// The seed corpus: (target, file name, bytes). `cargo test -p observer
/// --lib fuzzing::tests::seeds_are_committed` checks fuzz/corpus holds
/// them; GOSCOPE_WRITE_FUZZ_SEEDS=1 (re)writes them.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let entries = table::table();
    for key in ["1.19", "1.22", "1.26", "1.27"] {
        let Some(entry) = entries.get(key) else {
            continue;
        };
        let version = entry.generated_from.clone();
        seeds.push((
            "layout",
            format!("dwarf-{key}"),
            synth::dwarf_binary(&version, &entry.offsets),
        ));
        if key == "1.22" || key == "1.27" {
            seeds.push((
                "globals",
                format!("sites-{key}"),
                synth::sites_binary(&version, &entry.globals),
            ));
        }
    }
    // Code with RIP-relative operands: lea, mov, cmp.
    seeds.push((
        "globals",
        "code".into(),
        vec![
            0x48, 0x8d, 0x05, 0x10, 0, 0, 0, 0x48, 0x8b, 0x0d, 0xf0, 0xff, 0xff, 0xff, 0x83, 0x3d,
            0x20, 0, 0, 0, 0, 0xc3,
        ],
    ));
    let (pclntab, gofunc) = synth::pclntab();
    let mut lines = synth::TEXT_BASE.to_le_bytes().to_vec();
    lines.extend_from_slice(&(gofunc.len() as u16).to_le_bytes());
    lines.extend_from_slice(&gofunc);
    lines.extend_from_slice(&pclntab);
    seeds.push(("lines", "two-functions-inlined".into(), lines));
    let keys: Vec<&String> = entries.keys().collect();
    let index_of = |key: &str| keys.iter().position(|k| *k == key).unwrap_or(0) as u8;
    for key in ["1.22", "1.26"] {
        if let Some(entry) = entries.get(key) {
            for (name, shape) in [
                ("ok", RuntimeShape::Healthy),
                ("allm-loop", RuntimeShape::AllmLoop),
                ("allp-huge", RuntimeShape::AllpHuge),
            ] {
                let mut input = vec![index_of(key)];
                input.extend(runtime_image(&entry.offsets, shape));
                seeds.push(("snapshot", format!("{name}-{key}"), input));
            }
        }
    }
    let with_profile: Vec<&String> = entries
        .iter()
        .filter(|(_, e)| e.offsets.mem_profile.is_some())
        .map(|(k, _)| k)
        .collect();
    for key in ["1.22", "1.27"] {
        let Some(index) = with_profile.iter().position(|k| *k == key) else {
            continue;
        };
        let layout = entries[key]
            .offsets
            .mem_profile
            .clone()
            .unwrap_or_else(|| unreachable!());
        for (name, looped) in [("chain", false), ("loop", true)] {
            let mut input = vec![index as u8];
            input.extend(profile_image(&layout, looped));
            seeds.push(("memprofile", format!("{name}-{key}"), input));
        }
    }
    seeds.extend(goroutines::seeds());
    seeds.push((
        "cgroup",
        "v1".into(),
        b"12:memory:/svc/app\n4:cpu,cpuacct:/svc/app\n0::/svc/app\nnr_periods 10\nnr_throttled 4\nthrottled_usec 18446744073709551615\n".to_vec(),
    ));
    seeds.push((
        "cgroup",
        "v2-cpu-max".into(),
        b"0::/kubepods/pod1\n150000 100000\n".to_vec(),
    ));
    seeds.push((
        "proc",
        "stat".into(),
        b"42 (a b) c) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0 12345 0".to_vec(),
    ));
    seeds.push((
        "proc",
        "maps".into(),
        b"55d0c0000000-55d0c0100000 r--p 00001000 08:01 77 /srv/app\n55d0c0200000-55d0c0300000 r--p 00000000 08:01 77 /srv/app (deleted)\n".to_vec(),
    ));
    seeds
}

/// What a synthetic runtime image looks like.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RuntimeShape {
    /// Two Ps, three Ms, a valid size-class table.
    Healthy,
    /// The allm list comes back to its first M.
    AllmLoop,
    /// len(allp) of 2^21.
    AllpHuge,
}

/// Chunks of a runtime image for `offsets` (see `global_offset`).
pub fn runtime_image(offsets: &RuntimeOffsets, shape: RuntimeShape) -> Vec<u8> {
    let mut out = Vec::new();
    let at = |g: RequiredGlobal| global_offset(Global::Required(g));
    let addr = |offset: u64| IMAGE_BASE + offset;
    // class_to_size: 0, 8, then increasing.
    let sizes: Vec<u8> = (0..offsets.heap.size_classes)
        .flat_map(|c| (if c < 2 { c * 8 } else { c * 16 } as u16).to_le_bytes())
        .collect();
    chunk(&mut out, at(RequiredGlobal::ClassToSize), &sizes);
    chunk(&mut out, offsets.heap.numgc, &7u32.to_le_bytes());
    chunk(
        &mut out,
        at(RequiredGlobal::GcController) + offsets.gc.gc_percent,
        &100u32.to_le_bytes(),
    );
    chunk(
        &mut out,
        at(RequiredGlobal::Gomaxprocs),
        &2u32.to_le_bytes(),
    );
    chunk(&mut out, at(RequiredGlobal::Allglen), &12u64.to_le_bytes());
    chunk(&mut out, at(RequiredGlobal::Ncgocall), &3u64.to_le_bytes());
    // allp: a slice of two Ps at 0x10000 and 0x14000.
    const ALLP_ARRAY: u64 = 0x9000;
    let (p0, p1) = (0x1_0000, 0x1_4000);
    let allp_len: u64 = if shape == RuntimeShape::AllpHuge {
        1 << 21
    } else {
        2
    };
    let mut slice = addr(ALLP_ARRAY).to_le_bytes().to_vec();
    slice.extend_from_slice(&allp_len.to_le_bytes());
    slice.extend_from_slice(&allp_len.to_le_bytes());
    chunk(&mut out, at(RequiredGlobal::Allp), &slice);
    let mut array = addr(p0).to_le_bytes().to_vec();
    array.extend_from_slice(&addr(p1).to_le_bytes());
    chunk(&mut out, ALLP_ARRAY, &array);
    chunk(&mut out, p0 + offsets.p.runqtail, &3u32.to_le_bytes());
    chunk(&mut out, p1 + offsets.p.gfree_count, &2u32.to_le_bytes());
    // allm: three Ms at 0x18000, 0x1a000, 0x1c000.
    let ms = [0x1_8000u64, 0x1_a000, 0x1_c000];
    chunk(
        &mut out,
        at(RequiredGlobal::Allm),
        &addr(ms[0]).to_le_bytes(),
    );
    for (i, m) in ms.iter().enumerate() {
        let next = match (ms.get(i + 1), shape) {
            (Some(next), _) => addr(*next),
            (None, RuntimeShape::AllmLoop) => addr(ms[0]),
            (None, _) => 0,
        };
        chunk(&mut out, m + offsets.m.alllink, &next.to_le_bytes());
        chunk(
            &mut out,
            m + offsets.m.ncgocall,
            &(i as u64 + 1).to_le_bytes(),
        );
    }
    out
}

/// Chunks of a memory-profile image: three buckets chained from
/// runtime.mbuckets (or looping back to the first).
pub fn profile_image(layout: &crate::runtime::MemProfileLayout, looped: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let at = |g: OptionalGlobal| global_offset(Global::Optional(g));
    chunk(
        &mut out,
        at(OptionalGlobal::MemProfileRate),
        &(512u64 << 10).to_le_bytes(),
    );
    chunk(
        &mut out,
        at(OptionalGlobal::MprofCycle) + layout.mprof_cycle_value,
        &6u32.to_le_bytes(),
    );
    let buckets = [0x2_0000u64, 0x2_1000, 0x2_2000];
    chunk(
        &mut out,
        at(OptionalGlobal::Mbuckets),
        &(IMAGE_BASE + buckets[0]).to_le_bytes(),
    );
    for (i, b) in buckets.iter().enumerate() {
        let next = match buckets.get(i + 1) {
            Some(next) => IMAGE_BASE + next,
            None if looped => IMAGE_BASE + buckets[0],
            None => 0,
        };
        chunk(&mut out, b + layout.allnext, &next.to_le_bytes());
        chunk(&mut out, b + layout.typ, &1u64.to_le_bytes());
        chunk(
            &mut out,
            b + layout.size,
            &((i as u64 + 1) * 64).to_le_bytes(),
        );
        chunk(&mut out, b + layout.nstk, &2u64.to_le_bytes());
        let stack: Vec<u8> = [0x40_1000u64 + i as u64, 0x40_2000]
            .iter()
            .flat_map(|pc| pc.to_le_bytes())
            .collect();
        chunk(&mut out, b + layout.bucket_size, &stack);
        let record = b + layout.bucket_size + 16;
        chunk(
            &mut out,
            record + layout.active + layout.allocs,
            &5u64.to_le_bytes(),
        );
        chunk(
            &mut out,
            record + layout.active + layout.frees,
            &2u64.to_le_bytes(),
        );
    }
    out
}

/// Deterministic mutations of `seed` (xorshift from `state`): bit flips,
/// interesting values, truncation, duplication.
pub fn mutate(seed: &[u8], state: &mut u64) -> Vec<u8> {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let mut out = seed.to_vec();
    for _ in 0..1 + next() % 4 {
        if out.is_empty() {
            out.push(next() as u8);
            continue;
        }
        let at = (next() % out.len() as u64) as usize;
        match next() % 6 {
            0 => out[at] ^= 1 << (next() % 8),
            1 => out[at] = [0, 0xff, 0x7f, 0x80, 1][(next() % 5) as usize],
            2 => {
                let value: u64 = [u64::MAX, 1 << 36, 1 << 40, 1 << 21, 0, i64::MAX as u64]
                    [(next() % 6) as usize];
                let end = (at + 8).min(out.len());
                out[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            }
            3 => out.truncate(at),
            4 => {
                let end = (at + 1 + (next() % 64) as usize).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            _ => {
                let other = (next() % out.len() as u64) as usize;
                out.swap(at, other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn corpus() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
    }

    /// Every seed `seeds()` makes is committed (its bytes may lag behind a
    /// regenerated version table: any valid input is a good seed).
    #[test]
    fn seeds_are_committed() {
        let write = std::env::var_os("GOSCOPE_WRITE_FUZZ_SEEDS").is_some();
        for (target, name, bytes) in seeds() {
            let path = corpus().join(target).join(&name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            assert!(
                path.is_file(),
                "{} is missing (GOSCOPE_WRITE_FUZZ_SEEDS=1 writes it)",
                path.display()
            );
        }
    }

    /// Every fuzz target's body over its committed corpus and 300
    /// deterministic mutations of each file (the bounded run of
    /// scripts/fuzz.sh explores further where cargo-fuzz is installed).
    #[test]
    fn every_target_survives_its_corpus_and_mutations() {
        for (target, body) in TARGETS {
            let dir = corpus().join(target);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "{} has no seed", dir.display());
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            for file in files {
                let seed = std::fs::read(&file).unwrap();
                body(&seed);
                for _ in 0..300 {
                    body(&mutate(&seed, &mut state));
                }
            }
        }
    }
}

#[cfg(test)]
mod synthetic_tests {
    use super::*;
    use crate::runtime::layout::LayoutError;

    fn parse(bytes: Vec<u8>) -> GoBinary {
        GoBinary::parse(std::path::Path::new("synthetic"), bytes).unwrap()
    }

    #[test]
    fn synthetic_dwarf_resolves_to_each_table_entry() {
        for (key, entry) in table::table() {
            assert_eq!(entry.offsets.plausibility(), Ok(()), "table entry {key}");
            let binary = parse(synth::dwarf_binary(&entry.generated_from, &entry.offsets));
            let layout = RuntimeLayout::resolve(&binary, false).unwrap();
            assert_eq!(layout.offsets_source, LayoutSource::Dwarf);
            let (got, want) = (&layout.offsets, &entry.offsets);
            assert_eq!(got.heap, want.heap, "{key}");
            assert_eq!(got.gc, want.gc, "{key}");
            assert_eq!(got.sched, want.sched, "{key}");
            assert_eq!((&got.p, &got.m), (&want.p, &want.m), "{key}");
            assert_eq!(got.cycle, want.cycle, "{key}");
            assert_eq!(got.mem_profile, want.mem_profile, "{key}");
            assert_eq!(
                layout.globals.required(RequiredGlobal::Sched),
                synth::global_address(0x80_0000, Global::Required(RequiredGlobal::Sched))
            );
        }
    }

    #[test]
    fn implausible_dwarf_sizes_are_refused_naming_the_value() {
        let entry = &table::table()["1.22"];
        type Edit = fn(&mut RuntimeOffsets);
        let cases: [(Edit, &str, u64); 3] = [
            (
                |o| o.heap.mstats_size = 1 << 40,
                "size of runtime.mstats",
                1 << 40,
            ),
            (
                |o| o.heap.size_classes = 1 << 36,
                "number of size classes",
                1 << 36,
            ),
            (
                |o| o.gc.heap_live = 1 << 40,
                "gcControllerState",
                (1 << 40) + 1,
            ),
        ];
        for (edit, what, value) in cases {
            let mut offsets = entry.offsets.clone();
            edit(&mut offsets);
            let binary = parse(synth::dwarf_binary(&entry.generated_from, &offsets));
            let err = RuntimeOffsets::from_dwarf(&binary).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, LayoutError::Implausible { .. }), "{text}");
            assert!(text.contains(what), "{text}");
            assert!(text.contains(&value.to_string()), "{text}");
        }
    }

    #[test]
    fn reference_sites_recover_the_globals_of_synthetic_code() {
        for key in ["1.22", "1.27"] {
            let entry = &table::table()[key];
            let binary = parse(synth::sites_binary(&entry.generated_from, &entry.globals));
            assert!(binary.globals.is_empty());
            let globals = Globals::from_sites(&binary, &entry.globals).unwrap();
            for global in Global::all().filter(|g| entry.globals.contains_key(g.key())) {
                assert_eq!(
                    globals.address(global),
                    Some(synth::global_address(0x80_0000, global)),
                    "{key} {}",
                    global.name()
                );
            }
            // And the whole layout resolves from the table with them.
            let layout = RuntimeLayout::resolve(&binary, false).unwrap();
            assert_eq!(layout.globals_source, GlobalsSource::CodeReferences);
        }
    }

    #[test]
    fn the_synthetic_line_table_expands_the_inlined_call() {
        let (pclntab, gofunc) = synth::pclntab();
        let table = LineTable::from_tables(&pclntab, synth::TEXT_BASE, &gofunc).unwrap();
        let frame = |f: &str, file: &str, line| crate::binary::lines::Frame {
            function: f.into(),
            file: file.into(),
            line,
        };
        assert_eq!(
            table.frames(synth::TEXT_BASE + 5),
            vec![frame("main.f", "a.go", 11)]
        );
        assert_eq!(
            table.frames(synth::TEXT_BASE + 17),
            vec![frame("main.inl", "b.go", 20), frame("main.g", "b.go", 21)]
        );
        assert_eq!(table.frames(synth::TEXT_BASE + 32), vec![]);
    }

    #[test]
    fn synthetic_profiles_read_and_loops_are_errors() {
        let layout = table::table()["1.22"].offsets.mem_profile.clone().unwrap();
        let reader = MemProfileReader::from_parts(layout.clone(), memprofile_addresses()).unwrap();
        let profile = reader
            .read(&image_memory(&profile_image(&layout, false)))
            .unwrap();
        assert_eq!(profile.records.len(), 3);
        let err = reader
            .read(&image_memory(&profile_image(&layout, true)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("loops"), "{err}");
    }
}

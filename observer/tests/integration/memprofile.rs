//! The runtime's own heap profile read from outside (runtime::memprofile)
//! against the profile the target writes of itself with runtime/pprof:
//! workloads/memprof allocates from two known functions, publishes them
//! with two GCs, stops the GC and writes its heap profile (debug=1 text,
//! raw counts, and the proto, scaled values) before saying ready. The same
//! buckets must come out of its memory with equal counts and bytes, the
//! scaled figures must equal the proto's, and the two functions must be the
//! sites. Separately, the delta between two readings equals the difference
//! of the two profiles the target writes at the window's ends. Reading
//! another process's memory needs root.

use std::{collections::HashMap, io::Read as _, path::Path};

use goscope::{
    pprof::generated as proto,
    runtime::{
        GlobalsSource, LayoutSource, RuntimeLayout,
        memprofile::{MemProfile, MemProfileReader, allocation_site},
    },
    symbols::SourceSymbolizer,
    target::TargetProcess,
};
use prost::Message as _;
use testkit::{BuildOptions, Target};

/// Go versions whose plain build is checked; the first two also stripped.
const VERSIONS: &[&str] = &["1.22", "1.27", "1.21", "1.24", "1.25"];
const STRIPPED: &[&str] = &["1.22", "1.27"];

/// (in-use objects, in-use bytes, allocated objects, allocated bytes) of
/// one record, as the debug=1 text prints them.
type Counts = [i64; 4];

/// runtime/pprof's debug=1 heap profile: the rate and each record's
/// counts and stack.
struct TextProfile {
    rate: i64,
    records: Vec<(Vec<u64>, Counts)>,
}

fn parse_text(text: &str) -> TextProfile {
    let mut lines = text.lines();
    let header = lines.next().expect("empty heap profile");
    // heap profile: 43: 1073664 [116: 4400640] @ heap/1048576
    let rate = header
        .rsplit_once("@ heap/")
        .and_then(|(_, r)| r.trim().parse::<i64>().ok())
        .unwrap_or_else(|| panic!("heap profile header {header:?}"))
        / 2;
    let mut records = Vec::new();
    for line in lines {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((counts, stack)) = line.split_once(" @ ") else {
            continue;
        };
        let numbers: Vec<i64> = counts
            .split(|c: char| !c.is_ascii_digit() && c != '-')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let Ok(counts) = <Counts>::try_from(numbers) else {
            continue;
        };
        let stack = stack
            .split_whitespace()
            .map(|pc| u64::from_str_radix(pc.trim_start_matches("0x"), 16).unwrap())
            .collect();
        records.push((stack, counts));
    }
    TextProfile { rate, records }
}

fn read_proto(path: &Path) -> proto::Profile {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    proto::Profile::decode(bytes.as_slice()).unwrap()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn check(version: &str, options: &BuildOptions, stripped: bool) {
    let what = format!("Go {version}{}", if stripped { " stripped" } else { "" });
    let binary = testkit::build_workload(version, "memprof", options)
        .unwrap_or_else(|e| panic!("building memprof with {what}: {e:#}"));
    let dir = std::env::temp_dir().join(format!("goscope-memprof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tag = options.ldflags.is_some() as u8;
    let text_path = dir.join(format!("heap-{version}-{tag}.txt"));
    let proto_path = dir.join(format!("heap-{version}-{tag}.pb.gz"));
    let target = Target::start(
        &binary,
        &[text_path.to_str().unwrap(), proto_path.to_str().unwrap()],
        &[],
    )
    .unwrap_or_else(|e| panic!("{what}: {e:#}"));

    let process = TargetProcess::open(target.pid).unwrap();
    let layout = RuntimeLayout::resolve(&process.binary, false).unwrap();
    if stripped {
        assert_eq!(layout.offsets_source, LayoutSource::VersionTable, "{what}");
        assert_eq!(
            layout.globals_source,
            GlobalsSource::CodeReferences,
            "{what}"
        );
    } else {
        assert_eq!(layout.offsets_source, LayoutSource::Dwarf, "{what}");
    }
    let bias = process.load_bias().unwrap();
    let reader = MemProfileReader::new(&layout, bias).unwrap_or_else(|e| panic!("{what}: {e}"));
    let profile: MemProfile = reader
        .read(&process.memory())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = parse_text(&std::fs::read_to_string(&text_path).unwrap());
    let pb = read_proto(&proto_path);
    drop(target);

    assert!(profile.enabled(), "{what}: {profile:?}");
    assert_eq!(profile.disabled, Some(false), "{what}");
    assert_eq!(profile.rate, text.rate, "{what}: MemProfileRate");
    assert_eq!(profile.rate, pb.period, "{what}: the proto's period");
    assert!(
        !profile.unpublished,
        "{what}: two GCs published the profile"
    );
    assert_eq!(profile.counts_only, version == "1.27", "{what}");

    // The same buckets (stack and counts). Buckets created after the
    // target's own walk (by writing the profile) have nothing published.
    let ours: Vec<(Vec<u64>, Counts)> = profile
        .records
        .iter()
        .filter(|r| r.allocs != 0 || r.frees != 0)
        .map(|r| {
            (
                r.stack.clone(),
                [
                    r.in_use_objects(),
                    r.in_use_bytes(),
                    r.allocs as i64,
                    r.alloc_bytes as i64,
                ],
            )
        })
        .collect();
    let theirs: Vec<(Vec<u64>, Counts)> = text
        .records
        .iter()
        .filter(|(_, c)| c[2] != 0)
        .cloned()
        .collect();
    // allocSmall and allocLarge at least (other buckets, e.g. the growth
    // of the slices that keep objects, may or may not be sampled).
    assert!(theirs.len() >= 2, "{what}: target profile has {theirs:?}");
    assert_eq!(
        sorted(ours),
        sorted(theirs),
        "{what}: buckets read from memory vs the target's own heap profile"
    );

    // runtime/pprof's scaled figures: the proto's sample values.
    let scaled: Vec<Vec<i64>> = profile
        .records
        .iter()
        .filter(|r| r.allocs != 0)
        .map(|r| {
            let s = r.heap_sample(profile.rate);
            vec![
                s.alloc_objects,
                s.alloc_space,
                s.inuse_objects,
                s.inuse_space,
            ]
        })
        .collect();
    let sampled: Vec<Vec<i64>> = pb
        .sample
        .iter()
        .filter(|s| s.value.first() != Some(&0))
        .map(|s| s.value.clone())
        .collect();
    assert_eq!(
        sorted(scaled),
        sorted(sampled),
        "{what}: heap_sample vs the proto's alloc_objects/alloc_space/inuse_objects/inuse_space"
    );

    // Sites: the first frame outside the runtime, symbolized from the
    // binary (pclntab, so stripped builds too).
    let symbols = SourceSymbolizer::new(&process.binary, bias);
    let mut bytes_by_site: HashMap<String, u64> = HashMap::new();
    for r in &profile.records {
        let site = allocation_site(&r.stack, |pc| {
            symbols
                .location(pc, true)
                .lines
                .into_iter()
                .map(|l| l.function)
                .collect::<Vec<_>>()
        });
        if let Some(function) = site.and_then(|s| s.function) {
            *bytes_by_site.entry(function).or_default() += r.alloc_bytes;
        }
    }
    for function in ["main.allocSmall", "main.allocLarge"] {
        assert!(
            bytes_by_site.get(function).copied().unwrap_or(0) > 0,
            "{what}: no allocation attributed to {function}: {bytes_by_site:?}"
        );
    }
    assert!(
        bytes_by_site.keys().all(|f| !f.starts_with("runtime.")),
        "{what}: a runtime frame named as a site: {bytes_by_site:?}"
    );
    eprintln!(
        "{what}: {} buckets, {} published, equal to the target's profile; sites {bytes_by_site:?}",
        profile.records.len(),
        profile.records.iter().filter(|r| r.allocs != 0).count()
    );
    let _ = std::fs::remove_file(&text_path);
    let _ = std::fs::remove_file(&proto_path);
}

#[test]
fn heap_profile_read_from_memory_equals_the_targets_own() {
    if !testkit::require_root_or_skip("memprofile") {
        return;
    }
    for version in VERSIONS {
        if testkit::go_binary(version).is_err() {
            eprintln!("SKIP Go {version}: not installed");
            continue;
        }
        check(version, &BuildOptions::default(), false);
        if STRIPPED.contains(version) {
            let options = BuildOptions {
                ldflags: Some("-s -w".into()),
                ..Default::default()
            };
            check(version, &options, true);
        }
    }
}

/// Walks while the target adds buckets and publishes cycles: every read
/// ends (bounded), as a profile or as "mProfCycle kept moving", never as a
/// bad pointer, a loop or a hang.
#[test]
fn reading_while_the_target_allocates_and_collects() {
    if !testkit::require_root_or_skip("memprofile") {
        return;
    }
    for version in STRIPPED {
        let binary = testkit::build_workload(version, "memprof", &BuildOptions::default())
            .unwrap_or_else(|e| panic!("building memprof with Go {version}: {e:#}"));
        let dir =
            std::env::temp_dir().join(format!("goscope-memprof-churn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (text, pb) = (dir.join("heap.txt"), dir.join("heap.pb.gz"));
        let target = Target::start(
            &binary,
            &[text.to_str().unwrap(), pb.to_str().unwrap()],
            &[("MEMPROF_CHURN", "1")],
        )
        .unwrap();
        let process = TargetProcess::open(target.pid).unwrap();
        let layout = RuntimeLayout::resolve(&process.binary, false).unwrap();
        let reader = MemProfileReader::new(&layout, process.load_bias().unwrap()).unwrap();
        let memory = process.memory();
        let (mut read, mut moving, mut cycles) = (0, 0, std::collections::BTreeSet::new());
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(3) {
            match reader.read(&memory) {
                Ok(profile) => {
                    read += 1;
                    cycles.insert(profile.cycle);
                    assert!(
                        profile.records.iter().all(|r| !r.stack.is_empty()),
                        "Go {version}: a bucket without a stack"
                    );
                }
                Err(goscope::runtime::MemProfileError::Unstable { .. }) => moving += 1,
                Err(e) => panic!("Go {version}: reading while the target allocates: {e}"),
            }
        }
        drop(target);
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "Go {version} churning: {read} reads, {moving} with mProfCycle moving, {} cycles seen",
            cycles.len()
        );
        assert!(read > 0, "Go {version}: no read completed");
        assert!(
            cycles.len() > 1,
            "Go {version}: the target published no new cycle"
        );
    }
}

/// Allocated (objects, bytes) by stack, summed over the buckets of each
/// stack (one per object size), leaving out stacks that allocated nothing.
fn allocated_by_stack(
    records: impl Iterator<Item = (Vec<u64>, i64, i64)>,
) -> Vec<(Vec<u64>, [i64; 2])> {
    let mut by_stack: HashMap<Vec<u64>, [i64; 2]> = HashMap::new();
    for (stack, objects, bytes) in records {
        let e = by_stack.entry(stack).or_default();
        e[0] += objects;
        e[1] += bytes;
    }
    sorted(by_stack.into_iter().filter(|(_, v)| *v != [0, 0]).collect())
}

/// The window delta: what two readings from outside (before the target's
/// baseline, after its batch) say each stack allocated equals the
/// difference of the two heap profiles the target wrote of itself at
/// those points (the target runs no GC in between but its batch's),
/// except for the allocations of that profile writing itself, and the
/// sites built from it count the same samples.
#[test]
fn window_delta_equals_the_difference_of_the_targets_own_profiles() {
    if !testkit::require_root_or_skip("memprofile window delta") {
        return;
    }
    for version in STRIPPED {
        let binary = testkit::build_workload(version, "memprof", &BuildOptions::default())
            .unwrap_or_else(|e| panic!("building memprof with Go {version}: {e:#}"));
        let dir = std::env::temp_dir().join(format!(
            "goscope-memprof-window-{}-{version}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut target = Target::start(
            &binary,
            &["serve", "sites"],
            &[
                ("MEMPROF_WRITE_DIR", dir.to_str().unwrap()),
                ("MEMPROF_RATE", "65536"),
            ],
        )
        .unwrap();
        let process = TargetProcess::open(target.pid).unwrap();
        let layout = RuntimeLayout::resolve(&process.binary, false).unwrap();
        let bias = process.load_bias().unwrap();
        let reader = MemProfileReader::new(&layout, bias).unwrap();
        let first = reader.read(&process.memory()).unwrap();
        target.baseline().unwrap();
        target.run_batch().unwrap();
        let last = reader.read(&process.memory()).unwrap();
        let start = parse_text(&std::fs::read_to_string(dir.join("start.txt")).unwrap());
        let end = parse_text(&std::fs::read_to_string(dir.join("end.txt")).unwrap());
        let symbols = SourceSymbolizer::new(&process.binary, bias);
        let sites =
            goscope::alloc_sites::heap_sites(&first, &last, 1.0, |pc| symbols.location(pc, true));
        drop(target);
        let _ = std::fs::remove_dir_all(&dir);

        let what = format!("Go {version}");
        assert_eq!(last.rate, 65536, "{what}");
        let minus = |a: &[(Vec<u64>, [i64; 2])], b: &[(Vec<u64>, [i64; 2])]| {
            let before: HashMap<_, _> = b.iter().cloned().collect();
            allocated_by_stack(a.iter().map(|(stack, v)| {
                let w = before.get(stack).copied().unwrap_or_default();
                (stack.clone(), v[0] - w[0], v[1] - w[1])
            }))
        };
        let ours = minus(
            &allocated_by_stack(
                last.records
                    .iter()
                    .map(|r| (r.stack.clone(), r.allocs as i64, r.alloc_bytes as i64)),
            ),
            &allocated_by_stack(
                first
                    .records
                    .iter()
                    .map(|r| (r.stack.clone(), r.allocs as i64, r.alloc_bytes as i64)),
            ),
        );
        let theirs = minus(
            &allocated_by_stack(end.records.iter().map(|(s, c)| (s.clone(), c[2], c[3]))),
            &allocated_by_stack(start.records.iter().map(|(s, c)| (s.clone(), c[2], c[3]))),
        );
        assert!(
            theirs.len() >= 2,
            "{what}: the target's profiles differ in {theirs:?}"
        );
        // Stack by stack, the same, except where the target wrote its own
        // profiles. runtime/pprof allocates its record slice between its
        // two MemProfile calls; while no sample has been published yet
        // (at 64 KiB a sample, the idle target before its batch may have
        // none), MemProfile counts every future cycle, so the target's
        // start profile holds that slice's sample, which goscope's reading
        // just before it could not. Such stacks may count more in
        // goscope's window, which holds the target's; every other stack,
        // the batch's sites among them, is exactly the target's, and there
        // is no other.
        let writes_its_profile = |stack: &[u64]| {
            stack.iter().any(|&pc| {
                symbols
                    .location(pc, true)
                    .lines
                    .iter()
                    .any(|l| l.function.starts_with("runtime/pprof."))
            })
        };
        let theirs_by_stack: HashMap<&Vec<u64>, [i64; 2]> =
            theirs.iter().map(|(s, v)| (s, *v)).collect();
        let mut own_writing = 0;
        for (stack, v) in &ours {
            let want = theirs_by_stack.get(stack).copied().unwrap_or_default();
            if writes_its_profile(stack) {
                assert!(
                    v[0] >= want[0] && v[1] >= want[1],
                    "{what}: the target's profile writing at {stack:x?}: {v:?} from memory, {want:?} in its profiles"
                );
                own_writing += 1;
            } else {
                assert_eq!(
                    *v, want,
                    "{what}: stack {stack:x?}: the window's delta read from memory vs the target's end profile minus its start profile; all: {ours:?} vs {theirs:?}"
                );
            }
        }
        for (stack, v) in &theirs {
            assert!(
                ours.iter().any(|(s, _)| s == stack),
                "{what}: stack {stack:x?} ({v:?}) in the target's profiles only; all: {ours:?} vs {theirs:?}"
            );
        }
        let samples: i64 = ours.iter().map(|(_, v)| v[0]).sum();
        assert_eq!(sites.samples as i64, samples, "{what}");
        for function in ["main.sitesSmall", "main.sitesLarge"] {
            assert!(
                sites
                    .sites
                    .iter()
                    .any(|s| s.function == function && s.samples > 0),
                "{what}: {function} missing from {:?}",
                sites.sites
            );
        }
        eprintln!(
            "{what}: {} stacks allocated in the window, {samples} samples, equal to the target's own profiles ({own_writing} of them its profile writing)",
            ours.len()
        );
    }
}

//! Fuzzes RuntimeSnapshot::read over fuzzed target memory (hostile pointers
//! and lengths) with real layouts from the version table.
//! The body is goscope::fuzzing::snapshot, which `cargo test` also replays
//! over fuzz/corpus/snapshot.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::snapshot(data));

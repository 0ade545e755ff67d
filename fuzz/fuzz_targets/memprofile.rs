//! Fuzzes the memory-profile reader (runtime.mbuckets walk) over fuzzed
//! target memory.
//! The body is goscope::fuzzing::memprofile, which `cargo test` also replays
//! over fuzz/corpus/memprofile.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::memprofile(data));

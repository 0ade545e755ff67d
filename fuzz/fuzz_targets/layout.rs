//! Fuzzes layout resolution from DWARF (RuntimeOffsets::from_dwarf,
//! RuntimeLayout::resolve) on a fuzzed executable.
//! The body is goscope::fuzzing::layout, which `cargo test` also replays
//! over fuzz/corpus/layout.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::layout(data));

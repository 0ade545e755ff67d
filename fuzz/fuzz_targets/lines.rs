//! Fuzzes the pclntab line tables (PC to function, file, line, inlined calls)
//! over a fuzzed table.
//! The body is goscope::fuzzing::lines, which `cargo test` also replays
//! over fuzz/corpus/lines.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::lines(data));

//! Fuzzes runtime global recovery from reference sites (Globals::from_sites)
//! on a fuzzed executable, and the RIP-relative operand decoder.
//! The body is goscope::fuzzing::globals, which `cargo test` also replays
//! over fuzz/corpus/globals.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::globals(data));

//! Fuzzes the /proc parsers (stat fields, the load bias from maps).
//! The body is goscope::fuzzing::proc, which `cargo test` also replays
//! over fuzz/corpus/proc.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::proc(data));

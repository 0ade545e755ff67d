//! Fuzzes the goroutine-table reader (runtime.allgs walk, wait reasons,
//! creation-site estimates) over fuzzed target memory.
//! The body is goscope::fuzzing::goroutines::body, which `cargo test` also
//! replays over fuzz/corpus/goroutines.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::goroutines::body(data));

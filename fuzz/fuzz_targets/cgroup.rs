//! Fuzzes the cgroup parsers (/proc/PID/cgroup, cpu.stat, cpu.max).
//! The body is goscope::fuzzing::cgroup, which `cargo test` also replays
//! over fuzz/corpus/cgroup.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| goscope::fuzzing::cgroup(data));

//! Fuzzes the .go.buildinfo parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = goscope::binary::BuildInfo::parse(data);
});

//! Fuzzes the prologue and RET decoders on arbitrary code bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = goscope::binary::prologue::probe_site(0x40_0000, data);
    let _ = goscope::binary::prologue::return_sites(0x40_0000, data);
});

//! Fuzzes whole-binary parsing (ELF, buildinfo, symbols, pclntab) and probe
//! resolution.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(binary) =
        goscope::binary::GoBinary::parse(std::path::Path::new("fuzz"), data.to_vec())
    {
        let _ = goscope::probe_points::resolve(&binary, goscope::probe_points::GC_MARK_TERMINATION);
    }
});

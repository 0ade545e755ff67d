//! Fuzzes the pclntab parser on ELF files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(file) = object::File::parse(data) {
        let _ = goscope::binary::pclntab::Pclntab::parse(&file);
    }
});

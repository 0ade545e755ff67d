//! Fuzzes DWARF type loading and field lookup.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(file) = object::File::parse(data) {
        if let Ok(types) = goscope::binary::dwarf::DwarfTypes::load(&file) {
            let _ = types.field("runtime.schedt", "gFree.stack.size");
        }
    }
});

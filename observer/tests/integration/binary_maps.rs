//! Mapping binaries exactly: function addresses from .gopclntab (what
//! stripped binaries keep) against .symtab of the same build, for every
//! installed Go version and for internal (no cgo) and external (cgo)
//! linking; malformed binaries give errors, never panics.

use std::path::Path;

use goscope::binary::{FunctionTable, GoBinary, pclntab::Pclntab};
use object::Object as _;
use testkit::BuildOptions;

use crate::util::loadgen;

fn compare_pclntab_with_symtab(version: &str, binary: &Path) -> usize {
    let data = std::fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let symtab = FunctionTable::from_symtab(&file);
    let pclntab = Pclntab::parse(&file).unwrap_or_else(|e| panic!("Go {version}: {e}"));
    let mut compared = 0;
    for (name, entries) in &pclntab.functions {
        match entries.as_slice() {
            [single] => {
                let Some(expected) = symtab.get(name) else {
                    continue;
                };
                assert_eq!(
                    single.address,
                    expected.address,
                    "Go {version} {}: {name} pclntab {:#x} vs symtab {:#x}",
                    binary.display(),
                    single.address,
                    expected.address
                );
                compared += 1;
            }
            several => {
                // An ABI0 wrapper and the ABIInternal body share the name.
                let body = symtab.get(name).map(|s| s.address);
                let wrapper = symtab.get(&format!("{name}.abi0")).map(|s| s.address);
                for entry in several {
                    assert!(
                        Some(entry.address) == body || Some(entry.address) == wrapper,
                        "Go {version}: duplicate {name} at {:#x} is neither {body:x?} nor {wrapper:x?}",
                        entry.address
                    );
                }
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn pclntab_addresses_equal_symtab_for_every_installed_version() {
    let versions = testkit::installed_go_versions();
    assert!(
        !versions.is_empty(),
        "no Go toolchains installed: run scripts/setup.sh"
    );
    for version in &versions {
        for cgo in [false, true] {
            let binary = loadgen(
                version,
                &BuildOptions {
                    cgo,
                    ..Default::default()
                },
            );
            let compared = compare_pclntab_with_symtab(version, &binary);
            assert!(
                compared > 1000,
                "Go {version}: only {compared} functions compared"
            );
        }
    }
}

#[test]
fn stripped_binaries_resolve_probe_points_through_the_pclntab() {
    for version in ["1.21", "1.22", "1.27"] {
        for cgo in [false, true] {
            for buildmode in [None, Some("pie".to_string())] {
                let plain = BuildOptions {
                    cgo,
                    buildmode: buildmode.clone(),
                    ..Default::default()
                };
                let stripped = BuildOptions {
                    ldflags: Some("-s -w".into()),
                    ..plain.clone()
                };
                let plain = GoBinary::open(&loadgen(version, &plain)).unwrap();
                let stripped = GoBinary::open(&loadgen(version, &stripped)).unwrap();
                assert!(!stripped.has_symtab);
                let label = format!("Go {version} cgo={cgo} {buildmode:?}");
                let point = goscope::probe_points::resolve(&stripped, "runtime.gcMarkTermination")
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let reference =
                    goscope::probe_points::resolve(&plain, "runtime.gcMarkTermination").unwrap();
                assert_eq!(
                    point.address, reference.address,
                    "{label}: stripped vs unstripped twin"
                );
                assert_eq!(point.placement, reference.placement, "{label}");
            }
        }
    }
}

/// Truncated and corrupted real binaries must give errors, not panics.
#[test]
fn malformed_binaries_give_errors_not_panics() {
    let binary = loadgen(
        "1.27",
        &BuildOptions {
            ldflags: Some("-s -w".into()),
            ..Default::default()
        },
    );
    let data = std::fs::read(&binary).unwrap();
    let path = Path::new("malformed");
    let mut cuts: Vec<usize> = (0..64).map(|i| data.len() * i / 64).collect();
    cuts.extend([0, 1, 4, 16, 63, 64, 65]);
    for cut in cuts {
        let _ = GoBinary::parse(path, data[..cut].to_vec()).map(|b| {
            let _ = goscope::probe_points::resolve(&b, "runtime.gcMarkTermination");
        });
    }
    // Flip bytes across the file, including the headers and the pclntab.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        let mut corrupted = data.clone();
        for _ in 0..16 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize)
                % corrupted
                    .len()
                    .min(if seed % 3 == 0 { 4096 } else { usize::MAX });
            corrupted[at] ^= (seed >> 32) as u8 | 1;
        }
        if let Ok(b) = GoBinary::parse(path, corrupted) {
            let _ = goscope::probe_points::resolve(&b, "runtime.gcMarkTermination");
            let _ = b.object().map(|o| o.sections().count());
        }
    }
}

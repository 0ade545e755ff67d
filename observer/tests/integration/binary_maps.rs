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
                let point = goscope::probe_points::resolve(
                    &stripped,
                    goscope::probe_points::GC_MARK_TERMINATION,
                )
                .unwrap_or_else(|e| panic!("{label}: {e}"));
                let reference = goscope::probe_points::resolve(
                    &plain,
                    goscope::probe_points::GC_MARK_TERMINATION,
                )
                .unwrap();
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
            let _ = goscope::probe_points::resolve(&b, goscope::probe_points::GC_MARK_TERMINATION);
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
                % corrupted.len().min(if seed.is_multiple_of(3) {
                    4096
                } else {
                    usize::MAX
                });
            corrupted[at] ^= (seed >> 32) as u8 | 1;
        }
        if let Ok(b) = GoBinary::parse(path, corrupted) {
            let _ = goscope::probe_points::resolve(&b, goscope::probe_points::GC_MARK_TERMINATION);
            // Line tables of a corrupted pclntab: errors or garbage, never
            // a panic or a hang.
            if let Ok(lines) = goscope::binary::lines::LineTable::parse(&b) {
                for f in b.functions.iter().take(200) {
                    let _ = lines.frames(f.address + f.size / 2);
                }
            }
            let _ = b.object().map(|o| o.sections().count());
        }
    }
}

/// pclntab line tables against `go tool addr2line` (the Go toolchain's own
/// reader: outer function name, innermost file:line), and the stripped twin
/// giving the same frames, inlined calls included.
#[test]
fn line_tables_agree_with_go_tool_addr2line() {
    use goscope::binary::lines::LineTable;
    use std::io::Write as _;
    for version in ["1.22", "1.27"] {
        let plain_path = loadgen(version, &crate::util::cgo());
        let stripped_path = loadgen(
            version,
            &BuildOptions {
                ldflags: Some("-s -w".into()),
                ..crate::util::cgo()
            },
        );
        let plain = GoBinary::open(&plain_path).unwrap();
        let stripped = GoBinary::open(&stripped_path).unwrap();
        let table = LineTable::parse(&plain).unwrap_or_else(|e| panic!("Go {version}: {e}"));
        let stripped_table =
            LineTable::parse(&stripped).unwrap_or_else(|e| panic!("Go {version} stripped: {e}"));
        let mut functions: Vec<_> = plain.functions.iter().filter(|f| f.size > 8).collect();
        functions.sort_by_key(|f| f.address);
        let pcs: Vec<u64> = functions
            .iter()
            .step_by(7)
            .flat_map(|f| [f.address, f.address + f.size / 2, f.address + f.size - 1])
            .collect();
        let go = testkit::go_binary(version).unwrap();
        let mut child = std::process::Command::new(go)
            .args(["tool", "addr2line"])
            .arg(&plain_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), pcs.len() * 2, "Go {version}: addr2line output");
        let (mut compared, mut inlined) = (0, 0);
        for (i, pc) in pcs.iter().enumerate() {
            let (function, position) = (lines[2 * i], lines[2 * i + 1]);
            if function == "?" {
                continue;
            }
            let frames = table.frames(*pc);
            let innermost = frames
                .first()
                .unwrap_or_else(|| panic!("Go {version}: no frame at {pc:#x}"));
            let outer = frames.last().unwrap();
            assert_eq!(outer.function, function, "Go {version} at {pc:#x}");
            assert_eq!(
                format!("{}:{}", innermost.file, innermost.line),
                position,
                "Go {version} at {pc:#x} ({function})"
            );
            assert_eq!(
                stripped_table.frames(*pc),
                frames,
                "Go {version} stripped at {pc:#x}"
            );
            compared += 1;
            inlined += usize::from(frames.len() > 1);
        }
        assert!(compared > 500, "Go {version}: only {compared} PCs compared");
        assert!(
            inlined > 20,
            "Go {version}: only {inlined} PCs inside inlined calls"
        );
    }
}

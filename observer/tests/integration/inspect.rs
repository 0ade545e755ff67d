//! `goscope inspect` against real Go builds: build settings from buildinfo,
//! and probe addresses cross-checked with `go tool objdump`.

use std::process::Command;

use testkit::{BuildOptions, Target};

use crate::util::{self, cgo, goscope_json, hex_address, loadgen};

/// The address of the instruction after the first JBE of `function`, as
/// `go tool objdump` disassembles it: ground truth for the after-prologue
/// probe address.
fn objdump_after_prologue(version: &str, binary: &std::path::Path, function: &str) -> u64 {
    let go = testkit::go_binary(version).unwrap();
    let out = Command::new(go)
        .args([
            "tool",
            "objdump",
            "-s",
            &format!("^{}$", regex_escape(function)),
        ])
        .arg(binary)
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go tool objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let addresses: Vec<(u64, String)> = text
        .lines()
        .filter_map(|line| {
            // "  file.go:N <tabs> 0xADDR <tabs> HEX <tabs> ASM"
            let fields: Vec<&str> = line
                .split('\t')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .collect();
            let address = fields.get(1)?.strip_prefix("0x")?;
            let address = u64::from_str_radix(address, 16).ok()?;
            Some((address, fields.get(3)?.to_string()))
        })
        .collect();
    let jbe = addresses
        .iter()
        .take(5)
        .position(|(_, asm)| asm.starts_with("JBE"))
        .unwrap_or_else(|| panic!("no JBE in the first instructions of {function}:\n{text}"));
    addresses[jbe + 1].0
}

fn regex_escape(name: &str) -> String {
    name.replace('.', "\\.")
        .replace('(', "\\(")
        .replace(')', "\\)")
        .replace('*', "\\*")
}

#[test]
fn reports_build_settings_and_decoded_probe_addresses() {
    for version in util::GC_PROBE_VERSIONS {
        let binary = loadgen(version, &cgo());
        let path = binary.to_str().unwrap();
        let report = goscope_json(&["inspect", path, "--json"]);
        assert_eq!(report["go_version"], util::toolchain_version(version));
        assert_eq!(report["cgo"], true);
        assert_eq!(report["stripped"], false);
        assert_eq!(report["dwarf"], true);
        assert_eq!(report["pie"], false);
        assert_eq!(report["goarch"], "amd64");
        assert_eq!(report["module_path"], "goscope.dev/workloads/loadgen");
        // Every function any command probes is listed, with its decoded
        // address; those with a stack check agree with go tool objdump.
        for function in goscope::probe_points::PROBED_FUNCTIONS {
            assert!(
                report["functions"][function.name].is_string(),
                "Go {version}: inspect does not list {}: {report}",
                function.name
            );
        }
        for function in [
            "runtime.gcMarkTermination",
            "runtime.(*mcache).refill",
            "runtime.(*mcache).allocLarge",
            "runtime.newproc",
        ] {
            let address = hex_address(&report["functions"][function]);
            assert_eq!(
                address,
                objdump_after_prologue(version, &binary, function),
                "Go {version}: probe address of {function} disagrees with go tool objdump"
            );
        }
    }
}

#[test]
fn reports_stripped_and_pie_builds() {
    let version = "1.27";
    let stripped = loadgen(
        version,
        &BuildOptions {
            ldflags: Some("-s -w".into()),
            ..Default::default()
        },
    );
    let report = goscope_json(&["inspect", stripped.to_str().unwrap(), "--json"]);
    assert_eq!(report["stripped"], true);
    assert_eq!(report["dwarf"], false);
    assert_eq!(report["cgo"], false);
    assert_eq!(report["ldflags"], "-s -w");
    // No .symtab: the address comes from the pclntab and matches what go
    // tool objdump decodes in the unstripped twin (same code layout).
    assert_eq!(report["probes"][0]["source"], "pclntab", "{report}");
    let twin = loadgen(version, &BuildOptions::default());
    assert_eq!(
        hex_address(&report["functions"]["runtime.gcMarkTermination"]),
        objdump_after_prologue(version, &twin, "runtime.gcMarkTermination")
    );

    let pie = loadgen(
        version,
        &BuildOptions {
            buildmode: Some("pie".into()),
            ..Default::default()
        },
    );
    let report = goscope_json(&["inspect", pie.to_str().unwrap(), "--json"]);
    assert_eq!(report["pie"], true);
    assert_eq!(report["buildmode"], "pie");
    let address = hex_address(&report["functions"]["runtime.gcMarkTermination"]);
    assert_eq!(
        address,
        objdump_after_prologue(version, &pie, "runtime.gcMarkTermination")
    );
}

#[test]
fn inspects_a_running_process_by_pid() {
    let binary = loadgen("1.22", &cgo());
    let target = Target::start(&binary, &["-work", "idle"], &[]).unwrap();
    let pid = target.pid.to_string();
    let report = goscope_json(&["inspect", &pid, "--json"]);
    assert_eq!(report["pid"], target.pid);
    assert_eq!(report["exe"], binary.to_str().unwrap());
    assert!(report["go_version"].as_str().unwrap().starts_with("go1.22"));

    let text = testkit::goscope::run(&["inspect", &pid]).unwrap();
    assert!(text.status.success());
    assert!(text.stdout.contains(&format!("pid          {pid}")));
    assert!(text.stdout.contains("runtime.gcMarkTermination"));
    target.quit().unwrap();
}

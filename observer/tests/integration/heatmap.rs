//! `goscope heatmap` against ground truth: over a window holding one batch
//! of the "sites" workload, the bytes in the heatmap's cells add up to what
//! the runtime itself counted (/gc/heap/allocs:bytes), the rows are the
//! size classes the workload allocates, the SVG is well-formed XML and the
//! HTML needs nothing from the network.

use testkit::require_root_or_skip;

use crate::util::{cgo, loadgen};

/// The target allocates a little after its own reading (printing the
/// result); goscope's last column reads after that.
const SLACK_BYTES: f64 = 256.0 * 1024.0;

fn cell_bytes(document: &str) -> (f64, usize) {
    let mut total = 0.0;
    let mut cells = 0;
    for part in document.split("data-bytes=\"").skip(1) {
        let value: f64 = part.split('"').next().unwrap().parse().unwrap();
        total += value;
        cells += 1;
    }
    (total, cells)
}

fn well_formed_xml(path: &std::path::Path) {
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(path)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{} is not well-formed XML",
        path.display()
    );
}

#[test]
fn heatmap_cells_add_up_to_the_runtimes_own_count() {
    if !require_root_or_skip("heatmap_cells_add_up_to_the_runtimes_own_count") {
        return;
    }
    let binary = loadgen("1.22", &cgo());
    let dir = std::env::temp_dir().join(format!("goscope-heatmap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["sites.svg", "sites.html"] {
        let path = dir.join(name);
        let path_arg = path.display().to_string();
        let (finished, truth) = testkit::observe::around_batch(
            &binary,
            &["-work", "sites", "-scale", "3"],
            &[],
            "heatmap",
            &["--interval-ms", "200", "-o", &path_arg],
        )
        .unwrap();
        assert!(finished.stderr.contains("wrote"), "{}", finished.stderr);
        let document = std::fs::read_to_string(&path).unwrap();
        let (total, cells) = cell_bytes(&document);
        let want = truth.delta("/gc/heap/allocs:bytes").unwrap();
        assert!(cells > 0, "{name}: no cells");
        assert!(
            (total - want).abs() <= want * 0.01 + SLACK_BYTES,
            "{name}: cells hold {total} bytes, the runtime counted {want}"
        );
        for row in ["48 B", "1024 B", "large"] {
            assert!(
                document.contains(&format!(">{row}</text>")),
                "{name}: no row {row}"
            );
        }
        assert!(
            document.contains("time since start")
                && document.contains("bytes allocated per second")
        );
        if name.ends_with(".svg") {
            well_formed_xml(&path);
        } else {
            assert!(document.starts_with("<!DOCTYPE html>"));
            for external in ["src=", "href=", "@import", "url("] {
                assert!(!document.contains(external), "{name} refers to {external}");
            }
            let without_namespace = document.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !without_namespace.contains("http"),
                "{name} refers to the network"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

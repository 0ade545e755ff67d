//! The per-version runtime table: regenerating it from this machine's
//! toolchains gives the checked-in file (drift fails), and its global
//! reference sites resolve to the .symtab addresses in builds the generator
//! never saw (PIE with cgo).

use goscope::{
    binary::GoBinary,
    runtime::{
        Globals,
        globals::Global,
        table::{self, ReferenceBuilds},
    },
};
use testkit::BuildOptions;

use crate::util::loadgen;

fn reference_builds(version: &str) -> Vec<GoBinary> {
    [
        (
            "loadgen",
            BuildOptions {
                cgo: true,
                ..Default::default()
            },
        ),
        ("loadgen", BuildOptions::default()),
        ("minimal", BuildOptions::default()),
    ]
    .iter()
    .map(|(name, options)| {
        GoBinary::open(&testkit::build_workload(version, name, options).unwrap()).unwrap()
    })
    .collect()
}

#[test]
fn checked_in_table_matches_a_regeneration() {
    let checked_in = table::table();
    for version in testkit::installed_go_versions() {
        let builds = reference_builds(&version);
        let refs: Vec<&GoBinary> = builds.iter().collect();
        let regenerated = table::generate_entry(&ReferenceBuilds { builds: &refs })
            .unwrap_or_else(|e| panic!("Go {version}: {e}"));
        let key = table::key(builds[0].go_version());
        let entry = checked_in.get(&key).unwrap_or_else(|| {
            panic!("version_table.json lacks Go {key}: run cargo xtask runtime-table")
        });
        if entry.generated_from != regenerated.generated_from {
            eprintln!(
                "SKIP Go {key}: table made from {}, toolchain here is {}",
                entry.generated_from, regenerated.generated_from
            );
            continue;
        }
        assert_eq!(
            entry, &regenerated,
            "version_table.json drifted for Go {key}: run cargo xtask runtime-table"
        );
    }
    for ci_version in ["1.21", "1.22", "1.24", "1.25", "1.27"] {
        assert!(
            checked_in[ci_version].verified,
            "Go {ci_version} must be verified"
        );
    }
    assert!(
        !checked_in["1.20"].verified,
        "Go 1.20 could not be verified here"
    );
}

#[test]
fn reference_sites_resolve_in_unseen_builds() {
    for version in testkit::installed_go_versions() {
        let pie = GoBinary::open(&loadgen(
            &version,
            &BuildOptions {
                cgo: true,
                buildmode: Some("pie".into()),
                ..Default::default()
            },
        ))
        .unwrap();
        let entry = table::entry(pie.go_version()).expect("table entry");
        let recovered = Globals::from_sites(&pie, &entry.globals)
            .unwrap_or_else(|e| panic!("Go {version} PIE: {e}"));
        let truth = Globals::from_symtab(&pie).unwrap();
        for global in Global::all() {
            assert_eq!(
                recovered.address(global),
                truth.address(global),
                "Go {version} PIE+cgo: {} recovered from code vs .symtab",
                global.name()
            );
        }
    }
}

//! `cargo xtask runtime-table`: regenerates observer/src/runtime/
//! version_table.json from reference builds of workloads/ with every
//! installed Go toolchain (struct offsets from DWARF, reference sites of
//! runtime globals checked across three different programs/link modes).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use goscope::{
    binary::GoBinary,
    runtime::table::{self, ReferenceBuilds, VersionTable},
};
use testkit::BuildOptions;

#[derive(Debug, Args)]
pub struct RuntimeTableArgs {
    /// Go versions to (re)generate; default: every installed toolchain.
    #[arg(long, value_delimiter = ',')]
    go: Vec<String>,
}

/// Minor versions that no toolchain here can verify, and the verified
/// entry each is copied from (marked unverified; refused unless forced).
const UNVERIFIABLE: &[(&str, &str)] = &[("1.20", "1.21")];

pub fn table_path() -> PathBuf {
    testkit::workspace_root().join("observer/src/runtime/version_table.json")
}

/// Generates one version's entry from three reference builds.
pub fn generate(version: &str) -> anyhow::Result<table::VersionEntry> {
    let builds = [
        (
            "loadgen",
            BuildOptions {
                cgo: true,
                ..Default::default()
            },
        ),
        ("loadgen", BuildOptions::default()),
        ("minimal", BuildOptions::default()),
    ];
    let binaries = builds
        .iter()
        .map(|(name, options)| {
            let path = testkit::build_workload(version, name, options)?;
            GoBinary::open(&path).with_context(|| format!("reading {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&GoBinary> = binaries.iter().collect();
    table::generate_entry(&ReferenceBuilds { builds: &refs })
        .map_err(|e| anyhow::anyhow!("Go {version}: {e}"))
}

pub fn run(args: &RuntimeTableArgs) -> anyhow::Result<()> {
    let versions = if args.go.is_empty() {
        testkit::all_go_versions()
    } else {
        args.go.clone()
    };
    let mut table: VersionTable =
        serde_json::from_str(table::checked_in_json()).unwrap_or_default();
    for version in &versions {
        let entry = generate(version)?;
        let key = format!("1.{}", version.split('.').nth(1).unwrap_or_default());
        println!(
            "{key}: from {} ({} globals)",
            entry.generated_from,
            entry.globals.len()
        );
        table.insert(key, entry);
    }
    for (unverified, from) in UNVERIFIABLE {
        if let Some(source) = table.get(*from).cloned() {
            let mut copy = source;
            copy.verified = false;
            copy.generated_from = format!(
                "{} (copied: no go{unverified} toolchain here)",
                copy.generated_from
            );
            table.insert(unverified.to_string(), copy);
        }
    }
    let mut json = serde_json::to_string_pretty(&table)?;
    json.push('\n');
    std::fs::write(table_path(), json)?;
    println!("wrote {}", table_path().display());
    Ok(())
}

//! The per-Go-minor-version table for binaries without DWARF or .symtab:
//! struct offsets and global reference sites, generated from reference
//! builds by `cargo xtask runtime-table` (checked in as version_table.json;
//! a test regenerates it and fails on drift).

use std::{collections::BTreeMap, sync::OnceLock};

use serde::{Deserialize, Serialize};

use super::{globals::ReferenceSite, layout::RuntimeOffsets};
use crate::binary::GoVersion;

/// One Go minor version's entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionEntry {
    /// The release the entry was generated from, e.g. go1.22.10.
    pub generated_from: String,
    /// False for a version no toolchain could check here (copied from the
    /// nearest verified one): refused unless the user forces it.
    pub verified: bool,
    pub offsets: RuntimeOffsets,
    /// Reference sites by global key (`globals::Global::key`).
    pub globals: BTreeMap<String, ReferenceSite>,
}

/// The whole table, keyed by minor version ("1.22").
pub type VersionTable = BTreeMap<String, VersionEntry>;

static TABLE_JSON: &str = include_str!("version_table.json");

/// The checked-in table (parsed once).
pub fn table() -> &'static VersionTable {
    static TABLE: OnceLock<VersionTable> = OnceLock::new();
    TABLE.get_or_init(|| serde_json::from_str(TABLE_JSON).unwrap_or_default())
}

pub fn key(version: GoVersion) -> String {
    format!("1.{}", version.minor)
}

pub fn entry(version: GoVersion) -> Option<&'static VersionEntry> {
    table().get(&key(version))
}

/// The table as checked in (for the drift test).
pub fn checked_in_json() -> &'static str {
    TABLE_JSON
}

/// Reference builds of one Go version for generating its entry: the first
/// is the one offsets come from; every build must have DWARF and .symtab.
pub struct ReferenceBuilds<'a> {
    pub builds: &'a [&'a crate::binary::GoBinary],
}

/// Builds one version's entry from reference builds (all of the same Go
/// release): offsets from the first build's DWARF, and for each global the
/// smallest runtime function whose reference resolves correctly in all.
pub fn generate_entry(refs: &ReferenceBuilds<'_>) -> Result<VersionEntry, String> {
    use super::globals::Global;
    let first = refs.builds.first().ok_or("no reference build")?;
    let offsets = RuntimeOffsets::from_dwarf(first).map_err(|e| e.to_string())?;
    let mut globals = BTreeMap::new();
    for global in Global::all() {
        let located: Option<Vec<(&crate::binary::GoBinary, u64)>> = refs
            .builds
            .iter()
            .map(|b| {
                global
                    .names()
                    .iter()
                    .find_map(|n| b.globals.get(n))
                    .map(|g| (*b, g.address))
            })
            .collect();
        let Some(located) = located else {
            if global.is_required() {
                return Err(format!(
                    "{} missing from a reference build",
                    global.names().join("|")
                ));
            }
            continue;
        };
        let size = global
            .names()
            .iter()
            .find_map(|n| first.globals.get(n))
            .map_or(1, |g| g.size);
        let site = ReferenceSite::find(&located, size)
            .ok_or_else(|| format!("no stable reference site for {}", global.name()))?;
        globals.insert(global.key().to_string(), site);
    }
    Ok(VersionEntry {
        generated_from: first.build.go_version_string.clone(),
        verified: true,
        offsets,
        globals,
    })
}

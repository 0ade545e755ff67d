//! Test and benchmark support shared by goscope's integration tests and
//! xtask: Go toolchains installed by scripts/setup.sh, builds of the Go
//! workloads in workloads/, and line-protocol drivers for a running target
//! and a running goscope.

pub mod goscope;
pub mod observe;
pub mod privileges;
pub mod target;
pub mod tmux;
pub mod toolchain;

pub use goscope::Goscope;
pub use privileges::require_root_or_skip;
pub use target::{Target, WorkloadResult};
pub use tmux::TmuxSession;
pub use toolchain::{
    BuildOptions, all_go_versions, build_workload, ci_go_versions, go_binary, installed_go_versions,
};

use std::path::PathBuf;

/// The workspace root (the directory holding Cargo.toml and workloads/).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// The goscope binary to test: $GOSCOPE_BIN, else the newer of the release
/// and debug builds under target/.
pub fn goscope_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GOSCOPE_BIN") {
        return PathBuf::from(path);
    }
    let root = workspace_root();
    ["release", "debug"]
        .iter()
        .map(|profile| root.join("target").join(profile).join("goscope"))
        .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
        .max()
        .map(|(_, path)| path)
        .unwrap_or_else(|| root.join("target/release/goscope"))
}

//! Go toolchains (one per version, installed by scripts/setup.sh under
//! /opt/goscope/go/<version>) and cached builds of the Go workloads.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

fn toolchain_root() -> PathBuf {
    std::env::var_os("GOSCOPE_TOOLCHAINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/goscope/go"))
}

/// The `go` binary of a full version such as `1.22.10`, or of the newest
/// installed patch of a minor such as `1.22`.
pub fn go_binary(version: &str) -> anyhow::Result<PathBuf> {
    let root = toolchain_root();
    // Debian's golang-1.19-go (the one 1.19 toolchain available here).
    let debian = PathBuf::from(format!("/usr/lib/go-{version}/bin/go"));
    if debian.exists() {
        return Ok(debian);
    }
    let exact = root.join(version).join("bin/go");
    if exact.exists() {
        return Ok(exact);
    }
    let prefix = format!("{version}.");
    let mut matches: Vec<String> = installed_go_versions()
        .into_iter()
        .filter(|v| v.starts_with(&prefix))
        .collect();
    matches.sort_by_key(|v| {
        v.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    match matches.pop() {
        Some(v) => Ok(root.join(v).join("bin/go")),
        None => bail!(
            "Go {version} is not installed under {}: run scripts/setup.sh",
            root.display()
        ),
    }
}

/// The Go minor versions CI covers ("1.21", ...), oldest first: the
/// `CI_GO_VERSIONS` line of scripts/setup.sh, the one list a new Go release
/// is added to.
pub fn ci_go_versions() -> Vec<String> {
    let setup = crate::workspace_root().join("scripts/setup.sh");
    let text = std::fs::read_to_string(&setup)
        .unwrap_or_else(|e| panic!("reading {}: {e}", setup.display()));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CI_GO_VERSIONS="))
        .unwrap_or_else(|| panic!("{} has no CI_GO_VERSIONS line", setup.display()));
    line.trim_matches('"')
        .split_whitespace()
        .map(|full| full.splitn(3, '.').take(2).collect::<Vec<_>>().join("."))
        .collect()
}

/// Full versions installed under the toolchain root.
pub fn installed_go_versions() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(toolchain_root()) else {
        return Vec::new();
    };
    let mut versions: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("bin/go").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions
}

/// Every toolchain the version matrix can use: Debian's go 1.19 when
/// present, then those under the toolchain root.
pub fn all_go_versions() -> Vec<String> {
    let mut versions = installed_go_versions();
    if go_binary("1.19").is_ok() {
        versions.insert(0, "1.19".to_string());
    }
    versions
}

/// How to build a workload.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Extra `-ldflags`, e.g. `-s -w`.
    pub ldflags: Option<String>,
    /// `-buildmode`, e.g. `pie`.
    pub buildmode: Option<String>,
    pub cgo: bool,
}

impl BuildOptions {
    fn tag(&self) -> String {
        let mut tag = String::from(if self.cgo { "cgo" } else { "nocgo" });
        if let Some(mode) = &self.buildmode {
            tag.push('-');
            tag.push_str(mode);
        }
        if let Some(flags) = &self.ldflags {
            tag.push('-');
            tag.extend(flags.chars().filter(char::is_ascii_alphanumeric));
        }
        tag
    }
}

/// Builds `workloads/<name>` with Go `version`; cached under
/// target/workloads/ and rebuilt when a source file is newer.
pub fn build_workload(
    version: &str,
    name: &str,
    options: &BuildOptions,
) -> anyhow::Result<PathBuf> {
    // One build at a time in this process: test threads asking for the
    // same workload would otherwise race on its output and Go's cache
    // ("cannot open file DO NOT USE - main build pseudo-cache built").
    static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let go = go_binary(version)?;
    let root = crate::workspace_root();
    let source_dir = root.join("workloads").join(name);
    let out_dir = root
        .join("target/workloads")
        .join(format!("go{version}-{}", options.tag()));
    std::fs::create_dir_all(&out_dir)?;
    let output = out_dir.join(name);
    if output.exists() && !sources_newer_than(&source_dir, &output)? {
        return Ok(output);
    }
    let staging = out_dir.join(format!(".{name}.{}", std::process::id()));
    let mut cmd = Command::new(&go);
    cmd.current_dir(&source_dir)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", if options.cgo { "1" } else { "0" })
        .arg("build")
        .arg("-o")
        .arg(&staging);
    if let Some(flags) = &options.ldflags {
        cmd.arg(format!("-ldflags={flags}"));
    }
    if let Some(mode) = &options.buildmode {
        cmd.arg(format!("-buildmode={mode}"));
    }
    cmd.arg(".");
    let result = cmd
        .output()
        .with_context(|| format!("running {}", go.display()))?;
    if !result.status.success() {
        bail!(
            "building workloads/{name} with Go {version} failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    std::fs::rename(&staging, &output)?;
    Ok(output)
}

fn sources_newer_than(dir: &Path, output: &Path) -> anyhow::Result<bool> {
    let built = std::fs::metadata(output)?.modified()?;
    for entry in std::fs::read_dir(dir)? {
        let modified = entry?.metadata()?.modified()?;
        if modified > built {
            return Ok(true);
        }
    }
    Ok(false)
}

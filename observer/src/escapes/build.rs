//! Building the module at DIR with the compiler's optimisation log,
//! harmlessly: as the owner of DIR (their module cache, never root's
//! rights over their tree), offline (`GOPROXY=off`, `GOTOOLCHAIN=local`),
//! without touching the tree (`-mod=readonly`, `-buildvcs=false`, output
//! and caches in a private temporary directory), with the binary's own
//! build settings (tags, CGO_ENABLED, GOEXPERIMENT, GOAMD64), and a Go
//! toolchain matching the binary's version when one is installed. The
//! owner's own build cache is used (the standard library is compiled once,
//! not at every explain); the binaries go to the temporary directory.

use std::{
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The build settings of the binary that are rebuilt with.
#[derive(Clone, Debug, Default)]
pub struct BuildSettings {
    pub tags: Option<String>,
    pub cgo_enabled: Option<String>,
    pub goexperiment: Option<String>,
    pub goamd64: Option<String>,
    /// The binary's `-pgo` profile path, as its build recorded it.
    pub pgo: Option<String>,
    /// The binary's `vcs.revision`.
    pub vcs_revision: Option<String>,
}

/// A finished build: its log and what it was built with.
pub struct Built {
    /// The -json destination (inside `scratch`).
    pub log_dir: PathBuf,
    pub toolchain: PathBuf,
    /// "go1.27.3".
    pub toolchain_version: String,
    pub module_path: String,
    pub warnings: Vec<String>,
    scratch: PathBuf,
}

impl Drop for Built {
    fn drop(&mut self) {
        // remove_dir_all does not follow symbolic links planted inside.
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Who owns DIR, and their home (for the module cache).
struct Owner {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn owner_of(dir: &Path) -> anyhow::Result<Owner> {
    let meta = std::fs::metadata(dir).with_context(|| format!("--src {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("--src {}: not a directory", dir.display());
    }
    let (uid, gid) = (meta.uid(), meta.gid());
    let home = home_of(uid).unwrap_or_else(|| PathBuf::from("/nonexistent"));
    Ok(Owner { uid, gid, home })
}

/// The home directory of `uid` from /etc/passwd (read directly, not
/// through NSS: the static release binary has no NSS modules).
fn home_of(uid: u32) -> Option<PathBuf> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid)).then(|| PathBuf::from(fields[5]))
    })
}

/// The module path in DIR/go.mod.
pub fn module_path(dir: &Path) -> anyhow::Result<String> {
    let go_mod = dir.join("go.mod");
    let text = std::fs::read_to_string(&go_mod).with_context(|| {
        format!(
            "--src {}: not a Go module (no readable go.mod)",
            dir.display()
        )
    })?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("module "))
        .map(|m| m.trim().trim_matches('"').to_string())
        .with_context(|| format!("{}: no module line", go_mod.display()))
}

/// A go command run as the owner, with nothing of root's environment.
fn go_command(go: &Path, owner: &Owner, scratch: &Path) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(go);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &owner.home)
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .env("GOWORK", "off")
        .env("GOTMPDIR", scratch)
        .uid(owner.uid)
        .gid(owner.gid);
    cmd
}

/// `go env GOVERSION` of a toolchain, run as the owner.
fn version_of(go: &Path, owner: &Owner, scratch: &Path) -> Option<String> {
    let out = go_command(go, owner, scratch)
        .args(["env", "GOVERSION"])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && v.starts_with("go")).then_some(v)
}

/// Installed toolchains: PATH, the usual install places, the owner's
/// `~/sdk` (golang.org/dl), and goscope's own test toolchains.
fn candidates(owner: &Owner) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect())
        .unwrap_or_default();
    found.push("/usr/local/go/bin/go".into());
    for pattern_dir in ["/usr/lib", "/opt/goscope/go"] {
        if let Ok(entries) = std::fs::read_dir(pattern_dir) {
            for e in entries.flatten() {
                found.push(e.path().join("bin/go"));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(owner.home.join("sdk")) {
        for e in entries.flatten() {
            found.push(e.path().join("bin/go"));
        }
    }
    found.retain(|p| p.is_file());
    found.sort();
    found.dedup();
    found
}

/// "go1.27.3" → (1, 27).
fn minor_of(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.strip_prefix("go")?.split(['.', '-', ' ']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The toolchain to build with: `explicit`, else the installed one whose
/// version equals `want`, else one of the same minor, else the newest
/// (warning that decisions change between releases).
fn choose_toolchain(
    explicit: Option<&Path>,
    want: Option<&str>,
    owner: &Owner,
    scratch: &Path,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(PathBuf, String)> {
    let versioned: Vec<(PathBuf, String)> = match explicit {
        Some(go) => vec![(
            go.to_path_buf(),
            version_of(go, owner, scratch)
                .with_context(|| format!("--go {}: not a Go toolchain", go.display()))?,
        )],
        None => candidates(owner)
            .into_iter()
            .filter_map(|go| version_of(&go, owner, scratch).map(|v| (go, v)))
            .collect(),
    };
    let Some(newest) = versioned.iter().max_by_key(|(_, v)| minor_of(v)).cloned() else {
        bail!(
            "no Go toolchain found (PATH, /usr/local/go, /usr/lib/go-*, ~/sdk); give one with --go PATH"
        );
    };
    let Some(want) = want else {
        return Ok(newest);
    };
    if let Some(exact) = versioned.iter().find(|(_, v)| v == want) {
        return Ok(exact.clone());
    }
    let chosen = versioned
        .iter()
        .find(|(_, v)| minor_of(v) == minor_of(want))
        .cloned()
        .unwrap_or(newest);
    warnings.push(format!(
        "the binary was built by {want} but {} is used: escape decisions can change between releases",
        chosen.1
    ));
    Ok(chosen)
}

/// Whether the module's files differ from the binary's vcs.revision
/// (`git diff` of the tree against it, run as the owner); None when they
/// do not, or git cannot tell.
fn revision_warning(owner: &Owner, src: &Path, revision: &str) -> Option<String> {
    use std::os::unix::process::CommandExt as _;
    if !revision.bytes().all(|b| b.is_ascii_hexdigit()) || revision.len() > 64 {
        return None;
    }
    let status = Command::new("git")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &owner.home)
        .uid(owner.uid)
        .gid(owner.gid)
        .current_dir(src)
        .args(["diff", "--quiet", revision, "--", "."])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    match status.code() {
        Some(0) => None,
        Some(1) => Some(format!(
            "the tree at {} differs from the binary's revision {revision}: reasons may sit on the wrong lines",
            src.display()
        )),
        _ => Some(format!(
            "the binary's revision {revision} is not in the repository at {}: cannot check the tree is its code",
            src.display()
        )),
    }
}

/// The first lines of a failed build's output, bounded.
fn excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().take(12).collect();
    crate::format::escape_control(&lines.join("\n"))
}

/// Builds DIR's packages with the optimisation log.
pub fn build(
    src: &Path,
    explicit_go: Option<&Path>,
    want_version: Option<&str>,
    settings: &BuildSettings,
) -> anyhow::Result<Built> {
    let src = std::fs::canonicalize(src).with_context(|| format!("--src {}", src.display()))?;
    let owner = owner_of(&src)?;
    let module_path = module_path(&src)?;
    // A fresh private directory (create_dir fails on anything existing,
    // links included), then handed to the owner who builds into it.
    let scratch = std::env::temp_dir().join(format!(
        "goscope-explain-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch)
        .with_context(|| format!("creating {}", scratch.display()))?;
    std::os::unix::fs::chown(&scratch, Some(owner.uid), Some(owner.gid))?;
    let mut built = Built {
        log_dir: scratch.join("log"),
        toolchain: PathBuf::new(),
        toolchain_version: String::new(),
        module_path,
        warnings: Vec::new(),
        scratch: scratch.clone(),
    };
    let (go, version) = choose_toolchain(
        explicit_go,
        want_version,
        &owner,
        &scratch,
        &mut built.warnings,
    )?;
    let mut cmd = go_command(&go, &owner, &scratch);
    cmd.current_dir(&src).args([
        "build",
        "-buildvcs=false",
        "-o",
        &format!("{}/", scratch.join("out").display()),
        &format!("-gcflags=-json=0,file://{}", built.log_dir.display()),
    ]);
    if let Some(tags) = &settings.tags {
        cmd.arg(format!("-tags={tags}"));
    }
    match settings.pgo.as_deref().filter(|p| *p != "off") {
        Some(pgo) => {
            // The recorded path, else the tree's default.pgo.
            let here = [PathBuf::from(pgo), src.join("default.pgo")]
                .into_iter()
                .find(|p| p.is_file());
            match here {
                Some(path) => {
                    cmd.arg(format!("-pgo={}", path.display()));
                }
                None => built.warnings.push(format!(
                    "the binary was built with -pgo={pgo}, which is not here: inlining, and so escape decisions, may differ"
                )),
            }
        }
        None => {
            cmd.arg("-pgo=off");
        }
    }
    if let Some(revision) = &settings.vcs_revision
        && src.ancestors().any(|a| a.join(".git").exists())
        && let Some(warning) = revision_warning(&owner, &src, revision)
    {
        built.warnings.push(warning);
    }
    cmd.arg("./...");
    for (key, value) in [
        ("CGO_ENABLED", &settings.cgo_enabled),
        ("GOEXPERIMENT", &settings.goexperiment),
        ("GOAMD64", &settings.goamd64),
    ] {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", go.display()))?;
    if !out.status.success() {
        let why = excerpt(&out.stderr);
        if why.contains("GOPROXY=off")
            || why.contains("missing go.sum entry")
            || why.contains("cannot find module")
        {
            bail!(
                "the module cache of uid {} ({}) lacks a dependency of {} (goscope builds offline): {why}",
                owner.uid,
                owner.home.join("go/pkg/mod").display(),
                src.display()
            );
        }
        bail!("{} does not build with {version}: {why}", src.display());
    }
    built.toolchain = go;
    built.toolchain_version = version;
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::minor_of;

    #[test]
    fn versions_compare_by_minor() {
        assert_eq!(minor_of("go1.27.3"), Some((1, 27)));
        assert_eq!(minor_of("go1.22rc1"), None);
        assert_eq!(minor_of("go1.21.13 X:boringcrypto"), Some((1, 21)));
    }
}

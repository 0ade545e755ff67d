//! The .deb on a clean Debian of another release than the build host's
//! (trixie, cached by scripts/setup.sh as a debootstrap tarball; no Rust,
//! no Go): installed with dpkg in a chroot with /proc, /sys (the BPF and
//! trace filesystems under it) and /dev mounted, `goscope ps` lists a Go
//! process started there and `goscope doctor --pid` reads it. The mounts
//! live in a private mount namespace per command, so none outlives it.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;
use testkit::{BuildOptions, Target, require_root_or_skip};

const ROOTFS_SUITE: &str = "trixie";

fn rootfs_tarball() -> PathBuf {
    std::env::var_os("GOSCOPE_DEBIAN_ROOTFS").map_or_else(
        || {
            PathBuf::from(format!(
                "/var/cache/goscope/debian-{ROOTFS_SUITE}-minbase.tar.gz"
            ))
        },
        PathBuf::from,
    )
}

/// The shell that mounts /proc, /sys and /dev under `root` inside a new
/// private mount namespace, then runs `inner` chrooted there.
fn chrooted(root: &Path, inner: &str) -> Command {
    let r = root.display();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "set -e; mount -t proc proc {r}/proc; mount --rbind /sys {r}/sys; \
             mount --rbind /dev {r}/dev; exec chroot {r} /bin/sh -c \"$0\""
        ))
        .arg(inner)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

fn run(root: &Path, inner: &str) -> Output {
    let out = chrooted(root, inner).output().unwrap();
    assert!(
        out.status.success(),
        "in the {ROOTFS_SUITE} chroot, `{inner}`: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn os_release_field(path: &Path, field: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}=")))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// Removes the unpacked root, but only when nothing is mounted under it
/// (every mount was in a namespace that has ended): never a walk into /dev.
/// Says why it did not, rather than panicking (it runs from Drop too).
fn remove_root(root: &Path) -> Result<(), String> {
    let device = std::fs::symlink_metadata(root)
        .map_err(|e| format!("{}: {e}", root.display()))?
        .dev();
    for dir in ["proc", "sys", "dev"] {
        match std::fs::symlink_metadata(root.join(dir)) {
            Ok(meta) if meta.dev() != device => {
                return Err(format!(
                    "{}/{dir} is still a mount point: not removing {}",
                    root.display(),
                    root.display()
                ));
            }
            _ => {}
        }
    }
    std::fs::remove_dir_all(root).map_err(|e| format!("removing {}: {e}", root.display()))
}

/// The unpacked rootfs: a fresh directory of a random name, mode 0700,
/// removed however the test ends (after the target, which holds the
/// mounts of its namespace, is gone).
struct Rootfs {
    root: PathBuf,
}

impl Rootfs {
    fn unpack(tarball: &Path) -> Self {
        let root = tempfile::Builder::new()
            .prefix("goscope-chroot-")
            .tempdir_in("/var/tmp")
            .unwrap()
            .keep();
        let rootfs = Self { root };
        let untar = Command::new("tar")
            .args(["--numeric-owner", "-xzf"])
            .arg(tarball)
            .arg("-C")
            .arg(&rootfs.root)
            .status()
            .unwrap();
        assert!(untar.success(), "unpacking {}", tarball.display());
        // The tarball's root directory is 0755: keep the tree private.
        std::fs::set_permissions(
            &rootfs.root,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        rootfs
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if let Err(e) = remove_root(&self.root) {
            eprintln!("install test: {e}");
        }
    }
}

#[test]
fn the_package_installs_and_runs_on_a_clean_debian_of_another_release() {
    if !require_root_or_skip("the_package_installs_and_runs_on_a_clean_debian_of_another_release") {
        return;
    }
    let tarball = rootfs_tarball();
    assert!(
        tarball.is_file(),
        "{} missing: scripts/setup.sh builds it with debootstrap",
        tarball.display()
    );
    let rootfs = Rootfs::unpack(&tarball);
    let root = rootfs.root.clone();

    // Another release than the host's, and nothing of a build toolchain.
    let here = os_release_field(Path::new("/etc/os-release"), "VERSION_CODENAME");
    let there = os_release_field(&root.join("etc/os-release"), "VERSION_CODENAME");
    assert_eq!(there, ROOTFS_SUITE);
    assert_ne!(here, there, "the chroot is the host's own release");
    for tool in [
        "usr/bin/go",
        "usr/bin/cargo",
        "usr/bin/rustc",
        "usr/bin/gcc",
    ] {
        assert!(!root.join(tool).exists(), "{tool} is in the chroot");
    }

    // The package, and a Go program built on the host (static: no cgo).
    let deb = crate::dist::deb();
    std::fs::copy(&deb, root.join("tmp/goscope.deb")).unwrap();
    let workload = testkit::build_workload("1.27", "loadgen", &BuildOptions::default()).unwrap();
    std::fs::create_dir_all(root.join("opt/app")).unwrap();
    std::fs::copy(&workload, root.join("opt/app/loadgen")).unwrap();

    let installed = run(&root, "dpkg -i /tmp/goscope.deb && dpkg -L goscope");
    let files = String::from_utf8_lossy(&installed.stdout);
    assert!(files.lines().any(|l| l == "/usr/bin/goscope"), "{files}");
    assert!(
        files
            .lines()
            .any(|l| l == "/lib/systemd/system/goscope-agent.service"),
        "{files}"
    );

    // The target runs in the chroot too, in a namespace of its own.
    let mut target = Target::start_command(&mut chrooted(
        &root,
        "exec /opt/app/loadgen -work alloc -background",
    ))
    .unwrap();
    let pid = target.pid.to_string();

    let listed = run(&root, "goscope ps --json");
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == target.pid)
        .unwrap_or_else(|| panic!("pid {pid} not listed in the chroot: {listed:#}"));
    // The target's exe is in another mount namespace than this goscope's,
    // so the kernel names it from that namespace's root.
    assert!(
        me["exe"]
            .as_str()
            .unwrap_or("")
            .ends_with("/opt/app/loadgen"),
        "{me}"
    );
    assert_eq!(
        me["go_version"],
        crate::util::toolchain_version("1.27"),
        "{me}"
    );
    assert_eq!(me["cgo"], false, "{me}");
    assert_eq!(me["supported"], true, "{me}");

    let doctor = run(
        &root,
        &format!("goscope doctor --pid {pid} --duration 2 --json"),
    );
    let report: Value = serde_json::from_slice(&doctor.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor in the chroot printed no JSON ({e}): {}",
            String::from_utf8_lossy(&doctor.stdout)
        )
    });
    assert_eq!(report["target"]["pid"].to_string(), pid, "{report:#}");
    let allocated = report["alloc"]["bytes"].as_u64().unwrap_or(0);
    assert!(
        allocated > 0,
        "the alloc workload allocated nothing in the chroot's doctor window: {report:#}"
    );
    assert!(
        report["gc"]["cycles"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    assert!(target.is_running(), "the target died under goscope");
    drop(target);
    drop(rootfs);
    assert!(!root.exists(), "{} was not removed", root.display());
}

//! `cargo xtask dist`: the release artifacts in target/dist/. A statically
//! linked goscope (glibc with `+crt-static` for an explicit
//! x86_64-unknown-linux-gnu target, so build scripts and proc-macros stay
//! dynamic; the eBPF object is embedded; TLS is rustls with ring, no
//! OpenSSL; goscope resolves a name only for an `--otlp-endpoint` given by
//! host name, which static glibc serves with the host's NSS modules, so an
//! address needs none), shell completions and man pages generated from
//! the clap definitions, and a Debian package holding them with a hardened
//! systemd unit for `goscope agent` and its flags in /etc/default.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Args, CommandFactory as _};

const TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, Args)]
pub struct DistArgs {
    /// Where the artifacts go (default target/dist).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

/// The static binary, built by cargo for the explicit target.
fn build_static(root: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "observer",
            "--bin",
            "goscope",
            "--target",
            TARGET,
        ])
        // Only the target's artifacts: the nested eBPF build and the host
        // build scripts keep their own flags.
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            // Debug info off the shipped binary (symbols stay: goscope
            // calibrates its probes on a function of its own).
            "-C target-feature=+crt-static -C strip=debuginfo",
        )
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("the static build failed ({status})");
    }
    Ok(root.join("target").join(TARGET).join("release/goscope"))
}

/// Bash, zsh and fish completions.
fn completions(dir: &Path) -> anyhow::Result<Vec<(PathBuf, &'static str)>> {
    use clap_complete::Shell;
    let mut made = Vec::new();
    for (shell, file, installed) in [
        (
            Shell::Bash,
            "goscope",
            "usr/share/bash-completion/completions/goscope",
        ),
        (
            Shell::Zsh,
            "_goscope",
            "usr/share/zsh/vendor-completions/_goscope",
        ),
        (
            Shell::Fish,
            "goscope.fish",
            "usr/share/fish/vendor_completions.d/goscope.fish",
        ),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(
            shell,
            &mut goscope::cli::Cli::command(),
            "goscope",
            &mut text,
        );
        let path = dir.join("completions").join(file);
        write(&path, &text)?;
        made.push((path, installed));
    }
    Ok(made)
}

/// goscope(1) and one page per subcommand (goscope-doctor(1), ...).
fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let command = goscope::cli::Cli::command().name("goscope");
    let mut pages = Vec::new();
    let mut render = |name: String, cmd: clap::Command| -> anyhow::Result<()> {
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut text)?;
        let path = dir.join("man").join(format!("{name}.1"));
        write(&path, &text)?;
        pages.push(path);
        Ok(())
    };
    for sub in command.get_subcommands() {
        let name = format!("goscope-{}", sub.get_name());
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        render(name, sub.clone().name(leaked))?;
    }
    render("goscope".into(), command)?;
    Ok(pages)
}

/// The package version: the workspace's, as Debian spells it.
fn version(root: &Path) -> anyhow::Result<String> {
    let toml = std::fs::read_to_string(root.join("observer/Cargo.toml"))?;
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .context("no version in observer/Cargo.toml")
}

pub fn run(args: &DistArgs) -> anyhow::Result<()> {
    let root = testkit::workspace_root();
    let out = args.out.clone().unwrap_or_else(|| root.join("target/dist"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let binary = build_static(&root)?;
    let shipped = out.join("goscope");
    std::fs::copy(&binary, &shipped)?;
    let completions = completions(&out)?;
    let pages = man_pages(&out)?;
    let version = version(&root)?;

    let pkg = out.join(format!("goscope_{version}_amd64"));
    let put = |rel: &str, bytes: &[u8], mode: u32| -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = pkg.join(rel);
        write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put("usr/bin/goscope", &std::fs::read(&shipped)?, 0o755)?;
    for (path, installed) in &completions {
        put(installed, &std::fs::read(path)?, 0o644)?;
    }
    for page in &pages {
        let name = page.file_name().unwrap().to_string_lossy();
        put(
            &format!("usr/share/man/man1/{name}.gz"),
            &gzip(&std::fs::read(page)?)?,
            0o644,
        )?;
    }
    let packaging = root.join("packaging");
    put(
        "lib/systemd/system/goscope-agent.service",
        &std::fs::read(packaging.join("goscope-agent.service"))?,
        0o644,
    )?;
    put(
        "etc/default/goscope-agent",
        &std::fs::read(packaging.join("goscope-agent.default"))?,
        0o644,
    )?;
    let size_kib = std::fs::metadata(&shipped)?.len() / 1024;
    put(
        "DEBIAN/control",
        format!(
            "Package: goscope\nVersion: {version}\nArchitecture: amd64\nMaintainer: goscope developers <goscope@localhost>\nInstalled-Size: {size_kib}\nSection: utils\nPriority: optional\nDescription: live observer for running Go processes\n goscope attaches to a running Go process without restarting or changing it\n and reports GC, allocation, scheduler and goroutine figures; goscope agent\n exports them for Prometheus.\n"
        )
        .as_bytes(),
        0o644,
    )?;
    put("DEBIAN/conffiles", b"/etc/default/goscope-agent\n", 0o644)?;
    let deb = out.join(format!("goscope_{version}_amd64.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&pkg)
        .arg(&deb)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb failed ({status})");
    }
    println!("{}", shipped.display());
    println!("{}", deb.display());
    Ok(())
}

//! The release artifacts of `cargo xtask dist` (scripts/test.sh builds
//! them before the tests): the shipped goscope is statically linked and
//! runs; as the agent with only the two capabilities its systemd unit
//! grants, it reads a Go process of another user; the .deb holds the
//! binary, completions, man pages, the hardened unit and its config file.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use testkit::{BuildOptions, require_root_or_skip};

fn dist() -> PathBuf {
    testkit::workspace_root().join("target/dist")
}

pub fn deb() -> PathBuf {
    std::fs::read_dir(dist())
        .unwrap_or_else(|e| panic!("{}: {e} (run cargo xtask dist)", dist().display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("no .deb in target/dist")
}

/// The package's files, unpacked by dpkg-deb into a fresh private
/// directory (removed when dropped).
fn unpacked(deb: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("goscope-deb-")
        .tempdir()
        .unwrap();
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "dpkg-deb -x {}", deb.display());
    dir
}

/// Whether an ELF file asks for a program interpreter (PT_INTERP).
fn has_interpreter(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == 3
    })
}

#[test]
fn the_shipped_binary_is_static_and_runs() {
    let binary = dist().join("goscope");
    let bytes = std::fs::read(&binary)
        .unwrap_or_else(|e| panic!("{}: {e} (run cargo xtask dist)", binary.display()));
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert!(
        !has_interpreter(&bytes),
        "{} is dynamically linked",
        binary.display()
    );
    let out = Command::new(&binary).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("goscope"));
}

#[test]
fn the_agent_needs_only_the_units_capabilities() {
    if !require_root_or_skip("the_agent_needs_only_the_units_capabilities") {
        return;
    }
    let unit =
        std::fs::read_to_string(testkit::workspace_root().join("packaging/goscope-agent.service"))
            .unwrap();
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds capabilities");
    let bounding: Vec<String> = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    // A Go process of another user.
    let target_binary =
        testkit::build_workload("1.27", "gstates", &BuildOptions::default()).unwrap();
    let mut target = {
        use std::os::unix::process::CommandExt as _;
        Command::new(&target_binary)
            .args(["-recv", "3"])
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut line = String::new();
    BufReader::new(target.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "{line:?}");
    let port = crate::util::free_port();
    let mut agent = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", bounding.join(",")))
        .args(["--inh-caps=-all", "--"])
        .arg(dist().join("goscope"))
        .args([
            "agent",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--scan-interval-ms",
            "200",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(agent.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("serving"), "{first}");
    let scraper = crate::util::Scraper::new(port);
    let pid = format!("pid=\"{}\"", target.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (body, _) = scraper.scrape_body("with bounded capabilities");
        if body
            .lines()
            .any(|l| l.starts_with("goscope_goroutines_by_state{") && l.contains(&pid))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {} never read:\n{body}",
            target.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = target.kill();
    let _ = target.wait();
}

#[test]
fn the_package_holds_everything_with_a_hardened_unit() {
    let deb = deb();
    let field = |name: &str| {
        let out = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .arg(name)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "goscope");
    assert_eq!(field("Architecture"), "amd64");
    let unpacked = unpacked(&deb);
    let root = unpacked.path();
    for file in [
        "usr/bin/goscope",
        "usr/share/bash-completion/completions/goscope",
        "usr/share/zsh/vendor-completions/_goscope",
        "usr/share/fish/vendor_completions.d/goscope.fish",
        "usr/share/man/man1/goscope.1.gz",
        "usr/share/man/man1/goscope-agent.1.gz",
        "usr/share/man/man1/goscope-doctor.1.gz",
        "lib/systemd/system/goscope-agent.service",
        "etc/default/goscope-agent",
    ] {
        assert!(
            root.join(file).is_file(),
            "{file} missing from {}",
            deb.display()
        );
    }
    let unit =
        std::fs::read_to_string(root.join("lib/systemd/system/goscope-agent.service")).unwrap();
    for key in [
        "ExecStart=/usr/bin/goscope agent $GOSCOPE_AGENT_ARGS",
        "EnvironmentFile=-/etc/default/goscope-agent",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH",
    ] {
        assert!(unit.lines().any(|l| l == key), "{key} missing:\n{unit}");
    }
    let config = std::fs::read_to_string(root.join("etc/default/goscope-agent")).unwrap();
    assert!(
        config.contains("--listen 127.0.0.1:"),
        "loopback by default: {config}"
    );
    let conffiles = Command::new("dpkg-deb")
        .args(["-I"])
        .arg(&deb)
        .arg("conffiles")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/default/goscope-agent"
    );
    // The page renders and the completion loads.
    let man = Command::new("man")
        .arg("-l")
        .arg(root.join("usr/share/man/man1/goscope-doctor.1.gz"))
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&man.stdout).contains("--overhead-budget"),
        "{man:?}"
    );
    let completion = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p goscope",
            root.join("usr/share/bash-completion/completions/goscope")
                .display()
        ))
        .output()
        .unwrap();
    assert!(completion.status.success(), "{completion:?}");
    // The packaged binary is the shipped one.
    assert_eq!(
        std::fs::read(root.join("usr/bin/goscope")).unwrap(),
        std::fs::read(dist().join("goscope")).unwrap()
    );
    drop(unpacked);
}

/// The subcommands `goscope --help` lists (help aside): each has a page.
fn subcommands() -> Vec<String> {
    let out = Command::new(dist().join("goscope"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn dpkg_lists_exactly_the_intended_files() {
    let mut intended: Vec<String> = [
        "etc/default/goscope-agent",
        "lib/systemd/system/goscope-agent.service",
        "usr/bin/goscope",
        "usr/share/bash-completion/completions/goscope",
        "usr/share/fish/vendor_completions.d/goscope.fish",
        "usr/share/man/man1/goscope.1.gz",
        "usr/share/zsh/vendor-completions/_goscope",
    ]
    .iter()
    .map(|f| f.to_string())
    .collect();
    let commands = subcommands();
    assert!(commands.len() >= 10, "{commands:?}");
    intended.extend(
        commands
            .iter()
            .map(|c| format!("usr/share/man/man1/goscope-{c}.1.gz")),
    );
    intended.sort();
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb())
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for line in listing.lines() {
        let path = line
            .split_whitespace()
            .last()
            .unwrap()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        match line.chars().next() {
            Some('d') => dirs.push(path),
            Some('-') => files.push(path),
            _ => panic!("neither a file nor a directory in the package: {line}"),
        }
    }
    files.sort();
    assert_eq!(files, intended, "dpkg -c:\n{listing}");
    // No directory but the files' parents.
    for dir in dirs.iter().filter(|d| !d.is_empty()) {
        assert!(
            intended.iter().any(|f| f.starts_with(&format!("{dir}/"))),
            "{dir}/ holds none of the intended files:\n{listing}"
        );
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let deb = deb();
    let unpacked = unpacked(&deb);
    let root = unpacked.path();
    // The unit's dependencies (sysinit.target, ...) come from the host's
    // systemd; the unit, its binary and its page from the package.
    let copied = Command::new("cp")
        .args(["-an", "/lib/systemd/system/."])
        .arg(root.join("lib/systemd/system"))
        .status()
        .unwrap();
    assert!(copied.success());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("goscope-agent.service")
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .expect("systemd-analyze (Debian's systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // It warns (and exits 0) on unknown keys: a warning fails too.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    drop(unpacked);
}

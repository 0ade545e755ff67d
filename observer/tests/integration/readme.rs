//! The README as a user reads it: every command of its `console` blocks
//! runs as written (the demo workload's PID for `1234`, `sudo` dropped as
//! the tests run as root) and prints what the README shows, heading by
//! heading; every troubleshooting message that a test host can trigger is
//! goscope's own, word for word.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use testkit::{Target, require_root_or_skip};

use crate::util::{cgo, loadgen};

fn readme() -> String {
    std::fs::read_to_string(testkit::workspace_root().join("README.md")).unwrap()
}

/// One `$ command` of a console block and the lines shown under it.
struct Example {
    command: String,
    shown: Vec<String>,
}

fn console_examples(text: &str) -> Vec<Example> {
    let mut examples: Vec<Example> = Vec::new();
    let mut in_console = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            examples.push(Example {
                command: command.to_string(),
                shown: Vec::new(),
            });
        } else if let Some(last) = examples.last_mut() {
            last.shown.push(line.to_string());
        }
    }
    examples
}

/// The first word of a shown line when it is a heading or a fixed word
/// (`ALLOCATION`, `goscope:`, `gc`, `profile`); numbers, verdicts and
/// table rows vary from run to run and are not compared.
fn fixed_first_word(line: &str) -> Option<&str> {
    let word = line.split_whitespace().next()?;
    let fixed = word.chars().all(|c| c.is_ascii_alphabetic() || c == ':')
        && !["info", "WARN", "CRIT"].contains(&word)
        && !line.starts_with("  ");
    fixed.then_some(word)
}

/// A directory whose `goscope` is the binary under test, for PATH.
fn path_with_goscope(dir: &Path) -> String {
    let link = dir.join("goscope");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(testkit::goscope_binary(), &link).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_readmes_commands_run_as_written_and_print_what_it_shows() {
    if !require_root_or_skip("the_readmes_commands_run_as_written_and_print_what_it_shows") {
        return;
    }
    let examples = console_examples(&readme());
    assert!(
        examples.len() >= 8,
        "the README has {} console commands",
        examples.len()
    );
    let binary = loadgen("1.27", &cgo());
    let mut target = Target::start(&binary, &["-work", "mixed", "-background"], &[]).unwrap();
    // A fresh private directory: it goes first in root's PATH.
    let scratch = tempfile::Builder::new()
        .prefix("goscope-readme-")
        .tempdir()
        .unwrap();
    let dir = scratch.path().to_path_buf();
    let path = path_with_goscope(&dir);
    for example in &examples {
        let command = example
            .command
            .strip_prefix("sudo ")
            .unwrap_or(&example.command)
            .replace("1234", &target.pid.to_string());
        assert!(
            command.starts_with("goscope "),
            "not a goscope command: {}",
            example.command
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&dir)
            .env("PATH", &path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.status.success(),
            "README: `{}` failed ({}):\n{printed}",
            example.command,
            out.status
        );
        for word in example.shown.iter().filter_map(|l| fixed_first_word(l)) {
            assert!(
                printed
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(word)),
                "README: `{}` shows a line starting {word:?}; the real run printed none:\n{printed}",
                example.command
            );
        }
    }
    assert!(target.is_running(), "the demo workload died");
    drop(target);
    drop(scratch);
}

/// goscope's stderr with the run's own PIDs, paths and names replaced by
/// the README's placeholders.
fn normalised(out: &Output, replacements: &[(String, &str)]) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    for (real, shown) in replacements {
        text = text.replace(real.as_str(), shown);
    }
    text
}

fn assert_in_readme(message: &str, what: &str) {
    let readme = readme();
    assert!(
        readme.lines().any(|l| l == message),
        "the README's troubleshooting misquotes {what}; goscope prints:\n{message}"
    );
}

fn goscope() -> Command {
    Command::new(testkit::goscope_binary())
}

#[test]
fn the_troubleshooting_messages_are_goscopes_own() {
    if !require_root_or_skip("the_troubleshooting_messages_are_goscopes_own") {
        return;
    }
    let name = format!("gsreadme{}", std::process::id() % 100_000);
    let scratch = tempfile::Builder::new()
        .prefix("goscope-trouble-")
        .tempdir()
        .unwrap();
    let copy: PathBuf = scratch.path().join(&name);
    std::fs::copy(loadgen("1.27", &cgo()), &copy).unwrap();
    let mut first = Target::start(&copy, &["-work", "idle"], &[]).unwrap();
    let mut second = Target::start(&copy, &["-work", "idle"], &[]).unwrap();
    let (low, high) = (first.pid.min(second.pid), first.pid.max(second.pid));
    // In this order: the uid and the path before the pids, which could
    // be parts of them.
    let replacements = [
        ("uid 65534".to_string(), "uid 1000"),
        (copy.display().to_string(), "/srv/loadgen"),
        (name.clone(), "loadgen"),
        (low.to_string(), "1234"),
        (high.to_string(), "1235"),
    ];
    let pid = low.to_string();

    let not_root = goscope()
        .args(["doctor", "--pid", &pid, "--duration", "1"])
        .output_as(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]);
    assert_in_readme(&normalised(&not_root, &replacements), "not root");

    let no_ptrace = goscope()
        .args(["doctor", "--pid", &pid, "--duration", "1"])
        .output_as(&["setpriv", "--bounding-set=-all", "--inh-caps=-all"]);
    assert_in_readme(
        &normalised(&no_ptrace, &replacements),
        "root without CAP_SYS_PTRACE",
    );

    let no_bpf = goscope()
        .args(["doctor", "--pid", &pid, "--duration", "1"])
        .output_as(&[
            "setpriv",
            "--bounding-set=-bpf,-perfmon,-sys_admin",
            "--inh-caps=-all",
        ]);
    assert_in_readme(&normalised(&no_bpf, &replacements), "root without CAP_BPF");

    // A PID that was there and is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let no_such = goscope()
        .args(["doctor", "--pid", &gone_pid.to_string()])
        .output()
        .unwrap();
    assert_in_readme(
        &normalised(&no_such, &[(gone_pid.to_string(), "1234")]),
        "no such process",
    );

    let mut sleep = Command::new("sleep").arg("600").spawn().unwrap();
    let not_go = goscope()
        .args(["doctor", "--pid", &sleep.id().to_string()])
        .output()
        .unwrap();
    let _ = sleep.kill();
    let _ = sleep.wait();
    assert_in_readme(
        &normalised(&not_go, &[(sleep.id().to_string(), "1234")]),
        "not a Go program",
    );

    let ambiguous = goscope()
        .args(["doctor", "--pid", &name, "--duration", "1"])
        .output()
        .unwrap();
    assert_in_readme(&normalised(&ambiguous, &replacements), "an ambiguous name");

    for out in [
        &not_root, &no_ptrace, &no_bpf, &no_such, &not_go, &ambiguous,
    ] {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }
    assert!(first.is_running() && second.is_running());
    drop(first);
    drop(second);
    drop(scratch);
}

/// Runs a command under a wrapper (setpriv ...) and collects its output.
trait OutputAs {
    fn output_as(&mut self, wrapper: &[&str]) -> Output;
}

impl OutputAs for Command {
    fn output_as(&mut self, wrapper: &[&str]) -> Output {
        let mut wrapped = Command::new(wrapper[0]);
        wrapped
            .args(&wrapper[1..])
            .arg(self.get_program())
            .args(self.get_args());
        for (key, value) in self.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped.output().unwrap()
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_pictures_script_redraws_the_readmes_pictures() {
    if !require_root_or_skip("the_pictures_script_redraws_the_readmes_pictures") {
        return;
    }
    let readme = readme();
    for picture in ["docs/img/top.png", "docs/img/heatmap.png"] {
        assert!(
            readme.contains(&format!("]({picture})")),
            "{picture} not in the README"
        );
        assert!(
            testkit::workspace_root().join(picture).is_file(),
            "{picture} is not checked in"
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("goscope-pictures-test-")
        .tempdir()
        .unwrap();
    let out = scratch.path().join("img");
    // As the README says: cargo xtask pictures (shorter windows).
    let run = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "xtask",
            "pictures",
            "--top-seconds",
            "3",
            "--heatmap-seconds",
            "3",
        ])
        .arg("--out")
        .arg(&out)
        .current_dir(testkit::workspace_root())
        .env("GOSCOPE_BIN", testkit::goscope_binary())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "cargo xtask pictures: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let top = std::fs::read_to_string(out.join("top.txt")).unwrap();
    assert!(
        top.contains("goscope top · pid") && top.contains("/s allocated"),
        "the top picture shows no figures:\n{top}"
    );
    let (width, height) = png_size(&std::fs::read(out.join("top.png")).unwrap());
    assert!(width > 600 && height > 300, "top.png is {width}x{height}");
    let (width, height) = png_size(&std::fs::read(out.join("heatmap.png")).unwrap());
    assert!(
        width > 300 && height > 100,
        "heatmap.png is {width}x{height}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

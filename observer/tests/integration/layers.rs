//! The layering rule, checked on the source tree: commands/ sits on top;
//! nothing below it (session, report, collectors, binary, memory, target)
//! imports a command, and no command reaches into another one.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of `text` that are code (not comments).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

#[test]
fn nothing_outside_commands_imports_a_command() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let commands = src.join("commands");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let relative = file.strip_prefix(&src).unwrap();
        if let Ok(in_commands) = file.strip_prefix(&commands) {
            // Inside commands/: only its own module (and its children).
            let own = in_commands
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|c| c.trim_end_matches(".rs").to_string())
                .unwrap_or_default();
            // In commands/X.rs and commands/X/mod.rs, `super::` is commands/.
            let top_level = in_commands.components().count() == 1
                || in_commands.file_name().is_some_and(|f| f == "mod.rs")
                    && in_commands.components().count() == 2;
            let prefixes: &[&str] = if top_level {
                &["commands::", "super::"]
            } else {
                &["commands::"]
            };
            for (n, line) in code_lines(&text) {
                for (at, prefix) in prefixes
                    .iter()
                    .flat_map(|p| line.match_indices(p).map(move |(at, _)| (at, *p)))
                {
                    let rest = &line[at + prefix.len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != own {
                        offences.push(format!("{}:{}: {}", relative.display(), n + 1, line.trim()));
                    }
                }
            }
        } else if relative != Path::new("main.rs") {
            for (n, line) in code_lines(&text) {
                if line.contains("commands::") {
                    offences.push(format!("{}:{}: {}", relative.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "imports across the command layer:\n{}",
        offences.join("\n")
    );
}

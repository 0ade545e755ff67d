//! Escape analysis at the hot allocation sites (`goscope explain`, and
//! doctor with `--src`): the compiler's own escape decisions (`reasons`,
//! from its structured optimisation log, built by `build`) joined by
//! file:line to where a profile says the bytes are allocated (`join`),
//! after checking the tree is the binary's code (`same_code`).

pub mod build;
pub mod join;
pub mod reasons;
pub mod same_code;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::binary::GoBinary;

/// The escape decisions of the module at DIR, built for a binary.
pub struct ModuleReasons {
    pub src: PathBuf,
    pub module_path: String,
    pub built: build::Built,
    pub escapes: reasons::Escapes,
    /// Version or tree mismatches, said to the user.
    pub warnings: Vec<String>,
    /// The binary's Go version ("go1.27.3"), when a binary was given.
    pub binary_go_version: Option<String>,
    files: join::ModuleFiles,
    by_line: HashMap<(String, u64), Vec<reasons::Escape>>,
}

/// The reason shown next to a site.
#[derive(Clone, Debug, Serialize)]
pub struct SiteReason {
    pub value: String,
    pub class: reasons::ReasonClass,
    pub reason: &'static str,
    pub hint: &'static str,
}

impl ModuleReasons {
    /// Checks DIR against `binary` (its module, its functions' lines),
    /// builds DIR with the binary's settings and a matching toolchain, and
    /// reads the compiler's decisions.
    pub fn build(src: &Path, go: Option<&Path>, binary: Option<&GoBinary>) -> anyhow::Result<Self> {
        let src = std::fs::canonicalize(src).with_context(|| format!("--src {}", src.display()))?;
        let module_path = build::module_path(&src)?;
        let files = join::ModuleFiles::new(&src, &module_path);
        let mut warnings = Vec::new();
        if let Some(b) = binary {
            if !b.build.path.is_empty() {
                let main = b.build.main_module.as_deref().unwrap_or(&b.build.path);
                let main = main.split_whitespace().next().unwrap_or(main);
                if !b.build.path.starts_with(&module_path) && main != module_path {
                    bail!(
                        "--src {} is module {module_path}, but the binary's main module is {main}: not the code the binary was built from",
                        src.display()
                    );
                }
            }
            let prefixes = [
                "main.".to_string(),
                format!("{module_path}."),
                format!("{module_path}/"),
            ];
            let c = same_code::compare(b, &src, |f| files.relative(f), &prefixes);
            if let Some((function, at)) = c.moved.first() {
                warnings.push(format!(
                    "the tree at {} is not the code the binary was built from: {} of {} functions are declared elsewhere now (first: {function}, at {at} in the binary); reasons may sit on the wrong lines",
                    src.display(),
                    c.moved.len(),
                    c.checked
                ));
            }
        }
        let settings =
            binary.map_or_else(build::BuildSettings::default, |b| build::BuildSettings {
                tags: b.build.setting("-tags").map(str::to_string),
                cgo_enabled: b.build.setting("CGO_ENABLED").map(str::to_string),
                goexperiment: b.build.setting("GOEXPERIMENT").map(str::to_string),
                goamd64: b.build.setting("GOAMD64").map(str::to_string),
                pgo: b.build.setting("-pgo").map(str::to_string),
                vcs_revision: b.build.setting("vcs.revision").map(str::to_string),
            });
        let binary_go_version = binary.map(|b| b.build.go_version_string.clone());
        let built = build::build(&src, go, binary_go_version.as_deref(), &settings)?;
        warnings.extend(built.warnings.iter().cloned());
        let escapes = reasons::read_logs(&built.log_dir)?;
        let by_line = escapes
            .by_line
            .iter()
            .filter_map(|((file, line), e)| {
                let rel = file.strip_prefix(&src).ok()?.display().to_string();
                Some(((rel, *line), e.clone()))
            })
            .collect();
        Ok(Self {
            src,
            module_path,
            built,
            escapes,
            warnings,
            binary_go_version,
            files,
            by_line,
        })
    }

    /// The first value the compiler moved to the heap at a site's
    /// `file:line` (as a profile or doctor names it).
    pub fn at(&self, position: &str) -> Option<SiteReason> {
        let (file, line) = position.rsplit_once(':')?;
        let rel = self.files.relative(file)?;
        let e = self.by_line.get(&(rel, line.parse().ok()?))?.first()?;
        Some(SiteReason {
            value: e.value.clone(),
            class: e.class,
            reason: e.class.words(),
            hint: e.class.hint(),
        })
    }
}

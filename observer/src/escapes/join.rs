//! Hot allocation sites from a pprof allocation profile (goscope's or the
//! runtime's own heap profile), charged to the first frame inside the
//! module at DIR, and joined by file:line to the compiler's escape
//! decisions. A site whose bytes were allocated by a callee outside the
//! module (the standard library, a dependency) names that callee; a line
//! the compiler says nothing about is classed from its source text where
//! the text is unambiguous (`append(`: the runtime grows the slice), and
//! otherwise left unexplained, saying so.

use std::{
    collections::{BTreeMap, HashMap},
    io::Read as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use prost::Message as _;
use serde::Serialize;

use super::reasons::{Escape, Escapes, ReasonClass};
use crate::pprof::generated as proto;

/// Largest profile read, compressed and decompressed.
const MAX_PROFILE_BYTES: u64 = 256 << 20;
/// Source files of a module considered.
const MAX_SOURCE_FILES: usize = 100_000;

/// One frame of a sample, innermost first.
#[derive(Clone, Debug)]
struct Frame {
    function: String,
    file: String,
    line: i64,
}

/// A sampled allocation profile: stacks with bytes and objects.
pub struct AllocProfile {
    samples: Vec<(Vec<Frame>, i64, i64)>,
    pub duration_s: Option<f64>,
}

/// Reads a gzipped (or plain) pprof profile with alloc_space and
/// alloc_objects sample types.
pub fn read_profile(path: &Path) -> anyhow::Result<AllocProfile> {
    let file =
        std::fs::File::open(path).with_context(|| format!("--profile {}", path.display()))?;
    let mut raw = Vec::new();
    file.take(MAX_PROFILE_BYTES).read_to_end(&mut raw)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_PROFILE_BYTES)
            .read_to_end(&mut out)
            .with_context(|| format!("--profile {}: not gzip", path.display()))?;
        out
    } else {
        raw
    };
    let p = proto::Profile::decode(&bytes[..])
        .with_context(|| format!("--profile {}: not a pprof profile", path.display()))?;
    let string = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    let index = |name: &str| p.sample_type.iter().position(|t| string(t.r#type) == name);
    let space = index("alloc_space").with_context(|| {
        format!(
            "--profile {}: no alloc_space sample type (an allocation or heap profile is needed)",
            path.display()
        )
    })?;
    let objects = index("alloc_objects");
    let functions: HashMap<u64, (String, String)> = p
        .function
        .iter()
        .map(|f| (f.id, (string(f.name), string(f.filename))))
        .collect();
    let locations: HashMap<u64, Vec<Frame>> = p
        .location
        .iter()
        .map(|l| {
            let frames = l
                .line
                .iter()
                .filter_map(|line| {
                    let (function, file) = functions.get(&line.function_id)?.clone();
                    Some(Frame {
                        function: crate::format::escape_control(&function),
                        file: crate::format::escape_control(&file),
                        line: line.line,
                    })
                })
                .collect();
            (l.id, frames)
        })
        .collect();
    let samples = p
        .sample
        .iter()
        .map(|s| {
            let frames = s
                .location_id
                .iter()
                .filter_map(|id| locations.get(id))
                .flatten()
                .cloned()
                .collect();
            let value = |i: usize| s.value.get(i).copied().unwrap_or(0);
            (frames, value(space), objects.map_or(0, value))
        })
        .collect();
    Ok(AllocProfile {
        samples,
        duration_s: (p.duration_nanos > 0).then(|| p.duration_nanos as f64 / 1e9),
    })
}

/// The module's source files, relative to its root.
pub fn module_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() && !name.starts_with('.') && name != "vendor" && name != "testdata" {
                // A nested module is another module.
                if !e.path().join("go.mod").exists() {
                    pending.push(e.path());
                }
            } else if kind.is_file()
                && name.ends_with(".go")
                && let Ok(rel) = e.path().strip_prefix(root)
            {
                files.push(rel.to_path_buf());
            }
            if files.len() >= MAX_SOURCE_FILES {
                return files;
            }
        }
    }
    files
}

/// Maps a profile's file name to the module file it is (absolute build
/// paths, -trimpath'd "module/path/file.go", or built elsewhere).
pub struct ModuleFiles {
    root: PathBuf,
    module_path: String,
    /// Relative paths, longest first (the most specific suffix wins).
    files: Vec<String>,
}

impl ModuleFiles {
    pub fn new(root: &Path, module_path: &str) -> Self {
        let mut files: Vec<String> = module_files(root)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.len()));
        Self {
            root: root.to_path_buf(),
            module_path: module_path.to_string(),
            files,
        }
    }

    /// The module-relative path of a file name a binary or profile gives.
    pub fn relative(&self, file: &str) -> Option<String> {
        if let Ok(rel) = Path::new(file).strip_prefix(&self.root) {
            return Some(rel.display().to_string());
        }
        if let Some(rel) = file.strip_prefix(&format!("{}/", self.module_path)) {
            return self.files.iter().find(|f| *f == rel).cloned();
        }
        self.files
            .iter()
            .find(|f| file.ends_with(&format!("/{f}")))
            .cloned()
    }
}

/// Runtime frames, which are never the site.
fn is_runtime(function: &str) -> bool {
    function.starts_with("runtime.")
        || function.starts_with("internal/runtime/")
        || function.starts_with("internal/bytealg.")
}

/// One hot site of the module.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainedSite {
    pub function: String,
    /// `file:line` relative to the module root.
    pub position: String,
    pub bytes_share: f64,
    pub bytes_per_s: Option<f64>,
    pub objects_per_s: Option<f64>,
    /// The values the compiler moved to the heap at this line.
    pub escapes: Vec<ExplainedEscape>,
    /// The site's reason class: the compiler's (first escape), else from
    /// the source line; `None`: not explained.
    pub class: Option<ReasonClass>,
    /// "compiler", "source line", or null.
    pub class_from: Option<&'static str>,
    /// Callees outside the module that allocated part of the bytes, with
    /// their share of the site's bytes.
    pub allocated_in: Vec<(String, f64)>,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExplainedEscape {
    pub value: String,
    pub class: ReasonClass,
    pub reason: &'static str,
    pub hint: &'static str,
    pub flow: Vec<String>,
}

impl From<&Escape> for ExplainedEscape {
    fn from(e: &Escape) -> Self {
        Self {
            value: e.value.clone(),
            class: e.class,
            reason: e.class.words(),
            hint: e.class.hint(),
            flow: e.flow.clone(),
        }
    }
}

/// The source text of `rel:line` in the module, if readable.
fn source_line(root: &Path, rel: &str, line: i64) -> Option<String> {
    let text = std::fs::read_to_string(root.join(rel)).ok()?;
    text.lines()
        .nth(usize::try_from(line.checked_sub(1)?).ok()?)
        .map(str::to_string)
}

/// The module's hot sites in `profile`, joined to `escapes`.
pub fn explain(
    profile: &AllocProfile,
    escapes: &Escapes,
    root: &Path,
    module_path: &str,
) -> Vec<ExplainedSite> {
    let module = ModuleFiles::new(root, module_path);
    // Escapes by (relative file, line).
    let by_line: HashMap<(String, u64), &Vec<Escape>> = escapes
        .by_line
        .iter()
        .filter_map(|((file, line), e)| {
            let rel = file.strip_prefix(root).ok()?.display().to_string();
            Some(((rel, *line), e))
        })
        .collect();
    let total: i64 = profile.samples.iter().map(|s| s.1).sum();
    // (function, rel, line) → (bytes, objects, callee → bytes).
    type Acc = (i64, i64, BTreeMap<String, i64>);
    let mut sites: HashMap<(String, String, i64), Acc> = HashMap::new();
    for (frames, bytes, objects) in &profile.samples {
        let allocating = frames.iter().find(|f| !is_runtime(&f.function));
        let Some((frame, rel)) = frames
            .iter()
            .find_map(|f| module.relative(&f.file).map(|rel| (f, rel)))
        else {
            continue;
        };
        let entry = sites
            .entry((frame.function.clone(), rel, frame.line))
            .or_default();
        entry.0 += bytes;
        entry.1 += objects;
        if let Some(callee) = allocating.filter(|a| a.function != frame.function) {
            *entry.2.entry(callee.function.clone()).or_default() += bytes;
        }
    }
    let rate = |v: i64| profile.duration_s.map(|d| v as f64 / d);
    let mut out: Vec<ExplainedSite> = sites
        .into_iter()
        .map(|((function, rel, line), (bytes, objects, callees))| {
            let escapes: Vec<ExplainedEscape> = u64::try_from(line)
                .ok()
                .and_then(|l| by_line.get(&(rel.clone(), l)))
                .map(|e| e.iter().map(ExplainedEscape::from).collect())
                .unwrap_or_default();
            let allocated_in: Vec<(String, f64)> = callees
                .into_iter()
                .map(|(f, b)| (f, if bytes > 0 { b as f64 / bytes as f64 } else { 0.0 }))
                .collect();
            let from_source = source_line(root, &rel, line)
                .filter(|text| text.contains("append("))
                .map(|_| ReasonClass::AppendGrowth);
            let (class, class_from) = match (escapes.first(), from_source) {
                (Some(e), _) => (Some(e.class), Some("compiler")),
                (None, Some(c)) => (Some(c), Some("source line")),
                (None, None) => (None, None),
            };
            let note = match (&class, allocated_in.first()) {
                (None, Some((callee, _))) => Some(format!(
                    "the compiler keeps nothing of this line on the heap: the bytes are allocated inside {callee}, called from here"
                )),
                (None, None) => Some("the compiler reports no escape at this line".to_string()),
                (Some(_), _) => None,
            };
            ExplainedSite {
                function,
                position: format!("{rel}:{line}"),
                bytes_share: if total > 0 { bytes as f64 / total as f64 } else { 0.0 },
                bytes_per_s: rate(bytes),
                objects_per_s: rate(objects),
                escapes,
                class,
                class_from,
                allocated_in,
                note,
            }
        })
        .collect();
    out.sort_by(|a, b| b.bytes_share.total_cmp(&a.bytes_share));
    out
}

//! The compiler's escape decisions, read from its optimisation log
//! (`-gcflags=-json=0,file://DIR`: one JSON file per source file, a header
//! line then one LSP-style diagnostic per line; codes `escape` and
//! `escapes` carry "X escapes to heap" with the flow as related
//! information), classified into reason classes with plain words and a
//! fix hint. Every line read is bounded; a log that does not parse is an
//! error naming the file.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Why a value is on the heap, as a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonClass {
    /// Its address is returned (or stored where the caller can see it).
    ReturnedPointer,
    /// A non-pointer value converted to an interface (boxed).
    InterfaceConversion,
    /// Captured by a closure that outlives the frame (a goroutine).
    Closure,
    /// Passed in a variadic `...any` argument list (fmt and friends).
    VariadicArguments,
    /// `append` grew the slice past its capacity.
    AppendGrowth,
    /// Too large for the stack (or of a size unknown at compile time).
    TooLarge,
    /// Stored into a map, or an element of a heap slice or object.
    StoredInContainer,
    /// Anything else the compiler said.
    Other,
}

impl ReasonClass {
    /// What it means, in plain words.
    pub fn words(self) -> &'static str {
        match self {
            ReasonClass::ReturnedPointer => {
                "its address outlives the function (returned or stored for the caller)"
            }
            ReasonClass::InterfaceConversion => {
                "it is converted to an interface, which boxes it on the heap"
            }
            ReasonClass::Closure => {
                "a closure that outlives the frame (a goroutine or a stored func) captures it"
            }
            ReasonClass::VariadicArguments => {
                "it is passed in a variadic ...any argument list, each argument boxed"
            }
            ReasonClass::AppendGrowth => {
                "append grows the slice past its capacity and reallocates it"
            }
            ReasonClass::TooLarge => {
                "it is too large for the stack, or its size is not known at compile time"
            }
            ReasonClass::StoredInContainer => "its address is stored in a map or a heap object",
            ReasonClass::Other => "the compiler moved it to the heap",
        }
    }

    /// What usually removes it.
    pub fn hint(self) -> &'static str {
        match self {
            ReasonClass::ReturnedPointer => {
                "return the value, not a pointer, or let the caller pass the destination in"
            }
            ReasonClass::InterfaceConversion => {
                "keep the concrete type on hot paths (generics or a typed method) instead of any"
            }
            ReasonClass::Closure => {
                "pass the values to the goroutine as arguments, or reuse a worker that receives them on a channel"
            }
            ReasonClass::VariadicArguments => {
                "format with strconv.Append* into a reused buffer instead of fmt on hot paths"
            }
            ReasonClass::AppendGrowth => {
                "preallocate with make([]T, 0, n), or reuse the slice (s = s[:0])"
            }
            ReasonClass::TooLarge => {
                "reuse the buffer (a sync.Pool or a field), or give make a constant size small enough for the stack"
            }
            ReasonClass::StoredInContainer => {
                "store values instead of pointers in the map, or pool the objects"
            }
            ReasonClass::Other => "see the compiler's flow below",
        }
    }

    /// The class the runtime function that allocated implies, for an
    /// allocation the compiler says nothing about at that line.
    pub fn of_runtime_allocator(function: &str) -> Option<Self> {
        let name = function.strip_prefix("runtime.")?;
        Some(match name {
            "growslice" => ReasonClass::AppendGrowth,
            "mapassign" | "mapassign_fast64" | "mapassign_fast32" | "mapassign_faststr"
            | "makemap" | "makemap_small" => ReasonClass::StoredInContainer,
            n if n.starts_with("convT") => ReasonClass::InterfaceConversion,
            _ => return None,
        })
    }
}

/// One value the compiler moved to the heap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Escape {
    /// Source file as the compiler named it (absolute).
    pub file: PathBuf,
    pub line: u64,
    /// The expression ("&point{...}", "i", "make([]byte, 131072)").
    pub value: String,
    pub class: ReasonClass,
    /// The compiler's flow, trimmed ("from return &point{...} (return)").
    pub flow: Vec<String>,
}

/// Every escape of a build, by (file, line).
#[derive(Debug, Default)]
pub struct Escapes {
    pub by_line: BTreeMap<(PathBuf, u64), Vec<Escape>>,
    /// The compiler that wrote the log ("go1.27.3").
    pub compiler: Option<String>,
}

/// Longest log line read (a larger one is refused).
const MAX_LINE: u64 = 1 << 20;
/// Flow lines kept per escape.
const MAX_FLOW: usize = 8;

#[derive(Deserialize)]
struct Header {
    file: String,
    #[serde(default)]
    gc_version: Option<String>,
}

#[derive(Deserialize)]
struct Position {
    line: u64,
}

#[derive(Deserialize)]
struct Range {
    start: Position,
}

#[derive(Deserialize)]
struct Related {
    message: String,
}

#[derive(Deserialize)]
struct Diagnostic {
    range: Range,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default, rename = "relatedInformation")]
    related: Vec<Related>,
}

/// The class of one "X escapes to heap" with its flow.
pub fn classify(value: &str, flow: &[String]) -> ReasonClass {
    let text = flow.join("\n");
    if text.contains("(too large for stack)") || text.contains("non-constant size") {
        ReasonClass::TooLarge
    } else if value == "func literal" || text.contains("(captured by a closure)") {
        ReasonClass::Closure
    } else if text.contains("... argument") {
        ReasonClass::VariadicArguments
    } else if value.starts_with("append(") {
        ReasonClass::AppendGrowth
    } else if text.contains("(interface-converted)") {
        ReasonClass::InterfaceConversion
    } else if text.contains("(return)") {
        // A non-pointer value can only escape through a return by being
        // boxed into the interface the function returns.
        if value.starts_with('&') || value.starts_with("new(") {
            ReasonClass::ReturnedPointer
        } else {
            ReasonClass::InterfaceConversion
        }
    } else if value.starts_with('&') || text.contains("(address-of)") {
        ReasonClass::StoredInContainer
    } else if text.contains("(assign)") {
        // A value (not its address) stored where it outlives the frame is
        // boxed into an interface.
        ReasonClass::InterfaceConversion
    } else {
        ReasonClass::Other
    }
}

/// Reads every log file under `dir` (the -json destination).
pub fn read_logs(dir: &Path) -> anyhow::Result<Escapes> {
    let mut escapes = Escapes::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() && entry.path().extension().is_some_and(|e| e == "json") {
                read_log(&entry.path(), &mut escapes)?;
            }
        }
    }
    Ok(escapes)
}

fn read_log(path: &Path, escapes: &mut Escapes) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)?;
    let mut lines = BufReader::new(file.take(1 << 30)).lines();
    let bad = |what: &str| anyhow::anyhow!("compiler log {}: {what}", path.display());
    let header: Header = match lines.next() {
        Some(line) => serde_json::from_str(&line?).map_err(|e| bad(&format!("header: {e}")))?,
        None => return Ok(()),
    };
    if escapes.compiler.is_none() {
        escapes.compiler = header.gc_version.clone();
    }
    let source = PathBuf::from(&header.file);
    for line in lines {
        let line = line?;
        if line.len() as u64 > MAX_LINE {
            return Err(bad("a diagnostic line over 1 MiB"));
        }
        let d: Diagnostic =
            serde_json::from_str(&line).map_err(|e| bad(&format!("diagnostic: {e}")))?;
        if !matches!(d.code.as_str(), "escape" | "escapes") {
            continue;
        }
        let Some(value) = d.message.strip_suffix(" escapes to heap") else {
            continue;
        };
        let flow: Vec<String> = d
            .related
            .iter()
            .filter_map(|r| r.message.strip_prefix("escflow:"))
            .map(|m| crate::format::escape_control(m.trim()))
            .take(MAX_FLOW)
            .collect();
        let value = crate::format::escape_control(value);
        let class = classify(&value, &flow);
        escapes
            .by_line
            .entry((source.clone(), d.range.start.line))
            .or_default()
            .push(Escape {
                file: source.clone(),
                line: d.range.start.line,
                value,
                class,
                flow,
            });
    }
    Ok(())
}

/// Escape decisions by class across a build (the summary mode).
pub fn summary(escapes: &Escapes) -> Vec<(ReasonClass, u64)> {
    let mut counts: BTreeMap<ReasonClass, u64> = BTreeMap::new();
    for e in escapes.by_line.values().flatten() {
        *counts.entry(e.class).or_default() += 1;
    }
    let mut rows: Vec<(ReasonClass, u64)> = counts.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flows_of_each_class_as_go_1_22_and_1_27_write_them() {
        let cases = [
            (
                "&point{...}",
                flow(&[
                    "flow: ~r0 ← &{storage for &point{...}}:",
                    "from &point{...} (spill)",
                    "from return &point{...} (return)",
                ]),
                ReasonClass::ReturnedPointer,
            ),
            (
                "point{...}",
                flow(&[
                    "flow: ~r0 = &{storage for point{...}}:",
                    "from point{...} (spill)",
                    "from return point{...} (return)",
                ]),
                ReasonClass::InterfaceConversion,
            ),
            (
                "func literal",
                flow(&[
                    "flow: {heap} = &{storage for func literal}:",
                    "from func literal (spill)",
                ]),
                ReasonClass::Closure,
            ),
            (
                "i",
                flow(&[
                    "flow: {storage for ... argument} = &{storage for i}:",
                    "from ... argument (slice-literal-element)",
                ]),
                ReasonClass::VariadicArguments,
            ),
            (
                "append(s, i)",
                flow(&[
                    "from append(s, i) (spill)",
                    "from s = append(s, i) (assign)",
                    "from return s (return)",
                ]),
                ReasonClass::AppendGrowth,
            ),
            (
                "make([]byte, 131072)",
                flow(&["from make([]byte, 131072) (too large for stack)"]),
                ReasonClass::TooLarge,
            ),
            (
                "p",
                flow(&[
                    "flow: {heap} = &p:",
                    "from &p (address-of)",
                    "from m[i] = &p (assign)",
                ]),
                ReasonClass::StoredInContainer,
            ),
            (
                "sprint(i)",
                flow(&[
                    "flow: {heap} ← &{storage for sprint(i)}:",
                    "from sprint(i) (spill)",
                    "from sink = sprint(i) (assign)",
                ]),
                ReasonClass::InterfaceConversion,
            ),
            ("x", flow(&[]), ReasonClass::Other),
        ];
        for (value, flow, want) in cases {
            assert_eq!(classify(value, &flow), want, "{value}");
        }
        assert_eq!(
            ReasonClass::of_runtime_allocator("runtime.growslice"),
            Some(ReasonClass::AppendGrowth)
        );
        assert_eq!(ReasonClass::of_runtime_allocator("runtime.mallocgc"), None);
    }
}

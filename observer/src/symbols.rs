//! Address → function name, and address → source frames, for the stacks
//! goscope samples (CPU samples, allocation sites, cgo and goroutine
//! creation sites), from the binary's function table (.symtab or
//! .gopclntab) and pclntab line tables, so stripped binaries symbolize too.

use crate::{binary::GoBinary, pprof};

pub struct Symbolizer {
    /// (start, end, name) sorted by start.
    ranges: Vec<(u64, u64, String)>,
    bias: u64,
}

impl Symbolizer {
    pub fn new(binary: &GoBinary, bias: u64) -> Self {
        let mut ranges: Vec<(u64, u64, String)> = binary
            .functions
            .iter()
            // Names come from the target's binary: control characters are
            // escaped here, once, so no output can drive a terminal.
            .map(|f| {
                (
                    f.address,
                    f.address + f.size.max(1),
                    crate::format::escape_control(&f.name),
                )
            })
            .collect();
        ranges.sort_by_key(|r| r.0);
        Self { ranges, bias }
    }

    /// The function containing run-time address `pc`.
    pub fn function(&self, pc: u64) -> Option<&str> {
        let link = pc.checked_sub(self.bias)?;
        let i = self
            .ranges
            .partition_point(|r| r.0 <= link)
            .checked_sub(1)?;
        let (start, end, name) = &self.ranges[i];
        (*start..*end).contains(&link).then_some(name.as_str())
    }
}

/// Address → source frames (function, file, line, inlined calls expanded)
/// from the pclntab's line tables, falling back to the function name.
pub struct SourceSymbolizer {
    functions: Symbolizer,
    lines: Option<crate::binary::lines::LineTable>,
    bias: u64,
}

impl SourceSymbolizer {
    pub fn new(binary: &GoBinary, bias: u64) -> Self {
        Self {
            functions: Symbolizer::new(binary, bias),
            lines: crate::binary::lines::LineTable::parse(binary).ok(),
            bias,
        }
    }

    /// The pclntab's tables (stack walks read frame sizes from them).
    pub fn line_table(&self) -> Option<&crate::binary::lines::LineTable> {
        self.lines.as_ref()
    }

    /// The function containing run-time `pc`, by the function table.
    pub fn function(&self, pc: u64) -> Option<&str> {
        self.functions.function(pc)
    }

    /// Whether line tables were readable (else only function names).
    pub fn has_lines(&self) -> bool {
        self.lines.is_some()
    }

    /// The location of run-time `pc`; a return address is looked up at
    /// `pc - 1`, inside the call instruction.
    pub fn location(&self, pc: u64, return_address: bool) -> pprof::Location {
        let lookup = if return_address {
            pc.saturating_sub(1)
        } else {
            pc
        };
        let frames = match (&self.lines, lookup.checked_sub(self.bias)) {
            (Some(lines), Some(link)) => lines.frames(link),
            _ => Vec::new(),
        };
        if frames.is_empty() {
            let name = self.functions.function(lookup).unwrap_or("[unknown]");
            return pprof::Location::named(pc, name);
        }
        pprof::Location {
            pc,
            lines: frames
                .into_iter()
                .map(|f| pprof::SourceLine {
                    function: crate::format::escape_control(&f.function),
                    file: crate::format::escape_control(&f.file),
                    line: f.line,
                })
                .collect(),
        }
    }
}

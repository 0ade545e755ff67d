//! Source positions from the pclntab's line tables: PC → function, file and
//! line, with inlined calls expanded (Go 1.20+ inline trees). Works on
//! stripped binaries, which keep the pclntab.

use super::{
    GoBinary, GoVersion,
    pclntab::{self, PclntabError},
};

/// `_func.pcdata` index of the inline-tree index table.
const PCDATA_INL_TREE_INDEX: usize = 2;
/// `_func.funcdata` index of the inline tree.
const FUNCDATA_INL_TREE: usize = 3;
/// Size of one `runtime.inlinedCall` (Go 1.20+).
const INLINED_CALL_LEN: usize = 16;
/// Deepest inline nesting followed (guards against corrupt tables).
const MAX_INLINE_DEPTH: usize = 64;
/// Longest function or file name read (a longer run without NUL is taken
/// as corrupt: the lookup gives "?").
pub const MAX_NAME_LEN: usize = 64 << 10;

/// One source frame: the innermost inlined call first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// What a stack walk needs at one PC: the function and its frame size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSize {
    /// Link-time entry of the function containing the PC.
    pub entry: u64,
    /// The function's name (the outermost, not an inlined callee).
    pub function: String,
    /// Bytes between the SP at this PC and the return address (the
    /// pc-value table `pcsp`); `None` when the table gives no value.
    pub sp_delta: Option<i64>,
    /// `_func.funcID` (abi.FuncID: its numbering differs by version).
    pub func_id: u8,
}

/// The pclntab's function, file and line tables, copied out of the binary.
pub struct LineTable {
    pclntab: Vec<u8>,
    text_start: u64,
    nfunc: usize,
    quantum: u64,
    funcnames: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    pclntable: usize,
    /// Go 1.20+ `_func` layout (startLine field, 16-byte inline records).
    go120: bool,
    /// `go:func.*` bytes, where funcdata offsets point (Go 1.20+).
    gofunc: Vec<u8>,
}

/// One `_func` record's fields that line lookups need.
struct FuncRecord {
    entry: u64,
    /// Bytes to the next function's entry: bounds the pc-value decoding.
    len: u64,
    offset: usize,
    name_off: u32,
    pcfile: u32,
    pcln: u32,
    npcdata: u32,
    cu_offset: u32,
    nfuncdata: u8,
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(offset..offset.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(data: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        data.get(offset..offset.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn cstr(data: &[u8], offset: usize) -> Option<String> {
    let bytes = data.get(offset..)?;
    let bytes = &bytes[..bytes.len().min(MAX_NAME_LEN + 1)];
    let len = bytes.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&bytes[..len]).into_owned())
}

/// Offset of `moduledata.gofunc` by Go version (fields were added before it
/// in 1.20 and 1.27).
fn gofunc_offset(version: GoVersion) -> usize {
    if version.at_least(27) {
        344
    } else if version.at_least(20) {
        320
    } else {
        304
    }
}

impl LineTable {
    pub fn parse(binary: &GoBinary) -> Result<Self, PclntabError> {
        let file = binary
            .object()
            .map_err(|_| PclntabError::Truncated { what: "ELF" })?;
        let (address, data) = pclntab::locate(&file)?;
        let version = binary.go_version();
        let words = pclntab::moduledata_words(
            &file,
            address,
            data.len() as u64,
            &[176, gofunc_offset(version)],
        )?;
        let gofunc = binary.bytes_from(words[1]).unwrap_or_default();
        Self::from_tables(data, words[0], gofunc)
    }

    /// The table over a pclntab's bytes, the text base (moduledata.text)
    /// and the `go:func.*` bytes (Go 1.20+ inline trees; ignored before).
    pub fn from_tables(
        pclntab: &[u8],
        text_start: u64,
        gofunc: &[u8],
    ) -> Result<Self, PclntabError> {
        let data = pclntab;
        let truncated = |what| PclntabError::Truncated { what };
        let magic = u32_at(data, 0).ok_or(truncated("header"))?;
        let go120 = match magic {
            0xffff_fff1 => true,
            0xffff_fff0 => false,
            other => return Err(PclntabError::UnknownMagic(other)),
        };
        let word = |offset| {
            u64_at(data, offset)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or(truncated("header"))
        };
        let (nfunc, funcnames, cutab, filetab, pctab, pclntable) = (
            word(8)?,
            word(32)?,
            word(40)?,
            word(48)?,
            word(56)?,
            word(64)?,
        );
        // The function table holds nfunc + 1 entries of 8 bytes.
        let functab_len = data.len().saturating_sub(pclntable);
        if nfunc >= functab_len / 8 {
            return Err(truncated("functab entries"));
        }
        Ok(Self {
            quantum: u64::from(*data.get(6).ok_or(truncated("header"))?).max(1),
            pclntab: data.to_vec(),
            text_start,
            nfunc,
            funcnames,
            cutab,
            filetab,
            pctab,
            pclntable,
            go120,
            gofunc: if go120 { gofunc.to_vec() } else { Vec::new() },
        })
    }

    /// Link-time entry addresses of the first `n` functions (for tests and
    /// fuzzing: PCs that hit the table).
    pub fn entries(&self, n: usize) -> Vec<u64> {
        let Some(functab) = self.pclntab.get(self.pclntable..) else {
            return Vec::new();
        };
        (0..self.nfunc.min(n))
            .filter_map(|i| u32_at(functab, i * 8))
            .filter_map(|off| self.text_start.checked_add(u64::from(off)))
            .collect()
    }

    /// The `_func` record of the function containing link-time `pc`.
    fn func_for(&self, pc: u64) -> Option<FuncRecord> {
        let rel = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        let functab = self.pclntab.get(self.pclntable..)?;
        let entry_off = |i: usize| u32_at(functab, i * 8);
        // Largest i with entryOff(i) <= rel; entry nfunc is the end marker.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry_off(mid)? <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo.checked_sub(1)?;
        let next = entry_off(i + 1)?;
        if rel >= next {
            return None;
        }
        let offset = u32_at(functab, i * 8 + 4)? as usize;
        let at = |field: usize| u32_at(functab, offset.checked_add(field)?);
        let nfuncdata_at = if self.go120 { 43 } else { 39 };
        let entry = self.text_start.checked_add(u64::from(at(0)?))?;
        Some(FuncRecord {
            entry,
            len: self
                .text_start
                .saturating_add(u64::from(next))
                .saturating_sub(entry),
            offset,
            name_off: at(4)?,
            pcfile: at(20)?,
            pcln: at(24)?,
            npcdata: at(28)?,
            cu_offset: at(32)?,
            nfuncdata: *functab.get(offset.checked_add(nfuncdata_at)?)?,
        })
    }

    /// Where `_func.pcdata[0]` is, in the pclntab.
    fn func_tables(&self, f: &FuncRecord) -> Option<usize> {
        self.pclntable
            .checked_add(f.offset)?
            .checked_add(if self.go120 { 44 } else { 40 })
    }

    fn pcdata(&self, f: &FuncRecord, index: usize) -> Option<u32> {
        if index >= f.npcdata as usize {
            return None;
        }
        let base = self.func_tables(f)?;
        u32_at(&self.pclntab, base.checked_add(index * 4)?)
    }

    fn funcdata(&self, f: &FuncRecord, index: usize) -> Option<u32> {
        if index >= usize::from(f.nfuncdata) {
            return None;
        }
        let base = self.func_tables(f)?;
        let value = u32_at(
            &self.pclntab,
            base.checked_add((f.npcdata as usize + index) * 4)?,
        )?;
        (value != u32::MAX).then_some(value)
    }

    /// Decodes a pc-value table at `table` for `pc` (the runtime's pcvalue).
    /// Each step of a real table advances the PC, so a function of `len`
    /// bytes has at most `len / quantum + 1` steps; more is corrupt.
    fn pcvalue(&self, table: u32, f: &FuncRecord, pc: u64) -> Option<i64> {
        if table == 0 {
            return None;
        }
        let entry = f.entry;
        let mut steps = (f.len / self.quantum).saturating_add(2);
        let data = self
            .pclntab
            .get(self.pctab.checked_add(table as usize)?..)?;
        let mut pos = 0usize;
        let mut varint = || -> Option<u64> {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let b = *data.get(pos)?;
                pos += 1;
                value |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(value);
                }
            }
            None
        };
        let (mut value, mut at, mut first) = (-1i64, entry, true);
        loop {
            steps = steps.checked_sub(1)?;
            let uvdelta = varint()?;
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            let delta = if uvdelta & 1 != 0 {
                !(uvdelta >> 1) as i64
            } else {
                (uvdelta >> 1) as i64
            };
            value = value.wrapping_add(i64::from(delta as i32));
            at = at.checked_add(varint()?.checked_mul(self.quantum)?)?;
            if pc < at {
                return Some(value);
            }
        }
    }

    fn name(&self, name_off: u32) -> String {
        self.funcnames
            .checked_add(name_off as usize)
            .and_then(|at| cstr(&self.pclntab, at))
            .unwrap_or_else(|| "?".into())
    }

    fn position(&self, f: &FuncRecord, pc: u64) -> (String, i64) {
        let file = self
            .pcvalue(f.pcfile, f, pc)
            .and_then(|fileno| u32::try_from(fileno).ok())
            .and_then(|fileno| {
                let index = (f.cu_offset as usize).checked_add(fileno as usize)?;
                u32_at(
                    &self.pclntab,
                    self.cutab.checked_add(index.checked_mul(4)?)?,
                )
            })
            .filter(|&off| off != u32::MAX)
            .and_then(|off| cstr(&self.pclntab, self.filetab.checked_add(off as usize)?))
            .unwrap_or_else(|| "?".into());
        let line = self.pcvalue(f.pcln, f, pc).unwrap_or(0);
        (file, line)
    }

    /// The function at link-time `pc` and its frame size there (the
    /// runtime's funcspdelta, which its own traceback unwinds by).
    pub fn frame_size(&self, pc: u64) -> Option<FrameSize> {
        /// `_func.pcsp`: offset of the SP-delta pc-value table.
        const PCSP: usize = 16;
        let f = self.func_for(pc)?;
        let pcsp = u32_at(
            self.pclntab.get(self.pclntable..)?,
            f.offset.checked_add(PCSP)?,
        )?;
        let func_id_at = if self.go120 { 40 } else { 36 };
        let functab = self.pclntab.get(self.pclntable..)?;
        Some(FrameSize {
            entry: f.entry,
            function: self.name(f.name_off),
            sp_delta: self.pcvalue(pcsp, &f, pc),
            func_id: *functab.get(f.offset.checked_add(func_id_at)?)?,
        })
    }

    /// The function at link-time `pc`: its name, the file of its entry and
    /// the line its declaration starts on (`_func.startLine`, Go 1.20+).
    pub fn function_start(&self, pc: u64) -> Option<(String, String, i64)> {
        /// `_func.startLine` (Go 1.20+).
        const START_LINE: usize = 36;
        if !self.go120 {
            return None;
        }
        let f = self.func_for(pc)?;
        let functab = self.pclntab.get(self.pclntable..)?;
        let start_line = i64::from(u32_at(functab, f.offset.checked_add(START_LINE)?)? as i32);
        let (file, _) = self.position(&f, f.entry);
        Some((self.name(f.name_off), file, start_line))
    }

    /// The source frames at link-time `pc`, innermost inlined call first;
    /// empty when `pc` is in no Go function.
    pub fn frames(&self, pc: u64) -> Vec<Frame> {
        let Some(f) = self.func_for(pc) else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        let mut at = pc;
        let tree = self
            .go120
            .then(|| self.funcdata(&f, FUNCDATA_INL_TREE))
            .flatten();
        if let (Some(tree), Some(index_table)) = (tree, self.pcdata(&f, PCDATA_INL_TREE_INDEX)) {
            while frames.len() < MAX_INLINE_DEPTH {
                let Some(record) = self
                    .pcvalue(index_table, &f, at)
                    .and_then(|ix| usize::try_from(ix).ok())
                    .and_then(|ix| ix.checked_mul(INLINED_CALL_LEN))
                    .and_then(|off| off.checked_add(tree as usize))
                else {
                    break;
                };
                let (Some(name_off), Some(parent_pc)) = (
                    u32_at(&self.gofunc, record.saturating_add(4)),
                    u32_at(&self.gofunc, record.saturating_add(8)),
                ) else {
                    break;
                };
                let (file, line) = self.position(&f, at);
                frames.push(Frame {
                    function: self.name(name_off),
                    file,
                    line,
                });
                at = f.entry.saturating_add(u64::from(parent_pc));
            }
        }
        let (file, line) = self.position(&f, at);
        frames.push(Frame {
            function: self.name(f.name_off),
            file,
            line,
        });
        frames
    }
}

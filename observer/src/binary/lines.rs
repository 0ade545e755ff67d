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

/// One source frame: the innermost inlined call first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
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
        let version = binary.go_version();
        let words = pclntab::moduledata_words(
            &file,
            address,
            data.len() as u64,
            &[176, gofunc_offset(version)],
        )?;
        let gofunc = if go120 {
            binary.bytes_from(words[1]).unwrap_or_default().to_vec()
        } else {
            Vec::new()
        };
        Ok(Self {
            quantum: u64::from(*data.get(6).ok_or(truncated("header"))?).max(1),
            pclntab: data.to_vec(),
            text_start: words[0],
            nfunc,
            funcnames,
            cutab,
            filetab,
            pctab,
            pclntable,
            go120,
            gofunc,
        })
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
        if rel >= entry_off(i + 1)? {
            return None;
        }
        let offset = u32_at(functab, i * 8 + 4)? as usize;
        let at = |field: usize| u32_at(functab, offset + field);
        let nfuncdata_at = if self.go120 { 43 } else { 39 };
        Some(FuncRecord {
            entry: self.text_start + u64::from(at(0)?),
            offset,
            name_off: at(4)?,
            pcfile: at(20)?,
            pcln: at(24)?,
            npcdata: at(28)?,
            cu_offset: at(32)?,
            nfuncdata: *functab.get(offset + nfuncdata_at)?,
        })
    }

    fn pcdata(&self, f: &FuncRecord, index: usize) -> Option<u32> {
        if index >= f.npcdata as usize {
            return None;
        }
        let base = self.pclntable + f.offset + if self.go120 { 44 } else { 40 };
        u32_at(&self.pclntab, base + index * 4)
    }

    fn funcdata(&self, f: &FuncRecord, index: usize) -> Option<u32> {
        if index >= usize::from(f.nfuncdata) {
            return None;
        }
        let base = self.pclntable + f.offset + if self.go120 { 44 } else { 40 };
        let value = u32_at(&self.pclntab, base + (f.npcdata as usize + index) * 4)?;
        (value != u32::MAX).then_some(value)
    }

    /// Decodes a pc-value table at `table` for `pc` (the runtime's pcvalue).
    fn pcvalue(&self, table: u32, entry: u64, pc: u64) -> Option<i64> {
        if table == 0 {
            return None;
        }
        let data = self.pclntab.get(self.pctab + table as usize..)?;
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
        cstr(&self.pclntab, self.funcnames + name_off as usize).unwrap_or_else(|| "?".into())
    }

    fn position(&self, f: &FuncRecord, pc: u64) -> (String, i64) {
        let file = self
            .pcvalue(f.pcfile, f.entry, pc)
            .and_then(|fileno| u32::try_from(fileno).ok())
            .and_then(|fileno| {
                let index = (f.cu_offset as usize).checked_add(fileno as usize)?;
                u32_at(&self.pclntab, self.cutab + index * 4)
            })
            .filter(|&off| off != u32::MAX)
            .and_then(|off| cstr(&self.pclntab, self.filetab + off as usize))
            .unwrap_or_else(|| "?".into());
        let line = self.pcvalue(f.pcln, f.entry, pc).unwrap_or(0);
        (file, line)
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
                let Some(ix) = self
                    .pcvalue(index_table, f.entry, at)
                    .and_then(|ix| usize::try_from(ix).ok())
                else {
                    break;
                };
                let record = tree as usize + ix * INLINED_CALL_LEN;
                let (Some(name_off), Some(parent_pc)) = (
                    u32_at(&self.gofunc, record + 4),
                    u32_at(&self.gofunc, record + 8),
                ) else {
                    break;
                };
                let (file, line) = self.position(&f, at);
                frames.push(Frame {
                    function: self.name(name_off),
                    file,
                    line,
                });
                at = f.entry + u64::from(parent_pc);
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

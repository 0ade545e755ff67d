//! Function addresses from `.gopclntab`, which even stripped (`-s -w`)
//! binaries keep: Go 1.18+ formats (magic 0xfffffff0 / 0xfffffff1). The
//! text base is `moduledata.text`, found by scanning for the moduledata that
//! points at the pclntab; never `pcHeader.textStart` (zero from Go 1.26) nor
//! the `.text` section (cgo code sits in front of Go's).

use std::collections::HashMap;

use object::{Object as _, ObjectSection as _};
use thiserror::Error;

use super::symbols::{AddressSource, FunctionSymbol};

const MAGIC_GO118: u32 = 0xffff_fff0;
const MAGIC_GO120: u32 = 0xffff_fff1;
const HEADER_LEN: usize = 72;
/// moduledata.text and .etext offsets (Go 1.18 – 1.27).
const MODULEDATA_TEXT: usize = 176;
const MODULEDATA_ETEXT: usize = 184;
/// Sections that hold runtime.firstmoduledata, by Go version and mode.
const MODULEDATA_SECTIONS: &[&str] = &[".go.module", ".noptrdata", ".data.rel.ro", ".data"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error("no .gopclntab section")]
    Absent,
    #[error(".gopclntab magic {0:#x} is not a Go 1.18+ format")]
    UnknownMagic(u32),
    #[error(".gopclntab is truncated ({what})")]
    Truncated { what: &'static str },
    #[error("no moduledata points at .gopclntab; cannot find the text base")]
    NoModuledata,
    #[error("function table entry {index} lies outside the text range")]
    OutOfRange { index: usize },
}

/// Every function in the pclntab: name → symbols (several when an ABI
/// wrapper shares the name).
pub struct Pclntab {
    pub functions: HashMap<String, Vec<FunctionSymbol>>,
    pub text_start: u64,
}

fn u32_at(data: &[u8], offset: usize, what: &'static str) -> Result<u32, PclntabError> {
    data.get(offset..offset + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
        .ok_or(PclntabError::Truncated { what })
}

fn u64_at(data: &[u8], offset: usize, what: &'static str) -> Result<u64, PclntabError> {
    data.get(offset..offset + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .ok_or(PclntabError::Truncated { what })
}

fn usize_at(data: &[u8], offset: usize, what: &'static str) -> Result<usize, PclntabError> {
    usize::try_from(u64_at(data, offset, what)?).map_err(|_| PclntabError::Truncated { what })
}

impl Pclntab {
    pub fn parse(file: &object::File<'_>) -> Result<Self, PclntabError> {
        let section = file
            .section_by_name(".gopclntab")
            .ok_or(PclntabError::Absent)?;
        let data = section
            .data()
            .map_err(|_| PclntabError::Truncated { what: "section" })?;
        let magic = u32_at(data, 0, "header")?;
        if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
            return Err(PclntabError::UnknownMagic(magic));
        }
        if data.len() < HEADER_LEN || data[7] != 8 {
            return Err(PclntabError::Truncated { what: "header" });
        }
        let nfunc = usize_at(data, 8, "nfunc")?;
        let funcname_offset = usize_at(data, 32, "funcnameOffset")?;
        let pcln_offset = usize_at(data, 64, "pclnOffset")?;
        let (text_start, text_end) = moduledata_text(file, section.address(), data.len() as u64)?;

        let functab = data
            .get(pcln_offset..)
            .ok_or(PclntabError::Truncated { what: "functab" })?;
        let funcnames = data.get(funcname_offset..).ok_or(PclntabError::Truncated {
            what: "funcnametab",
        })?;
        if nfunc > functab.len() / 8 {
            return Err(PclntabError::Truncated {
                what: "functab entries",
            });
        }
        let entry = |i: usize| -> Result<(u64, usize), PclntabError> {
            let entry_off = u32_at(functab, i * 8, "functab")?;
            let func_off = u32_at(functab, i * 8 + 4, "functab")?;
            Ok((text_start + u64::from(entry_off), func_off as usize))
        };
        let mut functions: HashMap<String, Vec<FunctionSymbol>> = HashMap::new();
        for i in 0..nfunc {
            let (address, func_off) = entry(i)?;
            let (next, _) = entry(i + 1)?;
            if address < text_start || next > text_end || next < address {
                return Err(PclntabError::OutOfRange { index: i });
            }
            // _func.nameOff is the second 32-bit field of the _func record.
            let name_off = u32_at(functab, func_off + 4, "_func.nameOff")? as usize;
            let name_bytes = funcnames.get(name_off..).ok_or(PclntabError::Truncated {
                what: "function name",
            })?;
            let len = name_bytes
                .iter()
                .position(|&b| b == 0)
                .ok_or(PclntabError::Truncated {
                    what: "function name",
                })?;
            let name = String::from_utf8_lossy(&name_bytes[..len]).into_owned();
            functions
                .entry(name.clone())
                .or_default()
                .push(FunctionSymbol {
                    name,
                    address,
                    size: next - address,
                    source: AddressSource::Pclntab,
                });
        }
        Ok(Self {
            functions,
            text_start,
        })
    }
}

/// Finds runtime.firstmoduledata (its first word is the pclntab address and
/// its second, funcnametab's data pointer, points inside the pclntab) and
/// returns its text and etext.
fn moduledata_text(
    file: &object::File<'_>,
    pclntab: u64,
    pclntab_len: u64,
) -> Result<(u64, u64), PclntabError> {
    let inside = |v: u64| (pclntab..pclntab + pclntab_len).contains(&v);
    for name in MODULEDATA_SECTIONS {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let Ok(data) = section.data() else { continue };
        let mut offset = 0;
        while offset + MODULEDATA_ETEXT + 8 <= data.len() {
            let first = u64::from_le_bytes(data[offset..offset + 8].try_into().unwrap_or_default());
            if first == pclntab {
                let second = u64::from_le_bytes(
                    data[offset + 8..offset + 16].try_into().unwrap_or_default(),
                );
                let text = u64::from_le_bytes(
                    data[offset + MODULEDATA_TEXT..offset + MODULEDATA_TEXT + 8]
                        .try_into()
                        .unwrap_or_default(),
                );
                let etext = u64::from_le_bytes(
                    data[offset + MODULEDATA_ETEXT..offset + MODULEDATA_ETEXT + 8]
                        .try_into()
                        .unwrap_or_default(),
                );
                if inside(second) && text != 0 && etext > text {
                    return Ok((text, etext));
                }
            }
            offset += 8;
        }
    }
    Err(PclntabError::NoModuledata)
}

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
    #[error("no .gopclntab section and no pclntab header in RELRO data")]
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
        let (address, data) = locate(file)?;
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
        let (text_start, text_end) = moduledata_text(file, address, data.len() as u64)?;

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

/// Sections that hold the pclntab when it has no section of its own
/// (externally linked PIE binaries of older Go merge it into RELRO data).
const PCLNTAB_HOSTS: &[&str] = &[".data.rel.ro", ".rodata", ".noptrdata"];

/// R_X86_64_RELATIVE: the word's value is the addend (plus the load base).
const R_X86_64_RELATIVE: u32 = 8;

/// The pclntab's address and bytes (to the end of its section): the
/// `.gopclntab` section, else a Go 1.18+ header found in a host section
/// and confirmed by a moduledata pointing at it.
pub(crate) fn locate<'d>(file: &object::File<'d>) -> Result<(u64, &'d [u8]), PclntabError> {
    let named = [".gopclntab", ".data.rel.ro.gopclntab"]
        .iter()
        .find_map(|name| file.section_by_name(name));
    if let Some(section) = named {
        let data = section
            .data()
            .map_err(|_| PclntabError::Truncated { what: "section" })?;
        return Ok((section.address(), data));
    }
    for name in PCLNTAB_HOSTS {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let Ok(data) = section.data() else { continue };
        let mut offset = 0;
        while offset + HEADER_LEN <= data.len() {
            let magic = u32::from_le_bytes(data[offset..offset + 4].try_into().unwrap_or_default());
            let header_ok = (magic == MAGIC_GO118 || magic == MAGIC_GO120)
                && data[offset + 4..offset + 8] == [0, 0, 1, 8];
            if header_ok {
                let address = section.address() + offset as u64;
                let rest = &data[offset..];
                if moduledata_text(file, address, rest.len() as u64).is_ok() {
                    return Ok((address, rest));
                }
            }
            offset += 8;
        }
    }
    Err(PclntabError::Absent)
}

/// Link-time values of words that externally linked PIE binaries leave as
/// zero in the file and fill in through R_X86_64_RELATIVE relocations.
fn relative_relocations(file: &object::File<'_>) -> HashMap<u64, u64> {
    let Some(relocations) = file.dynamic_relocations() else {
        return HashMap::new();
    };
    relocations
        .filter_map(|(offset, r)| match r.flags() {
            object::RelocationFlags::Elf { r_type } if r_type == R_X86_64_RELATIVE => {
                Some((offset, r.addend() as u64))
            }
            _ => None,
        })
        .collect()
}

/// Finds runtime.firstmoduledata (its first word is the pclntab address and
/// its second, funcnametab's data pointer, points inside the pclntab) and
/// returns its text and etext.
fn moduledata_text(
    file: &object::File<'_>,
    pclntab: u64,
    pclntab_len: u64,
) -> Result<(u64, u64), PclntabError> {
    let words = moduledata_words(
        file,
        pclntab,
        pclntab_len,
        &[MODULEDATA_TEXT, MODULEDATA_ETEXT],
    )?;
    Ok((words[0], words[1]))
}

/// The words at `offsets` of the moduledata that points at the pclntab at
/// `pclntab` (relocation-aware), checked to have a sane text range.
pub(crate) fn moduledata_words(
    file: &object::File<'_>,
    pclntab: u64,
    pclntab_len: u64,
    offsets: &[usize],
) -> Result<Vec<u64>, PclntabError> {
    let inside = |v: u64| (pclntab..pclntab + pclntab_len).contains(&v);
    let relocated = relative_relocations(file);
    for name in MODULEDATA_SECTIONS {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let Ok(data) = section.data() else { continue };
        let base = section.address();
        let word = |offset: usize| -> u64 {
            let stored = data
                .get(offset..offset + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
            match relocated.get(&(base + offset as u64)) {
                Some(&value) if stored == 0 => value,
                _ => stored,
            }
        };
        let mut offset = 0;
        while offset + MODULEDATA_ETEXT + 8 <= data.len() {
            if word(offset) == pclntab {
                let text = word(offset + MODULEDATA_TEXT);
                let etext = word(offset + MODULEDATA_ETEXT);
                if inside(word(offset + 8)) && text != 0 && etext > text {
                    return Ok(offsets.iter().map(|&o| word(offset + o)).collect());
                }
            }
            offset += 8;
        }
    }
    Err(PclntabError::NoModuledata)
}

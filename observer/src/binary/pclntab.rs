//! Function addresses from `.gopclntab`, which even stripped (`-s -w`)
//! binaries keep: Go 1.18+ formats (magic 0xfffffff0 / 0xfffffff1). The
//! text base is `moduledata.text`, found by scanning for the moduledata that
//! points at the pclntab; never `pcHeader.textStart` (zero from Go 1.26) nor
//! the `.text` section (cgo code sits in front of Go's).

use std::collections::{BTreeMap, HashMap};

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
    #[error("more than {limit} pclntab header candidates in {section}; refusing to search further")]
    TooManyCandidates { section: &'static str, limit: usize },
}

/// Most pclntab headers examined in sections without `.gopclntab` (a real
/// binary has one; a crafted one could have millions of fakes).
pub const MAX_HEADER_CANDIDATES: usize = 256;

/// What the pclntab search did, for tests that bound its work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Header candidates found in the host sections.
    pub candidates: usize,
    /// Times the dynamic-relocation map was built.
    pub relocation_maps: usize,
    /// Words of the moduledata sections looked at.
    pub words_scanned: usize,
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
            let address = text_start
                .checked_add(u64::from(entry_off))
                .ok_or(PclntabError::OutOfRange { index: i })?;
            Ok((address, func_off as usize))
        };
        let mut names = NameTable::new(funcnames);
        let mut functions: HashMap<String, Vec<FunctionSymbol>> = HashMap::new();
        for i in 0..nfunc {
            let (address, func_off) = entry(i)?;
            let (next, _) = entry(i + 1)?;
            if address < text_start || next > text_end || next < address {
                return Err(PclntabError::OutOfRange { index: i });
            }
            // _func.nameOff is the second 32-bit field of the _func record.
            let name_off = u32_at(functab, func_off + 4, "_func.nameOff")? as usize;
            let end = names.end_of(name_off).ok_or(PclntabError::Truncated {
                what: "function name",
            })?;
            let name = String::from_utf8_lossy(&funcnames[name_off..end]).into_owned();
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

/// NUL-terminated names looked up by offset, each byte scanned at most once
/// however the offsets overlap (names at every offset of one long run
/// would otherwise cost quadratic time).
struct NameTable<'d> {
    data: &'d [u8],
    /// Scanned runs: start -> offset of the NUL that ends them.
    runs: BTreeMap<usize, usize>,
}

impl<'d> NameTable<'d> {
    fn new(data: &'d [u8]) -> Self {
        Self {
            data,
            runs: BTreeMap::new(),
        }
    }

    /// The offset of the NUL ending the name at `start`.
    fn end_of(&mut self, start: usize) -> Option<usize> {
        if start >= self.data.len() {
            return None;
        }
        if let Some((_, &end)) = self.runs.range(..=start).next_back()
            && end >= start
        {
            return Some(end);
        }
        // Scan up to the next run already known, then join it.
        let (limit, joined) = match self.runs.range(start..).next() {
            Some((&next, &end)) => (next, Some(end)),
            None => (self.data.len(), None),
        };
        let end = match self.data[start..limit].iter().position(|&b| b == 0) {
            Some(n) => start + n,
            None => joined?,
        };
        self.runs.insert(start, end);
        Some(end)
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
    locate_counted(file).0
}

/// `locate`, with what the search did. Linear in the sections' size: the
/// header candidates (at most `MAX_HEADER_CANDIDATES`) are collected
/// first, then one pass over the moduledata sections, with the relocation
/// map built once, confirms them.
pub fn locate_counted<'d>(
    file: &object::File<'d>,
) -> (Result<(u64, &'d [u8]), PclntabError>, SearchStats) {
    let mut stats = SearchStats::default();
    let named = [".gopclntab", ".data.rel.ro.gopclntab"]
        .iter()
        .find_map(|name| file.section_by_name(name));
    if let Some(section) = named {
        let found = section
            .data()
            .map(|data| (section.address(), data))
            .map_err(|_| PclntabError::Truncated { what: "section" });
        return (found, stats);
    }
    // Candidates in search order: (address, bytes to the section's end).
    let mut candidates: Vec<(u64, &'d [u8])> = Vec::new();
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
            if header_ok && let Some(address) = section.address().checked_add(offset as u64) {
                if candidates.len() == MAX_HEADER_CANDIDATES {
                    stats.candidates = candidates.len() + 1;
                    let error = PclntabError::TooManyCandidates {
                        section: name,
                        limit: MAX_HEADER_CANDIDATES,
                    };
                    return (Err(error), stats);
                }
                candidates.push((address, &data[offset..]));
            }
            offset += 8;
        }
    }
    stats.candidates = candidates.len();
    if candidates.is_empty() {
        return (Err(PclntabError::Absent), stats);
    }
    let index = ModuledataIndex::new(file, &mut stats);
    let ranges: Vec<(u64, u64)> = candidates
        .iter()
        .map(|(address, rest)| (*address, rest.len() as u64))
        .collect();
    let found = index.find(&ranges, &[MODULEDATA_TEXT, MODULEDATA_ETEXT], &mut stats);
    let result = candidates
        .into_iter()
        .zip(found)
        .find_map(|(candidate, words)| words.map(|_| candidate))
        .ok_or(PclntabError::Absent);
    (result, stats)
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
    let mut stats = SearchStats::default();
    let index = ModuledataIndex::new(file, &mut stats);
    index
        .find(&[(pclntab, pclntab_len)], offsets, &mut stats)
        .pop()
        .flatten()
        .ok_or(PclntabError::NoModuledata)
}

/// The sections that may hold runtime.firstmoduledata, with the
/// relocation map of the binary (built once).
struct ModuledataIndex<'d> {
    sections: Vec<(u64, &'d [u8])>,
    relocated: HashMap<u64, u64>,
}

impl<'d> ModuledataIndex<'d> {
    fn new(file: &object::File<'d>, stats: &mut SearchStats) -> Self {
        stats.relocation_maps += 1;
        let sections = MODULEDATA_SECTIONS
            .iter()
            .filter_map(|name| file.section_by_name(name))
            .filter_map(|section| Some((section.address(), section.data().ok()?)))
            .collect();
        Self {
            sections,
            relocated: relative_relocations(file),
        }
    }

    /// For each pclntab `(address, length)`, the words at `offsets` of the
    /// first moduledata (in section order, then address order) whose first
    /// word is that address, whose second points inside that pclntab and
    /// whose text range is sane. One pass over the sections.
    fn find(
        &self,
        pclntabs: &[(u64, u64)],
        offsets: &[usize],
        stats: &mut SearchStats,
    ) -> Vec<Option<Vec<u64>>> {
        let by_address: HashMap<u64, usize> = pclntabs
            .iter()
            .enumerate()
            .rev()
            .map(|(i, (address, _))| (*address, i))
            .collect();
        let mut found: Vec<Option<Vec<u64>>> = vec![None; pclntabs.len()];
        let mut unresolved = pclntabs.len();
        for &(base, data) in &self.sections {
            let word = |offset: usize| -> u64 {
                let stored = data
                    .get(offset..offset + 8)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
                match self.relocated.get(&base.wrapping_add(offset as u64)) {
                    Some(&value) if stored == 0 => value,
                    _ => stored,
                }
            };
            let mut offset = 0;
            while unresolved > 0 && offset + MODULEDATA_ETEXT + 8 <= data.len() {
                stats.words_scanned += 1;
                if let Some(&i) = by_address.get(&word(offset))
                    && found[i].is_none()
                {
                    let (pclntab, len) = pclntabs[i];
                    let inside = |v: u64| (pclntab..pclntab.saturating_add(len)).contains(&v);
                    let text = word(offset + MODULEDATA_TEXT);
                    let etext = word(offset + MODULEDATA_ETEXT);
                    if inside(word(offset + 8)) && text != 0 && etext > text {
                        found[i] = Some(offsets.iter().map(|&o| word(offset + o)).collect());
                        unresolved -= 1;
                    }
                }
                offset += 8;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::synth::{self, SHF_ALLOC, Section};

    /// An ELF without .gopclntab or .symtab: `.rodata` holds `fakes` fake
    /// pclntab headers and then (if `real`) the one a moduledata in
    /// `.noptrdata` points at.
    fn binary(fakes: usize, real: bool) -> (Vec<u8>, u64, usize) {
        let header = |out: &mut Vec<u8>| {
            out.extend_from_slice(&MAGIC_GO120.to_le_bytes());
            out.extend_from_slice(&[0, 0, 1, 8]);
        };
        let mut rodata = Vec::new();
        for _ in 0..fakes {
            header(&mut rodata);
        }
        // Sections start at file offset 128, linked at TEXT_BASE + offset.
        let real_at = synth::TEXT_BASE + 128 + rodata.len() as u64;
        if real {
            header(&mut rodata);
        }
        rodata.resize(rodata.len() + 256, 0);
        let mut noptrdata = vec![0u8; 64 << 10];
        let moduledata = 32 << 10;
        let mut put = |at: usize, v: u64| noptrdata[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(moduledata, real_at);
        put(moduledata + 8, real_at + 72);
        put(moduledata + MODULEDATA_TEXT, 0x40_1000);
        put(moduledata + MODULEDATA_ETEXT, 0x40_2000);
        let words = noptrdata.len() / 8;
        let elf = synth::elf(
            &[
                Section {
                    name: ".rodata".into(),
                    kind: 1,
                    flags: SHF_ALLOC,
                    data: rodata,
                },
                Section {
                    name: ".noptrdata".into(),
                    kind: 1,
                    flags: SHF_ALLOC,
                    data: noptrdata,
                },
            ],
            &[],
        );
        (elf, real_at, words)
    }

    #[test]
    fn fake_headers_cost_one_pass_over_the_data_sections() {
        let (elf, real_at, words) = binary(MAX_HEADER_CANDIDATES - 1, true);
        let file = object::File::parse(&*elf).unwrap();
        let (found, stats) = locate_counted(&file);
        assert_eq!(found.unwrap().0, real_at);
        assert_eq!(stats.candidates, MAX_HEADER_CANDIDATES);
        // Built once and scanned once, however many candidates (the old
        // search rebuilt the map and rescanned per candidate: 256 times).
        assert_eq!(stats.relocation_maps, 1);
        assert!(stats.words_scanned <= words, "{stats:?}, {words} words");
    }

    #[test]
    fn too_many_fake_headers_are_refused_after_the_cap() {
        let (elf, _, _) = binary(100_000, true);
        let file = object::File::parse(&*elf).unwrap();
        let (found, stats) = locate_counted(&file);
        assert_eq!(
            found.unwrap_err(),
            PclntabError::TooManyCandidates {
                section: ".rodata",
                limit: MAX_HEADER_CANDIDATES
            }
        );
        assert_eq!(stats.candidates, MAX_HEADER_CANDIDATES + 1);
        assert_eq!(stats.relocation_maps, 0);
        assert_eq!(stats.words_scanned, 0);
    }

    #[test]
    fn fakes_alone_are_absent() {
        let (elf, _, words) = binary(10, false);
        let file = object::File::parse(&*elf).unwrap();
        let (found, stats) = locate_counted(&file);
        assert_eq!(found.unwrap_err(), PclntabError::Absent);
        assert_eq!(stats.relocation_maps, 1);
        assert!(stats.words_scanned <= words);
    }

    #[test]
    fn names_sharing_one_run_are_scanned_once() {
        let mut data = vec![b'a'; 1 << 20];
        data.push(0);
        let mut names = NameTable::new(&data);
        for start in (0..data.len() - 1).rev() {
            assert_eq!(names.end_of(start), Some(1 << 20));
        }
        assert_eq!(names.end_of(data.len()), None);
        let mut unterminated = NameTable::new(b"abc");
        assert_eq!(unterminated.end_of(1), None);
        assert_eq!(unterminated.end_of(0), None);
    }
}

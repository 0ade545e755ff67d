//! Struct layouts from the binary's DWARF (gimli): every structure and array
//! type with its size, members and offsets, so that runtime fields can be
//! found by name path (`gFree.n`) whatever the Go version laid them out as.

use std::{borrow::Cow, collections::HashMap, io::Read as _};

use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{CompressionFormat, Object as _, ObjectSection as _};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DwarfError {
    #[error("no DWARF in the binary (built with -ldflags=-w or stripped)")]
    Absent,
    #[error("DWARF section {section}: {reason}")]
    Section { section: String, reason: String },
    #[error("DWARF section {section} decompresses to {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        section: String,
        size: u64,
        limit: u64,
    },
    #[error("malformed DWARF: {0}")]
    Malformed(#[from] gimli::Error),
}

/// Typedef chains longer than this are treated as broken.
const MAX_TYPEDEF_CHAIN: usize = 8;

/// Largest decompressed DWARF section accepted (a Go binary's .debug_info
/// is tens of MiB at most). The size written in the section's compression
/// header is checked against it and never trusted further: decoding stops
/// at the written size, and a section whose data decodes to more or less
/// is refused.
pub const MAX_DECOMPRESSED_SECTION: u64 = 256 << 20;

/// The bytes of a DWARF section, decompressed (SHF_COMPRESSED or GNU
/// `.zdebug_`) with the output capped at `limit` bytes.
pub fn section_bytes<'d>(
    section: &object::Section<'d, '_>,
    name: &str,
    limit: u64,
) -> Result<Cow<'d, [u8]>, DwarfError> {
    let error = |reason: String| DwarfError::Section {
        section: name.to_string(),
        reason,
    };
    let compressed = section
        .compressed_data()
        .map_err(|e| error(e.to_string()))?;
    decompress_bounded(
        compressed.format,
        compressed.data,
        compressed.uncompressed_size,
        name,
        limit,
    )
}

/// Decodes `data` (of `format`) that claims to decompress to `size` bytes:
/// refused when `size` is over `limit`, and when the data decodes to
/// anything but exactly `size` bytes (decoding stops one byte past it).
pub fn decompress_bounded<'d>(
    format: CompressionFormat,
    data: &'d [u8],
    size: u64,
    name: &str,
    limit: u64,
) -> Result<Cow<'d, [u8]>, DwarfError> {
    let error = |reason: String| DwarfError::Section {
        section: name.to_string(),
        reason,
    };
    if format == CompressionFormat::None {
        return Ok(Cow::Borrowed(data));
    }
    if size > limit {
        return Err(DwarfError::TooLarge {
            section: name.to_string(),
            size,
            limit,
        });
    }
    // Grown as data arrives (a lying header costs nothing up front).
    let mut out = Vec::with_capacity(size.min(1 << 20) as usize);
    match format {
        CompressionFormat::Zlib => {
            flate2::read::ZlibDecoder::new(data)
                .take(size + 1)
                .read_to_end(&mut out)
                .map_err(|e| error(format!("invalid zlib data: {e}")))?;
        }
        CompressionFormat::Zstandard => {
            let mut input = data;
            while !input.is_empty() && out.len() as u64 <= size {
                let decoder = match ruzstd::StreamingDecoder::new(&mut input) {
                    Ok(decoder) => decoder,
                    Err(ruzstd::frame_decoder::FrameDecoderError::ReadFrameHeaderError(
                        ruzstd::frame::ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        input = input
                            .get(length as usize..)
                            .ok_or_else(|| error("truncated zstd skippable frame".into()))?;
                        continue;
                    }
                    Err(e) => return Err(error(format!("invalid zstd data: {e}"))),
                };
                let room = size + 1 - out.len() as u64;
                decoder
                    .take(room)
                    .read_to_end(&mut out)
                    .map_err(|e| error(format!("invalid zstd data: {e}")))?;
            }
        }
        other => return Err(error(format!("unsupported compression {other:?}"))),
    }
    if out.len() as u64 != size {
        return Err(error(format!(
            "decompresses to {}{} bytes, not the {size} its header says",
            out.len(),
            if out.len() as u64 > size { "+" } else { "" },
        )));
    }
    Ok(Cow::Owned(out))
}

/// A type, identified by its .debug_info offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypeId(usize);

#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub offset: u64,
    pub type_id: Option<TypeId>,
}

#[derive(Clone, Debug)]
pub enum TypeInfo {
    Struct {
        name: String,
        size: u64,
        members: Vec<Member>,
    },
    Array {
        element: Option<TypeId>,
        count: u64,
        size: Option<u64>,
    },
    Other {
        name: String,
        size: Option<u64>,
        /// What a typedef names (Go emits named types as typedefs).
        target: Option<TypeId>,
    },
}

impl TypeInfo {
    pub fn size(&self) -> Option<u64> {
        match self {
            TypeInfo::Struct { size, .. } => Some(*size),
            TypeInfo::Array { size, .. } | TypeInfo::Other { size, .. } => *size,
        }
    }
}

/// A field found by path: its offset from the start of the outer struct and
/// its type.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub offset: u64,
    pub type_id: Option<TypeId>,
}

/// Every struct and array type in the binary's DWARF.
pub struct DwarfTypes {
    types: HashMap<TypeId, TypeInfo>,
    structs_by_name: HashMap<String, TypeId>,
}

impl DwarfTypes {
    pub fn load(file: &object::File<'_>) -> Result<Self, DwarfError> {
        if file.section_by_name(".debug_info").is_none() {
            return Err(DwarfError::Absent);
        }
        let load_section = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, DwarfError> {
            match file.section_by_name(id.name()) {
                Some(section) => section_bytes(&section, id.name(), MAX_DECOMPRESSED_SECTION),
                None => Ok(Cow::Borrowed(&[])),
            }
        };
        let sections = gimli::DwarfSections::load(load_section)?;
        let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
        let mut types = Self {
            types: HashMap::new(),
            structs_by_name: HashMap::new(),
        };
        let mut units = dwarf.units();
        while let Some(header) = units.next()? {
            let unit = dwarf.unit(header)?;
            types.index_unit(&dwarf, &unit)?;
        }
        Ok(types)
    }

    fn index_unit(
        &mut self,
        dwarf: &gimli::Dwarf<EndianSlice<'_, LittleEndian>>,
        unit: &gimli::Unit<EndianSlice<'_, LittleEndian>>,
    ) -> Result<(), DwarfError> {
        let mut tree = unit.entries_tree(None)?;
        let root = tree.root()?;
        let mut children = root.children();
        while let Some(node) = children.next()? {
            let entry = node.entry();
            let Some(id) = entry.offset().to_debug_info_offset(&unit.header) else {
                continue;
            };
            let id = TypeId(id.0);
            let tag = entry.tag();
            let name = name_of(dwarf, unit, entry)?;
            let size = entry
                .attr_value(gimli::DW_AT_byte_size)?
                .and_then(|v| v.udata_value());
            let element = type_ref(unit, entry.attr_value(gimli::DW_AT_type)?);
            match tag {
                gimli::DW_TAG_structure_type => {
                    let mut members = Vec::new();
                    let mut member_nodes = node.children();
                    while let Some(member) = member_nodes.next()? {
                        let m = member.entry();
                        if m.tag() != gimli::DW_TAG_member {
                            continue;
                        }
                        let member_name = name_of(dwarf, unit, m)?;
                        let offset = m
                            .attr_value(gimli::DW_AT_data_member_location)?
                            .and_then(|v| v.udata_value())
                            .unwrap_or(0);
                        members.push(Member {
                            name: member_name,
                            offset,
                            type_id: type_ref(unit, m.attr_value(gimli::DW_AT_type)?),
                        });
                    }
                    if !name.is_empty() {
                        self.structs_by_name.entry(name.clone()).or_insert(id);
                    }
                    self.types.insert(
                        id,
                        TypeInfo::Struct {
                            name,
                            size: size.unwrap_or(0),
                            members,
                        },
                    );
                }
                gimli::DW_TAG_array_type => {
                    let mut count = 0;
                    let mut ranges = node.children();
                    while let Some(range) = ranges.next()? {
                        let r = range.entry();
                        if r.tag() != gimli::DW_TAG_subrange_type {
                            continue;
                        }
                        if let Some(n) = r
                            .attr_value(gimli::DW_AT_count)?
                            .and_then(|v| v.udata_value())
                        {
                            count = n;
                        } else if let Some(upper) = r
                            .attr_value(gimli::DW_AT_upper_bound)?
                            .and_then(|v| v.udata_value())
                        {
                            // A bound of u64::MAX stays implausible, not 0.
                            count = upper.saturating_add(1);
                        }
                    }
                    self.types.insert(
                        id,
                        TypeInfo::Array {
                            element,
                            count,
                            size,
                        },
                    );
                }
                gimli::DW_TAG_base_type | gimli::DW_TAG_typedef | gimli::DW_TAG_pointer_type => {
                    let target = (tag == gimli::DW_TAG_typedef).then_some(element).flatten();
                    self.types
                        .insert(id, TypeInfo::Other { name, size, target });
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn struct_named(&self, name: &str) -> Option<TypeId> {
        self.structs_by_name.get(name).copied()
    }

    /// The type behind `id`, typedefs followed.
    pub fn get(&self, id: TypeId) -> Option<&TypeInfo> {
        let mut current = self.types.get(&id)?;
        for _ in 0..MAX_TYPEDEF_CHAIN {
            match current {
                TypeInfo::Other {
                    target: Some(next), ..
                } => current = self.types.get(next)?,
                _ => return Some(current),
            }
        }
        None
    }

    /// Size in bytes of a named struct.
    pub fn struct_size(&self, name: &str) -> Option<u64> {
        self.get(self.struct_named(name)?)?.size()
    }

    /// Resolves a dotted member path (`gFree.stack.size`) inside struct
    /// `outer`; the offset is relative to the start of `outer`.
    pub fn field(&self, outer: &str, path: &str) -> Option<Field> {
        let mut current = self.struct_named(outer)?;
        let mut offset = 0;
        let mut type_id = None;
        for part in path.split('.') {
            let TypeInfo::Struct { members, .. } = self.get(current)? else {
                return None;
            };
            // Members of anonymous structs carry the package: `runtime.n`.
            let member = members.iter().find(|m| {
                m.name == part
                    || m.name
                        .strip_suffix(part)
                        .is_some_and(|prefix| prefix.ends_with('.'))
            })?;
            offset = member.offset.checked_add(offset)?;
            type_id = member.type_id;
            if let Some(next) = member.type_id {
                current = next;
            }
        }
        Some(Field { offset, type_id })
    }

    /// Element count of an array-typed field.
    pub fn array_len(&self, field: Field) -> Option<u64> {
        match self.get(field.type_id?)? {
            TypeInfo::Array { count, .. } => Some(*count),
            _ => None,
        }
    }

    /// Element size of an array-typed field.
    pub fn array_element_size(&self, field: Field) -> Option<u64> {
        match self.get(field.type_id?)? {
            TypeInfo::Array { element, .. } => self.get((*element)?)?.size(),
            _ => None,
        }
    }

    pub fn field_size(&self, field: Field) -> Option<u64> {
        self.get(field.type_id?)?.size()
    }
}

/// DW_AT_name of an entry, empty when absent or unreadable.
fn name_of(
    dwarf: &gimli::Dwarf<EndianSlice<'_, LittleEndian>>,
    unit: &gimli::Unit<EndianSlice<'_, LittleEndian>>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, EndianSlice<'_, LittleEndian>>,
) -> Result<String, gimli::Error> {
    Ok(match entry.attr_value(gimli::DW_AT_name)? {
        Some(value) => dwarf
            .attr_string(unit, value)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        None => String::new(),
    })
}

fn type_ref(
    unit: &gimli::Unit<EndianSlice<'_, LittleEndian>>,
    value: Option<AttributeValue<EndianSlice<'_, LittleEndian>>>,
) -> Option<TypeId> {
    match value? {
        AttributeValue::UnitRef(offset) => offset
            .to_debug_info_offset(&unit.header)
            .map(|o| TypeId(o.0)),
        AttributeValue::DebugInfoRef(offset) => Some(TypeId(offset.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::fuzzing::synth::{self, Section};

    /// A struct of `size` bytes as the only DWARF type.
    fn debug_sections() -> (Vec<u8>, Vec<u8>) {
        let mut b = synth::DwarfBuilder::default();
        b.size("runtime.m", 64).field("runtime.m", "alllink", 8);
        b.sections()
    }

    /// An ELF whose .debug_info is `info` behind an Elf64_Chdr of `kind`
    /// (1 zlib, 2 zstd) claiming `claimed` bytes.
    fn compressed_elf(kind: u32, claimed: u64, data: &[u8]) -> Vec<u8> {
        let (abbrev, _) = debug_sections();
        let mut info = kind.to_le_bytes().to_vec();
        info.extend_from_slice(&0u32.to_le_bytes());
        info.extend_from_slice(&claimed.to_le_bytes());
        info.extend_from_slice(&1u64.to_le_bytes());
        info.extend_from_slice(data);
        synth::elf(
            &[
                Section {
                    name: ".debug_abbrev".into(),
                    kind: 1,
                    flags: 0,
                    data: abbrev,
                },
                Section {
                    name: ".debug_info".into(),
                    kind: 1,
                    flags: synth::SHF_COMPRESSED,
                    data: info,
                },
            ],
            &[],
        )
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A zstd frame (128 KiB window, no content size) of `blocks`: (RLE
    /// byte or raw bytes, regenerated size).
    fn zstd(blocks: &[(Option<u8>, &[u8], usize)]) -> Vec<u8> {
        let mut out = 0xFD2F_B528u32.to_le_bytes().to_vec();
        out.push(0x00);
        out.push(7 << 3);
        for (i, (rle, raw, size)) in blocks.iter().enumerate() {
            let last = u32::from(i + 1 == blocks.len());
            let kind = if rle.is_some() { 1 } else { 0 };
            let header = ((*size as u32) << 3) | (kind << 1) | last;
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            match rle {
                Some(byte) => out.push(*byte),
                None => out.extend_from_slice(raw),
            }
        }
        out
    }

    fn load(elf: &[u8]) -> Result<DwarfTypes, DwarfError> {
        DwarfTypes::load(&object::File::parse(elf).unwrap())
    }

    #[test]
    fn compressed_sections_decode_within_their_written_size() {
        let (_, info) = debug_sections();
        for elf in [
            compressed_elf(1, info.len() as u64, &zlib(&info)),
            compressed_elf(2, info.len() as u64, &zstd(&[(None, &info, info.len())])),
        ] {
            let types = load(&elf).unwrap();
            assert_eq!(types.struct_size("runtime.m"), Some(64));
            assert_eq!(types.field("runtime.m", "alllink").unwrap().offset, 8);
        }
    }

    #[test]
    fn a_written_size_over_the_cap_is_refused_naming_the_section() {
        let (_, info) = debug_sections();
        let claimed = 1u64 << 40;
        for kind in [1, 2] {
            let err = load(&compressed_elf(kind, claimed, &zlib(&info)))
                .err()
                .unwrap();
            let text = err.to_string();
            assert!(
                matches!(err, DwarfError::TooLarge { size, .. } if size == claimed),
                "{text}"
            );
            assert!(
                text.contains(".debug_info") && text.contains(&claimed.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn data_that_decodes_past_its_written_size_is_refused_early() {
        // 64 MiB of zeros claimed as 1 MiB: decoding stops past 1 MiB.
        let claimed = 1u64 << 20;
        let bomb_zlib = zlib(&vec![0u8; 64 << 20]);
        let block = (Some(0u8), &[][..], 128 << 10);
        let bomb_zstd = zstd(&vec![block; 512]);
        for elf in [
            compressed_elf(1, claimed, &bomb_zlib),
            compressed_elf(2, claimed, &bomb_zstd),
        ] {
            let err = load(&elf).err().unwrap().to_string();
            assert!(err.contains(&format!("{}+ bytes", claimed + 1)), "{err}");
            assert!(err.contains("not the 1048576"), "{err}");
        }
        // And short data is refused too.
        let (_, info) = debug_sections();
        let err = load(&compressed_elf(1, info.len() as u64 + 10, &zlib(&info)))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("decompresses to {} bytes", info.len())),
            "{err}"
        );
    }
}

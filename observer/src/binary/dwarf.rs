//! Struct layouts from the binary's DWARF (gimli): every structure and array
//! type with its size, members and offsets, so that runtime fields can be
//! found by name path (`gFree.n`) whatever the Go version laid them out as.

use std::{borrow::Cow, collections::HashMap};

use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{Object as _, ObjectSection as _};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DwarfError {
    #[error("no DWARF in the binary (built with -ldflags=-w or stripped)")]
    Absent,
    #[error("DWARF section {section}: {reason}")]
    Section { section: String, reason: String },
    #[error("malformed DWARF: {0}")]
    Malformed(#[from] gimli::Error),
}

/// Typedef chains longer than this are treated as broken.
const MAX_TYPEDEF_CHAIN: usize = 8;

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
                Some(section) => section
                    .uncompressed_data()
                    .map_err(|e| DwarfError::Section {
                        section: id.name().to_string(),
                        reason: e.to_string(),
                    }),
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
                            count = upper + 1;
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
            offset += member.offset;
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

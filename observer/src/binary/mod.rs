//! What goscope knows about a Go executable before attaching: its ELF
//! layout, build info, function addresses and where probes may go.

pub mod buildinfo;
pub mod dwarf;
pub mod lines;
pub mod pclntab;
pub mod prologue;
pub mod symbols;
pub mod version;

use std::path::{Path, PathBuf};

use object::{Object as _, ObjectKind, ObjectSection as _, ObjectSegment as _};
use thiserror::Error;

pub use buildinfo::BuildInfo;
pub use symbols::{FunctionSymbol, FunctionTable, GlobalSymbol, GlobalTable};
pub use version::GoVersion;

#[derive(Debug, Error)]
pub enum BinaryError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not an ELF file: {reason}")]
    NotElf { path: PathBuf, reason: String },
    #[error("{path} is a {arch} binary; goscope supports x86_64 only")]
    Architecture { path: PathBuf, arch: String },
    #[error("{path} is not a Go program: it has no .go.buildinfo section")]
    NotGo { path: PathBuf },
    #[error("{path}: {cause}")]
    BuildInfo {
        path: PathBuf,
        cause: buildinfo::BuildInfoError,
    },
}

/// A Go executable, read whole into memory.
pub struct GoBinary {
    pub path: PathBuf,
    data: Vec<u8>,
    pub build: BuildInfo,
    pub pie: bool,
    pub has_symtab: bool,
    pub has_dwarf: bool,
    pub functions: FunctionTable,
    /// Why the pclntab could not be read (stripped binaries only).
    pub pclntab_error: Option<pclntab::PclntabError>,
    pub globals: GlobalTable,
    segments: Vec<LoadSegment>,
}

/// A PT_LOAD segment: maps virtual addresses to file offsets.
#[derive(Clone, Copy, Debug)]
struct LoadSegment {
    vaddr: u64,
    file_offset: u64,
    file_size: u64,
}

impl GoBinary {
    /// Reads and parses the file at `path` (at most 1 GiB, or
    /// `GOSCOPE_MAX_EXECUTABLE_BYTES`; only regular files).
    pub fn open(path: &Path) -> Result<Self, BinaryError> {
        let read_error = |cause| BinaryError::Read {
            path: path.to_path_buf(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(read_error)?;
        let limit = std::env::var("GOSCOPE_MAX_EXECUTABLE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u64 << 30);
        if !meta.is_file() {
            return Err(read_error(std::io::Error::other("not a regular file")));
        }
        if meta.len() > limit {
            return Err(read_error(std::io::Error::other(format!(
                "{} bytes, over the {limit}-byte limit (GOSCOPE_MAX_EXECUTABLE_BYTES)",
                meta.len()
            ))));
        }
        let data = std::fs::read(path).map_err(read_error)?;
        Self::parse(path, data)
    }

    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Self, BinaryError> {
        let not_elf = |reason: String| BinaryError::NotElf {
            path: path.to_path_buf(),
            reason,
        };
        if !data.starts_with(b"\x7fELF") {
            return Err(not_elf("no ELF magic".into()));
        }
        let file = object::File::parse(&*data).map_err(|e| not_elf(e.to_string()))?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(BinaryError::Architecture {
                path: path.to_path_buf(),
                arch: format!("{:?}", file.architecture()),
            });
        }
        let buildinfo = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .ok_or_else(|| BinaryError::NotGo {
                path: path.to_path_buf(),
            })?;
        let build = BuildInfo::parse(buildinfo).map_err(|cause| BinaryError::BuildInfo {
            path: path.to_path_buf(),
            cause,
        })?;
        let has_symtab = file.symbol_table().is_some();
        let has_dwarf = file.section_by_name(".debug_info").is_some()
            || file.section_by_name(".zdebug_info").is_some();
        // .symtab when present, else the pclntab that every Go binary keeps.
        let (functions, pclntab_error) = if has_symtab {
            (FunctionTable::from_symtab(&file), None)
        } else {
            match pclntab::Pclntab::parse(&file) {
                Ok(table) => (FunctionTable::from_pclntab(table), None),
                Err(e) => (FunctionTable::default(), Some(e)),
            }
        };
        let globals = GlobalTable::from_symtab(&file);
        let segments = file
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                LoadSegment {
                    vaddr: s.address(),
                    file_offset,
                    file_size,
                }
            })
            .collect();
        let pie = file.kind() == ObjectKind::Dynamic;
        drop(file);
        Ok(Self {
            path: path.to_path_buf(),
            data,
            build,
            pie,
            has_symtab,
            has_dwarf,
            functions,
            pclntab_error,
            globals,
            segments,
        })
    }

    pub fn go_version(&self) -> GoVersion {
        self.build.go_version
    }

    /// True when built with cgo (CGO_ENABLED=1 in the build settings).
    pub fn cgo(&self) -> bool {
        self.build.setting("CGO_ENABLED") == Some("1")
    }

    /// The file offset of a virtual address, through the PT_LOAD segments;
    /// `None` when the address is not backed by file bytes.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments.iter().find_map(|s| {
            let end = s.vaddr.checked_add(s.file_size)?;
            (s.vaddr..end)
                .contains(&vaddr)
                .then(|| vaddr - s.vaddr + s.file_offset)
        })
    }

    /// The file bytes of `[vaddr, vaddr+len)`, if all are in one segment.
    pub fn bytes_at(&self, vaddr: u64, len: u64) -> Option<&[u8]> {
        let start = self.file_offset(vaddr)?;
        let last = self.file_offset(vaddr.checked_add(len)?.checked_sub(1)?)?;
        if last + 1 - start != len {
            return None;
        }
        self.data
            .get(usize::try_from(start).ok()?..usize::try_from(last + 1).ok()?)
    }

    /// The file bytes from `vaddr` to the end of its segment's file data.
    pub fn bytes_from(&self, vaddr: u64) -> Option<&[u8]> {
        let segment = self
            .segments
            .iter()
            .find(|s| (s.vaddr..s.vaddr.saturating_add(s.file_size)).contains(&vaddr))?;
        let start = usize::try_from(vaddr - segment.vaddr + segment.file_offset).ok()?;
        let end = usize::try_from(segment.file_offset + segment.file_size).ok()?;
        self.data.get(start..end)
    }

    /// The lowest PT_LOAD virtual address (page aligned), the base the load
    /// bias is measured from.
    pub fn first_load_vaddr(&self) -> Option<u64> {
        self.segments
            .iter()
            .filter_map(|s| s.vaddr.checked_sub(s.file_offset))
            .min()
            .map(|v| v & !0xfff)
    }

    /// This binary without its file bytes, for holders that are done with
    /// the sections (the agent, once the runtime layout is resolved): build
    /// info, tables and segments stay; `bytes_at`, `bytes_from` and
    /// `object` then find nothing.
    pub fn without_file_data(mut self) -> Self {
        self.data = Vec::new();
        self
    }

    /// The raw object, for parsers that need other sections (DWARF).
    pub fn object(&self) -> Result<object::File<'_>, object::Error> {
        object::File::parse(&*self.data)
    }
}

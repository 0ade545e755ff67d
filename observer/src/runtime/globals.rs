//! Addresses of the runtime's global variables: from .symtab when the
//! binary has one; in stripped binaries, recovered from the code that uses
//! them. Each global has a reference site per Go version (a runtime
//! function and the n-th RIP-relative operand in it), found in reference
//! builds by `cargo xtask runtime-table` and checked against .symtab of
//! other builds by the tests. A site whose function is missing or whose
//! code differs gives an error, never a guessed address.
//!
//! The globals are a closed set: `RequiredGlobal` (a binary without one is
//! refused at resolution) and `OptionalGlobal` (a binary without one lacks
//! the figures it backs). `Globals::required` is therefore infallible and
//! never 0, and a misspelt global does not compile.

use std::collections::BTreeMap;

use iced_x86::{Decoder, DecoderOptions, Instruction};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::binary::GoBinary;

#[derive(Debug, Error)]
pub enum GlobalsError {
    #[error("{binary}: runtime global {name} not in .symtab")]
    NotInSymtab { binary: String, name: String },
    #[error("{binary}: runtime global {name} has address 0 in .symtab")]
    ZeroAddress { binary: String, name: String },
    #[error("{binary}: no reference site known for {name} in this Go version")]
    NoSite { binary: String, name: String },
    #[error("{binary}: reference site of {name} ({function} operand {index}) not found: {reason}")]
    SiteMismatch {
        binary: String,
        name: String,
        function: String,
        index: usize,
        reason: String,
    },
}

/// Where the global addresses came from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GlobalsSource {
    Symtab,
    /// Recovered from RIP-relative operands of runtime functions.
    CodeReferences,
}

/// Globals every runtime reading needs: a binary without one is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequiredGlobal {
    Memstats,
    GcController,
    Sched,
    Allp,
    Allglen,
    Allm,
    Gomaxprocs,
    Ncgocall,
    /// [_NumSizeClasses]uint16; moved to internal/runtime/gc in Go 1.25.
    ClassToSize,
}

/// Globals behind some figures only: a binary without one lacks those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptionalGlobal {
    Work,
    /// runtime.ncpu, renamed runtime.numCPUStartup in Go 1.25.
    Ncpu,
    Gcphase,
    RuntimeInitTime,
    /// Head of the memory-profile bucket list (*bucket; an atomic pointer).
    Mbuckets,
    /// runtime.MemProfileRate (int): bytes per sampled allocation, 0 = off.
    MemProfileRate,
    /// bool set by the linker when nothing can read heap profiles.
    DisableMemoryProfiling,
    /// runtime.mProfCycle (mProfCycleHolder: atomic.Uint32, cycle << 1 | flushed).
    MprofCycle,
    /// runtime.allgs ([]*g): the goroutine table, `allglen` entries used.
    Allgs,
    /// runtime.waitReasonStrings ([...]string): g.waitreason's names.
    WaitReasonStrings,
    /// runtime.fingStatus (atomic.Uint32): whether the finalizer goroutine
    /// is running user code (then it is not a system goroutine).
    FingStatus,
}

/// Any runtime global goscope reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Global {
    Required(RequiredGlobal),
    Optional(OptionalGlobal),
}

impl RequiredGlobal {
    pub const ALL: [Self; 9] = [
        Self::Memstats,
        Self::GcController,
        Self::Sched,
        Self::Allp,
        Self::Allglen,
        Self::Allm,
        Self::Gomaxprocs,
        Self::Ncgocall,
        Self::ClassToSize,
    ];
}

impl OptionalGlobal {
    pub const ALL: [Self; 11] = [
        Self::Work,
        Self::Ncpu,
        Self::Gcphase,
        Self::RuntimeInitTime,
        Self::Mbuckets,
        Self::MemProfileRate,
        Self::DisableMemoryProfiling,
        Self::MprofCycle,
        Self::Allgs,
        Self::WaitReasonStrings,
        Self::FingStatus,
    ];
}

impl Global {
    /// Every global, required ones first.
    pub fn all() -> impl Iterator<Item = Global> {
        RequiredGlobal::ALL
            .into_iter()
            .map(Global::Required)
            .chain(OptionalGlobal::ALL.into_iter().map(Global::Optional))
    }

    /// The global's key in version_table.json and `goscope inspect`: the one
    /// place the JSON's strings map to globals.
    pub fn key(self) -> &'static str {
        use OptionalGlobal as O;
        use RequiredGlobal as R;
        match self {
            Global::Required(r) => match r {
                R::Memstats => "memstats",
                R::GcController => "gc_controller",
                R::Sched => "sched",
                R::Allp => "allp",
                R::Allglen => "allglen",
                R::Allm => "allm",
                R::Gomaxprocs => "gomaxprocs",
                R::Ncgocall => "ncgocall",
                R::ClassToSize => "class_to_size",
            },
            Global::Optional(o) => match o {
                O::Work => "work",
                O::Ncpu => "ncpu",
                O::Gcphase => "gcphase",
                O::RuntimeInitTime => "runtime_init_time",
                O::Mbuckets => "mbuckets",
                O::MemProfileRate => "mem_profile_rate",
                O::DisableMemoryProfiling => "disable_memory_profiling",
                O::MprofCycle => "mprof_cycle",
                O::Allgs => "allgs",
                O::WaitReasonStrings => "wait_reason_strings",
                O::FingStatus => "fing_status",
            },
        }
    }

    /// The global with this table key.
    pub fn from_key(key: &str) -> Option<Global> {
        Global::all().find(|g| g.key() == key)
    }

    /// Its symbol names across Go versions, in the order looked up.
    pub fn names(self) -> &'static [&'static str] {
        use OptionalGlobal as O;
        use RequiredGlobal as R;
        match self {
            Global::Required(r) => match r {
                R::Memstats => &["runtime.memstats"],
                R::GcController => &["runtime.gcController"],
                R::Sched => &["runtime.sched"],
                R::Allp => &["runtime.allp"],
                R::Allglen => &["runtime.allglen"],
                R::Allm => &["runtime.allm"],
                R::Gomaxprocs => &["runtime.gomaxprocs"],
                R::Ncgocall => &["runtime.ncgocall"],
                R::ClassToSize => &[
                    "runtime.class_to_size",
                    "internal/runtime/gc.SizeClassToSize",
                ],
            },
            Global::Optional(o) => match o {
                O::Work => &["runtime.work"],
                O::Ncpu => &["runtime.numCPUStartup", "runtime.ncpu"],
                O::Gcphase => &["runtime.gcphase"],
                O::RuntimeInitTime => &["runtime.runtimeInitTime"],
                O::Mbuckets => &["runtime.mbuckets"],
                O::MemProfileRate => &["runtime.MemProfileRate"],
                O::DisableMemoryProfiling => &["runtime.disableMemoryProfiling"],
                O::MprofCycle => &["runtime.mProfCycle"],
                O::Allgs => &["runtime.allgs"],
                O::WaitReasonStrings => &["runtime.waitReasonStrings"],
                O::FingStatus => &["runtime.fingStatus"],
            },
        }
    }

    /// The name used in messages.
    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    pub fn is_required(self) -> bool {
        matches!(self, Global::Required(_))
    }
}

impl From<RequiredGlobal> for Global {
    fn from(g: RequiredGlobal) -> Self {
        Global::Required(g)
    }
}

impl From<OptionalGlobal> for Global {
    fn from(g: OptionalGlobal) -> Self {
        Global::Optional(g)
    }
}

/// Link-time addresses of the globals (add the load bias for PIE). Every
/// required global is present and non-zero by construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Globals {
    required: [u64; RequiredGlobal::ALL.len()],
    optional: [Option<u64>; OptionalGlobal::ALL.len()],
}

impl Globals {
    pub fn required(&self, global: RequiredGlobal) -> u64 {
        self.required[global as usize]
    }

    pub fn optional(&self, global: OptionalGlobal) -> Option<u64> {
        self.optional[global as usize]
    }

    /// Any global's address (`None`: an optional global the binary lacks).
    pub fn address(&self, global: Global) -> Option<u64> {
        match global {
            Global::Required(r) => Some(self.required(r)),
            Global::Optional(o) => self.optional(o),
        }
    }

    /// Builds the table from `find` (`Ok(None)`: not found); a required
    /// global that is not found fails with `missing`'s error.
    fn build(
        mut find: impl FnMut(Global) -> Result<Option<u64>, GlobalsError>,
        missing: impl Fn(Global) -> GlobalsError,
    ) -> Result<Self, GlobalsError> {
        let mut required = [0; RequiredGlobal::ALL.len()];
        for r in RequiredGlobal::ALL {
            required[r as usize] = find(r.into())?.ok_or_else(|| missing(r.into()))?;
        }
        let mut optional = [None; OptionalGlobal::ALL.len()];
        for o in OptionalGlobal::ALL {
            optional[o as usize] = find(o.into())?;
        }
        Ok(Self { required, optional })
    }

    /// A table of explicit addresses (a synthetic target for tests and
    /// fuzzing); `None` when a required global has none or address 0.
    pub fn from_addresses(mut address: impl FnMut(Global) -> Option<u64>) -> Option<Self> {
        Self::build(
            |global| Ok(address(global).filter(|&a| a != 0)),
            |global| GlobalsError::NoSite {
                binary: "synthetic".into(),
                name: global.name().to_string(),
            },
        )
        .ok()
    }

    pub fn from_symtab(binary: &GoBinary) -> Result<Self, GlobalsError> {
        let name = || binary.path.display().to_string();
        Self::build(
            |global| match global.names().iter().find_map(|n| binary.globals.get(n)) {
                Some(symbol) if symbol.address == 0 => Err(GlobalsError::ZeroAddress {
                    binary: name(),
                    name: global.name().to_string(),
                }),
                Some(symbol) => Ok(Some(symbol.address)),
                None => Ok(None),
            },
            |global| GlobalsError::NotInSymtab {
                binary: name(),
                name: global.names().join("|"),
            },
        )
    }

    /// Recovers the globals from their reference sites (stripped binaries);
    /// `sites` is keyed by `Global::key`. A required global whose site does
    /// not verify fails; an optional one is then absent (its figures are
    /// unavailable), never guessed.
    pub fn from_sites(
        binary: &GoBinary,
        sites: &BTreeMap<String, ReferenceSite>,
    ) -> Result<Self, GlobalsError> {
        let name = || binary.path.display().to_string();
        Self::build(
            |global| {
                let Some(site) = sites.get(global.key()) else {
                    return Ok(None);
                };
                let mismatch = |reason| GlobalsError::SiteMismatch {
                    binary: name(),
                    name: global.name().to_string(),
                    function: site.function.clone(),
                    index: site.index,
                    reason,
                };
                match site.resolve(binary) {
                    Ok(address) if address != 0 => Ok(Some(address)),
                    _ if !global.is_required() => Ok(None),
                    Ok(_) => Err(mismatch("resolves to address 0".to_string())),
                    Err(reason) => Err(mismatch(reason)),
                }
            },
            |global| GlobalsError::NoSite {
                binary: name(),
                name: global.name().to_string(),
            },
        )
    }
}

/// Where a global is referenced: the `index`-th RIP-relative memory operand
/// of `function` (in instruction order) points `delta` bytes into it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReferenceSite {
    pub function: String,
    pub index: usize,
    pub delta: u64,
    /// RIP-relative operands the function has in the reference build: a
    /// different count means different code, and the site is not trusted.
    pub operands: usize,
}

impl ReferenceSite {
    /// The global's link-time address in `binary`.
    pub fn resolve(&self, binary: &GoBinary) -> Result<u64, String> {
        let f = binary
            .functions
            .get(&self.function)
            .ok_or_else(|| "function absent".to_string())?;
        let code = binary
            .bytes_at(f.address, f.size)
            .ok_or_else(|| "function bytes not in the file".to_string())?;
        let targets = rip_relative_targets(f.address, code);
        if targets.len() != self.operands {
            return Err(format!(
                "function has {} RIP-relative operands, {} in the reference build",
                targets.len(),
                self.operands
            ));
        }
        let target = targets
            .get(self.index)
            .copied()
            .ok_or_else(|| "operand missing".to_string())?;
        target
            .checked_sub(self.delta)
            .ok_or_else(|| "operand below the global".to_string())
    }

    /// Finds the best site for a global at `[address, address+size)` among
    /// runtime functions present in every binary of `builds`: the smallest
    /// function whose site resolves to `address` in all of them.
    pub fn find(builds: &[(&GoBinary, u64)], size: u64) -> Option<Self> {
        let (reference, address) = builds.first()?;
        let mut candidates: Vec<_> = reference
            .functions
            .iter()
            .filter(|f| f.name.starts_with("runtime.") || f.name.starts_with("internal/runtime/"))
            .collect();
        // Named functions before closures (whose numbering shifts easily),
        // then the smallest.
        candidates.sort_by_key(|f| (f.name.contains(".func"), f.size, f.name.clone()));
        for f in candidates {
            let Some(code) = reference.bytes_at(f.address, f.size) else {
                continue;
            };
            let targets = rip_relative_targets(f.address, code);
            let Some(index) = targets
                .iter()
                .position(|t| (*address..address + size.max(1)).contains(t))
            else {
                continue;
            };
            let site = ReferenceSite {
                function: f.name.clone(),
                index,
                delta: targets[index] - address,
                operands: targets.len(),
            };
            if builds.iter().all(|(b, a)| site.resolve(b) == Ok(*a)) {
                return Some(site);
            }
        }
        None
    }
}

/// Targets of RIP-relative memory operands (MOV, LEA, CMP ...), in order.
pub fn rip_relative_targets(entry: u64, code: &[u8]) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut targets = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_ip_rel_memory_operand() {
            targets.push(instruction.ip_rel_memory_address());
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names_are_unique_and_round_trip() {
        let globals: Vec<Global> = Global::all().collect();
        assert_eq!(
            globals.len(),
            RequiredGlobal::ALL.len() + OptionalGlobal::ALL.len()
        );
        for (i, g) in globals.iter().enumerate() {
            assert_eq!(Global::from_key(g.key()), Some(*g));
            assert!(!g.names().is_empty());
            for other in &globals[i + 1..] {
                assert_ne!(g.key(), other.key());
                assert!(g.names().iter().all(|n| !other.names().contains(n)));
            }
        }
        // The arrays are indexed by discriminant.
        for (i, r) in RequiredGlobal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, o) in OptionalGlobal::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        assert_eq!(Global::from_key("no_such_global"), None);
    }
}

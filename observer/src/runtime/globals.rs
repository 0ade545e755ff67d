//! Addresses of the runtime's global variables: from .symtab when the
//! binary has one; in stripped binaries, recovered from the code that uses
//! them. Each global has a reference site per Go version (a runtime
//! function and the n-th RIP-relative operand in it), found in reference
//! builds by `cargo xtask runtime-table` and checked against .symtab of
//! other builds by the tests. A site whose function is missing or whose
//! code differs gives an error, never a guessed address.

use std::collections::BTreeMap;

use iced_x86::{Decoder, DecoderOptions, Instruction};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::binary::GoBinary;

#[derive(Debug, Error)]
pub enum GlobalsError {
    #[error("{binary}: runtime global {name} not in .symtab")]
    NotInSymtab { binary: String, name: String },
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

/// A runtime global goscope reads; `names` are its names across versions.
#[derive(Clone, Copy, Debug)]
pub struct GlobalSpec {
    pub key: &'static str,
    pub names: &'static [&'static str],
    pub required: bool,
}

pub const GLOBALS: &[GlobalSpec] = &[
    GlobalSpec {
        key: "memstats",
        names: &["runtime.memstats"],
        required: true,
    },
    GlobalSpec {
        key: "gc_controller",
        names: &["runtime.gcController"],
        required: true,
    },
    GlobalSpec {
        key: "sched",
        names: &["runtime.sched"],
        required: true,
    },
    GlobalSpec {
        key: "work",
        names: &["runtime.work"],
        required: false,
    },
    GlobalSpec {
        key: "allp",
        names: &["runtime.allp"],
        required: true,
    },
    GlobalSpec {
        key: "allglen",
        names: &["runtime.allglen"],
        required: true,
    },
    GlobalSpec {
        key: "allm",
        names: &["runtime.allm"],
        required: true,
    },
    GlobalSpec {
        key: "gomaxprocs",
        names: &["runtime.gomaxprocs"],
        required: true,
    },
    GlobalSpec {
        key: "ncpu",
        names: &["runtime.numCPUStartup", "runtime.ncpu"],
        required: false,
    },
    GlobalSpec {
        key: "ncgocall",
        names: &["runtime.ncgocall"],
        required: true,
    },
    GlobalSpec {
        key: "gcphase",
        names: &["runtime.gcphase"],
        required: false,
    },
    GlobalSpec {
        key: "runtime_init_time",
        names: &["runtime.runtimeInitTime"],
        required: false,
    },
    // [_NumSizeClasses]uint16; moved to internal/runtime/gc in Go 1.25.
    GlobalSpec {
        key: "class_to_size",
        names: &[
            "runtime.class_to_size",
            "internal/runtime/gc.SizeClassToSize",
        ],
        required: true,
    },
];

/// Link-time addresses of the globals, by `GlobalSpec::key`.
#[derive(Clone, Debug, Default)]
pub struct Globals {
    addresses: BTreeMap<&'static str, u64>,
}

impl Globals {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.addresses.get(key).copied()
    }

    /// A required global (present by construction).
    pub fn required(&self, key: &str) -> u64 {
        self.get(key).unwrap_or_default()
    }

    pub fn from_symtab(binary: &GoBinary) -> Result<Self, GlobalsError> {
        let mut addresses = BTreeMap::new();
        for spec in GLOBALS {
            match spec.names.iter().find_map(|n| binary.globals.get(n)) {
                Some(symbol) => {
                    addresses.insert(spec.key, symbol.address);
                }
                None if spec.required => {
                    return Err(GlobalsError::NotInSymtab {
                        binary: binary.path.display().to_string(),
                        name: spec.names.join("|"),
                    });
                }
                None => {}
            }
        }
        Ok(Self { addresses })
    }

    /// Recovers the globals from their reference sites (stripped binaries).
    pub fn from_sites(
        binary: &GoBinary,
        sites: &BTreeMap<String, ReferenceSite>,
    ) -> Result<Self, GlobalsError> {
        let mut addresses = BTreeMap::new();
        for spec in GLOBALS {
            let Some(site) = sites.get(spec.key) else {
                if spec.required {
                    return Err(GlobalsError::NoSite {
                        binary: binary.path.display().to_string(),
                        name: spec.names[0].to_string(),
                    });
                }
                continue;
            };
            let address = site
                .resolve(binary)
                .map_err(|reason| GlobalsError::SiteMismatch {
                    binary: binary.path.display().to_string(),
                    name: spec.names[0].to_string(),
                    function: site.function.clone(),
                    index: site.index,
                    reason,
                })?;
            addresses.insert(spec.key, address);
        }
        Ok(Self { addresses })
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

//! The runtime functions goscope probes, and their resolution in one binary
//! to exact, decoded probe addresses (never guessed).

use serde::Serialize;
use thiserror::Error;

use crate::binary::{
    GoBinary,
    prologue::{self, Placement, PrologueError},
    symbols::AddressSource,
};

/// A runtime function goscope attaches to, and why.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeFunction {
    pub name: &'static str,
    pub purpose: &'static str,
}

/// Completed GC cycles: entered once per cycle, past its stack check.
pub const GC_MARK_TERMINATION: RuntimeFunction = RuntimeFunction {
    name: "runtime.gcMarkTermination",
    purpose: "completed GC cycles",
};

/// Called once per cycle after mark termination, while runtime.work still
/// holds the finished cycle (where gctrace reads it).
pub const GC_CYCLE_END: RuntimeFunction = RuntimeFunction {
    name: "runtime.mProf_Flush",
    purpose: "GC cycle records (after mark termination)",
};

/// Mark assists (start; every RET is probed too).
pub const GC_ASSIST: RuntimeFunction = RuntimeFunction {
    name: "runtime.gcAssistAlloc",
    purpose: "mark-assist latency (and every RET)",
};

/// Assists that park waiting for background credit.
pub const GC_PARK_ASSIST: RuntimeFunction = RuntimeFunction {
    name: "runtime.gcParkAssist",
    purpose: "parked mark assists",
};

/// The scanning part of an assist (on the system stack; `gp` in RAX).
pub const GC_ASSIST_WORK: RuntimeFunction = RuntimeFunction {
    name: "runtime.gcAssistAlloc1",
    purpose: "mark assists that scan",
};

/// Span refills: one hit per span's worth of small objects (spanClass in BL).
pub const MCACHE_REFILL: RuntimeFunction = RuntimeFunction {
    name: "runtime.(*mcache).refill",
    purpose: "allocation sites (span refills)",
};

/// Large allocations (size in RBX).
pub const MCACHE_ALLOC_LARGE: RuntimeFunction = RuntimeFunction {
    name: "runtime.(*mcache).allocLarge",
    purpose: "allocation sites (large objects)",
};

/// Goroutine creation: one hit per `go` statement.
pub const NEWPROC: RuntimeFunction = RuntimeFunction {
    name: "runtime.newproc",
    purpose: "goroutine creation sites",
};

/// Calls into C (entry; every RET is probed too).
pub const CGOCALL: RuntimeFunction = RuntimeFunction {
    name: "runtime.cgocall",
    purpose: "cgo call latency (and every RET)",
};

/// Every function goscope may probe: the one list `probes/*` take their
/// functions from (`resolve` accepts nothing else) and `goscope inspect`
/// shows.
pub const PROBED_FUNCTIONS: &[RuntimeFunction] = &[
    GC_MARK_TERMINATION,
    GC_CYCLE_END,
    GC_ASSIST,
    GC_ASSIST_WORK,
    GC_PARK_ASSIST,
    MCACHE_REFILL,
    MCACHE_ALLOC_LARGE,
    NEWPROC,
    CGOCALL,
];

#[derive(Debug, Error)]
pub enum ProbePointError {
    #[error(
        "{function} not found in {binary}: no .symtab and no usable .gopclntab ({reason}); goscope refuses to guess probe addresses"
    )]
    Stripped {
        function: String,
        binary: String,
        reason: String,
    },
    #[error("{function} not found in {binary}'s function table")]
    Missing { function: String, binary: String },
    #[error("{function} at {address:#x}: its bytes are not in the file")]
    NoBytes { function: String, address: u64 },
    #[error("{function}: {cause}")]
    Decode {
        function: String,
        cause: PrologueError,
    },
}

/// Where a probe goes in one binary.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProbePoint {
    pub function: String,
    /// Function entry (virtual address in the ELF).
    pub entry: u64,
    /// Where the probe goes (virtual address).
    pub address: u64,
    /// `address` as a file offset, what the kernel's uprobe takes.
    pub file_offset: u64,
    pub placement: Placement,
    pub source: AddressSource,
}

/// Resolves `function` in `binary` by decoding its first instructions.
pub fn resolve(
    binary: &GoBinary,
    function: RuntimeFunction,
) -> Result<ProbePoint, ProbePointError> {
    let function = function.name;
    let symbol = binary.functions.get(function).ok_or_else(|| {
        if let Some(reason) = &binary.pclntab_error {
            ProbePointError::Stripped {
                function: function.to_string(),
                binary: binary.path.display().to_string(),
                reason: reason.to_string(),
            }
        } else {
            ProbePointError::Missing {
                function: function.to_string(),
                binary: binary.path.display().to_string(),
            }
        }
    })?;
    let no_bytes = || ProbePointError::NoBytes {
        function: function.to_string(),
        address: symbol.address,
    };
    let code = binary
        .bytes_at(symbol.address, symbol.size)
        .ok_or_else(no_bytes)?;
    let site =
        prologue::probe_site(symbol.address, code).map_err(|cause| ProbePointError::Decode {
            function: function.to_string(),
            cause,
        })?;
    let file_offset = binary.file_offset(site.address).ok_or_else(no_bytes)?;
    Ok(ProbePoint {
        function: function.to_string(),
        entry: symbol.address,
        address: site.address,
        file_offset,
        placement: site.placement,
        source: symbol.source,
    })
}

/// Probe points at every RET of `function` (decoded from its bytes), for
/// timing a call without uretprobes.
pub fn return_points(
    binary: &GoBinary,
    function: RuntimeFunction,
) -> Result<Vec<ProbePoint>, ProbePointError> {
    let function = function.name;
    let symbol = binary
        .functions
        .get(function)
        .ok_or_else(|| ProbePointError::Missing {
            function: function.to_string(),
            binary: binary.path.display().to_string(),
        })?;
    let no_bytes = |address| ProbePointError::NoBytes {
        function: function.to_string(),
        address,
    };
    let code = binary
        .bytes_at(symbol.address, symbol.size)
        .ok_or_else(|| no_bytes(symbol.address))?;
    let returns =
        prologue::return_sites(symbol.address, code).map_err(|cause| ProbePointError::Decode {
            function: function.to_string(),
            cause,
        })?;
    if returns.is_empty() {
        return Err(ProbePointError::Decode {
            function: function.to_string(),
            cause: PrologueError::Undecodable {
                address: symbol.address,
            },
        });
    }
    returns
        .into_iter()
        .map(|address| {
            Ok(ProbePoint {
                function: format!("{function} (RET)"),
                entry: symbol.address,
                address,
                file_offset: binary
                    .file_offset(address)
                    .ok_or_else(|| no_bytes(address))?,
                placement: Placement::Entry,
                source: symbol.source,
            })
        })
        .collect()
}

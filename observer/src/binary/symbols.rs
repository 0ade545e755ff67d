//! Function and global-variable addresses by name, from the ELF symbol
//! table (.symtab).

use std::collections::HashMap;

use object::{Object as _, ObjectSymbol as _, SymbolKind};
use serde::Serialize;

/// Where a function address came from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AddressSource {
    Symtab,
    Pclntab,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSymbol {
    pub name: String,
    pub address: u64,
    pub size: u64,
    pub source: AddressSource,
}

/// Function symbols by exact name. ABI0 wrappers carry a `.abi0` suffix in
/// .symtab, so a plain name is the ABIInternal body whose arguments are in
/// registers.
#[derive(Default)]
pub struct FunctionTable {
    by_name: HashMap<String, FunctionSymbol>,
}

impl FunctionTable {
    pub fn from_symtab(file: &object::File<'_>) -> Self {
        let mut table = Self::default();
        for symbol in file.symbols() {
            if symbol.kind() != SymbolKind::Text || symbol.address() == 0 {
                continue;
            }
            let Ok(name) = symbol.name() else { continue };
            table.insert(FunctionSymbol {
                name: name.to_string(),
                address: symbol.address(),
                size: symbol.size(),
                source: AddressSource::Symtab,
            });
        }
        table
    }

    /// Functions from the pclntab (for binaries without .symtab).
    pub fn from_pclntab(pclntab: super::pclntab::Pclntab) -> Self {
        let mut table = Self::default();
        for symbol in pclntab.functions.into_values().flatten() {
            table.insert(symbol);
        }
        table
    }

    /// The function containing link-time `address` (a scan of every
    /// function: for the few lookups of callers that keep no sorted table).
    pub fn containing(&self, address: u64) -> Option<&FunctionSymbol> {
        self.by_name
            .values()
            .filter(|f| f.address <= address && address < f.address + f.size.max(1))
            .max_by_key(|f| f.address)
    }

    /// Keeps the larger of two same-named functions: the real body rather
    /// than a small ABI wrapper.
    fn insert(&mut self, symbol: FunctionSymbol) {
        match self.by_name.get(&symbol.name) {
            Some(existing) if existing.size >= symbol.size => {}
            _ => {
                self.by_name.insert(symbol.name.clone(), symbol);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&FunctionSymbol> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FunctionSymbol> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// A global variable's link-time address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalSymbol {
    pub address: u64,
    pub size: u64,
}

/// Data symbols (globals) by exact name.
#[derive(Default)]
pub struct GlobalTable {
    by_name: HashMap<String, GlobalSymbol>,
}

impl GlobalTable {
    pub fn from_symtab(file: &object::File<'_>) -> Self {
        let by_name = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Data && s.address() != 0)
            .filter_map(|s| {
                Some((
                    s.name().ok()?.to_string(),
                    GlobalSymbol {
                        address: s.address(),
                        size: s.size(),
                    },
                ))
            })
            .collect();
        Self { by_name }
    }

    pub fn get(&self, name: &str) -> Option<GlobalSymbol> {
        self.by_name.get(name).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

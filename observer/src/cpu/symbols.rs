//! Address → function name for sampled stacks, from the binary's function
//! table (.symtab or .gopclntab), so stripped binaries symbolize too.

use crate::binary::GoBinary;

pub struct Symbolizer {
    /// (start, end, name) sorted by start.
    ranges: Vec<(u64, u64, String)>,
    bias: u64,
}

impl Symbolizer {
    pub fn new(binary: &GoBinary, bias: u64) -> Self {
        let mut ranges: Vec<(u64, u64, String)> = binary
            .functions
            .iter()
            .map(|f| (f.address, f.address + f.size.max(1), f.name.clone()))
            .collect();
        ranges.sort_by_key(|r| r.0);
        Self { ranges, bias }
    }

    /// The function containing run-time address `pc`.
    pub fn function(&self, pc: u64) -> Option<&str> {
        let link = pc.checked_sub(self.bias)?;
        let i = self
            .ranges
            .partition_point(|r| r.0 <= link)
            .checked_sub(1)?;
        let (start, end, name) = &self.ranges[i];
        (*start..*end).contains(&link).then_some(name.as_str())
    }
}

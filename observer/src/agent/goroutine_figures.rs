//! The goroutine figures the agent exports per target, from the runtime's
//! goroutine table read at each reading (no stack walk, no probe):
//! goroutines by state (`goscope_goroutines_by_state`; `goscope_goroutines`
//! stays the runtime's live count), and the largest groups by creation site (the top
//! `TOP_SITES` by name, the rest summed as "other"), so label cardinality
//! stays bounded. Function names come from the binary's function table,
//! each creation and start PC looked up once and cached (bounded).

use std::collections::HashMap;

use crate::{
    binary::GoBinary,
    memory::TargetMemory,
    runtime::goroutines::{GoroutineReader, StartKind},
};

/// Creation sites exported by name per target.
pub const TOP_SITES: usize = 5;
/// PCs whose function name is cached per target.
const MAX_CACHED_NAMES: usize = 4096;

/// One reading's goroutine figures (user goroutines: the runtime's
/// goroutine profile leaves system ones out).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoroutineFigures {
    /// (status name, count), every status seen.
    pub by_state: Vec<(&'static str, u64)>,
    /// (creating function, live goroutines), largest first, at most
    /// `TOP_SITES`.
    pub top_sites: Vec<(String, u64)>,
    /// Live goroutines of every other site.
    pub other_sites: u64,
}

/// Reads the figures of one target.
pub struct GoroutineCounter {
    reader: GoroutineReader,
    bias: u64,
    names: HashMap<u64, Option<String>>,
}

impl GoroutineCounter {
    pub fn new(reader: GoroutineReader, bias: u64) -> Self {
        Self {
            reader,
            bias,
            names: HashMap::new(),
        }
    }

    fn name(&mut self, binary: &GoBinary, pc: u64) -> Option<String> {
        if self.names.len() >= MAX_CACHED_NAMES && !self.names.contains_key(&pc) {
            self.names.clear();
        }
        let bias = self.bias;
        self.names
            .entry(pc)
            .or_insert_with(|| {
                let link = pc.checked_sub(bias)?;
                binary
                    .functions
                    .containing(link)
                    .map(|f| crate::format::escape_control(&f.name))
            })
            .clone()
    }

    pub fn read(
        &mut self,
        memory: &dyn TargetMemory,
        binary: &GoBinary,
    ) -> anyhow::Result<GoroutineFigures> {
        let table = self.reader.read(memory)?;
        let (mut by_state, mut by_site) = (HashMap::new(), HashMap::<String, u64>::new());
        for g in &table.goroutines {
            if g.status.is_dead() || g.status == crate::runtime::goroutines::GoStatus::Idle {
                continue;
            }
            let start = self.name(binary, g.startpc);
            if StartKind::of(start.as_deref()).is_system(g, table.finalizer_running) {
                continue;
            }
            *by_state.entry(g.status.name()).or_insert(0u64) += 1;
            // gopc is a return address: its call is one byte earlier.
            let site = self
                .name(binary, g.gopc.saturating_sub(1))
                .filter(|name| !name.starts_with("runtime.newproc"))
                .unwrap_or_else(|| "[main goroutine]".to_string());
            *by_site.entry(site).or_default() += 1;
        }
        let mut sites: Vec<(String, u64)> = by_site.into_iter().collect();
        sites.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let other_sites = sites.iter().skip(TOP_SITES).map(|(_, n)| n).sum();
        sites.truncate(TOP_SITES);
        let mut by_state: Vec<(&'static str, u64)> = by_state.into_iter().collect();
        by_state.sort();
        Ok(GoroutineFigures {
            by_state,
            top_sites: sites,
            other_sites,
        })
    }
}

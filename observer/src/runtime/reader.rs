//! Reading a target's runtime counters: the layout, load bias and size
//! classes resolved once, then a `RuntimeSnapshot` on demand. Every command
//! and the agent read the runtime through one of these (see `session`).

use anyhow::Context as _;

use super::{RuntimeLayout, RuntimeSnapshot, snapshot::read_class_sizes};
use crate::{memory::ProcessMemory, target::TargetProcess};

use std::sync::Arc;

pub struct RuntimeReader {
    pub layout: Arc<RuntimeLayout>,
    pub bias: u64,
    pub memory: ProcessMemory,
    /// Object size per size class (index = class).
    pub class_sizes: Vec<u64>,
    pid: u32,
}

impl RuntimeReader {
    pub fn open(target: &TargetProcess, force_version: bool) -> anyhow::Result<Self> {
        let context = || format!("pid {}", target.pid);
        let layout = RuntimeLayout::resolve(&target.binary, force_version).with_context(context)?;
        Self::with_layout(target, Arc::new(layout))
    }

    /// A reader over a layout resolved already (the agent resolves each
    /// executable's layout once for all its processes).
    pub fn with_layout(target: &TargetProcess, layout: Arc<RuntimeLayout>) -> anyhow::Result<Self> {
        let bias = target.load_bias()?;
        let memory = target.memory();
        let class_sizes = read_class_sizes(&memory, &layout, bias)
            .with_context(|| format!("reading the size classes of pid {}", target.pid))?;
        Ok(Self {
            layout,
            bias,
            memory,
            class_sizes,
            pid: target.pid,
        })
    }

    pub fn read(&self) -> anyhow::Result<RuntimeSnapshot> {
        RuntimeSnapshot::read(&self.memory, &self.layout, self.bias)
            .with_context(|| format!("reading the runtime of pid {}", self.pid))
    }
}

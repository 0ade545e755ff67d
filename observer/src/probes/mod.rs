//! Loads goscope's kernel programs and attaches them to one target process.
//! Every attachment is a perf-event file descriptor owned by this process:
//! when goscope exits, however it exits, the kernel removes the probes.

use std::{num::NonZeroU32, path::Path};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use observer_common::CounterSlot;

use crate::{privilege, probe_points::ProbePoint};

const COUNTING_PROGRAM: &str = "count_hit";
const COUNTERS_MAP: &str = "EVENT_COUNTERS";

/// The kernel object built by observer/build.rs.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer"));

/// Loaded kernel programs bound to one target process.
pub struct ProbeSession {
    ebpf: Ebpf,
    pid: NonZeroU32,
    attached: Vec<ProbePoint>,
}

impl ProbeSession {
    /// Loads the kernel programs, filtering on `pid`.
    pub fn load(pid: u32) -> anyhow::Result<Self> {
        let pid = NonZeroU32::new(pid).ok_or_else(|| anyhow!("pid 0 cannot be observed"))?;
        if KERNEL_OBJECT.is_empty() {
            anyhow::bail!("this goscope was built with AYA_BUILD_SKIP=1 and has no eBPF programs");
        }
        let mut ebpf = EbpfLoader::new()
            .override_global("TARGET_TGID", &pid.get(), true)
            .load(KERNEL_OBJECT)
            .map_err(|e| privilege::advise(anyhow::Error::new(e), "loading the eBPF programs"))?;
        let program: &mut UProbe = ebpf
            .program_mut(COUNTING_PROGRAM)
            .ok_or_else(|| anyhow!("kernel object lacks program {COUNTING_PROGRAM}"))?
            .try_into()?;
        program.load().map_err(|e| {
            privilege::advise(
                anyhow::Error::new(e),
                &format!("loading program {COUNTING_PROGRAM} into the kernel"),
            )
        })?;
        Ok(Self {
            ebpf,
            pid,
            attached: Vec::new(),
        })
    }

    /// Attaches a counting probe at `point` in `executable` (a path that
    /// reaches the target's binary, e.g. /proc/PID/exe).
    pub fn attach_counter(
        &mut self,
        point: &ProbePoint,
        slot: CounterSlot,
        executable: &Path,
    ) -> anyhow::Result<()> {
        let program: &mut UProbe = self
            .ebpf
            .program_mut(COUNTING_PROGRAM)
            .ok_or_else(|| anyhow!("kernel object lacks program {COUNTING_PROGRAM}"))?
            .try_into()?;
        let attach_point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(point.file_offset),
            cookie: Some(u64::from(slot.index())),
        };
        program
            .attach(attach_point, executable, UProbeScope::OneProcess(self.pid))
            .map_err(|e| {
                privilege::advise(
                    anyhow::Error::new(e),
                    &format!(
                        "attaching a uprobe to {} at {:#x} (file offset {:#x}) in {}",
                        point.function,
                        point.address,
                        point.file_offset,
                        executable.display()
                    ),
                )
            })?;
        self.attached.push(point.clone());
        Ok(())
    }

    /// The probe points attached so far.
    pub fn attached(&self) -> &[ProbePoint] {
        &self.attached
    }

    /// Sum over CPUs of one counter slot.
    pub fn counter(&self, slot: CounterSlot) -> anyhow::Result<u64> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or_else(|| anyhow!("kernel object lacks map {COUNTERS_MAP}"))?;
        let counters = PerCpuArray::<_, u64>::try_from(map)?;
        let values = counters
            .get(&slot.index(), 0)
            .with_context(|| format!("reading counter slot {slot:?}"))?;
        Ok(values.iter().sum())
    }
}

//! Loads goscope's kernel programs and attaches them to one target process.
//! Every attachment is a perf-event file descriptor owned by this process:
//! when goscope exits, however it exits, the kernel removes the probes.

pub mod alloc;
pub mod assists;
pub mod calibrate;
pub mod cgo;
pub mod detacher;
pub mod governed;
pub mod governor;
pub mod latency;
pub mod rings;
pub mod spawn;
pub mod threads;

use std::{collections::BTreeSet, num::NonZeroU32, path::Path};

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

pub const COUNTING_PROGRAM: &str = "count_hit";
pub const GC_CYCLE_PROGRAM: &str = "gc_cycle_end";
pub const ASSIST_ENTER_PROGRAM: &str = "assist_enter";
pub const ASSIST_EXIT_PROGRAM: &str = "assist_exit";
pub const ASSIST_PARK_PROGRAM: &str = "assist_park";
pub const ASSIST_WORK_PROGRAM: &str = "assist_work";
const COUNTERS_MAP: &str = "EVENT_COUNTERS";

/// The kernel object built by observer/build.rs.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer"));

/// Run-time addresses the GC cycle program copies from (load bias applied).
#[derive(Clone, Copy, Debug, Default)]
pub struct GcSnapshotAddresses {
    pub work: u64,
    pub controller: u64,
    pub numgc: u64,
    pub gc_cpu_fraction: u64,
    pub init_time: u64,
    /// Offset of runtime.g.goid, for the assists' goroutine ids (0:
    /// unknown; not an address).
    pub g_goid_offset: u64,
}

/// One attached uprobe, to detach later.
pub struct AttachedLink {
    program: &'static str,
    id: aya::programs::uprobe::UProbeLinkId,
}

/// Loaded kernel programs bound to one target process.
pub struct ProbeSession {
    ebpf: Ebpf,
    pid: NonZeroU32,
    loaded: BTreeSet<&'static str>,
    attached: Vec<ProbePoint>,
    /// Held while the session lives: the kernel counts every program run
    /// and its time (BPF_ENABLE_STATS); None when refused.
    run_stats: Option<std::os::fd::OwnedFd>,
    /// Runs to leave out of a program's statistics (calibration's own).
    stats_baseline: std::collections::BTreeMap<String, RunStats>,
}

/// Whether an optional kernel feature (the scheduler tracepoints, the CPU
/// sampler) is working for this session, or why not: feature-probed at
/// attach, reported with the figures that depend on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    Unavailable(String),
}

impl Availability {
    /// From the result of trying to attach it.
    pub fn of(result: anyhow::Result<()>) -> Self {
        match result {
            Ok(()) => Self::Available,
            Err(e) => Self::Unavailable(format!("{e:#}")),
        }
    }

    pub fn is_available(&self) -> bool {
        *self == Self::Available
    }
}

/// How often a program ran and for how long, as the kernel counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub runs: u64,
    pub run_ns: u64,
}

impl ProbeSession {
    /// Loads the kernel object, filtering on `pid`.
    pub fn load(pid: u32, gc: Option<&GcSnapshotAddresses>) -> anyhow::Result<Self> {
        Self::load_with(pid, gc, &threads::TracepointOffsets::default())
    }

    /// Loads the kernel object with tracepoint field offsets read from
    /// tracefs (see `threads::TracepointOffsets::from_tracefs`).
    pub fn load_with(
        pid: u32,
        gc: Option<&GcSnapshotAddresses>,
        tracepoints: &threads::TracepointOffsets,
    ) -> anyhow::Result<Self> {
        let pid = NonZeroU32::new(pid).ok_or_else(|| anyhow!("pid 0 cannot be observed"))?;
        if KERNEL_OBJECT.is_empty() {
            anyhow::bail!("this goscope was built with AYA_BUILD_SKIP=1 and has no eBPF programs");
        }
        let gc = gc.copied().unwrap_or_default();
        require_namespace_helper()?;
        let namespace = threads::TargetPidNamespace::of(pid.get())
            .with_context(|| format!("finding the PID namespace of pid {pid}"))?;
        privilege::require_capabilities("attaching goscope's eBPF probes", privilege::EBPF)?;
        let mut loader = EbpfLoader::new();
        loader
            .override_global("TARGET_TGID", &namespace.tgid, true)
            .override_global("TARGET_PIDNS_DEV", &namespace.dev, true)
            .override_global("TARGET_PIDNS_INO", &namespace.inode, true)
            .override_global("WORK_ADDR", &gc.work, true)
            .override_global("CONTROLLER_ADDR", &gc.controller, true)
            .override_global("NUMGC_ADDR", &gc.numgc, true)
            .override_global("GC_CPU_FRACTION_ADDR", &gc.gc_cpu_fraction, true)
            .override_global("INIT_TIME_ADDR", &gc.init_time, true)
            .override_global("G_GOID_OFFSET", &gc.g_goid_offset, true)
            .override_global("SWITCH_PREV_PID", &tracepoints.switch_prev_pid, true)
            .override_global("SWITCH_PREV_STATE", &tracepoints.switch_prev_state, true)
            .override_global("SWITCH_NEXT_PID", &tracepoints.switch_next_pid, true)
            .override_global("WAKEUP_PID", &tracepoints.wakeup_pid, true)
            .override_global("FORK_CHILD_PID", &tracepoints.fork_child_pid, true);
        let ebpf = loader
            .load(KERNEL_OBJECT)
            .map_err(|e| privilege::advise(anyhow::Error::new(e), "loading the eBPF object"))?;
        let run_stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
        Ok(Self {
            ebpf,
            pid,
            loaded: BTreeSet::new(),
            attached: Vec::new(),
            run_stats,
            stats_baseline: std::collections::BTreeMap::new(),
        })
    }

    /// Leaves what program `name` ran so far out of its statistics (the
    /// calibration runs it on goscope itself).
    pub fn rebase_run_stats(&mut self, name: &str) {
        self.stats_baseline.remove(name);
        if let Some(now) = self.run_stats(name) {
            self.stats_baseline.insert(name.to_string(), now);
        }
    }

    /// True when the kernel keeps run statistics for the programs.
    pub fn has_run_stats(&self) -> bool {
        self.run_stats.is_some()
    }

    /// Runs and run time of program `name` so far (None without run
    /// statistics or before the program is loaded).
    pub fn run_stats(&self, name: &str) -> Option<RunStats> {
        self.run_stats.as_ref()?;
        let info = self.ebpf.program(name)?.info().ok()?;
        let base = self.stats_baseline.get(name).copied().unwrap_or_default();
        Some(RunStats {
            runs: info.run_count().saturating_sub(base.runs),
            run_ns: u64::try_from(info.run_time().as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_sub(base.run_ns),
        })
    }

    /// Detaches `links` all at once: each uprobe detach waits for the
    /// kernel (about 200 ms here), during which the probe still fires, so
    /// they are closed in parallel rather than one after another.
    pub fn detach_all(&mut self, links: Vec<AttachedLink>) -> anyhow::Result<()> {
        let mut owned = Vec::with_capacity(links.len());
        for link in links {
            let program = self.program(link.program)?;
            owned.push(program.take_link(link.id)?);
        }
        std::thread::scope(|scope| {
            for link in owned {
                scope.spawn(move || drop(link));
            }
        });
        Ok(())
    }

    /// Attaches tracepoint program `name` to `category:event`.
    pub fn attach_tracepoint(
        &mut self,
        name: &'static str,
        category: &str,
        event: &str,
    ) -> anyhow::Result<()> {
        let program: &mut aya::programs::TracePoint = self.loaded_program(name)?;
        program.attach(category, event).map_err(|e| {
            privilege::advise(
                anyhow::Error::new(e),
                &format!("attaching {name} to {category}:{event}"),
            )
        })?;
        Ok(())
    }

    fn program(&mut self, name: &'static str) -> anyhow::Result<&mut UProbe> {
        self.loaded_program(name)
    }

    /// Loads uprobe program `name` (the verifier runs now) without
    /// attaching it, so a refused program fails before the window.
    pub fn load_uprobe(&mut self, name: &'static str) -> anyhow::Result<()> {
        self.program(name).map(|_| ())
    }

    /// Program `name` as type `P`, loaded into the kernel on first use.
    fn loaded_program<P>(&mut self, name: &'static str) -> anyhow::Result<&mut P>
    where
        for<'p> &'p mut P:
            TryFrom<&'p mut aya::programs::Program, Error = aya::programs::ProgramError>,
        P: LoadableProgram,
    {
        let program: &mut P = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("kernel object lacks program {name}"))?
            .try_into()?;
        if self.loaded.insert(name) {
            program.load_into_kernel().map_err(|e| {
                privilege::advise(
                    anyhow::Error::new(e),
                    &format!("loading program {name} into the kernel (verifier)"),
                )
            })?;
        }
        Ok(program)
    }

    /// Attaches kernel program `name` at `point` in `executable` (a path
    /// that reaches the target's binary, e.g. /proc/PID/exe).
    pub fn attach(
        &mut self,
        name: &'static str,
        point: &ProbePoint,
        cookie: Option<u64>,
        executable: &Path,
    ) -> anyhow::Result<()> {
        self.attach_link(name, point, cookie, executable, self.pid)
            .map(|_| ())
    }

    /// Attaches program `enter` at a function's start and `exit` at each of
    /// its RET instructions (timing without uretprobes).
    pub fn attach_timed(
        &mut self,
        enter: (&'static str, &ProbePoint),
        exit: (&'static str, &[ProbePoint]),
        executable: &Path,
        pid: NonZeroU32,
    ) -> anyhow::Result<Vec<AttachedLink>> {
        let mut links = vec![self.attach_link(enter.0, enter.1, None, executable, pid)?];
        for ret in exit.1 {
            links.push(self.attach_link(exit.0, ret, None, executable, pid)?);
        }
        Ok(links)
    }

    /// Detaches one probe attached with `attach_link`.
    pub fn detach(&mut self, link: AttachedLink) -> anyhow::Result<()> {
        let program = self.program(link.program)?;
        program.detach(link.id)?;
        Ok(())
    }

    /// Like `attach`, for process `pid`, returning the link to detach it.
    pub fn attach_link(
        &mut self,
        name: &'static str,
        point: &ProbePoint,
        cookie: Option<u64>,
        executable: &Path,
        pid: NonZeroU32,
    ) -> anyhow::Result<AttachedLink> {
        let program = self.program(name)?;
        let attach_point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(point.file_offset),
            cookie,
        };
        let id = program
            .attach(attach_point, executable, UProbeScope::OneProcess(pid))
            .map_err(|e| {
                privilege::advise(
                    anyhow::Error::new(e),
                    &format!(
                        "attaching {name} to {} at {:#x} (file offset {:#x}) in {}",
                        point.function,
                        point.address,
                        point.file_offset,
                        executable.display()
                    ),
                )
            })?;
        self.attached.push(point.clone());
        Ok(AttachedLink { program: name, id })
    }

    /// Attaches the counting program; `slot` is its cookie.
    pub fn attach_counter(
        &mut self,
        point: &ProbePoint,
        slot: CounterSlot,
        executable: &Path,
    ) -> anyhow::Result<()> {
        self.attach(
            COUNTING_PROGRAM,
            point,
            Some(u64::from(slot.index())),
            executable,
        )
    }

    /// The probe points attached so far.
    pub fn attached(&self) -> &[ProbePoint] {
        &self.attached
    }

    /// Sum over CPUs of one counter slot.
    pub fn counter(&self, slot: CounterSlot) -> anyhow::Result<u64> {
        per_cpu_sum(&self.ebpf, COUNTERS_MAP, slot.index())
    }

    pub(crate) fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    pub(crate) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// Every program recognizes the target with bpf_get_ns_current_pid_tgid
/// (Linux 5.7+): refuse clearly on a kernel without it rather than let the
/// verifier name an unknown function.
fn require_namespace_helper() -> anyhow::Result<()> {
    use aya::{
        programs::ProgramType,
        sys::{BpfHelper, is_helper_supported},
    };
    for (program_type, kind) in [
        (ProgramType::KProbe, "uprobe"),
        (ProgramType::TracePoint, "tracepoint"),
        (ProgramType::PerfEvent, "perf-event"),
    ] {
        // A probe that cannot decide leaves the verdict to the real load.
        if let Ok(false) =
            is_helper_supported(program_type, BpfHelper::BPF_FUNC_get_ns_current_pid_tgid)
        {
            anyhow::bail!(
                "this kernel does not offer the BPF helper bpf_get_ns_current_pid_tgid to \
                 {kind} programs (Linux 5.7 or later): goscope needs it to recognize the \
                 target's threads in its PID namespace"
            );
        }
    }
    Ok(())
}

/// Program types whose `load` takes no arguments.
pub(crate) trait LoadableProgram {
    fn load_into_kernel(&mut self) -> Result<(), aya::programs::ProgramError>;
}

impl LoadableProgram for UProbe {
    fn load_into_kernel(&mut self) -> Result<(), aya::programs::ProgramError> {
        self.load()
    }
}

impl LoadableProgram for aya::programs::TracePoint {
    fn load_into_kernel(&mut self) -> Result<(), aya::programs::ProgramError> {
        self.load()
    }
}

/// Sum over CPUs of slot `index` of a per-CPU u64 array.
pub(crate) fn per_cpu_sum(ebpf: &Ebpf, map: &str, index: u32) -> anyhow::Result<u64> {
    let map_data = ebpf
        .map(map)
        .ok_or_else(|| anyhow!("kernel object lacks map {map}"))?;
    let array = PerCpuArray::<_, u64>::try_from(map_data)?;
    let values = array
        .get(&index, 0)
        .with_context(|| format!("reading {map}[{index}]"))?;
    Ok(values.iter().sum())
}

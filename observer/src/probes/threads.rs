//! The target's OS threads seen by the scheduler: tracepoints on
//! sched_wakeup(_new), sched_switch, sched_process_fork and
//! sched_process_exit (no trap in the target, in-kernel aggregation) give
//! run-queue latency, involuntary switches and thread churn.
//!
//! The kernel programs recognize the target in its own PID namespace
//! (`TargetPidNamespace`), and keep its threads by the initial namespace's
//! thread ids that tracepoint records carry, learning them as the threads
//! run; this side seeds them from /proc only where /proc shows those ids.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use aya::maps::{HashMap, PerCpuArray};
use observer_common::{CounterSlot, Log2Histogram, ThreadStateEvent};

use super::ProbeSession;
use crate::runtime::histogram::{Percentiles, percentiles};

const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Field offsets of the scheduler tracepoints on this kernel.
#[derive(Clone, Copy, Debug)]
pub struct TracepointOffsets {
    pub switch_prev_pid: u32,
    pub switch_prev_state: u32,
    pub switch_next_pid: u32,
    pub wakeup_pid: u32,
    pub fork_child_pid: u32,
}

impl Default for TracepointOffsets {
    /// The layout of current kernels (6.x), used only if never attached.
    fn default() -> Self {
        Self {
            switch_prev_pid: 24,
            switch_prev_state: 32,
            switch_next_pid: 56,
            wakeup_pid: 24,
            fork_child_pid: 20,
        }
    }
}

fn tracefs() -> anyhow::Result<PathBuf> {
    TRACEFS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events/sched").exists())
        .ok_or_else(|| {
            anyhow!("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
        })
}

fn field_offset(tracefs: &Path, event: &str, field: &str) -> anyhow::Result<u32> {
    let path = tracefs.join("events/sched").join(event).join("format");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| l.contains(&format!(" {field};")) || l.contains(&format!(" {field}[")))
        .find_map(|l| {
            l.split("offset:")
                .nth(1)?
                .split(';')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow!("{}: no field {field}", path.display()))
}

impl TracepointOffsets {
    pub fn from_tracefs() -> anyhow::Result<Self> {
        let t = tracefs()?;
        Ok(Self {
            switch_prev_pid: field_offset(&t, "sched_switch", "prev_pid")?,
            switch_prev_state: field_offset(&t, "sched_switch", "prev_state")?,
            switch_next_pid: field_offset(&t, "sched_switch", "next_pid")?,
            wakeup_pid: field_offset(&t, "sched_wakeup", "pid")?,
            fork_child_pid: field_offset(&t, "sched_process_fork", "child_pid")?,
        })
    }
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`,
/// include/linux/proc_ns.h).
const INIT_PID_NAMESPACE_INODE: u64 = 0xEFFF_FFFC;

/// How the kernel programs recognize the target: its PID namespace (the
/// nsfs device and inode of /proc/PID/ns/pid) and its tgid there, for
/// bpf_get_ns_current_pid_tgid. The target's own namespace, not goscope's:
/// the helper matches a task's innermost namespace only, so this works
/// from the host (a container's process), from inside the target's
/// namespace (a debug container, `unshare --pid`) and in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPidNamespace {
    /// The nsfs device as the kernel encodes a dev_t (major << 20 | minor).
    pub dev: u64,
    pub inode: u64,
    /// The target's tgid in that namespace (the last NSpid entry).
    pub tgid: u32,
}

impl TargetPidNamespace {
    /// Reads /proc/PID/ns/pid and the NSpid line of /proc/PID/status.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let ns = format!("/proc/{pid}/ns/pid");
        let meta = std::fs::metadata(&ns).with_context(|| format!("stat {ns}"))?;
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .with_context(|| format!("reading {status_path}"))?;
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|ids| ids.split_whitespace().last())
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| anyhow!("{status_path} has no NSpid line"))?;
        Ok(Self {
            dev: kernel_dev(meta.dev()),
            inode: meta.ino(),
            tgid,
        })
    }
}

/// A dev_t as stat reports it, in the kernel's internal encoding (what
/// bpf_get_ns_current_pid_tgid compares).
fn kernel_dev(dev: u64) -> u64 {
    (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev))
}

/// True when thread ids under /proc are the initial PID namespace's (the
/// ids scheduler tracepoints carry): goscope itself runs in that
/// namespace, so /proc/self resolving means /proc is that namespace's.
pub fn proc_shows_initial_namespace_ids() -> bool {
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == INIT_PID_NAMESPACE_INODE)
}

/// Seeds the target's thread ids and attaches the scheduler tracepoints.
/// Inside a PID namespace /proc shows that namespace's ids: the map is not
/// seeded and the kernel learns each thread the first time it is switched
/// out (a thread asleep at attach misses its first wakeup's latency).
pub fn attach(session: &mut ProbeSession, pid: u32) -> anyhow::Result<()> {
    if proc_shows_initial_namespace_ids() {
        let map = session
            .ebpf_mut()
            .map_mut("TARGET_TIDS")
            .ok_or_else(|| anyhow!("kernel object lacks map TARGET_TIDS"))?;
        let mut tids: HashMap<_, u32, u8> = HashMap::try_from(map)?;
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .with_context(|| format!("listing /proc/{pid}/task"))?;
        for task in tasks.flatten() {
            if let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            {
                tids.insert(tid, 1, 0)?;
            }
        }
    }
    session.attach_tracepoint("thread_fork", "sched", "sched_process_fork")?;
    session.attach_tracepoint("thread_exit", "sched", "sched_process_exit")?;
    session.attach_tracepoint("thread_wakeup", "sched", "sched_wakeup")?;
    session.attach_tracepoint("thread_wakeup", "sched", "sched_wakeup_new")?;
    session.attach_tracepoint("thread_switch", "sched", "sched_switch")?;
    Ok(())
}

/// Cumulative thread figures at one instant.
#[derive(Clone, Debug, Default)]
pub struct ThreadCounters {
    pub runq_latency: Vec<u64>,
    pub involuntary_switches: u64,
    pub created: u64,
    pub exited: u64,
}

impl ThreadCounters {
    pub fn read(session: &ProbeSession) -> anyhow::Result<Self> {
        let map = session
            .ebpf()
            .map("RUNQ_HIST")
            .ok_or_else(|| anyhow!("kernel object lacks map RUNQ_HIST"))?;
        let array = PerCpuArray::<_, Log2Histogram>::try_from(map)?;
        let mut runq_latency = vec![0u64; 64];
        for hist in array.get(&0, 0)?.iter() {
            for (sum, v) in runq_latency.iter_mut().zip(hist.slots.iter()) {
                *sum += v;
            }
        }
        Ok(Self {
            runq_latency,
            involuntary_switches: session.counter(CounterSlot::InvoluntarySwitches)?,
            created: session.counter(CounterSlot::ThreadsCreated)?,
            exited: session.counter(CounterSlot::ThreadsExited)?,
        })
    }

    /// Percentiles of the run-queue latency between two readings (ns,
    /// upper bounds of log2 buckets).
    pub fn runq_percentiles(&self, earlier: &Self) -> Option<Percentiles> {
        let delta: Vec<u64> = self
            .runq_latency
            .iter()
            .zip(&earlier.runq_latency)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let bounds: Vec<f64> = (0..=delta.len())
            .map(|i| if i == 0 { 0.0 } else { (1u128 << i) as f64 })
            .collect();
        percentiles(&delta, &bounds)
    }
}

/// Most transitions taken from the ring in one drain (the rest wait for
/// the next), so one drain's memory is bounded.
const MAX_DRAINED: usize = 1 << 16;

/// Asks the scheduler tracepoints for each transition of the target's
/// threads (`drain_transitions` takes them).
pub fn enable_transitions(session: &mut ProbeSession) -> anyhow::Result<()> {
    session.switch_on("THREAD_EVENTS_ON")
}

/// The transitions the kernel emitted since the last drain, oldest first.
pub fn drain_transitions(session: &mut ProbeSession) -> anyhow::Result<Vec<ThreadStateEvent>> {
    session.drain_ring("THREAD_EVENTS", MAX_DRAINED)
}

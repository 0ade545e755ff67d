//! The target's OS threads seen by the scheduler: tracepoints on
//! sched_wakeup(_new), sched_switch, sched_process_fork and
//! sched_process_exit (no trap in the target, in-kernel aggregation) give
//! run-queue latency, involuntary switches and thread churn.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aya::maps::{HashMap, PerCpuArray};
use observer_common::{CounterSlot, Log2Histogram};

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

/// Seeds the target's thread ids and attaches the scheduler tracepoints.
pub fn attach(session: &mut ProbeSession, pid: u32) -> anyhow::Result<()> {
    {
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

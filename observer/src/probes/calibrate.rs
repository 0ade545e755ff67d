//! What uprobes cost a process on this host, measured on a function of
//! goscope's own process: one hit (called many times with and without the
//! probe), and what attaching and detaching add to the probed process (the
//! first call after each, against the steady cost). Everything is timed on
//! the calling thread's CPU clock: a uprobe's trap is the thread's system
//! time, and time the thread spends preempted on a busy host is not probe
//! cost. The governor weighs event rates and attach/detach counts against
//! these.

use std::{hint::black_box, num::NonZeroU32};

use anyhow::{Context as _, anyhow};

use super::{COUNTING_PROGRAM, ProbeSession};
use crate::{
    binary::prologue::Placement, binary::symbols::AddressSource, clock::thread_cpu_time,
    probe_points::ProbePoint,
};

const CALLS: u32 = 2000;

/// The probed function: not inlined, with a body the optimizer keeps.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn goscope_probe_calibration(x: u64) -> u64 {
    black_box(x).wrapping_mul(31).wrapping_add(7)
}

fn time_calls() -> f64 {
    let start = thread_cpu_time();
    let mut acc = 0u64;
    for i in 0..CALLS {
        acc = acc.wrapping_add(goscope_probe_calibration(black_box(u64::from(i))));
    }
    black_box(acc);
    (thread_cpu_time() - start).as_nanos() as f64 / f64::from(CALLS)
}

/// File offset of a code address of this process, from /proc/self/maps.
fn own_file_offset(address: u64) -> anyhow::Result<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    maps.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let (start, end) = (
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            );
            let _perms = fields.next()?;
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            (start..end)
                .contains(&address)
                .then(|| address - start + offset)
        })
        .ok_or_else(|| anyhow!("{address:#x} is not in a mapping of goscope"))
}

/// What probes cost the probed process, ns.
#[derive(Clone, Copy, Debug)]
pub struct Costs {
    /// One hit: trap, program, return.
    pub hit_ns: f64,
    /// Attaching one probe, beyond its hits (the probed process's first
    /// hit sets up the breakpoint page and the single-step area).
    pub attach_ns: f64,
    /// Detaching one probe (the first call after, on the restored page).
    pub detach_ns: f64,
}

impl Costs {
    /// Attach and detach costs of a set of `links` probes.
    pub fn links(&self, links: usize) -> super::governor::LinkCosts {
        super::governor::LinkCosts {
            attach_ns: self.attach_ns * links as f64,
            detach_ns: self.detach_ns * links as f64,
        }
    }
}

/// One call of the calibration function, timed.
fn time_one_call(i: u64) -> f64 {
    let start = thread_cpu_time();
    black_box(goscope_probe_calibration(black_box(i)));
    let elapsed = (thread_cpu_time() - start).as_nanos() as f64;
    (elapsed - clock_read_ns()).max(0.0)
}

/// What one read of the thread CPU clock adds to an interval (a system
/// call, unlike the loops' per-call average).
fn clock_read_ns() -> f64 {
    (0..5)
        .map(|_| {
            let start = thread_cpu_time();
            (thread_cpu_time() - start).as_nanos() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Nanoseconds one uprobe hit adds (trap, program, return), measured now.
pub fn probe_hit_cost_ns(session: &mut ProbeSession) -> anyhow::Result<f64> {
    Ok(costs(session)?.hit_ns)
}

/// Measures what a probe costs the probed process on this host, now.
pub fn costs(session: &mut ProbeSession) -> anyhow::Result<Costs> {
    let address = goscope_probe_calibration as *const () as usize as u64;
    let point = ProbePoint {
        function: "goscope_probe_calibration".into(),
        entry: address,
        address,
        file_offset: own_file_offset(address)?,
        placement: Placement::Entry,
        source: AddressSource::Symtab,
    };
    let own = NonZeroU32::new(std::process::id()).context("own pid")?;
    let baseline = time_calls().min(time_calls());
    let link = session.attach_link(
        COUNTING_PROGRAM,
        &point,
        Some(u64::from(u32::MAX)),
        std::path::Path::new("/proc/self/exe"),
        own,
    )?;
    let first_hit = time_one_call(1);
    let probed = time_calls().min(time_calls());
    session.detach(link)?;
    let first_after = time_one_call(2);
    session.rebase_run_stats(COUNTING_PROGRAM);
    let hit_ns = (probed - baseline).max(0.0);
    Ok(Costs {
        hit_ns,
        attach_ns: (first_hit - probed).max(0.0),
        detach_ns: (first_after - baseline).max(0.0),
    })
}

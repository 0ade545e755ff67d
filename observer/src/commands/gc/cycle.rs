//! One GC cycle as gctrace prints it, decoded from the kernel's copy of
//! runtime.work, gcController and memstats taken right after the cycle.

use observer_common::GcCycleEvent;
use serde::Serialize;

use crate::{
    probes::assists::AssistSummary,
    runtime::{
        layout::RuntimeOffsets,
        snapshot::{heap_goal, le_u32, le_u64},
    },
};

#[derive(Clone, Debug, Serialize)]
pub struct CycleRecord {
    /// gctrace's cycle number (memstats.numgc after the cycle).
    pub cycle: u32,
    /// Seconds since the runtime started (gctrace's @).
    pub at_s: f64,
    /// Share of CPU spent in GC since the program started (gctrace's %).
    pub gc_cpu_percent: f64,
    pub stw_sweep_term_ns: i64,
    pub concurrent_mark_ns: i64,
    pub stw_mark_term_ns: i64,
    pub cpu: CycleCpu,
    /// Heap at the start of the cycle, at mark end, and marked live (bytes).
    pub heap_start_bytes: u64,
    pub heap_end_bytes: u64,
    pub heap_live_bytes: u64,
    pub heap_goal_bytes: u64,
    pub nprocs: u32,
    pub forced: bool,
    pub gogc: Option<i32>,
    pub memory_limit_bytes: Option<i64>,
    /// True when GOMEMLIMIT, not GOGC, sets the goal of the next cycle.
    pub memory_limit_sets_goal: bool,
    /// False when the overhead governor had the assist probes detached for
    /// part of the cycle: the assist figures are then not the cycle's whole.
    pub assists_sampled: bool,
    pub assist_count: u64,
    /// gcAssistAlloc calls paid from background credit (no scan, no wait).
    pub assist_credit_steals: u64,
    pub assist_goroutines: u64,
    pub assist_parked: u64,
    pub assist_latency_ns: Option<crate::runtime::histogram::Percentiles>,
}

/// CPU time of the cycle's phases, as gctrace's "ms cpu" part.
#[derive(Clone, Debug, Serialize)]
pub struct CycleCpu {
    pub stw_sweep_term_ns: i64,
    pub assist_ns: i64,
    pub background_ns: i64,
    pub idle_ns: i64,
    pub stw_mark_term_ns: i64,
}

fn i64_at(raw: &[u8], offset: u64) -> i64 {
    le_u64(raw, offset) as i64
}

impl CycleRecord {
    pub fn decode(
        event: &GcCycleEvent,
        offsets: &RuntimeOffsets,
        assists: AssistSummary,
        sampled: bool,
    ) -> Self {
        let c = &offsets.cycle;
        let g = &offsets.gc;
        let work = &event.work[..];
        let ctl = &event.controller[..];
        let t_sweep_term = i64_at(work, c.t_sweep_term);
        let t_mark = i64_at(work, c.t_mark);
        let t_mark_term = i64_at(work, c.t_mark_term);
        let t_end = i64_at(work, c.t_end);
        let stwprocs = i64::from(le_u32(work, c.stwprocs) as i32);
        let gc_percent = le_u32(ctl, g.gc_percent) as i32;
        let memory_limit = g
            .memory_limit
            .map(|o| i64_at(ctl, o))
            .filter(|&l| l != i64::MAX);
        let (_, limited) = heap_goal(ctl, g, le_u64(ctl, g.heap_marked));
        Self {
            cycle: event.numgc,
            at_s: (t_sweep_term - event.runtime_init_time) as f64 / 1e9,
            gc_cpu_percent: f64::from_bits(event.gc_cpu_fraction_bits) * 100.0,
            stw_sweep_term_ns: t_mark - t_sweep_term,
            concurrent_mark_ns: t_mark_term - t_mark,
            stw_mark_term_ns: t_end - t_mark_term,
            cpu: CycleCpu {
                stw_sweep_term_ns: stwprocs * (t_mark - t_sweep_term),
                assist_ns: i64_at(ctl, g.assist_time),
                background_ns: i64_at(ctl, g.dedicated_mark_time)
                    + i64_at(ctl, g.fractional_mark_time),
                idle_ns: i64_at(ctl, g.idle_mark_time),
                stw_mark_term_ns: stwprocs * (t_end - t_mark_term),
            },
            heap_start_bytes: le_u64(work, c.heap0),
            heap_end_bytes: le_u64(work, c.heap1),
            heap_live_bytes: le_u64(work, c.heap2),
            heap_goal_bytes: le_u64(ctl, c.last_heap_goal),
            nprocs: le_u32(work, c.maxprocs),
            forced: work.get(c.user_forced as usize).is_some_and(|&b| b != 0),
            gogc: (gc_percent >= 0).then_some(gc_percent),
            memory_limit_bytes: memory_limit,
            memory_limit_sets_goal: limited,
            assists_sampled: sampled,
            assist_count: assists.count,
            assist_credit_steals: assists.credit_steals,
            assist_goroutines: assists.goroutines,
            assist_parked: assists.parked,
            assist_latency_ns: assists.latency_ns,
        }
    }

    /// The line GODEBUG=gctrace=1 would print, then what gctrace lacks.
    pub fn gctrace_line(&self) -> String {
        let ms = |ns: i64| format_ms(ns);
        let mb = |b: u64| b >> 20;
        let mut line = format!(
            "gc {} @{:.3}s {}%: {}+{}+{} ms clock, {}+{}/{}/{}+{} ms cpu, {}->{}->{} MB, {} MB goal, {} P{}",
            self.cycle,
            self.at_s,
            self.gc_cpu_percent as i64,
            ms(self.stw_sweep_term_ns),
            ms(self.concurrent_mark_ns),
            ms(self.stw_mark_term_ns),
            ms(self.cpu.stw_sweep_term_ns),
            ms(self.cpu.assist_ns),
            ms(self.cpu.background_ns),
            ms(self.cpu.idle_ns),
            ms(self.cpu.stw_mark_term_ns),
            mb(self.heap_start_bytes),
            mb(self.heap_end_bytes),
            mb(self.heap_live_bytes),
            mb(self.heap_goal_bytes),
            self.nprocs,
            if self.forced { " (forced)" } else { "" }
        );
        line.push_str(" | assists ");
        if !self.assists_sampled {
            line.push_str("not sampled (overhead budget)");
        } else {
            match &self.assist_latency_ns {
                Some(p) if self.assist_count > 0 => line.push_str(&format!(
                    "{} by {} g, p50 {} p99 {} max {}, parked {}",
                    self.assist_count,
                    self.assist_goroutines,
                    crate::format::duration_ns(p.p50),
                    crate::format::duration_ns(p.p99),
                    crate::format::duration_ns(p.max),
                    self.assist_parked
                )),
                _ => line.push('0'),
            }
        }
        if self.assist_credit_steals > 0 {
            line.push_str(&format!(
                " (+{} paid from credit)",
                self.assist_credit_steals
            ));
        }
        let gogc = crate::format::gogc(self.gogc);
        let limit = crate::format::gomemlimit(self.memory_limit_bytes);
        line.push_str(&format!(" | GOGC {gogc} GOMEMLIMIT {limit}"));
        if self.memory_limit_sets_goal {
            line.push_str(" (limit sets the goal)");
        }
        line
    }
}

/// Milliseconds the way the runtime's fmtNSAsMS prints them: whole ms from
/// 10 ms up, else 2 significant digits after the point.
pub fn format_ms(ns: i64) -> String {
    let ns = ns.max(0) as u64;
    if ns >= 10_000_000 {
        return (ns / 1_000_000).to_string();
    }
    let mut x = ns / 1000;
    if x == 0 {
        return "0".to_string();
    }
    let mut dec = 3;
    while x >= 100 {
        x /= 10;
        dec -= 1;
    }
    if dec <= 0 {
        return x.to_string();
    }
    // itoaDiv: at least one digit before the point, `dec` after it.
    let dec = dec as usize;
    let padded = format!("{x:0>width$}", width = dec + 1);
    let (whole, fraction) = padded.split_at(padded.len() - dec);
    format!("{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::format_ms;

    #[test]
    fn formats_like_the_runtime() {
        assert_eq!(format_ms(0), "0");
        assert_eq!(format_ms(12_345), "0.012");
        assert_eq!(format_ms(1_234_567), "1.2");
        assert_eq!(format_ms(45_000_000), "45");
    }
}

//! A goroutine dump taken from outside, without stopping the target: every
//! goroutine of the runtime's table with its state, wait reason and wait
//! time, creation site, start function, the thread a running one is on,
//! and its stack (`runtime::stacks`), each re-checked after the walk.
//!
//! Consistency: the table races with the program. After a goroutine's
//! stack is walked its g is read again; when goid, status, stack bounds or
//! saved registers changed, the walk is retried once with the new values,
//! and a goroutine that changed again (or whose stack could not be walked
//! to its end) is counted as partial. The goroutines considered are the
//! ones the runtime's goroutine profile shows: not dead, not system
//! (isSystemGoroutine), unless system goroutines are asked for.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    memory::TargetMemory,
    pprof::Location,
    runtime::{
        goroutines::{GoStatus, Goroutine, GoroutineError, GoroutineReader, SystemGoroutines},
        labels::{self, Label},
        stacks::{NoStack, StackEnd, StackOrigin, StackWalker, WalkedStack, wrapper_func_id},
    },
    symbols::SourceSymbolizer,
};

/// Bounds of one dump.
#[derive(Clone, Copy, Debug)]
pub struct DumpLimits {
    /// Stacks walked at most (further goroutines are listed without one).
    pub max_stacks: usize,
    /// Frames per stack.
    pub max_frames: usize,
    /// Include system goroutines (the runtime's profile leaves them out).
    pub include_system: bool,
}

/// One goroutine of a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedGoroutine {
    pub goid: u64,
    pub status: GoStatus,
    /// The runtime's wait-reason string (waiting goroutines).
    pub wait_reason: Option<String>,
    /// How long it has waited, where the runtime recorded the start.
    pub waiting: Option<Duration>,
    /// Thread id of a running goroutine's M.
    pub thread: Option<u64>,
    pub system: bool,
    /// The `go` statement's return PC (0: none).
    pub gopc: u64,
    pub parent_goid: Option<u64>,
    pub startpc: u64,
    /// The walked stack, or why there is none.
    pub stack: Result<WalkedStack, NoStack>,
    /// pprof labels, sorted by key (shared by the goroutines of a set).
    pub labels: Arc<[Label]>,
    /// The g changed under the walk (twice) or the stack did not reach
    /// its end.
    pub partial: bool,
}

impl DumpedGoroutine {
    /// The PCs of its stack (empty: none walked).
    pub fn pcs(&self) -> &[u64] {
        self.stack.as_ref().map_or(&[], |s| &s.pcs)
    }
}

/// A dump and what it cost.
#[derive(Debug)]
pub struct GoroutineDump {
    /// runtime.allglen at the reading (every g, dead ones included).
    pub allglen: u64,
    pub goroutines: Vec<DumpedGoroutine>,
    /// System goroutines left out.
    pub system_left_out: u64,
    /// Goroutines whose stack was not walked because of the cap.
    pub stacks_not_walked: u64,
    pub limits: DumpLimits,
    /// Walks retried because the g changed under them.
    pub retried: u64,
    /// Goroutines whose label set could not be read (listed without).
    pub unreadable_labels: u64,
    /// goscope's wall time for the dump.
    pub elapsed: Duration,
    /// Every PC of every stack, creation and start site, symbolized.
    pub locations: HashMap<u64, Location>,
}

impl GoroutineDump {
    pub fn partial(&self) -> usize {
        self.goroutines.iter().filter(|g| g.partial).count()
    }

    pub fn truncated(&self) -> usize {
        self.goroutines
            .iter()
            .filter(|g| {
                matches!(
                    g.stack,
                    Ok(WalkedStack {
                        end: StackEnd::Truncated { .. },
                        ..
                    })
                )
            })
            .count()
    }

    /// The location of a PC of this dump (an unknown one if absent).
    pub fn location(&self, pc: u64) -> Location {
        self.locations
            .get(&pc)
            .cloned()
            .unwrap_or_else(|| Location::named(pc, "[unknown]"))
    }
}

/// Why a dump could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Table(#[from] GoroutineError),
    #[error("this binary's runtime.g layout lacks the stack fields (stack, sched, syscallsp, m)")]
    NoStackLayout,
    #[error("the binary's pclntab line tables are unreadable: stacks cannot be unwound")]
    NoLineTable,
}

/// CLOCK_MONOTONIC now: the runtime's nanotime on Linux.
fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// The fields a walk depends on: equal before and after means the stack
/// was read from a goroutine that did not move.
fn walk_inputs(
    g: &Goroutine,
) -> (
    u64,
    GoStatus,
    Option<crate::runtime::goroutines::SavedContext>,
) {
    (g.goid, g.status, g.saved)
}

/// Takes one dump.
pub fn take(
    reader: &GoroutineReader,
    memory: &dyn TargetMemory,
    symbols: &SourceSymbolizer,
    bias: u64,
    limits: DumpLimits,
) -> Result<GoroutineDump, DumpError> {
    let started = Instant::now();
    let m_procid = reader
        .stack_layout()
        .ok_or(DumpError::NoStackLayout)?
        .m_procid;
    let lines = symbols.line_table().ok_or(DumpError::NoLineTable)?;
    let table = reader.read(memory)?;
    let reasons = reader.wait_reasons(memory)?;
    let mut system = SystemGoroutines::new(|pc| symbols.function(pc).map(str::to_string));
    let mut walker = StackWalker::new(
        lines,
        bias,
        wrapper_func_id(reader.go_minor()),
        limits.max_frames,
    );
    let now = monotonic_ns();
    let (mut goroutines, mut system_left_out, mut not_walked, mut retried) =
        (Vec::new(), 0u64, 0u64, 0u64);
    let mut unreadable_labels = 0u64;
    let no_labels: Arc<[Label]> = Arc::from(Vec::new());
    let mut label_sets: HashMap<u64, Arc<[Label]>> = HashMap::new();
    for g in &table.goroutines {
        if g.status.is_dead() || g.status == GoStatus::Idle {
            continue;
        }
        let is_system = system.is_system(g, table.finalizer_running);
        if is_system && !limits.include_system {
            system_left_out += 1;
            continue;
        }
        let (mut g, mut partial) = (g.clone(), false);
        let stack = if goroutines.len() >= limits.max_stacks {
            not_walked += 1;
            Err(NoStack::NotWalked)
        } else {
            let mut attempt = walker.walk(memory, &g);
            match reader.reread(memory, g.address) {
                Some(again) if walk_inputs(&again) == walk_inputs(&g) => {}
                Some(again) => {
                    retried += 1;
                    attempt = walker.walk(memory, &again);
                    let third = reader.reread(memory, again.address);
                    partial = third.is_none_or(|t| walk_inputs(&t) != walk_inputs(&again));
                    g = again;
                }
                None => partial = true,
            }
            if let Ok(stack) = &attempt {
                partial |= !stack.end.is_complete();
            }
            attempt
        };
        if g.status.is_dead() {
            continue;
        }
        let waiting = matches!(g.status, GoStatus::Waiting | GoStatus::Syscall)
            .then_some(g.wait_since)
            .flatten()
            .filter(|&since| since > 0 && since <= now)
            .map(|since| Duration::from_nanos((now - since) as u64));
        let thread = (g.status == GoStatus::Running)
            .then_some(g.saved)
            .flatten()
            .filter(|s| s.m != 0)
            .and_then(|s| memory.read_u64(s.m.checked_add(m_procid)?).ok())
            .filter(|&tid| tid != 0);
        let wait_reason = (g.status == GoStatus::Waiting).then(|| {
            reasons
                .name(g.wait_reason)
                .unwrap_or("unknown wait reason")
                .to_string()
        });
        // Goroutines share label sets (a pprof.Do context): each set is
        // read once per dump and shared.
        let labels = match g.saved.map_or(0, |s| s.labels) {
            0 => Arc::clone(&no_labels),
            pointer => Arc::clone(label_sets.entry(pointer).or_insert_with(|| {
                labels::read(memory, pointer, reader.go_minor()).map_or_else(
                    |_| {
                        unreadable_labels += 1;
                        Arc::clone(&no_labels)
                    },
                    Arc::from,
                )
            })),
        };
        goroutines.push(DumpedGoroutine {
            labels,
            goid: g.goid,
            status: g.status,
            wait_reason,
            waiting,
            thread,
            system: is_system,
            gopc: g.gopc,
            parent_goid: g.parent_goid,
            startpc: g.startpc,
            stack,
            partial,
        });
    }
    goroutines.sort_by_key(|g| g.goid);
    let mut locations = HashMap::new();
    for g in &goroutines {
        for &pc in g.pcs().iter().chain([g.gopc].iter()).filter(|&&pc| pc != 0) {
            locations
                .entry(pc)
                .or_insert_with(|| symbols.location(pc, true));
        }
        if g.startpc != 0 {
            // The start function's entry is no return address; keyed
            // apart so it never shadows a return PC.
            locations
                .entry(start_key(g.startpc))
                .or_insert_with(|| symbols.location(g.startpc, false));
        }
    }
    Ok(GoroutineDump {
        allglen: table.allglen,
        goroutines,
        system_left_out,
        stacks_not_walked: not_walked,
        limits,
        retried,
        unreadable_labels,
        elapsed: started.elapsed(),
        locations,
    })
}

/// Key of a start function's location in `GoroutineDump::locations`
/// (entry PCs are looked up as they are, return PCs one byte earlier).
pub fn start_key(startpc: u64) -> u64 {
    startpc | (1 << 63)
}

/// The origin of a stack, for reports.
pub fn origin_name(origin: StackOrigin) -> &'static str {
    match origin {
        StackOrigin::Scheduled => "saved by the scheduler",
        StackOrigin::Syscall => "at the syscall or C call",
    }
}

/// Goroutines with one JSON object each (frames expanded).
#[derive(Serialize)]
pub struct JsonGoroutine<'a> {
    pub goid: u64,
    pub status: &'static str,
    pub wait_reason: Option<&'a str>,
    pub waiting_s: Option<f64>,
    pub thread: Option<u64>,
    pub system: bool,
    pub parent_goid: Option<u64>,
    pub created_by: Option<JsonFrame>,
    pub start_function: Option<String>,
    pub stack_origin: Option<StackOrigin>,
    pub stack_end: Option<StackEnd>,
    pub no_stack: Option<NoStack>,
    pub partial: bool,
    pub labels: &'a [Label],
    pub frames: Vec<JsonFrame>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct JsonFrame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// The `go` statement that created a goroutine (the innermost frame at
/// its gopc); `None` for the main goroutine, which rt0_go starts through
/// runtime.newproc with no `go` statement.
pub fn creation_frame(dump: &GoroutineDump, gopc: u64) -> Option<JsonFrame> {
    if gopc == 0 {
        return None;
    }
    frames_of(dump, &[gopc])
        .into_iter()
        .next()
        .filter(|f| f.function != "runtime.newproc")
}

/// Source frames of PCs, innermost first, inlined calls expanded.
pub fn frames_of(dump: &GoroutineDump, pcs: &[u64]) -> Vec<JsonFrame> {
    pcs.iter()
        .flat_map(|&pc| {
            dump.location(pc).lines.into_iter().map(|l| JsonFrame {
                function: l.function,
                file: l.file,
                line: l.line,
            })
        })
        .collect()
}

impl<'a> JsonGoroutine<'a> {
    pub fn of(dump: &GoroutineDump, g: &'a DumpedGoroutine) -> Self {
        let (origin, end, no_stack) = match &g.stack {
            Ok(s) => (Some(s.origin), Some(s.end), None),
            Err(why) => (None, None, Some(*why)),
        };
        Self {
            goid: g.goid,
            status: g.status.name(),
            wait_reason: g.wait_reason.as_deref(),
            waiting_s: g.waiting.map(|d| d.as_secs_f64()),
            thread: g.thread,
            system: g.system,
            parent_goid: g.parent_goid,
            created_by: creation_frame(dump, g.gopc),
            start_function: (g.startpc != 0)
                .then(|| {
                    dump.location(start_key(g.startpc))
                        .lines
                        .last()
                        .map(|l| l.function.clone())
                })
                .flatten(),
            stack_origin: origin,
            stack_end: end,
            no_stack,
            partial: g.partial,
            labels: &g.labels,
            frames: frames_of(dump, g.pcs()),
        }
    }
}

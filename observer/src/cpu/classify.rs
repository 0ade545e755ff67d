//! Which part of the Go runtime (or the application) a CPU sample belongs
//! to, judged by the runtime activity on its whole stack rather than by
//! its leaf: the same helper (`runtime.pcvalue`, `runtime.memmove`) works
//! for stack growth under `runtime.newstack`, for GC stack scanning under
//! the mark workers and for the application, so a leaf says little. The
//! classes are a closed set; `classify` tries pattern lists in order,
//! first match wins, and what no rule claims is "other runtime" (leaf in
//! the runtime: the catch-all, at most 3% on the test workloads) or the
//! application.
//!
//! Samples taken in the kernel are split by how the thread entered it:
//! a user pc right after a `SYSCALL` instruction is a system call (charged
//! to the runtime activity that made it: the scheduler's futex sleeps and
//! sched_yield, the scavenger's madvise); any other pc entered by a fault
//! or an interrupt. Measured with kernel stacks (bpftrace) on the alloc
//! and sites-pair workloads, those are page faults on freshly mapped heap
//! (`do_anonymous_page`, page clearing: 24% of alloc's samples) and a few
//! interrupts (reschedule IPIs, 2%), so the class is "kernel: page
//! faults and IRQs".

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CpuClass {
    GcBackground,
    GcAssist,
    /// Sweeping outside allocation, write barriers, stop-the-world and
    /// the rest of the GC's own work outside marking.
    GcOther,
    /// Returning memory to the OS (the background scavenger).
    Scavenger,
    Allocation,
    /// Growing goroutine stacks: `runtime.newstack` on the stack.
    StackGrowth,
    /// Creating and destroying goroutines (newproc, goexit0, gfget...).
    Goroutines,
    Scheduler,
    /// Channels, select, the runtime's locks and semaphores.
    Sync,
    /// Map operations and hashing.
    Maps,
    Syscall,
    /// Kernel time not in a system call: page faults.
    PageFaults,
    Cgo,
    /// The catch-all: a runtime leaf no rule claims.
    RuntimeOther,
    Application,
}

impl CpuClass {
    pub const ALL: [CpuClass; 15] = [
        CpuClass::GcBackground,
        CpuClass::GcAssist,
        CpuClass::GcOther,
        CpuClass::Scavenger,
        CpuClass::Allocation,
        CpuClass::StackGrowth,
        CpuClass::Goroutines,
        CpuClass::Scheduler,
        CpuClass::Sync,
        CpuClass::Maps,
        CpuClass::Syscall,
        CpuClass::PageFaults,
        CpuClass::Cgo,
        CpuClass::RuntimeOther,
        CpuClass::Application,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CpuClass::GcBackground => "GC marking (background)",
            CpuClass::GcAssist => "GC mark assist",
            CpuClass::GcOther => "GC sweep/barriers/STW",
            CpuClass::Scavenger => "scavenger (memory to the OS)",
            CpuClass::Allocation => "allocation",
            CpuClass::StackGrowth => "stack growth",
            CpuClass::Goroutines => "goroutine create/exit",
            CpuClass::Scheduler => "scheduler",
            CpuClass::Sync => "channels and locks",
            CpuClass::Maps => "maps and hashing",
            CpuClass::Syscall => "syscalls",
            CpuClass::PageFaults => "kernel: page faults and IRQs",
            CpuClass::Cgo => "cgo",
            CpuClass::RuntimeOther => "other runtime",
            CpuClass::Application => "application",
        }
    }

    /// Counted in the runtime's share of the CPU (the application's own
    /// code, its system calls and its C are not, nor kernel time taken by
    /// faults: who touched the page first is not known from the stack's
    /// class alone).
    pub fn is_runtime(self) -> bool {
        !matches!(
            self,
            CpuClass::Application | CpuClass::Cgo | CpuClass::Syscall | CpuClass::PageFaults
        )
    }

    /// A class that names no activity (what no rule claimed).
    pub fn is_catch_all(self) -> bool {
        self == CpuClass::RuntimeOther
    }
}

/// Where the sampled thread was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    User,
    /// In the kernel, in a system call.
    Syscall,
    /// In the kernel, entered by a fault or an interrupt.
    Fault,
}

impl Mode {
    /// From the sampler's kernel flag and whether the user pc follows a
    /// `SYSCALL` (`None`: unknown, outside the binary: a system call, as
    /// a C library or the vDSO would make).
    pub fn of(in_kernel: bool, follows_syscall: Option<bool>) -> Self {
        match (in_kernel, follows_syscall) {
            (false, _) => Mode::User,
            (true, Some(false)) => Mode::Fault,
            (true, _) => Mode::Syscall,
        }
    }
}

/// How a rule recognises a frame.
#[derive(Clone, Copy)]
enum Pattern {
    Exact(&'static str),
    Prefix(&'static str),
    Contains(&'static str),
}

impl Pattern {
    fn matches(self, frame: &str) -> bool {
        match self {
            Pattern::Exact(p) => frame == p,
            Pattern::Prefix(p) => frame.starts_with(p),
            Pattern::Contains(p) => frame.contains(p),
        }
    }
}

use Pattern::{Contains, Exact, Prefix};

const GC_ASSIST: &[Pattern] = &[Prefix("runtime.gcAssistAlloc")];
const GC_BACKGROUND: &[Pattern] = &[Prefix("runtime.gcBgMarkWorker")];
const CGO: &[Pattern] = &[
    Exact("runtime.cgocall"),
    Prefix("runtime.asmcgocall"),
    Contains("._Cfunc_"),
];
/// Stack growth is only stack growth with `runtime.newstack` on the stack
/// (or the leaf in `morestack` on its way there): GC stack scanning and
/// shrinking use the same copystack/pcvalue helpers.
const STACK_GROWTH: &[Pattern] = &[Exact("runtime.newstack"), Prefix("runtime.morestack")];
/// What else brings a goroutine into newstack: a preemption request
/// (stackguard0 set to stackPreempt, so the next function prologue calls
/// morestack) parks or reschedules it, and a pending shrink shrinks its
/// stack for the GC. Neither is growth (measured on the mixed workload:
/// `goschedImpl` under `newstack` was most of the "stack growth" of
/// programs that grow no stacks).
const NOT_GROWTH_UNDER_NEWSTACK: &[Pattern] = &[
    Exact("runtime.gopreempt_m"),
    Exact("runtime.goschedImpl"),
    Exact("runtime.gosched_m"),
    Exact("runtime.preemptPark"),
    Exact("runtime.shrinkstack"),
];
/// The scavenger returning memory to the OS (its own madvise calls
/// included): runtime/metrics' /cpu/classes/scavenge.
const SCAVENGER: &[Pattern] = &[
    Exact("runtime.bgscavenge"),
    Prefix("runtime.(*scavengerState)"),
    Prefix("runtime.(*pageAlloc).scavenge"),
    Prefix("runtime.sysUnused"),
];
const SYSCALL_FRAMES: &[Pattern] = &[
    Prefix("runtime.entersyscall"),
    Prefix("runtime.exitsyscall"),
    Prefix("syscall."),
    Prefix("internal/runtime/syscall."),
    Prefix("runtime/internal/syscall."),
];
const ALLOCATION: &[Pattern] = &[
    Prefix("runtime.mallocgc"),
    Exact("runtime.newobject"),
    Exact("runtime.newarray"),
    Exact("runtime.makeslice"),
    Exact("runtime.makeslicecopy"),
    Exact("runtime.growslice"),
    Exact("runtime.rawstring"),
    Exact("runtime.rawbyteslice"),
    Exact("runtime.rawruneslice"),
    Prefix("runtime.(*mcache)"),
    Prefix("runtime.(*mcentral)"),
    Prefix("runtime.(*mheap)"),
    Prefix("runtime.(*pageAlloc)"),
    Exact("runtime.largeAlloc"),
];
const GC_OTHER: &[Pattern] = &[
    Exact("runtime.bgsweep"),
    Exact("runtime.sweepone"),
    Prefix("runtime.(*sweepLocked)"),
    Prefix("runtime.(*mspan).sweep"),
    Exact("runtime.shrinkstack"),
    Prefix("runtime.gcStart"),
    Prefix("runtime.gcMarkDone"),
    Prefix("runtime.gcMarkTermination"),
    Prefix("runtime.gcSweep"),
    Prefix("runtime.gcDrain"),
    Prefix("runtime.gcResetMarkState"),
    Prefix("runtime.markroot"),
    Prefix("runtime.stopTheWorld"),
    Prefix("runtime.startTheWorld"),
    Prefix("runtime.forEachP"),
    Prefix("runtime.wbBuf"),
    // Write barriers only: typedmemmove and friends are copies that run a
    // barrier only while the GC marks (bulkBarrierPreWrite).
    Prefix("runtime.bulkBarrier"),
    Prefix("runtime.gcWriteBarrier"),
    Prefix("gcWriteBarrier"),
    Exact("runtime.GC"),
    Exact("runtime.runfinq"),
    Exact("runtime.freeSomeWbufs"),
];
const GOROUTINES: &[Pattern] = &[
    Exact("runtime.newproc"),
    Exact("runtime.newproc1"),
    Exact("runtime.goexit0"),
    Exact("runtime.goexit1"),
    Exact("runtime.gdestroy"),
    Exact("runtime.gfget"),
    Exact("runtime.gfput"),
    Exact("runtime.malg"),
];
const SCHEDULER: &[Pattern] = &[
    Exact("runtime.schedule"),
    Exact("runtime.findRunnable"),
    Exact("runtime.findrunnable"),
    Exact("runtime.park_m"),
    Exact("runtime.gosched_m"),
    Exact("runtime.goschedImpl"),
    Exact("runtime.gopreempt_m"),
    Exact("runtime.preemptPark"),
    Exact("runtime.mcall"),
    Exact("runtime.execute"),
    Exact("runtime.ready"),
    Exact("runtime.gopark"),
    Exact("runtime.goready"),
    Exact("runtime.mstart"),
    Exact("runtime.mstart0"),
    Exact("runtime.mstart1"),
    Exact("runtime.stopm"),
    Exact("runtime.startm"),
    Exact("runtime.wakep"),
    Exact("runtime.sysmon"),
    Exact("runtime.handoffp"),
    Exact("runtime.retake"),
    Exact("runtime.preemptone"),
    Exact("runtime.asyncPreempt"),
    Exact("runtime.asyncPreempt2"),
    Exact("runtime.sighandler"),
    Exact("runtime.sigtramp"),
    Exact("runtime.sigtrampgo"),
    Exact("runtime.netpoll"),
    Exact("runtime.Gosched"),
];
const SYNC: &[Pattern] = &[
    Prefix("runtime.chansend"),
    Prefix("runtime.chanrecv"),
    Exact("runtime.closechan"),
    Exact("runtime.selectgo"),
    Exact("runtime.selectnbsend"),
    Exact("runtime.selectnbrecv"),
    Prefix("runtime.semacquire"),
    Prefix("runtime.semrelease"),
    Prefix("runtime.sync_runtime_"),
    Prefix("sync.runtime_"),
    Prefix("internal/sync.runtime_"),
    Exact("runtime.lock2"),
    Exact("runtime.unlock2"),
    Exact("runtime.lockWithRank"),
    Exact("runtime.unlockWithRank"),
    Prefix("runtime.notewakeup"),
    Prefix("runtime.notesleep"),
];
const MAPS: &[Pattern] = &[
    Prefix("runtime.map"),
    Prefix("runtime.makemap"),
    Prefix("runtime.(*hmap)"),
    Prefix("runtime.(*bmap)"),
    Prefix("runtime.hashGrow"),
    Prefix("runtime.growWork"),
    Prefix("runtime.evacuate"),
    Prefix("internal/runtime/maps."),
    Prefix("runtime.memhash"),
    Prefix("runtime.strhash"),
    Prefix("runtime.aeshash"),
    Prefix("runtime.efaceHash"),
    Prefix("runtime.nilinterhash"),
    Prefix("runtime.interhash"),
    Prefix("runtime.typehash"),
    Prefix("runtime.f32hash"),
    Prefix("runtime.f64hash"),
    Prefix("runtime.c64hash"),
    Prefix("runtime.c128hash"),
];

fn is_runtime_function(name: &str) -> bool {
    name.starts_with("runtime.")
        || name.starts_with("internal/runtime/")
        || name.starts_with("gcWriteBarrier")
}

fn any(frames: &[Option<&str>], patterns: &[Pattern]) -> bool {
    frames
        .iter()
        .flatten()
        .any(|f| patterns.iter().any(|p| p.matches(f)))
}

/// Classifies a stack given leaf first. `None` frames are unsymbolized
/// (C code, or outside the binary).
pub fn classify(frames: &[Option<&str>], mode: Mode) -> CpuClass {
    let on = |patterns| any(frames, patterns);
    if on(GC_ASSIST) {
        return CpuClass::GcAssist;
    }
    if on(GC_BACKGROUND) {
        return CpuClass::GcBackground;
    }
    if on(CGO) {
        return CpuClass::Cgo;
    }
    if on(STACK_GROWTH) && !on(NOT_GROWTH_UNDER_NEWSTACK) {
        return CpuClass::StackGrowth;
    }
    match mode {
        Mode::Fault => return CpuClass::PageFaults,
        // The runtime's own system calls are its activity's.
        Mode::Syscall if on(SCHEDULER) => return CpuClass::Scheduler,
        Mode::Syscall if on(SCAVENGER) => return CpuClass::Scavenger,
        Mode::Syscall => return CpuClass::Syscall,
        Mode::User => {}
    }
    if on(SYSCALL_FRAMES) && !on(SCHEDULER) {
        return CpuClass::Syscall;
    }
    let rules: [(&[Pattern], CpuClass); 7] = [
        // Before allocation: the allocator scavenges too, when the heap is
        // at the memory limit (runtime/metrics' scavenge assist).
        (SCAVENGER, CpuClass::Scavenger),
        (ALLOCATION, CpuClass::Allocation),
        (GC_OTHER, CpuClass::GcOther),
        (GOROUTINES, CpuClass::Goroutines),
        (SCHEDULER, CpuClass::Scheduler),
        (SYNC, CpuClass::Sync),
        (MAPS, CpuClass::Maps),
    ];
    if let Some((_, class)) = rules.iter().find(|(patterns, _)| on(patterns)) {
        return *class;
    }
    match frames.iter().flatten().next() {
        Some(f) if is_runtime_function(f) => CpuClass::RuntimeOther,
        _ => CpuClass::Application,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(frames: &[&str]) -> CpuClass {
        at(frames, Mode::User)
    }

    fn at(frames: &[&str], mode: Mode) -> CpuClass {
        classify(&frames.iter().map(|s| Some(*s)).collect::<Vec<_>>(), mode)
    }

    #[test]
    fn classes_by_stack() {
        assert_eq!(
            c(&[
                "runtime.scanobject",
                "runtime.gcDrain",
                "runtime.gcBgMarkWorker"
            ]),
            CpuClass::GcBackground
        );
        assert_eq!(
            c(&[
                "runtime.scanobject",
                "runtime.gcAssistAlloc1",
                "runtime.gcAssistAlloc",
                "runtime.mallocgc"
            ]),
            CpuClass::GcAssist
        );
        assert_eq!(
            c(&["runtime.nextFreeFast", "runtime.mallocgc", "main.work"]),
            CpuClass::Allocation
        );
        assert_eq!(
            c(&["runtime.findRunnable", "runtime.schedule"]),
            CpuClass::Scheduler
        );
        assert_eq!(c(&["main.work", "main.main"]), CpuClass::Application);
        assert_eq!(c(&["runtime.memmove", "main.work"]), CpuClass::RuntimeOther);
        assert_eq!(c(&["runtime.cgocall", "main._Cfunc_cadd"]), CpuClass::Cgo);
        assert_eq!(
            c(&["runtime.mapassign_faststr", "main.handle"]),
            CpuClass::Maps
        );
        assert_eq!(
            c(&["internal/runtime/maps.(*Map).getWithKey", "main.handle"]),
            CpuClass::Maps
        );
        assert_eq!(
            c(&["runtime.lock2", "runtime.chansend", "main.produce"]),
            CpuClass::Sync
        );
        assert_eq!(
            c(&["runtime.gfget", "runtime.newproc1", "runtime.newproc"]),
            CpuClass::Goroutines
        );
        assert_eq!(
            c(&["runtime.wbBufFlush1", "runtime.wbBufFlush", "main.link"]),
            CpuClass::GcOther
        );
    }

    #[test]
    fn stack_growth_needs_newstack_on_the_stack() {
        // Growth: copystack's helpers under newstack.
        assert_eq!(
            c(&[
                "runtime.pcvalue",
                "runtime.(*stkframe).getStackMap",
                "runtime.adjustframe",
                "runtime.copystack",
                "runtime.newstack",
                "runtime.morestack",
                "main.recurse",
            ]),
            CpuClass::StackGrowth
        );
        assert_eq!(
            c(&["runtime.morestack", "main.recurse"]),
            CpuClass::StackGrowth
        );
        // The same helpers scanning a stack for the GC are GC marking.
        assert_eq!(
            c(&[
                "runtime.pcvalue",
                "runtime.(*stkframe).getStackMap",
                "runtime.scanframeworker",
                "runtime.scanstack",
                "runtime.markroot",
                "runtime.gcDrain",
                "runtime.gcBgMarkWorker",
            ]),
            CpuClass::GcBackground
        );
        // Shrinking a stack at a GC is not growth.
        assert_eq!(
            c(&[
                "runtime.adjustframe",
                "runtime.copystack",
                "runtime.shrinkstack",
                "runtime.scanstack",
                "runtime.markroot",
                "runtime.gcDrain",
                "runtime.gcMarkDone",
            ]),
            CpuClass::GcOther
        );
        // A preemption request enters newstack too: scheduler, not growth.
        assert_eq!(
            at(
                &[
                    "runtime.osyield",
                    "runtime.lock2",
                    "runtime.goschedImpl",
                    "runtime.newstack",
                    "runtime.morestack",
                ],
                Mode::Syscall
            ),
            CpuClass::Scheduler
        );
        assert_eq!(
            c(&[
                "runtime.casgstatus",
                "runtime.gopreempt_m",
                "runtime.newstack",
                "runtime.morestack",
                "main.loop",
            ]),
            CpuClass::Scheduler
        );
        // Without an ancestor: the catch-all, not growth.
        assert_eq!(
            c(&["runtime.pcvalue", "runtime.adjustframe"]),
            CpuClass::RuntimeOther
        );
    }

    #[test]
    fn kernel_time_by_how_the_kernel_was_entered() {
        let alloc = [
            "runtime.memclrNoHeapPointers",
            "runtime.mallocgc",
            "main.work",
        ];
        assert_eq!(at(&alloc, Mode::Fault), CpuClass::PageFaults);
        let madvise = [
            "runtime.madvise",
            "runtime.sysUnusedOS",
            "runtime.(*pageAlloc).scavengeOne",
            "runtime.bgscavenge",
        ];
        assert_eq!(at(&madvise, Mode::Syscall), CpuClass::Scavenger);
        assert_eq!(at(&madvise[2..], Mode::User), CpuClass::Scavenger);
        let read = [
            "internal/runtime/syscall.Syscall6",
            "syscall.read",
            "main.serve",
        ];
        assert_eq!(at(&read, Mode::Syscall), CpuClass::Syscall);
        assert_eq!(at(&read, Mode::User), CpuClass::Syscall);
        let futex = [
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.notesleep",
            "runtime.stopm",
            "runtime.findRunnable",
            "runtime.schedule",
        ];
        assert_eq!(at(&futex, Mode::Syscall), CpuClass::Scheduler);
        assert_eq!(Mode::of(false, Some(true)), Mode::User);
        assert_eq!(Mode::of(true, Some(true)), Mode::Syscall);
        assert_eq!(Mode::of(true, Some(false)), Mode::Fault);
        assert_eq!(Mode::of(true, None), Mode::Syscall);
    }
}

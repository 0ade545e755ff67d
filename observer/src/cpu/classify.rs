//! Which part of the Go runtime (or the application) a CPU sample belongs
//! to, judged from its stack: GC marking (background, assist), allocation,
//! scheduler, syscalls, cgo, other runtime, application.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CpuClass {
    GcBackground,
    GcAssist,
    Allocation,
    Scheduler,
    Syscall,
    Cgo,
    RuntimeOther,
    Application,
}

impl CpuClass {
    pub const ALL: [CpuClass; 8] = [
        CpuClass::GcBackground,
        CpuClass::GcAssist,
        CpuClass::Allocation,
        CpuClass::Scheduler,
        CpuClass::Syscall,
        CpuClass::Cgo,
        CpuClass::RuntimeOther,
        CpuClass::Application,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CpuClass::GcBackground => "GC marking (background)",
            CpuClass::GcAssist => "GC mark assist",
            CpuClass::Allocation => "allocation",
            CpuClass::Scheduler => "scheduler",
            CpuClass::Syscall => "syscalls",
            CpuClass::Cgo => "cgo",
            CpuClass::RuntimeOther => "other runtime",
            CpuClass::Application => "application",
        }
    }

    pub fn is_runtime(self) -> bool {
        !matches!(
            self,
            CpuClass::Application | CpuClass::Cgo | CpuClass::Syscall
        )
    }
}

fn is_runtime_function(name: &str) -> bool {
    name.starts_with("runtime.")
        || name.starts_with("internal/runtime/")
        || name.starts_with("gcWriteBarrier")
}

/// Classifies a stack given leaf first. `None` frames are unsymbolized
/// (C code, or outside the binary).
pub fn classify(frames: &[Option<&str>], in_kernel: bool) -> CpuClass {
    let any = |pred: &dyn Fn(&str) -> bool| frames.iter().flatten().any(|f| pred(f));
    if any(&|f| f.starts_with("runtime.gcAssistAlloc")) {
        return CpuClass::GcAssist;
    }
    if any(&|f| f.starts_with("runtime.gcBgMarkWorker")) {
        return CpuClass::GcBackground;
    }
    if any(&|f| {
        f == "runtime.cgocall" || f.starts_with("runtime.asmcgocall") || f.contains("._Cfunc_")
    }) {
        return CpuClass::Cgo;
    }
    let leaf_go = frames.iter().flatten().next().copied();
    if (in_kernel
        || any(&|f| {
            f.starts_with("runtime.entersyscall")
                || f.starts_with("syscall.")
                || f.starts_with("internal/runtime/syscall.")
        }))
        && !any(&|f| {
            matches!(
                f,
                "runtime.mcall" | "runtime.park_m" | "runtime.schedule" | "runtime.findRunnable"
            )
        })
    {
        return CpuClass::Syscall;
    }
    if any(&|f| {
        f.starts_with("runtime.mallocgc")
            || f == "runtime.newobject"
            || f == "runtime.makeslice"
            || f == "runtime.growslice"
            || f.starts_with("runtime.(*mcache)")
            || f.starts_with("runtime.(*mcentral)")
            || f.starts_with("runtime.(*mheap)")
    }) {
        return CpuClass::Allocation;
    }
    if any(&|f| {
        matches!(
            f,
            "runtime.schedule"
                | "runtime.findRunnable"
                | "runtime.park_m"
                | "runtime.gosched_m"
                | "runtime.goexit0"
                | "runtime.mcall"
                | "runtime.execute"
                | "runtime.newproc"
                | "runtime.newproc1"
                | "runtime.ready"
                | "runtime.gopark"
                | "runtime.goready"
                | "runtime.mstart"
                | "runtime.stopm"
                | "runtime.startm"
                | "runtime.wakep"
                | "runtime.sysmon"
        )
    }) {
        return CpuClass::Scheduler;
    }
    match leaf_go {
        Some(f) if is_runtime_function(f) => CpuClass::RuntimeOther,
        _ => CpuClass::Application,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_stack() {
        let c = |f: &[&str]| classify(&f.iter().map(|s| Some(*s)).collect::<Vec<_>>(), false);
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
    }
}

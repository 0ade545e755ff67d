//! The process filter shared by every program: only the target's threads
//! are recorded. The target is named in its own PID namespace (the
//! namespace's nsfs device and inode, and the target's tgid there, set by
//! userspace before load), and the current task is matched with
//! bpf_get_ns_current_pid_tgid, so the filter holds whichever namespace
//! goscope and the target run in: the tgid bpf_get_current_pid_tgid gives
//! is the initial namespace's, which goscope does not see from inside a
//! container or `unshare --pid`.

use aya_ebpf::{
    bindings::bpf_pidns_info,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_ns_current_pid_tgid},
};

/// The target's tgid in its own PID namespace.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;
/// The target's PID namespace: nsfs device (kernel dev_t encoding) and
/// inode of /proc/PID/ns/pid.
#[unsafe(no_mangle)]
static TARGET_PIDNS_DEV: u64 = 0;
#[unsafe(no_mangle)]
static TARGET_PIDNS_INO: u64 = 0;

fn global<T: Copy>(value: &T) -> T {
    // SAFETY: volatile read of a constant patched by the loader.
    unsafe { core::ptr::read_volatile(value) }
}

/// True when the current task belongs to the target process.
pub fn is_target() -> bool {
    let mut info = bpf_pidns_info { pid: 0, tgid: 0 };
    // SAFETY: `info` is a stack buffer of the size passed; the helper
    // zeroes it and fails unless the current task's active PID namespace
    // is the one named.
    let found = unsafe {
        bpf_get_ns_current_pid_tgid(
            global(&TARGET_PIDNS_DEV),
            global(&TARGET_PIDNS_INO),
            &mut info,
            core::mem::size_of::<bpf_pidns_info>() as u32,
        )
    };
    found == 0 && info.tgid == global(&TARGET_TGID)
}

/// The current thread's id in the initial PID namespace (the ids scheduler
/// tracepoints report) when it belongs to the target.
pub fn current_target_thread() -> Option<u32> {
    if is_target() {
        Some(bpf_get_current_pid_tgid() as u32)
    } else {
        None
    }
}

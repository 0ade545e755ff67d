//! The process filter shared by every program: only the target's threads
//! (kernel tgid, set by userspace before load) are recorded.

#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

pub fn is_target(pid_tgid: u64) -> bool {
    // SAFETY: volatile read of a constant patched by the loader.
    let target = unsafe { core::ptr::read_volatile(&TARGET_TGID) };
    (pid_tgid >> 32) as u32 == target
}

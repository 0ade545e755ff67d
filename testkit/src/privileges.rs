//! Deciding whether a privileged test runs: as root it always runs; without
//! root it skips with a printed reason, except under CI (GOSCOPE_CI=1),
//! where a skip would hide a failure and is an error instead.

/// Returns true when the test may run. Prints why when it may not.
pub fn require_root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("GOSCOPE_CI").is_some() {
        panic!("{test}: needs root and eBPF, and GOSCOPE_CI is set: CI must run it as root");
    }
    eprintln!("SKIP {test}: needs root (uprobes, eBPF); run the README's test command as root");
    false
}

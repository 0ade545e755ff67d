//! Detaching probe sets off a command's tick loop: a uprobe or tracepoint
//! detach waits for the kernel, hundreds of ms on a loaded host.

use super::{AttachedLink, ProbeSession};

/// Detaches probe sets off the tick loop: a uprobe or tracepoint detach
/// waits for the kernel (hundreds of ms on a loaded host), during which
/// the timeline would stall. The window's end waits for them, so no probe
/// outlives goscope's own exit path (and the kernel closes whatever is
/// left if goscope is killed).
#[derive(Default)]
pub struct Detacher {
    pending: Vec<std::thread::JoinHandle<()>>,
}

impl Detacher {
    pub fn retire(&mut self, mut session: ProbeSession, links: Vec<AttachedLink>) {
        self.pending.push(std::thread::spawn(move || {
            if let Err(e) = session.detach_all(links) {
                eprintln!("goscope: detaching probes: {e:#}");
            }
            drop(session);
        }));
    }

    /// Waits for every detach to complete.
    pub fn finish(mut self) {
        self.join_all();
    }

    fn join_all(&mut self) {
        for handle in self.pending.drain(..) {
            let _ = handle.join();
        }
    }
}

/// An early return (an error) still waits: a process that exits while a
/// detach runs has that thread killed mid-unregister, which the kernel
/// can fail ("leaking uprobe" in dmesg).
impl Drop for Detacher {
    fn drop(&mut self) {
        self.join_all();
    }
}

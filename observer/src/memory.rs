//! Reading the target's memory from outside: the `TargetMemory` trait, its
//! live implementation over process_vm_readv (nothing is written, the target
//! is not stopped) and an in-memory one for tests.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemoryError {
    #[error("reading {len} bytes at {address:#x} in pid {pid}: {reason}")]
    Read {
        pid: u32,
        address: u64,
        len: usize,
        reason: String,
    },
    #[error("process {pid} is gone (exited or exec'd another program)")]
    Gone { pid: u32 },
    #[error(
        "refusing to read {len} bytes at {address:#x}: over the {limit}-byte limit of one read (a length from the target or its binary is implausible)"
    )]
    TooLarge {
        address: u64,
        len: usize,
        limit: usize,
    },
}

/// Largest buffer one `read_vec` allocates. Lengths come from the target's
/// DWARF or memory; the runtime structures goscope reads are kilobytes, and
/// the largest tables (allp, allgs, a profile bucket) stay far below this.
pub const MAX_READ_BYTES: usize = 64 << 20;

/// Read-only access to a Go process's address space.
pub trait TargetMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    fn read_u64(&self, address: u64) -> Result<u64, MemoryError> {
        let mut b = [0; 8];
        self.read(address, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_u32(&self, address: u64) -> Result<u32, MemoryError> {
        let mut b = [0; 4];
        self.read(address, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads `len` bytes into a new buffer; a `len` over `MAX_READ_BYTES`
    /// is refused before anything is allocated.
    fn read_vec(&self, address: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        if len > MAX_READ_BYTES {
            return Err(MemoryError::TooLarge {
                address,
                len,
                limit: MAX_READ_BYTES,
            });
        }
        let mut buf = vec![0; len];
        self.read(address, &mut buf)?;
        Ok(buf)
    }
}

/// A live process: read through its /proc/PID/mem opened when it was
/// pinned (reads fail once it exec'd: the file belongs to the old address
/// space), or with process_vm_readv by PID when nothing was pinned.
pub struct ProcessMemory {
    pid: u32,
    pinned: Option<std::sync::Arc<std::fs::File>>,
}

impl ProcessMemory {
    /// Reads by PID, whatever program the PID runs now (tests, own process).
    pub fn new(pid: u32) -> Self {
        Self { pid, pinned: None }
    }

    /// Reads through `mem`, a /proc/PID/mem file opened on the process.
    pub fn pinned(pid: u32, mem: std::sync::Arc<std::fs::File>) -> Self {
        Self {
            pid,
            pinned: Some(mem),
        }
    }

    fn read_pinned(
        &self,
        mem: &std::fs::File,
        address: u64,
        buf: &mut [u8],
    ) -> Result<(), MemoryError> {
        use std::os::unix::fs::FileExt as _;
        let mut done = 0;
        while done < buf.len() {
            let at = address.checked_add(done as u64).ok_or(MemoryError::Read {
                pid: self.pid,
                address,
                len: buf.len(),
                reason: "address range wraps".into(),
            })?;
            match mem.read_at(&mut buf[done..], at) {
                // The address space the file was opened on is gone.
                Ok(0) => return Err(MemoryError::Gone { pid: self.pid }),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(MemoryError::Read {
                        pid: self.pid,
                        address,
                        len: buf.len(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl TargetMemory for ProcessMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(mem) = &self.pinned {
            return self.read_pinned(mem, address, buf);
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let pid =
            libc::pid_t::try_from(self.pid).map_err(|_| MemoryError::Gone { pid: self.pid })?;
        // SAFETY: `local` describes `buf`, which we own exclusively; the
        // remote side is only read by the kernel.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Err(MemoryError::Gone { pid: self.pid });
            }
            return Err(MemoryError::Read {
                pid: self.pid,
                address,
                len: buf.len(),
                reason: err.to_string(),
            });
        }
        if n as usize != buf.len() {
            return Err(MemoryError::Read {
                pid: self.pid,
                address,
                len: buf.len(),
                reason: format!("short read of {n} bytes"),
            });
        }
        Ok(())
    }
}

/// Recorded memory regions (for tests without a live process).
#[derive(Default)]
pub struct SnapshotMemory {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl SnapshotMemory {
    pub fn insert(&mut self, address: u64, bytes: Vec<u8>) {
        self.regions.insert(address, bytes);
    }
}

impl TargetMemory for SnapshotMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let missing = || MemoryError::Read {
            pid: 0,
            address,
            len: buf.len(),
            reason: "not in snapshot".into(),
        };
        let (start, bytes) = self
            .regions
            .range(..=address)
            .next_back()
            .ok_or_else(missing)?;
        let offset = usize::try_from(address - start).map_err(|_| missing())?;
        let end = offset.checked_add(buf.len()).ok_or_else(missing)?;
        let src = bytes.get(offset..end).ok_or_else(missing)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let value: u64 = 0x1122_3344_5566_7788;
        let memory = ProcessMemory::new(std::process::id());
        assert_eq!(memory.read_u64(&raw const value as u64).unwrap(), value);
        let err = memory.read_u64(8).unwrap_err();
        assert!(err.to_string().contains("at 0x8"), "{err}");
    }

    #[test]
    fn snapshot_reads_inside_regions_only() {
        let mut memory = SnapshotMemory::default();
        memory.insert(0x1000, vec![1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(memory.read_u32(0x1004).unwrap(), 2);
        assert!(memory.read_u64(0x1004).is_err());
        assert!(memory.read_u32(0x10).is_err());
    }

    #[test]
    fn read_vec_refuses_implausible_lengths_before_allocating() {
        let memory = SnapshotMemory::default();
        let len = 1usize << 40;
        let err = memory.read_vec(0x1000, len).unwrap_err();
        assert_eq!(
            err,
            MemoryError::TooLarge {
                address: 0x1000,
                len,
                limit: MAX_READ_BYTES
            }
        );
        assert!(err.to_string().contains(&len.to_string()), "{err}");
        // An offset near the end of the address space does not wrap.
        let mut memory = SnapshotMemory::default();
        memory.insert(0, vec![0; 4]);
        assert!(memory.read_u64(u64::MAX - 2).is_err());
    }
}

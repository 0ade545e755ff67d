//! Repairs the one frame a frame-pointer walk misses. The kernel walks a
//! sampled user stack through RBP; when the sample lands in a function
//! that has not set up its frame (its first instructions, or a frameless
//! leaf such as an assembly helper), RBP is still the caller's frame, so
//! the walk goes from the leaf straight to the caller's caller and the
//! caller is lost. An allocation sampled at runtime.mallocgc's entry is
//! then charged to the function above the allocating one, and one whose
//! leaf is a frameless helper loses mallocgc and looks like "other
//! runtime". Go calls functions with `CALL rel32`, so the instruction
//! before the walk's first return address names the function that
//! return address's frame called: when that is not the leaf's function,
//! it is the missing frame. Only a direct call to a function's exact
//! entry counts (indirect calls cannot be recovered and are left alone).

use crate::binary::GoBinary;

/// `CALL rel32` is 5 bytes: E8 and a 32-bit displacement.
const CALL_REL32: u8 = 0xe8;
const CALL_LEN: u64 = 5;
/// `SYSCALL` (0F 05): a thread in a system call has its user pc right
/// after it.
const SYSCALL: [u8; 2] = [0x0f, 0x05];

/// The binary's code, for decoding the call before a return address.
#[derive(Default)]
pub struct CallTargets {
    /// Link-time address of `text[0]`.
    start: u64,
    text: Vec<u8>,
    /// Function entries (link time), sorted.
    entries: Vec<u64>,
    bias: u64,
}

impl CallTargets {
    /// The code of every function `binary` lists (empty when the binary's
    /// bytes were dropped: nothing is repaired then).
    pub fn new(binary: &GoBinary, bias: u64) -> Self {
        let mut entries: Vec<u64> = binary.functions.iter().map(|f| f.address).collect();
        entries.sort_unstable();
        entries.dedup();
        let start = entries.first().copied().unwrap_or(0);
        let end = binary
            .functions
            .iter()
            .map(|f| f.address + f.size)
            .max()
            .unwrap_or(0);
        let text = binary
            .bytes_at(start, end.saturating_sub(start))
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        Self {
            start,
            text,
            entries,
            bias,
        }
    }

    /// Over explicit code (tests): `text` at run-time address `start`.
    pub fn from_parts(start: u64, text: Vec<u8>, mut entries: Vec<u64>) -> Self {
        entries.sort_unstable();
        Self {
            start,
            text,
            entries,
            bias: 0,
        }
    }

    /// The run-time entry of the function the direct call ending at
    /// `return_address` called (`None`: not a `CALL rel32`, or not to a
    /// function's entry).
    pub fn called_from(&self, return_address: u64) -> Option<u64> {
        let link = return_address.checked_sub(self.bias)?;
        let at = usize::try_from(link.checked_sub(CALL_LEN)?.checked_sub(self.start)?).ok()?;
        let bytes = self.text.get(at..at + CALL_LEN as usize)?;
        if bytes[0] != CALL_REL32 {
            return None;
        }
        let rel = i32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let target = link.checked_add_signed(i64::from(rel))?;
        self.entries
            .binary_search(&target)
            .ok()
            .map(|_| target + self.bias)
    }

    /// Whether the instruction just before `pc` (run time) is `SYSCALL`:
    /// a sample taken in the kernel whose user pc is right after one is a
    /// system call; any other user pc entered the kernel by a fault or an
    /// interrupt (measured: page faults, see `cpu::classify`). `None`: `pc`
    /// is outside the binary's code (the vDSO, a C library).
    pub fn follows_syscall(&self, pc: u64) -> Option<bool> {
        let link = pc.checked_sub(self.bias)?;
        let at = usize::try_from(link.checked_sub(2)?.checked_sub(self.start)?).ok()?;
        let bytes = self.text.get(at..at + 2)?;
        Some(bytes == SYSCALL)
    }

    /// `stack` (leaf first, (pc, function)) with the caller the walk
    /// skipped put back: when the leaf's and the first return address's
    /// functions are known and that return address follows a direct call
    /// to a third function, that function is inserted after the leaf
    /// (with a pc one past its entry). `name(pc)` names a function.
    pub fn repair<'n>(
        &self,
        stack: &mut Vec<(u64, String)>,
        name: impl Fn(u64) -> Option<&'n str>,
    ) -> bool {
        let [(_, leaf), (return_address, caller), ..] = stack.as_slice() else {
            return false;
        };
        if leaf == "[unknown]" || caller == "[unknown]" {
            return false;
        }
        let Some(called) = self.called_from(*return_address) else {
            return false;
        };
        let Some(called_name) = name(called) else {
            return false;
        };
        if called_name == leaf {
            return false;
        }
        stack.insert(1, (called + 1, called_name.to_string()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code at 0x1000: `caller` (0x1000) calls `site` (0x1100) from
    /// 0x1010; `site` calls `malloc` (0x1200) from 0x1110.
    fn code() -> CallTargets {
        let mut text = vec![0x90u8; 0x300];
        let call = |text: &mut Vec<u8>, at: u64, target: u64| {
            let rel = (target as i64 - (at as i64 + 5)) as i32;
            let i = (at - 0x1000) as usize;
            text[i] = CALL_REL32;
            text[i + 1..i + 5].copy_from_slice(&rel.to_le_bytes());
        };
        call(&mut text, 0x1010, 0x1100);
        call(&mut text, 0x1110, 0x1200);
        // An indirect call (FF D0) whose return address is 0x1022.
        text[0x20] = 0xff;
        text[0x21] = 0xd0;
        // A SYSCALL at 0x1250: a thread in it has its pc at 0x1252.
        text[0x250] = SYSCALL[0];
        text[0x251] = SYSCALL[1];
        CallTargets::from_parts(0x1000, text, vec![0x1000, 0x1100, 0x1200])
    }

    #[test]
    fn a_user_pc_right_after_syscall_is_a_system_call() {
        let code = code();
        assert_eq!(code.follows_syscall(0x1252), Some(true));
        assert_eq!(code.follows_syscall(0x1251), Some(false));
        assert_eq!(code.follows_syscall(0x1230), Some(false));
        assert_eq!(code.follows_syscall(0x1001), None);
        assert_eq!(code.follows_syscall(0x9000), None);
    }

    fn name(pc: u64) -> Option<&'static str> {
        match pc {
            0x1000..0x1100 => Some("main.caller"),
            0x1100..0x1200 => Some("main.site"),
            0x1200..0x1300 => Some("runtime.mallocgc"),
            _ => None,
        }
    }

    fn stack(frames: &[(u64, &str)]) -> Vec<(u64, String)> {
        frames.iter().map(|(pc, n)| (*pc, n.to_string())).collect()
    }

    #[test]
    fn the_caller_a_leaf_at_its_entry_skipped_is_put_back() {
        // Sampled at mallocgc's entry: the walk went to main.caller.
        let mut s = stack(&[(0x1200, "runtime.mallocgc"), (0x1015, "main.caller")]);
        assert!(code().repair(&mut s, name));
        assert_eq!(
            s,
            stack(&[
                (0x1200, "runtime.mallocgc"),
                (0x1101, "main.site"),
                (0x1015, "main.caller")
            ])
        );
    }

    #[test]
    fn a_complete_walk_is_left_alone() {
        let full = stack(&[
            (0x1230, "runtime.mallocgc"),
            (0x1115, "main.site"),
            (0x1015, "main.caller"),
        ]);
        let mut s = full.clone();
        assert!(!code().repair(&mut s, name));
        assert_eq!(s, full);
        // An indirect call, unknown frames, a return address outside the
        // code: nothing to decode.
        for frames in [
            [(0x1200, "runtime.mallocgc"), (0x1022, "main.caller")],
            [(0x1200, "[unknown]"), (0x1015, "main.caller")],
            [(0x1200, "runtime.mallocgc"), (0x9000, "main.caller")],
            [(0x1200, "runtime.mallocgc"), (0x1002, "main.caller")],
        ] {
            let mut s = stack(&frames);
            assert!(!code().repair(&mut s, name), "{frames:?}");
        }
    }
}

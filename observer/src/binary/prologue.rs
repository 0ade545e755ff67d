//! Finds where an entry probe may go in a Go function: the first instruction
//! after the stack-check prologue (`CMP SP|R12, 0x10(R14); JBE morestack`).
//! A probe on the entry itself fires again each time the function restarts
//! after growing its stack or being preempted there.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use serde::Serialize;
use thiserror::Error;

/// Offset of `g.stackguard0` in every Go version goscope supports.
const STACKGUARD0_OFFSET: u64 = 0x10;
/// The stack check is always among the first few instructions.
const PROLOGUE_SEARCH_INSTRUCTIONS: usize = 5;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// After the stack check's conditional jump.
    AfterPrologue,
    /// At the entry: the function has no stack check (NOSPLIT).
    Entry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSite {
    pub address: u64,
    pub placement: Placement,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PrologueError {
    #[error("instruction at {address:#x} could not be decoded")]
    Undecodable { address: u64 },
    #[error(
        "stack check at {address:#x} is not followed by a JBE into the function; refusing to guess a probe address"
    )]
    UnexpectedBranch { address: u64 },
}

/// Decodes `code` (the function's bytes, starting at `entry`) and returns
/// where an entry probe belongs.
pub fn probe_site(entry: u64, code: &[u8]) -> Result<ProbeSite, PrologueError> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let end = entry + code.len() as u64;
    let mut instruction = Instruction::default();
    for _ in 0..PROLOGUE_SEARCH_INSTRUCTIONS {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return Err(PrologueError::Undecodable {
                address: instruction.ip(),
            });
        }
        if !is_stack_guard_compare(&instruction) {
            continue;
        }
        let compare_at = instruction.ip();
        if !decoder.can_decode() {
            return Err(PrologueError::UnexpectedBranch {
                address: compare_at,
            });
        }
        decoder.decode_out(&mut instruction);
        let target = instruction.near_branch_target();
        let is_jbe = instruction.mnemonic() == Mnemonic::Jbe;
        if !is_jbe || !(entry..end).contains(&target) {
            return Err(PrologueError::UnexpectedBranch {
                address: compare_at,
            });
        }
        return Ok(ProbeSite {
            address: instruction.next_ip(),
            placement: Placement::AfterPrologue,
        });
    }
    Ok(ProbeSite {
        address: entry,
        placement: Placement::Entry,
    })
}

/// Addresses of every RET instruction in the function, in order.
pub fn return_sites(entry: u64, code: &[u8]) -> Result<Vec<u64>, PrologueError> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut returns = Vec::new();
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            // Go pads functions with INT3; anything else is unexpected.
            return Err(PrologueError::Undecodable {
                address: instruction.ip(),
            });
        }
        if instruction.mnemonic() == Mnemonic::Ret {
            returns.push(instruction.ip());
        }
    }
    Ok(returns)
}

/// `CMP reg, [R14+0x10]` (g.stackguard0), the heart of every Go prologue.
fn is_stack_guard_compare(instruction: &Instruction) -> bool {
    instruction.mnemonic() == Mnemonic::Cmp
        && (0..instruction.op_count()).any(|i| instruction.op_kind(i) == OpKind::Memory)
        && instruction.memory_base() == Register::R14
        && instruction.memory_index() == Register::None
        && instruction.memory_displacement64() == STACKGUARD0_OFFSET
}

#[cfg(test)]
mod tests {
    use super::*;

    // go1.27 runtime.gcMarkTermination-like prologue:
    // cmp rsp,[r14+10h]; jbe +N; push rbp; mov rbp,rsp; ...; call morestack
    const SHORT: &[u8] = &[
        0x49, 0x3b, 0x66, 0x10, // cmp rsp,[r14+0x10]
        0x76, 0x06, // jbe +6 (to the first nop)
        0x55, // push rbp
        0x48, 0x89, 0xe5, // mov rbp,rsp
        0x5d, // pop rbp
        0xc3, // ret
        0x90, 0x90, // nop nop (jbe target)
    ];

    #[test]
    fn finds_instruction_after_jbe() {
        let site = probe_site(0x1000, SHORT).unwrap();
        assert_eq!(
            site,
            ProbeSite {
                address: 0x1006,
                placement: Placement::AfterPrologue
            }
        );
        assert_eq!(return_sites(0x1000, SHORT).unwrap(), vec![0x100b]);
    }

    #[test]
    fn lea_r12_form() {
        // lea r12,[rsp-0x88]; cmp r12,[r14+0x10]; jbe rel32
        let mut code = vec![0x4c, 0x8d, 0xa4, 0x24, 0x78, 0xff, 0xff, 0xff];
        code.extend_from_slice(&[0x4d, 0x3b, 0x66, 0x10]);
        code.extend_from_slice(&[0x0f, 0x86, 0x02, 0x00, 0x00, 0x00]);
        code.extend_from_slice(&[0x55, 0xc3, 0x90]);
        let site = probe_site(0x2000, &code).unwrap();
        assert_eq!(site.address, 0x2000 + 18);
        assert_eq!(site.placement, Placement::AfterPrologue);
    }

    #[test]
    fn nosplit_function_probes_entry() {
        let code = [0x48, 0x89, 0xc3, 0xc3]; // mov rbx,rax; ret
        assert_eq!(probe_site(0x10, &code).unwrap().placement, Placement::Entry);
    }

    #[test]
    fn refuses_branch_out_of_function() {
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x70, 0xc3];
        assert!(matches!(
            probe_site(0x10, &code),
            Err(PrologueError::UnexpectedBranch { .. })
        ));
    }
}

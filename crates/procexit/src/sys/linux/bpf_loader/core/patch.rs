//! Instruction patching: finding the instruction a relocation points at,
//! rewriting its immediate, offset or `ld_imm64` value, or poisoning it.

use super::*;

/// The index of the instruction a relocation points at: on a boundary,
/// inside the program, not the second slot of an `ld_imm64`, and not a
/// map reference (which the loader patches itself).
pub(super) fn instruction_index(program: &Program, relo: &CoreRelo) -> Result<usize, &'static str> {
    if relo.insn_off % 8 != 0 {
        return Err("relocation not on an instruction boundary");
    }
    let index = usize::try_from(relo.insn_off / 8).map_err(|_| "instruction offset")?;
    if index >= program.insns.len() {
        return Err("relocation past the program's end");
    }
    let mut at = 0;
    while at < index {
        let wide = program.insns.get(at).is_some_and(|i| i.code == LD_IMM64);
        at += if wide { 2 } else { 1 };
    }
    if at != index {
        return Err("relocation points at the second half of an ld_imm64");
    }
    if program.map_refs.iter().any(|(i, _)| *i == index) {
        return Err("relocation on a map reference");
    }
    Ok(index)
}

/// Overwrites the relocated instruction (both slots of an `ld_imm64`)
/// with libbpf's poison call.
pub(super) fn poison(program: &mut Program, relo: &CoreRelo) -> Result<(), &'static str> {
    let index = instruction_index(program, relo)?;
    let poisoned = Insn {
        // BPF_JMP | BPF_CALL
        code: 0x85,
        regs: 0,
        off: 0,
        imm: POISON_IMM,
    };
    let wide = program.insns.get(index).is_some_and(|i| i.code == LD_IMM64);
    let count = if wide { 2 } else { 1 };
    if index + count > program.insns.len() {
        return Err("truncated ld_imm64");
    }
    for slot in program.insns.iter_mut().skip(index).take(count) {
        *slot = poisoned;
    }
    Ok(())
}

/// What [`patch`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Patched {
    Done,
    /// The instruction must be poisoned instead, for this reason.
    Poison(&'static str),
}

pub(super) const MISMATCH: &str = "instruction does not hold the value the object recorded";

/// Writes the kernel's value into the instruction, after checking that it
/// holds the local one (so that the record and the code agree).
pub(super) fn patch(
    program: &mut Program,
    relo: &CoreRelo,
    local: &Value,
    target: &Value,
) -> Result<Patched, &'static str> {
    let index = instruction_index(program, relo)?;
    let insn: Insn = *program
        .insns
        .get(index)
        .ok_or("relocation past the program's end")?;
    let class = insn.code & 0x07;
    match class {
        // BPF_ALU, BPF_ALU64.
        0x04 | 0x07 => {
            if insn.code & 0x08 != 0 {
                return Err("relocated ALU instruction has no immediate operand");
            }
            // Negation ignores its immediate; a byte swap reads it as a
            // width; 0xe0 and 0xf0 are not operations.
            if matches!(insn.code & 0xf0, 0x80 | 0xd0 | 0xe0 | 0xf0) {
                return Err("relocated ALU operation does not use an immediate value");
            }
            // The immediate is compared sign-extended to 64 bits, as libbpf.
            if local.check && i64::from(insn.imm) as u64 != local.value {
                return Err(MISMATCH);
            }
            let sign_extended = i32::try_from(target.value as i64).ok();
            let imm = if class == 0x04 {
                // 32-bit operations see only the low 32 bits.
                sign_extended.or_else(|| u32::try_from(target.value).ok().map(|v| v as i32))
            } else {
                sign_extended
            };
            let imm = imm.ok_or("value does not fit the instruction's immediate")?;
            if let Some(slot) = program.insns.get_mut(index) {
                slot.imm = imm;
            }
        }
        // BPF_LDX, BPF_ST, BPF_STX: the offset field.
        0x01..=0x03 => {
            let mode = insn.code & 0xe0;
            // BPF_MEM; BPF_MEMSX for loads; BPF_ATOMIC for STX.
            let known =
                mode == 0x60 || (class == 0x01 && mode == 0x80) || (class == 0x03 && mode == 0xc0);
            if !known {
                return Err("relocated memory instruction has an unknown mode");
            }
            if local.check && i64::from(insn.off) as u64 != local.value {
                return Err(MISMATCH);
            }
            let off = i16::try_from(target.value)
                .map_err(|_| "offset does not fit a memory instruction")?;
            let mut code = insn.code;
            let local_size = local.access.map_or(0, |a| a.size);
            let target_size = target.access.map_or(0, |a| a.size);
            if local_size != target_size {
                let resizable = match (local.access, target.access) {
                    (Some(l), Some(t)) => l.width == t.width && l.width != Width::Fixed,
                    _ => false,
                };
                if !resizable {
                    return Ok(Patched::Poison(RESIZED));
                }
                if mode == 0xc0 {
                    return Err("atomic operation on a field that changed size");
                }
                let (Some(old_code), Some(new_code)) =
                    (size_code(local_size), size_code(target_size))
                else {
                    return Err("field size changed to one a load cannot have");
                };
                if insn.code & 0x18 != old_code {
                    return Err("memory access width differs from the field's");
                }
                code = (insn.code & !0x18) | new_code;
            }
            if let Some(slot) = program.insns.get_mut(index) {
                slot.off = off;
                slot.code = code;
            }
        }
        // BPF_LD: only the plain 64-bit immediate form.
        0x00 if insn.code == LD_IMM64 => {
            let high = *program.insns.get(index + 1).ok_or("truncated ld_imm64")?;
            if insn.regs >> 4 != 0
                || insn.off != 0
                || high.code != 0
                || high.regs != 0
                || high.off != 0
            {
                return Err("relocated ld_imm64 is not a plain 64-bit constant load");
            }
            let old = (u64::from(high.imm as u32) << 32) | u64::from(insn.imm as u32);
            if local.check && old != local.value {
                return Err(MISMATCH);
            }
            if let Some(slot) = program.insns.get_mut(index) {
                slot.imm = target.value as u32 as i32;
            }
            if let Some(slot) = program.insns.get_mut(index + 1) {
                slot.imm = (target.value >> 32) as u32 as i32;
            }
        }
        _ => {
            return Err("relocation on an instruction that cannot take it \
                        (only ALU with an immediate, LDX, ST, STX and ld_imm64)")
        }
    }
    Ok(Patched::Done)
}

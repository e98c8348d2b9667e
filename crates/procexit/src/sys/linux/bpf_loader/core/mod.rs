//! CO-RE ("compile once, run everywhere") relocations: each field, type or
//! enumerator the object names in `.BTF.ext` is looked up by name in the
//! running kernel's BTF and the instruction that uses it rewritten, with
//! the semantics of libbpf (tools/lib/bpf/relo_core.c in the kernel tree).
//!
//! # Candidates
//!
//! The kernel types that may stand for a local root type are those whose
//! name equals the local name once a `___flavor` suffix is dropped from
//! both (`task_struct___old` looks for `task_struct`), and whose kind is
//! the local kind (an ENUM and an ENUM64 may stand for each other; a FWD
//! only for a FWD). Every candidate is tried: the ones the access does not
//! fit are skipped, and the ones that fit must agree, on the field's bit
//! offset and on the value, or the relocation fails as ambiguous. A local
//! root without a name has no candidates and is refused.
//!
//! # Kinds
//!
//! - Field kinds follow the access string (`0:3:1`) member by member, by
//!   name, through anonymous structs and unions, with array indexes
//!   checked against the kernel array's length. The matched field's type
//!   must be compatible with the local one (struct with struct, pointer
//!   with pointer, integer with integer, enum with enum of the same name
//!   or anonymous). Byte offset, byte size, existence, signedness and the
//!   two shifts of a bit-field read are computed; on an array element only
//!   the byte offset and size exist, and anything else is refused.
//! - Bit-fields: the offset and size are those of the smallest aligned
//!   1, 2, 4 or 8-byte window holding the bits, and the shifts extract
//!   them from a 64-bit load; a bit-field no 8-byte load can hold is
//!   refused. Bit-fields in the old encoding (no kind flag) are refused.
//! - Type kinds (existence, size, kernel type id) need a compatible
//!   kernel type of the same name; "type matches" needs one of exactly the
//!   same shape (libbpf's stricter relation); "local type id" (which needs
//!   the object's own BTF in the kernel, never loaded here) is refused.
//! - Enumerator kinds (existence, value) find the enumerator by name
//!   (without `___flavor`) in a kernel enum or enum64 of the same name,
//!   also through a typedef of an anonymous enum.
//!
//! # Instructions
//!
//! A relocation may rewrite the immediate of an ALU or ALU64 instruction
//! with an immediate operand (not a negation or byte swap), the offset of
//! an LDX, ST or STX instruction, or the 64-bit value of an `ld_imm64`
//! (both slots, which must have the plain form). The instruction must
//! hold the value the object computed (except where libbpf skips the
//! check: bit-field offsets, sizes and left shifts, and kernel type ids),
//! and the new value must fit. A load or store whose field changed size is
//! resized only for pointers and unsigned integers on both sides;
//! otherwise it is poisoned. A relocation that finds nothing answers 0
//! for the existence kinds, type match, type size and id; for the others its
//! instruction is poisoned (`call 0xbad2310`, both slots of an
//! `ld_imm64`): the verifier refuses it only where it is reachable, so
//! code behind a failed existence check still loads, and the load error
//! names the field if it is reached. Every other failure is a
//! [`LoadError::Relocation`] naming the program and the access.

mod patch;
mod spec;
#[cfg(test)]
mod tests;
mod type_match;
mod value;

use patch::*;
use spec::*;
use type_match::*;
use value::*;

use std::collections::HashMap;

use super::btf::{kind, Btf, CoreRelo, Type};
use super::object::{Insn, Program, LD_IMM64};
use super::LoadError;

/// `bpf_core_relo_kind` values.
pub(crate) const FIELD_BYTE_OFFSET: u32 = 0;
pub(crate) const FIELD_BYTE_SIZE: u32 = 1;
pub(crate) const FIELD_EXISTS: u32 = 2;
pub(crate) const FIELD_SIGNED: u32 = 3;
pub(crate) const FIELD_LSHIFT_U64: u32 = 4;
pub(crate) const FIELD_RSHIFT_U64: u32 = 5;
pub(crate) const TYPE_ID_LOCAL: u32 = 6;
pub(crate) const TYPE_ID_TARGET: u32 = 7;
pub(crate) const TYPE_EXISTS: u32 = 8;
pub(crate) const TYPE_SIZE: u32 = 9;
pub(crate) const ENUMVAL_EXISTS: u32 = 10;
pub(crate) const ENUMVAL_VALUE: u32 = 11;
pub(crate) const TYPE_MATCHES: u32 = 12;

/// What libbpf writes over an instruction whose relocation failed
/// (`call 0xbad2310`): the verifier refuses it only where it is reachable,
/// so code behind a failed existence check still loads.
pub(crate) const POISON_IMM: i32 = 0x0bad_2310;

/// Why an instruction was poisoned when no kernel type has the field.
pub(crate) const NOT_FOUND: &str = "no such field in the running kernel";

/// Why a load or store was poisoned when its field changed size.
const RESIZED: &str = "the field changed size in the running kernel and is not a pointer or \
                       unsigned integer on both sides, so a resized access would misread it";

/// Longest access path libbpf accepts.
const MAX_SPEC_LEN: usize = 64;

/// Type pairs compared at most when checking two types for compatibility.
const MAX_COMPAT_STEPS: usize = 256;

/// Every BTF kind that can carry a name (candidates of any relocation).
const NAMED_KINDS: [u8; 9] = [
    kind::INT,
    kind::STRUCT,
    kind::UNION,
    kind::ENUM,
    kind::FWD,
    kind::TYPEDEF,
    kind::FLOAT,
    kind::ENUM64,
    kind::FUNC,
];

/// A step of an access path.
#[derive(Debug, Clone, Copy)]
struct Accessor<'a> {
    /// The struct/union (named member) or array element type (index).
    type_id: u32,
    idx: u32,
    /// Member name; `None` for an array index (and the root).
    name: Option<&'a str>,
}

/// A resolved access path in one BTF.
#[derive(Debug, Clone)]
struct Spec<'a> {
    accessors: Vec<Accessor<'a>>,
    bit_offset: u64,
    /// Raw member/index path length (anonymous members included).
    raw_len: usize,
}

/// How a load or store of a field may change width between kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    /// A pointer: a 32-bit kernel pointer reads correctly zero-extended.
    Pointer,
    /// An unsigned integer: zero extension keeps the value.
    Unsigned,
    /// Anything else: a different width misreads it.
    Fixed,
}

/// The element a memory instruction at a field's offset reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemAccess {
    /// Bytes (the innermost element for an array).
    size: u64,
    width: Width,
}

/// What a relocation evaluates to in one BTF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Value {
    value: u64,
    /// For the byte offset of a field that is not a bit-field: what a
    /// load or store there accesses.
    access: Option<MemAccess>,
    /// Whether the instruction must hold the local value before patching
    /// (libbpf skips the check where the compiler may legitimately
    /// disagree: bit-field offsets, sizes and left shifts, type ids).
    check: bool,
}

impl Value {
    fn plain(value: u64) -> Value {
        Value {
            value,
            access: None,
            check: true,
        }
    }
}

/// The name without a `___flavor` suffix (libbpf's "essential name").
pub(crate) fn essential_name(name: &str) -> &str {
    let b = name.as_bytes();
    // The separator is "___" between two characters other than '_'.
    let mut i = b.len().saturating_sub(5);
    loop {
        if b.get(i).is_some_and(|&c| c != b'_')
            && b.get(i + 1..i + 4) == Some(b"___".as_slice())
            && b.get(i + 4).is_some_and(|&c| c != b'_')
        {
            return name.get(..=i).unwrap_or(name);
        }
        if i == 0 {
            return name;
        }
        i -= 1;
    }
}

/// The kernel's BTF with the candidate types each local root type name
/// maps to, found in one pass.
pub(crate) struct Target<'a> {
    pub(crate) btf: Btf<'a>,
    candidates: HashMap<String, Vec<u32>>,
}

impl<'a> Target<'a> {
    /// Indexes the kernel types whose essential name is one of `names`.
    pub(crate) fn new(btf: Btf<'a>, names: &[&str]) -> Result<Target<'a>, LoadError> {
        let mut candidates: HashMap<String, Vec<u32>> = HashMap::new();
        let found = btf.find_all(&NAMED_KINDS, |name| {
            !name.is_empty() && names.contains(&essential_name(name))
        })?;
        for (id, t) in found {
            let name = essential_name(btf.name(t.name_off)?).to_owned();
            candidates.entry(name).or_default().push(id);
        }
        Ok(Target { btf, candidates })
    }

    /// The kernel type called exactly `name` of kind `kind` (e.g. the
    /// `btf_trace_<tracepoint>` typedef a tp_btf program attaches to).
    pub(crate) fn find(&self, name: &str, kind: u8) -> Result<Option<u32>, LoadError> {
        for &id in self.candidates_for(name) {
            let t = self.btf.ty(id)?;
            if t.kind == kind && self.btf.name(t.name_off)? == name {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Kernel types with the essential name of `name`, in id order.
    fn candidates_for(&self, name: &str) -> impl Iterator<Item = &u32> {
        self.candidates
            .get(essential_name(name))
            .into_iter()
            .flatten()
    }
}

/// Root type names of every relocation in `programs` (for [`Target::new`]).
pub(crate) fn root_names<'a>(
    local: &Btf<'a>,
    programs: &[Program],
) -> Result<Vec<&'a str>, LoadError> {
    let mut names = Vec::new();
    for relo in programs.iter().flat_map(|p| &p.core_relos) {
        let name = essential_name(local.name(local.ty(relo.type_id)?.name_off)?);
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Whether a kernel type of kind `target` may stand for a local one of
/// kind `local` (libbpf's `btf_kind_core_compat`: the same kind, or two
/// enums of either width).
fn kinds_compatible(local: u8, target: u8) -> bool {
    let is_enum = |k| matches!(k, kind::ENUM | kind::ENUM64);
    local == target || (is_enum(local) && is_enum(target))
}

fn is_flex_array(btf: &Btf<'_>, parent: Option<&Accessor<'_>>, nelems: u32) -> bool {
    let Some(parent) = parent else { return false };
    if parent.name.is_none() || nelems > 0 {
        return false;
    }
    btf.ty(parent.type_id)
        .is_ok_and(|t| u32::from(t.vlen) == parent.idx.saturating_add(1))
}

/// `index * size * 8` added to `bit_offset`, or `None` on overflow.
fn add_bits(bit_offset: u64, index: u64, size: u64) -> Option<u64> {
    index
        .checked_mul(size)?
        .checked_mul(8)?
        .checked_add(bit_offset)
}

const OFFSET_OVERFLOW: &str = "field offset overflows";

/// The relocation kind as error messages name it.
fn kind_name(kind: u32) -> &'static str {
    match kind {
        FIELD_BYTE_OFFSET => "field byte offset",
        FIELD_BYTE_SIZE => "field byte size",
        FIELD_EXISTS => "field exists",
        FIELD_SIGNED => "field signedness",
        FIELD_LSHIFT_U64 => "field left shift",
        FIELD_RSHIFT_U64 => "field right shift",
        TYPE_ID_LOCAL => "local type id",
        TYPE_ID_TARGET => "kernel type id",
        TYPE_EXISTS => "type exists",
        TYPE_SIZE => "type size",
        ENUMVAL_EXISTS => "enumerator exists",
        ENUMVAL_VALUE => "enumerator value",
        TYPE_MATCHES => "type matches",
        _ => "unknown kind",
    }
}

/// Why a relocation kind is refused, for the kinds this loader does not
/// implement.
fn unsupported_kind(kind: u32) -> &'static str {
    match kind {
        TYPE_ID_LOCAL => {
            "local type id relocations need the object's BTF in the kernel, \
             which this loader does not load"
        }
        _ => "unknown CO-RE relocation kind",
    }
}

/// BPF size field of a memory instruction for a byte count.
fn size_code(bytes: u64) -> Option<u8> {
    match bytes {
        1 => Some(0x10),
        2 => Some(0x08),
        4 => Some(0x00),
        8 => Some(0x18),
        _ => None,
    }
}

/// Applies every CO-RE relocation of `program` against `target`.
pub(crate) fn relocate(
    program: &mut Program,
    local: &Btf<'_>,
    target: &Target<'_>,
) -> Result<(), LoadError> {
    let relos = program.core_relos.clone();
    for relo in relos {
        relocate_one(program, local, target, &relo)?;
    }
    Ok(())
}

/// A relocation resolved in both BTFs, with the access named for errors.
struct Resolved {
    field: String,
    local: Value,
    /// `None` when no kernel type has it.
    target: Option<Value>,
}

fn relocate_one(
    program: &mut Program,
    local: &Btf<'_>,
    target: &Target<'_>,
    relo: &CoreRelo,
) -> Result<(), LoadError> {
    let access = local.name(relo.access_str_off)?;
    let program_name = program.name.clone();
    let fail = |field: String, reason: &'static str| LoadError::Relocation {
        program: program_name.clone(),
        field: format!(
            "{field} ({}, instruction {})",
            kind_name(relo.kind),
            relo.insn_off / 8
        ),
        reason,
    };
    let root = local.ty(relo.type_id)?;
    if local.name(root.name_off)?.is_empty() {
        return Err(fail(
            describe(local, relo.type_id, None, access),
            "the root type is anonymous, so no kernel type can be found for it by name",
        ));
    }
    let resolved = match relo.kind {
        FIELD_BYTE_OFFSET | FIELD_BYTE_SIZE | FIELD_EXISTS | FIELD_SIGNED | FIELD_LSHIFT_U64
        | FIELD_RSHIFT_U64 => field_relocation(local, target, relo, access),
        TYPE_ID_TARGET | TYPE_EXISTS | TYPE_SIZE | TYPE_MATCHES => {
            type_relocation(local, target, relo, access)
        }
        ENUMVAL_EXISTS | ENUMVAL_VALUE => enum_relocation(local, target, relo, access),
        other => Err((
            describe(local, relo.type_id, None, access),
            unsupported_kind(other),
        )),
    }
    .map_err(|(f, r)| fail(f, r))?;
    let Resolved {
        field,
        local: local_value,
        target: found,
    } = resolved;
    let target_value = match found {
        Some(found) => found,
        // Existence, type match, size and id answer 0 for "not there".
        None if matches!(
            relo.kind,
            FIELD_EXISTS | ENUMVAL_EXISTS | TYPE_EXISTS | TYPE_SIZE | TYPE_ID_TARGET | TYPE_MATCHES
        ) =>
        {
            Value::plain(0)
        }
        None => {
            poison(program, relo).map_err(|r| fail(field.clone(), r))?;
            program.poisoned.push((field, NOT_FOUND));
            return Ok(());
        }
    };
    match patch(program, relo, &local_value, &target_value).map_err(|r| fail(field.clone(), r))? {
        Patched::Done => Ok(()),
        Patched::Poison(reason) => {
            poison(program, relo).map_err(|r| fail(field.clone(), r))?;
            program.poisoned.push((field, reason));
            Ok(())
        }
    }
}

/// Keeps the first candidate's answer and fails if a later one differs.
fn agree(
    result: &mut Option<(u64, Value)>,
    bit_offset: u64,
    value: Value,
) -> Result<(), &'static str> {
    match result {
        None => *result = Some((bit_offset, value)),
        Some((previous_offset, _)) if *previous_offset != bit_offset => {
            return Err(
                "ambiguous: kernel types with this name have the field at different offsets",
            )
        }
        Some((_, previous)) if (previous.value, previous.access) != (value.value, value.access) => {
            return Err("ambiguous: kernel types with this name give different values")
        }
        Some(_) => {}
    }
    Ok(())
}

fn field_relocation(
    local: &Btf<'_>,
    target: &Target<'_>,
    relo: &CoreRelo,
    access: &str,
) -> Result<Resolved, (String, &'static str)> {
    let local_spec = parse_spec(local, relo.type_id, access)
        .map_err(|r| (describe(local, relo.type_id, None, access), r))?;
    let field = describe(local, relo.type_id, Some(&local_spec), access);
    let lost = |_| (field.clone(), "unreadable BTF");
    let local_value = field_value(local, &local_spec, relo.kind).map_err(|r| (field.clone(), r))?;
    let root = local.ty(relo.type_id).map_err(lost)?;
    let root_name = local.name(root.name_off).map_err(lost)?;
    let mut result = None;
    for &candidate in target.candidates_for(root_name) {
        let t = target.btf.ty(candidate).map_err(lost)?;
        if !kinds_compatible(root.kind, t.kind) {
            continue;
        }
        let Some(spec) = match_spec(local, &local_spec, &target.btf, candidate).map_err(lost)?
        else {
            continue;
        };
        let value = field_value(&target.btf, &spec, relo.kind).map_err(|r| (field.clone(), r))?;
        agree(&mut result, spec.bit_offset, value).map_err(|r| (field.clone(), r))?;
    }
    Ok(Resolved {
        field,
        local: local_value,
        target: result.map(|(_, v)| v),
    })
}

/// Type relocations: the access string is "0"; the kernel type must have
/// the local root's essential name and a compatible shape.
fn type_relocation(
    local: &Btf<'_>,
    target: &Target<'_>,
    relo: &CoreRelo,
    access: &str,
) -> Result<Resolved, (String, &'static str)> {
    let root = local.ty(relo.type_id).map_err(|_| {
        (
            describe(local, relo.type_id, None, access),
            "unreadable BTF",
        )
    })?;
    let root_name = local.name(root.name_off).unwrap_or("?");
    let field = format!("type {root_name}");
    let lost = |_| (field.clone(), "unreadable BTF");
    if access != "0" {
        return Err((field, "type relocation with an access string other than 0"));
    }
    let value_in = |btf: &Btf<'_>, id: u32| -> Result<Value, &'static str> {
        Ok(match relo.kind {
            TYPE_EXISTS | TYPE_MATCHES => Value::plain(1),
            TYPE_SIZE => Value::plain(btf.resolve_size(id).map_err(|_| "type has no size")?),
            // The compiler's id is the object's own and means nothing in
            // the kernel: there is nothing to check.
            _ => Value {
                value: u64::from(id),
                access: None,
                check: false,
            },
        })
    };
    let local_value = value_in(local, relo.type_id).map_err(|r| (field.clone(), r))?;
    let mut result = None;
    for &candidate in target.candidates_for(root_name) {
        // Candidates are of a compatible kind, as for every relocation.
        let kind_of = |btf: &Btf<'_>, id| btf.ty(id).map(|t| t.kind);
        if !kinds_compatible(
            kind_of(local, relo.type_id).map_err(lost)?,
            kind_of(&target.btf, candidate).map_err(lost)?,
        ) {
            continue;
        }
        let fits = if relo.kind == TYPE_MATCHES {
            types_match(local, relo.type_id, &target.btf, candidate)
        } else {
            types_compatible(local, relo.type_id, &target.btf, candidate)
        };
        if !fits.map_err(|e| match e {
            LoadError::Unsupported(_) => (field.clone(), "types nested too deeply to compare"),
            _ => (field.clone(), "unreadable BTF"),
        })? {
            continue;
        }
        let value = value_in(&target.btf, candidate).map_err(|r| (field.clone(), r))?;
        agree(&mut result, 0, value).map_err(|r| (field.clone(), r))?;
    }
    Ok(Resolved {
        field,
        local: local_value,
        target: result.map(|(_, v)| v),
    })
}

/// Enumerator relocations: the access string is the enumerator's index in
/// the local enum; the kernel's enumerator is found by name.
fn enum_relocation(
    local: &Btf<'_>,
    target: &Target<'_>,
    relo: &CoreRelo,
    access: &str,
) -> Result<Resolved, (String, &'static str)> {
    let unknown = || (format!("enum (access {access})"), "unreadable BTF");
    let root = local.ty(relo.type_id).map_err(|_| unknown())?;
    let root_name = local.name(root.name_off).map_err(|_| unknown())?;
    let (_, local_enum) = local
        .skip_mods_and_typedefs(relo.type_id)
        .map_err(|_| unknown())?;
    let index: usize = access.parse().map_err(|_| {
        (
            format!("enum {root_name} (access {access})"),
            "enumerator access is not one index",
        )
    })?;
    let (name_off, local_enum_value) = local_enum.enumerator(index).ok_or((
        format!("enum {root_name} (access {access})"),
        "not an enumerator",
    ))?;
    let name = local.name(name_off).map_err(|_| unknown())?;
    let field = format!("enum {root_name}::{name}");
    let lost = |_| (field.clone(), "unreadable BTF");
    let exists = relo.kind == ENUMVAL_EXISTS;
    let local_value = if exists { 1 } else { local_enum_value };
    let mut result = None;
    for &candidate in target.candidates_for(root_name) {
        let t = target.btf.ty(candidate).map_err(lost)?;
        if !kinds_compatible(root.kind, t.kind) {
            continue;
        }
        let (_, t) = target.btf.skip_mods_and_typedefs(candidate).map_err(lost)?;
        let mut matched = None;
        for i in 0..usize::from(t.vlen) {
            let Some((off, value)) = t.enumerator(i) else {
                break;
            };
            if essential_name(target.btf.name(off).map_err(lost)?) == essential_name(name) {
                matched = Some(value);
                break;
            }
        }
        let Some(value) = matched else { continue };
        let value = Value::plain(if exists { 1 } else { value });
        agree(&mut result, 0, value).map_err(|r| (field.clone(), r))?;
    }
    Ok(Resolved {
        field,
        local: Value::plain(local_value),
        target: result.map(|(_, v)| v),
    })
}

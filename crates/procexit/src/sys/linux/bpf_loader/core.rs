//! CO-RE ("compile once, run everywhere") field relocations: each field
//! access the object records in `.BTF.ext` is looked up by name in the
//! running kernel's BTF and the instruction's offset rewritten, with the
//! semantics libbpf documents (tools/lib/bpf/relo_core.c in the kernel
//! tree):
//!
//! - candidates are the kernel types of the same kind whose name equals the
//!   local root type's name once any `___flavor` suffix is dropped;
//! - the access string (`0:3:1`) is followed member by member, matching
//!   members by name and going through anonymous structs and unions;
//!   array indexes are kept and checked against the kernel array's length;
//! - matched fields must have compatible types;
//! - every candidate that matches must give the same value.
//!
//! Implemented kinds: field byte offset, byte size, existence and
//! signedness; enumerator existence and value (enumerators matched by
//! name, also without `___flavor`). Others, and bit-fields, are refused
//! with a typed error. A relocation that finds nothing in the kernel is
//! answered 0 by the existence kinds; for the others the instruction is
//! poisoned as libbpf does, and the field is named if the verifier then
//! rejects the program.

use std::collections::HashMap;

use super::btf::{kind, Btf, CoreRelo, Type};
use super::object::{Insn, Program, LD_IMM64};
use super::LoadError;

/// `bpf_core_relo_kind` values.
pub(crate) const FIELD_BYTE_OFFSET: u32 = 0;
pub(crate) const FIELD_BYTE_SIZE: u32 = 1;
pub(crate) const FIELD_EXISTS: u32 = 2;
pub(crate) const FIELD_SIGNED: u32 = 3;
pub(crate) const ENUMVAL_EXISTS: u32 = 10;
pub(crate) const ENUMVAL_VALUE: u32 = 11;

/// What libbpf writes over an instruction whose relocation found nothing
/// (`call 0xbad2310`): the verifier refuses it only where it is reachable,
/// so code behind a failed existence check still loads.
pub(crate) const POISON_IMM: i32 = 0x0bad_2310;

/// Longest access path libbpf accepts.
const MAX_SPEC_LEN: usize = 64;

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
        let found = btf.find_all(
            &[
                kind::STRUCT,
                kind::UNION,
                kind::ENUM,
                kind::ENUM64,
                kind::FWD,
                kind::TYPEDEF,
                kind::INT,
            ],
            |name| names.contains(&essential_name(name)),
        )?;
        for (id, t) in found {
            let name = essential_name(btf.name(t.name_off)?).to_owned();
            candidates.entry(name).or_default().push(id);
        }
        Ok(Target { btf, candidates })
    }

    /// The kernel type called exactly `name` of kind `kind` (e.g. the
    /// `btf_trace_<tracepoint>` typedef a tp_btf program attaches to).
    pub(crate) fn find(&self, name: &str, kind: u8) -> Result<Option<u32>, LoadError> {
        for &id in self
            .candidates
            .get(essential_name(name))
            .into_iter()
            .flatten()
        {
            let t = self.btf.ty(id)?;
            if t.kind == kind && self.btf.name(t.name_off)? == name {
                return Ok(Some(id));
            }
        }
        Ok(None)
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
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Whether two kinds can stand for each other (libbpf's
/// `btf_kind_core_compat`).
fn kinds_compatible(local: u8, target: u8) -> bool {
    local == target
        || matches!(
            (local, target),
            (kind::FWD, kind::STRUCT | kind::UNION) | (kind::STRUCT | kind::UNION, kind::FWD)
        )
        || matches!(
            (local, target),
            (kind::ENUM, kind::ENUM64) | (kind::ENUM64, kind::ENUM)
        )
}

fn is_flex_array(btf: &Btf<'_>, parent: Option<&Accessor<'_>>, nelems: u32) -> bool {
    let Some(parent) = parent else { return false };
    if parent.name.is_none() || nelems > 0 {
        return false;
    }
    btf.ty(parent.type_id)
        .is_ok_and(|t| u32::from(t.vlen) == parent.idx.saturating_add(1))
}

/// The local access path of a relocation.
fn parse_spec<'a>(btf: &Btf<'a>, root: u32, access: &str) -> Result<Spec<'a>, &'static str> {
    let raw: Vec<u32> = access
        .split(':')
        .map(|s| s.parse().map_err(|_| "malformed access string"))
        .collect::<Result<_, _>>()?;
    if raw.is_empty() || raw.len() > MAX_SPEC_LEN {
        return Err("access string too long or empty");
    }
    let (mut id, _) = btf
        .skip_mods_and_typedefs(root)
        .map_err(|_| "bad local root type")?;
    let first = raw.first().copied().unwrap_or(0);
    let size = btf
        .resolve_size(id)
        .map_err(|_| "local root type has no size")?;
    let mut spec = Spec {
        accessors: vec![Accessor {
            type_id: id,
            idx: first,
            name: None,
        }],
        bit_offset: u64::from(first).saturating_mul(size).saturating_mul(8),
        raw_len: raw.len(),
    };
    for &idx in raw.iter().skip(1) {
        let (tid, t) = btf
            .skip_mods_and_typedefs(id)
            .map_err(|_| "bad local type")?;
        id = tid;
        if t.is_composite() {
            let member = t
                .member(usize::try_from(idx).unwrap_or(usize::MAX))
                .ok_or("member index out of range")?;
            spec.bit_offset = spec.bit_offset.saturating_add(u64::from(member.bit_offset));
            let name = btf.name(member.name_off).map_err(|_| "bad member name")?;
            if !name.is_empty() {
                spec.accessors.push(Accessor {
                    type_id: id,
                    idx,
                    name: Some(name),
                });
            }
            id = member.type_id;
        } else if let Some(array) = t.array() {
            let (elem, _) = btf
                .skip_mods_and_typedefs(array.elem_type)
                .map_err(|_| "bad array element")?;
            id = elem;
            if !is_flex_array(btf, spec.accessors.last(), array.nelems) && idx >= array.nelems {
                return Err("array index out of bounds");
            }
            spec.accessors.push(Accessor {
                type_id: id,
                idx,
                name: None,
            });
            let size = btf
                .resolve_size(id)
                .map_err(|_| "array element has no size")?;
            spec.bit_offset = spec
                .bit_offset
                .saturating_add(u64::from(idx).saturating_mul(size).saturating_mul(8));
        } else {
            return Err(
                "access string goes through a type that is neither struct, union nor array",
            );
        }
    }
    Ok(spec)
}

/// `root.member[2].member` for error messages.
fn describe(btf: &Btf<'_>, root: u32, spec: Option<&Spec<'_>>, access: &str) -> String {
    let root_name = btf
        .ty(root)
        .and_then(|t| btf.name(t.name_off))
        .unwrap_or("?");
    let Some(spec) = spec else {
        return format!("{root_name} (access {access})");
    };
    let mut out = root_name.to_owned();
    for acc in spec.accessors.iter().skip(1) {
        match acc.name {
            Some(name) => {
                out.push('.');
                out.push_str(name);
            }
            None => out.push_str(&format!("[{}]", acc.idx)),
        }
    }
    out
}

/// libbpf's `bpf_core_fields_are_compat`.
fn fields_compatible(
    local: &Btf<'_>,
    local_id: u32,
    target: &Btf<'_>,
    target_id: u32,
) -> Result<bool, LoadError> {
    let (mut lid, mut tid) = (local_id, target_id);
    for _ in 0..MAX_SPEC_LEN {
        let (l_id, l) = local.skip_mods_and_typedefs(lid)?;
        let (t_id, t) = target.skip_mods_and_typedefs(tid)?;
        if l.is_composite() && t.is_composite() {
            return Ok(true);
        }
        if !kinds_compatible(l.kind, t.kind) {
            return Ok(false);
        }
        match l.kind {
            kind::PTR | kind::FLOAT => return Ok(true),
            kind::FWD | kind::ENUM | kind::ENUM64 => {
                return Ok(essential_name(local.name(l.name_off)?)
                    == essential_name(target.name(t.name_off)?))
            }
            kind::INT => return Ok(l.int_offset() == 0 && t.int_offset() == 0),
            kind::ARRAY => {
                lid = l.array().map(|a| a.elem_type).unwrap_or(l_id);
                tid = t.array().map(|a| a.elem_type).unwrap_or(t_id);
            }
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Finds the local accessor's member by name in `target_id` (a struct or
/// union), going through anonymous members. Returns whether it matched and
/// updates `spec` and `next_id`.
fn match_member<'t>(
    local: &Btf<'_>,
    local_acc: &Accessor<'_>,
    target: &Btf<'t>,
    target_id: u32,
    spec: &mut Spec<'t>,
    next_id: &mut u32,
) -> Result<bool, LoadError> {
    let local_type = local.ty(local_acc.type_id)?;
    let local_member = local_type
        .member(usize::try_from(local_acc.idx).unwrap_or(usize::MAX))
        .ok_or(LoadError::Malformed {
            what: "BTF",
            detail: "member index out of range",
        })?;
    let local_name = local_acc.name.unwrap_or("");
    let (target_id, target_type) = target.skip_mods_and_typedefs(target_id)?;
    if !target_type.is_composite() {
        return Ok(false);
    }
    for (i, member) in target_type.members().enumerate() {
        if spec.raw_len >= MAX_SPEC_LEN {
            return Err(LoadError::Unsupported(
                "CO-RE access nested too deeply".into(),
            ));
        }
        spec.bit_offset = spec.bit_offset.saturating_add(u64::from(member.bit_offset));
        spec.raw_len += 1;
        let name = target.name(member.name_off)?;
        if name.is_empty() {
            if match_member(local, local_acc, target, member.type_id, spec, next_id)? {
                return Ok(true);
            }
        } else if name == local_name {
            *next_id = member.type_id;
            if !fields_compatible(local, local_member.type_id, target, member.type_id)? {
                return Ok(false);
            }
            spec.accessors.push(Accessor {
                type_id: target_id,
                idx: u32::try_from(i).unwrap_or(u32::MAX),
                name: Some(name),
            });
            return Ok(true);
        }
        spec.bit_offset -= u64::from(member.bit_offset);
        spec.raw_len -= 1;
    }
    Ok(false)
}

/// Matches a local spec against candidate `root` of the target BTF.
fn match_spec<'t>(
    local: &Btf<'_>,
    local_spec: &Spec<'_>,
    target: &Btf<'t>,
    root: u32,
) -> Result<Option<Spec<'t>>, LoadError> {
    let mut spec = Spec {
        accessors: Vec::new(),
        bit_offset: 0,
        raw_len: 0,
    };
    let mut target_id = root;
    for (i, local_acc) in local_spec.accessors.iter().enumerate() {
        let (tid, target_type) = target.skip_mods_and_typedefs(target_id)?;
        target_id = tid;
        if local_acc.name.is_some() {
            let mut next = 0;
            if !match_member(local, local_acc, target, target_id, &mut spec, &mut next)? {
                return Ok(None);
            }
            target_id = next;
        } else {
            if i > 0 {
                let Some(array) = target_type.array() else {
                    return Ok(None);
                };
                if !is_flex_array(target, spec.accessors.last(), array.nelems)
                    && local_acc.idx >= array.nelems
                {
                    return Ok(None);
                }
                target_id = target.skip_mods_and_typedefs(array.elem_type)?.0;
            }
            spec.accessors.push(Accessor {
                type_id: target_id,
                idx: local_acc.idx,
                name: None,
            });
            spec.raw_len += 1;
            let size = target.resolve_size(target_id)?;
            spec.bit_offset = spec.bit_offset.saturating_add(
                u64::from(local_acc.idx)
                    .saturating_mul(size)
                    .saturating_mul(8),
            );
        }
    }
    Ok(Some(spec))
}

/// A relocation's value in one BTF: the value, and for byte offsets the
/// field's size (to check memory instructions).
fn field_value(
    btf: &Btf<'_>,
    spec: &Spec<'_>,
    relo_kind: u32,
) -> Result<(u64, Option<u64>), &'static str> {
    if relo_kind == FIELD_EXISTS {
        return Ok((1, None));
    }
    let last = spec.accessors.last().ok_or("empty access path")?;
    let field_type: Type<'_>;
    let size;
    if last.name.is_none() {
        // An array element (or the root itself).
        size = btf
            .resolve_size(last.type_id)
            .map_err(|_| "field has no size")?;
        field_type = btf
            .skip_mods_and_typedefs(last.type_id)
            .map_err(|_| "bad field type")?
            .1;
    } else {
        let parent = btf.ty(last.type_id).map_err(|_| "bad parent type")?;
        let member = parent
            .member(usize::try_from(last.idx).unwrap_or(usize::MAX))
            .ok_or("member index out of range")?;
        if member.bitfield_size > 0 {
            return Err("bit-field access (not implemented by this loader)");
        }
        size = btf
            .resolve_size(member.type_id)
            .map_err(|_| "field has no size")?;
        field_type = btf
            .skip_mods_and_typedefs(member.type_id)
            .map_err(|_| "bad field type")?
            .1;
    }
    if spec.bit_offset % 8 != 0 {
        return Err("field is not byte-aligned");
    }
    match relo_kind {
        FIELD_BYTE_OFFSET => Ok((spec.bit_offset / 8, Some(size))),
        FIELD_BYTE_SIZE => Ok((size, None)),
        FIELD_SIGNED => {
            let signed = (matches!(field_type.kind, kind::ENUM | kind::ENUM64)
                && field_type.kind_flag)
                || field_type.int_is_signed();
            Ok((u64::from(signed), None))
        }
        _ => Err("unsupported relocation kind"),
    }
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        4 => "field left shift",
        5 => "field right shift",
        6 => "local type id",
        7 => "target type id",
        8 => "type exists",
        9 => "type size",
        10 => "enum value exists",
        11 => "enum value",
        12 => "type matches",
        _ => "unknown",
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
        field,
        reason,
    };
    let (field, local_value, local_size, found) = match relo.kind {
        FIELD_BYTE_OFFSET | FIELD_BYTE_SIZE | FIELD_EXISTS | FIELD_SIGNED => {
            field_relocation(local, target, relo, access).map_err(|(f, r)| fail(f, r))?
        }
        ENUMVAL_EXISTS | ENUMVAL_VALUE => {
            enum_relocation(local, target, relo, access).map_err(|(f, r)| fail(f, r))?
        }
        _ => {
            return Err(LoadError::Unsupported(format!(
                "CO-RE relocation kind {} ({}) in {}",
                relo.kind,
                kind_name(relo.kind),
                program.name
            )))
        }
    };
    let (value, size) = match found {
        Some(found) => found,
        None if matches!(relo.kind, FIELD_EXISTS | ENUMVAL_EXISTS) => (0, None),
        None => {
            poison(program, relo).map_err(|r| fail(field.clone(), r))?;
            program.poisoned.push(field);
            return Ok(());
        }
    };
    patch(program, relo, local_value, value, local_size, size).map_err(|r| fail(field, r))
}

/// The local value, and the kernel's value if a candidate matched, of a
/// relocation, with the field named for errors.
type Resolved = (String, u64, Option<u64>, Option<(u64, Option<u64>)>);

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
    let (local_value, local_size) =
        field_value(local, &local_spec, relo.kind).map_err(|r| (field.clone(), r))?;
    let root = local.ty(relo.type_id).map_err(lost)?;
    let root_name = essential_name(local.name(root.name_off).map_err(lost)?);
    let mut result: Option<(u64, Option<u64>)> = None;
    for &candidate in target.candidates.get(root_name).into_iter().flatten() {
        let t = target.btf.ty(candidate).map_err(lost)?;
        if !kinds_compatible(root.kind, t.kind) {
            continue;
        }
        let Some(spec) = match_spec(local, &local_spec, &target.btf, candidate).map_err(lost)?
        else {
            continue;
        };
        let value = field_value(&target.btf, &spec, relo.kind).map_err(|r| (field.clone(), r))?;
        match result {
            None => result = Some(value),
            Some(previous) if previous.0 != value.0 => {
                return Err((field, "kernel types with this name disagree on it"))
            }
            Some(_) => {}
        }
    }
    Ok((field, local_value, local_size, result))
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
    let index: usize = access.parse().map_err(|_| unknown())?;
    let (name_off, local_enum_value) = local_enum.enumerator(index).ok_or((
        format!("enum {root_name} (access {access})"),
        "not an enumerator",
    ))?;
    let name = local.name(name_off).map_err(|_| unknown())?;
    let field = format!("enum {root_name}::{name}");
    let lost = |_| (field.clone(), "unreadable BTF");
    let exists = relo.kind == ENUMVAL_EXISTS;
    let local_value = if exists { 1 } else { local_enum_value };
    let mut result: Option<u64> = None;
    for &candidate in target
        .candidates
        .get(essential_name(root_name))
        .into_iter()
        .flatten()
    {
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
        let value = if exists { 1 } else { value };
        match result {
            None => result = Some(value),
            Some(previous) if previous != value => {
                return Err((field, "kernel enums with this name disagree on it"))
            }
            Some(_) => {}
        }
    }
    Ok((field, local_value, None, result.map(|v| (v, None))))
}

/// Overwrites the relocated instruction (both halves of an `ld_imm64`)
/// with libbpf's poison call.
fn poison(program: &mut Program, relo: &CoreRelo) -> Result<(), &'static str> {
    let index = usize::try_from(relo.insn_off / 8).map_err(|_| "instruction offset")?;
    let first = program
        .insns
        .get(index)
        .copied()
        .ok_or("relocation past the program's end")?;
    let poisoned = Insn {
        // BPF_JMP | BPF_CALL
        code: 0x85,
        regs: 0,
        off: 0,
        imm: POISON_IMM,
    };
    let count = if first.code == LD_IMM64 { 2 } else { 1 };
    for slot in program.insns.iter_mut().skip(index).take(count) {
        *slot = poisoned;
    }
    Ok(())
}

/// Writes `value` into the instruction, after checking that it holds
/// `local_value` (so that the record and the code agree).
fn patch(
    program: &mut Program,
    relo: &CoreRelo,
    local_value: u64,
    value: u64,
    local_size: Option<u64>,
    size: Option<u64>,
) -> Result<(), &'static str> {
    let index = usize::try_from(relo.insn_off / 8).map_err(|_| "instruction offset")?;
    if relo.insn_off % 8 != 0 {
        return Err("relocation not on an instruction boundary");
    }
    let insn: Insn = *program
        .insns
        .get(index)
        .ok_or("relocation past the program's end")?;
    let class = insn.code & 0x07;
    match class {
        // BPF_ALU, BPF_ALU64 with an immediate operand (BPF_K).
        0x04 | 0x07 => {
            if insn.code & 0x08 != 0 {
                return Err("relocated ALU instruction has no immediate operand");
            }
            // The immediate is sign-extended to 64 bits, as libbpf compares.
            if i64::from(insn.imm) as u64 != local_value {
                return Err("instruction does not hold the value the object recorded");
            }
            let imm = i32::try_from(value)
                .or_else(|_| i32::try_from(value as i64))
                .map_err(|_| "value does not fit an immediate")?;
            if let Some(slot) = program.insns.get_mut(index) {
                slot.imm = imm;
            }
        }
        // BPF_LDX, BPF_ST, BPF_STX: the offset field.
        0x01..=0x03 => {
            if i64::from(insn.off) != i64::try_from(local_value).unwrap_or(-1) {
                return Err("instruction does not hold the value the object recorded");
            }
            let off =
                i16::try_from(value).map_err(|_| "offset does not fit a memory instruction")?;
            let mut code = insn.code;
            if let (Some(old), Some(new)) = (local_size, size) {
                if old != new {
                    // Only integers change width between kernels without
                    // changing meaning; the load width follows the field.
                    let (Some(old_code), Some(new_code)) = (size_code(old), size_code(new)) else {
                        return Err("field size changed to one a load cannot have");
                    };
                    if insn.code & 0x18 != old_code {
                        return Err("memory access width differs from the field's");
                    }
                    code = (insn.code & !0x18) | new_code;
                }
            }
            if let Some(slot) = program.insns.get_mut(index) {
                slot.off = off;
                slot.code = code;
            }
        }
        // BPF_LD: only the 64-bit immediate form.
        0x00 if insn.code == LD_IMM64 => {
            let high = program
                .insns
                .get(index + 1)
                .ok_or("truncated ld_imm64")?
                .imm;
            let old = (u64::from(high as u32) << 32) | u64::from(insn.imm as u32);
            if old != local_value {
                return Err("instruction does not hold the value the object recorded");
            }
            if let Some(slot) = program.insns.get_mut(index) {
                slot.imm = value as u32 as i32;
            }
            if let Some(slot) = program.insns.get_mut(index + 1) {
                slot.imm = (value >> 32) as u32 as i32;
            }
        }
        _ => return Err("relocation on an instruction that cannot take it"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::btf::tests::{blob, header, words};
    use super::super::object::{Object, OBJECT};
    use super::*;

    #[test]
    fn flavors_are_dropped_from_names() {
        assert_eq!(essential_name("task_struct___v2"), "task_struct");
        assert_eq!(essential_name("task_struct"), "task_struct");
        assert_eq!(essential_name("a___b"), "a");
        assert_eq!(essential_name("___x"), "___x");
        assert_eq!(essential_name(""), "");
    }

    #[test]
    fn the_object_uses_only_implemented_relocation_kinds() {
        let object = Object::parse(OBJECT).expect("parse");
        let mut total = 0;
        for program in &object.programs {
            for relo in &program.core_relos {
                assert!(
                    matches!(
                        relo.kind,
                        FIELD_BYTE_OFFSET
                            | FIELD_BYTE_SIZE
                            | FIELD_EXISTS
                            | FIELD_SIGNED
                            | ENUMVAL_EXISTS
                            | ENUMVAL_VALUE
                    ),
                    "{}: kind {}",
                    program.name,
                    relo.kind
                );
                let access = object.btf.name(relo.access_str_off).expect("access");
                if relo.kind <= FIELD_SIGNED {
                    parse_spec(&object.btf, relo.type_id, access).expect("local spec");
                }
                total += 1;
            }
        }
        assert!(total > 20, "{total} relocations");
    }

    /// Names, then the access strings "0:0" (at 17) and "0:1:0" (at 21).
    const STRINGS: &[u8] = b"\0int\0s\0a\0b\0c\0pad\x000:0\x000:1:0\0";

    /// Local BTF: `struct s { int a; struct { int b; }; int c[2]; }`, with
    /// the anonymous struct as in the kernel. Target BTF: the same names in
    /// another order, with a padding member and a wider array.
    fn local_and_target(strings: &[u8]) -> (Vec<u8>, Vec<u8>) {
        // ids: 1 int, 2 anon struct {b}, 3 int[2], 4 struct s
        let mut local = header(1, kind::INT, 0, 4);
        local.extend(words(&[(1 << 24) | 32]));
        local.extend(header(0, kind::STRUCT, 1, 4));
        local.extend(words(&[9, 1, 0]));
        local.extend(header(0, kind::ARRAY, 0, 0));
        local.extend(words(&[1, 1, 2]));
        local.extend(header(5, kind::STRUCT, 3, 16));
        local.extend(words(&[7, 1, 0, 0, 2, 32, 11, 3, 64]));
        // ids: 1 int, 2 anon struct {pad, b}, 3 int[4], 4 struct s {c @0, anon @128, a @256}
        let mut target = header(1, kind::INT, 0, 4);
        target.extend(words(&[(1 << 24) | 32]));
        target.extend(header(0, kind::STRUCT, 2, 8));
        target.extend(words(&[13, 1, 0, 9, 1, 32]));
        target.extend(header(0, kind::ARRAY, 0, 0));
        target.extend(words(&[1, 1, 4]));
        target.extend(header(5, kind::STRUCT, 3, 40));
        target.extend(words(&[11, 3, 0, 0, 2, 128, 7, 1, 256]));
        (blob(&local, strings), blob(&target, strings))
    }

    fn program_with(imm: i32, access_str_off: u32, kind: u32) -> Program {
        Program {
            name: "p".into(),
            tracepoint: "t".into(),
            // r1 += imm (BPF_ALU64 | BPF_ADD | BPF_K)
            insns: vec![Insn {
                code: 0x07,
                regs: 1,
                off: 0,
                imm,
            }],
            map_refs: Vec::new(),
            core_relos: vec![CoreRelo {
                insn_off: 0,
                type_id: 4,
                access_str_off,
                kind,
            }],
            poisoned: Vec::new(),
        }
    }

    #[test]
    fn fields_move_to_where_the_kernel_has_them() {
        let (local, target) = local_and_target(STRINGS);
        let local = Btf::parse(&local, "BTF").expect("local");
        let target = Target::new(Btf::parse(&target, "kernel BTF").expect("target"), &["s"])
            .expect("target");
        let spec = parse_spec(&local, 4, "0:1:0").expect("b");
        let matched = match_spec(&local, &spec, &target.btf, 4)
            .expect("match")
            .expect("found");
        assert_eq!(
            matched.bit_offset / 8,
            16 + 4,
            "b moved into the anonymous struct after pad"
        );
        let spec = parse_spec(&local, 4, "0:2:1").expect("c[1]");
        assert_eq!(spec.bit_offset / 8, 12);
        let matched = match_spec(&local, &spec, &target.btf, 4)
            .expect("match")
            .expect("found");
        assert_eq!(matched.bit_offset / 8, 4);
        let spec = parse_spec(&local, 4, "0:0").expect("a");
        let matched = match_spec(&local, &spec, &target.btf, 4)
            .expect("match")
            .expect("found");
        assert_eq!(
            field_value(&target.btf, &matched, FIELD_BYTE_OFFSET),
            Ok((32, Some(4)))
        );
        assert_eq!(
            field_value(&target.btf, &matched, FIELD_SIGNED),
            Ok((1, None))
        );
        assert!(
            parse_spec(&local, 4, "0:2:2").is_err(),
            "index past the local array"
        );
        assert!(parse_spec(&local, 4, "0:9").is_err());
        assert!(parse_spec(&local, 4, "x").is_err());
    }

    #[test]
    fn a_relocation_patches_the_instruction_or_names_the_missing_field() {
        let (local, target) = local_and_target(STRINGS);
        let local = Btf::parse(&local, "BTF").expect("local");
        let target = Target::new(Btf::parse(&target, "kernel BTF").expect("target"), &["s"])
            .expect("target");

        let mut program = program_with(0, 17, FIELD_BYTE_OFFSET);
        relocate(&mut program, &local, &target).expect("a");
        assert_eq!(program.insns[0].imm, 32);

        let mut program = program_with(4, 21, FIELD_BYTE_OFFSET);
        relocate(&mut program, &local, &target).expect("b");
        assert_eq!(program.insns[0].imm, 20);

        // The instruction must hold what the object recorded.
        let mut program = program_with(5, 21, FIELD_BYTE_OFFSET);
        assert!(relocate(&mut program, &local, &target).is_err());

        // A kernel without `s` at all: the instruction is poisoned and the
        // field named (the loader reports it if the verifier refuses the
        // program), or "does not exist" for an existence check.
        let mut int_only = header(1, kind::INT, 0, 4);
        int_only.extend(words(&[32]));
        let int_only = blob(&int_only, b"\0int\0");
        let empty =
            Target::new(Btf::parse(&int_only, "kernel BTF").expect("btf"), &["s"]).expect("target");
        let mut program = program_with(4, 21, FIELD_BYTE_OFFSET);
        relocate(&mut program, &local, &empty).expect("poisoned");
        assert_eq!(program.poisoned, ["s.b"]);
        assert_eq!(
            (program.insns[0].code, program.insns[0].imm),
            (0x85, POISON_IMM)
        );
        let mut program = program_with(1, 21, FIELD_EXISTS);
        relocate(&mut program, &local, &empty).expect("exists");
        assert_eq!(program.insns[0].imm, 0);
        assert!(program.poisoned.is_empty());
    }

    #[test]
    fn enumerators_are_found_by_name() {
        // "\0e\0x\0y\0z___new\00\01\02\0": e@1 x@3 y@5 z___new@7 "0"@15 "1"@17 "2"@19
        let strings = b"\0e\0x\0y\0z___new\x000\x001\x002\0";
        // Local: enum e { x = 0, y = 1, z___new = 2 } (id 1).
        let mut local = header(1, kind::ENUM, 3, 4);
        local.extend(words(&[3, 0, 5, 1, 7, 2]));
        // Kernel: enum e { y = 7, x = -1 } (no z).
        let mut kernel = header(1, kind::ENUM, 2, 4);
        kernel.extend(words(&[5, 7, 3, u32::MAX]));
        let (local, kernel) = (blob(&local, strings), blob(&kernel, strings));
        let local = Btf::parse(&local, "BTF").expect("local");
        let kernel = Target::new(Btf::parse(&kernel, "kernel BTF").expect("kernel"), &["e"])
            .expect("target");
        let run = |imm: i32, access_str_off: u32, kind: u32| {
            let mut program = Program {
                name: "p".into(),
                tracepoint: "t".into(),
                // r1 = imm (BPF_ALU64 | BPF_MOV | BPF_K)
                insns: vec![Insn {
                    code: 0xb7,
                    regs: 1,
                    off: 0,
                    imm,
                }],
                map_refs: Vec::new(),
                core_relos: vec![CoreRelo {
                    insn_off: 0,
                    type_id: 1,
                    access_str_off,
                    kind,
                }],
                poisoned: Vec::new(),
            };
            relocate(&mut program, &local, &kernel).expect("relocate");
            (program.insns[0].imm, program.poisoned)
        };
        assert_eq!(run(1, 17, ENUMVAL_VALUE), (7, vec![]));
        assert_eq!(run(0, 15, ENUMVAL_VALUE), (-1, vec![]));
        assert_eq!(run(1, 17, ENUMVAL_EXISTS), (1, vec![]));
        assert_eq!(run(1, 19, ENUMVAL_EXISTS), (0, vec![]));
        assert_eq!(
            run(2, 19, ENUMVAL_VALUE),
            (POISON_IMM, vec!["enum e::z___new".to_owned()])
        );
    }
}

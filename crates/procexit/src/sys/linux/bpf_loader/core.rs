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

/// The local access path of a field relocation.
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
        bit_offset: add_bits(0, u64::from(first), size).ok_or(OFFSET_OVERFLOW)?,
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
            spec.bit_offset = spec
                .bit_offset
                .checked_add(u64::from(member.bit_offset))
                .ok_or(OFFSET_OVERFLOW)?;
            if member.name_off != 0 {
                let name = btf.name(member.name_off).map_err(|_| "bad member name")?;
                if name.is_empty() {
                    return Err("member with an empty name");
                }
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
            spec.bit_offset =
                add_bits(spec.bit_offset, u64::from(idx), size).ok_or(OFFSET_OVERFLOW)?;
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
    let root_name = if root_name.is_empty() {
        "<anonymous>"
    } else {
        root_name
    };
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

/// Whether a kernel field's type can stand for the local one (libbpf's
/// `bpf_core_fields_are_compat`): any two structs or unions, pointers,
/// floats, integers (not old-style bit-field integers), enums or forward
/// declarations of the same essential name (or one anonymous), and arrays
/// of compatible elements.
fn fields_compatible(
    local: &Btf<'_>,
    local_id: u32,
    target: &Btf<'_>,
    target_id: u32,
) -> Result<bool, LoadError> {
    let (mut lid, mut tid) = (local_id, target_id);
    for _ in 0..MAX_SPEC_LEN {
        let (_, l) = local.skip_mods_and_typedefs(lid)?;
        let (_, t) = target.skip_mods_and_typedefs(tid)?;
        if l.is_composite() && t.is_composite() {
            return Ok(true);
        }
        if !kinds_compatible(l.kind, t.kind) {
            return Ok(false);
        }
        match l.kind {
            kind::PTR | kind::FLOAT => return Ok(true),
            kind::FWD | kind::ENUM | kind::ENUM64 => {
                let l_name = essential_name(local.name(l.name_off)?);
                let t_name = essential_name(target.name(t.name_off)?);
                return Ok(l_name.is_empty() || t_name.is_empty() || l_name == t_name);
            }
            kind::INT => return Ok(l.int_offset() == 0 && t.int_offset() == 0),
            kind::ARRAY => {
                let (Some(la), Some(ta)) = (l.array(), t.array()) else {
                    return Ok(false);
                };
                lid = la.elem_type;
                tid = ta.elem_type;
            }
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Whether kernel type `target_id` can stand for local type `local_id` in
/// a type relocation (libbpf's `bpf_core_types_are_compat`): same kinds
/// after typedefs and qualifiers, structs, unions, enums and forward
/// declarations by kind alone, integers unless old-style bit-fields,
/// pointers and arrays by what they point to or hold, function prototypes
/// by their parameters and return type. Floats match floats (libbpf
/// matches no float here; a kernel with the type has it).
fn types_compatible(
    local: &Btf<'_>,
    local_id: u32,
    target: &Btf<'_>,
    target_id: u32,
) -> Result<bool, LoadError> {
    let kind_of = |btf: &Btf<'_>, id: u32| -> Result<u8, LoadError> {
        Ok(if id == 0 { 0 } else { btf.ty(id)?.kind })
    };
    if !kinds_compatible(kind_of(local, local_id)?, kind_of(target, target_id)?) {
        return Ok(false);
    }
    let mut pending = vec![(local_id, target_id)];
    let mut steps = 0;
    while let Some((lid, tid)) = pending.pop() {
        steps += 1;
        if steps > MAX_COMPAT_STEPS {
            return Err(LoadError::Unsupported(
                "types nested too deeply to compare for a CO-RE type relocation".into(),
            ));
        }
        // `void` (id 0, also behind qualifiers) only matches `void`.
        let (l, t) = match (skip_to_void(local, lid)?, skip_to_void(target, tid)?) {
            (None, None) => continue,
            (Some(l), Some(t)) => (l, t),
            _ => return Ok(false),
        };
        if !kinds_compatible(l.kind, t.kind) {
            return Ok(false);
        }
        match l.kind {
            kind::STRUCT | kind::UNION | kind::ENUM | kind::ENUM64 | kind::FWD | kind::FLOAT => {}
            kind::INT => {
                if l.int_offset() != 0 || t.int_offset() != 0 {
                    return Ok(false);
                }
            }
            kind::PTR => pending.push((l.size_or_type, t.size_or_type)),
            kind::ARRAY => {
                let (Some(la), Some(ta)) = (l.array(), t.array()) else {
                    return Ok(false);
                };
                pending.push((la.elem_type, ta.elem_type));
            }
            kind::FUNC_PROTO => {
                if l.vlen != t.vlen {
                    return Ok(false);
                }
                pending.push((l.size_or_type, t.size_or_type));
                for i in 0..usize::from(l.vlen) {
                    let (Some(lp), Some(tp)) = (l.param_type(i), t.param_type(i)) else {
                        return Ok(false);
                    };
                    pending.push((lp, tp));
                }
            }
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Type pairs one "type matches" relocation may compare: the member search
/// can branch at every level, so hostile BTF could otherwise keep it busy
/// for ages.
const MAX_MATCH_STEPS: usize = 10_000;

/// Nesting levels of members and parameters a "type matches" relocation
/// follows (libbpf's limit).
const MAX_MATCH_LEVEL: u32 = 32;

/// libbpf's name rule for "type matches": an anonymous kernel type matches
/// only an anonymous local one; otherwise the essential names are equal.
fn match_names(local: &str, target: &str) -> bool {
    if target.is_empty() {
        return local.is_empty();
    }
    essential_name(local) == essential_name(target)
}

/// The stricter "type matches" relation of `bpf_core_type_matches()`
/// (libbpf's `bpf_core_types_match`): after typedefs and qualifiers, the
/// same names and kinds; integers of the same size and signedness; arrays
/// of the same length; pointers, arrays and prototypes by what they refer
/// to; enums whose every local enumerator name exists in the kernel's, of
/// the same size; structs and unions whose every local member has a
/// kernel member of the same name and matching type, except behind a
/// pointer, where the kind alone counts (and a forward declaration of the
/// same struct or union kind matches).
struct TypeMatcher<'b, 'l, 't> {
    local: &'b Btf<'l>,
    target: &'b Btf<'t>,
    steps: usize,
}

impl TypeMatcher<'_, '_, '_> {
    fn too_deep() -> LoadError {
        LoadError::Unsupported(
            "types nested too deeply or too widely to compare for a CO-RE type match".into(),
        )
    }

    fn types(
        &mut self,
        mut local_id: u32,
        mut target_id: u32,
        mut behind_ptr: bool,
        level: u32,
    ) -> Result<bool, LoadError> {
        if level == 0 {
            return Err(Self::too_deep());
        }
        for _ in 0..MAX_MATCH_LEVEL {
            self.steps += 1;
            if self.steps > MAX_MATCH_STEPS {
                return Err(Self::too_deep());
            }
            let (l, t) = match (
                skip_to_void(self.local, local_id)?,
                skip_to_void(self.target, target_id)?,
            ) {
                (None, None) => return Ok(true),
                (Some(l), Some(t)) => (l, t),
                _ => return Ok(false),
            };
            if !match_names(self.local.name(l.name_off)?, self.target.name(t.name_off)?) {
                return Ok(false);
            }
            match l.kind {
                kind::FWD => {
                    let union = l.kind_flag;
                    return Ok(match t.kind {
                        kind::FWD => union == t.kind_flag,
                        kind::STRUCT => behind_ptr && !union,
                        kind::UNION => behind_ptr && union,
                        _ => false,
                    });
                }
                kind::ENUM | kind::ENUM64 => return self.enums(&l, &t),
                kind::STRUCT | kind::UNION => {
                    if behind_ptr {
                        return Ok(l.kind == t.kind
                            || (t.kind == kind::FWD && (l.kind == kind::UNION) == t.kind_flag));
                    }
                    if l.kind != t.kind {
                        return Ok(false);
                    }
                    return self.composites(&l, &t, behind_ptr, level);
                }
                kind::INT => {
                    return Ok(t.kind == kind::INT
                        && l.size_or_type == t.size_or_type
                        && l.int_is_signed() == t.int_is_signed());
                }
                kind::PTR => {
                    if t.kind != kind::PTR {
                        return Ok(false);
                    }
                    behind_ptr = true;
                    (local_id, target_id) = (l.size_or_type, t.size_or_type);
                }
                kind::ARRAY => {
                    let (Some(la), Some(ta)) = (l.array(), t.array()) else {
                        return Ok(false);
                    };
                    if la.nelems != ta.nelems {
                        return Ok(false);
                    }
                    (local_id, target_id) = (la.elem_type, ta.elem_type);
                }
                kind::FUNC_PROTO => {
                    if t.kind != kind::FUNC_PROTO || l.vlen != t.vlen {
                        return Ok(false);
                    }
                    for i in 0..usize::from(l.vlen) {
                        let (Some(lp), Some(tp)) = (l.param_type(i), t.param_type(i)) else {
                            return Ok(false);
                        };
                        if !self.types(lp, tp, behind_ptr, level - 1)? {
                            return Ok(false);
                        }
                    }
                    (local_id, target_id) = (l.size_or_type, t.size_or_type);
                }
                _ => return Ok(false),
            }
        }
        Err(Self::too_deep())
    }

    fn enums(&self, l: &Type<'_>, t: &Type<'_>) -> Result<bool, LoadError> {
        if !matches!(t.kind, kind::ENUM | kind::ENUM64)
            || l.size_or_type != t.size_or_type
            || l.vlen > t.vlen
        {
            return Ok(false);
        }
        for i in 0..usize::from(l.vlen) {
            let Some((local_name, _)) = l.enumerator(i) else {
                return Ok(false);
            };
            let local_name = self.local.name(local_name)?;
            let mut found = false;
            for j in 0..usize::from(t.vlen) {
                let Some((target_name, _)) = t.enumerator(j) else {
                    break;
                };
                if match_names(local_name, self.target.name(target_name)?) {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn composites(
        &mut self,
        l: &Type<'_>,
        t: &Type<'_>,
        behind_ptr: bool,
        level: u32,
    ) -> Result<bool, LoadError> {
        if l.vlen > t.vlen {
            return Ok(false);
        }
        for local_member in l.members() {
            let local_name = self.local.name(local_member.name_off)?;
            let mut found = false;
            for target_member in t.members() {
                if !match_names(local_name, self.target.name(target_member.name_off)?) {
                    continue;
                }
                if self.types(
                    local_member.type_id,
                    target_member.type_id,
                    behind_ptr,
                    level - 1,
                )? {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether kernel type `target_id` matches local type `local_id` in the
/// sense of `bpf_core_type_matches()` (see [`TypeMatcher`]).
fn types_match(
    local: &Btf<'_>,
    local_id: u32,
    target: &Btf<'_>,
    target_id: u32,
) -> Result<bool, LoadError> {
    TypeMatcher {
        local,
        target,
        steps: 0,
    }
    .types(local_id, target_id, false, MAX_MATCH_LEVEL)
}

/// Follows typedefs and qualifiers like [`Btf::skip_mods_and_typedefs`],
/// answering `None` where they end at `void`.
fn skip_to_void<'a>(btf: &Btf<'a>, mut id: u32) -> Result<Option<Type<'a>>, LoadError> {
    for _ in 0..MAX_SPEC_LEN {
        if id == 0 {
            return Ok(None);
        }
        let t = btf.ty(id)?;
        match t.kind {
            kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                id = t.size_or_type;
            }
            _ => return Ok(Some(t)),
        }
    }
    Err(LoadError::Malformed {
        what: "BTF",
        detail: "type reference loop",
    })
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
        let before = spec.bit_offset;
        spec.bit_offset =
            before
                .checked_add(u64::from(member.bit_offset))
                .ok_or(LoadError::Malformed {
                    what: "kernel BTF",
                    detail: OFFSET_OVERFLOW,
                })?;
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
        spec.bit_offset = before;
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
            spec.bit_offset = add_bits(spec.bit_offset, u64::from(local_acc.idx), size).ok_or(
                LoadError::Malformed {
                    what: "kernel BTF",
                    detail: OFFSET_OVERFLOW,
                },
            )?;
        }
    }
    Ok(Some(spec))
}

/// What a load or store at the start of a field of type `type_id`
/// accesses: the innermost element's size for arrays, and whether the
/// width may change (decided on the field's own type, as libbpf does).
fn mem_access(btf: &Btf<'_>, type_id: u32) -> Result<MemAccess, &'static str> {
    let (_, field_type) = btf
        .skip_mods_and_typedefs(type_id)
        .map_err(|_| "bad field type")?;
    let width = match field_type.kind {
        kind::PTR => Width::Pointer,
        kind::INT if !field_type.int_is_signed() => Width::Unsigned,
        _ => Width::Fixed,
    };
    let (mut elem_id, mut elem) = (type_id, field_type);
    for _ in 0..MAX_SPEC_LEN {
        let Some(array) = elem.array() else { break };
        (elem_id, elem) = btf
            .skip_mods_and_typedefs(array.elem_type)
            .map_err(|_| "bad array element")?;
    }
    let size = btf.resolve_size(elem_id).map_err(|_| "field has no size")?;
    Ok(MemAccess { size, width })
}

/// The bytes a bit-field is read from: the smallest naturally aligned
/// window of the field type's size, doubled up to 8 bytes, that holds
/// bits `bit_offset .. bit_offset + bits`. Returns (byte offset, size).
fn bitfield_window(
    bit_offset: u64,
    bits: u64,
    field_type: &Type<'_>,
) -> Result<(u64, u64), &'static str> {
    if !matches!(field_type.kind, kind::INT | kind::ENUM | kind::ENUM64) {
        return Err("bit-field of a type that is neither an integer nor an enum");
    }
    let mut size = u64::from(field_type.size_or_type);
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err("bit-field of a type whose size is not 1, 2, 4 or 8 bytes");
    }
    let end = bit_offset.checked_add(bits).ok_or(OFFSET_OVERFLOW)?;
    loop {
        let start = bit_offset / 8 / size * size;
        if end - start * 8 <= size * 8 {
            return Ok((start, size));
        }
        if size >= 8 {
            return Err("bit-field that no aligned 64-bit load holds");
        }
        size *= 2;
    }
}

/// A field relocation's value in one BTF.
fn field_value(btf: &Btf<'_>, spec: &Spec<'_>, relo_kind: u32) -> Result<Value, &'static str> {
    if relo_kind == FIELD_EXISTS {
        return Ok(Value::plain(1));
    }
    let last = spec.accessors.last().ok_or("empty access path")?;
    if last.name.is_none() {
        // An array element (or the root itself).
        return match relo_kind {
            FIELD_BYTE_OFFSET => {
                if spec.bit_offset % 8 != 0 {
                    return Err("field is not byte-aligned");
                }
                Ok(Value {
                    value: spec.bit_offset / 8,
                    access: Some(mem_access(btf, last.type_id)?),
                    check: true,
                })
            }
            FIELD_BYTE_SIZE => btf
                .resolve_size(last.type_id)
                .map(Value::plain)
                .map_err(|_| "field has no size"),
            _ => Err("only byte offset and byte size relocations apply to an array element"),
        };
    }
    let parent = btf.ty(last.type_id).map_err(|_| "bad parent type")?;
    let member = parent
        .member(usize::try_from(last.idx).unwrap_or(usize::MAX))
        .ok_or("member index out of range")?;
    let (field_type_id, field_type) = btf
        .skip_mods_and_typedefs(member.type_id)
        .map_err(|_| "bad field type")?;
    if !parent.kind_flag
        && field_type.kind == kind::INT
        && u64::from(field_type.int_bits()) != u64::from(field_type.size_or_type) * 8
    {
        return Err("bit-field in the old BTF encoding (no kind flag), not supported");
    }
    let bit_offset = spec.bit_offset;
    let bitfield = member.bitfield_size > 0;
    let (byte_offset, byte_size, bit_size) = if bitfield {
        let bits = u64::from(member.bitfield_size);
        let (offset, size) = bitfield_window(bit_offset, bits, &field_type)?;
        (offset, size, bits)
    } else {
        if bit_offset % 8 != 0 {
            return Err("field is not byte-aligned");
        }
        let size = btf
            .resolve_size(field_type_id)
            .map_err(|_| "field has no size")?;
        (bit_offset / 8, size, size.saturating_mul(8))
    };
    let check = !bitfield;
    let too_wide = "field wider than 64 bits cannot be shifted into place";
    match relo_kind {
        FIELD_BYTE_OFFSET => Ok(Value {
            value: byte_offset,
            access: if bitfield {
                None
            } else {
                Some(mem_access(btf, field_type_id)?)
            },
            check,
        }),
        FIELD_BYTE_SIZE => Ok(Value {
            value: byte_size,
            access: None,
            check,
        }),
        FIELD_SIGNED => {
            let signed = (matches!(field_type.kind, kind::ENUM | kind::ENUM64)
                && field_type.kind_flag)
                || field_type.int_is_signed();
            Ok(Value::plain(u64::from(signed)))
        }
        FIELD_LSHIFT_U64 => {
            // Bits from the window's start to the field's end go to the
            // top of a 64-bit register (little-endian).
            let end = (bit_offset - byte_offset * 8)
                .checked_add(bit_size)
                .ok_or(too_wide)?;
            Ok(Value {
                value: 64u64.checked_sub(end).ok_or(too_wide)?,
                access: None,
                check,
            })
        }
        FIELD_RSHIFT_U64 => Ok(Value::plain(64u64.checked_sub(bit_size).ok_or(too_wide)?)),
        _ => Err("not a field relocation kind"),
    }
}

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

/// The index of the instruction a relocation points at: on a boundary,
/// inside the program, not the second slot of an `ld_imm64`, and not a
/// map reference (which the loader patches itself).
fn instruction_index(program: &Program, relo: &CoreRelo) -> Result<usize, &'static str> {
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
fn poison(program: &mut Program, relo: &CoreRelo) -> Result<(), &'static str> {
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
enum Patched {
    Done,
    /// The instruction must be poisoned instead, for this reason.
    Poison(&'static str),
}

const MISMATCH: &str = "instruction does not hold the value the object recorded";

/// Writes the kernel's value into the instruction, after checking that it
/// holds the local one (so that the record and the code agree).
fn patch(
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

#[cfg(test)]
mod tests {
    use super::super::btf::tests::{blob, header, words};
    use super::super::object::{object, Object};
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
        let object = Object::parse(object().unwrap()).expect("parse");
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
                            | FIELD_LSHIFT_U64
                            | FIELD_RSHIFT_U64
                            | TYPE_ID_TARGET
                            | TYPE_EXISTS
                            | TYPE_SIZE
                            | TYPE_MATCHES
                            | ENUMVAL_EXISTS
                            | ENUMVAL_VALUE
                    ),
                    "{}: kind {}",
                    program.name,
                    relo.kind
                );
                let access = object.btf.name(relo.access_str_off).expect("access");
                if relo.kind <= FIELD_RSHIFT_U64 {
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
            field_value(&target.btf, &matched, FIELD_BYTE_OFFSET)
                .map(|v| (v.value, v.access.map(|a| a.size))),
            Ok((32, Some(4)))
        );
        assert_eq!(
            field_value(&target.btf, &matched, FIELD_SIGNED).map(|v| v.value),
            Ok(1)
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
        assert_eq!(program.poisoned, [("s.b".to_owned(), NOT_FOUND)]);
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
            (
                program.insns[0].imm,
                program
                    .poisoned
                    .into_iter()
                    .map(|(field, _)| field)
                    .collect::<Vec<_>>(),
            )
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

    /// Builds one BTF blob type by type (ids from 1, in call order).
    struct Types {
        types: Vec<u8>,
        strings: Vec<u8>,
        count: u32,
    }

    /// A member: name, type, bit offset, bit-field width (0: none).
    type M<'a> = (&'a str, u32, u32, u32);

    impl Types {
        fn new() -> Types {
            Types {
                types: Vec::new(),
                strings: vec![0],
                count: 0,
            }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let at = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            at
        }

        fn add(
            &mut self,
            name: &str,
            k: u8,
            flag: bool,
            vlen: u16,
            size: u32,
            extra: &[u32],
        ) -> u32 {
            let name = self.str(name);
            let info = (u32::from(flag) << 31) | (u32::from(k) << 24) | u32::from(vlen);
            self.types.extend(words(&[name, info, size]));
            self.types.extend(words(extra));
            self.count += 1;
            self.count
        }

        fn int(&mut self, name: &str, size: u32, signed: bool) -> u32 {
            self.add(
                name,
                kind::INT,
                false,
                0,
                size,
                &[(u32::from(signed) << 24) | (size * 8)],
            )
        }

        /// A struct; with any bit-field member it carries the kind flag.
        fn strukt(&mut self, name: &str, size: u32, members: &[M<'_>]) -> u32 {
            let flag = members.iter().any(|m| m.3 > 0);
            let mut extra = Vec::new();
            for &(member, ty, bit, bits) in members {
                extra.push(self.str(member));
                extra.push(ty);
                extra.push(if flag { (bits << 24) | bit } else { bit });
            }
            self.add(name, kind::STRUCT, flag, members.len() as u16, size, &extra)
        }

        fn array(&mut self, elem: u32, n: u32) -> u32 {
            self.add("", kind::ARRAY, false, 0, 0, &[elem, elem, n])
        }

        fn ptr(&mut self, to: u32) -> u32 {
            self.add("", kind::PTR, false, 0, to, &[])
        }

        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.add(name, kind::TYPEDEF, false, 0, to, &[])
        }

        fn fwd(&mut self, name: &str) -> u32 {
            self.add(name, kind::FWD, false, 0, 0, &[])
        }

        fn enum32(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
            let mut extra = Vec::new();
            for &(n, v) in values {
                extra.push(self.str(n));
                extra.push(v as u32);
            }
            self.add(name, kind::ENUM, false, values.len() as u16, 4, &extra)
        }

        fn enum64(&mut self, name: &str, values: &[(&str, u64)]) -> u32 {
            let mut extra = Vec::new();
            for &(n, v) in values {
                extra.push(self.str(n));
                extra.push(v as u32);
                extra.push((v >> 32) as u32);
            }
            self.add(name, kind::ENUM64, false, values.len() as u16, 8, &extra)
        }

        fn proto(&mut self, ret: u32, params: &[u32]) -> u32 {
            let extra: Vec<u32> = params.iter().flat_map(|&p| [0, p]).collect();
            self.add(
                "",
                kind::FUNC_PROTO,
                false,
                params.len() as u16,
                ret,
                &extra,
            )
        }

        fn blob(&self) -> Vec<u8> {
            blob(&self.types, &self.strings)
        }
    }

    /// A relocation: instruction index, local root type, access, kind.
    type R<'a> = (usize, u32, &'a str, u32);

    /// Relocates `insns` with `relos` (local types) against `kernel`.
    fn run(
        local: &mut Types,
        kernel: &Types,
        insns: &[Insn],
        relos: &[R<'_>],
    ) -> Result<Program, LoadError> {
        let core_relos = relos
            .iter()
            .map(|&(index, type_id, access, kind)| CoreRelo {
                insn_off: index as u32 * 8,
                type_id,
                access_str_off: local.str(access),
                kind,
            })
            .collect();
        let mut program = Program {
            name: "p".into(),
            tracepoint: "t".into(),
            insns: insns.to_vec(),
            map_refs: Vec::new(),
            core_relos,
            poisoned: Vec::new(),
        };
        let (local_blob, kernel_blob) = (local.blob(), kernel.blob());
        let local_btf = Btf::parse(&local_blob, "BTF").expect("local BTF");
        let names = root_names(&local_btf, std::slice::from_ref(&program)).expect("names");
        let target = Target::new(
            Btf::parse(&kernel_blob, "kernel BTF").expect("kernel"),
            &names,
        )
        .expect("target");
        relocate(&mut program, &local_btf, &target)?;
        Ok(program)
    }

    /// The relocation error's reason, or a panic naming what happened.
    fn refusal(result: Result<Program, LoadError>) -> &'static str {
        match result {
            Err(LoadError::Relocation { reason, .. }) => reason,
            other => panic!("expected a relocation error, got {other:?}"),
        }
    }

    /// r1 = imm (ALU64 mov with an immediate)
    fn mov64(imm: i32) -> Insn {
        Insn {
            code: 0xb7,
            regs: 1,
            off: 0,
            imm,
        }
    }

    /// w1 = imm (32-bit ALU mov with an immediate)
    fn mov32(imm: i32) -> Insn {
        Insn {
            code: 0xb4,
            regs: 1,
            off: 0,
            imm,
        }
    }

    /// r1 = *(size *)(r2 + off); `size` the BPF size bits.
    fn ldx(size: u8, off: i16) -> Insn {
        Insn {
            code: 0x61 | size,
            regs: 0x21,
            off,
            imm: 0,
        }
    }

    /// r1 = value (both slots of an ld_imm64)
    fn ld_imm64(value: u64) -> [Insn; 2] {
        [
            Insn {
                code: LD_IMM64,
                regs: 1,
                off: 0,
                imm: value as u32 as i32,
            },
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: (value >> 32) as u32 as i32,
            },
        ]
    }

    const W: u8 = 0x00;
    const DW: u8 = 0x18;

    fn is_poison(insn: &Insn) -> bool {
        insn.code == 0x85 && insn.imm == POISON_IMM
    }

    #[test]
    fn a_forward_declaration_does_not_stand_for_a_struct() {
        // Local struct s { int a; }; the kernel has only a forward
        // declaration of s (and an unrelated struct t).
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let s = local.strukt("s", 4, &[("a", int, 0, 0)]);
        let mut kernel = Types::new();
        kernel.fwd("s");
        let k_int = kernel.int("int", 4, true);
        kernel.strukt("t", 4, &[("a", k_int, 0, 0)]);
        let exists = run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, s, "0", TYPE_EXISTS)],
        )
        .expect("exists");
        assert_eq!(exists.insns[0].imm, 0, "a FWD is not the struct");
        let field = run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, s, "0:0", FIELD_EXISTS)],
        )
        .expect("field");
        assert_eq!(field.insns[0].imm, 0);
        // A forward-declared local root finds the kernel's FWD, not a struct.
        let mut local = Types::new();
        let f = local.fwd("s");
        let mut kernel = Types::new();
        let k_int = kernel.int("int", 4, true);
        kernel.strukt("s", 4, &[("a", k_int, 0, 0)]);
        let found = run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, f, "0", TYPE_EXISTS)],
        )
        .expect("fwd");
        assert_eq!(found.insns[0].imm, 0);
        kernel.fwd("s");
        let found = run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, f, "0", TYPE_EXISTS)],
        )
        .expect("fwd");
        assert_eq!(found.insns[0].imm, 1);
    }

    #[test]
    fn every_flavor_of_a_name_is_a_candidate_and_they_must_agree() {
        // Local struct s___old { int a; int b; } reads b (offset 4).
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let s = local.strukt("s___old", 8, &[("a", int, 0, 0), ("b", int, 32, 0)]);
        // Two kernel flavours agreeing on b: one answer.
        let mut kernel = Types::new();
        let k_int = kernel.int("int", 4, true);
        kernel.strukt("s", 16, &[("x", k_int, 0, 0), ("b", k_int, 64, 0)]);
        kernel.strukt("s___v2", 16, &[("y", k_int, 32, 0), ("b", k_int, 64, 0)]);
        let p = run(
            &mut local,
            &kernel,
            &[mov64(4)],
            &[(0, s, "0:1", FIELD_BYTE_OFFSET)],
        )
        .expect("agree");
        assert_eq!(p.insns[0].imm, 8);
        // A candidate without b is skipped.
        let mut kernel = Types::new();
        let k_int = kernel.int("int", 4, true);
        kernel.strukt("s___gone", 4, &[("a", k_int, 0, 0)]);
        kernel.strukt("s", 16, &[("b", k_int, 96, 0)]);
        let p = run(
            &mut local,
            &kernel,
            &[mov64(4)],
            &[(0, s, "0:1", FIELD_BYTE_OFFSET)],
        )
        .expect("skip");
        assert_eq!(p.insns[0].imm, 12);
        // Two flavours with b at different offsets: refused, even for a
        // kind whose value (the size) is the same in both.
        let mut kernel = Types::new();
        let k_int = kernel.int("int", 4, true);
        kernel.strukt("s", 16, &[("b", k_int, 0, 0)]);
        kernel.strukt("s___v2", 16, &[("b", k_int, 64, 0)]);
        for kind in [
            FIELD_BYTE_OFFSET,
            FIELD_BYTE_SIZE,
            FIELD_EXISTS,
            FIELD_SIGNED,
        ] {
            let imm = match kind {
                FIELD_BYTE_OFFSET | FIELD_BYTE_SIZE => 4,
                _ => 1,
            };
            let reason = refusal(run(
                &mut local,
                &kernel,
                &[mov64(imm)],
                &[(0, s, "0:1", kind)],
            ));
            assert!(
                reason.contains("different offsets"),
                "kind {kind}: {reason}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_program_access_kind_and_instruction() {
        let (mut local, s, kernel) = with_matrix();
        let error = run(
            &mut local,
            &kernel,
            &[mov64(0), mov64(1)],
            &[(1, s, "0:1:1:2", FIELD_SIGNED)],
        )
        .expect_err("signedness of an array element");
        assert_eq!(
            error.to_string(),
            "program p: cannot relocate s.m[1][2] (field signedness, instruction 1) against \
             the kernel's BTF: only byte offset and byte size relocations apply to an array \
             element"
        );
    }

    #[test]
    fn an_anonymous_root_type_is_refused() {
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let anon = local.strukt("", 4, &[("a", int, 0, 0)]);
        let mut kernel = Types::new();
        let k_int = kernel.int("int", 4, true);
        kernel.strukt("", 4, &[("a", k_int, 0, 0)]);
        for kind in [FIELD_EXISTS, FIELD_BYTE_OFFSET, TYPE_EXISTS] {
            let access = if kind == TYPE_EXISTS { "0" } else { "0:0" };
            let reason = refusal(run(
                &mut local,
                &kernel,
                &[mov64(i32::from(kind != FIELD_BYTE_OFFSET))],
                &[(0, anon, access, kind)],
            ));
            assert!(reason.contains("anonymous"), "{reason}");
        }
    }

    #[test]
    fn a_field_of_anonymous_enum_type_matches_a_named_enum() {
        // Local: struct s { int pad; enum st state; }; kernel: the state
        // is an anonymous enum, at another offset.
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let st = local.enum32("st", &[("RUNNING", 0)]);
        let s = local.strukt("s", 8, &[("pad", int, 0, 0), ("state", st, 32, 0)]);
        let mut kernel = Types::new();
        let anon = kernel.enum32("", &[("RUNNING", 0)]);
        kernel.strukt("s", 16, &[("state", anon, 64, 0)]);
        let p = run(
            &mut local,
            &kernel,
            &[ldx(W, 4)],
            &[(0, s, "0:1", FIELD_BYTE_OFFSET)],
        )
        .expect("anonymous enum");
        assert_eq!((p.insns[0].off, p.poisoned.len()), (8, 0));
        // An enum of another name is not that field.
        let mut kernel = Types::new();
        let other = kernel.enum32("other", &[("RUNNING", 0)]);
        kernel.strukt("s", 16, &[("state", other, 64, 0)]);
        let p = run(
            &mut local,
            &kernel,
            &[ldx(W, 4)],
            &[(0, s, "0:1", FIELD_BYTE_OFFSET)],
        )
        .expect("poisoned");
        assert!(is_poison(&p.insns[0]));
    }

    #[test]
    fn enumerators_are_found_through_typedefs_and_in_enum64() {
        // Local: typedef enum { A = 1, B = 2 } mode_t;
        let mut local = Types::new();
        let anon = local.enum32("", &[("A", 1), ("B", 2)]);
        let mode = local.typedef("mode_t", anon);
        // Kernel: the typedef names an anonymous enum64 with B above 2^32.
        let mut kernel = Types::new();
        let k_anon = kernel.enum64("", &[("B", 0x1_0000_0002), ("A", 1)]);
        kernel.typedef("mode_t", k_anon);
        let wide = ld_imm64(2);
        let p = run(&mut local, &kernel, &wide, &[(0, mode, "1", ENUMVAL_VALUE)]).expect("enum64");
        assert_eq!(p.insns[..2], ld_imm64(0x1_0000_0002));
        let p = run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, mode, "0", ENUMVAL_VALUE)],
        )
        .expect("A");
        assert_eq!(p.insns[0].imm, 1);
        // The 64-bit value does not fit a 32-bit immediate: refused.
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(2)],
            &[(0, mode, "1", ENUMVAL_VALUE)],
        ));
        assert!(reason.contains("fit"), "{reason}");
        // Two kernel enums of the name that disagree: refused.
        kernel.enum32("mode_t___v2", &[("B", 3)]);
        let wrapped = kernel.enum32("", &[("B", 3)]);
        kernel.typedef("mode_t___v3", wrapped);
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, mode, "1", ENUMVAL_VALUE)],
        ));
        assert!(reason.contains("ambiguous"), "{reason}");
        // A 32-bit operation takes an unsigned 32-bit value whole.
        let mut kernel = Types::new();
        let k_anon = kernel.enum64("", &[("B", 0xffff_fffe)]);
        kernel.typedef("mode_t", k_anon);
        let p = run(
            &mut local,
            &kernel,
            &[mov32(2)],
            &[(0, mode, "1", ENUMVAL_VALUE)],
        )
        .expect("alu32");
        assert_eq!(p.insns[0].imm as u32, 0xffff_fffe);
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(2)],
            &[(0, mode, "1", ENUMVAL_VALUE)],
        ));
        assert!(reason.contains("fit"), "{reason}");
    }

    /// Local `struct s { int pad; int m[2][3]; }`, kernel `struct s { int
    /// m[2][4]; }`, and the ids of s in each.
    fn with_matrix() -> (Types, u32, Types) {
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let row = local.array(int, 3);
        let m = local.array(row, 2);
        let s = local.strukt("s", 28, &[("pad", int, 0, 0), ("m", m, 32, 0)]);
        let mut kernel = Types::new();
        let k_int = kernel.int("int", 4, true);
        let k_row = kernel.array(k_int, 4);
        let k_m = kernel.array(k_row, 2);
        kernel.strukt("s", 32, &[("m", k_m, 0, 0)]);
        (local, s, kernel)
    }

    #[test]
    fn array_elements_have_an_offset_and_a_size_and_nothing_else() {
        let (mut local, s, kernel) = with_matrix();
        // m[1] (a row): loaded at its first int, whose size is unchanged,
        // though the row grew from 12 to 16 bytes.
        let p = run(
            &mut local,
            &kernel,
            &[ldx(W, 16)],
            &[(0, s, "0:1:1", FIELD_BYTE_OFFSET)],
        )
        .expect("row");
        assert_eq!((p.insns[0].off, p.insns[0].code), (16, 0x61));
        let p = run(
            &mut local,
            &kernel,
            &[mov64(12)],
            &[(0, s, "0:1:1", FIELD_BYTE_SIZE)],
        )
        .expect("size");
        assert_eq!(p.insns[0].imm, 16);
        // m[1][2]
        let p = run(
            &mut local,
            &kernel,
            &[ldx(W, 24)],
            &[(0, s, "0:1:1:2", FIELD_BYTE_OFFSET)],
        )
        .expect("cell");
        assert_eq!(p.insns[0].off, 24);
        // Signedness and shifts of an array element: refused as in libbpf.
        for kind in [FIELD_SIGNED, FIELD_LSHIFT_U64, FIELD_RSHIFT_U64] {
            let reason = refusal(run(
                &mut local,
                &kernel,
                &[mov64(1)],
                &[(0, s, "0:1:1:2", kind)],
            ));
            assert!(reason.contains("array element"), "kind {kind}: {reason}");
        }
    }

    /// Local and kernel structs with bit-fields, and the local root id.
    /// Local `struct b { u32 lo:3; u32 f:5; int sf:4; }` (f at bit 3);
    /// kernel: f at bit 30 (straddling a 4-byte boundary), sf at bit 64.
    fn with_bitfields() -> (Types, u32, Types) {
        let mut local = Types::new();
        let u32_ = local.int("u32", 4, false);
        let int = local.int("int", 4, true);
        let b = local.strukt(
            "b",
            4,
            &[("lo", u32_, 0, 3), ("f", u32_, 3, 5), ("sf", int, 8, 4)],
        );
        let mut kernel = Types::new();
        let k_u32 = kernel.int("u32", 4, false);
        let k_int = kernel.int("int", 4, true);
        kernel.strukt("b", 16, &[("f", k_u32, 30, 5), ("sf", k_int, 64, 4)]);
        (local, b, kernel)
    }

    #[test]
    fn bitfields_are_read_through_an_aligned_window() {
        let (mut local, b, kernel) = with_bitfields();
        let value = |local: &mut Types, access: &str, kind: u32, imm: i32| {
            run(local, &kernel, &[mov64(imm)], &[(0, b, access, kind)])
                .expect(access)
                .insns[0]
                .imm
        };
        // f: bits 30..35 need the 8-byte window at 0.
        assert_eq!(value(&mut local, "0:1", FIELD_BYTE_OFFSET, 0), 0);
        assert_eq!(value(&mut local, "0:1", FIELD_BYTE_SIZE, 4), 8);
        assert_eq!(value(&mut local, "0:1", FIELD_LSHIFT_U64, 56), 64 - 35);
        assert_eq!(value(&mut local, "0:1", FIELD_RSHIFT_U64, 59), 59);
        assert_eq!(value(&mut local, "0:1", FIELD_SIGNED, 0), 0);
        assert_eq!(value(&mut local, "0:1", FIELD_EXISTS, 1), 1);
        // sf: bits 64..68, the 4-byte window at 8; signed.
        assert_eq!(value(&mut local, "0:2", FIELD_BYTE_OFFSET, 0), 8);
        assert_eq!(value(&mut local, "0:2", FIELD_BYTE_SIZE, 4), 4);
        assert_eq!(value(&mut local, "0:2", FIELD_LSHIFT_U64, 52), 64 - 4);
        assert_eq!(value(&mut local, "0:2", FIELD_RSHIFT_U64, 60), 60);
        assert_eq!(value(&mut local, "0:2", FIELD_SIGNED, 1), 1);
        // The right shift and signedness are still checked against the
        // instruction (the compiler cannot disagree on them).
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(58)],
            &[(0, b, "0:1", FIELD_RSHIFT_U64)],
        ));
        assert_eq!(reason, MISMATCH);
        // A load of a bit-field's bytes is not resized: poisoned if the
        // kernel's field is a whole integer.
        let mut whole = Types::new();
        let k_u32 = whole.int("u32", 4, false);
        whole.strukt("b", 8, &[("f", k_u32, 32, 0)]);
        let p = run(
            &mut local,
            &whole,
            &[ldx(W, 0)],
            &[(0, b, "0:1", FIELD_BYTE_OFFSET)],
        )
        .expect("poison");
        assert!(is_poison(&p.insns[0]));
        assert_eq!(p.poisoned, [("b.f".to_owned(), RESIZED)]);
    }

    #[test]
    fn impossible_bitfields_are_refused() {
        let (mut local, b, _) = with_bitfields();
        // A u64 bit-field across an 8-byte boundary.
        let mut kernel = Types::new();
        let k_u64 = kernel.int("u64", 8, false);
        kernel.strukt("b", 16, &[("f", k_u64, 60, 10)]);
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(0)],
            &[(0, b, "0:1", FIELD_BYTE_OFFSET)],
        ));
        assert!(reason.contains("64-bit"), "{reason}");
        // A bit-field in the old encoding (no kind flag, a 3-bit INT).
        let mut kernel = Types::new();
        let bits3 = kernel.add("u3", kind::INT, false, 0, 4, &[3]);
        kernel.strukt("b", 4, &[("f", bits3, 0, 0)]);
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(0)],
            &[(0, b, "0:1", FIELD_BYTE_OFFSET)],
        ));
        assert!(reason.contains("old"), "{reason}");
    }

    /// Local `struct m { u32 u; int i; void *p; }` against kernel fields of
    /// other widths.
    #[test]
    fn loads_are_resized_only_for_pointers_and_unsigned_integers() {
        let mut local = Types::new();
        let u32_ = local.int("u32", 4, false);
        let int = local.int("int", 4, true);
        let ptr = local.ptr(0);
        let m = local.strukt(
            "m",
            16,
            &[("u", u32_, 0, 0), ("i", int, 32, 0), ("p", ptr, 64, 0)],
        );
        let mut kernel = Types::new();
        let k_u64 = kernel.int("u64", 8, false);
        let k_long = kernel.int("long", 8, true);
        let k_u16 = kernel.int("u16", 2, false);
        kernel.strukt(
            "m",
            24,
            &[
                ("u", k_u64, 0, 0),
                ("i", k_long, 64, 0),
                ("p", k_u16, 128, 0),
            ],
        );
        // u32 -> u64: the load widens.
        let p = run(
            &mut local,
            &kernel,
            &[ldx(W, 0)],
            &[(0, m, "0:0", FIELD_BYTE_OFFSET)],
        )
        .expect("u");
        assert_eq!((p.insns[0].code, p.insns[0].off), (0x61 | DW, 0));
        // int -> long: a wider load would misread negative values.
        let p = run(
            &mut local,
            &kernel,
            &[ldx(W, 4)],
            &[(0, m, "0:1", FIELD_BYTE_OFFSET)],
        )
        .expect("i");
        assert!(is_poison(&p.insns[0]));
        assert_eq!(p.poisoned, [("m.i".to_owned(), RESIZED)]);
        // A pointer that became an integer is not that field any more.
        let p = run(
            &mut local,
            &kernel,
            &[ldx(DW, 8)],
            &[(0, m, "0:2", FIELD_BYTE_OFFSET)],
        )
        .expect("p");
        assert_eq!(p.poisoned, [("m.p".to_owned(), NOT_FOUND)]);
        // The instruction's width must be the local field's.
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[ldx(DW, 0)],
            &[(0, m, "0:0", FIELD_BYTE_OFFSET)],
        ));
        assert!(reason.contains("width"), "{reason}");
    }

    #[test]
    fn only_instructions_that_can_take_a_value_are_patched() {
        let (local, target) = local_and_target(STRINGS);
        let local = Btf::parse(&local, "BTF").expect("local");
        let target = Target::new(Btf::parse(&target, "kernel BTF").expect("target"), &["s"])
            .expect("target");
        // "0:1:0" is s.b: local offset 4, kernel 20.
        let relocate_insns = |insns: Vec<Insn>, insn_off: u32| {
            let mut program = program_with(0, 21, FIELD_BYTE_OFFSET);
            program.insns = insns;
            program.core_relos[0].insn_off = insn_off;
            relocate(&mut program, &local, &target).map(|()| program)
        };
        let refused = |insns: Vec<Insn>, insn_off: u32| refusal(relocate_insns(insns, insn_off));
        // ALU with an immediate: patched; a byte swap or negation: refused.
        let add = Insn {
            code: 0x07,
            regs: 1,
            off: 0,
            imm: 4,
        };
        assert_eq!(relocate_insns(vec![add], 0).expect("add").insns[0].imm, 20);
        for code in [0xd4, 0x87, 0x84] {
            let reason = refused(
                vec![Insn {
                    code,
                    regs: 1,
                    off: 0,
                    imm: 4,
                }],
                0,
            );
            assert!(reason.contains("immediate"), "{code:#x}: {reason}");
        }
        // ALU with a register operand.
        assert!(refused(
            vec![Insn {
                code: 0x0f,
                regs: 0x21,
                off: 0,
                imm: 4
            }],
            0
        )
        .contains("immediate"));
        // A jump is not relocatable.
        assert!(refused(
            vec![Insn {
                code: 0x15,
                regs: 1,
                off: 0,
                imm: 4
            }],
            0
        )
        .contains("cannot take"));
        // LDX in a mode other than a plain or sign-extending load.
        assert!(refused(
            vec![Insn {
                code: 0x21,
                regs: 0x21,
                off: 4,
                imm: 0
            }],
            0
        )
        .contains("mode"));
        // ld_imm64: plain form patched; a pseudo (map) load or a second
        // slot with anything set refused.
        let [first, second] = ld_imm64(4);
        let p = relocate_insns(vec![first, second], 0).expect("ld_imm64");
        assert_eq!(p.insns[..2], ld_imm64(20));
        let pseudo = Insn {
            regs: 1 | (1 << 4),
            ..first
        };
        assert!(refused(vec![pseudo, second], 0).contains("plain"));
        let odd = Insn {
            code: 0x18,
            ..second
        };
        assert!(refused(vec![first, odd], 0).contains("plain"));
        // Offsets off an instruction boundary or inside an ld_imm64.
        assert!(refused(vec![add, add], 4).contains("boundary"));
        assert!(refused(vec![first, second], 8).contains("ld_imm64"));
        assert!(refused(vec![add], 8).contains("end"));
    }

    #[test]
    fn poisoning_keeps_instruction_boundaries() {
        let (local, _) = local_and_target(STRINGS);
        let local = Btf::parse(&local, "BTF").expect("local");
        let mut int_only = header(1, kind::INT, 0, 4);
        int_only.extend(words(&[32]));
        let int_only = blob(&int_only, b"\0int\0");
        let empty =
            Target::new(Btf::parse(&int_only, "kernel BTF").expect("btf"), &["s"]).expect("target");
        let poisoned = |insns: Vec<Insn>, insn_off: u32| {
            let mut program = program_with(0, 21, FIELD_BYTE_OFFSET);
            program.insns = insns;
            program.core_relos[0].insn_off = insn_off;
            relocate(&mut program, &local, &empty).map(|()| program)
        };
        let [first, second] = ld_imm64(4);
        let exit = Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        };
        // Both slots of an ld_imm64 become poison calls.
        let p = poisoned(vec![first, second, exit], 0).expect("both slots");
        assert!(is_poison(&p.insns[0]) && is_poison(&p.insns[1]));
        assert_eq!(p.insns[2], exit);
        // Not the second slot alone, not half an ld_imm64 at the end, not
        // an instruction the offset does not start.
        for (insns, off) in [
            (vec![first, second, exit], 8),
            (vec![exit, first], 8),
            (vec![exit, exit], 4),
        ] {
            let reason = refusal(poisoned(insns.clone(), off));
            assert!(
                reason.contains("ld_imm64") || reason.contains("boundary"),
                "{reason}"
            );
        }
    }

    #[test]
    fn type_relocations_need_a_compatible_kernel_type() {
        // Local: struct s { int a; }; typedef int (*handler_t)(int, void *);
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let s = local.strukt("s", 4, &[("a", int, 0, 0)]);
        let void_ptr = local.ptr(0);
        let proto = local.proto(int, &[int, void_ptr]);
        let fn_ptr = local.ptr(proto);
        let handler = local.typedef("handler_t", fn_ptr);
        let mut kernel = Types::new();
        let k_int = kernel.int("int", 4, true);
        let k_s = kernel.strukt("s", 40, &[("a", k_int, 0, 0)]);
        let k_void_ptr = kernel.ptr(0);
        let k_proto = kernel.proto(k_int, &[k_int, k_void_ptr]);
        let k_fn_ptr = kernel.ptr(k_proto);
        let k_handler = kernel.typedef("handler_t", k_fn_ptr);
        let value = |local: &mut Types, kernel: &Types, root: u32, kind: u32, imm: i32| {
            run(local, kernel, &[mov64(imm)], &[(0, root, "0", kind)])
                .expect("type relocation")
                .insns[0]
                .imm
        };
        assert_eq!(value(&mut local, &kernel, s, TYPE_EXISTS, 1), 1);
        assert_eq!(value(&mut local, &kernel, s, TYPE_SIZE, 4), 40);
        // The local id in the instruction is not checked.
        assert_eq!(
            value(&mut local, &kernel, s, TYPE_ID_TARGET, 77),
            k_s as i32
        );
        assert_eq!(value(&mut local, &kernel, handler, TYPE_EXISTS, 1), 1);
        assert_eq!(
            value(&mut local, &kernel, handler, TYPE_ID_TARGET, 0),
            k_handler as i32
        );
        // A prototype with another parameter list is another type; a type
        // the kernel lacks answers 0 for all three kinds.
        let mut other = Types::new();
        let o_int = other.int("int", 4, true);
        let o_proto = other.proto(o_int, &[o_int]);
        let o_ptr = other.ptr(o_proto);
        other.typedef("handler_t", o_ptr);
        for kind in [TYPE_EXISTS, TYPE_SIZE, TYPE_ID_TARGET] {
            let imm = if kind == TYPE_SIZE { 8 } else { 1 };
            assert_eq!(
                value(&mut local, &other, handler, kind, imm),
                0,
                "kind {kind}"
            );
            assert_eq!(
                value(
                    &mut local,
                    &other,
                    s,
                    kind,
                    if kind == TYPE_SIZE { 4 } else { 1 }
                ),
                0
            );
        }
        // Refused kinds, and an access string that is not "0".
        for kind in [TYPE_ID_LOCAL, 13] {
            refusal(run(&mut local, &kernel, &[mov64(1)], &[(0, s, "0", kind)]));
        }
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, s, "0:0", TYPE_EXISTS)],
        ));
        assert!(reason.contains("access"), "{reason}");
        // Two compatible kernel types with different sizes: ambiguous.
        kernel.strukt("s___v2", 48, &[("a", k_int, 0, 0)]);
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(4)],
            &[(0, s, "0", TYPE_SIZE)],
        ));
        assert!(reason.contains("ambiguous"), "{reason}");
    }

    #[test]
    fn type_matches_compares_members_by_name_and_exact_shape() {
        // Local: struct s { int a; long b; struct t *p; enum e k; }, with
        // enum e { A, B }.
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let long = local.int("long", 8, true);
        let t = local.strukt("t", 4, &[("x", int, 0, 0)]);
        let t_ptr = local.ptr(t);
        let e = local.enum32("e", &[("A", 0), ("B", 1)]);
        let s = local.strukt(
            "s",
            32,
            &[
                ("a", int, 0, 0),
                ("b", long, 64, 0),
                ("p", t_ptr, 128, 0),
                ("k", e, 192, 0),
            ],
        );
        // A kernel with the members in another order, one more member,
        // struct t only forward-declared (it is behind a pointer), and an
        // enum with one more enumerator.
        let kernel_with = |a_signed: bool, e_size: u32, with_b: bool| {
            let mut kernel = Types::new();
            let k_int = kernel.int("int", 4, a_signed);
            let k_long = kernel.int("long", 8, true);
            let k_char = kernel.int("char", 1, true);
            let k_t = kernel.fwd("t");
            let k_t_ptr = kernel.ptr(k_t);
            let k_e = if e_size == 4 {
                kernel.enum32("e", &[("C", 2), ("B", 1), ("A", 0)])
            } else {
                kernel.enum64("e", &[("C", 2), ("B", 1), ("A", 0)])
            };
            let mut members = vec![
                ("k", k_e, 0, 0),
                ("p", k_t_ptr, 64, 0),
                ("a", k_int, 128, 0),
            ];
            if with_b {
                members.push(("b", k_long, 192, 0));
            }
            members.push(("c", k_char, 256, 0));
            kernel.strukt("s", 40, &members);
            kernel
        };
        let matches = |local: &mut Types, kernel: &Types| {
            run(local, kernel, &[mov64(1)], &[(0, s, "0", TYPE_MATCHES)])
                .expect("type match")
                .insns[0]
                .imm
        };
        assert_eq!(matches(&mut local, &kernel_with(true, 4, true)), 1);
        // Another signedness, another enum size, a missing member: no.
        assert_eq!(matches(&mut local, &kernel_with(false, 4, true)), 0);
        assert_eq!(matches(&mut local, &kernel_with(true, 8, true)), 0);
        assert_eq!(matches(&mut local, &kernel_with(true, 4, false)), 0);
        // Compatible is looser: the unsigned int still counts for it.
        let exists = run(
            &mut local,
            &kernel_with(false, 4, false),
            &[mov64(1)],
            &[(0, s, "0", TYPE_EXISTS)],
        )
        .expect("exists");
        assert_eq!(exists.insns[0].imm, 1);
    }

    #[test]
    fn a_type_match_that_would_search_forever_is_an_error() {
        // 20 levels of structs with 6 members, all named m, of the next
        // level; the kernel's deepest int is unsigned, so every branch of
        // the search fails: about 6^20 comparisons without a budget.
        let build = |signed: bool| {
            let mut types = Types::new();
            let mut inner = types.int("int", 4, signed);
            for level in 0..20 {
                let name = if level == 19 {
                    "top".to_owned()
                } else {
                    format!("l{level}")
                };
                let members: Vec<M<'_>> = (0..6).map(|i| ("m", inner, i * 32, 0)).collect();
                inner = types.strukt(&name, 24, &members);
            }
            (types, inner)
        };
        let (mut local, top) = build(true);
        let (kernel, _) = build(false);
        let started = std::time::Instant::now();
        let reason = refusal(run(
            &mut local,
            &kernel,
            &[mov64(1)],
            &[(0, top, "0", TYPE_MATCHES)],
        ));
        assert!(reason.contains("too deeply"), "{reason}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn offsets_that_overflow_are_errors_not_saturated_values() {
        let mut local = Types::new();
        let int = local.int("int", 4, true);
        let huge = local.array(int, u32::MAX);
        let big = local.array(huge, u32::MAX);
        let s = local.strukt("s", u32::MAX, &[("a", big, 0, 0)]);
        let (blob, access) = {
            let access = local.str("0:0:4294967294:4294967294");
            (local.blob(), access)
        };
        let btf = Btf::parse(&blob, "BTF").expect("parse");
        let access = btf.name(access).expect("access");
        assert!(parse_spec(&btf, s, access).is_err());
    }

    /// Random damage to hand-built BTF never makes a relocation panic.
    #[test]
    fn damaged_btf_never_panics_a_relocation() {
        let (mut local, b, kernel) = with_bitfields();
        let (mut m_local, m, m_kernel) = with_matrix();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..400 {
            let (local, kernel, root) = if round % 2 == 0 {
                (&mut local, &kernel, b)
            } else {
                (&mut m_local, &m_kernel, m)
            };
            let access = ["0:1", "0:2", "0:1:1", "0:1:1:2", "0"][round % 5];
            let kind = (round % 13) as u32;
            let access_off = local.str(access);
            let mut blobs = [local.blob(), kernel.blob()];
            for _ in 0..4 {
                state = crate::test_rng::xorshift(state);
                let which = (state % 2) as usize;
                let data = &mut blobs[which];
                let at = 24 + (state >> 8) as usize % (data.len() - 24);
                data[at] = (state >> 40) as u8;
            }
            let Ok(local_btf) = Btf::parse(&blobs[0], "BTF") else {
                continue;
            };
            let Ok(kernel_btf) = Btf::parse(&blobs[1], "kernel BTF") else {
                continue;
            };
            let mut program = Program {
                name: "p".into(),
                tracepoint: "t".into(),
                insns: vec![mov64(0), ldx(W, 0)],
                map_refs: Vec::new(),
                core_relos: vec![CoreRelo {
                    insn_off: 0,
                    type_id: root,
                    access_str_off: access_off,
                    kind,
                }],
                poisoned: Vec::new(),
            };
            let Ok(names) = root_names(&local_btf, std::slice::from_ref(&program)) else {
                continue;
            };
            let Ok(target) = Target::new(kernel_btf, &names) else {
                continue;
            };
            let _ = relocate(&mut program, &local_btf, &target);
        }
    }
}

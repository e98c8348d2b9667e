//! Access paths: the local spec of a field relocation, its match in the
//! kernel's BTF member by member, and the compatibility of the types met.

use super::*;

/// The local access path of a field relocation.
pub(super) fn parse_spec<'a>(
    btf: &Btf<'a>,
    root: u32,
    access: &str,
) -> Result<Spec<'a>, &'static str> {
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
pub(super) fn describe(btf: &Btf<'_>, root: u32, spec: Option<&Spec<'_>>, access: &str) -> String {
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
pub(super) fn fields_compatible(
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
pub(super) fn types_compatible(
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

/// Follows typedefs and qualifiers like [`Btf::skip_mods_and_typedefs`],
/// answering `None` where they end at `void`.
pub(super) fn skip_to_void<'a>(btf: &Btf<'a>, mut id: u32) -> Result<Option<Type<'a>>, LoadError> {
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
pub(super) fn match_member<'t>(
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
pub(super) fn match_spec<'t>(
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

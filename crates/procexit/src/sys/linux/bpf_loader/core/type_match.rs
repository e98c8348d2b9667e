//! "Type matches" relocations: libbpf's stricter relation between a local
//! type and a kernel type of exactly the same shape.

use super::*;

/// Type pairs one "type matches" relocation may compare: the member search
/// can branch at every level, so hostile BTF could otherwise keep it busy
/// for ages.
pub(super) const MAX_MATCH_STEPS: usize = 10_000;

/// Nesting levels of members and parameters a "type matches" relocation
/// follows (libbpf's limit).
pub(super) const MAX_MATCH_LEVEL: u32 = 32;

/// libbpf's name rule for "type matches": an anonymous kernel type matches
/// only an anonymous local one; otherwise the essential names are equal.
pub(super) fn match_names(local: &str, target: &str) -> bool {
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
pub(super) struct TypeMatcher<'b, 'l, 't> {
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
pub(super) fn types_match(
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

//! What a field relocation evaluates to: byte offset, size, signedness,
//! existence and the shifts of a bit-field read.

use super::*;

/// What a load or store at the start of a field of type `type_id`
/// accesses: the innermost element's size for arrays, and whether the
/// width may change (decided on the field's own type, as libbpf does).
pub(super) fn mem_access(btf: &Btf<'_>, type_id: u32) -> Result<MemAccess, &'static str> {
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
pub(super) fn bitfield_window(
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
pub(super) fn field_value(
    btf: &Btf<'_>,
    spec: &Spec<'_>,
    relo_kind: u32,
) -> Result<Value, &'static str> {
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

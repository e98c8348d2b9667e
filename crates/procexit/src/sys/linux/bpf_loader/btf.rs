//! BTF (the BPF Type Format: types and their names) and the CO-RE
//! relocation records of `.BTF.ext`, as the kernel documents them in
//! Documentation/bpf/btf.rst.

use super::bytes::{c_str, slice, to_usize, u16_at, u32_at};
use super::LoadError;

const MAGIC: u16 = 0xeb9f;

/// BTF kinds (`BTF_KIND_*`).
pub(crate) mod kind {
    pub(crate) const INT: u8 = 1;
    pub(crate) const PTR: u8 = 2;
    pub(crate) const ARRAY: u8 = 3;
    pub(crate) const STRUCT: u8 = 4;
    pub(crate) const UNION: u8 = 5;
    pub(crate) const ENUM: u8 = 6;
    pub(crate) const FWD: u8 = 7;
    pub(crate) const TYPEDEF: u8 = 8;
    pub(crate) const VOLATILE: u8 = 9;
    pub(crate) const CONST: u8 = 10;
    pub(crate) const RESTRICT: u8 = 11;
    pub(crate) const FUNC: u8 = 12;
    pub(crate) const FUNC_PROTO: u8 = 13;
    pub(crate) const VAR: u8 = 14;
    pub(crate) const DATASEC: u8 = 15;
    pub(crate) const FLOAT: u8 = 16;
    pub(crate) const DECL_TAG: u8 = 17;
    pub(crate) const TYPE_TAG: u8 = 18;
    pub(crate) const ENUM64: u8 = 19;
}

/// Nesting limit when following type references (as libbpf's).
const MAX_DEPTH: usize = 32;

/// One type's header and kind-specific data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Type<'a> {
    pub(crate) name_off: u32,
    pub(crate) kind: u8,
    pub(crate) vlen: u16,
    pub(crate) kind_flag: bool,
    /// `size` for INT, STRUCT, UNION, ENUM, DATASEC, FLOAT; `type` for the rest.
    pub(crate) size_or_type: u32,
    /// The bytes after the 12-byte header.
    pub(crate) extra: &'a [u8],
}

/// A struct or union member.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub(crate) name_off: u32,
    pub(crate) type_id: u32,
    /// Offset in bits from the start of the struct.
    pub(crate) bit_offset: u32,
    /// Bit-field width, 0 for an ordinary member.
    pub(crate) bitfield_size: u32,
}

/// `struct btf_array`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Array {
    pub(crate) elem_type: u32,
    pub(crate) nelems: u32,
}

/// A parsed BTF blob. Type ids start at 1 (0 is `void`).
#[derive(Debug)]
pub(crate) struct Btf<'a> {
    what: &'static str,
    types: &'a [u8],
    strings: &'a [u8],
    /// Offset in `types` of type id `i + 1`.
    offsets: Vec<u32>,
}

impl<'a> Type<'a> {
    /// Members of a STRUCT or UNION (empty for other kinds).
    pub(crate) fn members(&self) -> impl Iterator<Item = Member> + 'a {
        let composite = matches!(self.kind, kind::STRUCT | kind::UNION);
        let kind_flag = self.kind_flag;
        let extra = self.extra;
        (0..usize::from(self.vlen))
            .filter(move |_| composite)
            .filter_map(move |i| {
                let at = i.checked_mul(12)?;
                let word = |o: usize| {
                    extra
                        .get(at + o..at + o + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_le_bytes)
                };
                let offset = word(8)?;
                let (bit_offset, bitfield_size) = if kind_flag {
                    (offset & 0x00ff_ffff, offset >> 24)
                } else {
                    (offset, 0)
                };
                Some(Member {
                    name_off: word(0)?,
                    type_id: word(4)?,
                    bit_offset,
                    bitfield_size,
                })
            })
    }

    /// The member at `index`.
    pub(crate) fn member(&self, index: usize) -> Option<Member> {
        self.members().nth(index)
    }

    /// The array description of an ARRAY type.
    pub(crate) fn array(&self) -> Option<Array> {
        if self.kind != kind::ARRAY {
            return None;
        }
        let word = |o: usize| {
            self.extra
                .get(o..o + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        };
        Some(Array {
            elem_type: word(0)?,
            nelems: word(8)?,
        })
    }

    /// `(type, offset, size)` entries of a DATASEC.
    pub(crate) fn datasec_vars(&self) -> impl Iterator<Item = u32> + 'a {
        let extra = self.extra;
        let n = if self.kind == kind::DATASEC {
            usize::from(self.vlen)
        } else {
            0
        };
        (0..n).filter_map(move |i| {
            let at = i.checked_mul(12)?;
            extra
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        })
    }

    /// Enumerator `index` of an ENUM or ENUM64: its name offset and value
    /// (an ENUM's 32-bit value sign-extended, as libbpf reads it).
    pub(crate) fn enumerator(&self, index: usize) -> Option<(u32, u64)> {
        let word = |o: usize| {
            self.extra
                .get(o..o.checked_add(4)?)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        };
        if index >= usize::from(self.vlen) {
            return None;
        }
        match self.kind {
            kind::ENUM => {
                let at = index.checked_mul(8)?;
                let value = i64::from(word(at + 4)? as i32) as u64;
                Some((word(at)?, value))
            }
            kind::ENUM64 => {
                let at = index.checked_mul(12)?;
                let value = (u64::from(word(at + 8)?) << 32) | u64::from(word(at + 4)?);
                Some((word(at)?, value))
            }
            _ => None,
        }
    }

    /// The type of parameter `index` of a FUNC_PROTO.
    pub(crate) fn param_type(&self, index: usize) -> Option<u32> {
        if self.kind != kind::FUNC_PROTO || index >= usize::from(self.vlen) {
            return None;
        }
        let at = index.checked_mul(8)?.checked_add(4)?;
        self.extra
            .get(at..at.checked_add(4)?)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    }

    pub(crate) fn is_composite(&self) -> bool {
        matches!(self.kind, kind::STRUCT | kind::UNION)
    }

    /// `BTF_INT_SIGNED` of an INT's encoding.
    pub(crate) fn int_is_signed(&self) -> bool {
        self.kind == kind::INT
            && self
                .extra
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .is_some_and(|b| (u32::from_le_bytes(b) >> 24) & 1 != 0)
    }

    /// Bit offset of an INT inside its storage (non-zero only in old
    /// bit-field encodings).
    pub(crate) fn int_offset(&self) -> u32 {
        self.extra
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| (u32::from_le_bytes(b) >> 16) & 0xff)
    }

    /// Number of value bits of an INT (below `8 * size` only in old
    /// bit-field encodings).
    pub(crate) fn int_bits(&self) -> u32 {
        self.extra
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u32::from_le_bytes(b) & 0xff)
    }
}

/// Bytes of kind-specific data after a type's header.
fn extra_len(kind: u8, vlen: usize) -> Option<usize> {
    Some(match kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => vlen.checked_mul(12)?,
        kind::ENUM | kind::FUNC_PROTO => vlen.checked_mul(8)?,
        _ => return None,
    })
}

impl<'a> Btf<'a> {
    /// Parses a BTF blob (`.BTF` of an object, or `/sys/kernel/btf/vmlinux`);
    /// `what` names it in errors.
    pub(crate) fn parse(data: &'a [u8], what: &'static str) -> Result<Btf<'a>, LoadError> {
        let bad = |detail| LoadError::Malformed { what, detail };
        let header = "truncated header";
        if u16_at(data, 0, what, header)? != MAGIC {
            return Err(bad("no BTF magic (or not little-endian)"));
        }
        if data.get(2) != Some(&1) {
            return Err(bad("unknown BTF version (only 1 exists)"));
        }
        let hdr_len = to_usize(u32_at(data, 4, what, header)?, what, header)?;
        // The four section fields end at byte 24: a shorter header would
        // make them overlap the type data.
        if hdr_len < 24 {
            return Err(bad("header shorter than 24 bytes"));
        }
        let field = |o| -> Result<usize, LoadError> {
            to_usize(u32_at(data, o, what, header)?, what, header)
        };
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let body = data
            .get(hdr_len..)
            .ok_or(bad("header longer than the data"))?;
        let types = slice(body, type_off, type_len, what, "type section out of bounds")?;
        let strings = slice(body, str_off, str_len, what, "string section out of bounds")?;
        // Offset 0 is the empty name of anonymous types, and every name
        // must end inside the section.
        if strings.first() != Some(&0) || strings.last() != Some(&0) {
            return Err(bad("string section does not start and end with NUL"));
        }
        let mut offsets = Vec::new();
        let mut at = 0usize;
        while at < types.len() {
            let info = u32_at(types, at + 4, what, "truncated type")?;
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as usize;
            let extra = extra_len(kind, vlen).ok_or(bad("unknown type kind"))?;
            offsets.push(u32::try_from(at).map_err(|_| bad("type section too large"))?);
            at = at
                .checked_add(12 + extra)
                .filter(|&end| end <= types.len())
                .ok_or(bad("truncated type"))?;
        }
        Ok(Btf {
            what,
            types,
            strings,
            offsets,
        })
    }

    fn bad(&self, detail: &'static str) -> LoadError {
        LoadError::Malformed {
            what: self.what,
            detail,
        }
    }

    /// Number of types (the largest id).
    pub(crate) fn len(&self) -> u32 {
        u32::try_from(self.offsets.len()).unwrap_or(u32::MAX)
    }

    /// The type with id `id` (not 0, which is `void`).
    pub(crate) fn ty(&self, id: u32) -> Result<Type<'a>, LoadError> {
        let at = id
            .checked_sub(1)
            .and_then(|i| self.offsets.get(usize::try_from(i).ok()?))
            .and_then(|&o| usize::try_from(o).ok())
            .ok_or(self.bad("type id out of range"))?;
        let detail = "truncated type";
        let info = u32_at(self.types, at + 4, self.what, detail)?;
        let kind = ((info >> 24) & 0x1f) as u8;
        let vlen = (info & 0xffff) as u16;
        let extra = extra_len(kind, usize::from(vlen)).ok_or(self.bad("unknown type kind"))?;
        Ok(Type {
            name_off: u32_at(self.types, at, self.what, detail)?,
            kind,
            vlen,
            kind_flag: info >> 31 != 0,
            size_or_type: u32_at(self.types, at + 8, self.what, detail)?,
            extra: slice(self.types, at + 12, extra, self.what, detail)?,
        })
    }

    /// The string at `offset` of the string section.
    pub(crate) fn name(&self, offset: u32) -> Result<&'a str, LoadError> {
        c_str(
            self.strings,
            to_usize(offset, self.what, "string offset")?,
            self.what,
        )
    }

    /// Follows typedefs and qualifiers (const, volatile, restrict, type
    /// tags) to the type they stand for: its id and the type.
    pub(crate) fn skip_mods_and_typedefs(&self, mut id: u32) -> Result<(u32, Type<'a>), LoadError> {
        for _ in 0..MAX_DEPTH {
            let t = self.ty(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Ok((id, t)),
            }
        }
        Err(self.bad("type reference loop"))
    }

    /// Size in bytes of a type, as libbpf's `btf__resolve_size`.
    pub(crate) fn resolve_size(&self, id: u32) -> Result<u64, LoadError> {
        let mut id = id;
        let mut multiplier = 1u64;
        for _ in 0..MAX_DEPTH {
            let t = self.ty(id)?;
            let size = match t.kind {
                kind::INT
                | kind::STRUCT
                | kind::UNION
                | kind::ENUM
                | kind::ENUM64
                | kind::DATASEC
                | kind::FLOAT => u64::from(t.size_or_type),
                kind::PTR => 8,
                kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::TYPE_TAG
                | kind::VAR => {
                    id = t.size_or_type;
                    continue;
                }
                kind::ARRAY => {
                    let a = t.array().ok_or(self.bad("truncated array"))?;
                    multiplier = multiplier
                        .checked_mul(u64::from(a.nelems))
                        .ok_or(self.bad("array size overflows"))?;
                    id = a.elem_type;
                    continue;
                }
                _ => return Err(self.bad("type has no size")),
            };
            return multiplier
                .checked_mul(size)
                .ok_or(self.bad("type size overflows"));
        }
        Err(self.bad("type reference loop"))
    }

    /// Ids of every type whose kind is in `kinds` and whose name satisfies
    /// `wanted`, in id order (one pass over the types).
    pub(crate) fn find_all(
        &self,
        kinds: &[u8],
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<Vec<(u32, Type<'a>)>, LoadError> {
        let mut out = Vec::new();
        for id in 1..=self.len() {
            let t = self.ty(id)?;
            if kinds.contains(&t.kind) && t.name_off != 0 && wanted(self.name(t.name_off)?) {
                out.push((id, t));
            }
        }
        Ok(out)
    }
}

/// One CO-RE relocation record (`struct bpf_core_relo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CoreRelo {
    /// Byte offset of the instruction in its section.
    pub(crate) insn_off: u32,
    /// Local (object BTF) root type.
    pub(crate) type_id: u32,
    /// Access string, e.g. "0:1:2", in the object's BTF strings.
    pub(crate) access_str_off: u32,
    /// `bpf_core_relo_kind`.
    pub(crate) kind: u32,
}

/// CO-RE relocations of `.BTF.ext`, per program section name.
pub(crate) fn core_relocations<'a>(
    ext: &[u8],
    btf: &Btf<'a>,
) -> Result<Vec<(&'a str, Vec<CoreRelo>)>, LoadError> {
    const WHAT: &str = "BTF.ext";
    let header = "truncated header";
    if u16_at(ext, 0, WHAT, header)? != MAGIC {
        return Err(LoadError::Malformed {
            what: WHAT,
            detail: "no BTF.ext magic",
        });
    }
    let hdr_len = to_usize(u32_at(ext, 4, WHAT, header)?, WHAT, header)?;
    // The CO-RE part of the header (core_relo_off, core_relo_len) exists
    // from a 32-byte header on.
    if hdr_len < 32 {
        return Ok(Vec::new());
    }
    let off = to_usize(u32_at(ext, 24, WHAT, header)?, WHAT, header)?;
    let len = to_usize(u32_at(ext, 28, WHAT, header)?, WHAT, header)?;
    let body = ext.get(hdr_len..).ok_or(LoadError::Malformed {
        what: WHAT,
        detail: "header longer than the data",
    })?;
    let info = slice(body, off, len, WHAT, "CO-RE section out of bounds")?;
    let mut out = Vec::new();
    if info.is_empty() {
        return Ok(out);
    }
    let record_size = to_usize(
        u32_at(info, 0, WHAT, "truncated CO-RE section")?,
        WHAT,
        "record size",
    )?;
    if record_size < 16 {
        return Err(LoadError::Malformed {
            what: WHAT,
            detail: "CO-RE record size below 16",
        });
    }
    let mut at = 4usize;
    while at < info.len() {
        let detail = "truncated CO-RE block";
        let section = btf.name(u32_at(info, at, WHAT, detail)?)?;
        let count = to_usize(u32_at(info, at + 4, WHAT, detail)?, WHAT, detail)?;
        at += 8;
        let mut relos = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            let r = slice(info, at, record_size, WHAT, "truncated CO-RE record")?;
            relos.push(CoreRelo {
                insn_off: u32_at(r, 0, WHAT, detail)?,
                type_id: u32_at(r, 4, WHAT, detail)?,
                access_str_off: u32_at(r, 8, WHAT, detail)?,
                kind: u32_at(r, 12, WHAT, detail)?,
            });
            at += record_size;
        }
        out.push((section, relos));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob from raw type records and a string table.
    pub(crate) fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&24u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(types);
        out.extend_from_slice(strings);
        out
    }

    /// A type header: name offset, kind, vlen, size or type.
    pub(crate) fn header(name: u32, kind: u8, vlen: u16, size_or_type: u32) -> Vec<u8> {
        let info = (u32::from(kind) << 24) | u32::from(vlen);
        [name, info, size_or_type]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    pub(crate) fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn hand_built_types_resolve() {
        // "\0int\0pair\0a\0b\0"
        let strings = b"\0int\0pair\0a\0b\0";
        let mut types = header(1, kind::INT, 0, 4);
        types.extend(words(&[(1 << 24) | 32])); // signed, 32 bits
        types.extend(header(0, kind::ARRAY, 0, 0));
        types.extend(words(&[1, 1, 3])); // int[3]
        types.extend(header(5, kind::STRUCT, 2, 16));
        types.extend(words(&[10, 1, 0, 12, 2, 32])); // a: int @0, b: int[3] @32 bits
        types.extend(header(0, kind::TYPEDEF, 0, 3));
        let data = blob(&types, strings);
        let btf = Btf::parse(&data, "BTF").expect("parse");
        assert_eq!(btf.len(), 4);
        assert_eq!(btf.resolve_size(2).expect("array"), 12);
        assert_eq!(btf.resolve_size(4).expect("typedef"), 16);
        let (id, pair) = btf.skip_mods_and_typedefs(4).expect("skip");
        assert_eq!(id, 3);
        let members: Vec<_> = pair.members().collect();
        assert_eq!(members.len(), 2);
        assert_eq!(btf.name(members[1].name_off).expect("name"), "b");
        assert_eq!(members[1].bit_offset, 32);
        assert!(btf.ty(1).expect("int").int_is_signed());
        assert!(btf.ty(5).is_err());
        assert!(btf.ty(0).is_err());
        let found = btf
            .find_all(&[kind::STRUCT], |n| n == "pair")
            .expect("find");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn truncated_btf_is_an_error_not_a_panic() {
        let strings = b"\0int\0";
        let mut types = header(1, kind::INT, 0, 4);
        types.extend(words(&[32]));
        let data = blob(&types, strings);
        for len in 0..data.len() {
            let _ = Btf::parse(data.get(..len).unwrap_or_default(), "BTF");
        }
        // A struct claiming more members than there are bytes.
        let mut types = header(1, kind::STRUCT, 1000, 4);
        types.extend(words(&[0, 0, 0]));
        assert!(Btf::parse(&blob(&types, strings), "BTF").is_err());
        // A typedef loop.
        let types = header(0, kind::TYPEDEF, 0, 1);
        let data = blob(&types, strings);
        let btf = Btf::parse(&data, "BTF").expect("parse");
        assert!(btf.skip_mods_and_typedefs(1).is_err());
        assert!(btf.resolve_size(1).is_err());
    }

    #[test]
    fn headers_that_would_misplace_the_sections_are_refused() {
        let strings = b"\0int\0";
        let mut types = header(1, kind::INT, 0, 4);
        types.extend(words(&[32]));
        let good = blob(&types, strings);
        assert!(Btf::parse(&good, "BTF").is_ok());
        let refused = |at: usize, bytes: &[u8]| {
            let mut data = good.clone();
            data.splice(at..at + bytes.len(), bytes.iter().copied());
            match Btf::parse(&data, "BTF") {
                Err(LoadError::Malformed { detail, .. }) => detail,
                other => panic!("{other:?}"),
            }
        };
        assert!(refused(2, &[2]).contains("version"));
        // A header length of 8 would read the section table from the types.
        assert!(refused(4, &8u32.to_le_bytes()).contains("header"));
        // Strings not starting (or not ending) with NUL.
        assert!(refused(24 + types.len(), b"x").contains("NUL"));
        assert!(refused(good.len() - 1, b"x").contains("NUL"));
    }
}

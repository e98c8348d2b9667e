//! The parts of an ELF64 relocatable object that a BPF object uses:
//! section headers and names, the symbol table and `SHT_REL` relocations.

use super::bytes::{c_str, slice, to_usize, u16_at, u32_at, u64_at};
use super::LoadError;

const WHAT: &str = "ELF object";

/// `EM_BPF`.
const EM_BPF: u16 = 247;
/// `SHT_SYMTAB`.
const SHT_SYMTAB: u32 = 2;
/// `SHT_REL`.
pub(crate) const SHT_REL: u32 = 9;
/// `SHT_RELA` (relocations with addends, which BPF objects do not use).
const SHT_RELA: u32 = 4;
/// `R_BPF_64_64`: the 64-bit immediate of an `ld_imm64`.
pub(crate) const R_BPF_64_64: u32 = 1;
/// `SHT_NOBITS`.
const SHT_NOBITS: u32 = 8;
/// `SHF_EXECINSTR`.
pub(crate) const SHF_EXECINSTR: u64 = 4;
/// `STT_FUNC`.
pub(crate) const STT_FUNC: u8 = 2;

const SECTION_HEADER_SIZE: usize = 64;
const SYMBOL_SIZE: usize = 24;
const REL_SIZE: usize = 16;

/// One section.
#[derive(Debug, Clone)]
pub(crate) struct Section<'a> {
    pub(crate) index: usize,
    pub(crate) name: &'a str,
    pub(crate) kind: u32,
    pub(crate) flags: u64,
    /// Section index this one refers to (`sh_link`).
    pub(crate) link: u32,
    /// For `SHT_REL`: the section the relocations apply to (`sh_info`).
    pub(crate) info: u32,
    pub(crate) data: &'a [u8],
}

/// One symbol of `.symtab`.
#[derive(Debug, Clone)]
pub(crate) struct Symbol<'a> {
    pub(crate) name: &'a str,
    /// `STT_*` (low 4 bits of `st_info`).
    pub(crate) kind: u8,
    /// Section index (`st_shndx`).
    pub(crate) section: usize,
    pub(crate) value: u64,
}

/// One `Elf64_Rel` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rel {
    pub(crate) offset: u64,
    pub(crate) symbol: usize,
    /// `R_BPF_*` (low 32 bits of `r_info`).
    pub(crate) kind: u32,
}

/// A parsed object.
#[derive(Debug)]
pub(crate) struct Elf<'a> {
    pub(crate) sections: Vec<Section<'a>>,
    pub(crate) symbols: Vec<Symbol<'a>>,
}

fn bad(detail: &'static str) -> LoadError {
    LoadError::Malformed { what: WHAT, detail }
}

impl<'a> Elf<'a> {
    /// Parses a little-endian ELF64 object for `EM_BPF`.
    pub(crate) fn parse(data: &'a [u8]) -> Result<Elf<'a>, LoadError> {
        let ident = slice(data, 0, 16, WHAT, "shorter than an ELF header")?;
        if ident.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(bad("no ELF magic"));
        }
        // EI_CLASS = ELFCLASS64, EI_DATA = ELFDATA2LSB.
        if ident.get(4) != Some(&2) || ident.get(5) != Some(&1) {
            return Err(bad("not a little-endian 64-bit ELF file"));
        }
        if u16_at(data, 18, WHAT, "truncated header")? != EM_BPF {
            return Err(bad("not a BPF object (e_machine is not EM_BPF)"));
        }
        let shoff = to_usize(u64_at(data, 40, WHAT, "truncated header")?, WHAT, "e_shoff")?;
        let shentsize = usize::from(u16_at(data, 58, WHAT, "truncated header")?);
        let shnum = usize::from(u16_at(data, 60, WHAT, "truncated header")?);
        let shstrndx = usize::from(u16_at(data, 62, WHAT, "truncated header")?);
        if shentsize != SECTION_HEADER_SIZE {
            return Err(bad("unexpected section header size"));
        }
        struct Header {
            name: usize,
            kind: u32,
            flags: u64,
            offset: usize,
            size: usize,
            link: u32,
            info: u32,
        }
        let mut headers = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let at = i
                .checked_mul(SECTION_HEADER_SIZE)
                .and_then(|o| o.checked_add(shoff))
                .ok_or(bad("section header offset overflows"))?;
            let h = slice(
                data,
                at,
                SECTION_HEADER_SIZE,
                WHAT,
                "section header out of bounds",
            )?;
            let detail = "section header out of bounds";
            headers.push(Header {
                name: to_usize(u32_at(h, 0, WHAT, detail)?, WHAT, detail)?,
                kind: u32_at(h, 4, WHAT, detail)?,
                flags: u64_at(h, 8, WHAT, detail)?,
                offset: to_usize(u64_at(h, 24, WHAT, detail)?, WHAT, detail)?,
                size: to_usize(u64_at(h, 32, WHAT, detail)?, WHAT, detail)?,
                link: u32_at(h, 40, WHAT, detail)?,
                info: u32_at(h, 44, WHAT, detail)?,
            });
        }
        let section_data = |h: &Header| -> Result<&'a [u8], LoadError> {
            if h.kind == SHT_NOBITS {
                return Ok(&[]);
            }
            slice(data, h.offset, h.size, WHAT, "section data out of bounds")
        };
        let names = headers
            .get(shstrndx)
            .ok_or(bad("section name table index out of range"))?;
        let names = section_data(names)?;
        let mut sections = Vec::with_capacity(shnum);
        for (index, h) in headers.iter().enumerate() {
            sections.push(Section {
                index,
                name: c_str(names, h.name, WHAT)?,
                kind: h.kind,
                flags: h.flags,
                link: h.link,
                info: h.info,
                data: section_data(h)?,
            });
        }
        let mut symbols = Vec::new();
        if let Some(symtab) = sections.iter().find(|s| s.kind == SHT_SYMTAB) {
            let strtab = to_usize(symtab.link, WHAT, "symbol string table index")?;
            let strings = sections
                .get(strtab)
                .ok_or(bad("symbol string table index out of range"))?
                .data;
            for entry in symtab.data.chunks_exact(SYMBOL_SIZE) {
                let detail = "truncated symbol";
                let info = *entry.get(4).ok_or(bad(detail))?;
                symbols.push(Symbol {
                    name: c_str(
                        strings,
                        to_usize(u32_at(entry, 0, WHAT, detail)?, WHAT, detail)?,
                        WHAT,
                    )?,
                    kind: info & 0xf,
                    section: usize::from(u16_at(entry, 6, WHAT, detail)?),
                    value: u64_at(entry, 8, WHAT, detail)?,
                });
            }
        }
        Ok(Elf { sections, symbols })
    }

    /// The section called `name`.
    pub(crate) fn section(&self, name: &str) -> Option<&Section<'a>> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The `SHT_REL` entries that apply to section `target`. A partial
    /// entry, or `SHT_RELA` entries for it, are errors rather than
    /// relocations left undone.
    pub(crate) fn relocations_for(&self, target: usize) -> Result<Vec<Rel>, LoadError> {
        let mut out = Vec::new();
        for rel in self
            .sections
            .iter()
            .filter(|s| usize::try_from(s.info).ok() == Some(target))
        {
            match rel.kind {
                SHT_REL => {}
                SHT_RELA => {
                    return Err(LoadError::Unsupported(format!(
                        "relocations with addends ({}) for a program",
                        rel.name
                    )))
                }
                _ => continue,
            }
            if rel.data.len() % REL_SIZE != 0 {
                return Err(bad(
                    "relocation section size is not a whole number of entries",
                ));
            }
            for entry in rel.data.chunks_exact(REL_SIZE) {
                let detail = "truncated relocation";
                let info = u64_at(entry, 8, WHAT, detail)?;
                out.push(Rel {
                    offset: u64_at(entry, 0, WHAT, detail)?,
                    symbol: to_usize(info >> 32, WHAT, detail)?,
                    kind: (info & 0xffff_ffff) as u32,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_foreign_input_is_an_error_not_a_panic() {
        let object = super::super::object::object().unwrap();
        for len in [0, 3, 16, 20, 63, 64, 200, object.len() / 2] {
            let cut = object.get(..len).unwrap_or_default();
            assert!(Elf::parse(cut).is_err(), "{len} bytes parsed");
        }
        let mut wrong_machine = object.to_vec();
        if let Some(b) = wrong_machine.get_mut(18) {
            *b = 62; // EM_X86_64
        }
        assert!(Elf::parse(&wrong_machine).is_err());
    }

    #[test]
    fn the_object_has_its_sections_and_symbols() {
        let elf = Elf::parse(super::super::object::object().unwrap()).expect("parse");
        for name in [
            ".BTF",
            ".BTF.ext",
            ".maps",
            "license",
            "tp_btf/sched_process_exit",
        ] {
            assert!(elf.section(name).is_some(), "{name}");
        }
        assert!(elf
            .symbols
            .iter()
            .any(|s| s.name == "handle_exit" && s.kind == STT_FUNC));
        let exit = elf.section("tp_btf/sched_process_exit").expect("exit");
        let rels = elf.relocations_for(exit.index).expect("rels");
        assert!(!rels.is_empty());
        assert!(rels.iter().all(|r| r.offset % 8 == 0));
    }
}

//! What procexit's BPF object holds: its programs (one function per
//! `tp_btf/<tracepoint>` section), the maps declared in `.maps` (BTF-defined
//! map definitions), the license, and each program's map references and
//! CO-RE relocations.

use super::btf::{self, kind, Btf, CoreRelo};
use super::elf::{Elf, R_BPF_64_64, SHF_EXECINSTR, STT_FUNC};
use super::LoadError;

/// The committed CO-RE object (`bpf/procexit.bpf.o`, built from
/// `bpf/procexit.bpf.c` by `scripts/build-bpf.sh`), DEFLATE-compressed by
/// `build.rs`: 87 KB of ELF sections, BTF and mostly-zero padding take
/// about 16 KB in every binary this way.
static PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/procexit.bpf.o.deflate"));

/// The object's size, from `build.rs` (an upper bound for inflating).
const OBJECT_LEN: usize = include!(concat!(env!("OUT_DIR"), "/procexit.bpf.o.len"));

/// The object, inflated on first use and kept for the process's life.
pub(crate) fn object() -> Result<&'static [u8], LoadError> {
    static OBJECT: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    OBJECT
        .get_or_init(|| miniz_oxide::inflate::decompress_to_vec_with_limit(PACKED, OBJECT_LEN).ok())
        .as_deref()
        .ok_or(LoadError::Malformed {
            what: "ELF object",
            detail: "the packed BPF object does not inflate",
        })
}

/// The only program kind this loader handles: BTF-typed raw tracepoints.
const SECTION_PREFIX: &str = "tp_btf/";

/// One BPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

/// `BPF_LD | BPF_IMM | BPF_DW`: the first half of a 64-bit immediate load.
pub(crate) const LD_IMM64: u8 = 0x18;

impl Insn {
    pub(crate) fn to_bytes(self) -> [u8; 8] {
        let [o0, o1] = self.off.to_le_bytes();
        let [i0, i1, i2, i3] = self.imm.to_le_bytes();
        [self.code, self.regs, o0, o1, i0, i1, i2, i3]
    }
}

/// A map as the object declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapDef {
    pub(crate) name: String,
    pub(crate) map_type: u32,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
    pub(crate) map_flags: u32,
}

/// A program and what must be patched in it before loading.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    /// The C function's name.
    pub(crate) name: String,
    /// The tracepoint (`sched_process_exit` for `tp_btf/sched_process_exit`).
    pub(crate) tracepoint: String,
    pub(crate) insns: Vec<Insn>,
    /// Instruction index of each `ld_imm64` that loads a map, and the map.
    pub(crate) map_refs: Vec<(usize, String)>,
    pub(crate) core_relos: Vec<CoreRelo>,
    /// Fields (as written in C) whose relocation failed in the running
    /// kernel, with the reason: their instructions were poisoned, which
    /// the verifier rejects only if the program can reach them.
    pub(crate) poisoned: Vec<(String, &'static str)>,
}

/// The parsed object. `btf` is the object's own BTF (CO-RE needs it).
#[derive(Debug)]
pub(crate) struct Object<'a> {
    pub(crate) license: String,
    pub(crate) maps: Vec<MapDef>,
    pub(crate) programs: Vec<Program>,
    pub(crate) btf: Btf<'a>,
}

fn bad(detail: &'static str) -> LoadError {
    LoadError::Malformed {
        what: "ELF object",
        detail,
    }
}

impl<'a> Object<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Result<Object<'a>, LoadError> {
        let elf = Elf::parse(data)?;
        let btf_section = elf.section(".BTF").ok_or(LoadError::Missing {
            what: "section",
            name: ".BTF".into(),
        })?;
        let btf = Btf::parse(btf_section.data, "BTF")?;
        let core = match elf.section(".BTF.ext") {
            Some(ext) => btf::core_relocations(ext.data, &btf)?,
            None => Vec::new(),
        };
        let license = elf
            .section("license")
            .map(|s| {
                let end = s.data.iter().position(|&b| b == 0).unwrap_or(s.data.len());
                String::from_utf8_lossy(s.data.get(..end).unwrap_or_default()).into_owned()
            })
            .unwrap_or_default();
        let maps = map_definitions(&btf)?;

        let mut programs = Vec::new();
        for section in &elf.sections {
            let Some(tracepoint) = section.name.strip_prefix(SECTION_PREFIX) else {
                if section.flags & SHF_EXECINSTR != 0 && !section.data.is_empty() {
                    return Err(LoadError::Unsupported(format!(
                        "code in section {} (only {SECTION_PREFIX}* programs, no BPF-to-BPF calls)",
                        section.name
                    )));
                }
                continue;
            };
            let mut functions = elf
                .symbols
                .iter()
                .filter(|s| s.kind == STT_FUNC && s.section == section.index);
            let function = functions
                .next()
                .ok_or(bad("program section without a function"))?;
            if functions.next().is_some() || function.value != 0 {
                return Err(LoadError::Unsupported(format!(
                    "more than one function in section {}",
                    section.name
                )));
            }
            if section.data.len() % 8 != 0 {
                return Err(bad("program size is not a whole number of instructions"));
            }
            let insns = section
                .data
                .chunks_exact(8)
                .map(|c| Insn {
                    code: c.first().copied().unwrap_or(0),
                    regs: c.get(1).copied().unwrap_or(0),
                    off: i16::from_le_bytes([
                        c.get(2).copied().unwrap_or(0),
                        c.get(3).copied().unwrap_or(0),
                    ]),
                    imm: i32::from_le_bytes([
                        c.get(4).copied().unwrap_or(0),
                        c.get(5).copied().unwrap_or(0),
                        c.get(6).copied().unwrap_or(0),
                        c.get(7).copied().unwrap_or(0),
                    ]),
                })
                .collect::<Vec<_>>();
            let mut map_refs = Vec::new();
            for rel in elf.relocations_for(section.index)? {
                let symbol = elf
                    .symbols
                    .get(rel.symbol)
                    .ok_or(bad("relocation symbol out of range"))?;
                let index =
                    usize::try_from(rel.offset / 8).map_err(|_| bad("relocation offset"))?;
                let is_map_section = elf
                    .sections
                    .get(symbol.section)
                    .is_some_and(|s| s.name == ".maps");
                if rel.offset % 8 != 0 || !is_map_section || rel.kind != R_BPF_64_64 {
                    return Err(LoadError::Unsupported(format!(
                        "relocation to {} in {} (only map references are handled)",
                        symbol.name, section.name
                    )));
                }
                if insns.get(index).map(|i| i.code) != Some(LD_IMM64) || index + 1 >= insns.len() {
                    return Err(bad("map reference on an instruction that is not ld_imm64"));
                }
                if !maps.iter().any(|m| m.name == symbol.name) {
                    return Err(LoadError::Missing {
                        what: "map definition",
                        name: symbol.name.to_owned(),
                    });
                }
                map_refs.push((index, symbol.name.to_owned()));
            }
            let core_relos = core
                .iter()
                .filter(|(name, _)| *name == section.name)
                .flat_map(|(_, relos)| relos.iter().copied())
                .collect();
            programs.push(Program {
                name: function.name.to_owned(),
                tracepoint: tracepoint.to_owned(),
                insns,
                map_refs,
                core_relos,
                poisoned: Vec::new(),
            });
        }
        Ok(Object {
            license,
            maps,
            programs,
            btf,
        })
    }
}

/// Map definitions from the `.maps` DATASEC: each variable is a struct
/// whose members encode the attributes as `__uint(name, value)` (a pointer
/// to an array of `value` elements) or `__type(name, T)` (a pointer to T).
fn map_definitions(btf: &Btf<'_>) -> Result<Vec<MapDef>, LoadError> {
    let bad = |detail| LoadError::Malformed {
        what: "BTF",
        detail,
    };
    let Some((_, datasec)) = btf
        .find_all(&[kind::DATASEC], |name| name == ".maps")?
        .into_iter()
        .next()
    else {
        return Ok(Vec::new());
    };
    let mut maps = Vec::new();
    for var_id in datasec.datasec_vars() {
        let var = btf.ty(var_id)?;
        if var.kind != kind::VAR {
            return Err(bad(".maps entry is not a variable"));
        }
        let name = btf.name(var.name_off)?.to_owned();
        let (_, def) = btf.skip_mods_and_typedefs(var.size_or_type)?;
        if def.kind != kind::STRUCT {
            return Err(bad("map definition is not a struct"));
        }
        let mut map = MapDef {
            name,
            map_type: 0,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            map_flags: 0,
        };
        for member in def.members() {
            let attribute = btf.name(member.name_off)?;
            let (_, pointer) = btf.skip_mods_and_typedefs(member.type_id)?;
            if pointer.kind != kind::PTR {
                return Err(bad("map attribute is not a pointer"));
            }
            let target = pointer.size_or_type;
            let number = || -> Result<u32, LoadError> {
                let (_, array) = btf.skip_mods_and_typedefs(target)?;
                array
                    .array()
                    .map(|a| a.nelems)
                    .ok_or(bad("__uint map attribute is not a pointer to an array"))
            };
            let size = || -> Result<u32, LoadError> {
                u32::try_from(btf.resolve_size(target)?)
                    .map_err(|_| bad("map key or value too large"))
            };
            match attribute {
                "type" => map.map_type = number()?,
                "max_entries" => map.max_entries = number()?,
                "map_flags" => map.map_flags = number()?,
                "key_size" => map.key_size = number()?,
                "value_size" => map.value_size = number()?,
                "key" => map.key_size = size()?,
                "value" => map.value_size = size()?,
                other => {
                    return Err(LoadError::Unsupported(format!(
                        "map attribute {other} of map {}",
                        map.name
                    )))
                }
            }
        }
        maps.push(map);
    }
    Ok(maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Object<'static> {
        Object::parse(super::object().unwrap()).expect("the committed object parses")
    }

    /// What build.rs packed inflates to exactly the committed object (the
    /// one `scripts/build-bpf.sh --check` compares with its source).
    #[test]
    fn the_packed_object_is_the_committed_one() {
        let committed: &[u8] = include_bytes!("../bpf/procexit.bpf.o");
        assert!(super::object().unwrap() == committed);
        assert!(
            PACKED.len() * 3 < committed.len(),
            "{} bytes packed",
            PACKED.len()
        );
    }

    #[test]
    fn the_object_has_every_program_with_its_tracepoint() {
        let object = object();
        let hooks: Vec<_> = object
            .programs
            .iter()
            .map(|p| (p.name.as_str(), p.tracepoint.as_str()))
            .collect();
        for expected in [
            ("handle_exit", "sched_process_exit"),
            ("handle_signal", "signal_generate"),
            ("handle_oom_victim", "mark_victim"),
            ("handle_exec", "sched_process_exec"),
        ] {
            assert!(hooks.contains(&expected), "{expected:?} in {hooks:?}");
        }
        assert_eq!(object.license, "Dual BSD/GPL");
        for program in &object.programs {
            assert!(!program.insns.is_empty());
            assert!(!program.core_relos.is_empty(), "{}", program.name);
            for (index, _) in &program.map_refs {
                assert_eq!(program.insns[*index].code, LD_IMM64);
            }
        }
    }

    #[test]
    fn map_definitions_match_the_c_source() {
        let maps = object().maps;
        let get = |name: &str| maps.iter().find(|m| m.name == name).cloned().expect(name);
        let exits = get("EXITS");
        assert_eq!((exits.map_type, exits.max_entries), (27, 8 << 20));
        let counters = get("COUNTERS");
        assert_eq!(
            (
                counters.map_type,
                counters.key_size,
                counters.value_size,
                counters.max_entries
            ),
            (6, 4, 8, 4)
        );
        // The exit record is built here: its C size (the command line at
        // full length, the struct padded to its 8-byte alignment).
        let scratch = get("EXIT_SCRATCH");
        let full = crate::decode::ebpf_exit::RECORD_MIN + crate::decode::ebpf_exit::ARGS_MAX;
        assert_eq!(
            (scratch.map_type, scratch.value_size, scratch.max_entries),
            (6, full.next_multiple_of(8) as u32, 1)
        );
        let config = get("CONFIG");
        assert_eq!(
            (config.map_type, config.key_size, config.value_size),
            (2, 4, 24)
        );
        let pids = get("PIDS");
        assert_eq!(
            (
                pids.map_type,
                pids.key_size,
                pids.value_size,
                pids.max_entries
            ),
            (1, 4, 1, 1024)
        );
        let senders = get("SENDERS");
        assert_eq!((senders.map_type, senders.value_size), (9, 24));
        let exec = get("EXEC_ARGS");
        assert_eq!(exec.value_size, 8 + 2048);
        for name in ["PPIDS", "OOM_VICTIMS", "EXEC_SCRATCH"] {
            get(name);
        }
    }

    /// The committed object with one program's relocation section altered
    /// by `change(object, header offset, data offset)`.
    fn with_program_relocations(change: impl Fn(&mut Vec<u8>, usize, usize)) -> Vec<u8> {
        let committed = super::object().unwrap();
        let elf = Elf::parse(committed).expect("parse");
        let program = elf
            .sections
            .iter()
            .find(|s| s.name.starts_with(SECTION_PREFIX))
            .expect("program section")
            .index;
        let rel = elf
            .sections
            .iter()
            .find(|s| s.kind == super::super::elf::SHT_REL && s.info as usize == program)
            .expect("its relocations");
        let shoff = u64::from_le_bytes(committed[40..48].try_into().unwrap()) as usize;
        let header = shoff + 64 * rel.index;
        let data = rel.data.as_ptr() as usize - committed.as_ptr() as usize;
        let mut object = committed.to_vec();
        change(&mut object, header, data);
        object
    }

    #[test]
    fn program_relocations_are_all_applied_or_refused() {
        // SHT_RELA instead of SHT_REL: refused, not skipped.
        let rela = with_program_relocations(|o, header, _| o[header + 4] = 4);
        assert!(matches!(
            Object::parse(&rela),
            Err(LoadError::Unsupported(_))
        ));
        // A relocation that is not R_BPF_64_64 (here R_BPF_64_32, a call).
        let call = with_program_relocations(|o, _, data| o[data + 8] = 10);
        assert!(matches!(
            Object::parse(&call),
            Err(LoadError::Unsupported(_))
        ));
        // A partial entry at the end.
        let partial = with_program_relocations(|o, header, _| {
            let size = u64::from_le_bytes(o[header + 32..header + 40].try_into().unwrap());
            o[header + 32..header + 40].copy_from_slice(&(size - 1).to_le_bytes());
        });
        assert!(matches!(
            Object::parse(&partial),
            Err(LoadError::Malformed { .. })
        ));
        assert!(Object::parse(&with_program_relocations(|_, _, _| ())).is_ok());
    }
}

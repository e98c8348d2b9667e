//! A small loader for procexit's own BPF object: just what that object
//! needs, in place of a general-purpose BPF library.
//!
//! # Scope fence
//!
//! Supported, and nothing more: one ELF64 little-endian object; programs in
//! `tp_btf/<tracepoint>` sections (BTF-typed raw tracepoints, attached with
//! `BPF_RAW_TRACEPOINT_OPEN`), each a single function; BTF-defined maps in
//! `.maps` (hash, LRU hash, array, per-CPU array, ring buffer) referenced
//! by map relocations; CO-RE relocations of fields (offset, size,
//! existence), types and enumerators against the running kernel's
//! `/sys/kernel/btf/vmlinux`; the license section.
//!
//! Not supported, on purpose: BPF-to-BPF calls (subprograms), global data
//! (`.data`, `.rodata`, `.bss` maps), `extern` variables (kconfig, ksyms),
//! module BTF, kprobes, fentry/fexit, tracefs tracepoints, map pinning and
//! map-in-map. A program that needs any of these moves to a well-kept
//! loader (libbpf-rs, or aya with a clang-built object) instead of this one
//! growing: keep it this small. `tests/linux_core_parity.rs` holds its
//! relocations to libbpf's, instruction by instruction.
//!
//! - [`elf`]: sections, symbols and relocations of the ELF64 object;
//! - [`btf`]: BTF types and strings (the object's and the kernel's), and the
//!   CO-RE relocation records of `.BTF.ext`;
//! - [`object`]: programs, map definitions (BTF-defined `.maps`) and the
//!   license, read from the object;
//! - [`core`]: CO-RE relocations (fields, types, enumerators) against the
//!   running kernel's BTF: what is supported and what is refused is listed
//!   there;
//! - [`syscall`]: map creation, program load, attach and map access through
//!   the `bpf(2)` system call;
//! - [`ringbuf`]: the consumer side of a BPF ring buffer.
//!
//! Every parser works on `&[u8]` with bounds-checked reads and returns a
//! typed [`LoadError`]; nothing here panics on input.

pub(crate) mod btf;
pub(crate) mod core;
pub(crate) mod elf;
pub(crate) mod object;
pub(crate) mod ringbuf;
pub(crate) mod syscall;

/// Why the BPF object could not be read, relocated, loaded or attached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The object or a BTF blob is not what the parser expects.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which input: "ELF object", "BTF", "BTF.ext", "kernel BTF".
        what: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The object uses something this loader does not implement.
    #[error("unsupported by the loader: {0}")]
    Unsupported(String),
    /// A CO-RE relocation found no matching field in the kernel's BTF.
    #[error("program {program}: cannot relocate {field} against the kernel's BTF: {reason}")]
    Relocation {
        /// The BPF program (function) holding the access.
        program: String,
        /// The access as written in C, e.g. `task_struct.signal`.
        field: String,
        /// Why it failed.
        reason: &'static str,
    },
    /// A named item the object or the kernel should have is missing.
    #[error("{what} {name} not found")]
    Missing {
        /// Kind of item ("map", "program", "kernel BTF type").
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A file could not be read.
    #[error("cannot read {path} (os error {code})")]
    Read {
        /// The file.
        path: &'static str,
        /// errno.
        code: i32,
    },
    /// A `bpf(2)` or other system call failed.
    #[error("{call} for {name} failed (os error {code}){log}")]
    Os {
        /// The operation, e.g. "BPF_MAP_CREATE".
        call: &'static str,
        /// The map or program it was for.
        name: String,
        /// errno.
        code: i32,
        /// The verifier's log (empty, or starting with ": ").
        log: String,
    },
}

impl LoadError {
    /// The errno behind the error, 0 when no system call failed.
    pub(crate) fn code(&self) -> i32 {
        match self {
            LoadError::Read { code, .. } | LoadError::Os { code, .. } => *code,
            _ => 0,
        }
    }
}

/// Bounds-checked little-endian reads (BPF objects here are always
/// little-endian: `bpfel`, checked in the ELF header).
pub(crate) mod bytes {
    use super::LoadError;

    /// `len` bytes at `offset`, or `Malformed { what, detail }`.
    pub(crate) fn slice<'a>(
        data: &'a [u8],
        offset: usize,
        len: usize,
        what: &'static str,
        detail: &'static str,
    ) -> Result<&'a [u8], LoadError> {
        offset
            .checked_add(len)
            .and_then(|end| data.get(offset..end))
            .ok_or(LoadError::Malformed { what, detail })
    }

    fn array<const N: usize>(
        data: &[u8],
        offset: usize,
        what: &'static str,
        detail: &'static str,
    ) -> Result<[u8; N], LoadError> {
        let s = slice(data, offset, N, what, detail)?;
        <[u8; N]>::try_from(s).map_err(|_| LoadError::Malformed { what, detail })
    }

    pub(crate) fn u16_at(
        data: &[u8],
        offset: usize,
        what: &'static str,
        detail: &'static str,
    ) -> Result<u16, LoadError> {
        array(data, offset, what, detail).map(u16::from_le_bytes)
    }

    pub(crate) fn u32_at(
        data: &[u8],
        offset: usize,
        what: &'static str,
        detail: &'static str,
    ) -> Result<u32, LoadError> {
        array(data, offset, what, detail).map(u32::from_le_bytes)
    }

    pub(crate) fn u64_at(
        data: &[u8],
        offset: usize,
        what: &'static str,
        detail: &'static str,
    ) -> Result<u64, LoadError> {
        array(data, offset, what, detail).map(u64::from_le_bytes)
    }

    /// A `u32`/`u64` file field as `usize` (fails on 32-bit overflow).
    pub(crate) fn to_usize(
        v: impl TryInto<usize>,
        what: &'static str,
        detail: &'static str,
    ) -> Result<usize, LoadError> {
        v.try_into()
            .map_err(|_| LoadError::Malformed { what, detail })
    }

    /// The NUL-terminated UTF-8 string at `offset` of a string table.
    pub(crate) fn c_str<'a>(
        table: &'a [u8],
        offset: usize,
        what: &'static str,
    ) -> Result<&'a str, LoadError> {
        let rest = table.get(offset..).ok_or(LoadError::Malformed {
            what,
            detail: "string offset outside the string table",
        })?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(LoadError::Malformed {
                what,
                detail: "unterminated string",
            })?;
        let raw = rest.get(..end).unwrap_or_default();
        std::str::from_utf8(raw).map_err(|_| LoadError::Malformed {
            what,
            detail: "string is not UTF-8",
        })
    }
}

use std::os::fd::{AsFd, OwnedFd};

use self::btf::{kind, Btf};
use self::core::Target;
use self::object::{Object, Program};
use self::syscall::Map;

/// Where the running kernel describes its types.
pub(crate) const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads the kernel's BTF (a few MB).
pub(crate) fn read_kernel_btf() -> Result<Vec<u8>, LoadError> {
    std::fs::read(KERNEL_BTF).map_err(|e| LoadError::Read {
        path: KERNEL_BTF,
        code: e.raw_os_error().unwrap_or(0),
    })
}

/// Parses `object` and applies every program's CO-RE relocations against
/// `kernel_btf`, creating, loading and attaching nothing: all of the
/// loader that reads untrusted bytes, for the fuzz targets. Returns the
/// number of programs.
pub(crate) fn relocate_object(object: &[u8], kernel_btf: &[u8]) -> Result<usize, LoadError> {
    relocated_programs(object, kernel_btf).map(|programs| programs.len())
}

/// A program's C function name and its instructions (8 bytes each).
pub(crate) type ProgramInsns = (String, Vec<[u8; 8]>);

/// Each program of `object` (C function name) with its instructions after
/// the CO-RE relocations against `kernel_btf` (map references are still
/// unpatched: they get their descriptors when the program is loaded).
pub(crate) fn relocated_programs(
    object: &[u8],
    kernel_btf: &[u8],
) -> Result<Vec<ProgramInsns>, LoadError> {
    let object = Object::parse(object)?;
    let names = core::root_names(&object.btf, &object.programs)?;
    let kernel = Target::new(Btf::parse(kernel_btf, "kernel BTF")?, &names)?;
    let mut out = Vec::with_capacity(object.programs.len());
    for program in &object.programs {
        let mut program = program.clone();
        core::relocate(&mut program, &object.btf, &kernel)?;
        let insns = program.insns.iter().map(|i| i.to_bytes()).collect();
        out.push((program.name, insns));
    }
    Ok(out)
}

/// The `.BTF` section of an ELF object, if it parses that far.
pub(crate) fn object_btf(object: &[u8]) -> Option<&[u8]> {
    elf::Elf::parse(object)
        .ok()?
        .section(".BTF")
        .map(|s| s.data)
}

/// An attached program. Dropping it detaches the program.
#[derive(Debug)]
pub(crate) struct Link {
    _link: OwnedFd,
    _program: OwnedFd,
}

/// The object with its maps created, ready to load programs from.
pub(crate) struct Collection<'o, 'k> {
    object: Object<'o>,
    kernel: Target<'k>,
    maps: Vec<Map>,
}

impl<'o, 'k> Collection<'o, 'k> {
    /// Parses `object`, indexes `kernel_btf` for it and creates every map
    /// (with `max_entries` replaced for the maps named in `sizes`).
    pub(crate) fn open(
        object: &'o [u8],
        kernel_btf: &'k [u8],
        sizes: &[(&str, u32)],
    ) -> Result<Collection<'o, 'k>, LoadError> {
        let object = Object::parse(object)?;
        let mut names = core::root_names(&object.btf, &object.programs)?;
        let hooks: Vec<String> = object
            .programs
            .iter()
            .map(|p| format!("btf_trace_{}", p.tracepoint))
            .collect();
        names.extend(hooks.iter().map(String::as_str));
        let kernel = Target::new(Btf::parse(kernel_btf, "kernel BTF")?, &names)?;
        let mut maps = Vec::with_capacity(object.maps.len());
        for def in &object.maps {
            let mut def = def.clone();
            if let Some((_, size)) = sizes.iter().find(|(name, _)| *name == def.name) {
                def.max_entries = *size;
            }
            maps.push(Map::create(&def)?);
        }
        Ok(Collection {
            object,
            kernel,
            maps,
        })
    }

    /// The map called `name`.
    pub(crate) fn map(&self, name: &str) -> Result<&Map, LoadError> {
        self.maps
            .iter()
            .find(|m| m.def.name == name)
            .ok_or_else(|| LoadError::Missing {
                what: "map",
                name: name.to_owned(),
            })
    }

    /// Takes the map called `name` out (programs loaded earlier keep
    /// their own reference to it).
    pub(crate) fn take_map(&mut self, name: &str) -> Result<Map, LoadError> {
        let index = self
            .maps
            .iter()
            .position(|m| m.def.name == name)
            .ok_or_else(|| LoadError::Missing {
                what: "map",
                name: name.to_owned(),
            })?;
        Ok(self.maps.remove(index))
    }

    /// Relocates, loads and attaches the program (C function) `name`.
    pub(crate) fn attach(&self, name: &str) -> Result<Link, LoadError> {
        let mut program = self
            .object
            .programs
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| LoadError::Missing {
                what: "program",
                name: name.to_owned(),
            })?;
        core::relocate(&mut program, &self.object.btf, &self.kernel)?;
        for (index, map_name) in &program.map_refs {
            let map = self.map(map_name)?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&map.as_fd());
            if let Some(insn) = program.insns.get_mut(*index) {
                // src_reg = BPF_PSEUDO_MAP_FD: the immediate is a map fd.
                insn.regs = (insn.regs & 0x0f) | (1 << 4);
                insn.imm = fd;
            }
            if let Some(next) = program.insns.get_mut(index + 1) {
                next.imm = 0;
            }
        }
        let hook = format!("btf_trace_{}", program.tracepoint);
        let attach_btf_id = self
            .kernel
            .find(&hook, kind::TYPEDEF)?
            .ok_or(LoadError::Missing {
                what: "kernel tracepoint",
                name: program.tracepoint.clone(),
            })?;
        let fd = load(&program, &self.object.license, attach_btf_id)?;
        let link = syscall::attach_tracing(&program.name, fd.as_fd())?;
        Ok(Link {
            _link: link,
            _program: fd,
        })
    }
}

/// Loads a relocated program; a verifier refusal of a poisoned
/// instruction becomes the error naming the field the kernel lacks.
fn load(program: &Program, license: &str, attach_btf_id: u32) -> Result<OwnedFd, LoadError> {
    syscall::load_tracing_program(&program.name, &program.insns, license, attach_btf_id).map_err(
        |e| match e {
            // The verifier reached an access the kernel has no field for.
            LoadError::Os { ref log, .. }
                if !program.poisoned.is_empty() && log.contains(&core::POISON_IMM.to_string()) =>
            {
                let reason = match program.poisoned.first() {
                    Some((_, first)) if program.poisoned.iter().all(|(_, r)| r == first) => first,
                    _ => "several relocations failed in the running kernel",
                };
                LoadError::Relocation {
                    program: program.name.clone(),
                    field: program
                        .poisoned
                        .iter()
                        .map(|(field, _)| field.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    reason,
                }
            }
            other => other,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::object::Insn;
    use super::*;

    /// The kernel's BTF and the attach id of `sched_process_exit`, when
    /// this process may load BPF (else skipped, or failed under
    /// PROCEXIT_STRICT_SKIPS).
    fn exit_hook() -> Option<u32> {
        if let Err(missing) = super::super::ebpf::permission() {
            crate::test_skip::skip(&format!("loading BPF needs {missing}"));
            return None;
        }
        let kernel = read_kernel_btf().expect("kernel BTF");
        let name = "btf_trace_sched_process_exit";
        let target =
            Target::new(Btf::parse(&kernel, "kernel BTF").expect("parse"), &[name]).expect("index");
        target.find(name, kind::TYPEDEF).expect("find")
    }

    fn program(insns: Vec<Insn>, poisoned: &[&str]) -> Program {
        Program {
            name: "probe".into(),
            tracepoint: "sched_process_exit".into(),
            insns,
            map_refs: Vec::new(),
            core_relos: Vec::new(),
            poisoned: poisoned
                .iter()
                .map(|s| ((*s).to_owned(), core::NOT_FOUND))
                .collect(),
        }
    }

    const EXIT: Insn = Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    };
    /// r0 = 0
    const R0_ZERO: Insn = Insn {
        code: 0xb7,
        regs: 0,
        off: 0,
        imm: 0,
    };

    #[test]
    fn a_rejected_program_brings_the_verifier_log_or_the_missing_field() {
        let Some(id) = exit_hook() else { return };
        // Accepted: r0 = 0; exit.
        load(&program(vec![R0_ZERO, EXIT], &[]), "GPL", id).expect("trivial program");
        // Refused: r0 read from above the stack frame.
        let read_above_stack = Insn {
            code: 0x79,
            regs: 10 << 4,
            off: 8,
            imm: 0,
        };
        match load(&program(vec![read_above_stack, EXIT], &[]), "GPL", id) {
            Err(LoadError::Os { code, log, .. }) => {
                assert!(code == 13 || code == 22, "errno {code}");
                assert!(log.contains("verifier log"), "{log}");
            }
            other => panic!("{other:?}"),
        }
        // A reachable poisoned instruction names the field.
        let poison = Insn {
            code: 0x85,
            regs: 0,
            off: 0,
            imm: core::POISON_IMM,
        };
        match load(
            &program(vec![poison, R0_ZERO, EXIT], &["task_struct.gone"]),
            "GPL",
            id,
        ) {
            Err(LoadError::Relocation { field, .. }) => assert_eq!(field, "task_struct.gone"),
            other => panic!("{other:?}"),
        }
        // One behind a branch the verifier knows is never taken loads
        // (r0 = 0; if r0 == 0 goto exit; poison; exit), as code behind a
        // failed bpf_core_field_exists() does.
        let skip_if_zero = Insn {
            code: 0x15,
            regs: 0,
            off: 1,
            imm: 0,
        };
        let dead = vec![R0_ZERO, skip_if_zero, poison, EXIT];
        load(&program(dead, &["task_struct.gone"]), "GPL", id).expect("dead poisoned code");
    }
    use crate::test_rng::xorshift;

    /// Damaged objects (random bytes overwritten) parse to an error or to
    /// something the relocator handles, never to a panic. The object's own
    /// BTF stands in for the kernel's.
    #[test]
    fn damaged_objects_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            let mut data = object::object().unwrap().to_vec();
            state = xorshift(state);
            for _ in 0..(state % 16 + 1) {
                state = xorshift(state);
                let at = usize::try_from(state % data.len() as u64).unwrap_or(0);
                state = xorshift(state);
                if let Some(b) = data.get_mut(at) {
                    *b = state as u8;
                }
            }
            let Ok(object) = Object::parse(&data) else {
                continue;
            };
            let Ok(names) = core::root_names(&object.btf, &object.programs) else {
                continue;
            };
            let Some(btf) = object_btf(&data) else {
                continue;
            };
            let Ok(kernel) = Btf::parse(btf, "kernel BTF").and_then(|b| Target::new(b, &names))
            else {
                continue;
            };
            for program in &object.programs {
                let mut program = program.clone();
                let _ = core::relocate(&mut program, &object.btf, &kernel);
            }
        }
    }

    /// The fuzz entry relocates the committed object against its own BTF
    /// (so mutations of it reach the relocations), and refuses other bytes.
    #[test]
    fn the_fuzz_entry_reaches_the_relocations() {
        let btf = object_btf(object::object().unwrap()).expect(".BTF");
        let programs = Object::parse(object::object().unwrap())
            .expect("object")
            .programs
            .len();
        assert_eq!(
            relocate_object(object::object().unwrap(), btf).expect("relocates"),
            programs
        );
        assert!(relocate_object(btf, btf).is_err());
        assert!(relocate_object(object::object().unwrap(), object::object().unwrap()).is_err());
    }

    /// Loads the whole object against this kernel as `ebpf.rs` does, when
    /// allowed (the end-to-end tests in tests/linux_ebpf.rs cover records).
    #[test]
    fn every_program_relocates_against_this_kernel() {
        let Ok(kernel) = read_kernel_btf() else {
            if std::env::var_os("PROCEXIT_STRICT_SKIPS").is_some() {
                panic!("no {KERNEL_BTF}");
            }
            eprintln!("skipped: no {KERNEL_BTF}");
            return;
        };
        let object = Object::parse(object::object().unwrap()).expect("object");
        let names = core::root_names(&object.btf, &object.programs).expect("names");
        let target = Target::new(
            Btf::parse(&kernel, "kernel BTF").expect("kernel BTF"),
            &names,
        )
        .expect("index");
        for program in &object.programs {
            let mut patched = program.clone();
            core::relocate(&mut patched, &object.btf, &target).expect(&program.name);
            assert_ne!(patched.insns, program.insns, "{} unchanged", program.name);
        }
    }
}

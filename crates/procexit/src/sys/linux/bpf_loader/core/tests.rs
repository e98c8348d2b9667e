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
    let target =
        Target::new(Btf::parse(&target, "kernel BTF").expect("target"), &["s"]).expect("target");
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
    let target =
        Target::new(Btf::parse(&target, "kernel BTF").expect("target"), &["s"]).expect("target");

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
    let kernel =
        Target::new(Btf::parse(&kernel, "kernel BTF").expect("kernel"), &["e"]).expect("target");
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

    fn add(&mut self, name: &str, k: u8, flag: bool, vlen: u16, size: u32, extra: &[u32]) -> u32 {
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
    let target =
        Target::new(Btf::parse(&target, "kernel BTF").expect("target"), &["s"]).expect("target");
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

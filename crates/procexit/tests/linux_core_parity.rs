//! procexit's BPF loader against libbpf on the running kernel: the
//! committed object is relocated by both, and every instruction must come
//! out the same, except the map references (libbpf has put map
//! descriptors into them; procexit does that when it loads a program).
//! libbpf's loading needs root (or CAP_BPF + CAP_PERFMON) and the C
//! compiler and libbpf-dev that scripts/test.sh installs; without them
//! the test prints why and skips, unless PROCEXIT_STRICT_SKIPS=1.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use procexit::unstable::bpf;

fn skip(reason: &str) {
    let strict = std::env::var("PROCEXIT_STRICT_SKIPS").is_ok_and(|v| v == "1");
    assert!(!strict, "PROCEXIT_STRICT_SKIPS=1 but: {reason}");
    eprintln!("SKIPPED: {reason}");
}

/// One instruction as (code, regs, off, imm).
type Insn = (u8, u8, i16, i32);

fn decode(bytes: &[u8; 8]) -> Insn {
    (
        bytes[0],
        bytes[1],
        i16::from_le_bytes([bytes[2], bytes[3]]),
        i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    )
}

/// The helper's output: program name → instructions.
fn parse(output: &str) -> BTreeMap<String, Vec<Insn>> {
    let mut programs = BTreeMap::new();
    let mut current = None;
    for line in output.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["program", name, _] => {
                current = Some(name.to_string());
                programs.insert(name.to_string(), Vec::new());
            }
            [_, code, regs, off, imm] => {
                let insn = (
                    u8::from_str_radix(code, 16).unwrap(),
                    u8::from_str_radix(regs, 16).unwrap(),
                    off.parse().unwrap(),
                    imm.parse().unwrap(),
                );
                let name = current.as_ref().expect("a program line first");
                programs.get_mut(name).unwrap().push(insn);
            }
            _ => panic!("unexpected helper output: {line}"),
        }
    }
    programs
}

#[test]
fn relocations_match_libbpf_on_this_kernel() {
    if !Path::new("/usr/include/bpf/libbpf.h").exists() {
        return skip("no libbpf headers (apt-get install libbpf-dev)");
    }
    let kernel_btf = match bpf::kernel_btf() {
        Ok(btf) => btf,
        Err(e) => return skip(&format!("no kernel BTF: {e}")),
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let helper = dir.join("libbpf_relocate");
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/libbpf_relocate.c"
    );
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&helper)
        .arg(source)
        .arg("-lbpf")
        .status()
        .expect("cc (scripts/test.sh installs gcc)");
    assert!(status.success(), "cannot build the libbpf helper");
    let object = dir.join("procexit.bpf.o");
    std::fs::write(&object, bpf::object()).unwrap();
    let output = Command::new(&helper).arg(&object).output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // Unprivileged, libbpf cannot create the maps or load.
        if log.contains("Operation not permitted") {
            return skip(&format!(
                "libbpf may not load BPF here: {}",
                log.lines().last().unwrap_or("")
            ));
        }
        panic!("libbpf failed to load the object:\n{log}");
    }
    let theirs = parse(&String::from_utf8(output.stdout).unwrap());
    let ours: BTreeMap<String, Vec<Insn>> = bpf::relocated_programs(bpf::object(), &kernel_btf)
        .expect("procexit relocates the object")
        .into_iter()
        .map(|(name, insns)| (name, insns.iter().map(decode).collect()))
        .collect();
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    let mut compared = 0;
    let mut map_references = 0;
    for (name, their_insns) in &theirs {
        let our_insns = &ours[name];
        assert_eq!(
            their_insns.len(),
            our_insns.len(),
            "{name}: instruction count"
        );
        for (index, (theirs, ours)) in their_insns.iter().zip(our_insns).enumerate() {
            // ld_imm64 with src_reg BPF_PSEUDO_MAP_FD (1): a map descriptor.
            let map_reference = theirs.0 == 0x18 && theirs.1 >> 4 == 1;
            if map_reference
                || index > 0
                    && their_insns[index - 1].0 == 0x18
                    && their_insns[index - 1].1 >> 4 == 1
            {
                map_references += 1;
                continue;
            }
            assert_eq!(
                theirs, ours,
                "{name}: instruction {index} differs from libbpf's"
            );
            compared += 1;
        }
    }
    // libbpf's log counts what it rewrote: each must be one we compared.
    let patched = log.matches("patched insn").count();
    let poisoned = log.matches("w/ invalid insn").count();
    eprintln!(
        "{compared} instructions equal to libbpf's ({patched} patched and {poisoned} poisoned by \
         libbpf), {map_references} map-reference slots skipped"
    );
    assert!(
        patched > 20,
        "libbpf patched only {patched} instructions:\n{log}"
    );
}

//! Packs two large constants into DEFLATE streams the library embeds
//! instead, inflated on first use:
//! - the committed BPF object (`src/sys/linux/bpf/procexit.bpf.o`): about
//!   16 KB instead of 87 KB in every binary. The object itself stays
//!   committed and is what `scripts/build-bpf.sh --check` compares with its
//!   C source;
//! - the text of the exit-code names in `src/ntstatus_names.rs` (generated
//!   by `scripts/gen-ntstatus.sh`; its `*_TEXT` statics, one quoted name a
//!   line): about 25 KB instead of 106 KB. The tables' indexes stay as
//!   they are.
//!
//! Unit tests check that each packed copy inflates to exactly its source.

use std::path::Path;

fn main() {
    let object = Path::new("src/sys/linux/bpf/procexit.bpf.o");
    println!("cargo:rerun-if-changed={}", object.display());
    let out = std::env::var_os("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out);
    let bytes = std::fs::read(object).unwrap_or_else(|e| panic!("{}: {e}", object.display()));
    let packed = miniz_oxide::deflate::compress_to_vec(&bytes, 10);
    std::fs::write(out.join("procexit.bpf.o.deflate"), packed).unwrap();
    std::fs::write(out.join("procexit.bpf.o.len"), bytes.len().to_string()).unwrap();

    let table = Path::new("src/ntstatus_names.rs");
    println!("cargo:rerun-if-changed={}", table.display());
    let source =
        std::fs::read_to_string(table).unwrap_or_else(|e| panic!("{}: {e}", table.display()));
    let texts = name_texts(&source);
    assert_eq!(
        texts.len(),
        2,
        "{}: expected NTSTATUS_TEXT and WIN32_ERROR_TEXT",
        table.display()
    );
    let all = texts.concat();
    let packed = miniz_oxide::deflate::compress_to_vec(all.as_bytes(), 10);
    std::fs::write(out.join("status_names.deflate"), packed).unwrap();
    std::fs::write(
        out.join("status_names.len"),
        format!("({}, {})", texts[0].len(), all.len()),
    )
    .unwrap();
}

/// The `*_TEXT: &str = concat!(` blocks of the generated table, in file
/// order, each as its names back to back.
fn name_texts(source: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        if line.contains("_TEXT: &str = concat!(") {
            current = Some(String::new());
            continue;
        }
        let Some(text) = current.as_mut() else {
            continue;
        };
        let line = line.trim();
        if line == ");" {
            texts.extend(current.take());
            continue;
        }
        let name = line
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix("\","))
            .unwrap_or_else(|| panic!("not a generated name line: {line}"));
        text.push_str(name);
    }
    texts
}

//! Packs `generated/` (help texts, completion scripts, man pages: about
//! 110 KB of text that changes only with the flags) into one DEFLATE stream
//! the binary embeds, about 12 KB; `src/docs.rs` inflates what a command
//! prints. The files stay committed as they are (packagers take them, the
//! drift test compares them).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new("generated");
    println!("cargo:rerun-if-changed=generated");
    let mut files = Vec::new();
    for dir in ["help", "completions", "man"] {
        let dir_path = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir_path.display());
        let mut names: Vec<String> = std::fs::read_dir(&dir_path)
            .unwrap_or_else(|e| panic!("{}: {e}", dir_path.display()))
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for name in names {
            let path = dir_path.join(&name);
            println!("cargo:rerun-if-changed={}", path.display());
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            files.push((format!("{dir}/{name}"), text));
        }
    }
    let mut all = String::new();
    let mut index = String::from(
        "/// `(path under generated/, start, end)` in the inflated text.\n\
         pub const FILES: &[(&str, usize, usize)] = &[\n",
    );
    for (path, text) in &files {
        let start = all.len();
        all.push_str(text);
        writeln!(index, "    ({path:?}, {start}, {}),", all.len()).unwrap();
    }
    index.push_str("];\n");
    writeln!(
        index,
        "/// The inflated text's length.\npub const LEN: usize = {};",
        all.len()
    )
    .unwrap();
    let packed = miniz_oxide::deflate::compress_to_vec(all.as_bytes(), 10);
    let out = std::env::var_os("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out);
    std::fs::write(out.join("generated.deflate"), packed).unwrap();
    std::fs::write(out.join("generated_index.rs"), index).unwrap();
}

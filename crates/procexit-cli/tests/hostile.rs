//! Process names and command lines are chosen by whoever starts the process
//! (or wrote the .etl file). The table must show them escaped, one row per
//! exit; JSON must carry them exactly.

mod common;
use common::procexit;

/// Checks that table output can act on no terminal: no control character
/// but the line ends, no C1 control, no bidi control.
fn assert_inert(stdout: &[u8]) {
    let text = std::str::from_utf8(stdout).expect("the table is UTF-8");
    for (i, line) in text.lines().enumerate() {
        let bad = line.chars().find(|&c| {
            c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        });
        assert!(bad.is_none(), "line {i} holds {bad:?}: {line:?}");
    }
    assert!(!text.contains('\r'));
}

/// Rows of a table: every line but the header.
fn rows(stdout: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stdout);
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    // `DATE TIME(UTC)` in replay, whose rows carry their date.
    assert!(
        header.starts_with("TIME(UTC)") || header.starts_with("DATE TIME(UTC)"),
        "{header}"
    );
    lines.map(str::to_string).collect()
}

/// Traces built byte by byte (one copy, shared with the library's benches).
#[path = "../../procexit/tests/support/etl_builder.rs"]
mod etl;

#[test]
fn replay_escapes_hostile_names_and_command_lines() {
    let utf16 = |s: &str| s.encode_utf16().collect::<Vec<u16>>();
    let title = utf16("x.exe \u{1b}]0;pwned\u{7}\u{1b}[31mRED");
    let lines = utf16("x.exe one\r\nTIME(UTC) forged row");
    // An unpaired surrogate (not valid UTF-16), a right-to-left override and
    // a C1 CSI.
    let mut invalid = utf16("x.exe ");
    invalid.extend([0xd800, u16::from(b'!')]);
    invalid.extend(utf16("\u{202e}gpj.exe \u{9b}2J"));
    // An event holds at most 64 KiB, so this is the longest command line
    // a trace can carry.
    let long = utf16(&format!("x.exe {}\u{1b}[2J end", "A".repeat(30_000)));
    let end = |pid, image: &'static [u8], command_line| etl::Process {
        opcode: etl::OPCODE_END,
        pid,
        ppid: 4,
        exit_status: 3,
        image,
        command_line,
        sid: false,
    };
    let ends = [
        end(101, b"t\x1b]0;t\x07.exe", &title[..]),
        // Latin-1 0x9b is the C1 CSI.
        end(102, b"c1\x9b31m.exe", &lines[..]),
        end(103, b"bidi.exe", &invalid[..]),
        end(104, b"long.exe", &long[..]),
    ];
    let dir = std::env::temp_dir().join(format!("procexit-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hostile.etl");
    std::fs::write(&file, etl::trace(&ends)).unwrap();

    let json = procexit()
        .args(["replay", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(json.status.success(), "{json:?}");
    let exits: Vec<serde_json::Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exits.len(), 4, "{exits:?}");
    let expected_json = [
        ("t\u{1b}]0;t\u{7}.exe", String::from_utf16_lossy(&title)),
        ("c1\u{9b}31m.exe", String::from_utf16_lossy(&lines)),
        ("bidi.exe", String::from_utf16_lossy(&invalid)),
        ("long.exe", String::from_utf16_lossy(&long)),
    ];
    for (exit, (name, command_line)) in exits.iter().zip(&expected_json) {
        assert_eq!(exit["name"], *name);
        assert_eq!(exit["command_line"], **command_line);
    }
    assert!(exits[2]["command_line"]
        .as_str()
        .unwrap()
        .contains("x.exe \u{fffd}!"));

    let table = procexit().arg("replay").arg(&file).output().unwrap();
    assert!(table.status.success(), "{table:?}");
    assert_inert(&table.stdout);
    let rows = rows(&table.stdout);
    assert_eq!(rows.len(), 4, "one row per exit: {rows:#?}");
    assert!(rows[0].contains(r"t\e]0;t\a.exe"), "{}", rows[0]);
    assert!(
        rows[0].ends_with(r"x.exe \e]0;pwned\a\e[31mRED"),
        "{}",
        rows[0]
    );
    assert!(rows[1].contains(r"c1\u{9b}31m.exe"), "{}", rows[1]);
    assert!(
        rows[1].ends_with(r"x.exe one\r\nTIME(UTC) forged row"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].ends_with(r"x.exe \u{fffd}!\u{202e}gpj.exe \u{9b}2J"),
        "{}",
        rows[2]
    );
    // Not cut: stdout is not a terminal.
    assert!(
        rows[3].ends_with(&format!(r"x.exe {}\e[2J end", "A".repeat(30_000))),
        "{} bytes",
        rows[3].len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::ffi::{OsStr, OsString};
    use std::io::{BufRead, BufReader};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;
    use std::process::Command;
    use std::process::{Output, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use crate::common::connector_usable;

    /// A copy of /bin/sh whose file name (and so process name) is `name`.
    fn shell_named(dir: &std::path::Path, name: &[u8]) -> PathBuf {
        let path = dir.join(OsStr::from_bytes(name));
        std::fs::copy("/bin/sh", &path).unwrap();
        path
    }

    struct Case {
        shell: PathBuf,
        args: Vec<OsString>,
        /// The command line as JSON must carry it.
        json_command_line: String,
        /// The end of its table row.
        table_tail: String,
        /// The name as the table shows it.
        table_name: String,
    }

    fn cases(dir: &std::path::Path) -> Vec<Case> {
        let script = "sleep 0.2; exit 3";
        let mk =
            |shell: PathBuf, extra: Vec<u8>, json_extra: &str, table_extra: &str, name: &str| {
                let shell_text = shell.to_str().unwrap_or("").to_string();
                let _ = shell_text;
                let argv0 = shell.as_os_str().to_owned();
                let argv0_text = String::from_utf8_lossy(argv0.as_bytes()).into_owned();
                Case {
                    args: vec![
                        OsString::from("-c"),
                        OsString::from(script),
                        OsString::from_vec(extra),
                    ],
                    json_command_line: format!("{argv0_text} -c {script} {json_extra}"),
                    table_tail: format!("-c {script} {table_extra}"),
                    table_name: name.to_string(),
                    shell,
                }
            };
        vec![
            mk(
                shell_named(dir, b"hxtitle"),
                b"\x1b]0;pwned\x07\x1b[31mRED".to_vec(),
                "\u{1b}]0;pwned\u{7}\u{1b}[31mRED",
                r"\e]0;pwned\a\e[31mRED",
                "hxtitle",
            ),
            mk(
                shell_named(dir, b"hx\x1b[31mred"),
                b"one\r\nforged row".to_vec(),
                "one\r\nforged row",
                r"one\r\nforged row",
                r"hx\e[31mred",
            ),
            mk(
                shell_named(dir, b"hxbytes\xff"),
                b"bad\xff\xfe \xe2\x80\xaegpj.exe \xc2\x9b2J".to_vec(),
                "bad\u{fffd}\u{fffd} \u{202e}gpj.exe \u{9b}2J",
                r"bad\u{fffd}\u{fffd} \u{202e}gpj.exe \u{9b}2J",
                r"hxbytes\u{fffd}",
            ),
            mk(
                shell_named(dir, b"hxlong"),
                format!("{}\x1b[2J", "B".repeat(100_000)).into_bytes(),
                &format!("{}\u{1b}[2J", "B".repeat(100_000)),
                &format!(r"{}\e[2J", "B".repeat(100_000)),
                "hxlong",
            ),
        ]
    }

    /// Runs `watch` with `args` until it has seen `count` hostile exits,
    /// starting the hostile processes again and again meanwhile (the first
    /// ones may come before the watcher is ready).
    fn watch_hostile(extra: &[&str], cases: &[Case], count: usize) -> Output {
        // The connector source: it reads whole command lines from /proc, where
        // the eBPF source keeps 2 KiB (the 100 000-byte case would be cut).
        let watch = procexit()
            .args(["watch", "--source", "connector", "--name", "hx*"])
            .args(["--count", &count.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        std::thread::scope(|scope| {
            let flag = done.clone();
            scope.spawn(move || {
                for _ in 0..40 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let children: Vec<_> = cases
                        .iter()
                        .map(|c| Command::new(&c.shell).args(&c.args).spawn().unwrap())
                        .collect();
                    for mut child in children {
                        child.wait().unwrap();
                    }
                }
            });
            let out = watch.wait_with_output().unwrap();
            done.store(true, Ordering::Relaxed);
            out
        })
    }

    #[test]
    fn watch_escapes_hostile_names_and_command_lines() {
        if !connector_usable() {
            return;
        }
        let dir =
            std::env::temp_dir().join(format!("procexit-hostile-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = cases(&dir);
        // Two rounds' worth, so every case is seen at least once after the
        // watcher started.
        let count = 2 * cases.len();

        let table = watch_hostile(&[], &cases, count);
        assert!(table.status.success(), "{table:?}");
        assert_inert(&table.stdout);
        let rows = rows(&table.stdout);
        assert_eq!(rows.len(), count, "one row per exit: {rows:#?}");
        for case in &cases {
            let row = rows
                .iter()
                .find(|r| r.ends_with(&case.table_tail))
                .unwrap_or_else(|| panic!("no row ends with {:.80}…: {rows:#?}", case.table_tail));
            assert!(
                row.contains(&format!(" {} ", case.table_name)),
                "name {} missing in {row:.300}",
                case.table_name
            );
        }

        let json = watch_hostile(&["--json"], &cases, count);
        assert!(json.status.success(), "{json:?}");
        let exits: Vec<serde_json::Value> = BufReader::new(&json.stdout[..])
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .filter(|v: &serde_json::Value| v["type"] == "exit")
            .collect();
        assert_eq!(exits.len(), count);
        for case in &cases {
            assert!(
                exits
                    .iter()
                    .any(|e| e["command_line"].as_str() == Some(&case.json_command_line)),
                "no exact command line {:.80}…",
                case.json_command_line
            );
        }
        assert!(exits.iter().any(|e| e["name"] == "hx\u{1b}[31mred"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

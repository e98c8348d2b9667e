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
    assert!(header.starts_with("TIME(UTC)"), "{header}");
    lines.map(str::to_string).collect()
}

/// A minimal Windows kernel trace, built here byte by byte: one buffer with
/// the logfile header record and kernel Process End events (version 4,
/// 64-bit) whose image names and command lines are given.
mod etl {
    const BUFFER_HEADER: usize = 72;
    /// FILETIME of 2020-01-01T00:00:00Z.
    pub const START: u64 = 132_223_104_000_000_000;

    fn system_record(group: u8, opcode: u8, version: u16, time: i64, payload: &[u8]) -> Vec<u8> {
        let size = 32 + payload.len();
        let size = u16::try_from(size).expect("a record fits in 64 KiB");
        let mut r = Vec::new();
        r.extend(version.to_le_bytes());
        r.push(0x02); // SYSTEM_TRACE_HEADER, 64-bit
        r.push(0xc0); // trace header marker
        r.extend(size.to_le_bytes());
        r.push(opcode);
        r.push(group);
        r.extend(1u32.to_le_bytes()); // thread id
        r.extend(4u32.to_le_bytes()); // process id
        r.extend(time.to_le_bytes());
        r.extend([0u8; 8]); // kernel and user time
        r.extend_from_slice(payload);
        while r.len() % 8 != 0 {
            r.push(0);
        }
        r
    }

    fn utf16z(units: &[u16]) -> Vec<u8> {
        units
            .iter()
            .chain(&[0])
            .flat_map(|u| u.to_le_bytes())
            .collect()
    }

    fn logfile_header() -> Vec<u8> {
        let mut p = Vec::new();
        p.extend((64u32 << 10).to_le_bytes()); // buffer size
        p.extend([10, 0, 0, 0]); // Windows 10
        p.extend(19045u32.to_le_bytes()); // build
        p.extend(2u32.to_le_bytes()); // processors
        p.extend((START + 600_000_000).to_le_bytes()); // end time
        p.extend(156_250u32.to_le_bytes()); // timer resolution
        p.extend(0u32.to_le_bytes()); // maximum file size
        p.extend(0u32.to_le_bytes()); // log file mode: not compressed
        p.extend(1u32.to_le_bytes()); // buffers written
        p.extend(0u32.to_le_bytes()); // start buffers
        p.extend(8u32.to_le_bytes()); // pointer size
        p.extend(0u32.to_le_bytes()); // events lost
        p.extend(3000u32.to_le_bytes()); // CPU MHz
        p.extend([0u8; 16]); // logger and file name pointers
        p.extend([0u8; 176]); // time zone and padding
        p.extend(START.to_le_bytes()); // boot time
        p.extend(10_000_000u64.to_le_bytes()); // perf frequency
        p.extend(START.to_le_bytes()); // start time
        p.extend(2u32.to_le_bytes()); // clock: system time
        p.extend(0u32.to_le_bytes()); // buffers lost
        p.extend(utf16z(&"hostile".encode_utf16().collect::<Vec<_>>()));
        p.extend(utf16z(&"hostile.etl".encode_utf16().collect::<Vec<_>>()));
        p
    }

    /// A Process End: `image` as raw bytes (the kernel writes it in the ANSI
    /// code page; read as Latin-1), `command_line` as raw UTF-16 units.
    pub struct End<'a> {
        pub pid: u32,
        pub image: &'a [u8],
        pub command_line: &'a [u16],
    }

    fn end_payload(end: &End<'_>) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend((0xffff_c58a_0000_0000u64 | u64::from(end.pid)).to_le_bytes());
        p.extend(end.pid.to_le_bytes());
        p.extend(4u32.to_le_bytes()); // parent
        p.extend(1u32.to_le_bytes()); // session
        p.extend(3i32.to_le_bytes()); // exit status
        p.extend(0x1aa_0000u64.to_le_bytes()); // directory table base
        p.extend(0u32.to_le_bytes()); // flags
        p.extend([0u8; 4]); // no SID
        p.extend_from_slice(end.image);
        p.push(0);
        p.extend(utf16z(end.command_line));
        p.extend(utf16z(&[])); // package full name
        p.extend(utf16z(&[])); // application id
        p
    }

    pub fn trace(ends: &[End<'_>]) -> Vec<u8> {
        let mut records = system_record(0, 0, 2, 0, &logfile_header());
        for (i, end) in ends.iter().enumerate() {
            let time = 10_000_000 * (i as i64 + 1);
            records.extend(system_record(3, 2, 4, time, &end_payload(end)));
        }
        let filled = BUFFER_HEADER + records.len();
        let size = filled.next_multiple_of(4096);
        let mut buffer = vec![0u8; BUFFER_HEADER];
        buffer[0..4].copy_from_slice(&(size as u32).to_le_bytes());
        buffer[0x30..0x34].copy_from_slice(&(filled as u32).to_le_bytes());
        buffer.extend(records);
        buffer.resize(size, 0xff);
        buffer
    }
}

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
    let ends = [
        etl::End {
            pid: 101,
            image: b"t\x1b]0;t\x07.exe",
            command_line: &title,
        },
        etl::End {
            // Latin-1 0x9b is the C1 CSI.
            pid: 102,
            image: b"c1\x9b31m.exe",
            command_line: &lines,
        },
        etl::End {
            pid: 103,
            image: b"bidi.exe",
            command_line: &invalid,
        },
        etl::End {
            pid: 104,
            image: b"long.exe",
            command_line: &long,
        },
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

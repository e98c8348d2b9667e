//! JSON Lines output: `exit` objects written directly, every other message
//! through the library's `Serialize` implementation.
//!
//! An exit is by far the most frequent line, and through serde every one of
//! its 31 keys goes through the generic string escaper. Here the keys are
//! constants and only the values are escaped. The output is byte for byte
//! what `serde_json` writes for the same `Message` (the tests compare the
//! two), so the schema stays the library's.

use std::io;
use std::time::Duration;

use procexit::schema::Message;
use procexit::{format_rfc3339, ProcessExit};

/// Appends `message` as one JSON object (no newline).
pub fn write_message(out: &mut Vec<u8>, message: &Message<'_>) -> io::Result<()> {
    match message {
        Message::Exit(exit) => {
            write_exit(out, exit);
            Ok(())
        }
        other => serde_json::to_writer(out, other).map_err(io::Error::other),
    }
}

fn write_exit(out: &mut Vec<u8>, exit: &ProcessExit) {
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let resources = &exit.resources;
    out.extend_from_slice(br#"{"type":"exit","pid":"#);
    number(out, exit.pid);
    key(out, "ppid");
    optional(out, exit.ppid, number);
    key(out, "exit_code");
    optional(out, exit.status.code(), number);
    key(out, "signal");
    optional(out, exit.status.signal(), number);
    key(out, "core_dumped");
    out.extend_from_slice(if exit.status.core_dumped() {
        b"true"
    } else {
        b"false"
    });
    key(out, "kind");
    string(out, exit.kind().as_str());
    key(out, "status_name");
    optional(out, exit.status_name(), string);
    key(out, "name");
    optional(out, exit.name.as_deref(), string);
    key(out, "command_line");
    optional(out, exit.command_line.as_deref(), string);
    key(out, "user");
    optional(out, exit.user.as_ref().map(|u| u.to_string()), |o, u| {
        string(o, &u)
    });
    key(out, "start_time");
    optional(out, exit.start_time.map(format_rfc3339), |o, t| {
        string(o, &t)
    });
    key(out, "exit_time");
    optional(out, exit.exit_time.map(format_rfc3339), |o, t| {
        string(o, &t)
    });
    key(out, "duration_ms");
    optional(out, ms(exit.duration()), number);
    key(out, "process_key");
    optional(out, exit.process_key, number);
    key(out, "source");
    string(out, exit.source.as_str());
    key(out, "killer_pid");
    optional(out, exit.killer.as_ref().map(|k| k.pid), number);
    key(out, "killer_name");
    optional(
        out,
        exit.killer.as_ref().and_then(|k| k.name.as_deref()),
        string,
    );
    key(out, "oom_killed");
    optional(out, exit.oom_killed, |o, b| {
        o.extend_from_slice(if b { b"true" } else { b"false" })
    });
    key(out, "cpu_user_ms");
    optional(out, ms(resources.cpu_user), number);
    key(out, "cpu_system_ms");
    optional(out, ms(resources.cpu_system), number);
    key(out, "peak_rss_bytes");
    optional(out, resources.peak_rss_bytes, number);
    key(out, "hard_faults");
    optional(out, resources.hard_faults, number);
    key(out, "io_read_bytes");
    optional(out, resources.io_read_bytes, number);
    key(out, "io_write_bytes");
    optional(out, resources.io_write_bytes, number);
    key(out, "io_read_ops");
    optional(out, resources.io_read_ops, number);
    key(out, "io_write_ops");
    optional(out, resources.io_write_ops, number);
    key(out, "cpu_cycles");
    optional(out, resources.cpu_cycles, number);
    key(out, "peak_commit_bytes");
    optional(out, resources.peak_commit_bytes, number);
    key(out, "cgroup");
    optional(out, exit.cgroup.as_deref(), string);
    key(out, "container_id");
    optional(out, exit.container_id.as_deref(), string);
    out.push(b'}');
}

/// `,"name":` — keys are plain ASCII constants: nothing to escape.
fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(value) => write(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// Numbers through serde_json itself (no escaping is involved), so their
/// form (floats' shortest round-trip digits, `null` when not finite) is
/// serde_json's by construction.
fn number(out: &mut Vec<u8>, value: impl serde::Serialize) {
    // Writing a number into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &value);
}

/// A JSON string: `"` and `\` escaped, control characters as serde_json
/// escapes them (short forms where JSON has them, else `\u00XX`), all else
/// as is. Runs of plain bytes are copied whole.
fn string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(value.len() + 2);
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use procexit::{ExitStatus, Killer, Source, User};
    use std::time::UNIX_EPOCH;

    fn serde_line(message: &Message<'_>) -> String {
        serde_json::to_string(message).unwrap()
    }

    fn fast_line(message: &Message<'_>) -> String {
        let mut out = Vec::new();
        write_message(&mut out, message).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every string a hostile process could choose: quotes, backslashes,
    /// every control character, DEL, C1, bidi controls, line separators,
    /// emoji, and plain text.
    fn hostile_strings() -> Vec<String> {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("\u{80}\u{9f}\u{202e}\u{2028}\u{2029}\u{feff}é🦀");
        vec![
            String::new(),
            "sleep 1".into(),
            "\"quoted\" \\back\\slash\\".into(),
            "\u{1b}]0;pwned\u{7}\u{1b}[31mRED\r\nnext".into(),
            all.clone(),
            all.repeat(50),
        ]
    }

    fn exits() -> Vec<ProcessExit> {
        let mut out = Vec::new();
        let statuses = [
            ExitStatus::Code(0),
            ExitStatus::Code(255),
            ExitStatus::Code(0xC000_0005),
            ExitStatus::Code(0x4001_0004),
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false,
            },
            ExitStatus::Signal {
                signal: 11,
                core_dumped: true,
            },
        ];
        for (i, status) in statuses.into_iter().enumerate() {
            // Everything unknown.
            out.push(ProcessExit::new(7, status, Source::LinuxConnector));
            // Everything known, with each hostile string in every text field.
            for text in hostile_strings() {
                let mut exit = ProcessExit::new(u32::MAX - i as u32, status, Source::EtwKernel);
                exit.ppid = Some(1);
                exit.name = Some(text.clone());
                exit.command_line = Some(text.clone());
                exit.user = Some(if i % 2 == 0 {
                    User::Uid(1000)
                } else {
                    User::Sid(text.clone())
                });
                exit.start_time =
                    Some(UNIX_EPOCH + Duration::from_nanos(1_606_000_000_123_456_789));
                exit.exit_time = Some(UNIX_EPOCH + Duration::from_nanos(1_606_000_123_000_000_001));
                exit.process_key = Some(u64::MAX);
                exit.killer = Some(Killer {
                    pid: 4242,
                    name: Some(text.clone()),
                });
                exit.oom_killed = Some(i % 2 == 1);
                exit.resources.cpu_user = Some(Duration::from_nanos(1_234_567));
                exit.resources.cpu_system = Some(Duration::from_secs(86_400 * 365));
                exit.resources.peak_rss_bytes = Some(60 << 20);
                exit.resources.hard_faults = Some(0);
                exit.resources.io_read_bytes = Some(u64::MAX);
                exit.resources.io_write_bytes = Some(1);
                exit.resources.io_read_ops = Some(2);
                exit.resources.io_write_ops = Some(3);
                exit.resources.cpu_cycles = Some(4_000_000_000);
                exit.resources.peak_commit_bytes = Some(5);
                exit.cgroup = Some(text.clone());
                exit.container_id = Some(text);
                out.push(exit);
            }
        }
        out
    }

    #[test]
    fn exit_lines_are_what_serde_json_writes() {
        for exit in exits() {
            let message = Message::Exit(&exit);
            assert_eq!(fast_line(&message), serde_line(&message));
        }
    }

    #[test]
    fn durations_are_written_like_serde_json_writes_them() {
        // Shortest round-trip forms across the range: sub-microsecond,
        // whole milliseconds (".0"), and years.
        let mut nanos = 1u64;
        while nanos < u64::MAX / 7 {
            let mut exit = ProcessExit::new(1, ExitStatus::Code(0), Source::LinuxEbpf);
            exit.resources.cpu_user = Some(Duration::from_nanos(nanos));
            exit.resources.cpu_system = Some(Duration::from_micros(nanos / 3));
            let message = Message::Exit(&exit);
            assert_eq!(fast_line(&message), serde_line(&message), "{nanos} ns");
            nanos = nanos * 7 + 3;
        }
    }

    #[test]
    fn other_messages_go_through_serde() {
        let message = Message::Lost {
            count: 3,
            reason: procexit::LossReason::Kernel,
        };
        assert_eq!(fast_line(&message), serde_line(&message));
    }
}

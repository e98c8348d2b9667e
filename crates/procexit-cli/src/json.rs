//! JSON Lines: the one JSON encoder of the CLI (stdout, `--output`,
//! syslog's MSG), for every message.
//!
//! It walks [`Message::fields`] (the library's one list of keys and typed
//! values) and writes each value itself: keys are constants and only text is
//! escaped, where a generic serializer escapes every key. The output is byte
//! for byte what `serde_json` writes through the library's `Serialize` for
//! the same `Message` (the tests compare the two), so the documented form
//! stays the library's.

use std::time::{Duration, SystemTime};

use procexit::schema::{Message, Value, MAX_EXACT_JSON_INTEGER};
use procexit::{Rfc3339, User};

/// Appends `message` as one JSON object (no newline).
pub fn write_message(out: &mut Vec<u8>, message: &Message<'_>) {
    // An exit line is 600-800 bytes: one reservation instead of several growths.
    out.reserve(1024);
    out.push(b'{');
    for (index, (key, value)) in message.fields().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// The JSON line of `message`, without its newline.
pub fn line(message: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_message(&mut out, message);
    out
}

/// Appends one value in its JSON form.
pub fn write_value(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(value) => boolean(out, value),
        Value::Unsigned(value) => integer(out, value),
        // Above 2^53 a double cannot hold it: a string of its digits.
        Value::Key(key) if key > MAX_EXACT_JSON_INTEGER => {
            out.push(b'"');
            integer(out, key);
            out.push(b'"');
        }
        Value::Key(key) => integer(out, key),
        Value::Signed(value) => integer(out, value),
        Value::Text(text) => string(out, text),
        // A uid is written as a string, as `User`'s `Display` writes it.
        Value::User(User::Uid(uid)) => {
            out.push(b'"');
            integer(out, *uid);
            out.push(b'"');
        }
        Value::User(User::Sid(sid)) => string(out, sid),
        Value::Time(value) => time(out, value),
        Value::Duration(d) => milliseconds(out, d),
        // Kinds added to the schema later: null until written here.
        _ => out.extend_from_slice(b"null"),
    }
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// Integers in decimal, as serde_json writes them (it uses the same crate).
fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A duration in milliseconds, exactly: the whole milliseconds, a point,
/// and the nanoseconds' digits without trailing zeros (at least one digit):
/// `1000.0`, `0.893268`, `12.5`. No float is involved, so no noise.
fn milliseconds(out: &mut Vec<u8>, d: Duration) {
    let nanos = d.as_nanos();
    integer(out, nanos / 1_000_000);
    out.push(b'.');
    let mut fraction = nanos % 1_000_000;
    let mut digits = 6;
    while digits > 1 && fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    let text = itoa::Buffer::new().format(fraction).to_owned();
    for _ in text.len()..digits {
        out.push(b'0');
    }
    out.extend_from_slice(text.as_bytes());
}

/// A time as a JSON string (the form needs no escaping).
fn time(out: &mut Vec<u8>, time: SystemTime) {
    out.push(b'"');
    out.extend_from_slice(Rfc3339::new(time).as_str().as_bytes());
    out.push(b'"');
}

/// What a byte becomes inside a JSON string: 0 for itself, else the letter
/// after the backslash (`u` for `\u00XX`). serde_json's table, in effect:
/// `"`, `\` and the C0 controls, with short forms where JSON has them.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// A JSON string, escaped as serde_json escapes it; runs of plain bytes
/// are copied whole.
fn string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(value.len() + 2);
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short = ESCAPE[usize::from(byte)];
        if short == 0 {
            continue;
        }
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
    use procexit::{ExitStatus, Killer, ProcessExit, Source, User};
    use std::time::{Duration, UNIX_EPOCH};

    fn serde_line(message: &Message<'_>) -> String {
        serde_json::to_string(message).unwrap()
    }

    fn fast_line(message: &Message<'_>) -> String {
        String::from_utf8(line(message)).unwrap()
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
        // Across the range where the shortest double form is the exact value
        // (1 µs to about eleven days): whole milliseconds (".0") included.
        let mut nanos = 1_000u64;
        while nanos < 1_000_000_000_000_000 {
            let mut exit = ProcessExit::new(1, ExitStatus::Code(0), Source::LinuxEbpf);
            exit.resources.cpu_user = Some(Duration::from_nanos(nanos));
            exit.resources.cpu_system = Some(Duration::from_nanos(nanos / 3 + 1));
            let message = Message::Exit(&exit);
            assert_eq!(fast_line(&message), serde_line(&message), "{nanos} ns");
            nanos = nanos * 7 + 3;
        }
    }

    /// The value of `key` in the JSON line of `exit`, as text.
    fn json_value(exit: &ProcessExit, key: &str) -> String {
        let line = fast_line(&Message::Exit(exit));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        value[key].to_string()
    }

    #[test]
    fn durations_are_exact() {
        let mut exit = ProcessExit::new(1, ExitStatus::Code(0), Source::LinuxEbpf);
        for (nanos, text) in [
            (893_268, "0.893268"),
            (1, "0.000001"),
            (1_000_000_000, "1000.0"),
            (12_500_000, "12.5"),
            (86_400_000_000_000 * 400, "34560000000.0"),
            (123_456_789_012_345_678, "123456789012.345678"),
        ] {
            exit.resources.cpu_user = Some(Duration::from_nanos(nanos));
            let line = fast_line(&Message::Exit(&exit));
            assert!(
                line.contains(&format!(r#""cpu_user_ms":{text},"#)),
                "{line}"
            );
        }
        // The case from the field: start and exit 893 268 ns apart (on
        // Windows, whose SystemTime counts 100 ns, 893 200).
        let (apart, text) = if cfg!(windows) {
            (893_200, "0.8932")
        } else {
            (893_268, "0.893268")
        };
        exit.start_time = Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000));
        exit.exit_time = Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + apart));
        assert_eq!(json_value(&exit, "duration_ms"), text);
    }

    #[test]
    fn keys_beyond_two_to_the_53_are_strings() {
        let mut exit = ProcessExit::new(1, ExitStatus::Code(0), Source::EtwKernel);
        exit.process_key = Some(1 << 53);
        assert_eq!(json_value(&exit, "process_key"), "9007199254740992");
        exit.process_key = Some(0xFFFF_A08B_1234_5080);
        assert_eq!(
            json_value(&exit, "process_key"),
            r#""18446639117899157632""#
        );
    }

    #[test]
    fn other_messages_are_what_serde_json_writes() {
        let lost = Message::Lost {
            count: 3,
            reason: procexit::LossReason::Kernel,
        };
        assert_eq!(fast_line(&lost), serde_line(&lost));
        let mut stats = procexit::Stats::default();
        stats.seen = 5;
        stats.lost = 2;
        let stats = Message::Stats(&stats);
        assert_eq!(fast_line(&stats), serde_line(&stats));
    }
}

//! What procexit prints: the one tagged type behind every line of JSON
//! output.
//!
//! [`Message`] is everything the JSON output (`procexit … --json`) carries,
//! one object per line, tagged by its `"type"` key: `exit`, `lost`, `stats`,
//! `process` and `zombie`. With the `serde` feature it implements `Serialize`, and so
//! do [`ProcessExit`] and [`Event`] (through it), so a program that prints
//! through this type prints exactly the documented form. docs/json.md lists
//! the keys of every type; a test checks that it and this type agree. The
//! form is a public interface: keys are only ever added, never renamed.
//!
//! ```
//! use procexit::schema::Message;
//! use procexit::{ExitStatus, ProcessExit, Source};
//!
//! let exit = ProcessExit::new(42, ExitStatus::Code(1), Source::LinuxConnector);
//! let message = Message::Exit(&exit);
//! assert_eq!(message.type_name(), "exit");
//! ```

use std::time::{Duration, SystemTime};

use crate::etl::{LifecycleKind, ProcessItem};
use crate::event::{system_time_from_filetime, Event, LossReason, ProcessExit, User};
use crate::stats::Stats;

/// One line of JSON output. Borrowed: building one copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message<'a> {
    /// `"exit"`: a process ended.
    Exit(&'a ProcessExit),
    /// `"lost"`: exits were lost at this point of the stream.
    Lost {
        /// How many exits are known to be missing (see [`Event::Lost`]).
        count: u64,
        /// Why they were lost.
        reason: LossReason,
    },
    /// `"stats"`: a monitor's counters, printed when it ends.
    Stats(&'a Stats),
    /// `"process"`: a process seen starting, or alive at a rundown, in a
    /// trace (`procexit replay --all`).
    Process(ProcessRecord<'a>),
    /// `"zombie"`: a Defunct rundown record of a trace that is not one of
    /// its exits (the process ended before the trace began, or the trace
    /// has its End), with the exit code and time when the record has them
    /// (`procexit replay --all`).
    Zombie(ProcessRecord<'a>),
}

impl<'a> Message<'a> {
    /// The value of the `"type"` key.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Exit(_) => "exit",
            Message::Lost { .. } => "lost",
            Message::Stats(_) => "stats",
            Message::Process(_) => "process",
            Message::Zombie(_) => "zombie",
        }
    }

    /// The message of a trace's lifecycle item that is not an exit: a
    /// `zombie` for a Defunct record, a `process` otherwise; `None` when its
    /// payload did not decode or it is not a kernel Process event.
    pub fn from_item(item: &'a ProcessItem) -> Option<Message<'a>> {
        let record = ProcessRecord::from_item(item)?;
        Some(match item.kind {
            LifecycleKind::Defunct => Message::Zombie(record),
            _ => Message::Process(record),
        })
    }
}

/// The key names of every message, in one place (the JSON keys; journal
/// fields are `PROCEXIT_` and the key upper-cased).
pub mod key {
    #![allow(missing_docs)] // each constant is its own documentation
    pub const TYPE: &str = "type";
    pub const PID: &str = "pid";
    pub const PPID: &str = "ppid";
    pub const EXIT_CODE: &str = "exit_code";
    pub const SIGNAL: &str = "signal";
    pub const CORE_DUMPED: &str = "core_dumped";
    pub const KIND: &str = "kind";
    pub const STATUS_NAME: &str = "status_name";
    pub const NAME: &str = "name";
    pub const COMMAND_LINE: &str = "command_line";
    pub const USER: &str = "user";
    pub const START_TIME: &str = "start_time";
    pub const EXIT_TIME: &str = "exit_time";
    pub const DURATION_MS: &str = "duration_ms";
    pub const PROCESS_KEY: &str = "process_key";
    pub const SOURCE: &str = "source";
    pub const KILLER_PID: &str = "killer_pid";
    pub const KILLER_NAME: &str = "killer_name";
    pub const OOM_KILLED: &str = "oom_killed";
    pub const CPU_USER_MS: &str = "cpu_user_ms";
    pub const CPU_SYSTEM_MS: &str = "cpu_system_ms";
    pub const PEAK_RSS_BYTES: &str = "peak_rss_bytes";
    pub const HARD_FAULTS: &str = "hard_faults";
    pub const IO_READ_BYTES: &str = "io_read_bytes";
    pub const IO_WRITE_BYTES: &str = "io_write_bytes";
    pub const IO_READ_OPS: &str = "io_read_ops";
    pub const IO_WRITE_OPS: &str = "io_write_ops";
    pub const CPU_CYCLES: &str = "cpu_cycles";
    pub const PEAK_COMMIT_BYTES: &str = "peak_commit_bytes";
    pub const CGROUP: &str = "cgroup";
    pub const CONTAINER_ID: &str = "container_id";
    pub const COUNT: &str = "count";
    pub const REASON: &str = "reason";
    pub const SEEN: &str = "seen";
    pub const FILTERED: &str = "filtered";
    pub const DELIVERED: &str = "delivered";
    pub const DROPPED: &str = "dropped";
    pub const LOST: &str = "lost";
    pub const OVERRUNS: &str = "overruns";
    pub const ANOMALIES: &str = "anomalies";
    pub const SESSION_GAPS: &str = "session_gaps";
    pub const EVICTED: &str = "evicted";
    pub const TIME: &str = "time";
}

/// The typed value of one field of a [`Message`]. Each encoder decides how
/// to write a kind (the JSON form is in docs/json.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value<'a> {
    /// Not known (JSON `null`; left out of journal entries).
    Null,
    /// A flag.
    Bool(bool),
    /// A count, id, size or code.
    Unsigned(u64),
    /// A signed number (a signal).
    Signed(i64),
    /// Text, as the OS gave it (encoders escape it).
    Text(&'a str),
    /// Who ran a process: a uid (written as text) or a SID.
    User(&'a User),
    /// A point in time (RFC 3339 text in JSON).
    Time(SystemTime),
    /// A length of time: a lifetime or a CPU time (milliseconds in JSON,
    /// exact to the nanosecond: `0.893268`, not `0.8932680000000001`).
    Duration(Duration),
    /// An opaque identifier that may not fit a double (`process_key`):
    /// a JSON number up to [`MAX_EXACT_JSON_INTEGER`], a JSON string of its
    /// decimal digits above (so that readers that parse numbers as doubles,
    /// jq among them, do not round it).
    Key(u64),
}

/// The largest integer every JSON reader holds exactly (2^53: readers such
/// as jq and JavaScript parse numbers as doubles); a [`Value::Key`] above it
/// is written as a string.
pub const MAX_EXACT_JSON_INTEGER: u64 = 1 << 53;

/// One field: its key (a [`key`] constant) and value.
pub type Field<'a> = (&'static str, Value<'a>);

/// The fields of a [`Message`] in the documented order, the `type` key
/// first. From [`Message::fields`].
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    message: Message<'a>,
    index: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let field = self.message.field(self.index)?;
        self.index += 1;
        Some(field)
    }
}

fn text<'a>(value: Option<&'a str>) -> Value<'a> {
    value.map_or(Value::Null, Value::Text)
}

fn unsigned(value: Option<impl Into<u64>>) -> Value<'static> {
    value.map_or(Value::Null, |v| Value::Unsigned(v.into()))
}

fn time(value: Option<SystemTime>) -> Value<'static> {
    value.map_or(Value::Null, Value::Time)
}

fn duration(value: Option<Duration>) -> Value<'static> {
    value.map_or(Value::Null, Value::Duration)
}

fn process_key(value: Option<u64>) -> Value<'static> {
    value.map_or(Value::Null, Value::Key)
}

impl<'a> Message<'a> {
    /// Every field of the message, in the documented order (`type` first):
    /// what each encoder writes.
    ///
    /// ```
    /// use procexit::schema::{key, Message, Value};
    /// use procexit::{ExitStatus, ProcessExit, Source};
    ///
    /// let exit = ProcessExit::new(42, ExitStatus::Code(1), Source::LinuxConnector);
    /// let message = Message::Exit(&exit);
    /// let mut fields = message.fields();
    /// assert_eq!(fields.next(), Some((key::TYPE, Value::Text("exit"))));
    /// assert_eq!(fields.next(), Some((key::PID, Value::Unsigned(42))));
    /// ```
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            message: *self,
            index: 0,
        }
    }

    /// The field at `index` of [`fields`](Message::fields).
    fn field(&self, index: usize) -> Option<Field<'a>> {
        if index == 0 {
            return Some((key::TYPE, Value::Text(self.type_name())));
        }
        match *self {
            Message::Exit(exit) => exit_field(exit, index),
            Message::Lost { count, reason } => match index {
                1 => Some((key::COUNT, Value::Unsigned(count))),
                2 => Some((key::REASON, Value::Text(reason.as_str()))),
                _ => None,
            },
            Message::Stats(stats) => {
                let (name, value) = match index {
                    1 => (key::SEEN, stats.seen),
                    2 => (key::FILTERED, stats.filtered),
                    3 => (key::DELIVERED, stats.delivered),
                    4 => (key::DROPPED, stats.dropped),
                    5 => (key::LOST, stats.lost),
                    6 => (key::OVERRUNS, stats.overruns),
                    7 => (key::ANOMALIES, stats.anomalies),
                    8 => (key::SESSION_GAPS, stats.session_gaps),
                    9 => (key::EVICTED, stats.evicted),
                    _ => return None,
                };
                Some((name, Value::Unsigned(value)))
            }
            Message::Process(record) => Some(match index {
                1 => (key::KIND, Value::Text(record.kind.as_str())),
                2 => (key::PID, Value::Unsigned(record.pid.into())),
                3 => (key::PPID, Value::Unsigned(record.ppid.into())),
                4 => (key::NAME, text(record.name)),
                5 => (key::COMMAND_LINE, text(record.command_line)),
                6 => (key::USER, text(record.user)),
                7 => (key::TIME, time(record.time)),
                8 => (key::PROCESS_KEY, process_key(record.process_key)),
                _ => return None,
            }),
            Message::Zombie(record) => Some(match index {
                1 => (key::PID, Value::Unsigned(record.pid.into())),
                2 => (key::PPID, Value::Unsigned(record.ppid.into())),
                3 => (key::EXIT_CODE, unsigned(record.exit_code)),
                4 => (key::NAME, text(record.name)),
                5 => (key::COMMAND_LINE, text(record.command_line)),
                6 => (key::USER, text(record.user)),
                7 => (key::EXIT_TIME, time(record.exit_time)),
                8 => (key::TIME, time(record.time)),
                9 => (key::PROCESS_KEY, process_key(record.process_key)),
                _ => return None,
            }),
        }
    }
}

/// The field at `index` (1 on) of an `exit`.
fn exit_field(exit: &ProcessExit, index: usize) -> Option<Field<'_>> {
    let resources = &exit.resources;
    Some(match index {
        1 => (key::PID, Value::Unsigned(exit.pid.into())),
        2 => (key::PPID, unsigned(exit.ppid)),
        3 => (key::EXIT_CODE, unsigned(exit.status.code())),
        4 => (
            key::SIGNAL,
            exit.status
                .signal()
                .map_or(Value::Null, |s| Value::Signed(s.into())),
        ),
        5 => (key::CORE_DUMPED, Value::Bool(exit.status.core_dumped())),
        6 => (key::KIND, Value::Text(exit.kind().as_str())),
        7 => (key::STATUS_NAME, text(exit.status_name())),
        8 => (key::NAME, text(exit.name.as_deref())),
        9 => (key::COMMAND_LINE, text(exit.command_line.as_deref())),
        10 => (
            key::USER,
            exit.user.as_ref().map_or(Value::Null, Value::User),
        ),
        11 => (key::START_TIME, time(exit.start_time)),
        12 => (key::EXIT_TIME, time(exit.exit_time)),
        13 => (key::DURATION_MS, duration(exit.duration())),
        14 => (key::PROCESS_KEY, process_key(exit.process_key)),
        15 => (key::SOURCE, Value::Text(exit.source.as_str())),
        16 => (
            key::KILLER_PID,
            unsigned(exit.killer.as_ref().map(|k| k.pid)),
        ),
        17 => (
            key::KILLER_NAME,
            text(exit.killer.as_ref().and_then(|k| k.name.as_deref())),
        ),
        18 => (
            key::OOM_KILLED,
            exit.oom_killed.map_or(Value::Null, Value::Bool),
        ),
        19 => (key::CPU_USER_MS, duration(resources.cpu_user)),
        20 => (key::CPU_SYSTEM_MS, duration(resources.cpu_system)),
        21 => (key::PEAK_RSS_BYTES, unsigned(resources.peak_rss_bytes)),
        22 => (key::HARD_FAULTS, unsigned(resources.hard_faults)),
        23 => (key::IO_READ_BYTES, unsigned(resources.io_read_bytes)),
        24 => (key::IO_WRITE_BYTES, unsigned(resources.io_write_bytes)),
        25 => (key::IO_READ_OPS, unsigned(resources.io_read_ops)),
        26 => (key::IO_WRITE_OPS, unsigned(resources.io_write_ops)),
        27 => (key::CPU_CYCLES, unsigned(resources.cpu_cycles)),
        28 => (
            key::PEAK_COMMIT_BYTES,
            unsigned(resources.peak_commit_bytes),
        ),
        29 => (key::CGROUP, text(exit.cgroup.as_deref())),
        30 => (key::CONTAINER_ID, text(exit.container_id.as_deref())),
        _ => return None,
    })
}

impl<'a> From<&'a Event> for Message<'a> {
    fn from(event: &'a Event) -> Message<'a> {
        match event {
            Event::Exit(exit) => Message::Exit(exit),
            Event::Lost { count, reason } => Message::Lost {
                count: *count,
                reason: *reason,
            },
        }
    }
}

/// A process lifecycle record of a trace that is not an exit: a start, a
/// process alive at a rundown, or a zombie at a rundown. Built from a
/// [`ProcessItem`] with [`ProcessRecord::from_item`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessRecord<'a> {
    /// What the trace recorded.
    pub kind: LifecycleKind,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Short image name.
    pub name: Option<&'a str>,
    /// Command line.
    pub command_line: Option<&'a str>,
    /// User SID string.
    pub user: Option<&'a str>,
    /// Event time (for a rundown, when the rundown ran: not a start time).
    pub time: Option<SystemTime>,
    /// Windows `UniqueProcessKey`.
    pub process_key: Option<u64>,
    /// A zombie's exit code, when the record has one.
    pub exit_code: Option<u32>,
    /// A zombie's exit time, when the record has one.
    pub exit_time: Option<SystemTime>,
}

impl<'a> ProcessRecord<'a> {
    /// The record of a decoded kernel Process event; `None` when its payload
    /// did not decode or it is not a kernel Process event.
    pub fn from_item(item: &'a ProcessItem) -> Option<ProcessRecord<'a>> {
        let payload = item.payload.as_ref()?;
        Some(ProcessRecord {
            kind: item.kind,
            pid: payload.pid,
            ppid: payload.ppid,
            name: payload.image_file_name.as_deref(),
            command_line: payload.command_line.as_deref(),
            user: payload.user_sid.as_deref(),
            time: item.header.time.and_then(system_time_from_filetime),
            process_key: payload.unique_process_key,
            exit_code: payload
                .exit_status
                .map(|status| u32::from_le_bytes(status.to_le_bytes())),
            exit_time: payload.exit_time.and_then(system_time_from_filetime),
        })
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    use serde::ser::{Serialize, SerializeMap, Serializer};

    use super::{Message, Value, MAX_EXACT_JSON_INTEGER};
    use crate::event::{Event, ProcessExit, Rfc3339, User};
    use crate::stats::Stats;

    /// Every field of [`Message::fields`], in order.
    impl Serialize for Message<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(None)?;
            for (key, value) in self.fields() {
                map.serialize_entry(key, &value)?;
            }
            map.end()
        }
    }

    /// A value in its JSON form (docs/json.md): times as RFC 3339 text, durations
    /// in milliseconds (the nearest double to the exact value: the shortest
    /// form a JSON writer gives it is exact below about eleven days), a uid
    /// as text, a key above 2^53 as text.
    impl Serialize for Value<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match *self {
                Value::Null => serializer.serialize_none(),
                Value::Bool(value) => serializer.serialize_bool(value),
                Value::Unsigned(value) => serializer.serialize_u64(value),
                Value::Key(key) if key > MAX_EXACT_JSON_INTEGER => serializer.collect_str(&key),
                Value::Key(key) => serializer.serialize_u64(key),
                Value::Signed(value) => serializer.serialize_i64(value),
                Value::Text(text) => serializer.serialize_str(text),
                Value::User(User::Uid(uid)) => serializer.collect_str(uid),
                Value::User(User::Sid(sid)) => serializer.serialize_str(sid),
                Value::Time(time) => serializer.serialize_str(Rfc3339::new(time).as_str()),
                // One rounding (integer nanoseconds to the nearest double, then
                // a correctly rounded division), not the two of
                // `as_secs_f64() * 1000.0` that left noise in the last digits.
                #[allow(clippy::cast_precision_loss)]
                Value::Duration(d) => serializer.serialize_f64(d.as_nanos() as f64 / 1e6),
            }
        }
    }

    /// The `"exit"` form of [`Message`].
    impl Serialize for ProcessExit {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            Message::Exit(self).serialize(serializer)
        }
    }

    /// The `"exit"` or `"lost"` form of [`Message`].
    impl Serialize for Event {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            Message::from(self).serialize(serializer)
        }
    }

    /// The `"stats"` form of [`Message`].
    impl Serialize for Stats {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            Message::Stats(self).serialize(serializer)
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    //! Run with the `serde` feature: `cargo test --workspace` builds the
    //! library with it (the CLI enables it), as does
    //! `cargo test -p procexit --features serde`.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::Value;

    use super::*;
    use crate::event::{ExitStatus, Killer, Resources, Source, User};

    /// The key tables of docs/json.md: `type` value → [(key, type cell)], in order.
    fn readme_tables() -> BTreeMap<String, Vec<(String, String)>> {
        let readme = include_str!("../../../docs/json.md");
        let mut tables = BTreeMap::new();
        let mut lines = readme.lines();
        while let Some(line) = lines.next() {
            if line.trim() != "| key | type | meaning |" {
                continue;
            }
            lines.next(); // |---|---|---|
            let mut rows = Vec::new();
            let mut tag = None;
            for row in lines.by_ref().take_while(|l| l.starts_with('|')) {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let key = cells[1].trim_matches('`').to_string();
                if key == "type" {
                    tag = Some(cells[3].trim_matches('`').trim_matches('"').to_string());
                }
                rows.push((key, cells[2].to_string()));
            }
            let tag = tag.expect("every key table has a `type` row");
            assert!(
                tables.insert(tag.clone(), rows).is_none(),
                "two docs/json.md tables for {tag}"
            );
        }
        tables
    }

    /// Whether a JSON value is of a docs/json.md type cell such as "number or null".
    fn fits(value: &Value, cell: &str) -> bool {
        cell.split(" or ").any(|t| match t {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "bool" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("unknown type {other:?} in docs/json.md"),
        })
    }

    /// Every variant, once with every field set and once with none.
    fn samples(keep: impl FnOnce(&[Message<'_>])) {
        let empty_exit = ProcessExit::new(1, ExitStatus::Code(0), Source::Handle);
        let mut full_exit = ProcessExit::new(
            2,
            ExitStatus::Signal {
                signal: 9,
                core_dumped: true,
            },
            Source::LinuxConnector,
        );
        full_exit.ppid = Some(1);
        full_exit.name = Some("sh".into());
        full_exit.command_line = Some("sh -c exit".into());
        full_exit.start_time = Some(UNIX_EPOCH + Duration::from_secs(1));
        full_exit.exit_time = Some(UNIX_EPOCH + Duration::from_secs(2));
        full_exit.user = Some(User::Uid(0));
        full_exit.process_key = Some(3);
        full_exit.killer = Some(Killer {
            pid: 4,
            name: Some("kill".into()),
        });
        full_exit.oom_killed = Some(false);
        full_exit.resources = Resources {
            cpu_user: Some(Duration::from_millis(5)),
            cpu_system: Some(Duration::from_millis(6)),
            peak_rss_bytes: Some(7),
            hard_faults: Some(8),
            io_read_bytes: Some(9),
            io_write_bytes: Some(10),
            io_read_ops: Some(11),
            io_write_ops: Some(12),
            cpu_cycles: Some(13),
            peak_commit_bytes: Some(14),
        };
        full_exit.cgroup = Some("/system.slice/x.service".into());
        full_exit.container_id = Some("abc".into());
        let stats = Stats {
            seen: 1,
            ..Stats::default()
        };
        let empty_process = ProcessRecord {
            kind: LifecycleKind::DcStart,
            pid: 8,
            ppid: 4,
            name: None,
            command_line: None,
            user: None,
            time: None,
            process_key: None,
            exit_code: None,
            exit_time: None,
        };
        let full_process = ProcessRecord {
            kind: LifecycleKind::Start,
            name: Some("cmd.exe"),
            command_line: Some("cmd /c exit"),
            user: Some("S-1-5-18"),
            time: Some(UNIX_EPOCH),
            process_key: Some(9),
            ..empty_process
        };
        let full_zombie = ProcessRecord {
            kind: LifecycleKind::Defunct,
            exit_code: Some(0xC000_013A),
            exit_time: Some(UNIX_EPOCH),
            ..full_process
        };
        let all = [
            Message::Exit(&empty_exit),
            Message::Exit(&full_exit),
            Message::Lost {
                count: 2,
                reason: LossReason::Overrun,
            },
            Message::Stats(&stats),
            Message::Process(empty_process),
            Message::Process(full_process),
            Message::Zombie(empty_process),
            Message::Zombie(full_zombie),
        ];
        // A new variant must get samples here (and a table in docs/json.md).
        for message in &all {
            match message {
                Message::Exit(_)
                | Message::Lost { .. }
                | Message::Stats(_)
                | Message::Process(_)
                | Message::Zombie(_) => {}
            }
        }
        keep(&all);
    }

    #[test]
    fn readme_tables_and_the_schema_agree() {
        let tables = readme_tables();
        let mut types_seen = Vec::new();
        samples(|messages| {
            for message in messages {
                let tag = message.type_name();
                let table = tables
                    .get(tag)
                    .unwrap_or_else(|| panic!("docs/json.md has no key table for {tag:?}"));
                let Value::Object(object) = serde_json::to_value(message).unwrap() else {
                    panic!("{tag} is not a JSON object");
                };
                assert_eq!(object["type"], tag);
                for (key, cell) in table {
                    let value = object.get(key).unwrap_or_else(|| {
                        panic!("docs/json.md key {tag}.{key} is not serialized")
                    });
                    assert!(
                        fits(value, cell),
                        "{tag}.{key} = {value}, docs/json.md says {cell}"
                    );
                }
                for key in object.keys() {
                    assert!(
                        table.iter().any(|(k, _)| k == key),
                        "{tag}.{key} is serialized but not in docs/json.md"
                    );
                }
                types_seen.push(tag);
            }
        });
        for tag in tables.keys() {
            assert!(
                types_seen.contains(&tag.as_str()),
                "docs/json.md table {tag:?} names no message type"
            );
        }
    }

    #[test]
    fn serialized_forms_are_exact_and_keep_their_key_order() {
        samples(|messages| {
            let lines: Vec<String> = messages
                .iter()
                .map(|m| serde_json::to_string(m).unwrap())
                .collect();
            assert!(lines[0].starts_with(r#"{"type":"exit","pid":1,"ppid":null,"exit_code":0,"#));
            assert!(lines[1].contains(r#""signal":9,"core_dumped":true,"#));
            assert!(lines[1].contains(r#""duration_ms":1000.0,"#));
            assert!(lines[1].contains(r#""killer_pid":4,"killer_name":"kill","#));
            assert_eq!(lines[2], r#"{"type":"lost","count":2,"reason":"overrun"}"#);
            assert_eq!(
                lines[3],
                r#"{"type":"stats","seen":1,"filtered":0,"delivered":0,"dropped":0,"lost":0,"overruns":0,"anomalies":0,"session_gaps":0,"evicted":0}"#
            );
            assert_eq!(
                lines[5],
                r#"{"type":"process","kind":"start","pid":8,"ppid":4,"name":"cmd.exe","command_line":"cmd /c exit","user":"S-1-5-18","time":"1970-01-01T00:00:00.000000Z","process_key":9}"#
            );
        });
    }

    #[test]
    fn records_and_events_serialize_through_the_message() {
        let exit = ProcessExit::new(7, ExitStatus::Code(3), Source::EtlFile);
        let message = serde_json::to_string(&Message::Exit(&exit)).unwrap();
        assert_eq!(serde_json::to_string(&exit).unwrap(), message);
        assert_eq!(
            serde_json::to_string(&Event::Exit(exit.clone())).unwrap(),
            message
        );
        let lost = Event::Lost {
            count: 1,
            reason: LossReason::Kernel,
        };
        assert_eq!(
            serde_json::to_string(&lost).unwrap(),
            r#"{"type":"lost","count":1,"reason":"kernel"}"#
        );
        let stats = Stats::default();
        assert_eq!(
            serde_json::to_string(&stats).unwrap(),
            serde_json::to_string(&Message::Stats(&stats)).unwrap()
        );
    }
}

//! What procexit prints: the one tagged type behind every line of JSON
//! output.
//!
//! [`Message`] is everything the JSON output (`procexit … --json`) carries,
//! one object per line, tagged by its `"type"` key: `exit`, `lost`, `stats`,
//! `process` and `zombie`. With the `serde` feature it implements `Serialize`, and so
//! do [`ProcessExit`] and [`Event`] (through it), so a program that prints
//! through this type prints exactly the documented form. The README lists
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

use std::time::SystemTime;

use crate::etl::{LifecycleKind, ProcessItem};
use crate::event::{system_time_from_filetime, Event, LossReason, ProcessExit};
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
    use std::time::Duration;

    use serde::ser::{Serialize, SerializeMap, Serializer};

    use super::{Message, ProcessRecord};
    use crate::event::{format_rfc3339, Event, ProcessExit};
    use crate::stats::Stats;

    impl Serialize for Message<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("type", self.type_name())?;
            match self {
                Message::Exit(exit) => exit_entries(&mut map, exit)?,
                Message::Lost { count, reason } => {
                    map.serialize_entry("count", count)?;
                    map.serialize_entry("reason", reason.as_str())?;
                }
                Message::Stats(stats) => stats_entries(&mut map, stats)?,
                Message::Process(record) => process_entries(&mut map, record)?,
                Message::Zombie(record) => zombie_entries(&mut map, record)?,
            }
            map.end()
        }
    }

    fn exit_entries<M: SerializeMap>(map: &mut M, exit: &ProcessExit) -> Result<(), M::Error> {
        map.serialize_entry("pid", &exit.pid)?;
        map.serialize_entry("ppid", &exit.ppid)?;
        map.serialize_entry("exit_code", &exit.status.code())?;
        map.serialize_entry("signal", &exit.status.signal())?;
        map.serialize_entry("core_dumped", &exit.status.core_dumped())?;
        map.serialize_entry("kind", exit.kind().as_str())?;
        map.serialize_entry("status_name", &exit.status_name())?;
        map.serialize_entry("name", &exit.name)?;
        map.serialize_entry("command_line", &exit.command_line)?;
        map.serialize_entry("user", &exit.user.as_ref().map(|u| u.to_string()))?;
        map.serialize_entry("start_time", &exit.start_time.map(format_rfc3339))?;
        map.serialize_entry("exit_time", &exit.exit_time.map(format_rfc3339))?;
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        map.serialize_entry("duration_ms", &ms(exit.duration()))?;
        map.serialize_entry("process_key", &exit.process_key)?;
        map.serialize_entry("source", exit.source.as_str())?;
        map.serialize_entry("killer_pid", &exit.killer.as_ref().map(|k| k.pid))?;
        map.serialize_entry(
            "killer_name",
            &exit.killer.as_ref().and_then(|k| k.name.as_deref()),
        )?;
        map.serialize_entry("oom_killed", &exit.oom_killed)?;
        map.serialize_entry("cpu_user_ms", &ms(exit.resources.cpu_user))?;
        map.serialize_entry("cpu_system_ms", &ms(exit.resources.cpu_system))?;
        map.serialize_entry("peak_rss_bytes", &exit.resources.peak_rss_bytes)?;
        map.serialize_entry("hard_faults", &exit.resources.hard_faults)?;
        map.serialize_entry("io_read_bytes", &exit.resources.io_read_bytes)?;
        map.serialize_entry("io_write_bytes", &exit.resources.io_write_bytes)?;
        map.serialize_entry("io_read_ops", &exit.resources.io_read_ops)?;
        map.serialize_entry("io_write_ops", &exit.resources.io_write_ops)?;
        map.serialize_entry("cpu_cycles", &exit.resources.cpu_cycles)?;
        map.serialize_entry("peak_commit_bytes", &exit.resources.peak_commit_bytes)?;
        map.serialize_entry("cgroup", &exit.cgroup)?;
        map.serialize_entry("container_id", &exit.container_id)
    }

    fn stats_entries<M: SerializeMap>(map: &mut M, stats: &Stats) -> Result<(), M::Error> {
        map.serialize_entry("seen", &stats.seen)?;
        map.serialize_entry("filtered", &stats.filtered)?;
        map.serialize_entry("delivered", &stats.delivered)?;
        map.serialize_entry("dropped", &stats.dropped)?;
        map.serialize_entry("lost", &stats.lost)?;
        map.serialize_entry("overruns", &stats.overruns)?;
        map.serialize_entry("anomalies", &stats.anomalies)?;
        map.serialize_entry("session_gaps", &stats.session_gaps)?;
        map.serialize_entry("evicted", &stats.evicted)
    }

    fn process_entries<M: SerializeMap>(
        map: &mut M,
        record: &ProcessRecord<'_>,
    ) -> Result<(), M::Error> {
        map.serialize_entry("kind", record.kind.as_str())?;
        map.serialize_entry("pid", &record.pid)?;
        map.serialize_entry("ppid", &record.ppid)?;
        map.serialize_entry("name", &record.name)?;
        map.serialize_entry("command_line", &record.command_line)?;
        map.serialize_entry("user", &record.user)?;
        map.serialize_entry("time", &record.time.map(format_rfc3339))?;
        map.serialize_entry("process_key", &record.process_key)
    }

    fn zombie_entries<M: SerializeMap>(
        map: &mut M,
        record: &ProcessRecord<'_>,
    ) -> Result<(), M::Error> {
        map.serialize_entry("pid", &record.pid)?;
        map.serialize_entry("ppid", &record.ppid)?;
        map.serialize_entry("exit_code", &record.exit_code)?;
        map.serialize_entry("name", &record.name)?;
        map.serialize_entry("command_line", &record.command_line)?;
        map.serialize_entry("user", &record.user)?;
        map.serialize_entry("exit_time", &record.exit_time.map(format_rfc3339))?;
        map.serialize_entry("time", &record.time.map(format_rfc3339))?;
        map.serialize_entry("process_key", &record.process_key)
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

    /// The README's key tables: `type` value → [(key, type cell)], in order.
    fn readme_tables() -> BTreeMap<String, Vec<(String, String)>> {
        let readme = include_str!("../../../README.md");
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
                "two README tables for {tag}"
            );
        }
        tables
    }

    /// Whether a JSON value is of a README type cell such as "number or null".
    fn fits(value: &Value, cell: &str) -> bool {
        cell.split(" or ").any(|t| match t {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "bool" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("unknown type {other:?} in the README"),
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
        // A new variant must get samples here (and a README table).
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
                    .unwrap_or_else(|| panic!("the README has no key table for {tag:?}"));
                let Value::Object(object) = serde_json::to_value(message).unwrap() else {
                    panic!("{tag} is not a JSON object");
                };
                assert_eq!(object["type"], tag);
                for (key, cell) in table {
                    let value = object
                        .get(key)
                        .unwrap_or_else(|| panic!("README key {tag}.{key} is not serialized"));
                    assert!(
                        fits(value, cell),
                        "{tag}.{key} = {value}, README says {cell}"
                    );
                }
                for key in object.keys() {
                    assert!(
                        table.iter().any(|(k, _)| k == key),
                        "{tag}.{key} is serialized but not in the README"
                    );
                }
                types_seen.push(tag);
            }
        });
        for tag in tables.keys() {
            assert!(
                types_seen.contains(&tag.as_str()),
                "README table {tag:?} names no message type"
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

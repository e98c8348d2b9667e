//! Where `watch` ships records besides stdout: a JSON Lines file, the
//! systemd journal, a syslog server.
//!
//! Every sink receives the record already serialized as one JSON line (the
//! same line `--json` prints), so sinks never depend on how the record is
//! built. A sink never stops the monitor: what it cannot deliver is counted
//! (and reported on stderr when it starts and stops failing) and the count is
//! part of the closing summary.

use std::cell::OnceCell;
use std::time::Duration;

use serde_json::{Map, Value};

pub mod file;
#[cfg(target_os = "linux")]
pub mod journald;
pub mod syslog;

/// One record, as the JSON line and (parsed on demand) its fields.
pub struct Record {
    json: String,
    fields: OnceCell<Map<String, Value>>,
}

impl Record {
    /// Serializes `item` once for every sink.
    pub fn new(item: &impl serde::Serialize) -> serde_json::Result<Record> {
        Ok(Record::from_json(serde_json::to_string(item)?))
    }

    /// A record from an already serialized JSON object (one line).
    pub fn from_json(json: String) -> Record {
        Record {
            json,
            fields: OnceCell::new(),
        }
    }

    /// The JSON line, without its newline.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The record's top-level keys (in key order).
    pub fn fields(&self) -> &Map<String, Value> {
        self.fields
            .get_or_init(|| match serde_json::from_str::<Value>(&self.json) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            })
    }

    /// The `type` key: `exit`, `lost`, `stats`, …
    pub fn record_type(&self) -> &str {
        self.fields()
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("record")
    }

    /// Whether the record reports a failure or a loss: any `kind` but
    /// `exited`, a non-zero exit code, a fatal signal, an OOM kill, or lost
    /// exits.
    pub fn is_warning(&self) -> bool {
        let fields = self.fields();
        let exit_code = fields.get("exit_code").and_then(Value::as_i64);
        match self.record_type() {
            "lost" => true,
            "exit" => {
                fields
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| kind != "exited")
                    || exit_code.is_some_and(|code| code != 0)
                    || fields.get("signal").is_some_and(|s| !s.is_null())
                    || fields.get("oom_killed") == Some(&Value::Bool(true))
            }
            _ => false,
        }
    }
}

/// What a sink delivered and what it could not.
#[derive(Debug, Default)]
pub struct Health {
    /// Records delivered.
    pub written: u64,
    /// Records that could not be delivered.
    pub unwritten: u64,
    /// The error of the last failure, while the sink is failing.
    failing: Option<String>,
    /// The last error seen, kept for the summary.
    pub last_error: Option<String>,
}

impl Health {
    /// Counts delivered records; says on stderr when a failing sink recovers.
    pub fn delivered(&mut self, what: &str, records: u64) {
        self.written += records;
        if self.failing.take().is_some() {
            eprintln!(
                "procexit: {what}: writing again ({} records could not be written so far)",
                self.unwritten
            );
        }
    }

    /// Counts records that could not be delivered; says why on stderr the
    /// first time (and again only when the reason changes).
    pub fn failed(&mut self, what: &str, records: u64, error: &dyn std::fmt::Display) {
        self.unwritten += records;
        let error = error.to_string();
        if self.failing.as_deref() != Some(error.as_str()) {
            eprintln!(
                "procexit: {what}: {error}; records are counted as unwritten and \
                 writing is retried with the next record"
            );
        }
        self.failing = Some(error.clone());
        self.last_error = Some(error);
    }
}

impl Health {
    /// Counts records first counted as delivered that the destination
    /// refused afterwards (a UDP datagram answered by ICMP port
    /// unreachable) as not written.
    pub fn refused_after_delivery(
        &mut self,
        what: &str,
        records: u64,
        error: &dyn std::fmt::Display,
    ) {
        self.written = self.written.saturating_sub(records);
        self.failed(what, records, error);
    }
}

/// A destination for records.
pub trait Sink {
    /// What it writes to, for messages: `output file /var/log/exits.jsonl`.
    fn describe(&self) -> &str;
    /// Delivers (or buffers) one record. Never fails: failures are counted.
    fn send(&mut self, record: &Record);
    /// Called when no record came for a while and periodically; a buffering
    /// sink writes what it holds.
    fn idle(&mut self) {}
    /// How long the caller may wait for the next record before calling
    /// [`idle`](Sink::idle).
    fn idle_after(&self) -> Duration {
        Duration::from_secs(1)
    }
    /// Writes everything buffered, before the program ends.
    fn finish(&mut self) {}
    /// Counters so far.
    fn health(&self) -> &Health;
}

/// All sinks of one `watch`.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
}

impl Sinks {
    pub fn push(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Sends one record (serialized once) to every sink.
    pub fn send(&mut self, item: &impl serde::Serialize) -> serde_json::Result<()> {
        if self.sinks.is_empty() {
            return Ok(());
        }
        let record = Record::new(item)?;
        for sink in &mut self.sinks {
            sink.send(&record);
        }
        Ok(())
    }

    /// The longest the caller should block waiting for a record.
    pub fn idle_after(&self) -> Duration {
        self.sinks
            .iter()
            .map(|s| s.idle_after())
            .min()
            .unwrap_or(Duration::from_secs(1))
    }

    pub fn idle(&mut self) {
        for sink in &mut self.sinks {
            sink.idle();
        }
    }

    pub fn finish(&mut self) {
        for sink in &mut self.sinks {
            sink.finish();
        }
    }

    /// One stderr line per sink: records written, and those that could not
    /// be (with the last error).
    pub fn summary(&self) -> Vec<String> {
        self.sinks
            .iter()
            .map(|sink| {
                let health = sink.health();
                let mut line = format!(
                    "{}: {} records written, {} could not be written",
                    sink.describe(),
                    health.written,
                    health.unwritten
                );
                if health.unwritten > 0 {
                    if let Some(error) = &health.last_error {
                        line.push_str(&format!(" (last error: {error})"));
                    }
                }
                line
            })
            .collect()
    }

    /// Records that could not be delivered, over all sinks.
    pub fn unwritten(&self) -> u64 {
        self.sinks.iter().map(|s| s.health().unwritten).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_failures_and_losses() {
        let exit = |json: &str| Record::from_json(json.to_string());
        assert!(!exit(r#"{"type":"exit","pid":1,"exit_code":0,"signal":null}"#).is_warning());
        assert!(exit(r#"{"type":"exit","pid":1,"exit_code":3,"signal":null}"#).is_warning());
        assert!(exit(r#"{"type":"exit","pid":1,"exit_code":null,"signal":9}"#).is_warning());
        assert!(exit(r#"{"type":"lost","count":3,"reason":"overrun"}"#).is_warning());
        assert!(!exit(r#"{"type":"stats","seen":3}"#).is_warning());
        assert!(exit(r#"{"type":"exit","kind":"exception","exit_code":3221225477}"#).is_warning());
        assert!(!exit(r#"{"type":"exit","kind":"exited","exit_code":0}"#).is_warning());
    }
}

//! Where `watch` ships records besides stdout: a JSON Lines file, the
//! systemd journal, a syslog server (and any output added later).
//!
//! # Writing a sink
//!
//! A sink implements [`Sink`]. It receives every record as the library's
//! typed [`Message`] (an exit, a loss, the closing stats, …) and encodes it
//! itself, by walking [`Message::fields`]: each `(key, Value)` in the
//! documented order, key names from `procexit::schema::key`, values typed
//! (`Value::Unsigned`, `Value::Time`, `Value::Duration`, …), so no sink parses
//! another's text. A sink that ships the JSON line (file, syslog) takes it
//! from [`crate::json::line`], the one JSON encoder; [`is_warning`] is the
//! shared "failure or loss" test for severities.
//!
//! The contract:
//!
//! - [`Sink::send`] never fails and never blocks for long: what cannot be
//!   delivered is counted in the sink's [`Health`] (which reports on stderr
//!   when the sink starts and stops failing) and the count ends up in the
//!   closing summary (status 2 when any record was unwritten). A sink never
//!   stops the monitor.
//! - A batching sink buffers in `send` and writes in [`Sink::idle`] (called
//!   when no record came for [`Sink::idle_after`], and periodically) and in
//!   [`Sink::finish`] (called once, after the closing `stats` record).
//! - A sink is opened before the monitor starts (in `main.rs`, `open_sinks`),
//!   so a destination that cannot be reached is an error before watching.
//!
//! ```ignore
//! impl Sink for MySink {
//!     fn describe(&self) -> &str { &self.describe }
//!     fn send(&mut self, message: &Message<'_>) {
//!         for (key, value) in message.fields() { /* encode */ }
//!         self.health.delivered(&self.describe, 1);
//!     }
//!     fn health(&self) -> &Health { &self.health }
//! }
//! ```

use std::time::Duration;

use procexit::schema::Message;
use procexit::ExitKind;

pub mod file;
#[cfg(target_os = "linux")]
pub mod journald;
pub mod metrics;
pub mod otlp;
pub mod syslog;

/// Whether a record reports a failure or a loss: an exit of any kind but
/// `exited`, with a non-zero code, by a signal or by the OOM killer; or lost
/// exits.
pub fn is_warning(message: &Message<'_>) -> bool {
    match message {
        Message::Lost { .. } => true,
        Message::Exit(exit) => {
            exit.kind() != ExitKind::Exited
                || exit.status.code().is_some_and(|code| code != 0)
                || exit.status.signal().is_some()
                || exit.oom_killed == Some(true)
        }
        _ => false,
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
    /// Delivers (or buffers) one record. Never fails: failures are counted
    /// in [`health`](Sink::health).
    fn send(&mut self, message: &Message<'_>);
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

    /// Sends one record to every sink.
    pub fn send(&mut self, message: &Message<'_>) {
        for sink in &mut self.sinks {
            sink.send(message);
        }
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
    use procexit::{ExitStatus, LossReason, ProcessExit, Source, Stats};

    #[test]
    fn warnings_are_failures_and_losses() {
        let exit = |status| ProcessExit::new(1, status, Source::LinuxConnector);
        assert!(!is_warning(&Message::Exit(&exit(ExitStatus::Code(0)))));
        assert!(is_warning(&Message::Exit(&exit(ExitStatus::Code(3)))));
        let killed = exit(ExitStatus::Signal {
            signal: 9,
            core_dumped: false,
        });
        assert!(is_warning(&Message::Exit(&killed)));
        let mut oom = exit(ExitStatus::Code(0));
        oom.oom_killed = Some(true);
        assert!(is_warning(&Message::Exit(&oom)));
        // An NTSTATUS exception code.
        let crash = ProcessExit::new(1, ExitStatus::Code(0xC000_0005), Source::EtwKernel);
        assert!(is_warning(&Message::Exit(&crash)));
        let lost = Message::Lost {
            count: 3,
            reason: LossReason::Overrun,
        };
        assert!(is_warning(&lost));
        assert!(!is_warning(&Message::Stats(&Stats::default())));
    }
}

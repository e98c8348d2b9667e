//! `watch --otlp URL`: every record as an OpenTelemetry log record, posted
//! to a collector as OTLP/HTTP protobuf (`POST /v1/logs`).
//!
//! The encoder ([`log_record`], [`resource`]) maps an exit to the
//! OpenTelemetry semantic conventions where they exist (`process.pid`,
//! `process.parent_pid`, `process.executable.name`, `process.command_line`,
//! `process.user.id` or `process.owner`, `process.creation.time`,
//! `process.exit.code`, `process.exit.time`, `container.id`) and every other
//! JSON key to `procexit.KEY` with its typed value; the message types
//! (`exit`, `lost`, `stats`) are told apart by the log record's event name
//! (`procexit.exit`, …).
//!
//! The exporter runs on a thread of its own: [`OtlpSink::send`] encodes the
//! record and hands it over a bounded queue without waiting for the network.
//! The thread posts batches; while the collector is unreachable it retries
//! the batch in hand with exponential backoff, and records that find the
//! queue full meanwhile are counted as not delivered (bounded memory: the
//! queue plus one batch). At the end the thread gets a last, bounded time to
//! deliver what it holds; what is left is counted too. Every record that was
//! not delivered is in the sink's count, in the summary and in the exit
//! status.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use procexit::schema::{key, Message, Value};
use procexit::{format_rfc3339, User};
use prost::Message as _;

use super::{is_warning, Health, Sink};

/// How the exporter batches and retries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records per request at most.
    pub batch: usize,
    /// Records waiting for the exporter at most; beyond, records are counted
    /// as not delivered.
    pub queue: usize,
    /// How long a partial batch waits for more records.
    pub linger: Duration,
    /// Time for one request.
    pub timeout: Duration,
    /// First and longest pause between retries.
    pub backoff: (Duration, Duration),
    /// At the end, how long the exporter may still try to deliver.
    pub finish_within: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch: 512,
            queue: 65_536,
            linger: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            finish_within: Duration::from_secs(10),
        }
    }
}

/// The URL the logs are posted to: `URL` itself when it has a path, else
/// `URL/v1/logs` (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read). Plain `http`
/// only: this build has no TLS.
pub fn logs_url(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            anyhow::bail!(
                "--otlp {url}: https is not supported (no TLS in this build); send to a \
                 collector on this machine or a sidecar over http://"
            );
        }
        anyhow::bail!("--otlp {url}: expected http://HOST:PORT[/PATH]");
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        anyhow::bail!("--otlp {url}: no host");
    }
    Ok(if path.is_empty() {
        format!("http://{authority}/v1/logs")
    } else {
        url.to_owned()
    })
}

fn attribute(key: impl Into<String>, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn string(text: &str) -> any_value::Value {
    any_value::Value::StringValue(text.to_owned())
}

/// A u64 as an OTLP int when it fits, else as its decimal text (OTLP ints
/// are signed 64-bit).
fn unsigned(value: u64) -> any_value::Value {
    i64::try_from(value).map_or_else(
        |_| any_value::Value::StringValue(value.to_string()),
        any_value::Value::IntValue,
    )
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The semantic-convention name of an exit's key, when there is one.
fn convention(exit_key: &str) -> Option<&'static str> {
    Some(match exit_key {
        key::PID => "process.pid",
        key::PPID => "process.parent_pid",
        key::NAME => "process.executable.name",
        key::COMMAND_LINE => "process.command_line",
        key::START_TIME => "process.creation.time",
        key::EXIT_TIME => "process.exit.time",
        key::EXIT_CODE => "process.exit.code",
        key::CONTAINER_ID => "container.id",
        _ => return None,
    })
}

/// The OTLP attribute of one field; `None` for unknown values and the
/// `type` key (the event name carries it).
fn field_attribute(
    message: &Message<'_>,
    name: &'static str,
    value: Value<'_>,
) -> Option<KeyValue> {
    if name == key::TYPE {
        return None;
    }
    let is_exit = matches!(message, Message::Exit(_));
    let converted = convention(name).filter(|_| is_exit);
    let key =
        |fallback: &str| converted.map_or_else(|| format!("procexit.{fallback}"), str::to_owned);
    Some(match value {
        Value::Null => return None,
        Value::Bool(flag) => attribute(key(name), any_value::Value::BoolValue(flag)),
        Value::Unsigned(n) => attribute(key(name), unsigned(n)),
        Value::Signed(n) => attribute(key(name), any_value::Value::IntValue(n)),
        Value::Text(text) => attribute(key(name), string(text)),
        Value::User(User::Uid(uid)) if is_exit => attribute(
            "process.user.id",
            any_value::Value::IntValue(i64::from(*uid)),
        ),
        Value::User(user) => {
            let name = if is_exit {
                "process.owner".to_owned()
            } else {
                key(name)
            };
            attribute(name, string(&user.to_string()))
        }
        Value::Time(time) => attribute(key(name), string(&format_rfc3339(time))),
        Value::Duration(d) => attribute(
            key(name),
            any_value::Value::DoubleValue(d.as_secs_f64() * 1000.0),
        ),
        // An opaque id: as text, so that no consumer rounds it.
        Value::Key(id) => attribute(key(name), string(&id.to_string())),
        _ => return None,
    })
}

/// The log record of one message: event name `procexit.TYPE`, severity
/// WARN for failures and losses (as the journal's priority), INFO
/// otherwise, the exit time as its time, one line of text as its body.
pub fn log_record(message: &Message<'_>, observed: SystemTime) -> LogRecord {
    let attributes = message
        .fields()
        .filter_map(|(name, value)| field_attribute(message, name, value))
        .collect();
    let warning = is_warning(message);
    let (severity, severity_text) = if warning {
        (SeverityNumber::Warn, "WARN")
    } else {
        (SeverityNumber::Info, "INFO")
    };
    let (time, body) = match message {
        Message::Exit(exit) => (
            exit.exit_time.map_or(0, unix_nanos),
            format!(
                "{} [{}] {}: {}",
                exit.name.as_deref().unwrap_or("?"),
                exit.pid,
                exit.kind().as_str(),
                exit.status
            ),
        ),
        Message::Lost { count, reason } => (0, format!("{count} exits lost ({})", reason.as_str())),
        other => (0, format!("procexit {}", other.type_name())),
    };
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: unix_nanos(observed),
        severity_number: severity as i32,
        severity_text: severity_text.to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes,
        event_name: format!("procexit.{}", message.type_name()),
        ..LogRecord::default()
    }
}

/// The machine's name, for `host.name`.
fn host_name() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

/// The resource every record is sent under: `service.name` (`procexit`),
/// `service.version`, `host.name`, `os.type`.
pub fn resource() -> Resource {
    let os_type = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    Resource {
        attributes: vec![
            attribute("service.name", string("procexit")),
            attribute("service.version", string(env!("CARGO_PKG_VERSION"))),
            attribute("host.name", string(&host_name())),
            attribute("os.type", string(os_type)),
        ],
        ..Resource::default()
    }
}

/// One export request: the resource, the `procexit` scope, the records.
pub fn request(resource: &Resource, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "procexit".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// What the exporter thread and the sink share.
#[derive(Default)]
struct Shared {
    delivered: AtomicU64,
    undelivered: AtomicU64,
    last_error: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn failed(&self, records: usize, error: String) {
        self.undelivered
            .fetch_add(records as u64, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// Why one post did not deliver its batch.
enum PostError {
    /// Worth retrying: the collector is unreachable, overloaded or failing.
    Retry(String),
    /// Not worth retrying: the collector refused the request.
    Refused(String),
}

/// The exporter's thread.
struct Exporter {
    url: String,
    resource: Resource,
    options: Options,
    shared: Arc<Shared>,
    queue: Receiver<LogRecord>,
}

impl Exporter {
    fn run(self) {
        let mut batch = Vec::with_capacity(self.options.batch);
        let mut finish_by = None;
        loop {
            let open = self.fill(&mut batch, &mut finish_by);
            if !batch.is_empty() {
                self.deliver(std::mem::take(&mut batch), &mut finish_by);
            }
            if !open {
                return;
            }
        }
    }

    /// Fills the batch until it is full, the linger time ran out, or the
    /// sink was finished (then returns `false` once the queue is empty).
    fn fill(&self, batch: &mut Vec<LogRecord>, finish_by: &mut Option<Instant>) -> bool {
        let lingering_until = Instant::now() + self.options.linger;
        while batch.len() < self.options.batch {
            let wait = lingering_until.saturating_duration_since(Instant::now());
            match self.queue.recv_timeout(wait) {
                Ok(record) => batch.push(record),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => {
                    finish_by.get_or_insert_with(|| Instant::now() + self.options.finish_within);
                    return false;
                }
            }
        }
        true
    }

    /// Posts one batch, retrying with backoff until it is delivered,
    /// refused, or the end's time budget ran out.
    fn deliver(&self, batch: Vec<LogRecord>, finish_by: &mut Option<Instant>) {
        let records = batch.len();
        let body = request(&self.resource, batch).encode_to_vec();
        let (mut pause, longest) = self.options.backoff;
        if finish_by.is_some_and(|end| Instant::now() >= end) {
            self.shared
                .failed(records, "no time left to deliver at the end".to_owned());
            return;
        }
        loop {
            let error = match self.post(&body) {
                Ok(rejected) => {
                    let rejected = rejected.min(records);
                    self.shared
                        .delivered
                        .fetch_add((records - rejected) as u64, Ordering::Relaxed);
                    if rejected > 0 {
                        self.shared.failed(
                            rejected,
                            format!("the collector rejected {rejected} records"),
                        );
                    }
                    return;
                }
                Err(PostError::Refused(error)) => {
                    self.shared.failed(records, error);
                    return;
                }
                Err(PostError::Retry(error)) => error,
            };
            if self.shared.stop.load(Ordering::Relaxed) {
                finish_by.get_or_insert_with(|| Instant::now() + self.options.finish_within);
            }
            let now = Instant::now();
            if finish_by.is_some_and(|end| now + pause >= end) {
                self.shared.failed(records, error);
                return;
            }
            if let Ok(mut last) = self.shared.last_error.lock() {
                *last = Some(format!("{error} (retrying)"));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(longest);
        }
    }

    /// One POST; the count of records the collector rejected in a partial
    /// success.
    fn post(&self, body: &[u8]) -> Result<usize, PostError> {
        let response = minreq::post(self.url.as_str())
            .with_header("Content-Type", "application/x-protobuf")
            .with_body(body)
            .with_timeout(self.options.timeout.as_secs().max(1))
            .send();
        let response = match response {
            Ok(response) => response,
            Err(error) => return Err(PostError::Retry(format!("{}: {error}", self.url))),
        };
        let status = response.status_code;
        match status {
            200..=299 => Ok(ExportLogsServiceResponse::decode(response.as_bytes())
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| usize::try_from(p.rejected_log_records).unwrap_or(0))),
            // OTLP/HTTP: these are the retryable statuses.
            429 | 502 | 503 | 504 => Err(PostError::Retry(format!("{}: HTTP {status}", self.url))),
            _ => Err(PostError::Refused(format!("{}: HTTP {status}", self.url))),
        }
    }
}

/// `--otlp`: records to an OpenTelemetry collector.
pub struct OtlpSink {
    describe: String,
    queue: Option<SyncSender<LogRecord>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Counted here: records that found the queue full.
    queue_full: u64,
    health: Health,
    seen: (u64, u64),
}

impl OtlpSink {
    /// Starts the exporter thread for `url` (see [`logs_url`]).
    pub fn start(url: &str, options: Options) -> anyhow::Result<OtlpSink> {
        let url = logs_url(url)?;
        let (sender, queue) = mpsc::sync_channel(options.queue.max(1));
        let shared = Arc::new(Shared::default());
        let exporter = Exporter {
            url: url.clone(),
            resource: resource(),
            options,
            shared: shared.clone(),
            queue,
        };
        let thread = std::thread::Builder::new()
            .name("otlp".into())
            .spawn(move || exporter.run())
            .context("cannot start the OTLP exporter thread")?;
        Ok(OtlpSink {
            describe: format!("OTLP {url}"),
            queue: Some(sender),
            thread: Some(thread),
            shared,
            queue_full: 0,
            health: Health::default(),
            seen: (0, 0),
        })
    }

    /// Brings the health up to the exporter's counters (and says on stderr
    /// when delivery starts or stops failing).
    fn sync(&mut self) {
        let delivered = self.shared.delivered.load(Ordering::Relaxed);
        let undelivered = self.shared.undelivered.load(Ordering::Relaxed) + self.queue_full;
        let (seen_delivered, seen_undelivered) = self.seen;
        if undelivered > seen_undelivered {
            let error = self
                .shared
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "the exporter's queue is full".to_owned());
            self.health
                .failed(&self.describe, undelivered - seen_undelivered, &error);
        }
        if delivered > seen_delivered {
            self.health
                .delivered(&self.describe, delivered - seen_delivered);
        }
        self.seen = (delivered, undelivered);
    }
}

impl Sink for OtlpSink {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn send(&mut self, message: &Message<'_>) {
        let record = log_record(message, SystemTime::now());
        let Some(queue) = &self.queue else {
            self.queue_full += 1;
            self.sync();
            return;
        };
        match queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queue_full += 1;
                if let Ok(mut last) = self.shared.last_error.lock() {
                    *last = Some(
                        "the exporter's queue is full (the collector is down or slow)".to_owned(),
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => self.queue_full += 1,
        }
        self.sync();
    }

    fn idle(&mut self) {
        self.sync();
    }

    fn finish(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Closing the queue tells the exporter to deliver what it has and end.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.sync();
    }

    fn health(&self) -> &Health {
        &self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use procexit::{ExitStatus, ProcessExit, Source};

    fn attr<'a>(record: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn urls_get_the_logs_path_and_need_http() {
        assert_eq!(
            logs_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/logs"
        );
        assert_eq!(
            logs_url("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318/v1/logs"
        );
        assert_eq!(
            logs_url("http://collector:4318/custom/logs").unwrap(),
            "http://collector:4318/custom/logs"
        );
        assert!(logs_url("https://collector:4318").is_err());
        assert!(logs_url("collector:4318").is_err());
        assert!(logs_url("http:///v1/logs").is_err());
    }

    #[test]
    fn exits_use_the_semantic_conventions() {
        let mut exit = ProcessExit::new(
            42,
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false,
            },
            Source::LinuxEbpf,
        );
        exit.ppid = Some(1);
        exit.name = Some("sleep".into());
        exit.user = Some(User::Uid(1000));
        exit.process_key = Some(u64::MAX);
        exit.exit_time = Some(UNIX_EPOCH + Duration::from_secs(2));
        exit.oom_killed = Some(true);
        exit.container_id = Some("abc".into());
        let record = log_record(&Message::Exit(&exit), UNIX_EPOCH);
        assert_eq!(record.event_name, "procexit.exit");
        assert_eq!(record.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(record.time_unix_nano, 2_000_000_000);
        use any_value::Value as V;
        assert_eq!(attr(&record, "process.pid"), Some(&V::IntValue(42)));
        assert_eq!(attr(&record, "process.parent_pid"), Some(&V::IntValue(1)));
        assert_eq!(
            attr(&record, "process.executable.name"),
            Some(&V::StringValue("sleep".into()))
        );
        assert_eq!(attr(&record, "process.user.id"), Some(&V::IntValue(1000)));
        assert_eq!(
            attr(&record, "process.exit.time"),
            Some(&V::StringValue("1970-01-01T00:00:02.000000Z".into()))
        );
        assert_eq!(
            attr(&record, "container.id"),
            Some(&V::StringValue("abc".into()))
        );
        assert_eq!(attr(&record, "procexit.signal"), Some(&V::IntValue(9)));
        assert_eq!(
            attr(&record, "procexit.kind"),
            Some(&V::StringValue("oom_killed".into()))
        );
        assert_eq!(
            attr(&record, "procexit.oom_killed"),
            Some(&V::BoolValue(true))
        );
        assert_eq!(
            attr(&record, "procexit.process_key"),
            Some(&V::StringValue(u64::MAX.to_string()))
        );
        // Unknown values are left out, not sent as empty.
        assert_eq!(attr(&record, "process.command_line"), None);
        assert_eq!(attr(&record, "process.exit.code"), None);
        assert_eq!(attr(&record, "procexit.type"), None);
    }

    #[test]
    fn windows_users_are_owners_and_losses_are_warnings() {
        let mut exit = ProcessExit::new(4, ExitStatus::Code(0), Source::EtwKernel);
        exit.user = Some(User::Sid("S-1-5-18".into()));
        let record = log_record(&Message::Exit(&exit), UNIX_EPOCH);
        assert_eq!(
            attr(&record, "process.owner"),
            Some(&any_value::Value::StringValue("S-1-5-18".into()))
        );
        assert_eq!(
            attr(&record, "process.exit.code"),
            Some(&any_value::Value::IntValue(0))
        );
        assert_eq!(record.severity_number, SeverityNumber::Info as i32);
        let lost = Message::Lost {
            count: 3,
            reason: procexit::LossReason::QueueFull,
        };
        let record = log_record(&lost, UNIX_EPOCH);
        assert_eq!(record.event_name, "procexit.lost");
        assert_eq!(record.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(
            attr(&record, "procexit.count"),
            Some(&any_value::Value::IntValue(3))
        );
    }

    #[test]
    fn requests_round_trip_through_protobuf() {
        let exit = ProcessExit::new(7, ExitStatus::Code(3), Source::LinuxConnector);
        let records = vec![log_record(&Message::Exit(&exit), UNIX_EPOCH)];
        let bytes = request(&resource(), records.clone()).encode_to_vec();
        let decoded = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        let logs = &decoded.resource_logs[0];
        let names: Vec<&str> = logs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(
            names,
            ["service.name", "service.version", "host.name", "os.type"]
        );
        assert_eq!(logs.scope_logs[0].log_records, records);
    }

    /// No collector: the batch is retried until the end's budget, then every
    /// record is counted, none lost silently.
    #[test]
    fn undeliverable_records_are_counted() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = Options {
            batch: 4,
            queue: 8,
            linger: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            backoff: (Duration::from_millis(5), Duration::from_millis(20)),
            finish_within: Duration::from_millis(200),
        };
        let mut sink = OtlpSink::start(&format!("http://127.0.0.1:{port}"), options).unwrap();
        let exit = ProcessExit::new(7, ExitStatus::Code(0), Source::LinuxConnector);
        for _ in 0..50 {
            sink.send(&Message::Exit(&exit));
        }
        sink.finish();
        assert_eq!(sink.health().written, 0);
        assert_eq!(sink.health().unwritten, 50);
        assert!(sink.health().last_error.is_some());
    }
}

//! `watch --metrics ADDR`: a Prometheus endpoint (`GET /metrics`, the
//! OpenMetrics text format) counting what `watch` saw.
//!
//! Series, all counters unless said:
//!
//! - `procexit_exits_total{kind}`: exits by kind (`exited`, `signaled`,
//!   `oom_killed`, …: the seven kinds of the JSON `kind` key);
//! - `procexit_exit_signals_total{signal}`: exits by the signal that ended
//!   them (`SIGKILL`, …; the number for signals without a name);
//! - `procexit_exit_status_total{status_name}`: exits by status name
//!   (signal names on Linux, NTSTATUS names on Windows), at most
//!   [`STATUS_NAMES`] names, the rest as `other`;
//! - `procexit_exits_by_name_total{name}`: only with `--metrics-names N`,
//!   at most N process names, the rest as `other`;
//! - `procexit_oom_kills_total`: exits the OOM killer chose;
//! - `procexit_lost_exits_total{reason}`: exits known to be missing, by
//!   reason (`kernel` lost, `queue-full` dropped, `overrun`,
//!   `session-stopped`), and `procexit_loss_events_total{reason}`, how many
//!   times it happened (an overrun may not say how many exits it took);
//! - `procexit_source_info{source}` (gauge 1): the source in use;
//! - `procexit_build_info{version,os}` (gauge 1).
//!
//! Cardinality is bounded by design: kinds, signals and loss reasons are
//! small fixed sets, status names are capped, process names are off unless
//! asked for and capped.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use procexit::schema::Message;
use procexit::signal_name;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Health, Sink};

/// Distinct `status_name` label values at most (then `other`).
pub const STATUS_NAMES: usize = 64;

type Labels = Vec<(&'static str, String)>;

/// A label value from an open set, capped: the first `cap` values seen get
/// their own series, later ones count as `other`.
#[derive(Debug)]
struct Capped {
    cap: usize,
    seen: HashSet<String>,
}

impl Capped {
    fn new(cap: usize) -> Capped {
        Capped {
            cap,
            seen: HashSet::new(),
        }
    }

    fn label(&mut self, value: &str) -> String {
        if self.seen.contains(value) {
            return value.to_owned();
        }
        if self.seen.len() < self.cap {
            self.seen.insert(value.to_owned());
            return value.to_owned();
        }
        "other".to_owned()
    }
}

/// The counters, shared with the endpoint's thread.
struct Counters {
    exits: Family<Labels, Counter>,
    signals: Family<Labels, Counter>,
    statuses: Family<Labels, Counter>,
    names: Option<Family<Labels, Counter>>,
    oom_kills: Counter,
    lost: Family<Labels, Counter>,
    loss_events: Family<Labels, Counter>,
    source: SourceInfo,
}

/// `--metrics`: counts records for the Prometheus endpoint.
pub struct MetricsSink {
    describe: String,
    counters: Counters,
    status_names: Capped,
    process_names: Capped,
    health: Health,
    address: SocketAddr,
}

impl MetricsSink {
    /// Binds `address` and serves `/metrics` from a thread of its own;
    /// `names` > 0 adds the per-process-name series, capped at `names`.
    pub fn serve(address: SocketAddr, names: usize) -> anyhow::Result<MetricsSink> {
        let listener = TcpListener::bind(address)
            .with_context(|| format!("--metrics {address}: cannot listen"))?;
        let address = listener.local_addr().unwrap_or(address);
        let mut registry = Registry::default();
        let counters = Counters {
            exits: Family::default(),
            signals: Family::default(),
            statuses: Family::default(),
            names: (names > 0).then(Family::default),
            oom_kills: Counter::default(),
            lost: Family::default(),
            loss_events: Family::default(),
            source: SourceInfo(Family::default(), Arc::default()),
        };
        registry.register(
            "procexit_exits",
            "Process exits by kind",
            counters.exits.clone(),
        );
        registry.register(
            "procexit_exit_signals",
            "Process exits by the signal that ended them",
            counters.signals.clone(),
        );
        registry.register(
            "procexit_exit_status",
            "Process exits by status name (capped; the rest as other)",
            counters.statuses.clone(),
        );
        if let Some(family) = &counters.names {
            registry.register(
                "procexit_exits_by_name",
                "Process exits by process name (capped; the rest as other)",
                family.clone(),
            );
        }
        registry.register(
            "procexit_oom_kills",
            "Processes the OOM killer chose",
            counters.oom_kills.clone(),
        );
        registry.register(
            "procexit_lost_exits",
            "Exits known to be missing, by reason (queue-full: dropped)",
            counters.lost.clone(),
        );
        registry.register(
            "procexit_loss_events",
            "Losses reported, by reason",
            counters.loss_events.clone(),
        );
        registry.register(
            "procexit_source_info",
            "The source of exits in use",
            counters.source.0.clone(),
        );
        let build: Family<Labels, Gauge> = Family::default();
        build
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("os", std::env::consts::OS.to_owned()),
            ])
            .set(1);
        registry.register("procexit_build_info", "procexit's build", build);
        let registry = Arc::new(Mutex::new(registry));
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    answer(stream, &registry);
                }
            })
            .context("cannot start the metrics thread")?;
        Ok(MetricsSink {
            describe: format!("metrics http://{address}/metrics"),
            counters,
            status_names: Capped::new(STATUS_NAMES),
            process_names: Capped::new(names),
            health: Health::default(),
            address,
        })
    }

    /// The address it listens on.
    #[allow(dead_code)] // used by the tests
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What names the source in use, once the monitor runs.
    pub fn source_info(&self) -> SourceInfo {
        self.counters.source.clone()
    }
}

/// `procexit_source_info`, set from outside the sink (the monitor's
/// backend is known only once it started).
#[derive(Clone)]
pub struct SourceInfo(Family<Labels, Gauge>, Arc<AtomicBool>);

impl SourceInfo {
    /// Names the source in use.
    pub fn set(&self, source: &str) {
        self.0.clear();
        self.0
            .get_or_create(&vec![("source", source.to_owned())])
            .set(1);
        self.1.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }
}

impl Sink for MetricsSink {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn send(&mut self, message: &Message<'_>) {
        match message {
            Message::Exit(exit) => {
                let c = &self.counters;
                c.exits
                    .get_or_create(&vec![("kind", exit.kind().as_str().to_owned())])
                    .inc();
                if let Some(signal) = exit.status.signal() {
                    let name =
                        signal_name(signal).map_or_else(|| signal.to_string(), str::to_owned);
                    c.signals.get_or_create(&vec![("signal", name)]).inc();
                }
                if let Some(status) = exit.status_name() {
                    let label = self.status_names.label(status);
                    c.statuses
                        .get_or_create(&vec![("status_name", label)])
                        .inc();
                }
                if let Some(family) = &c.names {
                    let label = self.process_names.label(exit.name.as_deref().unwrap_or(""));
                    family.get_or_create(&vec![("name", label)]).inc();
                }
                if exit.oom_killed == Some(true) {
                    c.oom_kills.inc();
                }
                if !self.counters.source.is_set() {
                    self.counters.source.set(exit.source.as_str());
                }
            }
            Message::Lost { count, reason } => {
                let labels = vec![("reason", reason.as_str().to_owned())];
                self.counters.lost.get_or_create(&labels).inc_by(*count);
                self.counters.loss_events.get_or_create(&labels).inc();
            }
            _ => return,
        }
        self.health.delivered(&self.describe, 1);
    }

    fn health(&self) -> &Health {
        &self.health
    }
}

/// Answers one HTTP request: `GET /metrics` (or `/`) gets the text format,
/// anything else a 404. One request per connection.
fn answer(mut stream: TcpStream, registry: &Mutex<Registry>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(buffer.get(..n).unwrap_or_default()),
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split(|&b| b == b'?').next().unwrap_or_default());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => {
            let mut text = String::new();
            let encoded = registry
                .lock()
                .ok()
                .is_some_and(|registry| encode(&mut text, &registry).is_ok());
            if encoded {
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            } else {
                ("500 Internal Server Error", "text/plain", String::new())
            }
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use procexit::{ExitStatus, LossReason, ProcessExit, Source};

    fn scrape(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn counts_by_kind_signal_and_loss_with_capped_names() {
        let mut sink = MetricsSink::serve("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let mut exit = ProcessExit::new(1, ExitStatus::Code(0), Source::LinuxConnector);
        for name in ["a", "b", "c", "a"] {
            exit.name = Some(name.into());
            sink.send(&Message::Exit(&exit));
        }
        let mut killed = ProcessExit::new(
            2,
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false,
            },
            Source::LinuxEbpf,
        );
        killed.oom_killed = Some(true);
        sink.send(&Message::Exit(&killed));
        sink.send(&Message::Lost {
            count: 5,
            reason: LossReason::QueueFull,
        });
        let text = scrape(sink.address(), "/metrics");
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        for line in [
            "procexit_exits_total{kind=\"exited\"} 4",
            "procexit_exits_total{kind=\"oom_killed\"} 1",
            "procexit_exit_signals_total{signal=\"SIGKILL\"} 1",
            "procexit_exit_status_total{status_name=\"SIGKILL\"} 1",
            "procexit_exits_by_name_total{name=\"a\"} 2",
            "procexit_exits_by_name_total{name=\"b\"} 1",
            "procexit_exits_by_name_total{name=\"other\"} 2",
            "procexit_oom_kills_total 1",
            "procexit_lost_exits_total{reason=\"queue-full\"} 5",
            "procexit_loss_events_total{reason=\"queue-full\"} 1",
            "procexit_source_info{source=\"linux-connector\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("procexit_build_info{version=\""));
        assert!(text.trim_end().ends_with("# EOF"));
        assert!(scrape(sink.address(), "/other").starts_with("HTTP/1.1 404"));
        assert_eq!(sink.health().written, 6);
    }

    #[test]
    fn names_are_off_unless_asked_for() {
        let mut sink = MetricsSink::serve("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        sink.send(&Message::Exit(&ProcessExit::new(
            1,
            ExitStatus::Code(1),
            Source::LinuxConnector,
        )));
        let text = scrape(sink.address(), "/metrics");
        assert!(!text.contains("procexit_exits_by_name"), "{text}");
        assert!(text.contains("procexit_exits_total{kind=\"exited\"} 1"));
    }
}

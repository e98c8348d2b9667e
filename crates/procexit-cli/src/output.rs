//! Printing exits: an aligned table for people, JSON Lines for programs.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use procexit::etl::LifecycleKind;
use procexit::schema::Message;
use procexit::{Event, Stats};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One aligned row per exit, cut to the terminal width.
    Table,
    /// One JSON object per line, flushed per line.
    JsonLines,
}

/// Writes events to stdout in one format.
pub struct Printer {
    format: Format,
    out: io::Stdout,
    width: Option<usize>,
    header_done: bool,
}

impl Printer {
    pub fn new(format: Format) -> Printer {
        let width = terminal_size::terminal_size().map(|(w, _)| usize::from(w.0));
        Printer {
            format,
            out: io::stdout(),
            width,
            header_done: false,
        }
    }

    /// Prints one event. Errors are I/O errors (a closed pipe among them).
    pub fn event(&mut self, event: &Event) -> io::Result<()> {
        self.message(Message::from(event))
    }

    /// Prints one message: as JSON, or as a table row or line. A `stats`
    /// message has no table form (the summary goes to stderr).
    pub fn message(&mut self, message: Message<'_>) -> io::Result<()> {
        match self.format {
            Format::JsonLines => {
                let mut out = self.out.lock();
                serde_json::to_writer(&mut out, &message)?;
                out.write_all(b"\n")?;
                out.flush()
            }
            Format::Table => {
                let line = match message {
                    Message::Exit(exit) => {
                        return self.row(&Row {
                            time: exit.exit_time,
                            pid: exit.pid,
                            ppid: exit.ppid,
                            status: &exit.status.to_string(),
                            duration: exit.duration(),
                            name: exit.name.as_deref(),
                            command_line: exit.command_line.as_deref(),
                        })
                    }
                    Message::Process(record) => {
                        return self.row(&Row {
                            time: record.time,
                            pid: record.pid,
                            ppid: Some(record.ppid),
                            status: lifecycle_label(record.kind),
                            duration: None,
                            name: record.name,
                            command_line: record.command_line,
                        })
                    }
                    Message::Lost { count, reason } => {
                        format!("-- {count} exits lost ({}) --", reason.as_str())
                    }
                    _ => return Ok(()),
                };
                let line = self.fit(line);
                let mut out = self.out.lock();
                writeln!(out, "{line}")?;
                out.flush()
            }
        }
    }

    /// Prints one table row (the header first, once).
    fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            let header = self.fit(table_header());
            writeln!(self.out.lock(), "{header}")?;
        }
        let line = self.fit(row.format());
        let mut out = self.out.lock();
        writeln!(out, "{line}")?;
        out.flush()
    }

    /// Prints the closing counters: on stdout as a `stats` object in JSON
    /// mode (so a log shipper sees them in-band), always on stderr.
    pub fn summary(&mut self, stats: &Stats) -> io::Result<()> {
        if self.format == Format::JsonLines {
            self.message(Message::Stats(stats))?;
        }
        eprintln!("procexit: {}", summary_line(stats));
        Ok(())
    }

    fn fit(&self, line: String) -> String {
        match self.width {
            Some(width) if line.chars().count() > width => {
                let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
                cut.push('…');
                cut
            }
            _ => line,
        }
    }
}

/// "12 exits seen, 10 delivered, …" — loss is always spelled out.
pub fn summary_line(stats: &Stats) -> String {
    let mut line = format!(
        "{} exits seen, {} delivered, {} filtered out, {} dropped (slow consumer), {} lost in the kernel",
        stats.seen, stats.delivered, stats.filtered, stats.dropped, stats.lost
    );
    if stats.overruns > 0 {
        line.push_str(&format!(
            " ({} kernel overruns: the lost count is a lower bound)",
            stats.overruns
        ));
    }
    if stats.anomalies > 0 {
        line.push_str(&format!(", {} anomalies", stats.anomalies));
    }
    line
}

fn table_header() -> String {
    format!(
        "{:<12} {:>7} {:>7} {:<18} {:>9} {:<16} COMMAND",
        "TIME(UTC)", "PID", "PPID", "STATUS", "DURATION", "NAME"
    )
}

/// The STATUS column of a trace's start or rundown (`replay --all`).
fn lifecycle_label(kind: LifecycleKind) -> &'static str {
    match kind {
        LifecycleKind::Start | LifecycleKind::KernelProcessStart => "started",
        LifecycleKind::DcStart => "running (rundown)",
        LifecycleKind::DcEnd => "running at end",
        other => other.as_str(),
    }
}

/// One table row: an exit, or (replay --all) a start or rundown.
struct Row<'a> {
    time: Option<std::time::SystemTime>,
    pid: u32,
    ppid: Option<u32>,
    status: &'a str,
    duration: Option<Duration>,
    name: Option<&'a str>,
    command_line: Option<&'a str>,
}

impl Row<'_> {
    fn format(&self) -> String {
        let dash = || "-".to_string();
        format!(
            "{:<12} {:>7} {:>7} {:<18} {:>9} {:<16} {}",
            self.time.map(clock_time).unwrap_or_else(dash),
            self.pid,
            self.ppid.map(|p| p.to_string()).unwrap_or_else(dash),
            self.status,
            self.duration.map(format_duration).unwrap_or_else(dash),
            self.name.unwrap_or("-"),
            self.command_line.unwrap_or("-"),
        )
    }
}

/// `HH:MM:SS.mmm` of a UTC time.
fn clock_time(time: std::time::SystemTime) -> String {
    let Ok(since) = time.duration_since(UNIX_EPOCH) else {
        return "-".into();
    };
    let secs = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60,
        since.subsec_millis()
    )
}

/// Compact human duration: `850µs`, `12ms`, `3.2s`, `5m02s`, `2h03m`.
pub fn format_duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{}ms", micros / 1_000)
    } else if d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if d.as_secs() < 3600 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h{:02}m", d.as_secs() / 3600, (d.as_secs() % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(format_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(format_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(format_duration(Duration::from_millis(3240)), "3.2s");
        assert_eq!(format_duration(Duration::from_secs(302)), "5m02s");
        assert_eq!(format_duration(Duration::from_secs(7380)), "2h03m");
    }

    #[test]
    fn clock_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 + 3_723_456);
        assert_eq!(clock_time(t), "01:02:03.456");
    }
}

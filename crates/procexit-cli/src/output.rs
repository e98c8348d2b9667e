//! Printing exits: an aligned table for people, JSON Lines for programs.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, UNIX_EPOCH};

use procexit::etl::LifecycleKind;
use procexit::schema::Message;
use procexit::{Event, ExitKind, ExitStatus, ProcessExit, Stats};

use crate::escape;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One aligned row per exit; names and command lines escaped (see
    /// [`escape::for_table`]); cut to the terminal's width when stdout is
    /// a terminal.
    Table,
    /// One JSON object per line.
    JsonLines,
}

/// Writes events to stdout in one format.
///
/// Lines are built in memory and written whole. A printer made with
/// [`Printer::new`] writes each line at once; one made with
/// [`Printer::buffered`] keeps them until [`flush`](Printer::flush) (the
/// caller flushes when its stream goes idle) or until 64 KiB wait, so a
/// burst costs one write instead of one per exit.
pub struct Printer {
    format: Format,
    out: io::Stdout,
    width: Option<usize>,
    ascii: bool,
    header_done: bool,
    /// Lines not yet written.
    pending: Vec<u8>,
    buffered: bool,
}

/// Written out at once when this much waits, idle or not.
const FLUSH_AT: usize = 64 * 1024;

impl Printer {
    /// A printer that writes every line as soon as it is printed.
    pub fn new(format: Format) -> Printer {
        let out = io::stdout();
        let terminal = out.is_terminal();
        // Only stdout's own width counts: `watch > log.txt` run from a
        // terminal keeps whole rows.
        let width = terminal
            .then(|| terminal_size::terminal_size_of(&out))
            .flatten()
            .map(|(w, _)| usize::from(w.0));
        Printer {
            format,
            out,
            width,
            ascii: ascii_only(terminal),
            header_done: false,
            pending: Vec::with_capacity(4096),
            buffered: false,
        }
    }

    /// A printer that keeps lines until [`flush`](Self::flush) or until
    /// 64 KiB wait.
    pub fn buffered(format: Format) -> Printer {
        let mut printer = Printer::new(format);
        printer.buffered = true;
        printer
    }

    /// Writes what waits. Errors are I/O errors (a closed pipe among them).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut out = self.out.lock();
        let written = out.write_all(&self.pending).and_then(|()| out.flush());
        self.pending.clear();
        written
    }

    /// A line was added to `pending`: written now unless buffering.
    fn added(&mut self) -> io::Result<()> {
        if !self.buffered || self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
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
                crate::json::write_message(&mut self.pending, &message);
                self.pending.push(b'\n');
                self.added()
            }
            Format::Table => {
                let line = match message {
                    Message::Exit(exit) => {
                        return self.row(&Row {
                            time: exit.exit_time,
                            pid: exit.pid,
                            ppid: exit.ppid,
                            status: &status_text(exit),
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
                    Message::Zombie(record) => {
                        // A zombie's row shows when it ended, if the record says.
                        return self.row(&Row {
                            time: record.exit_time,
                            pid: record.pid,
                            ppid: Some(record.ppid),
                            status: "zombie",
                            duration: None,
                            name: record.name,
                            command_line: record.command_line,
                        });
                    }
                    Message::Lost { count, reason } => {
                        format!("-- {count} exits lost ({}) --", reason.as_str())
                    }
                    _ => return Ok(()),
                };
                let line = self.fit(line);
                writeln!(self.pending, "{line}")?;
                self.added()
            }
        }
    }

    /// Prints one table row (the header first, once).
    fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            let header = self.fit(table_header());
            writeln!(self.pending, "{header}")?;
        }
        let line = self.fit(row.format(self.ascii));
        writeln!(self.pending, "{line}")?;
        self.added()
    }

    /// Prints the closing counters: on stdout as a `stats` object in JSON
    /// mode (so a log shipper sees them in-band), always on stderr.
    pub fn summary(&mut self, stats: &Stats) -> io::Result<()> {
        if self.format == Format::JsonLines {
            self.message(Message::Stats(stats))?;
        }
        self.flush()?;
        eprintln!("procexit: {}", summary_line(stats));
        Ok(())
    }

    fn fit(&self, line: String) -> String {
        match self.width {
            Some(width) if line.chars().count() > width => {
                let mark = if self.ascii { "..." } else { "…" };
                let keep = width.saturating_sub(mark.chars().count());
                let mut cut: String = line.chars().take(keep).collect();
                cut.push_str(mark);
                cut
            }
            _ => line,
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        // Best effort on early returns; the normal paths flush and see errors.
        let _ = self.flush();
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
    if stats.evicted > 0 {
        line.push_str(&format!(
            ", {} live-process records evicted to bound memory",
            stats.evicted
        ));
    }
    if stats.session_gaps > 0 {
        line.push_str(&format!(
            ", trace session stopped from outside and restarted {} times (exits in those gaps are missing)",
            stats.session_gaps
        ));
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
    /// One line: never a control character, never a line break.
    fn format(&self, ascii: bool) -> String {
        let dash = || "-".to_string();
        let text = |t: Option<&str>| escape::for_table(t.unwrap_or("-"), ascii).into_owned();
        format!(
            "{:<12} {:>7} {:>7} {:<18} {:>9} {:<16} {}",
            self.time.map(clock_time).unwrap_or_else(dash),
            self.pid,
            self.ppid.map(|p| p.to_string()).unwrap_or_else(dash),
            text(Some(self.status)),
            self.duration
                .map(|d| format_duration(d, ascii))
                .unwrap_or_else(dash),
            text(self.name),
            text(self.command_line),
        )
    }
}

/// Whether to print ASCII only. A Windows console shows Unicode (Rust
/// writes to it in UTF-16), but piped output is read in the OEM code page
/// by Windows PowerShell 5.1 and older tools, where `µ` and `…` garble.
fn ascii_only(stdout_is_terminal: bool) -> bool {
    cfg!(windows) && !stdout_is_terminal
}

/// The STATUS column: the code or signal with its name beside it
/// (`signal 9 (SIGKILL)`, `code 0xc000013a STATUS_CONTROL_C_EXIT`), and
/// `OOM` when the OOM killer chose the process.
pub fn status_text(exit: &ProcessExit) -> String {
    let mut text = exit.status.to_string();
    // Signal names are part of ExitStatus's Display already.
    if let (ExitStatus::Code(_), Some(name)) = (exit.status, exit.status_name()) {
        text.push(' ');
        text.push_str(name);
    }
    if exit.kind() == ExitKind::OomKilled {
        text.push_str(" OOM");
    }
    text
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

/// Compact human duration: `850µs` (`850us` in ASCII), `12ms`, `3.2s`,
/// `5m02s`, `2h03m`.
pub fn format_duration(d: Duration, ascii: bool) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros}{}", if ascii { "us" } else { "µs" })
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
        assert_eq!(format_duration(Duration::from_micros(850), false), "850µs");
        assert_eq!(format_duration(Duration::from_micros(850), true), "850us");
        assert_eq!(format_duration(Duration::from_millis(12), false), "12ms");
        assert_eq!(format_duration(Duration::from_millis(3240), false), "3.2s");
        assert_eq!(format_duration(Duration::from_secs(302), false), "5m02s");
        assert_eq!(format_duration(Duration::from_secs(7380), false), "2h03m");
    }

    #[test]
    fn hostile_row_stays_one_line() {
        let row = Row {
            time: None,
            pid: 7,
            ppid: Some(1),
            status: "code 0",
            duration: Some(Duration::from_micros(5)),
            name: Some("x\u{1b}[31m"),
            command_line: Some("a\nb\r\u{9b}2J\u{202e}gpj.exe"),
        };
        let line = row.format(false);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(
            line.ends_with("a\\nb\\r\\u{9b}2J\\u{202e}gpj.exe"),
            "{line}"
        );
        assert!(row.format(true).is_ascii());
    }

    #[test]
    fn status_column_names_the_status() {
        use procexit::Source;
        let exit = |status, source| ProcessExit::new(1, status, source);
        let code = ExitStatus::Code;
        assert_eq!(
            status_text(&exit(code(0xC000_013A), Source::EtlFile)),
            "code 0xc000013a STATUS_CONTROL_C_EXIT"
        );
        assert_eq!(status_text(&exit(code(1), Source::EtlFile)), "code 1");
        assert_eq!(
            status_text(&exit(code(3), Source::LinuxConnector)),
            "code 3"
        );
        let kill = ExitStatus::Signal {
            signal: 9,
            core_dumped: false,
        };
        let mut oom = exit(kill, Source::LinuxTaskstats);
        assert_eq!(status_text(&oom), "signal 9 (SIGKILL)");
        oom.oom_killed = Some(true);
        assert_eq!(status_text(&oom), "signal 9 (SIGKILL) OOM");
    }

    #[test]
    fn clock_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 + 3_723_456);
        assert_eq!(clock_time(t), "01:02:03.456");
    }
}

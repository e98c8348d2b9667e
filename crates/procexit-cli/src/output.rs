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
    /// Every column (a wide terminal, or not a terminal), or the ones an
    /// 80-column terminal has room for.
    wide: bool,
    /// Show the date in every row (replay), not only when it is not today.
    always_date: bool,
}

/// A terminal at least this wide gets every column.
const WIDE_AT: usize = 120;

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
            wide: width.is_none_or(|w| w >= WIDE_AT),
            always_date: false,
        }
    }

    /// A printer for a trace (`replay`): every row has its date.
    pub fn for_trace(format: Format) -> Printer {
        let mut printer = Printer::new(format);
        printer.always_date = true;
        printer
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
                            status: &status_short(exit),
                            detail: status_detail(exit),
                            duration: exit.duration(),
                            name: exit.name.as_deref(),
                            killer: exit.killer.as_ref().map(killer_text),
                            command_line: exit.command_line.as_deref(),
                        })
                    }
                    Message::Process(record) => {
                        return self.row(&Row {
                            time: record.time,
                            pid: record.pid,
                            ppid: Some(record.ppid),
                            status: lifecycle_label(record.kind),
                            detail: None,
                            duration: None,
                            name: record.name,
                            killer: None,
                            command_line: record.command_line,
                        })
                    }
                    Message::Zombie(record) => {
                        // A zombie's row shows when it ended, if the record says.
                        let code = record.exit_code.map(|c| ExitStatus::Code(c).to_string());
                        return self.row(&Row {
                            time: record.exit_time,
                            pid: record.pid,
                            ppid: Some(record.ppid),
                            status: "zombie",
                            detail: code.as_deref(),
                            duration: None,
                            name: record.name,
                            killer: None,
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
            let header = self.fit(self.layout().header());
            writeln!(self.pending, "{header}")?;
        }
        let line = self.fit(row.format(&self.layout(), self.ascii));
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

    fn layout(&self) -> Layout {
        Layout {
            wide: self.wide,
            always_date: self.always_date,
            today: days(std::time::SystemTime::now()),
        }
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

/// The STATUS column of a trace's start or rundown (`replay --all`).
fn lifecycle_label(kind: LifecycleKind) -> &'static str {
    match kind {
        LifecycleKind::Start | LifecycleKind::KernelProcessStart => "started",
        LifecycleKind::DcStart => "rundown",
        LifecycleKind::DcEnd => "rundown at end",
        other => other.as_str(),
    }
}

/// Which columns a table has, and how its times read.
struct Layout {
    /// PPID, the status's name (DETAIL) and KILLER in columns of their own.
    wide: bool,
    /// Dates in every row.
    always_date: bool,
    /// Today (UTC), in days since 1970: rows of another day show the date.
    today: Option<u64>,
}

/// Column widths. Longer values are cut with an ellipsis: a row never
/// moves right.
const TIME: usize = 12;
const DATE_TIME: usize = 23;
const PID: usize = 7;
const STATUS: usize = 15;
const DETAIL: usize = 23;
const DURATION: usize = 8;
const NAME_NARROW: usize = 12;
const NAME_WIDE: usize = 16;
const KILLER: usize = 16;

impl Layout {
    fn time_width(&self) -> usize {
        if self.always_date {
            DATE_TIME
        } else {
            TIME
        }
    }

    fn name_width(&self) -> usize {
        if self.wide {
            NAME_WIDE
        } else {
            NAME_NARROW
        }
    }

    fn header(&self) -> String {
        let time = if self.always_date {
            "DATE TIME(UTC)"
        } else {
            "TIME(UTC)"
        };
        let mut line = format!("{time:<w$} {:>PID$}", "PID", w = self.time_width());
        if self.wide {
            line.push_str(&format!(" {:>PID$}", "PPID"));
        }
        line.push_str(&format!(" {:<STATUS$}", "STATUS"));
        if self.wide {
            line.push_str(&format!(" {:<DETAIL$}", "DETAIL"));
        }
        line.push_str(&format!(
            " {:>DURATION$} {:<w$}",
            "DURATION",
            "NAME",
            w = self.name_width()
        ));
        if self.wide {
            line.push_str(&format!(" {:<KILLER$}", "KILLER"));
        }
        line.push_str(" COMMAND");
        line
    }
}

/// One table row: an exit, or (replay --all) a start or rundown.
struct Row<'a> {
    time: Option<std::time::SystemTime>,
    pid: u32,
    ppid: Option<u32>,
    /// Short: `code 3`, `SIGSEGV core`, `code 0x40010004`.
    status: &'a str,
    /// The status's name (`DBG_TERMINATE_PROCESS`), when it has one.
    detail: Option<&'a str>,
    duration: Option<Duration>,
    name: Option<&'a str>,
    /// Who ended the process, when known: `kill[4242]`.
    killer: Option<String>,
    command_line: Option<&'a str>,
}

impl Row<'_> {
    /// One line: never a control character, never a line break, every
    /// column at its place.
    fn format(&self, layout: &Layout, ascii: bool) -> String {
        let cell = |text: Option<&str>, width: usize| cell(text.unwrap_or("-"), width, ascii);
        let time = match self.time {
            Some(time) => {
                let dated = layout.always_date || days(time) != layout.today;
                timestamp(time, dated)
            }
            None => "-".into(),
        };
        let mut line = format!("{time:<w$} {:>PID$}", self.pid, w = layout.time_width());
        if layout.wide {
            let ppid = self.ppid.map(|p| p.to_string());
            line.push_str(&format!(" {:>PID$}", ppid.as_deref().unwrap_or("-")));
        }
        line.push_str(&format!(" {:<STATUS$}", cell(Some(self.status), STATUS)));
        if layout.wide {
            line.push_str(&format!(" {:<DETAIL$}", cell(self.detail, DETAIL)));
        }
        let duration = self.duration.map(|d| format_duration(d, ascii));
        line.push_str(&format!(
            " {:>DURATION$} {:<w$}",
            duration.as_deref().unwrap_or("-"),
            cell(self.name, layout.name_width()),
            w = layout.name_width()
        ));
        let command = escape::for_table(self.command_line.unwrap_or("-"), ascii);
        if layout.wide {
            line.push_str(&format!(
                " {:<KILLER$}",
                cell(self.killer.as_deref(), KILLER)
            ));
            line.push(' ');
        } else if let Some(killer) = &self.killer {
            // No room for a column: the killer leads the command.
            line.push_str(&format!(
                " (killed by {}) ",
                escape::for_table(killer, ascii)
            ));
        } else {
            line.push(' ');
        }
        line.push_str(&command);
        line
    }
}

/// `text` escaped for the table and cut to `width` characters, the cut
/// marked with an ellipsis.
fn cell(text: &str, width: usize, ascii: bool) -> String {
    let text = escape::for_table(text, ascii);
    if text.chars().count() <= width {
        return text.into_owned();
    }
    let mark = if ascii { "..." } else { "…" };
    let mut cut: String = text
        .chars()
        .take(width.saturating_sub(mark.chars().count()))
        .collect();
    cut.push_str(mark);
    cut
}

/// `kill[4242]`, or `pid 4242` when its name is not known.
fn killer_text(killer: &procexit::Killer) -> String {
    match &killer.name {
        Some(name) => format!("{name}[{}]", killer.pid),
        None => format!("pid {}", killer.pid),
    }
}

/// Whether to print ASCII only. A Windows console shows Unicode (Rust
/// writes to it in UTF-16), but piped output is read in the OEM code page
/// by Windows PowerShell 5.1 and older tools, where `µ` and `…` garble.
fn ascii_only(stdout_is_terminal: bool) -> bool {
    cfg!(windows) && !stdout_is_terminal
}

/// The STATUS column: the code (`code 3`, `code 0xc000013a`) or the
/// signal's name (`SIGKILL`, `signal 40` when it has none), `core` when it
/// dumped core, and `OOM` when the OOM killer chose the process.
pub fn status_short(exit: &ProcessExit) -> String {
    let mut text = match exit.status {
        ExitStatus::Code(_) => exit.status.to_string(),
        ExitStatus::Signal {
            signal,
            core_dumped,
        } => {
            let mut text = match procexit::signal_name(signal) {
                Some(name) => name.to_string(),
                None => format!("signal {signal}"),
            };
            if core_dumped {
                text.push_str(" core");
            }
            text
        }
    };
    if exit.kind() == ExitKind::OomKilled {
        text.push_str(" OOM");
    }
    text
}

/// The DETAIL column: the name of an exit code (`STATUS_CONTROL_C_EXIT`,
/// `DBG_TERMINATE_PROCESS`); a signal's name is in STATUS already.
fn status_detail(exit: &ProcessExit) -> Option<&'static str> {
    match exit.status {
        ExitStatus::Code(_) => exit.status_name(),
        ExitStatus::Signal { .. } => None,
    }
}

/// Days since 1970 of a UTC time.
fn days(time: std::time::SystemTime) -> Option<u64> {
    time.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() / 86_400)
}

/// `HH:MM:SS.mmm` of a UTC time, `YYYY-MM-DD HH:MM:SS.mmm` when `dated`.
fn timestamp(time: std::time::SystemTime, dated: bool) -> String {
    if dated {
        // RFC 3339 text: `2020-02-28T22:50:08.216123Z`.
        let text = procexit::format_rfc3339(time);
        if let (Some(date), Some(clock)) = (text.get(..10), text.get(11..23)) {
            return format!("{date} {clock}");
        }
    }
    clock_time(time)
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

    fn layout(wide: bool, always_date: bool) -> Layout {
        Layout {
            wide,
            always_date,
            today: Some(20_000),
        }
    }

    fn sample_row<'a>(status: &'a str, detail: Option<&'a str>) -> Row<'a> {
        Row {
            time: Some(UNIX_EPOCH + Duration::from_millis(20_000 * 86_400_000 + 3_723_456)),
            pid: 4_194_304,
            ppid: Some(1),
            status,
            detail,
            duration: Some(Duration::from_micros(5)),
            name: Some("a-long-process-name"),
            killer: None,
            command_line: Some("make -j8 all"),
        }
    }

    #[test]
    fn hostile_row_stays_one_line() {
        let mut row = sample_row("code 0", None);
        row.name = Some("x\u{1b}[31m");
        row.command_line = Some("a\nb\r\u{9b}2J\u{202e}gpj.exe");
        for wide in [false, true] {
            let line = row.format(&layout(wide, false), false);
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
            assert!(
                line.ends_with("a\\nb\\r\\u{9b}2J\\u{202e}gpj.exe"),
                "{line}"
            );
            assert!(row.format(&layout(wide, false), true).is_ascii());
        }
    }

    /// Long statuses and names are cut in their column: COMMAND starts at
    /// the same place in every row, and at 80 columns it keeps more than
    /// 20 characters.
    #[test]
    fn columns_stay_in_place() {
        for wide in [false, true] {
            let layout = layout(wide, false);
            let header = layout.header();
            let at = header.find("COMMAND").unwrap();
            for (status, detail) in [
                ("code 0", None),
                ("SIGSEGV core", None),
                ("code 0x40010004", Some("DBG_TERMINATE_PROCESS")),
                ("code 0xc0000005", Some("STATUS_ACCESS_VIOLATION_AND_MORE")),
                ("signal 11 (SIGSEGV) core dumped", None),
            ] {
                let line = sample_row(status, detail).format(&layout, false);
                let column = line.find("make -j8 all").map(|b| line[..b].chars().count());
                assert_eq!(column, Some(at), "{header}\n{line}");
            }
            if !wide {
                assert!(80 - at > 20, "COMMAND keeps {} columns: {header}", 80 - at);
            }
        }
        let wide = sample_row("code 0x40010004", Some("DBG_TERMINATE_PROCESS"))
            .format(&layout(true, false), false);
        assert!(
            wide.contains("code 0x40010004 DBG_TERMINATE_PROCESS"),
            "{wide}"
        );
    }

    #[test]
    fn the_killer_is_shown() {
        let mut row = sample_row("SIGKILL", None);
        row.killer = Some("kill[4242]".into());
        let wide = row.format(&layout(true, false), false);
        assert!(wide.contains(" kill[4242] "), "{wide}");
        let narrow = row.format(&layout(false, false), false);
        assert!(narrow.contains("(killed by kill[4242]) make"), "{narrow}");
    }

    #[test]
    fn dates_show_when_not_today_and_always_for_traces() {
        let row = sample_row("code 0", None);
        let today = row.format(&layout(false, false), false);
        assert!(today.starts_with("01:02:03.456 "), "{today}");
        let trace = row.format(&layout(false, true), false);
        assert!(trace.starts_with("2024-10-04 01:02:03.456 "), "{trace}");
        let mut old = sample_row("code 0", None);
        old.time = Some(UNIX_EPOCH + Duration::from_millis(1_582_930_208_216));
        let line = old.format(&layout(false, false), false);
        assert!(line.starts_with("2020-02-28 22:50:08.216 "), "{line}");
    }

    #[test]
    fn status_column_names_the_status() {
        use procexit::Source;
        let exit = |status, source| ProcessExit::new(1, status, source);
        let code = ExitStatus::Code;
        let ctrl_c = exit(code(0xC000_013A), Source::EtlFile);
        assert_eq!(status_short(&ctrl_c), "code 0xc000013a");
        assert_eq!(status_detail(&ctrl_c), Some("STATUS_CONTROL_C_EXIT"));
        assert_eq!(status_short(&exit(code(1), Source::EtlFile)), "code 1");
        let kill = ExitStatus::Signal {
            signal: 9,
            core_dumped: false,
        };
        let mut oom = exit(kill, Source::LinuxTaskstats);
        assert_eq!(status_short(&oom), "SIGKILL");
        assert_eq!(status_detail(&oom), None);
        oom.oom_killed = Some(true);
        assert_eq!(status_short(&oom), "SIGKILL OOM");
        let segv = ExitStatus::Signal {
            signal: 11,
            core_dumped: true,
        };
        assert_eq!(status_short(&exit(segv, Source::LinuxEbpf)), "SIGSEGV core");
    }

    #[test]
    fn clock_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 + 3_723_456);
        assert_eq!(clock_time(t), "01:02:03.456");
    }
}

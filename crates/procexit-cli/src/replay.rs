//! `procexit replay`: the exits recorded in Windows .etl trace files, on any OS.
//!
//! Every file is read first (each one's summary goes to stderr as it ends),
//! then what matched is printed in time order over all files: exits by exit
//! time, starts and rundowns (`--all`) by their event time. A trace's
//! buffers hold events in the order each CPU wrote them, not in time order.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use procexit::etl::{EtlError, EtlFile, ProcessEvents, ProcessItem, ProcessSummary};
use procexit::schema::Message;
use procexit::{Event, Filter, ProcessExit};

use crate::args::ReplayArgs;
use crate::escape;
use crate::output::Printer;

/// Files smaller than this get no progress bar (they take milliseconds).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// What a whole replay found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Files that could not be opened or had damaged parts.
    pub files_with_errors: usize,
    /// Exits printed.
    pub printed: u64,
}

/// What a replay prints: an exit, or (`--all`) a start, rundown or zombie
/// (boxed: larger, and rarer).
#[allow(clippy::large_enum_variant)] // exits are most of them: kept unboxed
enum Found {
    Exit(ProcessExit),
    Item(Box<ProcessItem>),
}

impl Found {
    /// Where it goes in the output: exits by exit time, other records by
    /// the time their table row shows (a zombie's exit time when known);
    /// those without a time first, as read.
    fn time(&self) -> Option<std::time::SystemTime> {
        match self {
            Found::Exit(exit) => exit.exit_time,
            Found::Item(item) => match Message::from_item(item)? {
                Message::Zombie(record) => record.exit_time.or(record.time),
                Message::Process(record) => record.time,
                _ => None,
            },
        }
    }
}

pub fn replay(args: &ReplayArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let filter = args.filter.to_filter();
    let mut outcome = Outcome::default();
    let mut found = Vec::new();
    for path in &args.files {
        match replay_file(path, args, &filter, &mut found) {
            Ok(had_errors) => {
                if had_errors {
                    outcome.files_with_errors += 1;
                }
            }
            Err(err) => {
                if err
                    .downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
                {
                    return Err(err);
                }
                eprintln!("procexit: {}: {err:#}", path.display());
                outcome.files_with_errors += 1;
            }
        }
    }
    // Stable: records of the same time stay in file order.
    found.sort_by_key(Found::time);
    for item in found {
        match item {
            Found::Exit(exit) => {
                if args.count.is_some_and(|n| outcome.printed >= n) {
                    break;
                }
                printer.event(&Event::Exit(exit))?;
                outcome.printed += 1;
            }
            Found::Item(item) => {
                if let Some(message) = Message::from_item(&item) {
                    printer.message(message)?;
                }
            }
        }
    }
    Ok(outcome)
}

/// Returns whether the file had damaged parts (reported on stderr).
/// Reads one file (`-`: standard input), keeping what matches in `found`.
fn replay_file(
    path: &Path,
    args: &ReplayArgs,
    filter: &Filter,
    found: &mut Vec<Found>,
) -> anyhow::Result<bool> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        if bytes.is_empty() {
            anyhow::bail!("standard input is empty: not an .etl trace");
        }
        let file = EtlFile::new(bytes.as_slice()).map_err(not_a_trace)?;
        return read_events(ProcessEvents::new(file), path, args, filter, found);
    }
    let file = match std::fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => anyhow::bail!("no such file"),
        Err(error) => return Err(anyhow::Error::new(error).context("cannot read the file")),
        Ok(meta) if meta.is_dir() => {
            anyhow::bail!("is a directory (give the .etl files in it, e.g. DIR/*.etl)")
        }
        Ok(meta) if meta.len() == 0 => anyhow::bail!("empty file: not an .etl trace"),
        Ok(_) => EtlFile::open(path).map_err(|error| match error.kind {
            procexit::etl::EtlErrorKind::Io(kind) => {
                anyhow::anyhow!("cannot read the file: {}", io::Error::from(kind))
            }
            _ => not_a_trace(error),
        })?,
    };
    read_events(ProcessEvents::new(file), path, args, filter, found)
}

/// A file whose start is not a trace's: `open` reads the logfile header
/// and the first buffer, so any error there means this is no .etl file.
fn not_a_trace(_: EtlError) -> anyhow::Error {
    anyhow::anyhow!("not an .etl trace (it does not start with a trace's header)")
}

/// Reads the events of an open trace.
fn read_events<R: BufRead>(
    mut events: ProcessEvents<R>,
    path: &Path,
    args: &ReplayArgs,
    filter: &Filter,
    found: &mut Vec<Found>,
) -> anyhow::Result<bool> {
    let total = events.file().total_bytes();
    let mut progress = Progress::new(path, total);
    let mut errors = 0u64;
    loop {
        let item = match events.next_item() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(err) => {
                errors += 1;
                progress.clear();
                eprintln!("procexit: {}: {err}", path.display());
                continue;
            }
        };
        progress.update(events.file().bytes_read());
        // The library gives one record per exit (kernel End and
        // Kernel-Process stop merged; zombie rundowns are not exits).
        if let Some(exit) = item.exit {
            if filter.matches(&exit) {
                found.push(Found::Exit(exit));
            }
        } else if args.all && lifecycle_matches(&item, filter) {
            found.push(Found::Item(Box::new(item)));
        }
    }
    progress.clear();
    let summary = events.summary();
    eprintln!(
        "procexit: {}: {}",
        path.display(),
        summary_line(&summary, errors)
    );
    Ok(errors > 0 || summary.read_errors > 0)
}

fn summary_line(s: &ProcessSummary, errors: u64) -> String {
    let mut line = format!(
        "{} events in {} buffers ({:.1} MB), {} process events, {} exits",
        s.events,
        s.buffers,
        s.bytes as f64 / 1e6,
        s.process_events,
        s.process_exits
    );
    line.push_str(&format!(
        ", {} anomalies, {} unknown versions, {} undecodable payloads",
        s.anomalies, s.unknown_versions, s.decode_errors
    ));
    if errors > 0 || s.read_errors > 0 {
        line.push_str(&format!(", {} damaged parts", errors.max(s.read_errors)));
    }
    line
}

/// Whether a start, rundown or zombie record (`--all`) is printed: one
/// that decodes and passes the filter.
fn lifecycle_matches(item: &ProcessItem, filter: &Filter) -> bool {
    match Message::from_item(item) {
        Some(Message::Process(record) | Message::Zombie(record)) => {
            filter.matches_process(record.pid, Some(record.ppid), record.name)
        }
        _ => false,
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal and
/// the file is large.
struct Progress<'a> {
    path: &'a Path,
    total: Option<u64>,
    enabled: bool,
    last: Instant,
    /// Length of the line on screen (ASCII), 0 when none is.
    shown: usize,
}

impl<'a> Progress<'a> {
    fn new(path: &'a Path, total: Option<u64>) -> Progress<'a> {
        let enabled = io::stderr().is_terminal() && total.is_some_and(|t| t >= PROGRESS_MIN_BYTES);
        Progress {
            path,
            total,
            enabled,
            last: Instant::now(),
            shown: 0,
        }
    }

    fn update(&mut self, done: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last = Instant::now();
        let total = self.total.unwrap_or(1).max(1);
        let fraction = (done as f64 / total as f64).min(1.0);
        let filled = (fraction * 30.0) as usize;
        let line = format!(
            "{} [{}{}] {:>3.0}% {:.0}/{:.0} MB",
            escape::for_table(&self.path.display().to_string(), true),
            "#".repeat(filled),
            " ".repeat(30 - filled),
            fraction * 100.0,
            done as f64 / 1e6,
            total as f64 / 1e6
        );
        // Overwritten in place with `\r` alone: no escape codes, which a
        // legacy Windows console (no VT processing) would print literally.
        eprint!("\r{line}");
        let _ = io::stderr().flush();
        self.shown = line.len();
    }

    fn clear(&mut self) {
        if self.shown > 0 {
            eprint!("\r{:width$}\r", "", width = self.shown);
            let _ = io::stderr().flush();
            self.shown = 0;
        }
    }
}

//! `procexit replay`: the exits recorded in Windows .etl trace files, on any OS.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use procexit::etl::{read_process_events, ProcessItem, ProcessSummary};
use procexit::schema::Message;
use procexit::{Event, Filter};

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

pub fn replay(args: &ReplayArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let filter = args.filter.to_filter();
    let mut outcome = Outcome::default();
    for path in &args.files {
        match replay_file(path, args, &filter, printer, &mut outcome) {
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
        if args.count.is_some_and(|n| outcome.printed >= n) {
            break;
        }
    }
    Ok(outcome)
}

/// Returns whether the file had damaged parts (reported on stderr).
fn replay_file(
    path: &Path,
    args: &ReplayArgs,
    filter: &Filter,
    printer: &mut Printer,
    outcome: &mut Outcome,
) -> anyhow::Result<bool> {
    let mut events = read_process_events(path).context("cannot read the trace")?;
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
                progress.clear();
                printer.event(&Event::Exit(exit))?;
                outcome.printed += 1;
            }
            if args.count.is_some_and(|n| outcome.printed >= n) {
                break;
            }
        } else if args.all {
            progress.clear();
            print_lifecycle(&item, filter, printer)?;
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

/// A start, rundown or zombie record (`--all`): a table row like an
/// exit's, or a `process` or `zombie` JSON object.
fn print_lifecycle(item: &ProcessItem, filter: &Filter, printer: &mut Printer) -> io::Result<()> {
    let Some(message) = Message::from_item(item) else {
        return Ok(());
    };
    let (Message::Process(record) | Message::Zombie(record)) = message else {
        return Ok(());
    };
    if !filter.matches_process(record.pid, Some(record.ppid), record.name) {
        return Ok(());
    }
    printer.message(message)
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

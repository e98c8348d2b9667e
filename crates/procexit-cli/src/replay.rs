//! `procexit replay`: the exits recorded in Windows .etl trace files, on any OS.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use procexit::etl::{read_process_events, LifecycleKind, ProcessItem, ProcessSummary};
use procexit::{format_rfc3339, system_time_from_filetime, Event, Filter, ProcessExit};

use crate::args::ReplayArgs;
use crate::escape;
use crate::output::{Format, Printer, Row};

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

pub fn replay(args: &ReplayArgs, printer: &mut Printer, format: Format) -> anyhow::Result<Outcome> {
    let filter = args.filter.to_filter();
    let mut outcome = Outcome::default();
    for path in &args.files {
        match replay_file(path, args, &filter, printer, format, &mut outcome) {
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
    format: Format,
    outcome: &mut Outcome,
) -> anyhow::Result<bool> {
    let mut events = read_process_events(path).context("cannot read the trace")?;
    let total = events.file().total_bytes();
    let mut progress = Progress::new(path, total);
    let mut errors = 0u64;
    let mut dedup = Dedup::default();
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
        if let Some(exit) = item.exit.clone() {
            let from_kernel_process = item.kind == LifecycleKind::KernelProcessStop;
            for exit in dedup.offer(exit, from_kernel_process) {
                if filter.matches(&exit) {
                    progress.clear();
                    printer.event(&Event::Exit(exit))?;
                    outcome.printed += 1;
                }
            }
            if args.count.is_some_and(|n| outcome.printed >= n) {
                break;
            }
        } else if args.all {
            print_lifecycle(&item, filter, printer, format)?;
        }
    }
    for exit in dedup.finish() {
        if filter.matches(&exit) && args.count.is_none_or(|n| outcome.printed < n) {
            printer.event(&Event::Exit(exit))?;
            outcome.printed += 1;
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

/// A trace that enabled both the kernel Process class and
/// Microsoft-Windows-Kernel-Process records each exit twice. The kernel End
/// has more (command line, key); the Kernel-Process stop has the create
/// time and the resource use. One record is printed per exit: the End, with
/// the create time added when it lacked a start time, and the resources. A Kernel-Process stop that no End
/// matches is printed when the End could no longer come (end of file).
#[derive(Default)]
struct Dedup {
    /// Kernel-Process stops waiting for their End.
    pending: Vec<ProcessExit>,
    /// Recently printed kernel exits, for stops that come after their End.
    recent: VecDeque<ProcessExit>,
}

/// Exit times of the two records of one exit differ by microseconds; pids
/// are reused far more slowly.
const SAME_EXIT_WINDOW: Duration = Duration::from_secs(2);
const RECENT_KEPT: usize = 1024;

fn same_exit(a: &ProcessExit, b: &ProcessExit) -> bool {
    let close = match (a.exit_time, b.exit_time) {
        (Some(x), Some(y)) => {
            x.duration_since(y).unwrap_or_else(|e| e.duration()) <= SAME_EXIT_WINDOW
        }
        _ => false,
    };
    a.pid == b.pid && a.status == b.status && close
}

impl Dedup {
    /// Returns what can be printed now.
    fn offer(&mut self, exit: ProcessExit, from_kernel_process: bool) -> Vec<ProcessExit> {
        if from_kernel_process {
            if !self.recent.iter().any(|r| same_exit(r, &exit)) {
                self.pending.push(exit);
            }
            return Vec::new();
        }
        let mut exit = exit;
        if let Some(i) = self.pending.iter().position(|p| same_exit(p, &exit)) {
            let stop = self.pending.swap_remove(i);
            if exit.start_time.is_none() {
                exit.start_time = stop.start_time;
            }
            if exit.ppid.is_none() {
                exit.ppid = stop.ppid;
            }
            // Only the Kernel-Process stop reports resource use.
            if exit.resources == procexit::Resources::default() {
                exit.resources = stop.resources;
            }
        }
        if self.recent.len() == RECENT_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(exit.clone());
        vec![exit]
    }

    fn finish(&mut self) -> Vec<ProcessExit> {
        std::mem::take(&mut self.pending)
    }
}

/// A start or rundown record (`--all`): printed in the same shape as exits,
/// with `"type":"process"` and the event kind.
fn print_lifecycle(
    item: &ProcessItem,
    filter: &Filter,
    printer: &mut Printer,
    format: Format,
) -> anyhow::Result<()> {
    let Some(payload) = &item.payload else {
        return Ok(());
    };
    let name = payload.image_file_name.as_deref();
    if !filter.matches_process(payload.pid, Some(payload.ppid), name) {
        return Ok(());
    }
    let time = item.filetime.and_then(system_time_from_filetime);
    match format {
        Format::JsonLines => {
            let value = serde_json::json!({
                "type": "process",
                "kind": item.kind.as_str(),
                "pid": payload.pid,
                "ppid": payload.ppid,
                "name": name,
                "command_line": payload.command_line,
                "user": payload.user_sid,
                "time": time.map(format_rfc3339),
                "process_key": payload.unique_process_key,
            });
            printer.raw_line(&value.to_string())?;
        }
        Format::Table => {
            let label = match item.kind {
                LifecycleKind::Start | LifecycleKind::KernelProcessStart => "started",
                LifecycleKind::DcStart => "running (rundown)",
                LifecycleKind::DcEnd => "running at end",
                _ => item.kind.as_str(),
            };
            printer.row(&Row {
                time,
                pid: payload.pid,
                ppid: Some(payload.ppid),
                status: label,
                duration: None,
                name,
                command_line: payload.command_line.as_deref(),
            })?;
        }
    }
    Ok(())
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

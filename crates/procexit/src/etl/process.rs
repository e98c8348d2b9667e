//! Process lifecycle items and exit records from a trace file, through the
//! same decoder and tracker as the real-time ETW backend.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{EtlError, EtlFile, EventHeader, RawEvent, RecordPlace};
use crate::decode::mof_process::ProcessPayload;
use crate::decode::{DecodeError, DecodeErrorKind};
use crate::event::{ProcessExit, Source};
use crate::merge::etw::{
    decode_process_event, route, EtwExitTracker, KernelProcessOp, ProcessOp, Route,
};

/// Newest kernel Process MOF version whose layout is documented.
const MAX_KNOWN_MOF_VERSION: u16 = 5;
/// Newest Microsoft-Windows-Kernel-Process start/stop version known.
const MAX_KNOWN_KP_VERSION: u16 = 2;
/// Decode errors kept with their position; the rest are only counted.
const MAX_KEPT_ERRORS: usize = 64;

/// Which lifecycle event an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LifecycleKind {
    /// Kernel Process Start (opcode 1).
    Start,
    /// Kernel Process End (opcode 2): the process exited.
    End,
    /// Rundown at session start (opcode 3): alive when tracing began.
    DcStart,
    /// Rundown at session end (opcode 4): alive when tracing stopped.
    DcEnd,
    /// Exited but still referenced, listed at rundown (opcode 39): an exit
    /// only when the process ended inside the trace and no End reported it;
    /// otherwise a zombie (the item has no `exit`).
    Defunct,
    /// Microsoft-Windows-Kernel-Process ProcessStart (id 1).
    KernelProcessStart,
    /// Microsoft-Windows-Kernel-Process ProcessStop (id 2).
    KernelProcessStop,
}

impl LifecycleKind {
    /// A short stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleKind::Start => "start",
            LifecycleKind::End => "end",
            LifecycleKind::DcStart => "dc-start",
            LifecycleKind::DcEnd => "dc-end",
            LifecycleKind::Defunct => "defunct",
            LifecycleKind::KernelProcessStart => "kp-start",
            LifecycleKind::KernelProcessStop => "kp-stop",
        }
    }
}

/// One process lifecycle event of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessItem {
    /// What happened.
    pub kind: LifecycleKind,
    /// The event's header: opcode (kernel class) or event id
    /// (Kernel-Process), version, FILETIME, logging-context process id
    /// (often the parent for a Start; `None` for PerfInfo headers), payload
    /// pointer width.
    pub header: EventHeader,
    /// Where the record was in the file.
    pub place: RecordPlace,
    /// The decoded kernel Process payload (MOF events that decode).
    pub payload: Option<ProcessPayload>,
    /// The exit record: for every End; for a Defunct of a process that
    /// ended inside the trace and had no End; for a Kernel-Process
    /// ProcessStop that no kernel End of the trace reports (when the trace
    /// has both, the End's record includes the stop's create time, and the
    /// stop's item follows the End's without a record). Each exit of the
    /// trace is in exactly one item.
    pub exit: Option<ProcessExit>,
}

impl ProcessItem {
    /// The kernel class opcode, or the Kernel-Process event id.
    pub fn code(&self) -> u16 {
        match self.kind {
            LifecycleKind::KernelProcessStart | LifecycleKind::KernelProcessStop => {
                self.header.event_id
            }
            _ => u16::from(self.header.opcode),
        }
    }
}

/// A payload that did not decode, with where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayloadError {
    /// The event's header (opcode or event id, version).
    pub header: EventHeader,
    /// Where the record was in the file.
    pub place: RecordPlace,
    /// The decoder's error; its offset is into the payload.
    pub error: DecodeError,
}

/// What a pass over a trace found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessSummary {
    /// Events (records with a decoded header) read.
    pub events: u64,
    /// Records in all buffers, skipped kinds included.
    pub records: u64,
    /// Buffers read.
    pub buffers: u64,
    /// Process lifecycle items yielded.
    pub process_events: u64,
    /// Exit records produced: one per exit, as items carry them.
    pub process_exits: u64,
    /// Payloads the decoder read with a fallback or partly.
    pub anomalies: u64,
    /// Process events with a layout version newer than the decoder knows.
    pub unknown_versions: u64,
    /// Process payloads that did not decode (count).
    pub decode_errors: u64,
    /// The first of those, with positions.
    pub decode_error_list: Vec<PayloadError>,
    /// Read errors (damaged buffers or records, truncation) reported.
    pub read_errors: u64,
    /// File bytes consumed.
    pub bytes: u64,
}

/// Process lifecycle items of one trace: wraps an [`EtlFile`], decodes the
/// kernel Process and Kernel-Process events and tracks them into exit
/// records with [`Source::EtlFile`].
///
/// Iterating yields `Err` for each damaged part of the file and continues
/// after it where the file allows.
#[derive(Debug)]
pub struct ProcessEvents<R> {
    file: EtlFile<R>,
    tracker: EtwExitTracker<ProcessItem>,
    summary: ProcessSummary,
    /// Items decided and not yet yielded, in order.
    ready: VecDeque<ProcessItem>,
    /// The end of the file was reached and the tracker finished.
    finished: bool,
}

/// Opens `path` for [`ProcessEvents`].
pub fn read_process_events(
    path: impl AsRef<Path>,
) -> Result<ProcessEvents<BufReader<File>>, EtlError> {
    EtlFile::open(path).map(ProcessEvents::new)
}

impl<R: BufRead> ProcessEvents<R> {
    /// Wraps an open trace.
    pub fn new(file: EtlFile<R>) -> Self {
        // Exits before the trace's start are not exits of the trace.
        let window_start = Some(file.header().start_time);
        ProcessEvents {
            file,
            tracker: EtwExitTracker::new(Source::EtlFile, window_start),
            summary: ProcessSummary::default(),
            ready: VecDeque::new(),
            finished: false,
        }
    }

    /// The underlying reader (header, progress).
    pub fn file(&self) -> &EtlFile<R> {
        &self.file
    }

    /// What was found so far; complete once the iterator has ended.
    pub fn summary(&self) -> ProcessSummary {
        let mut s = self.summary.clone();
        let stats = self.file.stats();
        s.records = stats.records;
        s.buffers = stats.buffers;
        s.bytes = self.file.bytes_read();
        s.anomalies = self.tracker.anomalies();
        s
    }

    /// The next lifecycle item; `Ok(None)` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<ProcessItem>, EtlError> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                self.summary.process_events = self.summary.process_events.saturating_add(1);
                if item.exit.is_some() {
                    self.summary.process_exits = self.summary.process_exits.saturating_add(1);
                }
                return Ok(Some(item));
            }
            if self.finished {
                return Ok(None);
            }
            let batch = match self.file.next_batch() {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    self.finished = true;
                    self.tracker.finish();
                    take_released(&mut self.tracker, &mut self.ready);
                    continue;
                }
                Err(e) => {
                    self.summary.read_errors = self.summary.read_errors.saturating_add(1);
                    return Err(e);
                }
            };
            // Through the buffer until an event gives an item; dropping
            // the batch then leaves the reader after that event.
            for event in batch {
                self.summary.events = self.summary.events.saturating_add(1);
                match route(&event.header) {
                    Route::Process(op) => {
                        let item = process_item(&mut self.tracker, &mut self.summary, &event, op);
                        self.ready.push_back(item);
                    }
                    Route::KernelProcess(op) => {
                        kernel_process_item(&mut self.tracker, &mut self.summary, &event, op);
                    }
                    // A kill waits for its target's exit; nothing released.
                    Route::Terminate => {
                        let version = u8::try_from(event.header.version).unwrap_or(u8::MAX);
                        let (pid, time) = (event.header.pid, event.header.time);
                        self.tracker.on_terminate(pid, version, time, event.payload);
                        continue;
                    }
                    // Most events: nothing for the tracker, nothing released.
                    Route::Lost(_) | Route::Other => continue,
                }
                // After the event's own item: the Kernel-Process items it
                // decided. (Fields, not `self`: the batch holds the reader.)
                take_released(&mut self.tracker, &mut self.ready);
                if !self.ready.is_empty() {
                    break;
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for ProcessEvents<R> {
    type Item = Result<ProcessItem, EtlError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// Moves the items the tracker decided since the last call to `ready`,
/// each with its exit record.
fn take_released(tracker: &mut EtwExitTracker<ProcessItem>, ready: &mut VecDeque<ProcessItem>) {
    for (exit, mut item) in tracker.take_released() {
        item.exit = exit;
        ready.push_back(item);
    }
}

fn blank_item(kind: LifecycleKind, event: &RawEvent<'_>) -> ProcessItem {
    ProcessItem {
        kind,
        header: event.header,
        place: event.place,
        payload: None,
        exit: None,
    }
}

fn note_error(summary: &mut ProcessSummary, event: &RawEvent<'_>, error: DecodeError) {
    summary.decode_errors = summary.decode_errors.saturating_add(1);
    if matches!(error.kind, DecodeErrorKind::UnknownVersion(_)) {
        summary.unknown_versions = summary.unknown_versions.saturating_add(1);
    }
    if summary.decode_error_list.len() < MAX_KEPT_ERRORS {
        summary.decode_error_list.push(PayloadError {
            header: event.header,
            place: event.place,
            error,
        });
    }
}

/// Decodes a kernel Process payload once, for the item and the tracker.
fn process_item(
    tracker: &mut EtwExitTracker<ProcessItem>,
    summary: &mut ProcessSummary,
    event: &RawEvent<'_>,
    op: ProcessOp,
) -> ProcessItem {
    let kind = match op {
        ProcessOp::Start => LifecycleKind::Start,
        ProcessOp::End => LifecycleKind::End,
        ProcessOp::DcStart => LifecycleKind::DcStart,
        ProcessOp::DcEnd => LifecycleKind::DcEnd,
        ProcessOp::Defunct => LifecycleKind::Defunct,
    };
    if event.header.version > MAX_KNOWN_MOF_VERSION {
        summary.unknown_versions = summary.unknown_versions.saturating_add(1);
    }
    let mut item = blank_item(kind, event);
    let decoded = decode_process_event(event);
    if let Err(e) = &decoded {
        note_error(summary, event, *e);
    }
    match tracker.on_process_event(op, event.header.time, decoded.as_ref().map_err(|e| *e)) {
        Ok(exit) => item.exit = exit,
        // Already noted above when the payload itself did not decode.
        Err(e) if decoded.is_ok() => note_error(summary, event, e),
        Err(_) => {}
    }
    item.payload = decoded.ok().map(|p| p.to_payload());
    item
}

/// Hands a Kernel-Process start/stop to the tracker, which releases its
/// item when decided.
fn kernel_process_item(
    tracker: &mut EtwExitTracker<ProcessItem>,
    summary: &mut ProcessSummary,
    event: &RawEvent<'_>,
    op: KernelProcessOp,
) {
    let kind = match op {
        KernelProcessOp::Start => LifecycleKind::KernelProcessStart,
        KernelProcessOp::Stop => LifecycleKind::KernelProcessStop,
    };
    if event.header.version > MAX_KNOWN_KP_VERSION {
        summary.unknown_versions = summary.unknown_versions.saturating_add(1);
    }
    let version = u8::try_from(event.header.version).unwrap_or(u8::MAX);
    let item = blank_item(kind, event);
    if let Err(e) =
        tracker.on_kernel_process_event(op, version, event.header.time, event.payload, item)
    {
        note_error(summary, event, e);
    }
}

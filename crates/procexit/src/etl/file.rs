//! The streaming reader: record iteration over the buffer chain
//! (`buffers.rs`), after the logfile header (`logfile.rs`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::buffers::io_error;
use super::layout::{buffer, header_type as ht};
use super::logfile::{Clock, LogfileHeader};
use super::record::{self, Parsed, Record, RecordError};
use super::{EtlError, EtlErrorKind, RawEvent};
use crate::decode::PointerSize;

/// How far past the record being parsed the reader touches the buffer (a
/// few records): the line is then on its way into the cache when the
/// record chain reaches it. Measured on the repository's traces.
const READ_AHEAD: usize = 384;

/// Counters of what the reader has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadStats {
    /// Buffers read (including damaged ones).
    pub buffers: u64,
    /// Of those, compressed.
    pub compressed_buffers: u64,
    /// Bytes the compressed buffers inflated to (their records regions).
    pub inflated_bytes: u64,
    /// Buffers whose records could not all be read.
    pub damaged_buffers: u64,
    /// Records found, including skipped kinds.
    pub records: u64,
    /// Records of header kinds not decoded (WPP messages, timed, error, WNODE,
    /// unknown types): counted and skipped.
    pub skipped_records: u64,
}

/// A streaming reader of one `.etl` file.
///
/// Reads buffer by buffer: a buffer the reader already holds whole (a
/// byte slice, or a `BufReader` whose buffer lines up with the trace's) is
/// read where it is, any other is copied into one reused allocation;
/// [`next_event`](Self::next_event) lends each record from there.
#[derive(Debug)]
pub struct EtlFile<R> {
    pub(super) reader: R,
    pub(super) header: LogfileHeader,
    /// The header's clock, for each record's time.
    clock: Clock,
    /// The current buffer as stored on disk, header included. Only grows:
    /// `disk_len` bytes of it are the current buffer.
    pub(super) disk: Vec<u8>,
    pub(super) disk_len: usize,
    /// Bytes of the reader's own buffer that are the current buffer, read
    /// in place (0 when it was copied into `disk`); consumed before the next.
    pub(super) lent: usize,
    /// The bytes read ahead, folded together: keeping their value keeps
    /// the loads (stable Rust has no prefetch hint). Never used otherwise.
    pub(super) touched: u8,
    /// The current buffer's records after decompression.
    pub(super) inflated: Vec<u8>,
    pub(super) use_inflated: bool,
    /// Next record, as an offset into the records region.
    pub(super) pos: usize,
    /// End of the records region.
    pub(super) end: usize,
    pub(super) buffer_index: u64,
    pub(super) record_index: u64,
    pub(super) buffer_offset: u64,
    pub(super) next_offset: u64,
    pub(super) pending: Option<EtlError>,
    pub(super) done: bool,
    pub(super) started: bool,
    pub(super) stats: ReadStats,
    pub(super) total_bytes: Option<u64>,
}

impl EtlFile<BufReader<File>> {
    /// Opens a file and reads its logfile header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EtlError> {
        let file = File::open(path).map_err(|e| io_error(&e, 0, 0))?;
        let total = file.metadata().ok().map(|m| m.len());
        // Large reads: buffers are 64 KiB and read whole.
        let mut etl = EtlFile::new(BufReader::with_capacity(1 << 16, file))?;
        etl.total_bytes = total;
        Ok(etl)
    }
}

impl<R: BufRead> EtlFile<R> {
    /// Wraps a reader positioned at the start of an `.etl` file and reads
    /// its logfile header (the first record). A plain [`std::io::Read`]
    /// goes in a [`BufReader`] (64 KiB fits the usual buffer size); a
    /// trace already in memory is read from its slice without copies.
    pub fn new(reader: R) -> Result<Self, EtlError> {
        let mut etl = EtlFile {
            reader,
            header: LogfileHeader {
                buffer_size: 0,
                os_major: 0,
                os_minor: 0,
                os_build: 0,
                number_of_processors: 0,
                end_time: 0,
                timer_resolution: 0,
                log_file_mode: 0,
                buffers_written: 0,
                pointer_size: 0,
                events_lost: 0,
                cpu_speed_mhz: 0,
                boot_time: 0,
                perf_freq: 0,
                start_time: 0,
                clock_type: 0,
                buffers_lost: 0,
                logger_name: String::new(),
                log_file_name: String::new(),
                header_timestamp: 0,
                header_pointer_size: PointerSize::Eight,
            },
            clock: Clock::UNKNOWN,
            disk: Vec::new(),
            disk_len: 0,
            lent: 0,
            touched: 0,
            inflated: Vec::new(),
            use_inflated: false,
            pos: 0,
            end: 0,
            buffer_index: 0,
            record_index: 0,
            buffer_offset: 0,
            next_offset: 0,
            pending: None,
            done: false,
            started: false,
            stats: ReadStats::default(),
            total_bytes: None,
        };
        let not_etl = |_: &EtlFile<R>| EtlError {
            kind: EtlErrorKind::NotEtl,
            offset: 0,
            buffer: 0,
            record: Some(0),
            in_buffer: Some(buffer::LEN),
        };
        if !etl.load_buffer()? {
            return Err(EtlError {
                kind: EtlErrorKind::Truncated {
                    need: buffer::LEN as u64,
                    have: 0,
                },
                ..not_etl(&etl)
            });
        }
        let rec = match record::parse(etl.region(), 0) {
            Ok(Parsed::Record(rec)) => rec,
            _ => return Err(not_etl(&etl)),
        };
        if !matches!(rec.place.header_type, ht::SYSTEM32 | ht::SYSTEM64)
            || rec.place.group != Some(0)
            || rec.header.opcode != 0
        {
            return Err(not_etl(&etl));
        }
        let parsed = {
            let payload = etl.region().get(rec.payload.clone()).unwrap_or(&[]);
            LogfileHeader::parse(payload, rec.header.pointer_size, rec.place.timestamp_raw)
        };
        etl.header = parsed.map_err(|e| EtlError {
            kind: EtlErrorKind::LogfileHeader(e.kind),
            offset: (buffer::LEN as u64)
                .saturating_add(rec.payload.start as u64)
                .saturating_add(e.offset as u64),
            ..not_etl(&etl)
        })?;
        etl.clock = Clock::new(&etl.header);
        etl.started = true;
        Ok(etl)
    }

    /// The logfile header.
    pub fn header(&self) -> &LogfileHeader {
        &self.header
    }

    /// Counters so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// Bytes of the file consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.next_offset
    }

    /// The file's size, when known (files opened with [`EtlFile::open`]).
    pub fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }

    /// The next event, or `Ok(None)` at the end of the file.
    ///
    /// An `Err` reports damage once: after a bad record or buffer the reader
    /// moves to the next buffer, so calling again continues; after a fatal
    /// error (truncation, I/O, a broken buffer chain) it returns `Ok(None)`.
    pub fn next_event(&mut self) -> Result<Option<RawEvent<'_>>, EtlError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.pos < self.end {
                let pos = self.pos;
                let region = self.region();
                let ahead = region.get(pos.wrapping_add(READ_AHEAD)).copied();
                let parsed = record::parse(region, pos);
                self.touched ^= ahead.unwrap_or(0);
                match parsed {
                    Ok(Parsed::End) => self.pos = self.end,
                    Ok(Parsed::Skipped { len, .. }) => {
                        self.count_record();
                        self.stats.skipped_records = self.stats.skipped_records.saturating_add(1);
                        self.record_index = self.record_index.saturating_add(1);
                        self.pos = self.pos.saturating_add(len.max(1));
                    }
                    Ok(Parsed::Record(rec)) => {
                        self.count_record();
                        let record_index = self.record_index;
                        self.record_index = self.record_index.saturating_add(1);
                        self.pos = self.pos.saturating_add(rec.len.max(1));
                        let Record {
                            mut header,
                            mut place,
                            payload,
                            extended,
                            ..
                        } = rec;
                        header.time = self.clock.filetime(place.timestamp_raw);
                        place.buffer_index = self.buffer_index;
                        place.record_index = record_index;
                        let region = self.region();
                        return Ok(Some(RawEvent {
                            header,
                            payload: region.get(payload).unwrap_or(&[]),
                            extended: region.get(extended).unwrap_or(&[]),
                            place,
                        }));
                    }
                    Err(e) => {
                        let at = self.pos;
                        self.pos = self.end;
                        if let Some(p) = self.pending.take() {
                            // The buffer was cut: the cut is the cause.
                            self.done = true;
                            return Err(p);
                        }
                        self.stats.damaged_buffers = self.stats.damaged_buffers.saturating_add(1);
                        return Err(self.record_error(e, at));
                    }
                }
                continue;
            }
            if let Some(p) = self.pending.take() {
                if matches!(p.kind, EtlErrorKind::Truncated { .. }) {
                    self.done = true;
                }
                return Err(p);
            }
            match self.load_buffer() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    fn count_record(&mut self) {
        self.stats.records = self.stats.records.saturating_add(1);
    }

    fn record_error(&self, e: RecordError, at: usize) -> EtlError {
        let kind = match e {
            RecordError::Truncated { need, have } => EtlErrorKind::RecordTruncated { need, have },
            RecordError::BadMarker(m) => EtlErrorKind::BadMarker(m),
            RecordError::BadSize { size, min } => EtlErrorKind::BadRecordSize { size, min },
            RecordError::BadExtendedData => EtlErrorKind::BadExtendedData,
        };
        let in_buffer = buffer::LEN.saturating_add(at);
        // Inside a compressed buffer a byte has no file offset: give the buffer's.
        let offset = if self.use_inflated {
            self.buffer_offset
        } else {
            self.buffer_offset.saturating_add(in_buffer as u64)
        };
        EtlError {
            kind,
            offset,
            buffer: self.buffer_index,
            record: Some(self.record_index),
            in_buffer: Some(in_buffer),
        }
    }
}

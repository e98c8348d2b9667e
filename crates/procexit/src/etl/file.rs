//! The streaming reader: after the logfile header (`logfile.rs`), it walks
//! the buffer chain (each buffer's pieces in `buffers.rs`) and iterates the
//! records.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::Path;

use super::buffers::{io_error, read_full, records_end, region_of, HeadFields, Outcome};
use super::layout::{buffer, header_type as ht, system};
use super::logfile::{Clock, LogfileHeader};
use super::record::{self, Parsed, Record, RecordError};
use super::{EtlError, EtlErrorKind, EventHeader, RawEvent, RecordPlace};
use crate::decode::PointerSize;

/// How far past the record being parsed the reader asks for the buffer's
/// cache lines: the record chain is a chain of dependent loads (each
/// record's size gives the next one's place), which would otherwise wait
/// on memory one record at a time. Measured on the repository's traces.
const READ_AHEAD: usize = 1024;

/// Bytes per cache line on the CPUs the reader runs on.
const CACHE_LINE: usize = 64;

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
        let (parsed, payload_start) = match record::parse(etl.region(), 0) {
            Ok(Parsed::Record(rec))
                if matches!(rec.place.header_type, ht::SYSTEM32 | ht::SYSTEM64)
                    && rec.place.group == Some(0)
                    && rec.header.opcode == 0 =>
            {
                let parsed = LogfileHeader::parse(
                    rec.payload,
                    rec.header.pointer_size,
                    rec.place.timestamp_raw,
                );
                // The payload follows the 32-byte kernel header and its
                // extra words (the extended bytes).
                (
                    parsed,
                    system::SYSTEM_LEN.saturating_add(rec.extended.len()),
                )
            }
            _ => return Err(not_etl(&etl)),
        };
        etl.header = parsed.map_err(|e| EtlError {
            kind: EtlErrorKind::LogfileHeader(e.kind),
            offset: (buffer::LEN as u64)
                .saturating_add(payload_start as u64)
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
        // Every record read takes one index in its buffer: the current
        // buffer's are counted here, not one by one.
        ReadStats {
            records: self.stats.records.saturating_add(self.record_index),
            ..self.stats
        }
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
    ///
    /// [`next_batch`](Self::next_batch) returns the same events and errors
    /// in the same order, a buffer's worth at a time, and costs less per
    /// event.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<RawEvent<'_>>, EtlError> {
        // The common case, an event inside the current buffer, parses once
        // and is inlined into the caller's loop; buffer ends, skipped kinds
        // and damage move the reader on first.
        if self.pos < self.end && !self.done {
            if let Some(located) = self.take_located() {
                return Ok(Some(self.lend_located(located)));
            }
        }
        if !self.settle()? {
            return Ok(None);
        }
        // On an event: the batch's first one.
        Ok(self.batch().next())
    }

    /// The events of the current buffer from the next one on: an iterator
    /// that lends each in turn and stops at the end of the buffer (or
    /// before a damaged record); `Ok(None)` at the end of the file. Errors
    /// come as from [`next_event`](Self::next_event), which this is a
    /// cheaper way to call: the reader's position is settled once per
    /// batch, not once per event.
    ///
    /// A batch dropped early leaves the reader after the last event it
    /// returned.
    ///
    /// ```no_run
    /// use procexit::etl::EtlFile;
    ///
    /// let mut file = EtlFile::open("trace.etl")?;
    /// let mut events = 0u64;
    /// loop {
    ///     match file.next_batch() {
    ///         Ok(Some(batch)) => events += batch.count() as u64,
    ///         Ok(None) => break,
    ///         Err(damage) => eprintln!("{damage}"),
    ///     }
    /// }
    /// println!("{events} events");
    /// # Ok::<(), procexit::etl::EtlError>(())
    /// ```
    pub fn next_batch(&mut self) -> Result<Option<Batch<'_>>, EtlError> {
        if !self.settle()? {
            return Ok(None);
        }
        Ok(Some(self.batch()))
    }

    /// The current buffer's events from the reader's position on.
    fn batch(&mut self) -> Batch<'_> {
        let end = self.end;
        let EtlFile {
            reader,
            inflated,
            disk,
            use_inflated,
            lent,
            pos,
            record_index,
            stats,
            clock,
            buffer_index,
            ..
        } = self;
        Batch {
            region: region_of(reader, inflated, disk, *use_inflated, *lent, end),
            clock: *clock,
            buffer_index: *buffer_index,
            pos,
            record_index,
            stats,
        }
    }

    /// Parses the record at `pos`; when it is an event, moves past it and
    /// returns it with its data as offsets into the region (so the reader
    /// is free to move on before lending it). Anything else leaves the
    /// reader where it was.
    #[inline(always)]
    fn take_located(&mut self) -> Option<Located> {
        let pos = self.pos;
        let region = self.region();
        prefetch_ahead(region, pos);
        let Ok(Parsed::Record(rec)) = record::parse(region, pos) else {
            return None;
        };
        let base = region.as_ptr() as usize;
        // Both slices lie in `region`: their addresses less its own are
        // their offsets in it.
        let at = |part: &[u8]| {
            let start = (part.as_ptr() as usize).wrapping_sub(base);
            start..start.wrapping_add(part.len())
        };
        let located = Located {
            header: rec.header,
            place: rec.place,
            payload: at(rec.payload),
            extended: at(rec.extended),
        };
        let len = rec.len.max(1);
        self.pos = pos.wrapping_add(len);
        Some(located)
    }

    /// The event of a record [`take_located`](Self::take_located) returned.
    #[inline(always)]
    fn lend_located(&mut self, located: Located) -> RawEvent<'_> {
        let record_index = self.record_index;
        self.record_index = record_index.wrapping_add(1);
        let (clock, buffer_index) = (self.clock, self.buffer_index);
        let region = self.region();
        let rec = Record {
            header: located.header,
            place: located.place,
            payload: region.get(located.payload).unwrap_or(&[]),
            extended: region.get(located.extended).unwrap_or(&[]),
            len: 0,
        };
        lend(rec, &clock, buffer_index, record_index)
    }

    /// Moves to the next record that is an event, past padding, skipped
    /// kinds and buffer ends: `Ok(true)` when the reader is on one,
    /// `Ok(false)` at the end of the file. Damage is reported once, the
    /// reader having moved past it.
    fn settle(&mut self) -> Result<bool, EtlError> {
        loop {
            if self.done {
                return Ok(false);
            }
            if self.pos < self.end {
                let pos = self.pos;
                match record::parse(self.region(), pos) {
                    Ok(Parsed::Record(_)) => return Ok(true),
                    Ok(Parsed::End) => self.pos = self.end,
                    Ok(Parsed::Skipped { len, .. }) => {
                        self.stats.skipped_records = self.stats.skipped_records.saturating_add(1);
                        self.record_index = self.record_index.saturating_add(1);
                        self.pos = self.pos.saturating_add(len.max(1));
                    }
                    Err(e) => {
                        self.pos = self.end;
                        if let Some(p) = self.pending.take() {
                            // The buffer was cut: the cut is the cause.
                            self.done = true;
                            return Err(p);
                        }
                        self.stats.damaged_buffers = self.stats.damaged_buffers.saturating_add(1);
                        return Err(self.record_error(e, pos));
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
                    return Ok(false);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
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

/// The buffer chain: loading each buffer in turn.
impl<R: BufRead> EtlFile<R> {
    /// The records region of the current buffer: in the reader's own
    /// buffer when it was lent, else in ours.
    #[inline(always)]
    pub(super) fn region(&mut self) -> &[u8] {
        region_of(
            &mut self.reader,
            &self.inflated,
            &self.disk,
            self.use_inflated,
            self.lent,
            self.end,
        )
    }

    pub(super) fn buffer_error(&self, kind: EtlErrorKind) -> EtlError {
        EtlError {
            kind,
            offset: self.buffer_offset,
            buffer: self.buffer_index,
            record: None,
            in_buffer: None,
        }
    }

    /// Reads the next buffer. `Ok(false)` at a clean end of file. A fatal
    /// error (I/O, truncation, impossible size) ends the stream; a bad
    /// compressed body leaves an empty region and the chain continues.
    ///
    /// When the reader already holds the whole buffer (a slice, or a
    /// `BufReader` whose buffer lines up with the trace's), it is read in
    /// place and consumed on the next call; otherwise it is copied.
    pub(super) fn load_buffer(&mut self) -> Result<bool, EtlError> {
        if self.started {
            self.buffer_index = self.buffer_index.saturating_add(1);
        }
        if self.lent > 0 {
            self.reader.consume(self.lent);
            self.lent = 0;
        }
        self.buffer_offset = self.next_offset;
        // The finished buffer's records join the count (see `stats`).
        self.stats.records = self.stats.records.saturating_add(self.record_index);
        self.record_index = 0;
        self.pos = 0;
        self.end = 0;
        self.use_inflated = false;
        self.disk_len = 0;

        if let Some(fields) = self.lend() {
            self.stats.buffers = self.stats.buffers.saturating_add(1);
            self.next_offset = self.next_offset.saturating_add(fields.size as u64);
            self.lent = fields.size;
            let body = match self.reader.fill_buf() {
                Ok(all) => all.get(buffer::LEN..fields.size).unwrap_or(&[]),
                Err(_) => &[],
            };
            let outcome = records_end(body, &fields, &mut self.inflated);
            self.take_outcome(outcome);
            return Ok(true);
        }

        if self.disk.len() < buffer::LEN {
            self.disk.resize(buffer::LEN, 0);
        }
        let head = self.disk.get_mut(..buffer::LEN).unwrap_or(&mut []);
        let got = read_full(&mut self.reader, head)
            .map_err(|e| io_error(&e, self.buffer_offset, self.buffer_index))?;
        if got == 0 {
            return Ok(false);
        }
        self.stats.buffers = self.stats.buffers.saturating_add(1);
        if got < buffer::LEN {
            self.next_offset = self.next_offset.saturating_add(got as u64);
            return Err(self.buffer_error(EtlErrorKind::Truncated {
                need: buffer::LEN as u64,
                have: got as u64,
            }));
        }
        let fields = HeadFields::parse(self.disk.get(..buffer::LEN).unwrap_or(&[]));
        let size = fields.size;
        if !(buffer::LEN..=buffer::MAX_SIZE).contains(&size) {
            return Err(self.buffer_error(EtlErrorKind::BadBufferSize(fields.size_field)));
        }

        // Grown once to the largest buffer seen, never shrunk or re-zeroed:
        // stale bytes past `disk_len` are never read.
        if self.disk.len() < size {
            self.disk.resize(size, 0);
        }
        let body = self.disk.get_mut(buffer::LEN..size).unwrap_or(&mut []);
        let body_len = body.len();
        let got = read_full(&mut self.reader, body)
            .map_err(|e| io_error(&e, self.buffer_offset, self.buffer_index))?;
        self.next_offset = self
            .next_offset
            .saturating_add(buffer::LEN as u64)
            .saturating_add(got as u64);
        self.disk_len = buffer::LEN.saturating_add(got);
        if got < body_len {
            self.pending = Some(self.buffer_error(EtlErrorKind::Truncated {
                need: size as u64,
                have: (buffer::LEN.saturating_add(got)) as u64,
            }));
            if fields.flags & buffer::FLAG_COMPRESSED != 0 {
                // A cut compressed stream decodes to nothing reliable.
                self.stats.compressed_buffers = self.stats.compressed_buffers.saturating_add(1);
                return Ok(true);
            }
        }
        let body = self.disk.get(buffer::LEN..self.disk_len).unwrap_or(&[]);
        let outcome = records_end(body, &fields, &mut self.inflated);
        self.take_outcome(outcome);
        Ok(true)
    }

    /// The current buffer's header fields, if the reader holds the whole
    /// buffer and its size is possible (anything else takes the copying
    /// path, which reports it).
    #[inline]
    fn lend(&mut self) -> Option<HeadFields> {
        let all = self.reader.fill_buf().ok()?;
        let fields = HeadFields::parse(all.get(..buffer::LEN)?);
        let possible = (buffer::LEN..=buffer::MAX_SIZE).contains(&fields.size);
        (possible && all.len() >= fields.size).then_some(fields)
    }

    /// Applies what [`records_end`] found to the reader's state.
    fn take_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Plain(end) => self.end = end,
            Outcome::Inflated(n) => {
                self.stats.compressed_buffers = self.stats.compressed_buffers.saturating_add(1);
                self.use_inflated = true;
                self.end = n;
                self.stats.inflated_bytes = self.stats.inflated_bytes.saturating_add(n as u64);
            }
            Outcome::Damaged(kind, input) => {
                self.stats.compressed_buffers = self.stats.compressed_buffers.saturating_add(1);
                let mut err = self.buffer_error(kind);
                if let Some(at) = input {
                    err.offset = self
                        .buffer_offset
                        .saturating_add(buffer::LEN as u64)
                        .saturating_add(at as u64);
                }
                self.damage(err);
            }
        }
    }

    pub(super) fn damage(&mut self, err: EtlError) {
        self.stats.damaged_buffers = self.stats.damaged_buffers.saturating_add(1);
        // A truncation already pending is fatal and wins.
        if self.pending.is_none() {
            self.pending = Some(err);
        }
    }
}

/// Asks for the two cache lines [`READ_AHEAD`] bytes past `pos`: a record
/// or two further on each time, so with records of any usual size every
/// line is asked for before the chain reaches it.
#[inline(always)]
fn prefetch_ahead(region: &[u8], pos: usize) {
    let ahead = region.as_ptr().wrapping_add(pos).wrapping_add(READ_AHEAD);
    crate::sys::prefetch(ahead);
    crate::sys::prefetch(ahead.wrapping_add(CACHE_LINE));
}

/// A parsed record whose data is given as offsets into the records region.
struct Located {
    header: EventHeader,
    place: RecordPlace,
    payload: Range<usize>,
    extended: Range<usize>,
}

/// A record as the event the reader lends.
#[inline(always)]
fn lend<'a>(rec: Record<'a>, clock: &Clock, buffer_index: u64, record_index: u64) -> RawEvent<'a> {
    let Record {
        mut header,
        mut place,
        payload,
        extended,
        ..
    } = rec;
    header.time = clock.filetime(place.timestamp_raw);
    place.buffer_index = buffer_index;
    place.record_index = record_index;
    RawEvent {
        header,
        payload,
        extended,
        place,
    }
}

/// The events of one buffer, lent in turn: see [`EtlFile::next_batch`].
///
/// Moves the reader along as it goes, so the reader is after the last
/// event returned whenever the batch is dropped.
#[derive(Debug)]
pub struct Batch<'a> {
    region: &'a [u8],
    clock: Clock,
    buffer_index: u64,
    pos: &'a mut usize,
    record_index: &'a mut u64,
    stats: &'a mut ReadStats,
}

impl<'a> Iterator for Batch<'a> {
    type Item = RawEvent<'a>;

    // Always inlined into the consumer's loop, where the event's fields
    // stay in registers; out of line, each ~140-byte event is returned
    // through memory and copied again.
    #[inline(always)]
    fn next(&mut self) -> Option<RawEvent<'a>> {
        let region = self.region;
        loop {
            let pos = *self.pos;
            if pos >= region.len() {
                return None;
            }
            prefetch_ahead(region, pos);
            let record_index = *self.record_index;
            match record::parse(region, pos) {
                // Counts and offsets below cannot overflow: a record is at
                // least 4 bytes of a buffer in memory, `len` at most what
                // is left of it.
                Ok(Parsed::Record(rec)) => {
                    *self.record_index = record_index.wrapping_add(1);
                    *self.pos = pos.wrapping_add(rec.len.max(1));
                    return Some(lend(rec, &self.clock, self.buffer_index, record_index));
                }
                Ok(Parsed::Skipped { len }) => {
                    *self.record_index = record_index.wrapping_add(1);
                    self.stats.skipped_records = self.stats.skipped_records.wrapping_add(1);
                    *self.pos = pos.wrapping_add(len.max(1));
                }
                Ok(Parsed::End) => {
                    *self.pos = region.len();
                    return None;
                }
                // Left for the reader to report: the next batch or event
                // starts here.
                Err(_) => return None,
            }
        }
    }
}

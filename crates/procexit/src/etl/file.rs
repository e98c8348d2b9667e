//! The streaming reader: buffer chain, decompression, logfile header.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::SystemTime;

use super::layout::{buffer, header_type as ht, logfile};
use super::record::{self, Parsed, Record, RecordError};
use super::xpress;
use super::{EtlError, EtlErrorKind, RawEvent};
use crate::decode::{Cursor, DecodeError, PointerSize};

/// The session facts from the logfile header record (TRACE_LOGFILE_HEADER).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogfileHeader {
    /// Session buffer size in bytes (uncompressed).
    pub buffer_size: u32,
    /// OS major version (6 for Windows 7/8, 10 for Windows 10/11).
    pub os_major: u8,
    /// OS minor version.
    pub os_minor: u8,
    /// OS build number.
    pub os_build: u32,
    /// Processors on the traced machine.
    pub number_of_processors: u32,
    /// FILETIME the session ended.
    pub end_time: u64,
    /// Clock resolution in 100 ns units.
    pub timer_resolution: u32,
    /// EVENT_TRACE_*_MODE flags of the session.
    pub log_file_mode: u32,
    /// Buffers written, per the session.
    pub buffers_written: u32,
    /// Pointer size of the logging session (4 or 8). Payload widths follow
    /// each record's header instead; see [`EventHeader::pointer_size`](super::EventHeader::pointer_size).
    pub pointer_size: u32,
    /// Events the session lost.
    pub events_lost: u32,
    /// CPU clock in MHz (used by the cycle-counter clock).
    pub cpu_speed_mhz: u32,
    /// FILETIME of the last boot.
    pub boot_time: u64,
    /// QPC frequency in Hz.
    pub perf_freq: u64,
    /// FILETIME the session started.
    pub start_time: u64,
    /// Clock type ("ReservedFlags"): 1 QPC, 2 system time, 3 CPU cycles.
    pub clock_type: u32,
    /// Buffers the session lost.
    pub buffers_lost: u32,
    /// Session name.
    pub logger_name: String,
    /// Log file name as recorded.
    pub log_file_name: String,
    /// Raw time stamp of the logfile header record: the clock's value at
    /// `start_time`.
    pub header_timestamp: i64,
    /// Width of the logfile header record's own header.
    pub header_pointer_size: PointerSize,
}

impl LogfileHeader {
    /// Whether buffers are LZ77-compressed (`EVENT_TRACE_COMPRESSED_MODE`).
    pub fn compressed(&self) -> bool {
        self.log_file_mode & logfile::MODE_COMPRESSED != 0
    }

    /// The session start in UTC.
    pub fn start(&self) -> Option<SystemTime> {
        crate::system_time_from_filetime(self.start_time)
    }

    /// The session end in UTC.
    pub fn end(&self) -> Option<SystemTime> {
        crate::system_time_from_filetime(self.end_time)
    }

    /// The last boot in UTC.
    pub fn boot(&self) -> Option<SystemTime> {
        crate::system_time_from_filetime(self.boot_time)
    }

    /// Converts a raw record time stamp to FILETIME:
    /// `StartTime + (raw − raw of the header record) · 10⁷ / frequency`,
    /// in integer arithmetic. `None` for an unknown clock or zero frequency.
    pub fn filetime(&self, raw: i64) -> Option<u64> {
        let ticks_per_sec: i128 = match self.clock_type {
            1 => i128::from(self.perf_freq),
            2 => 10_000_000,
            3 => i128::from(self.cpu_speed_mhz).checked_mul(1_000_000)?,
            _ => return None,
        };
        if ticks_per_sec <= 0 {
            return None;
        }
        let delta = i128::from(raw).checked_sub(i128::from(self.header_timestamp))?;
        let offset = if ticks_per_sec == 10_000_000 {
            delta
        } else {
            // 64-bit arithmetic when it cannot overflow (every realistic
            // delta): i128 division is several times slower per event.
            match i64::try_from(delta)
                .ok()
                .and_then(|d| d.checked_mul(10_000_000))
            {
                Some(scaled) => i128::from(scaled.checked_div(i64::try_from(ticks_per_sec).ok()?)?),
                None => delta.checked_mul(10_000_000)?.checked_div(ticks_per_sec)?,
            }
        };
        let ft = i128::from(self.start_time).checked_add(offset)?;
        u64::try_from(ft).ok()
    }

    fn parse(payload: &[u8], pointer: PointerSize, raw_time: i64) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(payload);
        let buffer_size = c.u32()?;
        let [os_major, os_minor, _, _] = c.u32()?.to_le_bytes();
        let os_build = c.u32()?;
        let number_of_processors = c.u32()?;
        let end_time = c.u64()?;
        let timer_resolution = c.u32()?;
        let _maximum_file_size = c.u32()?;
        let log_file_mode = c.u32()?;
        let buffers_written = c.u32()?;
        let _start_buffers = c.u32()?;
        let pointer_size = c.u32()?;
        let events_lost = c.u32()?;
        let cpu_speed_mhz = c.u32()?;
        debug_assert_eq!(c.position(), logfile::POINTERS);
        c.skip(pointer.bytes().saturating_mul(2))?;
        c.skip(logfile::TIME_ZONE_AND_PAD)?;
        let boot_time = c.u64()?;
        let perf_freq = c.u64()?;
        let start_time = c.u64()?;
        let clock_type = c.u32()?;
        let buffers_lost = c.u32()?;
        let logger_name = utf16z(&mut c);
        let log_file_name = utf16z(&mut c);
        Ok(LogfileHeader {
            buffer_size,
            os_major,
            os_minor,
            os_build,
            number_of_processors,
            end_time,
            timer_resolution,
            log_file_mode,
            buffers_written,
            pointer_size,
            events_lost,
            cpu_speed_mhz,
            boot_time,
            perf_freq,
            start_time,
            clock_type,
            buffers_lost,
            logger_name,
            log_file_name,
            header_timestamp: raw_time,
            header_pointer_size: pointer,
        })
    }
}

/// A NUL-terminated UTF-16LE string; what is there if the NUL is missing.
fn utf16z(c: &mut Cursor<'_>) -> String {
    let mut units = Vec::new();
    while let Ok(u) = c.u16() {
        if u == 0 {
            break;
        }
        units.push(u);
    }
    String::from_utf16_lossy(&units)
}

/// Counters of what the reader has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadStats {
    /// Buffers read (including damaged ones).
    pub buffers: u64,
    /// Of those, compressed.
    pub compressed_buffers: u64,
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
/// Reads buffer by buffer into one reused allocation; [`next_event`](Self::next_event)
/// lends each record from it.
#[derive(Debug)]
pub struct EtlFile<R> {
    reader: R,
    header: LogfileHeader,
    /// The current buffer as stored on disk, header included. Only grows:
    /// `disk_len` bytes of it are the current buffer.
    disk: Vec<u8>,
    disk_len: usize,
    /// The current buffer's records after decompression.
    inflated: Vec<u8>,
    use_inflated: bool,
    /// Next record, as an offset into the records region.
    pos: usize,
    /// End of the records region.
    end: usize,
    buffer_index: u64,
    record_index: u64,
    buffer_offset: u64,
    next_offset: u64,
    pending: Option<EtlError>,
    done: bool,
    started: bool,
    stats: ReadStats,
    total_bytes: Option<u64>,
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

fn io_error(e: &io::Error, offset: u64, buffer: u64) -> EtlError {
    EtlError {
        kind: EtlErrorKind::Io(e.kind()),
        offset,
        buffer,
        record: None,
        in_buffer: None,
    }
}

/// Reads until `out` is full or EOF; returns the bytes read.
fn read_full<R: Read>(r: &mut R, out: &mut [u8]) -> io::Result<usize> {
    let mut got = 0usize;
    while let Some(rest) = out.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn le_u32(d: &[u8], at: usize) -> u32 {
    d.get(at..at.saturating_add(4))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn le_u16(d: &[u8], at: usize) -> u16 {
    d.get(at..at.saturating_add(2))
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}

impl<R: Read> EtlFile<R> {
    /// Wraps a reader positioned at the start of an `.etl` file and reads
    /// its logfile header (the first record).
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
            disk: Vec::new(),
            disk_len: 0,
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
        let payload = etl.region().get(rec.payload.clone()).unwrap_or(&[]);
        etl.header =
            LogfileHeader::parse(payload, rec.header.pointer_size, rec.place.timestamp_raw)
                .map_err(|e| EtlError {
                    kind: EtlErrorKind::LogfileHeader(e.kind),
                    offset: (buffer::LEN as u64)
                        .saturating_add(rec.payload.start as u64)
                        .saturating_add(e.offset as u64),
                    ..not_etl(&etl)
                })?;
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

    /// The records region of the current buffer.
    fn region(&self) -> &[u8] {
        if self.use_inflated {
            self.inflated.get(..self.end).unwrap_or(&[])
        } else {
            self.disk
                .get(buffer::LEN..buffer::LEN.saturating_add(self.end))
                .unwrap_or(&[])
        }
    }

    fn buffer_error(&self, kind: EtlErrorKind) -> EtlError {
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
    fn load_buffer(&mut self) -> Result<bool, EtlError> {
        if self.started {
            self.buffer_index = self.buffer_index.saturating_add(1);
        }
        self.buffer_offset = self.next_offset;
        self.record_index = 0;
        self.pos = 0;
        self.end = 0;
        self.use_inflated = false;

        self.disk_len = 0;
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
        let size_field = le_u32(&self.disk, buffer::BUFFER_SIZE);
        let size = size_field as usize;
        if !(buffer::LEN..=buffer::MAX_SIZE).contains(&size) {
            return Err(self.buffer_error(EtlErrorKind::BadBufferSize(size_field)));
        }
        let filled_field = le_u32(&self.disk, buffer::FILLED);
        let filled = filled_field as usize;
        let flags = le_u16(&self.disk, buffer::FLAGS);

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
        let truncated = got < body_len;
        if truncated {
            self.pending = Some(self.buffer_error(EtlErrorKind::Truncated {
                need: size as u64,
                have: (buffer::LEN.saturating_add(got)) as u64,
            }));
        }

        if flags & buffer::FLAG_COMPRESSED != 0 {
            self.stats.compressed_buffers = self.stats.compressed_buffers.saturating_add(1);
            if truncated {
                // A cut compressed stream decodes to nothing reliable.
                return Ok(true);
            }
            let Some(expected) = filled
                .checked_sub(buffer::LEN)
                .filter(|_| filled <= buffer::MAX_SIZE)
            else {
                self.pending_buffer_damage(EtlErrorKind::BadFilled(filled_field));
                return Ok(true);
            };
            self.inflated.resize(expected, 0);
            let input = self.disk.get(buffer::LEN..self.disk_len).unwrap_or(&[]);
            match xpress::decompress(input, &mut self.inflated) {
                Ok(n) if n == expected => {
                    self.use_inflated = true;
                    self.end = n;
                }
                Ok(n) => self.pending_buffer_damage(EtlErrorKind::ShortBuffer { expected, got: n }),
                Err(e) => {
                    let mut err = self.buffer_error(EtlErrorKind::Decompress(e.kind));
                    err.offset = self
                        .buffer_offset
                        .saturating_add(buffer::LEN as u64)
                        .saturating_add(e.input as u64);
                    self.damage(err);
                }
            }
        } else {
            // "Filled" is right in every real file; SavedOffset is not. A
            // fill outside the buffer is not trusted: scan to the padding.
            let avail = self.disk_len.saturating_sub(buffer::LEN);
            let declared = if (buffer::LEN..=size).contains(&filled) {
                filled.saturating_sub(buffer::LEN)
            } else {
                avail
            };
            self.end = declared.min(avail);
        }
        Ok(true)
    }

    /// Records a damaged buffer whose error is reported by the next call.
    fn pending_buffer_damage(&mut self, kind: EtlErrorKind) {
        let err = self.buffer_error(kind);
        self.damage(err);
    }

    fn damage(&mut self, err: EtlError) {
        self.stats.damaged_buffers = self.stats.damaged_buffers.saturating_add(1);
        // A truncation already pending is fatal and wins.
        if self.pending.is_none() {
            self.pending = Some(err);
        }
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
                match record::parse(self.region(), self.pos) {
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
                        let region = self.region();
                        let Record {
                            mut header,
                            mut place,
                            payload,
                            extended,
                            ..
                        } = rec;
                        header.time = self.header.filetime(place.timestamp_raw);
                        place.buffer_index = self.buffer_index;
                        place.record_index = record_index;
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

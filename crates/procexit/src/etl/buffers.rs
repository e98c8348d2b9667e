//! The buffer chain of a trace: reading each buffer, following the chain by
//! each buffer's stored size, and inflating compressed buffers
//! (docs/etl-file-format.md §1–2).

use std::io::{self, BufRead, Read};

use super::file::EtlFile;
use super::layout::buffer;
use super::{xpress, EtlError, EtlErrorKind};
use crate::decode::Cursor;

/// The records region of the current buffer (`end` bytes): in the
/// reader's own buffer when it was lent, else in ours. Apart from
/// [`EtlFile::region`] so a batch can hold it beside the reader's counters.
#[inline(always)]
pub(super) fn region_of<'a, R: BufRead>(
    reader: &'a mut R,
    inflated: &'a [u8],
    disk: &'a [u8],
    use_inflated: bool,
    lent: usize,
    end: usize,
) -> &'a [u8] {
    let (all, start) = if use_inflated {
        (inflated, 0)
    } else if lent > 0 {
        // Lent bytes stay in the reader until consumed: this returns them
        // again without I/O.
        (reader.fill_buf().unwrap_or(&[]), buffer::LEN)
    } else {
        (disk, buffer::LEN)
    };
    all.get(start..start.saturating_add(end)).unwrap_or(&[])
}

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

/// The fields of a buffer header that the chain and the records need.
struct HeadFields {
    /// Bytes on disk, header included (`size_field` as a size).
    size: usize,
    size_field: u32,
    filled: usize,
    filled_field: u32,
    flags: u16,
}

impl HeadFields {
    /// Reads the fields from the 72 header bytes (missing ones read as 0).
    #[inline]
    fn parse(head: &[u8]) -> HeadFields {
        let head = Cursor::new(head);
        let size_field = head.u32_at(buffer::BUFFER_SIZE).unwrap_or(0);
        let filled_field = head.u32_at(buffer::FILLED).unwrap_or(0);
        HeadFields {
            size: size_field as usize,
            size_field,
            filled: filled_field as usize,
            filled_field,
            flags: head.u16_at(buffer::FLAGS).unwrap_or(0),
        }
    }
}

/// Where a buffer's records are, once its body is read.
enum Outcome {
    /// In the body, up to this offset.
    Plain(usize),
    /// Inflated into the reader's buffer: this many bytes.
    Inflated(usize),
    /// A compressed body that does not inflate as declared, and where in
    /// the compressed bytes the decoder stopped, when it did.
    Damaged(EtlErrorKind, Option<usize>),
}

/// Finds a buffer's records: the filled part of a plain `body`, or a
/// compressed `body` inflated into `inflated`.
fn records_end(body: &[u8], fields: &HeadFields, inflated: &mut Vec<u8>) -> Outcome {
    if fields.flags & buffer::FLAG_COMPRESSED == 0 {
        // "Filled" is right in every real file; SavedOffset is not. A
        // fill outside the buffer is not trusted: scan to the padding.
        let avail = body.len();
        let declared = if (buffer::LEN..=fields.size).contains(&fields.filled) {
            fields.filled.saturating_sub(buffer::LEN)
        } else {
            avail
        };
        return Outcome::Plain(declared.min(avail));
    }
    let Some(expected) = fields
        .filled
        .checked_sub(buffer::LEN)
        .filter(|_| fields.filled <= buffer::MAX_SIZE)
    else {
        return Outcome::Damaged(EtlErrorKind::BadFilled(fields.filled_field), None);
    };
    inflated.resize(expected, 0);
    match xpress::decompress(body, inflated) {
        Ok(n) if n == expected => Outcome::Inflated(n),
        Ok(n) => Outcome::Damaged(EtlErrorKind::ShortBuffer { expected, got: n }, None),
        Err(e) => Outcome::Damaged(EtlErrorKind::Decompress(e.kind), Some(e.input)),
    }
}

pub(super) fn io_error(e: &io::Error, offset: u64, buffer: u64) -> EtlError {
    EtlError {
        kind: EtlErrorKind::Io(e.kind()),
        offset,
        buffer,
        record: None,
        in_buffer: None,
    }
}

/// Reads until `out` is full or EOF; returns the bytes read.
pub(super) fn read_full<R: Read>(r: &mut R, out: &mut [u8]) -> io::Result<usize> {
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

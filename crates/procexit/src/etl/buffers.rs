//! The buffer chain of a trace: reading each buffer, following the chain by
//! each buffer's stored size, and inflating compressed buffers
//! (docs/etl-file-format.md §1–2).

use std::io::{self, Read};

use super::file::EtlFile;
use super::layout::buffer;
use super::{xpress, EtlError, EtlErrorKind};
use crate::decode::Cursor;

impl<R: Read> EtlFile<R> {
    /// The records region of the current buffer.
    #[inline(always)]
    pub(super) fn region(&self) -> &[u8] {
        if self.use_inflated {
            self.inflated.get(..self.end).unwrap_or(&[])
        } else {
            self.disk
                .get(buffer::LEN..buffer::LEN.saturating_add(self.end))
                .unwrap_or(&[])
        }
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
    pub(super) fn load_buffer(&mut self) -> Result<bool, EtlError> {
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
        let head = Cursor::new(self.disk.get(..buffer::LEN).unwrap_or(&[]));
        // The 72 header bytes were read above, so these fields are there.
        let field = |value: Option<u32>| value.unwrap_or(0);
        let size_field = field(head.u32_at(buffer::BUFFER_SIZE));
        let size = size_field as usize;
        if !(buffer::LEN..=buffer::MAX_SIZE).contains(&size) {
            return Err(self.buffer_error(EtlErrorKind::BadBufferSize(size_field)));
        }
        let filled_field = field(head.u32_at(buffer::FILLED));
        let filled = filled_field as usize;
        let flags = head.u16_at(buffer::FLAGS).unwrap_or(0);

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
                    self.stats.inflated_bytes = self.stats.inflated_bytes.saturating_add(n as u64);
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

    pub(super) fn damage(&mut self, err: EtlError) {
        self.stats.damaged_buffers = self.stats.damaged_buffers.saturating_add(1);
        // A truncation already pending is fatal and wins.
        if self.pending.is_none() {
            self.pending = Some(err);
        }
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

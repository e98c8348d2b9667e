//! One buffer of a trace's chain, apart from the reader that walks it
//! (`file.rs`): the header fields the chain needs, where a buffer's
//! records end, inflating a compressed body, and the I/O helpers
//! (docs/etl-file-format.md §1–2).

use std::io::{self, BufRead, Read};

use super::layout::buffer;
use super::{xpress, EtlError, EtlErrorKind};
use crate::decode::Cursor;

/// The records region of the current buffer (`end` bytes): in the
/// reader's own buffer when it was lent, else in ours. Apart from
/// `EtlFile::region` so a batch can hold it beside the reader's counters.
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

/// The fields of a buffer header that the chain and the records need.
pub(super) struct HeadFields {
    /// Bytes on disk, header included (`size_field` as a size).
    pub(super) size: usize,
    pub(super) size_field: u32,
    pub(super) filled: usize,
    pub(super) filled_field: u32,
    pub(super) flags: u16,
}

impl HeadFields {
    /// Reads the fields from the 72 header bytes (missing ones read as 0).
    #[inline]
    pub(super) fn parse(head: &[u8]) -> HeadFields {
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
pub(super) enum Outcome {
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
pub(super) fn records_end(body: &[u8], fields: &HeadFields, inflated: &mut Vec<u8>) -> Outcome {
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

//! One record inside a buffer: its header kind, identity, time, its
//! payload and extended data, and its length. Works on the records region
//! of one (decompressed) buffer.

use super::layout::{self, classic, event, header_type as ht, marker, message, system};
use super::RecordPlace;
use crate::decode::view::EventHeader;
use crate::decode::{Cursor, Guid, PointerSize};

/// Which record header an event was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderKind {
    /// SYSTEM_TRACE_HEADER (types 0x01/0x02): kernel events with thread,
    /// process and CPU times.
    System,
    /// Compact system header (0x03/0x04): without CPU times.
    Compact,
    /// PERFINFO_TRACE_HEADER (0x10/0x11): kernel events with no thread or
    /// process id.
    PerfInfo,
    /// EVENT_TRACE_HEADER (0x0A/0x14): classic (MOF) events with a class GUID.
    Classic,
    /// EVENT_INSTANCE_GUID_HEADER (0x0B/0x15).
    Instance,
    /// EVENT_HEADER (0x12/0x13): manifest and TraceLogging providers.
    Event,
}

impl HeaderKind {
    /// A short stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderKind::System => "system",
            HeaderKind::Compact => "compact",
            HeaderKind::PerfInfo => "perfinfo",
            HeaderKind::Classic => "classic",
            HeaderKind::Instance => "instance",
            HeaderKind::Event => "event",
        }
    }
}

/// Why a record could not be read. Offsets are relative to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// The record runs past the buffer's filled bytes.
    Truncated { need: usize, have: usize },
    /// The marker is not one a trace header starts with.
    BadMarker(u32),
    /// The size field is smaller than the header it announces.
    BadSize { size: usize, min: usize },
    /// Extended data items do not fit the record.
    BadExtendedData,
}

/// What [`parse`] found at a record offset.
#[derive(Debug, Clone)]
pub(crate) enum Parsed<'a> {
    /// The tail of the buffer is padding: no more records.
    End,
    /// A record of a kind we do not decode (WPP message, timed, error,
    /// WNODE): skipped. `len` is its aligned length.
    Skipped { len: usize },
    /// A record.
    Record(Record<'a>),
}

/// A decoded record header with its data, borrowed from the records
/// region. The header's time and the place's buffer and record indexes are
/// left for the reader to fill in.
#[derive(Debug, Clone)]
pub(crate) struct Record<'a> {
    pub header: EventHeader,
    pub place: RecordPlace,
    pub payload: &'a [u8],
    pub extended: &'a [u8],
    /// Length including the padding to 8 bytes.
    pub len: usize,
}

/// EVENT_HEADER flags synthesized for headers that have none, as ETW does
/// when it hands such events to a consumer.
const FLAG_CLASSIC: u16 = 0x0100;

/// [`layout::GROUP_GUIDS`] indexed by group (the zero GUID for groups
/// without one), built at compile time (a bad index fails the build, never
/// a run). One entry per byte value, so a lookup needs no range check.
#[allow(clippy::indexing_slicing)]
const GUID_BY_GROUP: [Guid; 256] = {
    let mut table = [Guid::new(0, 0, 0, [0; 8]); 256];
    let mut i = 0;
    while i < layout::GROUP_GUIDS.len() {
        let (group, guid) = layout::GROUP_GUIDS[i];
        table[group as usize] = guid;
        i += 1;
    }
    table
};

/// The class GUID of a kernel hook id.
#[inline(always)]
pub(crate) fn group_guid(group: u8, opcode: u8) -> Guid {
    let group = if group == layout::GROUP_PROCESS && opcode == layout::OPCODE_PROCESS_IMAGE_LOAD {
        layout::GROUP_IMAGE
    } else {
        group
    };
    GUID_BY_GROUP
        .get(usize::from(group))
        .copied()
        .unwrap_or(Guid::new(0, 0, 0, [0; 8]))
}

/// A place with the header facts; the reader fills in the indexes.
#[inline(always)]
fn place(kind: HeaderKind, header_type: u8, group: Option<u8>, raw_time: u64) -> RecordPlace {
    RecordPlace {
        kind,
        header_type,
        group,
        // The stored value is a signed 64-bit clock reading.
        timestamp_raw: raw_time as i64,
        buffer_index: 0,
        record_index: 0,
    }
}

#[inline(always)]
fn width_flag(p: PointerSize) -> u16 {
    match p {
        PointerSize::Four => PointerSize::FLAG_32_BIT_HEADER,
        PointerSize::Eight => PointerSize::FLAG_64_BIT_HEADER,
    }
}

/// Bytes of a record that hold every header field read: the longest fixed
/// header (EVENT_HEADER) is 80 bytes.
const HEAD: usize = event::LEN;

/// `N` bytes at `at` of a record's head; with `at` a constant (every use)
/// the bounds check folds away.
#[inline(always)]
fn field<const N: usize>(head: &[u8; HEAD], at: usize) -> [u8; N] {
    head.get(at..at.wrapping_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

#[inline(always)]
fn u8_at(head: &[u8; HEAD], at: usize) -> u8 {
    let [byte] = field(head, at);
    byte
}

#[inline(always)]
fn u16_at(head: &[u8; HEAD], at: usize) -> u16 {
    u16::from_le_bytes(field(head, at))
}

#[inline(always)]
fn u32_at(head: &[u8; HEAD], at: usize) -> u32 {
    u32::from_le_bytes(field(head, at))
}

#[inline(always)]
fn u64_at(head: &[u8; HEAD], at: usize) -> u64 {
    u64::from_le_bytes(field(head, at))
}

#[inline(always)]
fn guid_at(head: &[u8; HEAD], at: usize) -> Guid {
    Guid::new(
        u32_at(head, at),
        u16_at(head, at.wrapping_add(4)),
        u16_at(head, at.wrapping_add(6)),
        field(head, at.wrapping_add(8)),
    )
}

/// The record's size field at `size_at`, checked against the header's
/// `min` and against the `left` bytes of the buffer.
#[inline(always)]
fn record_size(
    head: &[u8; HEAD],
    left: usize,
    size_at: usize,
    min: usize,
) -> Result<usize, RecordError> {
    let need = size_at.saturating_add(2);
    if left < need {
        return Err(RecordError::Truncated { need, have: left });
    }
    let size = usize::from(u16_at(head, size_at));
    if size < min {
        return Err(RecordError::BadSize { size, min });
    }
    if size > left {
        return Err(RecordError::Truncated {
            need: size,
            have: left,
        });
    }
    Ok(size)
}

/// A record's length with its padding to 8 bytes, at most `left`.
#[inline(always)]
fn aligned_len(size: usize, left: usize) -> usize {
    // `size` is a 16-bit field: adding the padding cannot overflow.
    const PAD: usize = marker::ALIGN - 1;
    (size.wrapping_add(PAD) & !PAD).min(left)
}

/// Parses the record at `pos` of `region` (the records of one buffer).
/// Inlined into the reader's loop: the size-optimised release build would
/// otherwise return each record through memory.
///
/// Every header field is read from the record's first [`HEAD`] bytes at a
/// fixed offset, after one check that the record holds its header, so the
/// loads need no checks of their own. Near the end of a buffer those bytes
/// are copied into a zeroed array first; what lies past the record is never
/// read, since each header fits the record's checked size.
#[inline(always)]
pub(crate) fn parse(region: &[u8], pos: usize) -> Result<Parsed<'_>, RecordError> {
    let rest = region.get(pos..).unwrap_or(&[]);
    let left = rest.len();
    let short: [u8; HEAD];
    let head: &[u8; HEAD] = match rest.first_chunk::<HEAD>() {
        Some(head) => head,
        None => {
            let mut padded = [0u8; HEAD];
            if let Some(to) = padded.get_mut(..left) {
                to.copy_from_slice(rest);
            }
            short = padded;
            &short
        }
    };
    if left < 4 {
        // Fewer than 4 bytes left: only padding can be that short.
        return Ok(Parsed::End);
    }
    let mark = u32_at(head, 0);
    if mark == marker::PADDING {
        return Ok(Parsed::End);
    }
    let top = (mark >> 24) as u8;
    let htype = (mark >> 16) as u8;
    // Bytes `start..end` of the record; every caller has checked that
    // `end` is at most the record's size, itself at most `left`.
    let bytes = |start: usize, end: usize| rest.get(start..end).unwrap_or(&[]);

    if top & marker::TRACE_HEADER != marker::TRACE_HEADER {
        if top & marker::MESSAGE_MASK == marker::MESSAGE {
            let size = record_size(head, left, message::SIZE, message::LEN)?;
            return Ok(Parsed::Skipped {
                len: aligned_len(size, left),
            });
        }
        return Err(RecordError::BadMarker(mark));
    }

    let pointer = match htype {
        ht::SYSTEM64
        | ht::COMPACT64
        | ht::PERFINFO64
        | ht::EVENT64
        | ht::FULL64
        | ht::INSTANCE64 => PointerSize::Eight,
        _ => PointerSize::Four,
    };

    match htype {
        ht::SYSTEM32
        | ht::SYSTEM64
        | ht::COMPACT32
        | ht::COMPACT64
        | ht::PERFINFO32
        | ht::PERFINFO64 => {
            let (kind, base_len) = match htype {
                ht::SYSTEM32 | ht::SYSTEM64 => (HeaderKind::System, system::SYSTEM_LEN),
                ht::COMPACT32 | ht::COMPACT64 => (HeaderKind::Compact, system::COMPACT_LEN),
                _ => (HeaderKind::PerfInfo, system::PERFINFO_LEN),
            };
            let version_word = u16_at(head, system::VERSION);
            let mut extra = 0usize;
            if version_word & system::EXTRA_WORD != 0 {
                extra = 8;
            }
            let words = usize::from((version_word & system::EXTRA_WORDS_MASK) >> 8);
            extra = extra.saturating_add(words.saturating_mul(8));
            let header_len = base_len.saturating_add(extra);
            let size = record_size(head, left, system::SIZE, header_len)?;
            let opcode = u8_at(head, system::OPCODE);
            let group = u8_at(head, system::GROUP);
            // Both layouts read, one kept: kernel traces interleave these
            // kinds, and a select costs less than a mispredicted branch.
            let perfinfo = kind == HeaderKind::PerfInfo;
            let (system_time, perfinfo_time) = (
                u64_at(head, system::TIME),
                u64_at(head, system::PERFINFO_TIME),
            );
            let time = if perfinfo { perfinfo_time } else { system_time };
            let pid = (!perfinfo).then_some(u32_at(head, system::PROCESS_ID));
            let tid = (!perfinfo).then_some(u32_at(head, system::THREAD_ID));
            let mut header = EventHeader::new(
                group_guid(group, opcode),
                opcode,
                version_word & 0x00ff,
                pointer,
            );
            header.pid = pid;
            header.tid = tid;
            header.flags = FLAG_CLASSIC | width_flag(pointer);
            Ok(Parsed::Record(Record {
                header,
                place: place(kind, htype, Some(group), time),
                payload: bytes(header_len, size),
                extended: bytes(base_len, header_len),
                len: aligned_len(size, left),
            }))
        }
        ht::FULL32 | ht::FULL64 | ht::INSTANCE32 | ht::INSTANCE64 => {
            let (kind, header_len) = match htype {
                ht::FULL32 | ht::FULL64 => (HeaderKind::Classic, classic::LEN),
                _ => (HeaderKind::Instance, classic::INSTANCE_LEN),
            };
            let size = record_size(head, left, classic::SIZE, header_len)?;
            let mut header = EventHeader::new(
                guid_at(head, classic::GUID),
                u8_at(head, classic::OPCODE),
                u16_at(head, classic::VERSION),
                pointer,
            );
            header.level = u8_at(head, classic::LEVEL);
            header.pid = Some(u32_at(head, classic::PROCESS_ID));
            header.tid = Some(u32_at(head, classic::THREAD_ID));
            header.flags = FLAG_CLASSIC | width_flag(pointer);
            Ok(Parsed::Record(Record {
                header,
                place: place(kind, htype, None, u64_at(head, classic::TIME)),
                payload: bytes(header_len, size),
                extended: bytes(header_len, header_len),
                len: aligned_len(size, left),
            }))
        }
        ht::EVENT32 | ht::EVENT64 => {
            let size = record_size(head, left, event::SIZE, event::LEN)?;
            let flags = u16_at(head, event::FLAGS);
            // The header's own width flags win over the header type.
            let pointer = PointerSize::from_header_flags(flags).unwrap_or(pointer);
            let mut data_start = event::LEN;
            if flags & event::FLAG_EXTENDED_INFO != 0 {
                let record = rest.get(..size).unwrap_or(&[]);
                data_start = extended_end(&Cursor::new(record))?;
            }
            let mut header = EventHeader::new(
                guid_at(head, event::PROVIDER),
                u8_at(head, event::OPCODE),
                u16::from(u8_at(head, event::VERSION)),
                pointer,
            );
            header.event_id = u16_at(head, event::ID);
            header.level = u8_at(head, event::LEVEL);
            header.task = u16_at(head, event::TASK);
            header.keyword = u64_at(head, event::KEYWORD);
            header.pid = Some(u32_at(head, event::PROCESS_ID));
            header.tid = Some(u32_at(head, event::THREAD_ID));
            header.flags = flags;
            Ok(Parsed::Record(Record {
                header,
                place: place(HeaderKind::Event, htype, None, u64_at(head, event::TIME)),
                payload: bytes(data_start, size),
                extended: bytes(event::LEN, data_start),
                len: aligned_len(size, left),
            }))
        }
        _ => {
            // Timed, error, WNODE and unknown types: all start with their size.
            let size = record_size(head, left, 0, 8)?;
            Ok(Parsed::Skipped {
                len: aligned_len(size, left),
            })
        }
    }
}

/// Walks the extended data items after an EVENT_HEADER (`rec` is the whole
/// record) and returns where the user data starts.
fn extended_end(rec: &Cursor<'_>) -> Result<usize, RecordError> {
    let mut at = event::LEN;
    loop {
        let item_size = usize::from(rec.u16_at(at).ok_or(RecordError::BadExtendedData)?);
        let linkage = rec
            .u16_at(at.saturating_add(event::EXT_LINKAGE))
            .ok_or(RecordError::BadExtendedData)?;
        if item_size < event::EXT_ITEM_LEN {
            return Err(RecordError::BadExtendedData);
        }
        at = at
            .checked_add(item_size)
            .filter(|&end| end <= rec.all().len())
            .ok_or(RecordError::BadExtendedData)?;
        if linkage & event::EXT_LINKAGE_MORE == 0 {
            return Ok(at);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::decode::{KERNEL_PROCESS_GUID, PROCESS_GUID};

    fn record(parsed: Result<Parsed<'_>, RecordError>) -> Record<'_> {
        match parsed {
            Ok(Parsed::Record(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Where `part` lies in `all`.
    #[allow(clippy::arithmetic_side_effects)]
    fn span(all: &[u8], part: &[u8]) -> std::ops::Range<usize> {
        let start = part.as_ptr() as usize - all.as_ptr() as usize;
        start..start + part.len()
    }

    #[test]
    fn system_header_maps_group_to_class_guid_and_skips_extra_words() {
        let mut d = vec![0u8; 64];
        // Version 4 with one extra 8-byte header word (bit 0x0100).
        d[0..4].copy_from_slice(&0xc002_0104u32.to_le_bytes());
        d[4..6].copy_from_slice(&50u16.to_le_bytes());
        d[6] = 2; // End
        d[7] = 3; // Process group
        d[8..12].copy_from_slice(&7u32.to_le_bytes());
        d[12..16].copy_from_slice(&9u32.to_le_bytes());
        d[16..24].copy_from_slice(&1234u64.to_le_bytes());
        let r = record(parse(&d, 0));
        assert_eq!(r.place.kind, HeaderKind::System);
        assert_eq!(r.header.provider, PROCESS_GUID);
        assert_eq!((r.header.opcode, r.header.version), (2, 4));
        assert_eq!(
            (r.header.pid, r.header.tid, r.place.timestamp_raw),
            (Some(9), Some(7), 1234)
        );
        assert_eq!(r.header.pointer_size, PointerSize::Eight);
        assert_eq!(span(&d, r.payload), 40..50);
        assert_eq!(span(&d, r.extended), 32..40);
        assert_eq!(r.len, 56);
        // Opcode 10 of the process group is an image load.
        assert_ne!(group_guid(3, 10), PROCESS_GUID);
    }

    #[test]
    fn event_header_walks_linked_extended_items() {
        let mut d = vec![0u8; 80 + 16 + 24 + 6];
        let size = d.len() as u16;
        d[0..2].copy_from_slice(&size.to_le_bytes());
        d[2..4].copy_from_slice(&0xc013u16.to_le_bytes());
        d[4..6].copy_from_slice(&0x0041u16.to_le_bytes()); // extended info, 64-bit
        let guid = [
            0xd6, 0x2c, 0xfb, 0x22, 0x7b, 0x0e, 0x2b, 0x42, 0xa0, 0xc7, 0x2f, 0xad, 0x1f, 0xd0,
            0xe7, 0x16,
        ];
        d[24..40].copy_from_slice(&guid);
        d[40..42].copy_from_slice(&2u16.to_le_bytes());
        // Item 1: 16 bytes, linked to item 2 (24 bytes, last).
        d[80..82].copy_from_slice(&16u16.to_le_bytes());
        d[84..86].copy_from_slice(&1u16.to_le_bytes());
        d[96..98].copy_from_slice(&24u16.to_le_bytes());
        let r = record(parse(&d, 0));
        assert_eq!(r.header.provider, KERNEL_PROCESS_GUID);
        assert_eq!(r.header.event_id, 2);
        assert_eq!(span(&d, r.extended), 80..120);
        assert_eq!(span(&d, r.payload), 120..126);

        // An item that runs past the record is an error, not a panic.
        d[96..98].copy_from_slice(&400u16.to_le_bytes());
        assert_eq!(parse(&d, 0).unwrap_err(), RecordError::BadExtendedData);
    }

    #[test]
    fn a_record_cannot_read_into_the_next() {
        // An EVENT_HEADER record of 88 bytes whose one extended item claims
        // 16 bytes: 8 of them would be the next record's. The walk sees only
        // the record's own bytes.
        let mut d = vec![0u8; 88 + 16];
        d[0..2].copy_from_slice(&88u16.to_le_bytes());
        d[2..4].copy_from_slice(&0xc013u16.to_le_bytes());
        d[4..6].copy_from_slice(&0x0041u16.to_le_bytes());
        d[80..82].copy_from_slice(&16u16.to_le_bytes());
        assert_eq!(parse(&d, 0).unwrap_err(), RecordError::BadExtendedData);
        // With the item inside the record, the same bytes parse.
        d[80..82].copy_from_slice(&8u16.to_le_bytes());
        let r = record(parse(&d, 0));
        assert_eq!(
            (span(&d, r.extended), span(&d, r.payload)),
            (80..88, 88..88)
        );
    }

    #[test]
    fn padding_bad_markers_and_sizes() {
        assert!(matches!(parse(&[0xff; 16], 0), Ok(Parsed::End)));
        assert!(matches!(parse(&[1, 2], 0), Ok(Parsed::End)));
        assert_eq!(
            parse(&[0, 0, 0, 0x12, 0, 0, 0, 0], 0).unwrap_err(),
            RecordError::BadMarker(0x1200_0000)
        );
        let mut d = vec![0u8; 48];
        d[0..4].copy_from_slice(&0xc011_0002u32.to_le_bytes());
        d[4..6].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(
            parse(&d, 0).unwrap_err(),
            RecordError::BadSize { size: 8, min: 16 }
        );
        d[4..6].copy_from_slice(&100u16.to_le_bytes());
        assert_eq!(
            parse(&d, 0).unwrap_err(),
            RecordError::Truncated {
                need: 100,
                have: 48
            }
        );
    }
}

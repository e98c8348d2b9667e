//! One record inside a buffer: its header kind, identity, time and the byte
//! ranges of its payload and extended data. Works on the records region of
//! one (decompressed) buffer and returns ranges, not slices, so the reader
//! can keep its buffer mutable between events.

use std::ops::Range;

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
pub(crate) enum Parsed {
    /// The tail of the buffer is padding: no more records.
    End,
    /// A record of a kind we do not decode (WPP message, timed, error,
    /// WNODE): skipped. `len` is its aligned length.
    Skipped { len: usize },
    /// A record.
    Record(Record),
}

/// A decoded record header; ranges index the records region. The header's
/// time and the place's buffer and record indexes are left for the reader
/// to fill in.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub header: EventHeader,
    pub place: RecordPlace,
    pub payload: Range<usize>,
    pub extended: Range<usize>,
    /// Length including the padding to 8 bytes.
    pub len: usize,
}

/// EVENT_HEADER flags synthesized for headers that have none, as ETW does
/// when it hands such events to a consumer.
const FLAG_CLASSIC: u16 = 0x0100;

/// [`layout::GROUP_GUIDS`] indexed by group, built at compile time (a bad
/// index fails the build, never a run).
#[allow(clippy::indexing_slicing)]
const GUID_BY_GROUP: [Option<Guid>; 32] = {
    let mut table = [None; 32];
    let mut i = 0;
    while i < layout::GROUP_GUIDS.len() {
        let (group, guid) = layout::GROUP_GUIDS[i];
        table[group as usize] = Some(guid);
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
        .flatten()
        .unwrap_or(Guid::new(0, 0, 0, [0; 8]))
}

/// A place with the header facts; the reader fills in the indexes.
#[inline(always)]
fn place(
    kind: HeaderKind,
    header_type: u8,
    group: Option<u8>,
    raw_time: Option<u64>,
) -> RecordPlace {
    RecordPlace {
        kind,
        header_type,
        group,
        // The stored value is a signed 64-bit clock reading.
        timestamp_raw: raw_time.unwrap_or(0) as i64,
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

/// The size field at `size_at` (checked against the header's `min`) and
/// the record's own bytes: every read of the header stays inside them.
#[inline(always)]
fn record_bytes(
    rest: Cursor<'_>,
    size_at: usize,
    min: usize,
) -> Result<(usize, Cursor<'_>), RecordError> {
    let left = rest.remaining();
    let trunc = |need: usize| RecordError::Truncated { need, have: left };
    let size = usize::from(
        rest.u16_at(size_at)
            .ok_or(trunc(size_at.saturating_add(2)))?,
    );
    if size < min {
        return Err(RecordError::BadSize { size, min });
    }
    let record = { rest }.split(size).map_err(|_| trunc(size))?;
    Ok((size, record))
}

/// A record's length with its padding to 8 bytes, at most `left`.
#[inline(always)]
fn aligned_len(size: usize, left: usize) -> usize {
    size.checked_next_multiple_of(marker::ALIGN)
        .unwrap_or(size)
        .min(left)
}

/// Parses the record at `pos` of `region` (the records of one buffer).
/// Inlined into the reader's loop: the size-optimised release build would
/// otherwise return each record through memory.
#[inline(always)]
pub(crate) fn parse(region: &[u8], pos: usize) -> Result<Parsed, RecordError> {
    let rest = Cursor::new(region.get(pos..).unwrap_or(&[]));
    let Some(mark) = rest.u32_at(0) else {
        // Fewer than 4 bytes left: only padding can be that short.
        return Ok(Parsed::End);
    };
    if mark == marker::PADDING {
        return Ok(Parsed::End);
    }
    let top = (mark >> 24) as u8;
    let kind_byte = (mark >> 16) as u8;
    let (htype, is_message) = if top & marker::TRACE_HEADER == marker::TRACE_HEADER {
        (kind_byte, false)
    } else if top & marker::MESSAGE_MASK == marker::MESSAGE {
        (ht::MESSAGE, true)
    } else {
        return Err(RecordError::BadMarker(mark));
    };

    let left = rest.remaining();
    let trunc = |need: usize| RecordError::Truncated { need, have: left };
    let aligned = |size: usize| aligned_len(size, left);
    let abs = |r: Range<usize>| pos.saturating_add(r.start)..pos.saturating_add(r.end);
    let sized = |size_at: usize, min: usize| record_bytes(rest, size_at, min);

    if is_message {
        let (size, _) = sized(message::SIZE, message::LEN)?;
        return Ok(Parsed::Skipped { len: aligned(size) });
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
            let version_word = rest.u16_at(system::VERSION).unwrap_or(0);
            let mut extra = 0usize;
            if version_word & system::EXTRA_WORD != 0 {
                extra = 8;
            }
            let words = usize::from((version_word & system::EXTRA_WORDS_MASK) >> 8);
            extra = extra.saturating_add(words.saturating_mul(8));
            let header_len = base_len.saturating_add(extra);
            let (size, d) = sized(system::SIZE, header_len)?;
            let opcode = d.u8_at(system::OPCODE).unwrap_or(0);
            let group = d.u8_at(system::GROUP).unwrap_or(0);
            let (pid, tid, time_at) = if kind == HeaderKind::PerfInfo {
                (None, None, system::PERFINFO_TIME)
            } else {
                (
                    d.u32_at(system::PROCESS_ID),
                    d.u32_at(system::THREAD_ID),
                    system::TIME,
                )
            };
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
                place: place(kind, htype, Some(group), d.u64_at(time_at)),
                payload: abs(header_len..size),
                extended: abs(base_len..header_len),
                len: aligned(size),
            }))
        }
        ht::FULL32 | ht::FULL64 | ht::INSTANCE32 | ht::INSTANCE64 => {
            let (kind, header_len) = match htype {
                ht::FULL32 | ht::FULL64 => (HeaderKind::Classic, classic::LEN),
                _ => (HeaderKind::Instance, classic::INSTANCE_LEN),
            };
            let (size, d) = sized(classic::SIZE, header_len)?;
            let mut header = EventHeader::new(
                d.guid_at(classic::GUID).ok_or(trunc(classic::GUID + 16))?,
                d.u8_at(classic::OPCODE).unwrap_or(0),
                d.u16_at(classic::VERSION).unwrap_or(0),
                pointer,
            );
            header.level = d.u8_at(classic::LEVEL).unwrap_or(0);
            header.pid = d.u32_at(classic::PROCESS_ID);
            header.tid = d.u32_at(classic::THREAD_ID);
            header.flags = FLAG_CLASSIC | width_flag(pointer);
            Ok(Parsed::Record(Record {
                header,
                place: place(kind, htype, None, d.u64_at(classic::TIME)),
                payload: abs(header_len..size),
                extended: abs(header_len..header_len),
                len: aligned(size),
            }))
        }
        ht::EVENT32 | ht::EVENT64 => {
            let (size, d) = sized(event::SIZE, event::LEN)?;
            let flags = d.u16_at(event::FLAGS).unwrap_or(0);
            // The header's own width flags win over the header type.
            let pointer = PointerSize::from_header_flags(flags).unwrap_or(pointer);
            let mut data_start = event::LEN;
            if flags & event::FLAG_EXTENDED_INFO != 0 {
                data_start = extended_end(&d)?;
            }
            let mut header = EventHeader::new(
                d.guid_at(event::PROVIDER)
                    .ok_or(trunc(event::PROVIDER + 16))?,
                d.u8_at(event::OPCODE).unwrap_or(0),
                u16::from(d.u8_at(event::VERSION).unwrap_or(0)),
                pointer,
            );
            header.event_id = d.u16_at(event::ID).unwrap_or(0);
            header.level = d.u8_at(event::LEVEL).unwrap_or(0);
            header.task = d.u16_at(event::TASK).unwrap_or(0);
            header.keyword = d.u64_at(event::KEYWORD).unwrap_or(0);
            header.pid = d.u32_at(event::PROCESS_ID);
            header.tid = d.u32_at(event::THREAD_ID);
            header.flags = flags;
            Ok(Parsed::Record(Record {
                header,
                place: place(HeaderKind::Event, htype, None, d.u64_at(event::TIME)),
                payload: abs(data_start..size),
                extended: abs(event::LEN..data_start),
                len: aligned(size),
            }))
        }
        _ => {
            // Timed, error, WNODE and unknown types: all start with their size.
            let (size, _) = sized(0, 8)?;
            Ok(Parsed::Skipped { len: aligned(size) })
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

    fn record(parsed: Result<Parsed, RecordError>) -> Record {
        match parsed {
            Ok(Parsed::Record(r)) => r,
            other => panic!("{other:?}"),
        }
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
        assert_eq!(r.payload, 40..50);
        assert_eq!(r.extended, 32..40);
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
        assert_eq!(r.extended, 80..120);
        assert_eq!(r.payload, 120..126);

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
        assert_eq!((r.extended, r.payload), (80..88, 88..88));
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

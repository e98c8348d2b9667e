//! Offline reader of Windows `.etl` trace files (pure; runs on any OS).
//!
//! An `.etl` file is a chain of buffers. Each starts with a 72-byte
//! WMI_BUFFER_HEADER and holds records padded to 8 bytes; compressed
//! buffers (LZ77 Xpress) store their compressed size, so the chain is walked
//! header by header. The first record of the first buffer is the logfile
//! header: pointer size, clock, perf frequency and start time, which turn raw
//! record time stamps into UTC.
//!
//! [`EtlFile`] streams raw events buffer by buffer, each read in place from
//! the reader's own buffer when it holds it whole, else through one reused
//! buffer, so memory stays flat on multi-GB files. [`ProcessEvents`] sits on top and
//! turns the kernel Process events into lifecycle items and exit records
//! through the same decoder the real-time ETW backend uses.
//!
//! ```no_run
//! use procexit::etl::EtlFile;
//!
//! let mut file = EtlFile::open("trace.etl")?;
//! println!("{} CPUs, started {:?}", file.header().number_of_processors, file.header().start());
//! while let Some(event) = file.next_event()? {
//!     let h = &event.header;
//!     println!("{} opcode {} v{} {} bytes", h.provider, h.opcode, h.version, event.payload.len());
//! }
//! # Ok::<(), procexit::etl::EtlError>(())
//! ```
//!
//! Errors carry the file offset, buffer index and record index; a damaged
//! buffer is reported once and skipped, so events before (and after) the
//! damage are still returned.

#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod buffers;
mod file;
pub(crate) mod layout;
mod logfile;
mod process;
mod record;
pub(crate) mod xpress;

use std::fmt;

pub use file::{Batch, EtlFile, ReadStats};
pub use logfile::LogfileHeader;
pub use process::{
    read_process_events, LifecycleKind, PayloadError, ProcessEvents, ProcessItem, ProcessSummary,
};
pub use record::HeaderKind;

pub use crate::decode::mof_process::{Anomaly, ProcessPayload};
pub use crate::decode::view::{EventHeader, EventView};
pub use crate::decode::{
    DecodeError, DecodeErrorKind, Guid, PointerSize, KERNEL_PROCESS_GUID, PROCESS_GUID,
};

/// One record of a trace, borrowed from the reader's buffer: the same
/// [`EventView`] the real-time backend hands to the exit tracker, with
/// where the record was in the file.
pub type RawEvent<'a> = EventView<'a, RecordPlace>;

/// Where a record was in its trace file, and what its stored header said
/// beyond the [`EventHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordPlace {
    /// The record header it was stored with.
    pub kind: HeaderKind,
    /// The raw header type byte (0x01 … 0x15).
    pub header_type: u8,
    /// Kernel hook-id group, for system, compact and PerfInfo headers.
    pub group: Option<u8>,
    /// Time stamp as stored, in the session's clock (see
    /// [`LogfileHeader::clock_type`]); [`EventHeader::time`] has it as FILETIME.
    pub timestamp_raw: i64,
    /// Index of the buffer in the file.
    pub buffer_index: u64,
    /// Index of the record in its buffer.
    pub record_index: u64,
}

/// A failure to read a trace, with where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtlError {
    /// What went wrong.
    pub kind: EtlErrorKind,
    /// File offset: of the bad byte where it is known, else of the buffer.
    pub offset: u64,
    /// Index of the buffer.
    pub buffer: u64,
    /// Index of the record in the buffer, for record errors.
    pub record: Option<u64>,
    /// Offset inside the (decompressed) buffer, header included, for record errors.
    pub in_buffer: Option<usize>,
}

/// What went wrong while reading a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtlErrorKind {
    /// Reading the file failed.
    Io(std::io::ErrorKind),
    /// The file ends inside a buffer: `need` bytes were wanted, `have` read.
    Truncated {
        /// Bytes wanted.
        need: u64,
        /// Bytes there.
        have: u64,
    },
    /// The first record is not a logfile header: not an `.etl` file.
    NotEtl,
    /// A buffer header's size is impossible (below 72 bytes or above 1 MiB);
    /// the chain of buffers cannot be followed past it.
    BadBufferSize(u32),
    /// A buffer header's filled-bytes field is impossible.
    BadFilled(u32),
    /// A compressed buffer does not decompress.
    Decompress(xpress::XpressErrorKind),
    /// A compressed buffer decompressed to fewer bytes than it declares.
    ShortBuffer {
        /// Bytes declared.
        expected: usize,
        /// Bytes produced.
        got: usize,
    },
    /// A record does not start with a trace header marker.
    BadMarker(u32),
    /// A record's size field is below its header size.
    BadRecordSize {
        /// The size field.
        size: usize,
        /// The smallest valid size.
        min: usize,
    },
    /// A record runs past the end of its buffer.
    RecordTruncated {
        /// Bytes the record needs.
        need: usize,
        /// Bytes left in the buffer.
        have: usize,
    },
    /// Extended data items do not fit their record.
    BadExtendedData,
    /// The logfile header record does not decode.
    LogfileHeader(DecodeErrorKind),
}

impl fmt::Display for EtlErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtlErrorKind::Io(kind) => write!(f, "read failed: {kind}"),
            EtlErrorKind::Truncated { need, have } => {
                write!(f, "file truncated: buffer needs {need} bytes, {have} left")
            }
            EtlErrorKind::NotEtl => write!(f, "not an .etl file (no logfile header record)"),
            EtlErrorKind::BadBufferSize(n) => write!(f, "impossible buffer size {n}"),
            EtlErrorKind::BadFilled(n) => write!(f, "impossible buffer fill {n}"),
            EtlErrorKind::Decompress(kind) => write!(f, "compressed buffer is corrupt ({kind:?})"),
            EtlErrorKind::ShortBuffer { expected, got } => write!(
                f,
                "compressed buffer holds {got} bytes, its header declares {expected}"
            ),
            EtlErrorKind::BadMarker(m) => write!(f, "bad record marker {m:#010x}"),
            EtlErrorKind::BadRecordSize { size, min } => {
                write!(f, "record size {size} below its header size {min}")
            }
            EtlErrorKind::RecordTruncated { need, have } => {
                write!(
                    f,
                    "record of {need} bytes runs past the buffer ({have} left)"
                )
            }
            EtlErrorKind::BadExtendedData => write!(f, "extended data items overrun the record"),
            EtlErrorKind::LogfileHeader(kind) => write!(f, "bad logfile header ({kind:?})"),
        }
    }
}

impl fmt::Display for EtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at file offset {} (buffer {}",
            self.kind, self.offset, self.buffer
        )?;
        if let Some(record) = self.record {
            write!(f, ", record {record}")?;
        }
        if let Some(at) = self.in_buffer {
            write!(f, ", byte {at} of the buffer")?;
        }
        write!(f, ")")
    }
}

impl std::error::Error for EtlError {}

//! On-disk layouts of `.etl` files: offsets and constants only, no code.
//!
//! What each offset means and where it comes from: `docs/etl-file-format.md`
//! (buffers, compression, record headers, logfile header and clock) and
//! `docs/etw-process-events.md` §2.2 (structure layouts).

use crate::decode::Guid;

/// WMI_BUFFER_HEADER: 72 bytes, stored uncompressed in front of every buffer.
pub mod buffer {
    /// Size of the header.
    pub const LEN: usize = 72;
    /// u32: bytes the buffer takes on disk, header included. For compressed
    /// buffers this is the compressed size, so buffers are not at a fixed stride.
    pub const BUFFER_SIZE: usize = 0x00;
    /// u32: "SavedOffset"; 0 or too small in some real files, not relied on.
    pub const SAVED_OFFSET: usize = 0x04;
    /// u32: "Offset" / FilledBytes: end of the records, header included,
    /// in the uncompressed buffer.
    pub const FILLED: usize = 0x30;
    /// u16: buffer flags.
    pub const FLAGS: usize = 0x34;
    /// u16: buffer type.
    pub const TYPE: usize = 0x36;
    /// Buffer flag: the records are LZ77-Xpress compressed.
    pub const FLAG_COMPRESSED: u16 = 0x0040;
    /// Largest buffer ETW can make (BufferSize is at most 1 MiB in KB units);
    /// anything larger is corruption, and the cap bounds our allocation.
    pub const MAX_SIZE: usize = 1 << 20;
}

/// The 4-byte marker that opens every record.
pub mod marker {
    /// u32 value that fills the unused tail of a buffer.
    pub const PADDING: u32 = 0xffff_ffff;
    /// Top byte of a trace header marker: TRACE_HEADER_FLAG | EVENT_TRACE.
    pub const TRACE_HEADER: u8 = 0xc0;
    /// Top byte (masked with [`MESSAGE_MASK`]) of a WPP message record.
    pub const MESSAGE: u8 = 0x90;
    /// Mask applied to the top byte before comparing with [`MESSAGE`].
    pub const MESSAGE_MASK: u8 = 0xd0;
    /// Records are padded to this alignment.
    pub const ALIGN: usize = 8;
}

/// Header type byte (marker bits 16..24).
pub mod header_type {
    /// SYSTEM_TRACE_HEADER, 32-bit producer.
    pub const SYSTEM32: u8 = 0x01;
    /// SYSTEM_TRACE_HEADER, 64-bit producer.
    pub const SYSTEM64: u8 = 0x02;
    /// Compact system header, 32-bit.
    pub const COMPACT32: u8 = 0x03;
    /// Compact system header, 64-bit.
    pub const COMPACT64: u8 = 0x04;
    /// EVENT_TRACE_HEADER (classic, class GUID), 32-bit.
    pub const FULL32: u8 = 0x0a;
    /// EVENT_INSTANCE_GUID_HEADER, 32-bit.
    pub const INSTANCE32: u8 = 0x0b;
    /// Timed header.
    pub const TIMED: u8 = 0x0c;
    /// Error record.
    pub const ERROR: u8 = 0x0d;
    /// WNODE header.
    pub const WNODE: u8 = 0x0e;
    /// WPP message (identified by the marker's top byte, not this value).
    pub const MESSAGE: u8 = 0x0f;
    /// PERFINFO_TRACE_HEADER, 32-bit.
    pub const PERFINFO32: u8 = 0x10;
    /// PERFINFO_TRACE_HEADER, 64-bit.
    pub const PERFINFO64: u8 = 0x11;
    /// EVENT_HEADER (manifest / TraceLogging), 32-bit.
    pub const EVENT32: u8 = 0x12;
    /// EVENT_HEADER, 64-bit.
    pub const EVENT64: u8 = 0x13;
    /// EVENT_TRACE_HEADER, 64-bit.
    pub const FULL64: u8 = 0x14;
    /// EVENT_INSTANCE_GUID_HEADER, 64-bit.
    pub const INSTANCE64: u8 = 0x15;
}

/// System, compact and PerfInfo headers: `Version u16, HeaderType u8,
/// Flags u8, Size u16, HookId u16 (opcode low byte, group high byte)`, then
/// per kind.
pub mod system {
    /// u16 version; bits 0x8000 and 0x0700 announce extra 8-byte header words.
    pub const VERSION: usize = 0;
    /// u16 record size, header included.
    pub const SIZE: usize = 4;
    /// u8 opcode (low byte of the hook id).
    pub const OPCODE: usize = 6;
    /// u8 group (high byte of the hook id).
    pub const GROUP: usize = 7;
    /// u32 thread id (system and compact only).
    pub const THREAD_ID: usize = 8;
    /// u32 process id (system and compact only).
    pub const PROCESS_ID: usize = 12;
    /// i64 time stamp (system and compact).
    pub const TIME: usize = 16;
    /// i64 time stamp (PerfInfo).
    pub const PERFINFO_TIME: usize = 8;
    /// Header length: full system header (with kernel/user time).
    pub const SYSTEM_LEN: usize = 32;
    /// Header length: compact system header.
    pub const COMPACT_LEN: usize = 24;
    /// Header length: PerfInfo header.
    pub const PERFINFO_LEN: usize = 16;
    /// Version bit: one extra 8-byte word follows the header.
    pub const EXTRA_WORD: u16 = 0x8000;
    /// Version bits: this many extra 8-byte words (PMC counters) follow.
    pub const EXTRA_WORDS_MASK: u16 = 0x0700;
}

/// EVENT_TRACE_HEADER (classic) and EVENT_INSTANCE_GUID_HEADER: 48 / 72 bytes.
pub mod classic {
    /// u16 record size.
    pub const SIZE: usize = 0;
    /// u8 Class.Type: the opcode.
    pub const OPCODE: usize = 4;
    /// u8 Class.Level.
    pub const LEVEL: usize = 5;
    /// u16 Class.Version.
    pub const VERSION: usize = 6;
    /// u32 thread id.
    pub const THREAD_ID: usize = 8;
    /// u32 process id.
    pub const PROCESS_ID: usize = 12;
    /// i64 time stamp.
    pub const TIME: usize = 16;
    /// Class GUID.
    pub const GUID: usize = 24;
    /// Header length of EVENT_TRACE_HEADER.
    pub const LEN: usize = 48;
    /// Header length of EVENT_INSTANCE_GUID_HEADER.
    pub const INSTANCE_LEN: usize = 72;
}

/// EVENT_HEADER: 80 bytes.
pub mod event {
    /// u16 record size.
    pub const SIZE: usize = 0;
    /// u16 EVENT_HEADER_FLAG_*.
    pub const FLAGS: usize = 4;
    /// u32 thread id.
    pub const THREAD_ID: usize = 8;
    /// u32 process id.
    pub const PROCESS_ID: usize = 12;
    /// i64 time stamp.
    pub const TIME: usize = 16;
    /// Provider GUID.
    pub const PROVIDER: usize = 24;
    /// u16 event id.
    pub const ID: usize = 40;
    /// u8 version.
    pub const VERSION: usize = 42;
    /// u8 level.
    pub const LEVEL: usize = 44;
    /// u8 opcode.
    pub const OPCODE: usize = 45;
    /// u16 task.
    pub const TASK: usize = 46;
    /// u64 keyword.
    pub const KEYWORD: usize = 48;
    /// Header length.
    pub const LEN: usize = 80;
    /// EVENT_HEADER_FLAG_EXTENDED_INFO: extended data items precede the payload.
    pub const FLAG_EXTENDED_INFO: u16 = 0x0001;
    /// Extended item header: `u16 item size (8-aligned, header included),
    /// u16 type, u16 linkage (bit 0: another item follows), u16 data size`.
    pub const EXT_ITEM_LEN: usize = 8;
    /// Offset of the linkage word in an extended item header.
    pub const EXT_LINKAGE: usize = 4;
    /// Linkage bit: another extended item follows this one.
    pub const EXT_LINKAGE_MORE: u16 = 0x0001;
}

/// WPP message header: `u16 size, u16 marker, u16 id, u16 properties`.
pub mod message {
    /// u16 record size.
    pub const SIZE: usize = 0;
    /// Header length.
    pub const LEN: usize = 8;
}

/// TRACE_LOGFILE_HEADER, the payload of the first record of buffer 0.
/// Offsets after `LoggerName` depend on the record header's pointer width.
pub mod logfile {
    /// u32 session buffer size.
    pub const BUFFER_SIZE: usize = 0;
    /// u8 ×4: major, minor, sub, subminor OS version.
    pub const VERSION: usize = 4;
    /// u32 OS build number.
    pub const PROVIDER_VERSION: usize = 8;
    /// u32 number of processors.
    pub const NUMBER_OF_PROCESSORS: usize = 12;
    /// i64 FILETIME of the end of the session.
    pub const END_TIME: usize = 16;
    /// u32 timer resolution (100 ns units).
    pub const TIMER_RESOLUTION: usize = 24;
    /// u32 maximum file size (MB).
    pub const MAXIMUM_FILE_SIZE: usize = 28;
    /// u32 EVENT_TRACE_*_MODE flags.
    pub const LOG_FILE_MODE: usize = 32;
    /// u32 buffers written.
    pub const BUFFERS_WRITTEN: usize = 36;
    /// u32 pointer size of the producer.
    pub const POINTER_SIZE: usize = 44;
    /// u32 events lost.
    pub const EVENTS_LOST: usize = 48;
    /// u32 CPU speed in MHz.
    pub const CPU_SPEED: usize = 52;
    /// Start of `LoggerName`, `LogFileName` (pointers) and what follows.
    pub const POINTERS: usize = 56;
    /// TIME_ZONE_INFORMATION (172 bytes) plus 4 bytes of padding.
    pub const TIME_ZONE_AND_PAD: usize = 176;
    /// From `BootTime`: i64 BootTime, i64 PerfFreq, i64 StartTime,
    /// u32 ReservedFlags (clock type), u32 BuffersLost.
    pub const TAIL_LEN: usize = 32;
    /// LogFileMode bit: buffers are compressed.
    pub const MODE_COMPRESSED: u32 = 0x0400_0000;
}

/// Kernel hook-id groups whose events carry a class GUID: group byte → GUID.
/// Values from the SDK's `evntrace.h` GUID definitions; the group numbers
/// are the `EVENT_TRACE_GROUP_*` constants.
pub const GROUP_GUIDS: [(u8, Guid); 28] = [
    (
        0x00,
        g(
            0x68fd_d900,
            0x4a3e,
            0x11d1,
            [0x84, 0xf4, 0x00, 0x00, 0xf8, 0x04, 0x64, 0xe3],
        ),
    ),
    (
        0x01,
        g(
            0x3d6f_a8d4,
            0xfe05,
            0x11d0,
            [0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c],
        ),
    ),
    (
        0x02,
        g(
            0x3d6f_a8d3,
            0xfe05,
            0x11d0,
            [0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c],
        ),
    ),
    (
        0x03,
        g(
            0x3d6f_a8d0,
            0xfe05,
            0x11d0,
            [0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c],
        ),
    ),
    (
        0x04,
        g(
            0x90cb_dc39,
            0x4a3e,
            0x11d1,
            [0x84, 0xf4, 0x00, 0x00, 0xf8, 0x04, 0x64, 0xe3],
        ),
    ),
    (
        0x05,
        g(
            0x3d6f_a8d1,
            0xfe05,
            0x11d0,
            [0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c],
        ),
    ),
    (
        0x06,
        g(
            0x9a28_0ac0,
            0xc8e0,
            0x11d1,
            [0x84, 0xe2, 0x00, 0xc0, 0x4f, 0xb9, 0x98, 0xa2],
        ),
    ),
    (
        0x07,
        g(
            0x3282_fc76,
            0xfeed,
            0x498e,
            [0x8a, 0xa7, 0xe7, 0x0f, 0x45, 0x9d, 0x43, 0x0e],
        ),
    ),
    (
        0x08,
        g(
            0xbf3a_50c5,
            0xa9c9,
            0x4988,
            [0xa0, 0x05, 0x2d, 0xf0, 0xb7, 0xc8, 0x0f, 0x80],
        ),
    ),
    (
        0x09,
        g(
            0xae53_722e,
            0xc863,
            0x11d2,
            [0x86, 0x59, 0x00, 0xc0, 0x4f, 0xa3, 0x21, 0xa1],
        ),
    ),
    (
        0x0a,
        g(
            0x1397_6d09,
            0xa327,
            0x438c,
            [0x95, 0x0b, 0x7f, 0x03, 0x19, 0x28, 0x15, 0xc7],
        ),
    ),
    (
        0x0b,
        g(
            0x0185_3a65,
            0x418f,
            0x4f36,
            [0xae, 0xfc, 0xdc, 0x0f, 0x1d, 0x2f, 0xd2, 0x35],
        ),
    ),
    (
        0x0d,
        g(
            0x4269_5762,
            0xea50,
            0x497a,
            [0x90, 0x68, 0x5c, 0xbb, 0xb3, 0x5e, 0x0b, 0x95],
        ),
    ),
    (
        0x0e,
        g(
            0x0268_a8b6,
            0x74fd,
            0x4302,
            [0x9d, 0xd0, 0x6e, 0x8f, 0x17, 0x95, 0xc0, 0xcf],
        ),
    ),
    (
        0x0f,
        g(
            0xce1d_bfb4,
            0x137e,
            0x4da6,
            [0x87, 0xb0, 0x3f, 0x59, 0xaa, 0x10, 0x2c, 0xbc],
        ),
    ),
    (
        0x10,
        g(
            0x2229_62ab,
            0x6180,
            0x4b88,
            [0xa8, 0x25, 0x34, 0x6b, 0x75, 0xf2, 0xa2, 0x4a],
        ),
    ),
    (
        0x11,
        g(
            0x8949_7f50,
            0xeffe,
            0x4440,
            [0x8c, 0xf2, 0xce, 0x6b, 0x1c, 0xdc, 0xac, 0xa7],
        ),
    ),
    (
        0x12,
        g(
            0xe434_45e0,
            0x0903,
            0x48c3,
            [0xb8, 0x78, 0xff, 0x0f, 0xcc, 0xeb, 0xdd, 0x04],
        ),
    ),
    (
        0x13,
        g(
            0xa915_2f00,
            0x3f58,
            0x4bee,
            [0x92, 0xa1, 0x70, 0xc7, 0xd0, 0x79, 0xd5, 0xdd],
        ),
    ),
    (
        0x14,
        g(
            0x2cb1_5d1d,
            0x5fc1,
            0x11d2,
            [0xab, 0xe1, 0x00, 0xa0, 0xc9, 0x11, 0xf5, 0x18],
        ),
    ),
    (
        0x15,
        g(
            0xb2d1_4872,
            0x7c5b,
            0x463d,
            [0x84, 0x19, 0xee, 0x9b, 0xf7, 0xd2, 0x3e, 0x04],
        ),
    ),
    (
        0x16,
        g(
            0x7687_a439,
            0xf752,
            0x45b8,
            [0xb7, 0x41, 0x32, 0x1a, 0xec, 0x0f, 0x8d, 0xf9],
        ),
    ),
    (
        0x17,
        g(
            0x3ac6_6736,
            0xcc59,
            0x4cff,
            [0x81, 0x15, 0x8d, 0xf5, 0x0e, 0x39, 0x81, 0x6b],
        ),
    ),
    (
        0x18,
        g(
            0xdef2_fe46,
            0x7bd6,
            0x4b80,
            [0xbd, 0x94, 0xf5, 0x7f, 0xe2, 0x0d, 0x0c, 0xe3],
        ),
    ),
    (
        0x1a,
        g(
            0x45d8_cccd,
            0x539f,
            0x4b72,
            [0xa8, 0x8e, 0x5c, 0x68, 0x31, 0x42, 0x60, 0x9a],
        ),
    ),
    (
        0x1b,
        g(
            0xd837_ca92,
            0x12b9,
            0x44a5,
            [0xad, 0x6a, 0x3a, 0x65, 0xb3, 0x57, 0x8a, 0xa8],
        ),
    ),
    (
        0x1c,
        g(
            0xc861_d0e2,
            0xa2c1,
            0x4d36,
            [0x9f, 0x9c, 0x97, 0x0b, 0xab, 0x94, 0x3a, 0x12],
        ),
    ),
    (
        0x19,
        g(
            0x9aec_974b,
            0x5b8e,
            0x4118,
            [0x9b, 0x92, 0x31, 0x86, 0xd8, 0x00, 0x2c, 0xe5],
        ),
    ),
];

/// Kernel group of the process events; opcode 10 in it is an image load.
pub const GROUP_PROCESS: u8 = 0x03;
/// Group whose GUID image-load events carry.
pub const GROUP_IMAGE: u8 = 0x14;
/// Opcode of the legacy image-load event in the process group.
pub const OPCODE_PROCESS_IMAGE_LOAD: u8 = 10;

const fn g(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
    Guid::new(d1, d2, d3, d4)
}

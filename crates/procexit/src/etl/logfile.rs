//! The logfile header (the first record of a trace) and its clock: how raw
//! record time stamps become UTC (docs/etl-file-format.md §4).

use std::time::SystemTime;

use super::layout::logfile;
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
        Clock::new(self).filetime(raw)
    }

    /// Reads the header record's payload; `raw_time` is the record's time stamp.
    pub(super) fn parse(
        payload: &[u8],
        pointer: PointerSize,
        raw_time: i64,
    ) -> Result<Self, DecodeError> {
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
        // A name without its NUL (a damaged header) is left empty.
        let logger_name = c.utf16_z().unwrap_or_default();
        let log_file_name = c.utf16_z().unwrap_or_default();
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

/// The clock of [`LogfileHeader::filetime`] with the header's fields
/// looked up once, for the reader's per-record use.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// Ticks per second; `None` for an unknown clock or a zero frequency.
    ticks_per_sec: Option<i128>,
    header_timestamp: i64,
    start_time: u64,
    /// For a 100 ns clock (every recent Windows' QPC), `start_time -
    /// header_timestamp` when it fits: a record's FILETIME is then its raw
    /// time plus this, one 64-bit addition.
    offset_100ns: Option<i64>,
}

impl Clock {
    /// No clock (before the header is read).
    pub(super) const UNKNOWN: Clock = Clock {
        ticks_per_sec: None,
        header_timestamp: 0,
        start_time: 0,
        offset_100ns: None,
    };

    pub(super) fn new(header: &LogfileHeader) -> Clock {
        let ticks_per_sec: Option<i128> = match header.clock_type {
            1 => Some(i128::from(header.perf_freq)),
            2 => Some(10_000_000),
            3 => i128::from(header.cpu_speed_mhz).checked_mul(1_000_000),
            _ => None,
        };
        let ticks_per_sec = ticks_per_sec.filter(|&t| t > 0);
        let offset_100ns = if ticks_per_sec == Some(10_000_000) {
            i64::try_from(header.start_time)
                .ok()
                .and_then(|start| start.checked_sub(header.header_timestamp))
        } else {
            None
        };
        Clock {
            ticks_per_sec,
            header_timestamp: header.header_timestamp,
            start_time: header.start_time,
            offset_100ns,
        }
    }

    /// See [`LogfileHeader::filetime`].
    #[inline(always)]
    pub(super) fn filetime(&self, raw: i64) -> Option<u64> {
        // With no overflow in 64 bits, the same sum as the general case.
        if let Some(ft) = self.offset_100ns.and_then(|offset| raw.checked_add(offset)) {
            return u64::try_from(ft).ok();
        }
        self.filetime_scaled(raw)
    }

    /// [`filetime`](Self::filetime) in the general case.
    #[inline(never)]
    fn filetime_scaled(&self, raw: i64) -> Option<u64> {
        let ticks_per_sec = self.ticks_per_sec?;
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
}

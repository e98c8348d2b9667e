//! The `EVENT_TRACE_PROPERTIES` buffer, the session GUID derived from the
//! session name, and the buffer-size defaults. No `unsafe`: the buffer is a
//! `#[repr(C)]` struct with the name areas right after the properties.

use windows_sys::Win32::System::Diagnostics::Etw::{
    EVENT_TRACE_PROPERTIES, WNODE_FLAG_TRACED_GUID,
};

use super::ffi::win_guid;
use crate::decode::Guid;

/// Longest session name accepted, in UTF-16 units. ETW documents 1024 but
/// names much past ~240 fail without an error.
pub(crate) const MAX_NAME_UNITS: usize = 200;

/// Room for each name ETW may write back on QUERY/STOP (1024 WCHARs, the
/// documented maximum; a small buffer gives ERROR_MORE_DATA).
const NAME_AREA: usize = 1024;

/// `EVENT_TRACE_PROPERTIES` followed by the logger-name and log-file-name
/// areas, as one allocation whose size goes into `Wnode.BufferSize`.
#[repr(C)]
pub(crate) struct PropertiesBuf {
    pub(crate) props: EVENT_TRACE_PROPERTIES,
    logger_name: [u16; NAME_AREA],
    log_file_name: [u16; NAME_AREA],
}

/// What a session is asked to be at StartTraceW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionConfig {
    pub(crate) guid: Guid,
    pub(crate) log_file_mode: u32,
    pub(crate) enable_flags: u32,
    pub(crate) buffer_size_kb: u32,
    pub(crate) min_buffers: u32,
    pub(crate) max_buffers: u32,
}

impl PropertiesBuf {
    /// A zeroed buffer with the header fields every call needs; good as is
    /// for QUERY, FLUSH and STOP.
    pub(crate) fn control() -> Box<PropertiesBuf> {
        let mut buf = Box::new(PropertiesBuf {
            props: EVENT_TRACE_PROPERTIES::default(),
            logger_name: [0; NAME_AREA],
            log_file_name: [0; NAME_AREA],
        });
        buf.props.Wnode.BufferSize = std::mem::size_of::<PropertiesBuf>() as u32;
        buf.props.Wnode.Flags = WNODE_FLAG_TRACED_GUID;
        buf.props.LoggerNameOffset = std::mem::offset_of!(PropertiesBuf, logger_name) as u32;
        buf.props.LogFileNameOffset = std::mem::offset_of!(PropertiesBuf, log_file_name) as u32;
        buf
    }

    /// The buffer for StartTraceW: real-time only (no log file), QPC clock,
    /// FlushTimer 1 s as a backstop for the flush thread.
    pub(crate) fn start(config: &SessionConfig) -> Box<PropertiesBuf> {
        let mut buf = Self::control();
        let p = &mut buf.props;
        p.Wnode.Guid = win_guid(&config.guid);
        p.Wnode.ClientContext = 1;
        p.LogFileNameOffset = 0;
        p.LogFileMode = config.log_file_mode;
        p.EnableFlags = config.enable_flags;
        p.BufferSize = config.buffer_size_kb;
        p.MinimumBuffers = config.min_buffers;
        p.MaximumBuffers = config.max_buffers;
        p.FlushTimer = 1;
        buf
    }

    /// Raw pointer for the Win32 call; the buffer outlives the call.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut EVENT_TRACE_PROPERTIES {
        &mut self.props
    }

    /// The loss counters ETW filled in (QUERY and STOP).
    pub(crate) fn counters(&self) -> LossCounters {
        LossCounters {
            events_lost: self.props.EventsLost,
            realtime_buffers_lost: self.props.RealTimeBuffersLost,
        }
    }
}

/// Cumulative loss counters of a session (`ControlTraceW(QUERY)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LossCounters {
    pub(crate) events_lost: u32,
    pub(crate) realtime_buffers_lost: u32,
}

/// Buffer counts for `cpus` processors, when the caller set none.
///
/// The minimum is what ETW allocates up front, from non-paged memory, for
/// as long as the session runs: 2 buffers per processor, the least ETW
/// accepts (a smaller value is raised to it), and at least 8. With a flush
/// every timer tick a buffer rarely holds more than a tick's events, so
/// the pool only grows (on demand, up to the maximum) in a burst. The
/// maximum, max(256, 16·CPU) buffers, absorbs a fork burst while the
/// consumer catches up: too small a pool loses events (a Rust tool that
/// kept ETW's small defaults lost 42 % of process events in a burst).
/// Memory per CPU count: docs/windows-sessions.md.
pub(crate) fn default_buffers(cpus: u32) -> (u32, u32) {
    let min = cpus.saturating_mul(2).clamp(8, 1024);
    let max = cpus.saturating_mul(16).clamp(256, 4096).max(min);
    (min, max)
}

/// A GUID derived from the session name alone, so one name always gets the
/// same GUID (two instances collide on purpose and the next run reclaims a
/// leftover) and two names never share one. ETW compares session names
/// without regard to case, so the name is case-folded first. The bits are
/// marked as an RFC 9562 version 8 ("custom") GUID.
pub(crate) fn session_guid(name: &str) -> Guid {
    const NAMESPACE: &[u8] = b"procexit.etw-session.v1\0";
    let folded = name.to_uppercase();
    let bytes = NAMESPACE
        .iter()
        .copied()
        .chain(folded.encode_utf16().flat_map(u16::to_le_bytes));
    // Two independent 64-bit FNV-1a lanes, each finished with a
    // SplitMix64 mix so every input bit reaches every output bit.
    let (mut a, mut b) = (0xcbf2_9ce4_8422_2325_u64, 0x6c62_272e_07bb_0142_u64);
    for byte in bytes {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        b = (b ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5);
    }
    let hi = mix(a ^ b.rotate_left(32));
    let lo = mix(b ^ hi);
    let mut value = (u128::from(hi) << 64) | u128::from(lo);
    // Version 8 in bits 76..80, variant 0b10 in bits 62..64.
    value = (value & !(0xf << 76)) | (0x8 << 76);
    value = (value & !(0x3 << 62)) | (0x2 << 62);
    Guid::new(
        (value >> 96) as u32,
        (value >> 80) as u16,
        (value >> 64) as u16,
        (value as u64).to_be_bytes(),
    )
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use windows_sys::Win32::System::Diagnostics::Etw::SystemTraceControlGuid;

    #[test]
    fn start_buffer_layout() {
        let config = SessionConfig {
            guid: session_guid("procexit"),
            log_file_mode: 0x0200_0100,
            enable_flags: 0x1000_0001,
            buffer_size_kb: 64,
            min_buffers: 32,
            max_buffers: 256,
        };
        let buf = PropertiesBuf::start(&config);
        let p = &buf.props;
        // The name follows the 120-byte properties directly (docs/etw-process-events.md §2.6).
        assert_eq!(p.LoggerNameOffset, 120);
        assert_eq!(
            p.LoggerNameOffset as usize,
            size_of::<EVENT_TRACE_PROPERTIES>()
        );
        assert_eq!(p.LogFileNameOffset, 0);
        assert_eq!(p.Wnode.BufferSize as usize, 120 + 2 * 2 * NAME_AREA);
        assert_eq!(p.Wnode.Flags, 0x0002_0000);
        assert_eq!(p.Wnode.ClientContext, 1);
        assert_eq!(p.Wnode.Guid.data1, config.guid.data1);
        assert_eq!(p.Wnode.Guid.data4, config.guid.data4);
        assert_eq!((p.LogFileMode, p.EnableFlags), (0x0200_0100, 0x1000_0001));
        assert_eq!(
            (p.BufferSize, p.MinimumBuffers, p.MaximumBuffers),
            (64, 32, 256)
        );
        assert_eq!(p.FlushTimer, 1);
        let control = PropertiesBuf::control();
        assert_eq!(
            control.props.LogFileNameOffset as usize,
            offset_of!(PropertiesBuf, log_file_name)
        );
        assert_eq!(control.props.LogFileNameOffset, 120 + 2048);
    }

    #[test]
    fn guid_from_name_is_deterministic_and_distinct() {
        let g = session_guid("procexit");
        assert_eq!(g, session_guid("procexit"));
        assert_eq!(g, session_guid("ProcExit"));
        assert_ne!(g, session_guid("procexit2"));
        assert_ne!(g, session_guid(""));
        // Never the GUID reserved for the NT Kernel Logger.
        let sys = SystemTraceControlGuid;
        assert_ne!(g, Guid::new(sys.data1, sys.data2, sys.data3, sys.data4));
        assert_eq!(g.data3 >> 12, 8, "version 8");
        assert_eq!(g.data4[0] >> 6, 0b10, "RFC variant");
        // Pinned: a change would orphan sessions left by older builds.
        assert_eq!(g.to_string(), PINNED);
    }

    const PINNED: &str = "b5b55073-af86-85fd-a4f9-71fb9a186646";

    #[test]
    fn buffer_defaults_scale_with_cpus() {
        assert_eq!(default_buffers(1), (8, 256));
        assert_eq!(default_buffers(8), (16, 256));
        assert_eq!(default_buffers(64), (128, 1024));
        assert_eq!(default_buffers(128), (256, 2048));
        assert_eq!(default_buffers(4096), (1024, 4096));
        // Up front at 64 KiB: 16 MiB on a 128-CPU machine (it was 32), at
        // most 2 per CPU plus the floor.
        for cpus in [1u32, 4, 16, 64, 128, 640] {
            let (min, max) = default_buffers(cpus);
            assert!(min <= (2 * cpus).max(8), "{cpus}: {min}");
            assert!(min >= 2 * cpus.min(512), "below ETW's floor at {cpus}");
            assert!(max >= min && max >= 256);
        }
    }

    #[test]
    fn the_default_flush_keeps_the_latency_goal() {
        // The wait is rounded up to the timer tick; an exit then waits at
        // most one rounded interval for its buffer (p95 goal: 25 ms from
        // exit to line, with room for delivery and printing).
        const TICK_US: u128 = 15_625;
        let interval = crate::config::DEFAULT_FLUSH_INTERVAL.as_micros();
        let rounded = interval.div_ceil(TICK_US) * TICK_US;
        assert!(rounded <= 20_000, "{rounded} us");
        assert_eq!(
            crate::config::WindowsOptions::new().flush_interval_duration(),
            crate::config::DEFAULT_FLUSH_INTERVAL
        );
    }
}

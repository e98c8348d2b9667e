//! One ETW event as the decoders and the exit tracker see it, the same
//! whether ETW's real-time callback or a `.etl` trace file delivered it.

use std::time::SystemTime;

use super::{Guid, PointerSize};

/// The header fields of one ETW event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventHeader {
    /// Provider or event-class GUID. Kernel events carry their class GUID
    /// (Process, Thread …), not the session's.
    pub provider: Guid,
    /// Opcode (event type of classic events).
    pub opcode: u8,
    /// Event or MOF class version.
    pub version: u16,
    /// Event id (manifest providers; 0 for classic events).
    pub event_id: u16,
    /// Level.
    pub level: u8,
    /// Task (manifest providers).
    pub task: u16,
    /// Keyword (manifest providers).
    pub keyword: u64,
    /// Process id of the logging context (not necessarily the process the
    /// event is about); `None` where the header has none.
    pub pid: Option<u32>,
    /// Thread id of the logging context; `None` where the header has none.
    pub tid: Option<u32>,
    /// Event time as FILETIME (100 ns since 1601, UTC), when known.
    pub time: Option<u64>,
    /// Width of pointer-sized payload fields: the producer's, from the
    /// header's 32/64-bit flag.
    pub pointer_size: PointerSize,
    /// `EVENT_HEADER_FLAG_*` bits (for headers without flags, the classic
    /// flag plus the width flag, as ETW reports them).
    pub flags: u16,
}

impl EventHeader {
    /// A header with the identity fields set and the rest empty.
    pub(crate) fn new(provider: Guid, opcode: u8, version: u16, pointer_size: PointerSize) -> Self {
        EventHeader {
            provider,
            opcode,
            version,
            event_id: 0,
            level: 0,
            task: 0,
            keyword: 0,
            pid: None,
            tid: None,
            time: None,
            pointer_size,
            flags: 0,
        }
    }

    /// The event time in UTC.
    pub fn time(&self) -> Option<SystemTime> {
        self.time.and_then(crate::system_time_from_filetime)
    }
}

/// One event borrowed from where it was delivered: its header, its user
/// data, and `place`, what the source knows about where it was (for a trace
/// file, [`RecordPlace`](crate::etl::RecordPlace); nothing in real time).
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a, P = ()> {
    /// The header.
    pub header: EventHeader,
    /// The user data.
    pub payload: &'a [u8],
    /// Extended data items as a trace file stores them (stack traces, SIDs…
    /// of `EVENT_HEADER` records, or extra words of kernel headers); empty in
    /// real time, where ETW hands them over as pointers.
    pub extended: &'a [u8],
    /// Where the event was found.
    pub place: P,
}

impl<P> EventView<'_, P> {
    /// The event time in UTC.
    pub fn time(&self) -> Option<SystemTime> {
        self.header.time()
    }
}

//! The ETW event callback: EVENT_RECORD → (provider, opcode, version,
//! pointer size, timestamp, payload) → the exit tracker → the sink.
//!
//! It runs on the ProcessTrace thread for every event, so it does the
//! minimum, never blocks (the tracker lock is only ever taken by that one
//! thread) and never lets a panic unwind into ETW.

#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use windows_sys::core::GUID;
use windows_sys::Win32::System::Diagnostics::Etw::EVENT_RECORD;

use crate::decode::{Guid, PointerSize, KERNEL_PROCESS_GUID, LOST_EVENT_GUID, PROCESS_GUID};
use crate::event::Source;
use crate::merge::etw::{filetime_of, EtwExitTracker};
use crate::queue::Sink;

#[cfg(test)]
use super::tests;

/// What the callback needs; shared by the consumer thread (through ETW's
/// `UserContext` pointer) and the control thread. Freed only after
/// ProcessTrace has returned and CloseTrace ran.
pub(crate) struct Context {
    tracker: Mutex<TrackerState>,
    sink: Sink,
    /// Callbacks that panicked (each also counted as an anomaly).
    pub(crate) panics: AtomicU64,
    /// Events the callback received.
    pub(crate) events: AtomicU64,
}

struct TrackerState {
    tracker: EtwExitTracker,
    anomalies_reported: u64,
    evicted_reported: u64,
}

/// One event, copied out of the EVENT_RECORD.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub(crate) provider: Guid,
    pub(crate) id: u16,
    pub(crate) opcode: u8,
    pub(crate) version: u8,
    pub(crate) header_flags: u16,
    /// FILETIME (no PROCESS_TRACE_MODE_RAW_TIMESTAMP is set).
    pub(crate) timestamp: i64,
    pub(crate) payload: &'a [u8],
}

impl Context {
    pub(crate) fn new(sink: Sink, source: Source) -> Context {
        // The observed window starts now, before the session does: a Defunct
        // rundown of a process that ended earlier is not an exit.
        let window_start = filetime_of(std::time::SystemTime::now());
        Context {
            tracker: Mutex::new(TrackerState {
                tracker: EtwExitTracker::new(source, Some(window_start)),
                anomalies_reported: 0,
                evicted_reported: 0,
            }),
            sink,
            panics: AtomicU64::new(0),
            events: AtomicU64::new(0),
        }
    }

    /// Routes one event. Decode errors are counted, never fatal.
    pub(crate) fn dispatch(&self, record: &Record<'_>) {
        self.events.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        if record.provider == tests::PANIC_PROVIDER {
            panic!("test: a panicking callback");
        }
        let timestamp = u64::try_from(record.timestamp).ok().filter(|&t| t > 0);
        if record.provider == PROCESS_GUID {
            let pointer =
                PointerSize::from_header_flags(record.header_flags).unwrap_or_else(|| {
                    // Kernel events always carry a width flag; without one,
                    // assume the OS's width and say so.
                    self.sink.anomaly();
                    native_pointer_size()
                });
            self.with_tracker(|t| {
                t.on_process_event(
                    record.opcode,
                    record.version,
                    pointer,
                    timestamp,
                    record.payload,
                )
            });
        } else if record.provider == KERNEL_PROCESS_GUID {
            self.with_tracker(|t| {
                t.on_kernel_process_event(record.id, record.version, timestamp, record.payload, ())
                    .map(|()| None)
            });
        } else if record.provider == LOST_EVENT_GUID {
            // Where a gap is, never how big: the polled session counters
            // are the one count of loss (see `supervise::report_loss`), so
            // a marker can neither double-count nor hide later loss.
            // Any kind (events 32, buffers 33, file 34) is a gap.
            self.sink.gap();
        }
        // Anything else (EventTrace header, config events) is skipped.
    }

    fn with_tracker<F>(&self, f: F)
    where
        F: FnOnce(
            &mut EtwExitTracker,
        ) -> Result<Option<crate::event::ProcessExit>, crate::decode::DecodeError>,
    {
        // Only the ProcessTrace thread locks this, so it never waits; a
        // panic inside left the tracker consistent enough to go on.
        let mut state = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        match f(&mut state.tracker) {
            Ok(Some(exit)) => self.sink.exit(exit),
            Ok(None) => {}
            Err(_) => self.sink.anomaly(),
        }
        // Kernel-Process stops the tracker decided (a live session carries
        // one provider, so they come at once).
        for (exit, ()) in state.tracker.take_released() {
            if let Some(exit) = exit {
                self.sink.exit(exit);
            }
        }
        let total = state.tracker.anomalies();
        for _ in state.anomalies_reported..total {
            self.sink.anomaly();
        }
        state.anomalies_reported = total;
        let evicted = state.tracker.evicted();
        self.sink
            .evicted(evicted.saturating_sub(state.evicted_reported));
        state.evicted_reported = evicted;
    }
}

fn native_pointer_size() -> PointerSize {
    // A 32-bit consumer may run on a 64-bit kernel; the flags decide when
    // present, this is only the last resort.
    if cfg!(target_pointer_width = "64") {
        PointerSize::Eight
    } else {
        PointerSize::Four
    }
}

fn guid(g: &GUID) -> Guid {
    Guid::new(g.data1, g.data2, g.data3, g.data4)
}

/// Reads the fields the tracker needs out of an EVENT_RECORD.
///
/// # Safety
/// `record.UserData` must point to `record.UserDataLength` readable bytes
/// (or be null), valid for `'a`, as ETW guarantees during the callback.
pub(crate) unsafe fn record_view<'a>(record: &'a EVENT_RECORD) -> Record<'a> {
    let header = &record.EventHeader;
    let d = &header.EventDescriptor;
    let len = usize::from(record.UserDataLength);
    let payload = if record.UserData.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller guarantees UserData/UserDataLength describe
        // readable memory for 'a; u8 has no alignment requirement.
        unsafe { std::slice::from_raw_parts(record.UserData.cast::<u8>(), len) }
    };
    Record {
        provider: guid(&header.ProviderId),
        id: d.Id,
        opcode: d.Opcode,
        version: d.Version,
        header_flags: header.Flags,
        timestamp: header.TimeStamp,
        payload,
    }
}

/// The `EventRecordCallback` given to OpenTraceW. `UserContext` is the
/// `Context` pointer from `EVENT_TRACE_LOGFILEW.Context`.
pub(crate) unsafe extern "system" fn on_event(record: *mut EVENT_RECORD) {
    // SAFETY: ETW passes a valid record for the duration of the call (or
    // null, checked); the reference does not outlive this call.
    let Some(record) = (unsafe { record.as_ref() }) else {
        return;
    };
    let context = record.UserContext.cast::<Context>().cast_const();
    // SAFETY: UserContext is the Arc<Context> pointer set at OpenTraceW; the
    // consumer thread holds that Arc until ProcessTrace returned and the
    // trace was closed, so it is alive whenever ETW calls back.
    let Some(context) = (unsafe { context.as_ref() }) else {
        return;
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ETW guarantees UserData/UserDataLength for this call.
        let view = unsafe { record_view(record) };
        context.dispatch(&view);
    }));
    if outcome.is_err() {
        context.panics.fetch_add(1, Ordering::Relaxed);
        context.sink.anomaly();
    }
}

//! The ETW event callback: EVENT_RECORD → the shared [`EventView`] → the
//! one routing of `merge::etw` → the exit tracker → the sink.
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

use crate::decode::mof_process::ProcessPayloadRef;
use crate::decode::view::{EventHeader, EventView};
use crate::decode::{Guid, PointerSize};
use crate::event::Source;
use crate::merge::etw::{decode_process_view, filetime_of, route, EtwExitTracker, Route};
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
    pub(crate) fn dispatch(&self, view: &EventView<'_>) {
        self.events.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        if view.header.provider == tests::PANIC_PROVIDER {
            panic!("test: a panicking callback");
        }
        let time = view.header.time;
        match route(&view.header) {
            Route::Process(op) => {
                if PointerSize::from_header_flags(view.header.flags).is_none() {
                    // Kernel events always carry a width flag; without one
                    // the view assumed the OS's width: say so.
                    self.sink.anomaly();
                }
                let mut payload = ProcessPayloadRef::EMPTY;
                let decoded = decode_process_view(view, &mut payload).map(|()| &payload);
                self.with_tracker(|t| t.on_process_event(op, time, decoded));
            }
            Route::KernelProcess(op) => {
                let version = u8::try_from(view.header.version).unwrap_or(u8::MAX);
                self.with_tracker(|t| {
                    t.on_kernel_process_event(op, version, time, view.payload, ())
                        .map(|()| None)
                });
            }
            Route::Terminate => {
                let version = u8::try_from(view.header.version).unwrap_or(u8::MAX);
                self.with_tracker(|t| {
                    t.on_terminate(view.header.pid, version, time, view.payload);
                    Ok(None)
                });
            }
            // Where a gap is, never how big: the polled session counters
            // are the one count of loss (see `supervise::report_loss`), so
            // a marker can neither double-count nor hide later loss.
            // Any kind (events 32, buffers 33, file 34) is a gap.
            Route::Lost(_) => self.sink.gap(),
            // Anything else (EventTrace header, config events) is skipped.
            Route::Other => {}
        }
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
    if cfg!(target_pointer_width = "64") {
        PointerSize::Eight
    } else {
        PointerSize::Four
    }
}

fn guid(g: &GUID) -> Guid {
    Guid::new(g.data1, g.data2, g.data3, g.data4)
}

/// Borrows an EVENT_RECORD as the shared [`EventView`]: header fields by
/// value, the user data in place.
///
/// # Safety
/// `record.UserData` must point to `record.UserDataLength` readable bytes
/// (or be null), valid for `'a`, as ETW guarantees during the callback.
pub(crate) unsafe fn record_view<'a>(record: &'a EVENT_RECORD) -> EventView<'a> {
    let h = &record.EventHeader;
    let d = &h.EventDescriptor;
    let len = usize::from(record.UserDataLength);
    let payload = if record.UserData.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller guarantees UserData/UserDataLength describe
        // readable memory for 'a; u8 has no alignment requirement.
        unsafe { std::slice::from_raw_parts(record.UserData.cast::<u8>(), len) }
    };
    // A 32-bit consumer may run on a 64-bit kernel: the flags decide; the
    // OS's width is only the last resort (`dispatch` counts it).
    let pointer = PointerSize::from_header_flags(h.Flags).unwrap_or_else(native_pointer_size);
    let mut header = EventHeader::new(guid(&h.ProviderId), d.Opcode, d.Version.into(), pointer);
    header.event_id = d.Id;
    header.level = d.Level;
    header.task = d.Task;
    header.keyword = d.Keyword;
    header.pid = Some(h.ProcessId);
    header.tid = Some(h.ThreadId);
    // FILETIME: no PROCESS_TRACE_MODE_RAW_TIMESTAMP is set.
    header.time = u64::try_from(h.TimeStamp).ok().filter(|&t| t > 0);
    header.flags = h.Flags;
    EventView {
        header,
        payload,
        extended: &[],
        place: (),
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

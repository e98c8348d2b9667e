//! The consumer side: OpenTraceW on a real-time session, ProcessTrace,
//! CloseTrace (once, from whichever thread gets there first).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use windows_sys::Win32::Foundation::WIN32_ERROR;
use windows_sys::Win32::System::Diagnostics::Etw::{
    CloseTrace, OpenTraceW, ProcessTrace, EVENT_TRACE_LOGFILEW, PROCESSTRACE_HANDLE,
    PROCESS_TRACE_MODE_EVENT_RECORD, PROCESS_TRACE_MODE_REAL_TIME,
};

use super::consumer::{on_event, Context};
use super::ffi::{last_error, wide, CLOSE_PENDING};

/// ERROR_INVALID_HANDLE.
const INVALID_HANDLE: u32 = 6;

/// OpenTraceW's failure value: `INVALID_HANDLE_VALUE` widened, and the
/// zero-extended form 32-bit callers saw on Vista/7 (not in windows-sys).
const INVALID_HANDLES: [u64; 2] = [u64::MAX, 0xFFFF_FFFF];

/// An open real-time trace. CloseTrace runs exactly once: explicitly, or on
/// drop.
pub(crate) struct TraceReader {
    handle: PROCESSTRACE_HANDLE,
    closed: AtomicBool,
    /// The LoggerName given to OpenTraceW, kept for the handle's lifetime:
    /// no documentation says ETW copies it.
    _logger_name: Vec<u16>,
}

impl TraceReader {
    /// Opens the real-time session `session` with `context` as the
    /// callback's `UserContext`. The caller keeps `context` alive until
    /// [`process`](Self::process) returned and the reader is closed.
    /// Errors are the GetLastError code.
    pub(crate) fn open(session: &str, context: &Arc<Context>) -> Result<TraceReader, WIN32_ERROR> {
        let mut name = wide(session);
        let mut logfile = EVENT_TRACE_LOGFILEW {
            LoggerName: name.as_mut_ptr(),
            Context: Arc::as_ptr(context).cast_mut().cast(),
            ..Default::default()
        };
        logfile.Anonymous1.ProcessTraceMode =
            PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD;
        logfile.Anonymous2.EventRecordCallback = Some(on_event);
        // SAFETY: `logfile` is a zeroed EVENT_TRACE_LOGFILEW with LoggerName
        // pointing at a NUL-terminated string that lives as long as the
        // handle (moving the Vec keeps its heap buffer in place) and a
        // callback of the right signature.
        let handle = unsafe { OpenTraceW(&mut logfile) };
        if INVALID_HANDLES.contains(&handle.Value) {
            return Err(last_error());
        }
        Ok(TraceReader {
            handle,
            closed: AtomicBool::new(false),
            _logger_name: name,
        })
    }

    /// Runs ProcessTrace until the session stops or the trace is closed.
    /// A NULL start time keeps the DCStart rundown (docs/etw-process-events.md §4.3).
    /// A stop that closed the trace before ProcessTrace got to it is not an
    /// error (ProcessTrace would answer ERROR_INVALID_HANDLE).
    pub(crate) fn process(&self) -> WIN32_ERROR {
        if self.closed.load(Ordering::Acquire) {
            return 0;
        }
        // SAFETY: a pointer to one handle from OpenTraceW, count 1, NULL
        // start/end times (allowed). A concurrent close() only ends the
        // call, or makes ETW reject the handle if it came first.
        let rc = unsafe { ProcessTrace(&self.handle, 1, std::ptr::null(), std::ptr::null()) };
        if rc == INVALID_HANDLE && self.closed.load(Ordering::Acquire) {
            0
        } else {
            rc
        }
    }

    /// CloseTrace, once. Returns its result (0 or ERROR_CTX_CLOSE_PENDING
    /// count as success), or 0 when already closed.
    pub(crate) fn close(&self) -> WIN32_ERROR {
        if self.closed.swap(true, Ordering::AcqRel) {
            return 0;
        }
        // SAFETY: the handle came from OpenTraceW and the swap above makes
        // this the only CloseTrace on it.
        let rc = unsafe { CloseTrace(self.handle) };
        if rc == CLOSE_PENDING {
            0
        } else {
            rc
        }
    }
}

impl Drop for TraceReader {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_closed_before_processing_is_not_processed() {
        // As close() leaves it; the handle is never passed to ETW.
        let reader = TraceReader {
            handle: PROCESSTRACE_HANDLE { Value: u64::MAX },
            closed: AtomicBool::new(true),
            _logger_name: wide("procexit-test"),
        };
        assert_eq!(reader.process(), 0);
        assert_eq!(reader.close(), 0, "closed once");
    }
}

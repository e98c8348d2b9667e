//! Stopping our sessions when the console closes, the user logs off or
//! Windows shuts down.
//!
//! Windows ends a console process shortly after its control handlers
//! return for those events, and a handler that only signals another thread
//! (as Ctrl-C handlers usually do) returns at once: the process would die
//! with its session still running, holding a system-logger slot until the
//! next start reclaims it. This handler stops every running session
//! synchronously, then lets the next handler run. Handlers run last
//! registered first, so programs that install their own console handler
//! do so before starting the first monitor (docs/windows-sessions.md).

#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once, PoisonError};

use windows_sys::core::BOOL;
use windows_sys::Win32::System::Console::{
    SetConsoleCtrlHandler, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
};
use windows_sys::Win32::System::Diagnostics::Etw::CONTROLTRACE_HANDLE;
use windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId;

use super::session::stop_by_handle;

/// Handles of the sessions running in this process, with the id of the
/// registration that added each.
static RUNNING: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<u64> = Mutex::new(0);
static INSTALL: Once = Once::new();

/// A session listed for the handler; unlisted on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    id: u64,
}

/// Lists a started session so the handler stops it.
pub(crate) fn register(handle: CONTROLTRACE_HANDLE) -> Registration {
    INSTALL.call_once(|| {
        // SAFETY: a valid handler routine of the right signature, added
        // once per process and never removed. Failure (no console) only
        // means there is nothing to handle.
        unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) };
    });
    let id = {
        let mut next = NEXT_ID.lock().unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        *next
    };
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((id, handle.Value));
    Registration { id }
}

impl Drop for Registration {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&(id, _)| id != self.id);
    }
}

/// Whether Windows ends this process after `event`. A logoff ends only
/// interactive processes: in session 0 (services) it is another user's.
pub(crate) fn ends_process(event: u32, service_session: bool) -> bool {
    match event {
        CTRL_CLOSE_EVENT | CTRL_SHUTDOWN_EVENT => true,
        CTRL_LOGOFF_EVENT => !service_session,
        _ => false,
    }
}

fn in_service_session() -> bool {
    let mut session = u32::MAX;
    // SAFETY: a writable u32 for the session id of our own pid.
    let ok = unsafe { ProcessIdToSessionId(std::process::id(), &mut session) };
    ok != 0 && session == 0
}

/// Stops every listed session; returns how many STOPs succeeded.
pub(crate) fn stop_all() -> usize {
    let running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    running
        .iter()
        .filter(|&&(_, handle)| stop_by_handle(CONTROLTRACE_HANDLE { Value: handle }))
        .count()
}

/// The console control handler. Never unwinds into Windows; always lets
/// the next handler run (returns FALSE).
pub(crate) unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if ends_process(event, in_service_session()) {
            stop_all();
        }
    }));
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT};

    #[test]
    fn which_events_end_the_process() {
        for service in [false, true] {
            assert!(ends_process(CTRL_CLOSE_EVENT, service));
            assert!(ends_process(CTRL_SHUTDOWN_EVENT, service));
            // Ctrl-C / Ctrl-Break are the program's own handler's business.
            assert!(!ends_process(CTRL_C_EVENT, service));
            assert!(!ends_process(CTRL_BREAK_EVENT, service));
        }
        assert!(ends_process(CTRL_LOGOFF_EVENT, false));
        assert!(!ends_process(CTRL_LOGOFF_EVENT, true));
    }
}

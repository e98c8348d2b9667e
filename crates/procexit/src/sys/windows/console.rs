//! Stopping our sessions when the console closes, the user logs off or
//! Windows shuts down.
//!
//! Windows ends a console process shortly after its control handlers
//! return for those events, and a handler that only signals another thread
//! (as Ctrl-C handlers usually do) returns at once: the process would die
//! with its session still running, holding a system-logger slot until the
//! next start reclaims it. This handler stops every running session the
//! event ends the process of (not a service's on logoff or shutdown: the
//! service manager stops a service), marks the process as terminating so
//! the supervisors do not restart them, then lets the next handler run. Handlers run last
//! registered first, so programs that install their own console handler
//! do so before starting the first monitor (docs/windows-sessions.md).

#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use windows_sys::core::BOOL;
use windows_sys::Win32::System::Console::{
    SetConsoleCtrlHandler, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
};
use windows_sys::Win32::System::Diagnostics::Etw::CONTROLTRACE_HANDLE;

use super::session::stop_by_handle;

/// A running session listed for the handler.
struct Listed {
    id: u64,
    handle: u64,
    /// Registered by a monitor in service mode.
    service: bool,
}

/// Sessions running in this process.
static RUNNING: Mutex<Vec<Listed>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<u64> = Mutex::new(0);
static INSTALL: Once = Once::new();
/// Set once the handler stopped sessions because the process is about to
/// end: their consumers' ends are no outside stop to recover from.
static TERMINATING: AtomicBool = AtomicBool::new(false);

/// A session listed for the handler; unlisted on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    id: u64,
}

/// Lists a started session so the handler stops it; `service`: the
/// monitor runs in a Windows service.
pub(crate) fn register(handle: CONTROLTRACE_HANDLE, service: bool) -> Registration {
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
        .push(Listed {
            id,
            handle: handle.Value,
            service,
        });
    Registration { id }
}

impl Drop for Registration {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|listed| listed.id != self.id);
    }
}

/// Whether Windows ends this process after `event`. A service's process
/// is not ended by logoff or shutdown events (the service manager's
/// SHUTDOWN / PRESHUTDOWN stops it); a console process is, in any
/// session, session 0 included.
pub(crate) fn ends_process(event: u32, service: bool) -> bool {
    match event {
        CTRL_CLOSE_EVENT => true,
        CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT => !service,
        _ => false,
    }
}

/// Whether the handler stopped sessions because the process ends.
pub(crate) fn terminating() -> bool {
    TERMINATING.load(Ordering::SeqCst)
}

/// Stops every listed session Windows is about to end with the process on
/// `event` (all of them for `None`); returns how many STOPs succeeded.
pub(crate) fn stop_all_for(event: Option<u32>) -> usize {
    let running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    let ending: Vec<u64> = running
        .iter()
        .filter(|listed| event.is_none_or(|e| ends_process(e, listed.service)))
        .map(|listed| listed.handle)
        .collect();
    if event.is_some() && !ending.is_empty() {
        // Before the STOPs: the supervisors must see their consumers end
        // as ours, not as a session stopped from outside to restart.
        TERMINATING.store(true, Ordering::SeqCst);
    }
    ending
        .into_iter()
        .filter(|&handle| stop_by_handle(CONTROLTRACE_HANDLE { Value: handle }))
        .count()
}

/// The console control handler. Never unwinds into Windows; always lets
/// the next handler run (returns FALSE).
pub(crate) unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        stop_all_for(Some(event));
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
            // Ctrl-C / Ctrl-Break are the program's own handler's business.
            assert!(!ends_process(CTRL_C_EVENT, service));
            assert!(!ends_process(CTRL_BREAK_EVENT, service));
        }
        // A console program, in session 0 too (OpenSSH, a scheduled task).
        assert!(ends_process(CTRL_LOGOFF_EVENT, false));
        assert!(ends_process(CTRL_SHUTDOWN_EVENT, false));
        // A service: the service manager's SHUTDOWN stops it, not this.
        assert!(!ends_process(CTRL_LOGOFF_EVENT, true));
        assert!(!ends_process(CTRL_SHUTDOWN_EVENT, true));
    }
}

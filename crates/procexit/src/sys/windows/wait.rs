//! `wait` on Windows: process handles, no ETW and no elevation. Any process
//! the caller may open with SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION.

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_INVALID_HANDLE, FILETIME, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, QueryFullProcessImageNameW,
    WaitForMultipleObjects, WaitForSingleObject, INFINITE, PROCESS_NAME_WIN32,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use super::ffi::{last_error, os_error, OwnedHandle, ACCESS_DENIED, INVALID_PARAMETER};
use crate::error::{Error, Result};
use crate::event::{system_time_from_filetime, ExitStatus, ProcessExit, Source};

/// MAXIMUM_WAIT_OBJECTS: handles one WaitForMultipleObjects call takes.
const MAX_WAIT: usize = 64;
/// Poll period when more than 64 processes are waited for.
const POLL: Duration = Duration::from_millis(50);

struct Waited {
    pid: u32,
    handle: OwnedHandle,
    name: Option<String>,
}

/// Processes waited for through their handles.
pub(crate) struct Waiter {
    procs: Vec<Waited>,
}

impl Waiter {
    /// Always `None`: there is no fallback to report here (see
    /// [`WaitSet::fallback`](crate::WaitSet::fallback)).
    pub(crate) fn fallback(&self) -> Option<&crate::Error> {
        None
    }

    pub(crate) fn new(pids: &[u32]) -> Result<Waiter> {
        let procs = pids
            .iter()
            .map(|&pid| open(pid))
            .collect::<Result<Vec<_>>>()?;
        Ok(Waiter { procs })
    }

    pub(crate) fn next_exit(&mut self, deadline: Option<Instant>) -> Result<Option<ProcessExit>> {
        if self.procs.is_empty() {
            return Ok(None);
        }
        loop {
            let single = self.procs.len() <= MAX_WAIT;
            let mut base = 0;
            for chunk in self.procs.chunks(MAX_WAIT) {
                let timeout = if single { millis_until(deadline) } else { 0 };
                if let Some(i) = wait_any(chunk, timeout)? {
                    let done = self.procs.remove(base + i);
                    return exit_record(done).map(Some);
                }
                base += chunk.len();
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            if !single {
                let pause = deadline.map_or(POLL, |d| d.saturating_duration_since(now).min(POLL));
                std::thread::sleep(pause);
            }
        }
    }
}

fn open(pid: u32) -> Result<Waited> {
    // SAFETY: OpenProcess takes plain values and returns an owned handle or null.
    let raw = unsafe {
        OpenProcess(
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        )
    };
    let Some(handle) = OwnedHandle::new(raw) else {
        return Err(match last_error() {
            // No such process (or pid 0, the idle process). Wine answers 6
            // for pids beyond its handle table.
            INVALID_PARAMETER | ERROR_INVALID_HANDLE => Error::NoSuchProcess { pid },
            ACCESS_DENIED => Error::ProcessAccessDenied {
                pid,
                code: ACCESS_DENIED as i32,
            },
            code => os_error("OpenProcess", code),
        });
    };
    // A process that already ended but whose object some handle keeps
    // alive opens fine; the contract says it does not exist any more.
    // SAFETY: an open handle with SYNCHRONIZE; a zero timeout only polls.
    if unsafe { WaitForSingleObject(handle.raw(), 0) } == WAIT_OBJECT_0 {
        return Err(Error::NoSuchProcess { pid });
    }
    let name = image_leaf_name(&handle);
    Ok(Waited { pid, handle, name })
}

/// Index of a signalled handle, or `None` on timeout.
fn wait_any(chunk: &[Waited], timeout_ms: u32) -> Result<Option<usize>> {
    let handles: Vec<_> = chunk.iter().map(|w| w.handle.raw()).collect();
    // SAFETY: `handles` holds 1..=64 open process handles owned by `chunk`,
    // which outlives the call.
    let rc =
        unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, timeout_ms) };
    match rc {
        WAIT_TIMEOUT => Ok(None),
        WAIT_FAILED => Err(os_error("WaitForMultipleObjects", last_error())),
        rc => match usize::try_from(rc.wrapping_sub(WAIT_OBJECT_0)) {
            Ok(i) if i < handles.len() => Ok(Some(i)),
            // WAIT_ABANDONED_* cannot happen for process handles.
            _ => Err(os_error("WaitForMultipleObjects", rc)),
        },
    }
}

fn exit_record(done: Waited) -> Result<ProcessExit> {
    let mut code = 0u32;
    // SAFETY: the handle is open with PROCESS_QUERY_LIMITED_INFORMATION and
    // `code` is a writable u32.
    if unsafe { GetExitCodeProcess(done.handle.raw(), &mut code) } == 0 {
        return Err(os_error("GetExitCodeProcess", last_error()));
    }
    let mut exit = ProcessExit::new(done.pid, ExitStatus::Code(code), Source::Handle);
    exit.name = done.name;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: an open process handle and four writable FILETIMEs.
    let ok = unsafe {
        GetProcessTimes(
            done.handle.raw(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    if ok != 0 {
        exit.start_time = system_time_from_filetime(filetime(created));
        exit.exit_time = system_time_from_filetime(filetime(exited));
    }
    Ok(exit)
}

fn filetime(t: FILETIME) -> u64 {
    (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
}

/// The image's file name (`cmd.exe`), not the full path.
fn image_leaf_name(handle: &OwnedHandle) -> Option<String> {
    let mut buf = vec![0u16; 32 * 1024];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` has `len` writable u16s; the call writes at most that
    // many and stores the length written (without NUL) in `len`.
    let ok = unsafe {
        QueryFullProcessImageNameW(handle.raw(), PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len)
    };
    if ok == 0 {
        return None;
    }
    let path = String::from_utf16_lossy(buf.get(..len as usize)?);
    let leaf = path.rsplit(['\\', '/']).next().unwrap_or(&path);
    (!leaf.is_empty()).then(|| leaf.to_owned())
}

/// Milliseconds left until `deadline`, rounded up (so a wait never ends
/// just before it), INFINITE without one.
fn millis_until(deadline: Option<Instant>) -> u32 {
    match deadline {
        None => INFINITE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_nanos().div_ceil(1_000_000);
            u32::try_from(ms).unwrap_or(INFINITE - 1).min(INFINITE - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// A `cmd` that exits with `code` once its stdin closes.
    fn paused(code: u32) -> Child {
        Command::new("cmd")
            .args(["/c", &format!("pause >nul & exit {code}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("cmd.exe")
    }

    #[test]
    fn more_than_64_handles_are_waited_for_in_chunks() {
        let (mut a, mut b) = (paused(3), paused(5));
        // 64 handles of `a` fill the first WaitForMultipleObjects call; `b`
        // is only in the second.
        let mut pids = vec![a.id(); MAX_WAIT];
        pids.push(b.id());
        let mut set = Waiter::new(&pids).expect("open the children");
        let start = Instant::now();
        let deadline = start + Duration::from_millis(120);
        assert!(set.next_exit(Some(deadline)).unwrap().is_none());
        assert!(start.elapsed() >= Duration::from_millis(120));
        drop(b.stdin.take());
        let exit = set
            .next_exit(Some(Instant::now() + Duration::from_secs(30)))
            .unwrap()
            .expect("b within 30 s");
        assert_eq!((exit.pid, exit.status), (b.id(), ExitStatus::Code(5)));
        assert_eq!(set.procs.len(), MAX_WAIT);
        drop(a.stdin.take());
        let exit = set.next_exit(None).unwrap().expect("a");
        assert_eq!((exit.pid, exit.status), (a.id(), ExitStatus::Code(3)));
        a.wait().unwrap();
        b.wait().unwrap();
    }
}

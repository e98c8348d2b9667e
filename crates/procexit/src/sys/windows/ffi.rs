//! The Win32 boundary: RAII process handles, wide strings, the one place
//! that turns Win32 error codes into [`Error`]s.

#![allow(unsafe_code)]

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_INVALID_PARAMETER,
    ERROR_NO_SYSTEM_RESOURCES, ERROR_WMI_INSTANCE_NOT_FOUND, HANDLE, WIN32_ERROR,
};

use crate::error::Error;

/// ERROR_ACCESS_DENIED: not elevated (StartTraceW, ControlTraceW).
pub(crate) const ACCESS_DENIED: u32 = ERROR_ACCESS_DENIED;
/// ERROR_ALREADY_EXISTS: a session with this name or GUID runs.
pub(crate) const ALREADY_EXISTS: u32 = ERROR_ALREADY_EXISTS;
/// ERROR_NO_SYSTEM_RESOURCES: no logger slot left.
pub(crate) const NO_SYSTEM_RESOURCES: u32 = ERROR_NO_SYSTEM_RESOURCES;
/// ERROR_WMI_INSTANCE_NOT_FOUND: the session is not running.
pub(crate) const NOT_RUNNING: u32 = ERROR_WMI_INSTANCE_NOT_FOUND;
/// ERROR_INVALID_PARAMETER.
pub(crate) const INVALID_PARAMETER: u32 = ERROR_INVALID_PARAMETER;
/// ERROR_MORE_DATA: on STOP the session was stopped all the same.
pub(crate) const MORE_DATA: u32 = 234;
/// ERROR_CTX_CLOSE_PENDING: CloseTrace while ProcessTrace runs; a success.
pub(crate) const CLOSE_PENDING: u32 = 7007;

/// Maps a failed ETW control call to the typed error that says what to do.
/// `session` names the session for ERROR_ALREADY_EXISTS.
pub(crate) fn etw_error(call: &'static str, code: WIN32_ERROR, session: &str) -> Error {
    match code {
        ACCESS_DENIED => Error::NotElevated { code },
        ALREADY_EXISTS => Error::SessionExists {
            name: session.to_owned(),
            code,
        },
        NO_SYSTEM_RESOURCES => Error::NoSessionSlots { code },
        _ => os_error(call, code),
    }
}

/// A plain `Error::Os` for a Win32 code.
pub(crate) fn os_error(call: &'static str, code: WIN32_ERROR) -> Error {
    Error::Os {
        call,
        // Win32 codes are below 2^31, HRESULT-like values wrap as io::Error does.
        code: code as i32,
    }
}

/// The calling thread's last Win32 error.
pub(crate) fn last_error() -> WIN32_ERROR {
    // SAFETY: GetLastError only reads thread-local state.
    unsafe { GetLastError() }
}

/// The windows-sys form of a decoder GUID.
pub(crate) fn win_guid(g: &crate::decode::Guid) -> windows_sys::core::GUID {
    windows_sys::core::GUID {
        data1: g.data1,
        data2: g.data2,
        data3: g.data3,
        data4: g.data4,
    }
}

/// `s` as a NUL-terminated UTF-16 string.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// An owned kernel object handle, closed on drop.
#[derive(Debug)]
pub(crate) struct OwnedHandle(HANDLE);

// SAFETY: a process handle is a plain kernel object reference; Win32 lets
// any thread use or close it.
unsafe impl Send for OwnedHandle {}

impl OwnedHandle {
    /// Takes ownership of `handle`; `None` for a null handle (the failure
    /// value of OpenProcess).
    pub(crate) fn new(handle: HANDLE) -> Option<OwnedHandle> {
        (!handle.is_null()).then_some(OwnedHandle(handle))
    }

    pub(crate) fn raw(&self) -> HANDLE {
        self.0
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // SAFETY: the handle is non-null, owned by this value and closed once.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_typed_variants() {
        assert!(matches!(
            etw_error("StartTraceW", 5, "x"),
            Error::NotElevated { code: 5 }
        ));
        assert!(matches!(
            etw_error("StartTraceW", 183, "x"),
            Error::SessionExists { ref name, code: 183 } if name == "x"
        ));
        assert!(matches!(
            etw_error("StartTraceW", 1450, "x"),
            Error::NoSessionSlots { code: 1450 }
        ));
        assert!(matches!(
            etw_error("ControlTraceW", 4201, "x"),
            Error::Os {
                call: "ControlTraceW",
                code: 4201
            }
        ));
    }

    #[test]
    fn wide_is_nul_terminated() {
        assert_eq!(wide("ab"), [97, 98, 0]);
    }
}

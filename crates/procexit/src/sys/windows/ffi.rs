//! The Win32 boundary: RAII process handles, wide strings, the one place
//! that turns Win32 error codes into [`Error`]s.

#![allow(unsafe_code)]

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_INVALID_PARAMETER,
    ERROR_NO_SYSTEM_RESOURCES, ERROR_WMI_INSTANCE_NOT_FOUND, HANDLE, WIN32_ERROR,
};

use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

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
        _ => os_error(call, code),
    }
}

/// StartTraceW's failures: ERROR_NO_SYSTEM_RESOURCES is the system's
/// session limit, worded for the kind of session that hit it.
pub(crate) fn start_error(code: WIN32_ERROR, kernel: bool, session: &str) -> Error {
    match code {
        NO_SYSTEM_RESOURCES => Error::NoSessionSlots { code, kernel },
        code => etw_error("StartTraceW", code, session),
    }
}

/// OpenTraceW's failures. Access denied right after our own StartTraceW
/// succeeded means this account may not consume in real time; only under
/// Wine (whose OpenTraceW is a stub) is it "ETW unavailable".
pub(crate) fn open_error(code: WIN32_ERROR, wine: bool, session: &str) -> Error {
    match code {
        ACCESS_DENIED if wine => Error::EtwUnavailable {
            call: "OpenTraceW",
            code,
        },
        ACCESS_DENIED => Error::NoConsumerRights { code },
        code => etw_error("OpenTraceW", code, session),
    }
}

/// Whether this process runs under Wine: ntdll exports `wine_get_version`
/// there and nowhere else.
pub(crate) fn under_wine() -> bool {
    let ntdll = wide("ntdll.dll");
    // SAFETY: a NUL-terminated module name and export name; ntdll is
    // always loaded, and only the presence of the export is checked.
    unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
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
        // The session limit, per kind of session.
        assert!(matches!(
            start_error(1450, true, "x"),
            Error::NoSessionSlots {
                code: 1450,
                kernel: true
            }
        ));
        assert!(matches!(
            start_error(1450, false, "x"),
            Error::NoSessionSlots {
                code: 1450,
                kernel: false
            }
        ));
        assert!(matches!(
            start_error(5, false, "x"),
            Error::NotElevated { code: 5 }
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
    fn open_trace_denied_is_consumer_rights_except_under_wine() {
        assert!(matches!(
            open_error(5, false, "x"),
            Error::NoConsumerRights { code: 5 }
        ));
        assert!(matches!(
            open_error(5, true, "x"),
            Error::EtwUnavailable {
                call: "OpenTraceW",
                code: 5
            }
        ));
        assert!(matches!(
            open_error(1450, false, "x"),
            Error::Os {
                call: "OpenTraceW",
                code: 1450
            }
        ));
    }

    #[test]
    fn wine_is_told_by_its_ntdll_export() {
        // Every Wine prefix has winecfg.exe in system32; Windows has none.
        let wine_prefix = std::path::Path::new(r"C:\windows\system32\winecfg.exe").exists();
        assert_eq!(under_wine(), wine_prefix);
    }

    #[test]
    fn wide_is_nul_terminated() {
        assert_eq!(wide("ab"), [97, 98, 0]);
    }
}

//! One monitor per session name on a machine: a named kernel object,
//! `Global\procexit-NAME`, held for as long as the monitor runs.
//!
//! The lock is the object's existence, not mutex ownership (which belongs
//! to a thread, and the thread that starts a monitor may end before it):
//! the first CreateMutexW creates it, every later one while any handle is
//! open gets ERROR_ALREADY_EXISTS. Windows closes our handle when the
//! process dies, so a killed monitor never leaves the lock taken
//! (docs/windows-sessions.md).

#![allow(unsafe_code)]

use windows_sys::Win32::System::Threading::CreateMutexW;

use super::ffi::{last_error, wide, OwnedHandle, ACCESS_DENIED, ALREADY_EXISTS};
use crate::error::{Error, Result};

/// Held while a monitor of that session name runs.
#[derive(Debug)]
pub(crate) struct NameLock {
    _handle: OwnedHandle,
}

/// The kernel object name for a session name: ETW compares session names
/// without regard to case, so the name is folded; `\` separates kernel
/// namespaces, so it is replaced.
pub(crate) fn lock_name(session: &str) -> String {
    format!(
        "Global\\procexit-{}",
        session.to_uppercase().replace('\\', "/")
    )
}

impl NameLock {
    /// Takes the lock for `session`, or says who holds it.
    pub(crate) fn acquire(session: &str) -> Result<NameLock> {
        let name = wide(&lock_name(session));
        // SAFETY: default security, not initially owned, a NUL-terminated
        // name alive across the call.
        let raw = unsafe { CreateMutexW(std::ptr::null(), 0, name.as_ptr()) };
        // Read before anything else can change the thread's last error.
        let code = last_error();
        let Some(handle) = OwnedHandle::new(raw) else {
            return Err(match code {
                // Creating a Global\ object from a user session needs
                // SeCreateGlobalPrivilege (elevated administrators have
                // it), and opening one an elevated monitor created needs
                // elevation too.
                ACCESS_DENIED => Error::NotElevated { code },
                code => super::ffi::os_error("CreateMutexW", code),
            });
        };
        if code == ALREADY_EXISTS {
            drop(handle);
            return Err(Error::AlreadyRunning {
                name: session.to_owned(),
            });
        }
        Ok(NameLock { _handle: handle })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fold_case_and_backslashes() {
        assert_eq!(lock_name("procexit"), "Global\\procexit-PROCEXIT");
        assert_eq!(lock_name("ProcExit-2"), lock_name("PROCEXIT-2"));
        assert_eq!(lock_name("procexit\\x"), "Global\\procexit-PROCEXIT/X");
    }

    #[test]
    fn one_holder_per_name_until_released() {
        let first = NameLock::acquire("procexit-test-lock").expect("first");
        assert!(matches!(
            NameLock::acquire("procexit-test-lock"),
            Err(Error::AlreadyRunning { ref name }) if name == "procexit-test-lock"
        ));
        // ETW names ignore case, so the lock does too.
        assert!(matches!(
            NameLock::acquire("PROCEXIT-TEST-LOCK"),
            Err(Error::AlreadyRunning { .. })
        ));
        // Another name is independent.
        let other = NameLock::acquire("procexit-test-lock-2").expect("other name");
        drop(first);
        let again = NameLock::acquire("procexit-test-lock").expect("free again");
        drop((again, other));
    }
}

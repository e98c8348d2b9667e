//! One monitor per session name on a machine, with a lock no
//! non-administrator can take first.
//!
//! The lock is a private object namespace whose boundary is the
//! Administrators group: `CreatePrivateNamespaceW` with the alias
//! `procexit-NAME` succeeds for the first caller and fails with
//! ERROR_ALREADY_EXISTS while that namespace exists. Only a token with the
//! Administrators group enabled (an elevated administrator, LocalSystem)
//! is within the boundary, so nobody else can create it to keep monitors
//! from starting; a namespace of the same alias under another boundary is
//! another namespace. Windows closes the namespace when its creator ends,
//! so a killed monitor never leaves the lock taken
//! (docs/windows-sessions.md).
//!
//! A token outside the boundary (Performance Log Users, LocalService,
//! NetworkService: accounts that may run the Kernel-Process source) holds
//! no lock; its monitor then never stops a session by name (no reclaim),
//! the only call by which one monitor could touch another's session.
//!
//! Wine has no private namespaces: there the lock is the named mutex
//! `Global\procexit-NAME`, opened for SYNCHRONIZE only.

#![allow(unsafe_code)]

use std::sync::OnceLock;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Security::{
    CreateWellKnownSid, WinBuiltinAdministratorsSid, PSID, SECURITY_ATTRIBUTES,
    SECURITY_MAX_SID_SIZE,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{
    CreateBoundaryDescriptorW, CreateMutexExW, DeleteBoundaryDescriptor,
    PRIVATE_NAMESPACE_FLAG_DESTROY,
};

use super::ffi::{last_error, os_error, wide, OwnedHandle, ACCESS_DENIED, ALREADY_EXISTS};
use crate::error::{Error, Result};

/// SYNCHRONIZE: all the fallback mutex is opened for.
const SYNCHRONIZE: u32 = 0x0010_0000;

/// Held while a monitor of that session name runs.
#[derive(Debug)]
pub(crate) struct NameLock {
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// The private namespace we created.
    Namespace { handle: HANDLE, api: &'static Api },
    /// Wine: the named mutex (closed on drop).
    Mutex(#[allow(dead_code)] OwnedHandle),
    /// Outside the Administrators boundary: no lock.
    Nothing,
}

// SAFETY: a namespace handle is a kernel object reference; any thread may
// close it.
unsafe impl Send for NameLock {}

/// The kernel object name for a session name: ETW compares session names
/// without regard to case, so the name is folded; `\` separates kernel
/// namespaces, so it is replaced.
pub(crate) fn lock_name(session: &str) -> String {
    format!("procexit-{}", session.to_uppercase().replace('\\', "/"))
}

/// What a lock attempt's Win32 result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Created: ours.
    Taken,
    /// Someone holds it.
    Held {
        /// The object exists but this account may not open it.
        other_account: bool,
    },
    /// This token may not take the lock at all.
    Outside,
    /// Anything else: the call's code.
    Failed(u32),
}

/// CreatePrivateNamespaceW's result: ALREADY_EXISTS is a running monitor;
/// access denied means the token is not within the Administrators
/// boundary.
pub(crate) fn namespace_attempt(created: bool, code: u32) -> Attempt {
    match (created, code) {
        (true, _) => Attempt::Taken,
        (false, ALREADY_EXISTS) => Attempt::Held {
            other_account: false,
        },
        (false, ACCESS_DENIED) => Attempt::Outside,
        (false, code) => Attempt::Failed(code),
    }
}

/// CreateMutexExW's result: a handle with ALREADY_EXISTS is a running
/// monitor; access denied on an existing mutex is one whose security does
/// not let this account open it, i.e. another account's monitor.
pub(crate) fn mutex_attempt(handle: bool, code: u32) -> Attempt {
    match (handle, code) {
        (true, ALREADY_EXISTS) => Attempt::Held {
            other_account: false,
        },
        (true, _) => Attempt::Taken,
        (false, ACCESS_DENIED) => Attempt::Held {
            other_account: true,
        },
        (false, code) => Attempt::Failed(code),
    }
}

/// The namespace functions, looked up at run time: Wine 8's kernel32 does
/// not export them, and a static import would keep every test executable
/// from loading there.
#[derive(Debug)]
struct Api {
    add_sid: unsafe extern "system" fn(*mut HANDLE, PSID) -> i32,
    create: unsafe extern "system" fn(*const SECURITY_ATTRIBUTES, HANDLE, *const u16) -> HANDLE,
    close: unsafe extern "system" fn(HANDLE, u32) -> u8,
}

fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        let kernel32 = wide("kernel32.dll");
        // SAFETY: a NUL-terminated module name; kernel32 is always loaded.
        let module = unsafe { GetModuleHandleW(kernel32.as_ptr()) };
        if module.is_null() {
            return None;
        }
        // SAFETY: NUL-terminated export names of a loaded module; each
        // pointer is transmuted to the documented signature of that export
        // (AddSIDToBoundaryDescriptor, CreatePrivateNamespaceW,
        // ClosePrivateNamespace).
        unsafe {
            let add_sid = GetProcAddress(module, c"AddSIDToBoundaryDescriptor".as_ptr().cast())?;
            let create = GetProcAddress(module, c"CreatePrivateNamespaceW".as_ptr().cast())?;
            let close = GetProcAddress(module, c"ClosePrivateNamespace".as_ptr().cast())?;
            Some(Api {
                add_sid: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(*mut HANDLE, PSID) -> i32,
                >(add_sid),
                create: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(
                        *const SECURITY_ATTRIBUTES,
                        HANDLE,
                        *const u16,
                    ) -> HANDLE,
                >(create),
                close: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(HANDLE, u32) -> u8,
                >(close),
            })
        }
    })
    .as_ref()
}

impl NameLock {
    /// Takes the lock for `session`, or says who holds it.
    pub(crate) fn acquire(session: &str) -> Result<NameLock> {
        let (attempt, held) = match api() {
            Some(api) => namespace(api, &lock_name(session))?,
            None => mutex(&format!("Global\\{}", lock_name(session))),
        };
        match attempt {
            Attempt::Taken => Ok(NameLock { held }),
            Attempt::Outside => Ok(NameLock {
                held: Held::Nothing,
            }),
            Attempt::Held { other_account } => Err(Error::AlreadyRunning {
                name: session.to_owned(),
                other_account,
            }),
            Attempt::Failed(code) => Err(os_error("CreatePrivateNamespaceW", code)),
        }
    }

    /// Whether a lock is held: only then may the monitor stop a leftover
    /// session of its name.
    pub(crate) fn held(&self) -> bool {
        !matches!(self.held, Held::Nothing)
    }
}

/// The private namespace `alias` bounded by the Administrators group.
fn namespace(api: &'static Api, alias: &str) -> Result<(Attempt, Held)> {
    let alias = wide(alias);
    // SAFETY: a NUL-terminated boundary name, no flags.
    let mut boundary = unsafe { CreateBoundaryDescriptorW(alias.as_ptr(), 0) };
    if boundary.is_null() {
        return Err(os_error("CreateBoundaryDescriptorW", last_error()));
    }
    let mut sid = [0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut sid_len = SECURITY_MAX_SID_SIZE;
    // SAFETY: a writable SID buffer of the size given; no domain SID for a
    // builtin group.
    let ok = unsafe {
        CreateWellKnownSid(
            WinBuiltinAdministratorsSid,
            std::ptr::null_mut(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
        )
    };
    // SAFETY: the descriptor from CreateBoundaryDescriptorW (which the call
    // may reallocate, hence the pointer to it) and a valid SID.
    let added = ok != 0 && unsafe { (api.add_sid)(&mut boundary, sid.as_mut_ptr().cast()) } != 0;
    let result = if added {
        // SAFETY: default security, the descriptor built above, a
        // NUL-terminated alias.
        let handle = unsafe { (api.create)(std::ptr::null(), boundary, alias.as_ptr()) };
        let code = last_error();
        let attempt = namespace_attempt(!handle.is_null(), code);
        Ok((attempt, Held::Namespace { handle, api }))
    } else {
        Err(os_error("AddSIDToBoundaryDescriptor", last_error()))
    };
    // SAFETY: the descriptor is ours and no longer used; the namespace
    // keeps its own copy.
    unsafe { DeleteBoundaryDescriptor(boundary) };
    match result {
        Ok((Attempt::Taken, held)) => Ok((Attempt::Taken, held)),
        Ok((attempt, _)) => Ok((attempt, Held::Nothing)),
        Err(e) => Err(e),
    }
}

/// Wine's lock: the named mutex, opened for SYNCHRONIZE only.
fn mutex(name: &str) -> (Attempt, Held) {
    let name = wide(name);
    // SAFETY: default security, not initially owned, a NUL-terminated name
    // alive across the call.
    let raw = unsafe { CreateMutexExW(std::ptr::null(), name.as_ptr(), 0, SYNCHRONIZE) };
    // Read before anything else can change the thread's last error.
    let code = last_error();
    match OwnedHandle::new(raw) {
        Some(handle) => match mutex_attempt(true, code) {
            Attempt::Taken => (Attempt::Taken, Held::Mutex(handle)),
            other => (other, Held::Nothing),
        },
        None => (mutex_attempt(false, code), Held::Nothing),
    }
}

impl Drop for NameLock {
    fn drop(&mut self) {
        if let Held::Namespace { handle, api } = self.held {
            // SAFETY: the namespace handle we created, closed once; DESTROY
            // frees the alias for the next monitor at once.
            unsafe { (api.close)(handle, PRIVATE_NAMESPACE_FLAG_DESTROY) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fold_case_and_backslashes() {
        assert_eq!(lock_name("procexit"), "procexit-PROCEXIT");
        assert_eq!(lock_name("ProcExit-2"), lock_name("PROCEXIT-2"));
        assert_eq!(lock_name("procexit\\x"), "procexit-PROCEXIT/X");
    }

    #[test]
    fn a_lock_another_account_holds_is_already_running() {
        // CreateMutexExW on a mutex whose security denies us: the
        // LocalSystem service's lock seen by an administrator.
        assert_eq!(
            mutex_attempt(false, ACCESS_DENIED),
            Attempt::Held {
                other_account: true
            }
        );
        assert_eq!(
            mutex_attempt(true, ALREADY_EXISTS),
            Attempt::Held {
                other_account: false
            }
        );
        assert_eq!(mutex_attempt(true, 0), Attempt::Taken);
        assert_eq!(mutex_attempt(false, 87), Attempt::Failed(87));
        // The namespace: only an administrator's token is in the boundary.
        assert_eq!(namespace_attempt(true, 0), Attempt::Taken);
        assert_eq!(
            namespace_attempt(false, ALREADY_EXISTS),
            Attempt::Held {
                other_account: false
            }
        );
        assert_eq!(namespace_attempt(false, ACCESS_DENIED), Attempt::Outside);
        let text = Error::AlreadyRunning {
            name: "procexit".into(),
            other_account: true,
        }
        .to_string();
        assert!(text.contains("another account"), "{text}");
        assert!(!text.contains("Administrator"), "{text}");
    }

    #[test]
    fn the_lock_is_a_private_namespace_where_windows_has_them() {
        // Wine 8 exports none of the namespace functions; Windows 10+ has
        // them all.
        assert_eq!(api().is_none(), super::super::ffi::under_wine());
    }

    #[test]
    fn one_holder_per_name_until_released() {
        let first = NameLock::acquire("procexit-test-lock").expect("first");
        if !first.held() {
            return crate::test_skip::skip("the lock needs an elevated administrator");
        }
        assert!(matches!(
            NameLock::acquire("procexit-test-lock"),
            Err(Error::AlreadyRunning { ref name, other_account: false }) if name == "procexit-test-lock"
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

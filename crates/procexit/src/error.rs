//! The library's error type: every variant carries the OS error code where
//! there is one, and its message says what to do about it.

use std::io;

/// Errors from starting, running or stopping a monitor, or waiting on a process.
///
/// `Debug` writes the same message as `Display` (what to do, with the OS
/// code), so that `fn main() -> Result<(), procexit::Error>` and `unwrap`
/// print something a user can act on; match the variants for the fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Linux: the kernel refused this process as a process connector
    /// listener. Whether unprivileged processes may listen depends on the
    /// kernel's build and version; where they may not, CAP_NET_ADMIN is
    /// needed.
    #[error(
        "the kernel refused this process as a listener of the Linux process connector (os \
         error {code}): this kernel lets only processes with CAP_NET_ADMIN listen; run as root \
         (sudo), or give procexit CAP_NET_ADMIN (as packaging/procexit.service does)"
    )]
    ConnectorPermission {
        /// errno (EPERM = 1).
        code: i32,
    },

    /// Linux: the process connector exists only in the initial network
    /// namespace; inside a container with its own netns it cannot be reached.
    #[error(
        "the Linux process connector is not reachable from this network namespace (os error \
         {code}): run procexit on the host or in the host network namespace"
    )]
    ConnectorUnavailable {
        /// errno (ECONNREFUSED = 111, EPROTONOSUPPORT = 93 without CONFIG_PROC_EVENTS).
        code: i32,
    },

    /// Linux: taskstats was required but the kernel refused the listener.
    #[error(
        "taskstats is not available (os error {code}): it needs root (CAP_NET_ADMIN) in the \
         initial namespaces; run with sudo, or drop the taskstats requirement"
    )]
    TaskstatsUnavailable {
        /// errno (EPERM = 1 without CAP_NET_ADMIN, EINVAL in a pid namespace).
        code: i32,
    },

    /// Linux: the eBPF source was asked for, but this process may not load
    /// BPF programs.
    #[error(
        "the eBPF source needs root, or CAP_BPF and CAP_PERFMON; this process lacks {missing} \
         (os error {code}): run with sudo, grant the capabilities (setcap \
         cap_bpf,cap_perfmon+ep), or use the connector source"
    )]
    EbpfPermission {
        /// The capabilities missing, e.g. `"CAP_PERFMON"`.
        missing: &'static str,
        /// errno (EPERM = 1).
        code: i32,
    },

    /// Linux: the eBPF source could not be loaded for another reason than
    /// privileges (no kernel BTF, a kernel too old for BPF ring buffers, a
    /// program the verifier rejected).
    #[error(
        "the eBPF source could not start: {step} failed: {detail} (os error {code}); it needs \
         a kernel with BTF (/sys/kernel/btf/vmlinux) and BPF ring buffers (5.8 or later): \
         use the connector source"
    )]
    EbpfUnavailable {
        /// What was being done.
        step: &'static str,
        /// The loader's message.
        detail: String,
        /// errno, 0 when the failure was not a system call's.
        code: i32,
    },

    /// Linux: the eBPF source was asked for, and the running kernel lacks
    /// something it needs (asked of the kernel, not guessed from its
    /// version).
    #[error(
        "the eBPF source cannot run on this kernel: it lacks {missing} (os error {code}); use \
         the connector source"
    )]
    EbpfUnsupportedKernel {
        /// What is missing, e.g. `"BPF ring buffers (Linux 5.8 or later)"`.
        missing: &'static str,
        /// errno of the probe that found it missing, 0 when none failed.
        code: i32,
    },

    /// Windows: starting or controlling the trace session was denied.
    #[error(
        "starting a trace session was denied (os error {code}): run as Administrator (a kernel \
         session needs an elevated Administrator or LocalSystem; the Kernel-Process source \
         also runs for members of Performance Log Users)"
    )]
    NotElevated {
        /// ERROR_ACCESS_DENIED = 5.
        code: u32,
    },

    /// Windows: the session started, but this account may not read it in
    /// real time (OpenTraceW was denied).
    #[error(
        "reading the trace session in real time was denied (os error {code}): real-time \
         consumers must be Administrators, members of Performance Log Users, or run as \
         LocalSystem, LocalService or NetworkService"
    )]
    NoConsumerRights {
        /// ERROR_ACCESS_DENIED = 5 from OpenTraceW.
        code: u32,
    },

    /// Windows: ETW exists but does not work here: Wine (detected by
    /// ntdll's `wine_get_version` export), whose ETW functions are stubs.
    #[error(
        "ETW is not available here: {call} failed with os error {code} (Wine and some \
         sandboxes only stub ETW; run on real Windows)"
    )]
    EtwUnavailable {
        /// The Win32 function that failed.
        call: &'static str,
        /// Its Win32 error code.
        code: u32,
    },

    /// Windows: a leftover session of our name could not be stopped (STOP
    /// refused, or the name stayed taken).
    #[error(
        "a trace session named {name:?} already exists and could not be reclaimed (os error \
         {code}): stop it with `logman stop {name:?} -ets` or choose another session name"
    )]
    SessionExists {
        /// The session name.
        name: String,
        /// ERROR_ALREADY_EXISTS = 183, or the code STOP failed with.
        code: u32,
    },

    /// Windows: the session name does not start with
    /// [`SESSION_NAME_PREFIX`](crate::config::SESSION_NAME_PREFIX). procexit
    /// stops a leftover session of its own name, so it refuses names that
    /// could belong to another tool's session.
    #[error(
        "{name:?} cannot be a procexit session name: names must start with \"procexit\" (so that \
         procexit can never stop another tool's session); choose a name like \"procexit-mine\""
    )]
    SessionNameRejected {
        /// The name asked for.
        name: String,
    },

    /// Windows: a session of that name runs, but ETW reports a GUID other
    /// than the one procexit derives from the name: another tool started it,
    /// so procexit leaves it alone.
    #[error(
        "a trace session named {name:?} runs and was not started by procexit (its GUID is not \
         procexit's for that name); procexit never stops it: choose another session name"
    )]
    SessionNotOurs {
        /// The session name.
        name: String,
    },

    /// Windows: another procexit monitor on this machine runs the session
    /// of that name (it holds the name's lock).
    #[error(
        "another procexit monitor is already running session {name:?}{}: stop it first, or give \
         this one another session name (`--session-name procexit-2`)",
        if *other_account { " (its lock is held by another account, such as the procexit service)" } else { "" }
    )]
    AlreadyRunning {
        /// The session name.
        name: String,
        /// The lock exists but this account may not open it: another
        /// account's monitor (the LocalSystem service, for one) holds it.
        other_account: bool,
    },

    /// Windows: the trace session kept being stopped from outside; procexit
    /// restarted it each time until this many stops within a minute.
    #[error(
        "the trace session {name:?} was stopped from outside {times} times within a minute and \
         procexit gave up restarting it: find the tool that stops it (`logman query -ets` lists \
         the running sessions)"
    )]
    SessionKeptStopping {
        /// The session name.
        name: String,
        /// Stops counted within the last minute.
        times: usize,
    },

    /// Windows: too many sessions already enable the provider (ETW allows
    /// up to 8 sessions per manifest provider).
    #[error(
        "too many trace sessions already enable {provider} (os error {code}): stop one you do \
         not need (`logman query -ets` lists them, `logman stop NAME -ets` stops one) or use \
         the kernel session backend"
    )]
    ProviderLimit {
        /// The provider's name.
        provider: &'static str,
        /// ERROR_NO_SYSTEM_RESOURCES = 1450 from EnableTraceEx2.
        code: u32,
    },

    /// Windows: StartTraceW found the system's session limit reached: 64
    /// sessions at once by default (the `EtwMaxLoggers` registry value),
    /// of which at most 8 system loggers.
    #[error("{}", no_session_slots(*code, *kernel))]
    NoSessionSlots {
        /// ERROR_NO_SYSTEM_RESOURCES = 1450.
        code: u32,
        /// Whether it was a kernel (system logger) session that could not
        /// start; `false` for the Kernel-Process source's ordinary session.
        kernel: bool,
    },

    /// The process to wait for does not exist (or already ended).
    #[error("no process with pid {pid} (it does not exist or has already ended)")]
    NoSuchProcess {
        /// The pid asked for.
        pid: u32,
    },

    /// Linux: a waited process ended, but its exit status cannot be
    /// learned: the process connector refused this process as a listener
    /// and the kernel keeps no status on a pidfd (that needs Linux 6.15+,
    /// and the process's parent to have reaped it). Returned by
    /// [`WaitSet::next_exit`](crate::WaitSet::next_exit) for that process
    /// alone: the set goes on with the others.
    #[error(
        "process {pid} ({name}) has ended, but its exit status is unknown: the kernel refused \
         this process as a listener of the process connector (os error {code}) and keeps no \
         status on a pidfd here; run as root (sudo) or with CAP_NET_ADMIN to learn it"
    )]
    ExitStatusUnknown {
        /// The pid that ended.
        pid: u32,
        /// Its name when waiting started (`comm`).
        name: String,
        /// The connector's refusal (errno).
        code: i32,
    },

    /// Not allowed to watch this process.
    #[error("not allowed to watch process {pid} (os error {code}): run with more privileges")]
    ProcessAccessDenied {
        /// The pid asked for.
        pid: u32,
        /// The OS error code.
        code: i32,
    },

    /// The configuration asks for something this OS or build cannot do.
    #[error("{what} is not supported on this platform")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },

    /// An OS call failed in a way none of the variants above describes.
    #[error("{call} failed (os error {code}): {}", io::Error::from_raw_os_error(*code))]
    Os {
        /// The OS function that failed.
        call: &'static str,
        /// errno on Unix, the Win32 error code on Windows.
        code: i32,
    },

    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// The monitor's background thread stopped unexpectedly.
    #[error("the monitor thread stopped unexpectedly: {0}")]
    ThreadPanicked(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// The OS error code carried by this error, if any.
    pub fn os_code(&self) -> Option<i64> {
        match *self {
            Error::ConnectorPermission { code }
            | Error::ConnectorUnavailable { code }
            | Error::EbpfPermission { code, .. }
            | Error::EbpfUnavailable { code, .. }
            | Error::EbpfUnsupportedKernel { code, .. }
            | Error::TaskstatsUnavailable { code }
            | Error::ProcessAccessDenied { code, .. }
            | Error::Os { code, .. } => Some(i64::from(code)),
            Error::NotElevated { code }
            | Error::NoConsumerRights { code }
            | Error::EtwUnavailable { code, .. }
            | Error::SessionExists { code, .. }
            | Error::NoSessionSlots { code, .. }
            | Error::ProviderLimit { code, .. } => Some(i64::from(code)),
            Error::File { ref source, .. } => source.raw_os_error().map(i64::from),
            _ => None,
        }
    }
}

/// The text of [`Error::NoSessionSlots`]: only a kernel session that hit
/// the limit is pointed to the Kernel-Process source (which uses an
/// ordinary session, not one of the 8 system-logger slots).
fn no_session_slots(code: u32, kernel: bool) -> String {
    let common = format!(
        "no free trace session slot (os error {code}): Windows runs at most 64 trace sessions \
         at once (the EtwMaxLoggers value under HKLM\\SYSTEM\\CurrentControlSet\\Control\\WMI, \
         read at boot)"
    );
    if kernel {
        format!(
            "{common}, and at most 8 kernel system loggers among them: stop an unused session \
             (`logman query -ets` lists them, `logman stop NAME -ets` stops one) or use the \
             Kernel-Process source"
        )
    } else {
        format!(
            "{common}: stop an unused session (`logman query -ets` lists them, `logman stop \
             NAME -ets` stops one) or raise EtwMaxLoggers and restart Windows"
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_limit_is_worded_per_session_kind() {
        let kernel = Error::NoSessionSlots {
            code: 1450,
            kernel: true,
        }
        .to_string();
        let ordinary = Error::NoSessionSlots {
            code: 1450,
            kernel: false,
        }
        .to_string();
        for text in [&kernel, &ordinary] {
            assert!(
                text.contains("os error 1450") && text.contains("64"),
                "{text}"
            );
            assert!(text.contains("EtwMaxLoggers"), "{text}");
        }
        assert!(kernel.contains("Kernel-Process source"), "{kernel}");
        // The Kernel-Process source itself hit the limit: never advised.
        assert!(!ordinary.contains("Kernel-Process"), "{ordinary}");
    }

    #[test]
    fn consumer_rights_are_not_elevation_nor_wine() {
        let text = Error::NoConsumerRights { code: 5 }.to_string();
        assert!(text.contains("Performance Log Users"), "{text}");
        assert!(!text.contains("Wine"), "{text}");
        assert_eq!(Error::NoConsumerRights { code: 5 }.os_code(), Some(5));
    }

    /// What `fn main() -> Result<(), Error>` prints after "Error: ".
    #[test]
    fn debug_is_the_message() {
        let error = Error::ConnectorPermission { code: 1 };
        let debug = format!("{error:?}");
        assert_eq!(debug, error.to_string());
        assert!(debug.contains("sudo"), "{debug}");
    }
}

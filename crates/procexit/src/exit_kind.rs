//! One exit taxonomy for every OS: what kind of end a process had
//! ([`ExitKind`]) and the conventional name of its status (`SIGSEGV`,
//! `STATUS_ACCESS_VIOLATION`).
//!
//! Which OS's conventions apply follows the record's [`Source`], not the OS
//! procexit runs on: a `.etl` trace replayed on Linux is named with Windows
//! names. The NTSTATUS names are generated from mingw-w64's `ntstatus.h`
//! (`scripts/gen-ntstatus.sh`), so they are plain data available everywhere.

use std::fmt;

use crate::event::{signal_name, ExitStatus, ProcessExit, Source};
use crate::ntstatus_names::{NTSTATUS_INDEX, WIN32_ERROR_INDEX};

/// `DBG_TERMINATE_PROCESS`: Windows' code for a process it (at shutdown or
/// logoff) or a debugger terminated.
pub const DBG_TERMINATE_PROCESS: u32 = 0x4001_0004;
/// `STATUS_CONTROL_C_EXIT`: a console process ended by Ctrl-C, Ctrl-Break or
/// the closing of its console.
pub const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;

/// What kind of end a process had, on any OS. The JSON key `kind` holds
/// [`ExitKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitKind {
    /// It exited with a code of its own (`exit(3)`, `ExitProcess`, a return
    /// from `main`), successful or not. On Windows also any code that is not
    /// one of the system's statuses below.
    Exited,
    /// A signal killed it and no core dump was written (Unix).
    Signaled,
    /// A signal killed it and the kernel wrote a core dump (Unix).
    CoreDumped,
    /// The Linux OOM killer chose it (only when the source saw this; the
    /// signal is then SIGKILL).
    OomKilled,
    /// Windows ended it with an NTSTATUS error (severity `0xC…`, such as
    /// `0xC0000005 STATUS_ACCESS_VIOLATION`, `0xC0000409
    /// STATUS_STACK_BUFFER_OVERRUN`, `0xC0000135 STATUS_DLL_NOT_FOUND`) or a
    /// named NTSTATUS warning (severity `0x8…`, such as `0x80000003
    /// STATUS_BREAKPOINT`): an unhandled exception, a fail-fast or a failed
    /// start.
    Exception,
    /// `0xC000013A STATUS_CONTROL_C_EXIT`: a Windows console process ended by
    /// Ctrl-C, Ctrl-Break or its console closing.
    CtrlC,
    /// `0x40010004 DBG_TERMINATE_PROCESS`: Windows terminated it at shutdown
    /// or logoff, or a debugger did.
    Terminated,
}

impl ExitKind {
    /// The stable string used in the JSON form: `exited`, `signaled`,
    /// `core_dumped`, `oom_killed`, `exception`, `ctrl_c`, `terminated`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitKind::Exited => "exited",
            ExitKind::Signaled => "signaled",
            ExitKind::CoreDumped => "core_dumped",
            ExitKind::OomKilled => "oom_killed",
            ExitKind::Exception => "exception",
            ExitKind::CtrlC => "ctrl_c",
            ExitKind::Terminated => "terminated",
        }
    }

    /// The kind of an exit status. `windows_codes` says whether a code
    /// follows Windows conventions (NTSTATUS values); `oom_killed` is the
    /// record's [`ProcessExit::oom_killed`].
    pub fn classify(status: ExitStatus, windows_codes: bool, oom_killed: Option<bool>) -> ExitKind {
        if oom_killed == Some(true) {
            return ExitKind::OomKilled;
        }
        match status {
            ExitStatus::Signal {
                core_dumped: true, ..
            } => ExitKind::CoreDumped,
            ExitStatus::Signal { .. } => ExitKind::Signaled,
            ExitStatus::Code(code) if windows_codes => windows_kind(code),
            ExitStatus::Code(_) => ExitKind::Exited,
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn windows_kind(code: u32) -> ExitKind {
    match code {
        DBG_TERMINATE_PROCESS => ExitKind::Terminated,
        STATUS_CONTROL_C_EXIT => ExitKind::CtrlC,
        _ => match severity(code) {
            Severity::Error => ExitKind::Exception,
            Severity::Warning if ntstatus_name(code).is_some() => ExitKind::Exception,
            _ => ExitKind::Exited,
        },
    }
}

#[derive(PartialEq, Eq)]
enum Severity {
    Success,
    Informational,
    Warning,
    Error,
}

/// The two top bits of an NTSTATUS.
fn severity(code: u32) -> Severity {
    match code >> 30 {
        0 => Severity::Success,
        1 => Severity::Informational,
        2 => Severity::Warning,
        _ => Severity::Error,
    }
}

/// The name mingw-w64's `ntstatus.h` gives an NTSTATUS code
/// (`0xC0000005` → `STATUS_ACCESS_VIOLATION`), for any code the header
/// defines, including success codes such as `STATUS_WAIT_1` = 1: use
/// [`windows_status_name`] to name exit codes.
///
/// ```
/// assert_eq!(procexit::ntstatus_name(0xC000_013A), Some("STATUS_CONTROL_C_EXIT"));
/// assert_eq!(procexit::ntstatus_name(0x4001_0004), Some("DBG_TERMINATE_PROCESS"));
/// assert_eq!(procexit::ntstatus_name(0x1234_5678), None);
/// ```
pub fn ntstatus_name(code: u32) -> Option<&'static str> {
    table_name(NTSTATUS_INDEX, name_texts()?.0, code)
}

/// The name mingw-w64's `winerror.h` gives a Win32 error code
/// (`5` → `ERROR_ACCESS_DENIED`).
///
/// ```
/// assert_eq!(procexit::win32_error_name(1067), Some("ERROR_PROCESS_ABORTED"));
/// assert_eq!(procexit::win32_error_name(70_000), None);
/// ```
pub fn win32_error_name(code: u32) -> Option<&'static str> {
    let code = u16::try_from(code).ok()?;
    table_name(WIN32_ERROR_INDEX, name_texts()?.1, code)
}

/// The names of both tables of `ntstatus_names.rs` (NTSTATUS, Win32), back
/// to back, as build.rs packed them from that file's `*_TEXT` statics.
static PACKED_NAMES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/status_names.deflate"));

/// Where the NTSTATUS names end, and the Win32 ones, in the inflated text.
const PACKED_NAMES_LEN: (usize, usize) = include!(concat!(env!("OUT_DIR"), "/status_names.len"));

/// The text of the NTSTATUS names and of the Win32 error names, inflated
/// on first use and kept for the process's life (None, naming nothing,
/// if the packed copy were damaged).
fn name_texts() -> Option<(&'static str, &'static str)> {
    static NAMES: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let all = NAMES
        .get_or_init(|| {
            let (_, len) = PACKED_NAMES_LEN;
            let bytes =
                miniz_oxide::inflate::decompress_to_vec_with_limit(PACKED_NAMES, len).ok()?;
            String::from_utf8(bytes).ok()
        })
        .as_deref()?;
    all.split_at_checked(PACKED_NAMES_LEN.0)
}

/// The name of `code` in a generated table (`ntstatus_names.rs`): `index`
/// holds `(code, end)` sorted by code, and the name is the part of `text`
/// from the previous entry's end (0 for the first) to `end`.
fn table_name<C: Ord + Copy>(
    index: &[(C, u32)],
    text: &'static str,
    code: C,
) -> Option<&'static str> {
    let i = index.binary_search_by_key(&code, |&(c, _)| c).ok()?;
    let start = match i.checked_sub(1) {
        Some(previous) => index.get(previous)?.1,
        None => 0,
    };
    let end = index.get(i)?.1;
    text.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
}

/// `HRESULT_FROM_WIN32`: a Win32 error carried as an HRESULT, `0x8007xxxx`.
const HRESULT_WIN32_PREFIX: u32 = 0x8007;

/// The name of a Windows exit code, when it is a system status: an NTSTATUS
/// of informational, warning or error severity (`0x4…`–`0xF…`) that
/// `ntstatus.h` names, or an HRESULT that wraps a Win32 error
/// (`0x8007042B` → `ERROR_PROCESS_ABORTED`). Codes below `0x40000000` are
/// left unnamed: there programs choose their own meanings (`exit(1)` is
/// not `STATUS_WAIT_1`, nor `ERROR_INVALID_FUNCTION`).
///
/// ```
/// assert_eq!(procexit::windows_status_name(0xC000_0005), Some("STATUS_ACCESS_VIOLATION"));
/// assert_eq!(procexit::windows_status_name(0x8007_0005), Some("ERROR_ACCESS_DENIED"));
/// assert_eq!(procexit::windows_status_name(1), None);
/// ```
pub fn windows_status_name(code: u32) -> Option<&'static str> {
    if severity(code) == Severity::Success {
        return None;
    }
    ntstatus_name(code).or_else(|| {
        (code >> 16 == HRESULT_WIN32_PREFIX)
            .then(|| win32_error_name(code & 0xFFFF))
            .flatten()
    })
}

impl Source {
    /// Whether this source reports Windows exits, whose codes follow Windows
    /// conventions (NTSTATUS values) whatever OS reads them (`.etl` files are
    /// read on Linux too).
    pub fn is_windows(self) -> bool {
        match self {
            Source::LinuxConnector | Source::LinuxTaskstats | Source::LinuxEbpf => false,
            Source::EtwKernel | Source::EtwKernelProcess | Source::EtlFile => true,
            // Only the Windows backend waits on process handles.
            Source::Handle => true,
        }
    }
}

impl ProcessExit {
    /// What kind of end this was (JSON key `kind`).
    ///
    /// ```
    /// use procexit::{ExitKind, ExitStatus, ProcessExit, Source};
    ///
    /// let crash = ProcessExit::new(7, ExitStatus::Code(0xC000_0005), Source::EtlFile);
    /// assert_eq!(crash.kind(), ExitKind::Exception);
    /// let segv = ExitStatus::Signal { signal: 11, core_dumped: true };
    /// assert_eq!(ProcessExit::new(7, segv, Source::LinuxConnector).kind(), ExitKind::CoreDumped);
    /// ```
    pub fn kind(&self) -> ExitKind {
        ExitKind::classify(self.status, self.source.is_windows(), self.oom_killed)
    }

    /// The conventional name of the status (JSON key `status_name`): the
    /// signal's name (`SIGSEGV`) for a signal, the NTSTATUS name
    /// (`STATUS_ACCESS_VIOLATION`) for a Windows system status (see
    /// [`windows_status_name`]), `None` for a program's own exit code.
    pub fn status_name(&self) -> Option<&'static str> {
        match self.status {
            ExitStatus::Signal { signal, .. } => signal_name(signal),
            ExitStatus::Code(code) if self.source.is_windows() => windows_status_name(code),
            ExitStatus::Code(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(code: u32) -> ProcessExit {
        ProcessExit::new(1, ExitStatus::Code(code), Source::EtlFile)
    }

    fn linux(status: ExitStatus) -> ProcessExit {
        ProcessExit::new(1, status, Source::LinuxConnector)
    }

    #[test]
    fn table_is_sorted_with_one_name_per_code() {
        assert!(
            NTSTATUS_INDEX.len() > 1500,
            "{} names",
            NTSTATUS_INDEX.len()
        );
        assert!(NTSTATUS_INDEX.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            WIN32_ERROR_INDEX.len() > 1500,
            "{}",
            WIN32_ERROR_INDEX.len()
        );
        assert!(WIN32_ERROR_INDEX.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(win32_error_name(0), Some("ERROR_SUCCESS"));
        assert_eq!(win32_error_name(2), Some("ERROR_FILE_NOT_FOUND"));
        assert_eq!(win32_error_name(15841), Some("ERROR_API_UNAVAILABLE"));
    }

    /// Every entry's slice of the text is a whole name: the ends rise, the
    /// last one closes the text, and each name is one identifier with its
    /// table's usual prefix (a wrong offset would cut names apart).
    #[test]
    fn every_name_is_a_whole_identifier() {
        fn check<C: Ord + Copy + fmt::Debug>(
            index: &[(C, u32)],
            text: &'static str,
            prefixes: &[&str],
        ) {
            assert!(index.windows(2).all(|w| w[0].1 < w[1].1));
            assert_eq!(index.last().map(|&(_, end)| end as usize), Some(text.len()));
            for &(code, _) in index {
                let name = table_name(index, text, code).unwrap();
                assert!(
                    prefixes.iter().any(|p| name.starts_with(p))
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !name.ends_with('_'),
                    "{code:?} → {name:?}"
                );
            }
        }
        use crate::ntstatus_names::{NTSTATUS_TEXT, WIN32_ERROR_TEXT};
        check(
            NTSTATUS_INDEX,
            NTSTATUS_TEXT,
            &["STATUS_", "DBG_", "RPC_NT_", "EPT_NT_"],
        );
        check(WIN32_ERROR_INDEX, WIN32_ERROR_TEXT, &["ERROR_"]);
        // What the lookups use is what build.rs packed from these texts.
        assert_eq!(name_texts(), Some((NTSTATUS_TEXT, WIN32_ERROR_TEXT)));
        assert_eq!(win32_error_name(1067), Some("ERROR_PROCESS_ABORTED"));
        assert_eq!(ntstatus_name(1), Some("STATUS_WAIT_1"));
    }

    #[test]
    fn ntstatus_names_users_meet() {
        for (code, name) in [
            (0xC000_0005, "STATUS_ACCESS_VIOLATION"),
            (0xC000_013A, "STATUS_CONTROL_C_EXIT"),
            (0x4001_0004, "DBG_TERMINATE_PROCESS"),
            (0xC000_0409, "STATUS_STACK_BUFFER_OVERRUN"),
            (0xC000_0135, "STATUS_DLL_NOT_FOUND"),
            (0xC000_00FD, "STATUS_STACK_OVERFLOW"),
            (0xC000_001D, "STATUS_ILLEGAL_INSTRUCTION"),
            (0xC000_0094, "STATUS_INTEGER_DIVIDE_BY_ZERO"),
            (0xC000_0374, "STATUS_HEAP_CORRUPTION"),
            (0x8000_0003, "STATUS_BREAKPOINT"),
            (0x4000_0015, "STATUS_FATAL_APP_EXIT"),
            // Two names for 0: the header's first one wins.
            (0, "STATUS_SUCCESS"),
            // The last code of the table is found too.
            (0xC03A_0019, "STATUS_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT"),
        ] {
            assert_eq!(ntstatus_name(code), Some(name), "{code:#x}");
        }
        assert_eq!(ntstatus_name(0xFFFF_FFFF), None);
        assert_eq!(ntstatus_name(0xC000_0004 + 0x10_0000), None);
    }

    #[test]
    fn windows_kinds_and_names() {
        let cases = [
            (0, ExitKind::Exited, None),
            (1, ExitKind::Exited, None),
            (259, ExitKind::Exited, None),
            (
                0xC000_0005,
                ExitKind::Exception,
                Some("STATUS_ACCESS_VIOLATION"),
            ),
            (
                0xC000_0409,
                ExitKind::Exception,
                Some("STATUS_STACK_BUFFER_OVERRUN"),
            ),
            (
                0xC000_0135,
                ExitKind::Exception,
                Some("STATUS_DLL_NOT_FOUND"),
            ),
            (0x8000_0003, ExitKind::Exception, Some("STATUS_BREAKPOINT")),
            (0xC000_013A, ExitKind::CtrlC, Some("STATUS_CONTROL_C_EXIT")),
            (
                0x4001_0004,
                ExitKind::Terminated,
                Some("DBG_TERMINATE_PROCESS"),
            ),
            (0x4000_0015, ExitKind::Exited, Some("STATUS_FATAL_APP_EXIT")),
            // An error-severity code nobody named is still an exception.
            (0xE043_4352, ExitKind::Exception, None),
            // A warning-severity code that is no NTSTATUS (an HRESULT such
            // as E_FAIL) is the program's own.
            (0x8000_4005, ExitKind::Exited, None),
            // An HRESULT wrapping a Win32 error is named by that error.
            (0x8007_042B, ExitKind::Exited, Some("ERROR_PROCESS_ABORTED")),
            (0x8007_0005, ExitKind::Exited, Some("ERROR_ACCESS_DENIED")),
        ];
        for (code, kind, name) in cases {
            let exit = windows(code);
            assert_eq!(exit.kind(), kind, "{code:#x}");
            assert_eq!(exit.status_name(), name, "{code:#x}");
        }
    }

    #[test]
    fn linux_kinds_and_names() {
        let exit = linux(ExitStatus::Code(42));
        assert_eq!((exit.kind(), exit.status_name()), (ExitKind::Exited, None));
        // A Linux code is never read as an NTSTATUS.
        let exit = linux(ExitStatus::Code(0xC000_0005));
        assert_eq!((exit.kind(), exit.status_name()), (ExitKind::Exited, None));
        let kill = ExitStatus::Signal {
            signal: 9,
            core_dumped: false,
        };
        let exit = linux(kill);
        assert_eq!(
            (exit.kind(), exit.status_name()),
            (ExitKind::Signaled, Some("SIGKILL"))
        );
        let mut oom = linux(kill);
        oom.oom_killed = Some(true);
        assert_eq!(oom.kind(), ExitKind::OomKilled);
        oom.oom_killed = Some(false);
        assert_eq!(oom.kind(), ExitKind::Signaled);
        let exit = linux(ExitStatus::Signal {
            signal: 11,
            core_dumped: true,
        });
        assert_eq!(
            (exit.kind(), exit.status_name()),
            (ExitKind::CoreDumped, Some("SIGSEGV"))
        );
    }

    #[test]
    fn kind_strings_are_distinct() {
        let all = [
            ExitKind::Exited,
            ExitKind::Signaled,
            ExitKind::CoreDumped,
            ExitKind::OomKilled,
            ExitKind::Exception,
            ExitKind::CtrlC,
            ExitKind::Terminated,
        ];
        let mut names: Vec<_> = all.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}

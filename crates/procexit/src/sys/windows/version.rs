//! Which session to start, decided from the Windows version and the
//! options (reference §3). Pure, so every branch is tested.

use windows_sys::Win32::System::Diagnostics::Etw::{
    EVENT_TRACE_FLAG_NO_SYSCONFIG, EVENT_TRACE_FLAG_PROCESS, EVENT_TRACE_INDEPENDENT_SESSION_MODE,
    EVENT_TRACE_REAL_TIME_MODE, EVENT_TRACE_SYSTEM_LOGGER_MODE,
};

use crate::error::{Error, Result};
use crate::monitor::Backend;

/// The name Windows gives the one classic kernel session.
pub(crate) const NT_KERNEL_LOGGER: &str = "NT Kernel Logger";

/// A Windows version as RtlGetVersion reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OsVersion {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) build: u32,
}

impl OsVersion {
    pub(crate) fn current() -> OsVersion {
        let (major, minor, build) = super::ffi::os_version();
        OsVersion {
            major,
            minor,
            build,
        }
    }

    fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Windows 8 / Server 2012: private system loggers.
    pub(crate) fn has_system_logger(self) -> bool {
        self.at_least(6, 2)
    }

    /// Windows 8.1 / Server 2012 R2: EVENT_TRACE_INDEPENDENT_SESSION_MODE.
    pub(crate) fn has_independent_sessions(self) -> bool {
        self.at_least(6, 3)
    }
}

/// The kind of session a monitor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Win8+: a private system logger with the kernel Process flag.
    PrivateKernel { independent: bool },
    /// Win7 with the opt-in: the shared "NT Kernel Logger".
    NtKernelLogger,
    /// Microsoft-Windows-Kernel-Process on an ordinary real-time session.
    KernelProcess,
}

impl Plan {
    /// The plan for `backend` on `os`. `Auto` prefers the kernel session; on
    /// Windows 7 without the opt-in it uses Kernel-Process, which any
    /// Windows since 7 has and which never touches the NT Kernel Logger.
    pub(crate) fn choose(
        backend: Backend,
        os: OsVersion,
        allow_nt_kernel_logger: bool,
    ) -> Result<Plan> {
        let kernel = if os.has_system_logger() {
            Some(Plan::PrivateKernel {
                independent: os.has_independent_sessions(),
            })
        } else if allow_nt_kernel_logger {
            Some(Plan::NtKernelLogger)
        } else {
            None
        };
        match backend {
            Backend::EtwKernelProcess => Ok(Plan::KernelProcess),
            Backend::EtwKernel => kernel.ok_or(Error::Unsupported {
                what: "a kernel session before Windows 8 without allow_nt_kernel_logger",
            }),
            Backend::LinuxConnector => Err(Error::Unsupported {
                what: "the Linux process connector",
            }),
            Backend::LinuxEbpf => Err(Error::Unsupported {
                what: "the Linux eBPF source",
            }),
            _ => Ok(kernel.unwrap_or(Plan::KernelProcess)),
        }
    }

    /// LogFileMode for StartTraceW.
    pub(crate) fn log_file_mode(self) -> u32 {
        match self {
            Plan::PrivateKernel { independent } => {
                let mode = EVENT_TRACE_REAL_TIME_MODE | EVENT_TRACE_SYSTEM_LOGGER_MODE;
                if independent {
                    mode | EVENT_TRACE_INDEPENDENT_SESSION_MODE
                } else {
                    mode
                }
            }
            Plan::NtKernelLogger | Plan::KernelProcess => EVENT_TRACE_REAL_TIME_MODE,
        }
    }

    /// EnableFlags for StartTraceW (kernel sessions must set them).
    pub(crate) fn enable_flags(self) -> u32 {
        match self {
            Plan::PrivateKernel { .. } => EVENT_TRACE_FLAG_PROCESS | EVENT_TRACE_FLAG_NO_SYSCONFIG,
            // NO_SYSCONFIG is Win8+.
            Plan::NtKernelLogger => EVENT_TRACE_FLAG_PROCESS,
            Plan::KernelProcess => 0,
        }
    }

    /// Whether a session of this plan that is already running and is not
    /// ours may be stopped. Only our own named sessions are reclaimed.
    pub(crate) fn may_stop_existing(self) -> bool {
        !matches!(self, Plan::NtKernelLogger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIN7: OsVersion = OsVersion {
        major: 6,
        minor: 1,
        build: 7601,
    };
    const WIN8: OsVersion = OsVersion {
        major: 6,
        minor: 2,
        build: 9200,
    };
    const WIN10: OsVersion = OsVersion {
        major: 10,
        minor: 0,
        build: 19045,
    };

    #[test]
    fn plans_per_version() {
        let auto = |os, nt| Plan::choose(Backend::Auto, os, nt).unwrap();
        assert_eq!(
            auto(WIN10, false),
            Plan::PrivateKernel { independent: true }
        );
        assert_eq!(
            auto(WIN8, false),
            Plan::PrivateKernel { independent: false }
        );
        assert_eq!(auto(WIN7, false), Plan::KernelProcess);
        assert_eq!(auto(WIN7, true), Plan::NtKernelLogger);
        assert!(matches!(
            Plan::choose(Backend::EtwKernel, WIN7, false),
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(
            Plan::choose(Backend::EtwKernelProcess, WIN10, false).unwrap(),
            Plan::KernelProcess
        );
    }

    #[test]
    fn modes_and_flags() {
        let p = Plan::PrivateKernel { independent: true };
        assert_eq!(p.log_file_mode(), 0x0200_0100 | 0x0800_0000);
        assert_eq!(p.enable_flags(), 0x1000_0001);
        assert_eq!(Plan::NtKernelLogger.log_file_mode(), 0x100);
        assert_eq!(Plan::NtKernelLogger.enable_flags(), 1);
        assert!(!Plan::NtKernelLogger.may_stop_existing());
        assert_eq!(Plan::KernelProcess.enable_flags(), 0);
    }

    #[test]
    fn wine_reports_a_version() {
        // A fresh Wine prefix says 6.1.7601; CI sets win10 (10.0.18362).
        assert!(OsVersion::current() >= WIN7);
    }
}

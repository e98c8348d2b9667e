//! Which session to start, decided from the options. Pure, so every branch
//! is tested.
//!
//! Every build runs on Windows 10 / Server 2016 or later only (Rust's std
//! imports `ProcessPrng`, which older Windows lacks), so private system
//! loggers (Windows 8+) and independent sessions (8.1+) are always there.

use windows_sys::Win32::System::Diagnostics::Etw::{
    EVENT_TRACE_FLAG_NO_SYSCONFIG, EVENT_TRACE_FLAG_PROCESS, EVENT_TRACE_INDEPENDENT_SESSION_MODE,
    EVENT_TRACE_REAL_TIME_MODE, EVENT_TRACE_SYSTEM_LOGGER_MODE,
};

use crate::backend::Backend;
use crate::error::{Error, Result};

/// The kind of session a monitor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A private system logger with the kernel Process flag.
    /// `independent` adds EVENT_TRACE_INDEPENDENT_SESSION_MODE.
    PrivateKernel { independent: bool },
    /// Microsoft-Windows-Kernel-Process on an ordinary real-time session.
    KernelProcess,
}

impl Plan {
    /// The plan for `backend`: `Auto` starts with the kernel session.
    pub(crate) fn choose(backend: Backend) -> Result<Plan> {
        match backend {
            Backend::EtwKernelProcess => Ok(Plan::KernelProcess),
            Backend::LinuxConnector => Err(Error::Unsupported {
                what: "the Linux process connector",
            }),
            Backend::LinuxEbpf => Err(Error::Unsupported {
                what: "the Linux eBPF source",
            }),
            _ => Ok(Plan::PrivateKernel { independent: true }),
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
            Plan::KernelProcess => EVENT_TRACE_REAL_TIME_MODE,
        }
    }

    /// EnableFlags for StartTraceW (kernel sessions must set them).
    pub(crate) fn enable_flags(self) -> u32 {
        match self {
            Plan::PrivateKernel { .. } => EVENT_TRACE_FLAG_PROCESS | EVENT_TRACE_FLAG_NO_SYSCONFIG,
            Plan::KernelProcess => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_per_backend() {
        let kernel = Plan::PrivateKernel { independent: true };
        assert_eq!(Plan::choose(Backend::Auto).unwrap(), kernel);
        assert_eq!(Plan::choose(Backend::EtwKernel).unwrap(), kernel);
        assert_eq!(
            Plan::choose(Backend::EtwKernelProcess).unwrap(),
            Plan::KernelProcess
        );
        for linux in [Backend::LinuxConnector, Backend::LinuxEbpf] {
            assert!(matches!(
                Plan::choose(linux),
                Err(Error::Unsupported { .. })
            ));
        }
    }

    #[test]
    fn modes_and_flags() {
        let p = Plan::PrivateKernel { independent: true };
        assert_eq!(p.log_file_mode(), 0x0200_0100 | 0x0800_0000);
        assert_eq!(
            Plan::PrivateKernel { independent: false }.log_file_mode(),
            0x0200_0100
        );
        assert_eq!(p.enable_flags(), 0x1000_0001);
        assert_eq!(Plan::KernelProcess.log_file_mode(), 0x100);
        assert_eq!(Plan::KernelProcess.enable_flags(), 0);
    }
}

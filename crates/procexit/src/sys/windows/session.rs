//! The controller side: start (or reclaim, or attach to) the session,
//! flush, query loss counters, stop. Never stops a session that is not
//! ours: only our own name is reclaimed, and never the NT Kernel Logger.

#![allow(unsafe_code)]

use std::time::Duration;

use windows_sys::Win32::Foundation::WIN32_ERROR;
use windows_sys::Win32::System::Diagnostics::Etw::{
    ControlTraceW, EnableTraceEx2, StartTraceW, CONTROLTRACE_HANDLE,
    EVENT_CONTROL_CODE_ENABLE_PROVIDER, EVENT_TRACE_CONTROL_FLUSH, EVENT_TRACE_CONTROL_QUERY,
    EVENT_TRACE_CONTROL_STOP, TRACE_LEVEL_INFORMATION,
};

use super::ffi::{
    etw_error, os_error, wide, win_guid, ACCESS_DENIED, ALREADY_EXISTS, INVALID_PARAMETER,
    MORE_DATA, NOT_RUNNING,
};
use super::properties::{
    default_buffers, session_guid, LossCounters, PropertiesBuf, SessionConfig, MAX_NAME_UNITS,
    SYSTEM_TRACE_CONTROL_GUID,
};
use super::version::{Plan, NT_KERNEL_LOGGER};
use crate::config::WindowsOptions;
use crate::decode::KERNEL_PROCESS_GUID;
use crate::error::{Error, Result};

/// WINEVENT_KEYWORD_PROCESS of Microsoft-Windows-Kernel-Process.
const KEYWORD_PROCESS: u64 = 0x10;

/// Waits between STOP and the next StartTraceW while reclaiming a stale
/// session (STOP can return before the name is free; krabsetw PR #226).
const RECLAIM_BACKOFF: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
];

/// How StartTraceW (with reclaiming) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// We started the session and own it.
    Started,
    /// A session of that name runs and could not (or may not) be restarted:
    /// consume it as it is, never stop it.
    Attach,
    /// StartTraceW failed with this code.
    Failed(WIN32_ERROR),
}

/// StartTraceW with stale-session reclaiming (docs/etw-process-events.md §4.2): on
/// ERROR_ALREADY_EXISTS stop the session by name and retry with backoff;
/// when STOP is refused (5, or 87 on some versions) or retries run out,
/// attach. `may_stop` = false attaches at once.
pub(crate) fn start_with_reclaim(
    may_stop: bool,
    mut start: impl FnMut() -> WIN32_ERROR,
    mut stop: impl FnMut() -> WIN32_ERROR,
    mut sleep: impl FnMut(Duration),
) -> Outcome {
    let mut rc = start();
    if rc == ALREADY_EXISTS && !may_stop {
        return Outcome::Attach;
    }
    for pause in RECLAIM_BACKOFF {
        if rc != ALREADY_EXISTS {
            break;
        }
        let stopped = stop();
        if stopped == ACCESS_DENIED || stopped == INVALID_PARAMETER {
            return Outcome::Attach;
        }
        sleep(pause);
        rc = start();
    }
    match rc {
        0 => Outcome::Started,
        ALREADY_EXISTS => Outcome::Attach,
        code => Outcome::Failed(code),
    }
}

/// A running session we control (or attached to).
pub(crate) struct Session {
    pub(crate) plan: Plan,
    name: String,
    wide_name: Vec<u16>,
    handle: CONTROLTRACE_HANDLE,
    /// Started by us: we stop it. Attached sessions are only consumed.
    pub(crate) owned: bool,
    stopped: bool,
}

impl Session {
    /// Starts the session for `plan` with the options' name and buffers.
    pub(crate) fn start(plan: Plan, options: &WindowsOptions) -> Result<Session> {
        let name = match plan {
            Plan::NtKernelLogger => NT_KERNEL_LOGGER.to_owned(),
            _ => options.session_name_str().to_owned(),
        };
        if name.is_empty() || name.contains('\0') || name.encode_utf16().count() > MAX_NAME_UNITS {
            return Err(Error::Unsupported {
                what: "an empty session name, one with NUL, or one over 200 UTF-16 units",
            });
        }
        // Our own names are reclaimed (stopped) on ERROR_ALREADY_EXISTS, so
        // they must never name a kernel logger another tool may run.
        if plan != Plan::NtKernelLogger && is_reserved_name(&name) {
            return Err(Error::Unsupported {
                what: "a session name Windows reserves for a kernel logger",
            });
        }
        let config = session_config(plan, &name, options);
        let mut session = Session {
            plan,
            wide_name: wide(&name),
            name,
            handle: CONTROLTRACE_HANDLE { Value: 0 },
            owned: false,
            stopped: false,
        };
        let mut handle = CONTROLTRACE_HANDLE { Value: 0 };
        let outcome = start_with_reclaim(
            plan.may_stop_existing(),
            || {
                let mut props = PropertiesBuf::start(&config);
                // SAFETY: `props` is a properties buffer whose BufferSize and
                // LoggerNameOffset describe its own allocation; the name is
                // NUL-terminated; both outlive the call.
                unsafe { StartTraceW(&mut handle, session.wide_name.as_ptr(), props.as_mut_ptr()) }
            },
            || session.control(EVENT_TRACE_CONTROL_STOP).err().unwrap_or(0),
            std::thread::sleep,
        );
        match outcome {
            Outcome::Started => {
                session.handle = handle;
                session.owned = true;
            }
            Outcome::Attach => {}
            // INDEPENDENT_SESSION_MODE is documented for 8.1+ but not for
            // system loggers; a build that refuses the pair gets it without.
            Outcome::Failed(INVALID_PARAMETER)
                if plan == (Plan::PrivateKernel { independent: true }) =>
            {
                drop(session);
                return Session::start(Plan::PrivateKernel { independent: false }, options);
            }
            Outcome::Failed(code) => return Err(etw_error("StartTraceW", code, &session.name)),
        }
        if plan == Plan::KernelProcess && session.owned {
            session.enable_kernel_process()?;
        }
        Ok(session)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn enable_kernel_process(&mut self) -> Result<()> {
        let provider = win_guid(&KERNEL_PROCESS_GUID);
        // SAFETY: the handle came from our StartTraceW; the GUID outlives
        // the call; NULL enable parameters are allowed.
        let rc = unsafe {
            EnableTraceEx2(
                self.handle,
                &provider,
                EVENT_CONTROL_CODE_ENABLE_PROVIDER,
                TRACE_LEVEL_INFORMATION as u8,
                KEYWORD_PROCESS,
                0,
                0,
                std::ptr::null(),
            )
        };
        match rc {
            0 => Ok(()),
            code => {
                let _ = self.stop();
                Err(etw_error("EnableTraceEx2", code, &self.name))
            }
        }
    }

    /// ControlTraceW by handle and name with a fresh properties buffer.
    fn control(&self, code: u32) -> std::result::Result<Box<PropertiesBuf>, WIN32_ERROR> {
        let mut props = PropertiesBuf::control();
        // SAFETY: as for StartTraceW: a self-describing properties buffer
        // and a NUL-terminated name, both alive across the call.
        let rc = unsafe {
            ControlTraceW(
                self.handle,
                self.wide_name.as_ptr(),
                props.as_mut_ptr(),
                code,
            )
        };
        match rc {
            0 => Ok(props),
            rc => Err(rc),
        }
    }

    /// Asks ETW to hand partly filled buffers to the consumer now.
    pub(crate) fn flush(&self) -> Result<()> {
        self.control(EVENT_TRACE_CONTROL_FLUSH)
            .map(drop)
            .map_err(|code| etw_error("ControlTraceW", code, &self.name))
    }

    /// The cumulative loss counters.
    pub(crate) fn query(&self) -> Result<LossCounters> {
        self.control(EVENT_TRACE_CONTROL_QUERY)
            .map(|p| p.counters())
            .map_err(|code| etw_error("ControlTraceW", code, &self.name))
    }

    /// Stops the session if we own it; returns the final counters when ETW
    /// gave them. Idempotent; "not running" is not an error.
    pub(crate) fn stop(&mut self) -> Result<Option<LossCounters>> {
        if self.stopped || !self.owned {
            return Ok(None);
        }
        self.stopped = true;
        match self.control(EVENT_TRACE_CONTROL_STOP) {
            Ok(props) => Ok(Some(props.counters())),
            // 234: the session was stopped, only the names did not fit.
            Err(NOT_RUNNING | MORE_DATA) => Ok(None),
            Err(code) => Err(os_error("ControlTraceW", code)),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Errors were reported by an explicit stop(); this only makes sure
        // a session we started does not outlive us.
        let _ = self.stop();
    }
}

/// The kernel loggers Windows reserves by name; ETW compares session names
/// without regard to case.
fn is_reserved_name(name: &str) -> bool {
    let folded = name.to_uppercase();
    [NT_KERNEL_LOGGER, "Circular Kernel Context Logger"]
        .iter()
        .any(|reserved| folded == reserved.to_uppercase())
}

fn session_config(plan: Plan, name: &str, options: &WindowsOptions) -> SessionConfig {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (default_min, default_max) = default_buffers(u32::try_from(cpus).unwrap_or(u32::MAX));
    let (min, max) = options.buffer_counts();
    let min_buffers = min.unwrap_or(default_min);
    SessionConfig {
        guid: match plan {
            Plan::NtKernelLogger => SYSTEM_TRACE_CONTROL_GUID,
            _ => session_guid(name),
        },
        log_file_mode: plan.log_file_mode(),
        enable_flags: plan.enable_flags(),
        buffer_size_kb: options.buffer_size().clamp(4, 1024),
        min_buffers,
        max_buffers: max.unwrap_or(default_max).max(min_buffers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Runs the reclaim logic against scripted StartTraceW/STOP results.
    fn run(may_stop: bool, starts: &[u32], stops: &[u32]) -> (Outcome, usize, usize) {
        let starts = RefCell::new(starts.iter().copied());
        let stops = RefCell::new(stops.iter().copied());
        let (n_start, n_stop) = (RefCell::new(0), RefCell::new(0));
        let outcome = start_with_reclaim(
            may_stop,
            || {
                *n_start.borrow_mut() += 1;
                starts.borrow_mut().next().unwrap_or(ALREADY_EXISTS)
            },
            || {
                *n_stop.borrow_mut() += 1;
                stops.borrow_mut().next().unwrap_or(0)
            },
            |_| {},
        );
        (outcome, n_start.into_inner(), n_stop.into_inner())
    }

    #[test]
    fn reclaim_paths() {
        assert_eq!(run(true, &[0], &[]), (Outcome::Started, 1, 0));
        // Stale session of ours: stop, retry, started.
        assert_eq!(run(true, &[183, 0], &[0]), (Outcome::Started, 2, 1));
        // STOP "succeeds" but the name is still taken twice (PR #226 case).
        assert_eq!(
            run(true, &[183, 183, 183, 0], &[]),
            (Outcome::Started, 4, 3)
        );
        // Never frees up: attach after the last backoff.
        assert_eq!(run(true, &[], &[]), (Outcome::Attach, 5, 4));
        // Not allowed to stop it: attach, no retry.
        assert_eq!(run(true, &[183], &[5]), (Outcome::Attach, 1, 1));
        assert_eq!(run(true, &[183], &[87]), (Outcome::Attach, 1, 1));
        // The NT Kernel Logger of another tool is never stopped.
        assert_eq!(run(false, &[183], &[]), (Outcome::Attach, 1, 0));
        assert_eq!(run(true, &[5], &[]), (Outcome::Failed(5), 1, 0));
        assert_eq!(run(true, &[1450], &[]), (Outcome::Failed(1450), 1, 0));
        assert_eq!(
            run(true, &[183, 1450], &[4201]),
            (Outcome::Failed(1450), 2, 1)
        );
    }

    #[test]
    fn kernel_logger_names_are_never_ours() {
        // Rejected before any ETW call, so a 183 can never make us STOP
        // another tool's kernel logger by name.
        for name in [
            "NT Kernel Logger",
            "nt kernel logger",
            "Circular Kernel Context Logger",
        ] {
            let options = WindowsOptions::new().session_name(name);
            for plan in [
                Plan::PrivateKernel { independent: true },
                Plan::KernelProcess,
            ] {
                assert!(
                    matches!(
                        Session::start(plan, &options),
                        Err(Error::Unsupported { .. })
                    ),
                    "{name} / {plan:?}"
                );
            }
        }
        assert!(!is_reserved_name("procexit"));
        assert!(!is_reserved_name("NT Kernel Logger 2"));
    }

    #[test]
    fn config_defaults_and_overrides() {
        let plan = Plan::PrivateKernel { independent: true };
        let c = session_config(plan, "procexit", &WindowsOptions::new());
        assert_eq!(c.buffer_size_kb, 64);
        assert!(c.min_buffers >= 32 && c.max_buffers >= c.min_buffers);
        assert_eq!(c.guid, session_guid("procexit"));
        let o = WindowsOptions::new().buffer_size_kb(4096).buffers(100, 10);
        let c = session_config(plan, "x", &o);
        assert_eq!(
            (c.buffer_size_kb, c.min_buffers, c.max_buffers),
            (1024, 100, 100)
        );
        let c = session_config(Plan::NtKernelLogger, NT_KERNEL_LOGGER, &o);
        assert_eq!(c.guid, SYSTEM_TRACE_CONTROL_GUID);
    }
}

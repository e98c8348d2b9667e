//! The controller side: start (or reclaim) the session, flush, query loss
//! counters, stop. Never stops a session that is not ours: names must carry
//! the `procexit` prefix, and a leftover session is stopped only when ETW
//! does not report a GUID other than the one derived from its name
//! (docs/windows-sessions.md).

#![allow(unsafe_code)]

use std::time::Duration;

use windows_sys::Win32::Foundation::WIN32_ERROR;
use windows_sys::Win32::System::Diagnostics::Etw::{
    ControlTraceW, EnableTraceEx2, StartTraceW, CONTROLTRACE_HANDLE,
    EVENT_CONTROL_CODE_ENABLE_PROVIDER, EVENT_TRACE_CONTROL_FLUSH, EVENT_TRACE_CONTROL_QUERY,
    EVENT_TRACE_CONTROL_STOP, TRACE_LEVEL_INFORMATION,
};
use windows_sys::Win32::System::Threading::{GetActiveProcessorCount, ALL_PROCESSOR_GROUPS};

use super::console::{self, Registration};
use super::ffi::{
    etw_error, os_error, start_error, wide, win_guid, ALREADY_EXISTS, INVALID_PARAMETER, MORE_DATA,
    NOT_RUNNING, NO_SYSTEM_RESOURCES,
};
use super::plan::Plan;
use super::properties::{
    default_buffers, session_guid, LossCounters, PropertiesBuf, SessionConfig, MAX_NAME_UNITS,
};
use crate::config::{WindowsOptions, SESSION_NAME_PREFIX};
use crate::decode::{Guid, KERNEL_AUDIT_API_CALLS_GUID, KERNEL_PROCESS_GUID};
use crate::error::{Error, Result};

/// WINEVENT_KEYWORD_PROCESS of Microsoft-Windows-Kernel-Process.
const KEYWORD_PROCESS: u64 = 0x10;

/// Waits between STOP and the next StartTraceW while reclaiming a stale
/// session (STOP can return before the name is free).
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
    /// A session of that name runs under a GUID that is not ours.
    NotOurs,
    /// A leftover session of ours could not be stopped: STOP failed with
    /// this code, or (183) the name stayed taken after every retry.
    Stuck(WIN32_ERROR),
    /// StartTraceW failed with this code.
    Failed(WIN32_ERROR),
}

/// What QUERY says about the session holding our name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Its GUID is the one derived from the name: ours.
    Ours,
    /// ETW reported another GUID: another tool's session.
    Other,
    /// No GUID to compare (zero GUID, or QUERY failed): the name's
    /// `procexit` prefix is the proof.
    Unknown,
    /// The session is gone already.
    Gone,
}

/// StartTraceW with stale-session reclaiming: on ERROR_ALREADY_EXISTS ask
/// who owns the session, stop it by name only when it is not proven to be
/// another tool's, and retry with backoff. Without the name's lock
/// (`may_stop` false) nothing is ever stopped: the session may be a
/// running monitor's.
pub(crate) fn start_with_reclaim(
    may_stop: bool,
    mut start: impl FnMut() -> WIN32_ERROR,
    mut owner: impl FnMut() -> Owner,
    mut stop: impl FnMut() -> WIN32_ERROR,
    mut sleep: impl FnMut(Duration),
) -> Outcome {
    let mut rc = start();
    for pause in RECLAIM_BACKOFF {
        if rc != ALREADY_EXISTS {
            break;
        }
        match owner() {
            Owner::Other => return Outcome::NotOurs,
            Owner::Gone => {}
            Owner::Ours | Owner::Unknown if !may_stop => return Outcome::Stuck(ALREADY_EXISTS),
            Owner::Ours | Owner::Unknown => match stop() {
                0 | NOT_RUNNING | MORE_DATA => {}
                refused => return Outcome::Stuck(refused),
            },
        }
        sleep(pause);
        rc = start();
    }
    match rc {
        0 => Outcome::Started,
        ALREADY_EXISTS => Outcome::Stuck(ALREADY_EXISTS),
        code => Outcome::Failed(code),
    }
}

/// Whether `name` may be a procexit session name.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let prefixed = name
        .get(..SESSION_NAME_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(SESSION_NAME_PREFIX));
    if !prefixed || name.contains('\0') || name.encode_utf16().count() > MAX_NAME_UNITS {
        return Err(Error::SessionNameRejected {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A running session we started.
pub(crate) struct Session {
    pub(crate) plan: Plan,
    name: String,
    wide_name: Vec<u16>,
    handle: CONTROLTRACE_HANDLE,
    stopped: bool,
    /// Listed for the console handler while the session runs.
    console: Option<Registration>,
    /// What EnableTraceEx2 gave for Microsoft-Windows-Kernel-Audit-API-Calls
    /// (0: enabled; TerminateProcess calls then name who ended a process).
    #[cfg_attr(not(test), allow(dead_code))] // the tests check it
    pub(crate) audit: u32,
}

impl Session {
    /// Starts the session for `plan` with the options' name and buffers;
    /// `reclaim`: whether a leftover session of the name may be stopped
    /// (only while holding the name's lock).
    pub(crate) fn start(plan: Plan, options: &WindowsOptions, reclaim: bool) -> Result<Session> {
        let name = options.session_name_str().to_owned();
        check_name(&name)?;
        let config = session_config(plan, &name, options);
        let mut session = Session {
            plan,
            wide_name: wide(&name),
            name,
            handle: CONTROLTRACE_HANDLE { Value: 0 },
            // Nothing to stop until StartTraceW succeeded.
            stopped: true,
            console: None,
            audit: u32::MAX,
        };
        let mut handle = CONTROLTRACE_HANDLE { Value: 0 };
        let outcome = start_with_reclaim(
            reclaim,
            || {
                let mut props = PropertiesBuf::start(&config);
                // SAFETY: `props` is a properties buffer whose BufferSize and
                // LoggerNameOffset describe its own allocation; the name is
                // NUL-terminated; both outlive the call.
                unsafe { StartTraceW(&mut handle, session.wide_name.as_ptr(), props.as_mut_ptr()) }
            },
            || session.owner_by_name(config.guid),
            || {
                session
                    .control_by_name(EVENT_TRACE_CONTROL_STOP)
                    .err()
                    .unwrap_or(0)
            },
            std::thread::sleep,
        );
        match outcome {
            Outcome::Started => {
                session.handle = handle;
                session.stopped = false;
                session.console = Some(console::register(handle, options.is_service()));
            }
            Outcome::NotOurs => {
                return Err(Error::SessionNotOurs {
                    name: session.name.clone(),
                });
            }
            Outcome::Stuck(code) => {
                return Err(Error::SessionExists {
                    name: session.name.clone(),
                    code,
                });
            }
            // INDEPENDENT_SESSION_MODE is documented for 8.1+ but not for
            // system loggers; a build that refuses the pair gets it without.
            Outcome::Failed(INVALID_PARAMETER)
                if plan == (Plan::PrivateKernel { independent: true }) =>
            {
                drop(session);
                return Session::start(
                    Plan::PrivateKernel { independent: false },
                    options,
                    reclaim,
                );
            }
            Outcome::Failed(code) => {
                let kernel = plan != Plan::KernelProcess;
                return Err(start_error(code, kernel, &session.name));
            }
        }
        if plan == Plan::KernelProcess {
            session.enable_kernel_process()?;
        }
        // Who ended a process: best effort, never a reason not to run.
        session.audit = session.enable_provider(&KERNEL_AUDIT_API_CALLS_GUID, 0);
        Ok(session)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// EnableTraceEx2 of `provider` at information level with `keywords`
    /// (0: every event); its result.
    fn enable_provider(&self, provider: &Guid, keywords: u64) -> u32 {
        let provider = win_guid(provider);
        // SAFETY: the handle came from our StartTraceW; the GUID outlives
        // the call; NULL enable parameters are allowed.
        unsafe {
            EnableTraceEx2(
                self.handle,
                &provider,
                EVENT_CONTROL_CODE_ENABLE_PROVIDER,
                TRACE_LEVEL_INFORMATION as u8,
                keywords,
                0,
                0,
                std::ptr::null(),
            )
        }
    }

    fn enable_kernel_process(&mut self) -> Result<()> {
        match self.enable_provider(&KERNEL_PROCESS_GUID, KEYWORD_PROCESS) {
            0 => Ok(()),
            code => {
                let _ = self.stop();
                Err(enable_error(code, &self.name))
            }
        }
    }

    /// Who owns the session that holds our name (QUERY by name).
    fn owner_by_name(&self, ours: Guid) -> Owner {
        match self.control_by_name(EVENT_TRACE_CONTROL_QUERY) {
            Ok(props) => {
                let g = props.props.Wnode.Guid;
                let theirs = Guid::new(g.data1, g.data2, g.data3, g.data4);
                if theirs == ours {
                    Owner::Ours
                } else if theirs == Guid::new(0, 0, 0, [0; 8]) {
                    Owner::Unknown
                } else {
                    Owner::Other
                }
            }
            Err(NOT_RUNNING) => Owner::Gone,
            Err(_) => Owner::Unknown,
        }
    }

    /// ControlTraceW by name (the handle of a leftover session is unknown).
    fn control_by_name(&self, code: u32) -> std::result::Result<Box<PropertiesBuf>, WIN32_ERROR> {
        self.control_with(
            CONTROLTRACE_HANDLE { Value: 0 },
            self.wide_name.as_ptr(),
            code,
        )
    }

    /// ControlTraceW by our handle only: should our session be gone and
    /// another one hold the name, the call fails instead of touching it.
    fn control(&self, code: u32) -> std::result::Result<Box<PropertiesBuf>, WIN32_ERROR> {
        self.control_with(self.handle, std::ptr::null(), code)
    }

    fn control_with(
        &self,
        handle: CONTROLTRACE_HANDLE,
        name: *const u16,
        code: u32,
    ) -> std::result::Result<Box<PropertiesBuf>, WIN32_ERROR> {
        let mut props = PropertiesBuf::control();
        // SAFETY: a self-describing properties buffer, and a NUL-terminated
        // name (ours, alive as long as `self`) or NULL with a handle from
        // our StartTraceW, as ControlTraceW allows.
        let rc = unsafe { ControlTraceW(handle, name, props.as_mut_ptr(), code) };
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

    /// The session ended without our stop: never STOP anything for it
    /// again.
    pub(crate) fn forget(&mut self) {
        self.stopped = true;
        self.console = None;
    }

    /// Stops the session; returns the final counters when ETW gave them.
    /// Idempotent; "not running" is not an error.
    pub(crate) fn stop(&mut self) -> Result<Option<LossCounters>> {
        if self.stopped {
            return Ok(None);
        }
        self.stopped = true;
        self.console = None;
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

/// EnableTraceEx2's failures: ERROR_NO_SYSTEM_RESOURCES there means the
/// provider is enabled by as many sessions as ETW allows (8 for a manifest
/// provider), not that no session slot is left.
fn enable_error(code: WIN32_ERROR, session: &str) -> Error {
    match code {
        NO_SYSTEM_RESOURCES => Error::ProviderLimit {
            provider: "Microsoft-Windows-Kernel-Process",
            code,
        },
        code => etw_error("EnableTraceEx2", code, session),
    }
}

/// Logical processors in all processor groups (a machine with more than
/// 64 has several groups; `available_parallelism` may count only ours).
fn processor_count() -> u32 {
    // SAFETY: a plain query with no pointers.
    let all = unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) };
    if all > 0 {
        return all;
    }
    let ours = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(ours).unwrap_or(u32::MAX)
}

/// STOP by handle alone (the console handler's path); `true` when ETW
/// stopped it or it was not running any more.
pub(crate) fn stop_by_handle(handle: CONTROLTRACE_HANDLE) -> bool {
    let mut props = PropertiesBuf::control();
    // SAFETY: a self-describing properties buffer; a NULL name with a
    // handle from our StartTraceW, as ControlTraceW allows.
    let rc = unsafe {
        ControlTraceW(
            handle,
            std::ptr::null(),
            props.as_mut_ptr(),
            EVENT_TRACE_CONTROL_STOP,
        )
    };
    matches!(rc, 0 | NOT_RUNNING | MORE_DATA)
}

fn session_config(plan: Plan, name: &str, options: &WindowsOptions) -> SessionConfig {
    let (default_min, default_max) = default_buffers(processor_count());
    let (min, max) = options.buffer_counts();
    let min_buffers = min.unwrap_or(default_min);
    SessionConfig {
        guid: session_guid(name),
        log_file_mode: plan.log_file_mode(),
        enable_flags: plan.enable_flags(),
        buffer_size_kb: options.buffer_size().clamp(64, 1024),
        min_buffers,
        max_buffers: max.unwrap_or(default_max).max(min_buffers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Runs the reclaim logic against scripted StartTraceW / QUERY / STOP
    /// results; returns the outcome and the (start, stop) call counts.
    fn run(starts: &[u32], owners: &[Owner], stops: &[u32]) -> (Outcome, usize, usize) {
        run_with(true, starts, owners, stops)
    }

    fn run_with(
        may_stop: bool,
        starts: &[u32],
        owners: &[Owner],
        stops: &[u32],
    ) -> (Outcome, usize, usize) {
        let starts = RefCell::new(starts.iter().copied());
        let owners = RefCell::new(owners.iter().copied());
        let stops = RefCell::new(stops.iter().copied());
        let (n_start, n_stop) = (RefCell::new(0), RefCell::new(0));
        let outcome = start_with_reclaim(
            may_stop,
            || {
                *n_start.borrow_mut() += 1;
                starts.borrow_mut().next().unwrap_or(ALREADY_EXISTS)
            },
            || owners.borrow_mut().next().unwrap_or(Owner::Ours),
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
        assert_eq!(run(&[0], &[], &[]), (Outcome::Started, 1, 0));
        // A stale session of ours: stop, retry, started.
        assert_eq!(run(&[183, 0], &[], &[0]), (Outcome::Started, 2, 1));
        // No GUID to compare: the prefix is the proof.
        assert_eq!(
            run(&[183, 0], &[Owner::Unknown], &[0]),
            (Outcome::Started, 2, 1)
        );
        // Gone between start and query: just retry.
        assert_eq!(
            run(&[183, 0], &[Owner::Gone], &[]),
            (Outcome::Started, 2, 0)
        );
        // STOP "succeeds" but the name is still taken twice.
        assert_eq!(run(&[183, 183, 183, 0], &[], &[]), (Outcome::Started, 4, 3));
        // Never frees up: an error after the last backoff.
        assert_eq!(run(&[], &[], &[]), (Outcome::Stuck(183), 5, 4));
        // Not allowed to stop it: an error, no retry.
        assert_eq!(run(&[183], &[], &[5]), (Outcome::Stuck(5), 1, 1));
        assert_eq!(run(&[183], &[], &[87]), (Outcome::Stuck(87), 1, 1));
        // Already stopped by someone else, or stopped with 234: fine.
        assert_eq!(run(&[183, 0], &[], &[4201]), (Outcome::Started, 2, 1));
        assert_eq!(run(&[183, 0], &[], &[234]), (Outcome::Started, 2, 1));
        // Another tool's session under our name: never stopped.
        assert_eq!(run(&[183], &[Owner::Other], &[]), (Outcome::NotOurs, 1, 0));
        assert_eq!(
            run(&[183, 183], &[Owner::Ours, Owner::Other], &[0]),
            (Outcome::NotOurs, 2, 1)
        );
        assert_eq!(run(&[5], &[], &[]), (Outcome::Failed(5), 1, 0));
        assert_eq!(run(&[1450], &[], &[]), (Outcome::Failed(1450), 1, 0));
        assert_eq!(
            run(&[183, 1450], &[], &[4201]),
            (Outcome::Failed(1450), 2, 1)
        );
    }

    #[test]
    fn without_the_lock_nothing_is_stopped() {
        // Our GUID under our name, but no lock: it may be a running
        // monitor's session (another account's), so it is left alone.
        assert_eq!(
            run_with(false, &[183], &[Owner::Ours], &[]),
            (Outcome::Stuck(183), 1, 0)
        );
        assert_eq!(
            run_with(false, &[183], &[Owner::Unknown], &[]),
            (Outcome::Stuck(183), 1, 0)
        );
        assert_eq!(
            run_with(false, &[183], &[Owner::Other], &[]),
            (Outcome::NotOurs, 1, 0)
        );
        assert_eq!(
            run_with(false, &[183, 0], &[Owner::Gone], &[]),
            (Outcome::Started, 2, 0)
        );
        assert_eq!(run_with(false, &[0], &[], &[]), (Outcome::Started, 1, 0));
    }

    #[test]
    fn only_procexit_names_are_accepted() {
        for name in ["procexit", "ProcExit-2", "PROCEXIT_e2e", "procexit\u{e9}"] {
            assert!(check_name(name).is_ok(), "{name}");
        }
        // Other tools' sessions: rejected before any ETW call, so a 183 can
        // never make procexit stop them.
        for name in [
            "EventLog-System",
            "NT Kernel Logger",
            "Circular Kernel Context Logger",
            "",
            "proc",
            "xprocexit",
            "\u{e9}procexit",
            "procexit\0x",
        ] {
            assert!(
                matches!(check_name(name), Err(Error::SessionNameRejected { name: ref n }) if n == name),
                "{name:?}"
            );
        }
        assert!(check_name(&format!("procexit{}", "x".repeat(192))).is_ok());
        assert!(check_name(&format!("procexit{}", "x".repeat(193))).is_err());
        let options = WindowsOptions::new().session_name("EventLog-System");
        for plan in [
            Plan::PrivateKernel { independent: true },
            Plan::KernelProcess,
        ] {
            assert!(matches!(
                Session::start(plan, &options, true),
                Err(Error::SessionNameRejected { .. })
            ));
        }
    }

    #[test]
    fn enable_errors_say_what_they_mean() {
        assert!(matches!(
            enable_error(1450, "procexit"),
            Error::ProviderLimit { code: 1450, .. }
        ));
        assert!(matches!(
            enable_error(5, "procexit"),
            Error::NotElevated { code: 5 }
        ));
        assert!(processor_count() >= 1);
    }

    #[test]
    fn config_defaults_and_overrides() {
        let plan = Plan::PrivateKernel { independent: true };
        let c = session_config(plan, "procexit", &WindowsOptions::new());
        assert_eq!(c.buffer_size_kb, 64);
        assert!(c.min_buffers >= 8 && c.max_buffers >= c.min_buffers);
        assert_eq!(c.guid, session_guid("procexit"));
        let o = WindowsOptions::new().buffer_size_kb(4096).buffers(100, 10);
        let c = session_config(plan, "procexit-x", &o);
        assert_eq!(
            (c.buffer_size_kb, c.min_buffers, c.max_buffers),
            (1024, 100, 100)
        );
        // A 4 KB buffer cannot hold a process event with a long command line.
        let c = session_config(plan, "procexit", &WindowsOptions::new().buffer_size_kb(4));
        assert_eq!(c.buffer_size_kb, 64);
    }
}

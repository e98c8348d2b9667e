//! End to end on a real, elevated Windows (the GitHub windows runner):
//! `PROCEXIT_WINDOWS_E2E=1 cargo test --test windows_e2e -- --ignored --test-threads=1`.
//! Wine cannot run these: its ETW consumer functions are stubs.
//!
//! Every test pins the backend it tests, uses its own session name and
//! checks with `logman` that no session of that name is left afterwards.

#![cfg(windows)]
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procexit::{
    Backend, Error, Event, ExitStatus, LossReason, Monitor, ProcessExit, WindowsOptions,
};
use windows_sys::Win32::Foundation::CloseHandle;
use windows_sys::Win32::System::Threading::{CreateMutexW, OpenMutexW};

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Environment variable that makes this test executable act as a helper
/// child (see [`child_role`]).
const ROLE: &str = "PROCEXIT_E2E_ROLE";

fn require_e2e() {
    assert!(
        std::env::var_os("PROCEXIT_WINDOWS_E2E").is_some(),
        "set PROCEXIT_WINDOWS_E2E=1 and run elevated on real Windows"
    );
}

fn start(backend: Backend, name: &str) -> Result<Monitor, Error> {
    Monitor::builder()
        .backend(backend)
        .windows(WindowsOptions::new().session_name(name))
        .start()
}

fn monitor(backend: Backend, name: &str) -> Monitor {
    start(backend, name).unwrap_or_else(|e| panic!("start {name} ({backend:?}): {e}"))
}

/// Runs `cmd /c exit CODE`; returns its pid and when it had ended.
fn run_cmd(code: u32) -> (u32, Instant) {
    let mut child = Command::new("cmd")
        .args(["/c", &format!("exit {code}")])
        .spawn()
        .expect("cmd.exe");
    let pid = child.id();
    assert_eq!(child.wait().unwrap().code(), Some(code as i32));
    (pid, Instant::now())
}

/// The exit of `pid`, waiting until `deadline`.
fn exit_of(monitor: &Monitor, pid: u32, deadline: Instant) -> Option<ProcessExit> {
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match monitor.recv_timeout(left) {
            Ok(Event::Exit(exit)) if exit.pid == pid => return Some(exit),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn logman(args: &[&str]) -> bool {
    Command::new("logman")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn session_runs(name: &str) -> bool {
    logman(&["query", name, "-ets"])
}

/// ETW sessions outlive processes: every test ends by checking that it
/// left none.
fn assert_no_session(name: &str) {
    assert!(!session_runs(name), "session {name:?} was left running");
}

/// One exit of `cmd /c exit 42` through `backend`, within one second.
fn reports_cmd_exit_42(backend: Backend, name: &str) -> ProcessExit {
    let monitor = monitor(backend, name);
    assert!(session_runs(name), "logman sees {name}");
    // Let the rundown pass so the first flush is not what we measure.
    std::thread::sleep(Duration::from_millis(500));
    let (pid, ended) = run_cmd(42);
    let exit =
        exit_of(&monitor, pid, ended + Duration::from_secs(1)).expect("exit of cmd.exe within 1 s");
    assert_eq!(exit.status, ExitStatus::Code(42));
    assert_eq!(
        exit.name.as_deref().map(str::to_ascii_lowercase).as_deref(),
        Some("cmd.exe")
    );
    let stats = monitor.stop().expect("clean stop");
    assert!(!stats.has_loss(), "{stats:?}");
    assert_no_session(name);
    exit
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn private_kernel_session_reports_cmd_exit_42_within_one_second() {
    require_e2e();
    let exit = reports_cmd_exit_42(Backend::EtwKernel, "procexit-e2e-kernel");
    assert_eq!(exit.source, procexit::Source::EtwKernel);
    assert!(exit.command_line.is_some_and(|c| c.contains("exit 42")));
    assert!(exit.process_key.is_some());
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn kernel_process_provider_reports_cmd_exit_42_within_one_second() {
    require_e2e();
    let exit = reports_cmd_exit_42(Backend::EtwKernelProcess, "procexit-e2e-kp");
    assert_eq!(exit.source, procexit::Source::EtwKernelProcess);
    // ProcessStop carries create and exit times, no command line.
    assert!(exit.start_time.is_some() && exit.exit_time.is_some());
    assert_eq!(exit.command_line, None);
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn other_sessions_are_left_untouched() {
    require_e2e();
    // Another tool's NT Kernel Logger (started here unless one runs already).
    let nt_was_running = session_runs("NT Kernel Logger");
    let etl = std::env::temp_dir().join("procexit-e2e-nt.etl");
    if !nt_was_running {
        assert!(logman(&[
            "start",
            "NT Kernel Logger",
            "-p",
            "Windows Kernel Trace",
            "(process)",
            "-o",
            etl.to_str().unwrap(),
            "-ets",
        ]));
    }
    let a = monitor(Backend::EtwKernel, "procexit-e2e-a");
    let b = monitor(Backend::EtwKernel, "procexit-e2e-b");
    a.stop().expect("stop a");
    assert_no_session("procexit-e2e-a");
    assert!(session_runs("procexit-e2e-b"), "b still runs");
    assert!(
        session_runs("NT Kernel Logger"),
        "NT Kernel Logger still runs"
    );
    let (pid, ended) = run_cmd(7);
    let exit = exit_of(&b, pid, ended + Duration::from_secs(2)).expect("b still delivers");
    assert_eq!(exit.status, ExitStatus::Code(7));
    b.stop().expect("stop b");
    assert_no_session("procexit-e2e-b");
    assert!(
        session_runs("NT Kernel Logger"),
        "NT Kernel Logger still runs"
    );
    if !nt_was_running {
        assert!(logman(&["stop", "NT Kernel Logger", "-ets"]));
        let _ = std::fs::remove_file(etl);
    }
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_zombie_from_before_the_start_is_not_reported_at_stop() {
    require_e2e();
    // A finished child whose handle we keep: the kernel lists it as a
    // Defunct process in the rundown when the session stops.
    let mut zombie = Command::new("cmd")
        .args(["/c", "exit 3"])
        .spawn()
        .expect("cmd.exe");
    zombie.wait().unwrap();
    let zombie_pid = zombie.id();
    let name = "procexit-e2e-zombie";
    let monitor = monitor(Backend::EtwKernel, name);
    std::thread::sleep(Duration::from_millis(500));
    let (pid, ended) = run_cmd(4);
    assert!(exit_of(&monitor, pid, ended + Duration::from_secs(2)).is_some());
    let stopper = monitor.stopper();
    stopper.stop();
    let rest: Vec<Event> = monitor.iter().collect();
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, Event::Exit(x) if x.pid == zombie_pid)),
        "the zombie {zombie_pid} was reported: {rest:?}"
    );
    monitor.stop().expect("clean stop");
    assert_no_session(name);
    drop(zombie);
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_second_monitor_of_one_name_is_refused_and_the_first_runs_on() {
    require_e2e();
    let name = "procexit-e2e-twice";
    let first = monitor(Backend::EtwKernel, name);
    for backend in [Backend::EtwKernel, Backend::EtwKernelProcess, Backend::Auto] {
        match start(backend, name) {
            Err(Error::AlreadyRunning { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{backend:?}: {:?}", other.map(|_| "started")),
        }
    }
    let (pid, ended) = run_cmd(11);
    let exit = exit_of(&first, pid, ended + Duration::from_secs(2)).expect("first still delivers");
    assert_eq!(exit.status, ExitStatus::Code(11));
    first.stop().expect("stop");
    assert_no_session(name);
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_killed_monitors_session_is_reclaimed_by_the_next() {
    require_e2e();
    let name = "procexit-e2e-killed";
    let mut child = helper("monitor", name)
        .stdout(Stdio::piped())
        .spawn()
        .expect("helper child");
    // libtest prints its own lines first; the helper's comes after.
    let ready = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("ready"));
    assert!(ready, "the helper never said ready");
    child.kill().expect("TerminateProcess");
    child.wait().unwrap();
    assert!(session_runs(name), "a killed monitor leaves its session");
    let next = monitor(Backend::EtwKernel, name);
    let (pid, ended) = run_cmd(12);
    let exit =
        exit_of(&next, pid, ended + Duration::from_secs(2)).expect("reclaimed session delivers");
    assert_eq!(exit.status, ExitStatus::Code(12));
    next.stop().expect("stop");
    assert_no_session(name);
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_start_without_elevation_is_not_elevated() {
    require_e2e();
    let name = "procexit-e2e-restricted";
    let code = restricted::run(helper("not-elevated", name)).expect("restricted child");
    assert_eq!(code, 0, "the restricted child's check failed");
    assert_no_session(name);
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_non_administrator_cannot_keep_a_monitor_from_starting() {
    require_e2e();
    let name = "procexit-e2e-squat";
    let squatter = restricted::spawn(helper("squat", name)).expect("restricted child");
    let mutex = wide(&format!("Global\\procexit-{}", name.to_uppercase()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // SAFETY: a NUL-terminated name; the handle is closed at once.
        let h = unsafe { OpenMutexW(0x0010_0000, 0, mutex.as_ptr()) };
        if !h.is_null() {
            // SAFETY: the handle just opened.
            unsafe { CloseHandle(h) };
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the squatter never created its mutex"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The squatted name does not stop an administrator's monitor.
    let monitor = monitor(Backend::EtwKernel, name);
    let (pid, ended) = run_cmd(14);
    let exit = exit_of(&monitor, pid, ended + Duration::from_secs(2)).expect("delivers");
    assert_eq!(exit.status, ExitStatus::Code(14));
    monitor.stop().expect("stop");
    drop(squatter);
    assert_no_session(name);
}

/// Kernel-Audit-API-Calls event 2 joined to the exit: a process ended by
/// taskkill's TerminateProcess names taskkill; one that exits by itself
/// names nobody. Run for both sessions: the kernel one says whether a
/// system logger takes the provider.
#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_terminated_process_names_its_killer() {
    require_e2e();
    for (backend, name) in [
        (Backend::EtwKernelProcess, "procexit-e2e-killer-kp"),
        (Backend::EtwKernel, "procexit-e2e-killer"),
    ] {
        let monitor = monitor(backend, name);
        std::thread::sleep(Duration::from_millis(500));
        let (pid, ended) = run_cmd(3);
        let exit = exit_of(&monitor, pid, ended + Duration::from_secs(2)).expect("its exit");
        assert_eq!(exit.killer, None, "{backend:?}: exited by itself");
        let mut victim = helper("sleep", name).spawn().expect("victim");
        std::thread::sleep(Duration::from_millis(300));
        let mut taskkill = Command::new("taskkill")
            .args(["/F", "/PID", &victim.id().to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("taskkill");
        let killer_pid = taskkill.id();
        assert!(taskkill.wait().unwrap().success(), "taskkill");
        victim.wait().unwrap();
        let exit = exit_of(
            &monitor,
            victim.id(),
            Instant::now() + Duration::from_secs(2),
        )
        .expect("the victim's exit");
        let Some(killer) = exit.killer.clone() else {
            panic!("{backend:?}: no killer on {exit:?}");
        };
        assert_eq!(killer.pid, killer_pid, "{backend:?}");
        assert_eq!(
            killer.name.map(|n| n.to_ascii_lowercase()).as_deref(),
            Some("taskkill.exe"),
            "{backend:?}"
        );
        monitor.stop().expect("stop");
        assert_no_session(name);
    }
}

/// What ETW's QUERY reports for a running session with the default
/// buffers (`logman query NAME -ets` is ControlTraceW QUERY), printed for
/// the workflow's log (`--nocapture`).
#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn session_buffers_as_etw_reports_them() {
    require_e2e();
    for (backend, name) in [
        (Backend::EtwKernel, "procexit-e2e-buffers"),
        (Backend::EtwKernelProcess, "procexit-e2e-buffers-kp"),
    ] {
        let monitor = monitor(backend, name);
        let out = Command::new("logman")
            .args(["query", name, "-ets"])
            .output()
            .expect("logman");
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "{backend:?}, {} logical CPUs:\n{text}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        assert!(out.status.success(), "{text}");
        // 64 KB buffers, as asked.
        assert!(
            text.lines()
                .any(|l| l.starts_with("Buffer Size") && l.trim_end().ends_with("64")),
            "{text}"
        );
        monitor.stop().expect("stop");
        assert_no_session(name);
    }
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_30000_character_command_line_comes_through_whole() {
    require_e2e();
    let name = "procexit-e2e-long";
    let monitor = monitor(Backend::EtwKernel, name);
    std::thread::sleep(Duration::from_millis(500));
    let long = format!("x{}", "y".repeat(29_999));
    let mut child = helper("exit-7", name).arg(&long).spawn().expect("helper");
    let pid = child.id();
    assert_eq!(child.wait().unwrap().code(), Some(7));
    let exit = exit_of(&monitor, pid, Instant::now() + Duration::from_secs(2)).expect("its exit");
    assert_eq!(exit.status, ExitStatus::Code(7));
    let command_line = exit.command_line.expect("a command line");
    assert!(command_line.len() > 30_000, "{} bytes", command_line.len());
    assert!(command_line.ends_with(&long));
    let stats = monitor.stop().expect("stop");
    assert!(!stats.has_loss(), "{stats:?}");
    assert_no_session(name);
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn a_session_stopped_from_outside_is_marked_and_restarted() {
    require_e2e();
    for (backend, name) in [
        (Backend::EtwKernel, "procexit-e2e-watched"),
        (Backend::EtwKernelProcess, "procexit-e2e-watched-kp"),
    ] {
        let monitor = monitor(backend, name);
        assert!(logman(&["stop", name, "-ets"]), "logman stop {name}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("no SessionStopped marker within 10 s");
            match monitor.recv_timeout(left) {
                Ok(Event::Lost {
                    reason: LossReason::SessionStopped,
                    count: 0,
                }) => break,
                Ok(_) => {}
                Err(e) => panic!("{name}: {e:?}"),
            }
        }
        assert!(session_runs(name), "{name} restarted");
        let (pid, ended) = run_cmd(13);
        let exit = exit_of(&monitor, pid, ended + Duration::from_secs(2))
            .expect("the new session delivers");
        assert_eq!(exit.status, ExitStatus::Code(13));
        let stats = monitor.stop().expect("stop");
        assert_eq!(stats.session_gaps, 1, "{stats:?}");
        assert_no_session(name);
    }
}

/// This test executable run as a helper child with `role` for session
/// `name`; extra arguments are ignored by the helper.
fn helper(role: &str, name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_role",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, format!("{role}:{name}"));
    command
}

/// The helper child's side. Roles: `monitor` starts a monitor, prints
/// `ready` and sleeps (to be killed); `not-elevated` checks that start
/// fails with `NotElevated`; `exit-7` exits with code 7; `sleep` sleeps a
/// minute (to be terminated); `squat` creates the old lock's mutex.
#[test]
#[ignore = "helper child of the tests above"]
fn child_role() {
    let Some(role) = std::env::var_os(ROLE) else {
        return; // run directly: nothing to do
    };
    let role = role.to_string_lossy().into_owned();
    let (role, name) = role.split_once(':').expect("ROLE:NAME");
    match role {
        "monitor" => {
            let monitor = monitor(Backend::EtwKernel, name);
            println!("ready");
            std::thread::sleep(Duration::from_secs(600));
            drop(monitor);
        }
        "not-elevated" => match start(Backend::Auto, name) {
            Err(Error::NotElevated { code: 5 }) => {}
            other => panic!("expected NotElevated: {:?}", other.map(|_| "started")),
        },
        "exit-7" => std::process::exit(7),
        "sleep" => std::thread::sleep(Duration::from_secs(60)),
        "squat" => {
            // What a non-administrator could do to keep monitors of `name`
            // from starting: create the old lock's global mutex first.
            let mutex = wide(&format!("Global\\procexit-{}", name.to_uppercase()));
            // SAFETY: default security, a NUL-terminated name.
            let handle = unsafe { CreateMutexW(std::ptr::null(), 0, mutex.as_ptr()) };
            assert!(!handle.is_null(), "a restricted token may create it");
            // Held until the elevated test, done, kills this child.
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starting a child with a restricted copy of our token: the Administrators
/// group for deny only and every privilege removed, as a non-elevated
/// process of the same user would have.
mod restricted {
    use std::os::windows::ffi::OsStrExt;
    use std::process::Command;

    use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, HANDLE};
    use windows_sys::Win32::Security::{
        CreateRestrictedToken, CreateWellKnownSid, WinBuiltinAdministratorsSid,
        DISABLE_MAX_PRIVILEGE, SID_AND_ATTRIBUTES, TOKEN_ALL_ACCESS,
    };
    use windows_sys::Win32::System::Threading::{
        CreateProcessAsUserW, GetCurrentProcess, GetExitCodeProcess, OpenProcessToken,
        TerminateProcess, WaitForSingleObject, INFINITE, PROCESS_INFORMATION, STARTUPINFOW,
    };

    /// Runs `command` (program, arguments and its one environment variable)
    /// under the restricted token; returns its exit code.
    pub fn run(command: Command) -> Result<u32, u32> {
        let child = spawn(command)?;
        Ok(child.wait())
    }

    /// A restricted child; killed if still running when dropped.
    pub struct Child {
        process: HANDLE,
    }

    impl Child {
        /// Waits for it to end; its exit code.
        pub fn wait(&self) -> u32 {
            let mut code = 0u32;
            // SAFETY: our process handle, open until drop.
            unsafe {
                WaitForSingleObject(self.process, INFINITE);
                GetExitCodeProcess(self.process, &mut code);
            }
            code
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            // SAFETY: our process handle, closed once.
            unsafe {
                TerminateProcess(self.process, 1);
                CloseHandle(self.process);
            }
        }
    }

    /// Starts `command` under the restricted token.
    pub fn spawn(command: Command) -> Result<Child, u32> {
        let mut line: Vec<u16> = Vec::new();
        let program = command.get_program().to_owned();
        for (i, arg) in std::iter::once(program.as_os_str())
            .chain(command.get_args())
            .enumerate()
        {
            if i > 0 {
                line.push(u16::from(b' '));
            }
            line.push(u16::from(b'"'));
            line.extend(arg.encode_wide());
            line.push(u16::from(b'"'));
        }
        line.push(0);
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                std::env::set_var(key, value);
            }
        }
        // SAFETY: plain Win32 calls on handles we own, with buffers that
        // outlive each call; every handle is closed before returning.
        unsafe {
            let mut token: HANDLE = std::ptr::null_mut();
            if OpenProcessToken(GetCurrentProcess(), TOKEN_ALL_ACCESS, &mut token) == 0 {
                return Err(GetLastError());
            }
            let mut sid = [0u8; 68];
            let mut sid_len = sid.len() as u32;
            if CreateWellKnownSid(
                WinBuiltinAdministratorsSid,
                std::ptr::null_mut(),
                sid.as_mut_ptr().cast(),
                &mut sid_len,
            ) == 0
            {
                let e = GetLastError();
                CloseHandle(token);
                return Err(e);
            }
            let deny = SID_AND_ATTRIBUTES {
                Sid: sid.as_mut_ptr().cast(),
                Attributes: 0,
            };
            let mut restricted: HANDLE = std::ptr::null_mut();
            let ok = CreateRestrictedToken(
                token,
                DISABLE_MAX_PRIVILEGE,
                1,
                &deny,
                0,
                std::ptr::null(),
                0,
                std::ptr::null(),
                &mut restricted,
            );
            CloseHandle(token);
            if ok == 0 {
                return Err(GetLastError());
            }
            let startup = STARTUPINFOW {
                cb: std::mem::size_of::<STARTUPINFOW>() as u32,
                ..Default::default()
            };
            let mut info = PROCESS_INFORMATION::default();
            let ok = CreateProcessAsUserW(
                restricted,
                std::ptr::null(),
                line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0,
                0,
                std::ptr::null(),
                std::ptr::null(),
                &startup,
                &mut info,
            );
            let error = GetLastError();
            CloseHandle(restricted);
            if ok == 0 {
                return Err(error);
            }
            CloseHandle(info.hThread);
            Ok(Child {
                process: info.hProcess,
            })
        }
    }
}

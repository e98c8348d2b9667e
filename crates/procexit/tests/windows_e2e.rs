//! End to end on a real, elevated Windows (the GitHub windows runner):
//! `PROCEXIT_WINDOWS_E2E=1 cargo test --test windows_e2e -- --ignored --test-threads=1`.
//! Wine cannot run these: its ETW consumer functions are stubs.

#![cfg(windows)]

use std::process::Command;
use std::time::{Duration, Instant};

use procexit::{Event, ExitStatus, Monitor, ProcessExit, WindowsOptions};

fn require_e2e() {
    assert!(
        std::env::var_os("PROCEXIT_WINDOWS_E2E").is_some(),
        "set PROCEXIT_WINDOWS_E2E=1 and run elevated on real Windows"
    );
}

fn monitor(name: &str) -> Monitor {
    Monitor::builder()
        .windows(WindowsOptions::new().session_name(name))
        .start()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
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

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn reports_cmd_exit_42_within_one_second() {
    require_e2e();
    let monitor = monitor("procexit-e2e");
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
    assert!(exit.command_line.is_some_and(|c| c.contains("exit 42")));
    let stats = monitor.stop().expect("clean stop");
    assert!(!stats.has_loss(), "{stats:?}");
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn other_sessions_are_left_untouched() {
    require_e2e();
    // Another tool's NT Kernel Logger (started here unless one runs already).
    let nt_was_running = logman(&["query", "NT Kernel Logger", "-ets"]);
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
    let a = monitor("procexit-e2e-a");
    let b = monitor("procexit-e2e-b");
    a.stop().expect("stop a");
    assert!(logman(&["query", "procexit-e2e-b", "-ets"]), "b still runs");
    assert!(
        logman(&["query", "NT Kernel Logger", "-ets"]),
        "NT Kernel Logger still runs"
    );
    let (pid, ended) = run_cmd(7);
    let exit = exit_of(&b, pid, ended + Duration::from_secs(2)).expect("b still delivers");
    assert_eq!(exit.status, ExitStatus::Code(7));
    b.stop().expect("stop b");
    assert!(
        logman(&["query", "NT Kernel Logger", "-ets"]),
        "NT Kernel Logger still runs"
    );
    if !nt_was_running {
        assert!(logman(&["stop", "NT Kernel Logger", "-ets"]));
        let _ = std::fs::remove_file(etl);
    }
}

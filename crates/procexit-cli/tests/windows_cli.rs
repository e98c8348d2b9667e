//! The `procexit` binary on Windows. `wait` needs no ETW and runs under
//! Wine in CI too; `watch` needs an elevated real Windows (the GitHub
//! runner): `PROCEXIT_WINDOWS_E2E=1 cargo test -p procexit-cli --test
//! windows_cli -- --ignored --test-threads=1`.

#![cfg(windows)]
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::windows::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};

/// CREATE_NEW_PROCESS_GROUP: the child gets its own group, which Ctrl-Break
/// can be sent to alone.
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

mod common;
use common::procexit;

#[test]
fn wait_exits_with_the_full_32_bit_code() {
    // STATUS_CONTROL_C_EXIT, which an 8-bit exit status would cut to 0x3A.
    let code: u32 = 0xC000_013A;
    let mut target = Command::new("cmd")
        .args(["/c", &format!("pause >nul & exit {}", code as i32)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cmd.exe");
    let wait = procexit()
        .args(["wait", "--timeout", "60s", &target.id().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("procexit wait");
    // Give `wait` time to open the process, then let cmd end.
    std::thread::sleep(Duration::from_millis(1500));
    target.stdin.take().unwrap().write_all(b"\r\n").unwrap();
    assert_eq!(target.wait().unwrap().code(), Some(code as i32));
    let out = wait.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code as i32), "stderr: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&target.id().to_string()),
        "the exit is printed"
    );
}

#[test]
fn help_has_examples_and_the_session_name_flag() {
    let out = procexit().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
    let out = procexit().args(["watch", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Examples:") && text.contains("--session-name"));
}

#[test]
fn wait_on_missing_pid_is_a_clear_error() {
    // Windows pids are multiples of 4 below 2^32; this one is not in use.
    let out = procexit().args(["wait", "4000000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no process with pid 4000000"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn wait_times_out_with_124() {
    let mut target = Command::new("cmd")
        .args(["/c", "pause >nul"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cmd.exe");
    let started = Instant::now();
    let out = procexit()
        .args(["wait", "--timeout", "300ms", &target.id().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(5));
    target.kill().unwrap();
    target.wait().unwrap();
}

#[test]
fn watch_refuses_another_tools_session_name_before_any_etw_call() {
    let out = procexit()
        .args(["watch", "--session-name", "EventLog-System"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must start with \"procexit\""), "{stderr}");
}

fn logman_query(name: &str) -> bool {
    Command::new("logman")
        .args(["query", name, "-ets"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
#[ignore = "needs elevated real Windows: PROCEXIT_WINDOWS_E2E=1, --ignored"]
fn ctrl_break_stops_watch_with_a_summary_and_no_session_left() {
    assert!(
        std::env::var_os("PROCEXIT_WINDOWS_E2E").is_some(),
        "set PROCEXIT_WINDOWS_E2E=1 and run elevated on real Windows"
    );
    let name = "procexit-e2e-cli";
    let mut watch = procexit()
        .args(["watch", "--json", "--session-name", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .creation_flags(CREATE_NEW_PROCESS_GROUP)
        .spawn()
        .expect("procexit watch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logman_query(name) {
        assert!(Instant::now() < deadline, "the session never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut cmd = Command::new("cmd").args(["/c", "exit 5"]).spawn().unwrap();
    let pid = cmd.id();
    cmd.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    // SAFETY: a plain call; the group id is the child's pid because it was
    // created with CREATE_NEW_PROCESS_GROUP.
    let sent = unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, watch.id()) };
    assert_ne!(sent, 0, "GenerateConsoleCtrlEvent failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "watch did not stop on Ctrl-Break"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("exits seen"), "summary on stderr: {stderr}");
    let lines: Vec<serde_json::Value> = BufReader::new(watch.stdout.take().unwrap())
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).expect("JSON line"))
        .collect();
    assert!(
        lines.iter().any(|v| v["pid"] == pid && v["exit_code"] == 5),
        "the exit of cmd /c exit 5 in {lines:?}"
    );
    assert_eq!(lines.last().unwrap()["type"], "stats");
    assert!(!logman_query(name), "session {name} was left running");
}

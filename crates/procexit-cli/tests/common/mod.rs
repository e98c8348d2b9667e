//! Helpers shared by the CLI's test files (each uses a part of them).
#![allow(dead_code)]

use std::process::Command;

/// The `procexit` binary under test.
pub fn procexit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_procexit"))
}

/// The stdout of a `procexit` run that must succeed.
pub fn stdout_of(args: &[&str]) -> String {
    let out = procexit().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a skip must fail (`PROCEXIT_STRICT_SKIPS=1`, set by CI).
pub fn strict() -> bool {
    std::env::var("PROCEXIT_STRICT_SKIPS").is_ok_and(|v| v == "1")
}

/// Reports a skipped test, or fails it under `PROCEXIT_STRICT_SKIPS=1`.
pub fn skip(reason: &str) {
    assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {reason}");
    eprintln!("SKIPPED: {reason}");
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Whether the process connector works here (any user ≥ 6.6, root before);
/// says why not, and fails under `PROCEXIT_STRICT_SKIPS=1`.
pub fn connector_usable() -> bool {
    let out = procexit()
        .args(["wait", &std::process::id().to_string(), "--timeout", "10ms"])
        .output()
        .expect("run procexit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("process connector") {
        assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {stderr}");
        eprintln!("SKIPPED: {stderr}");
        return false;
    }
    true
}

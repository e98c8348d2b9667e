//! `watch --journald` against a real systemd-journald, read back with
//! `journalctl -o json`. The journald is started by the test in a journal
//! namespace of its own, so the machine's journal (if any) is not touched.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{is_root, procexit, skip};

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// A journald serving one namespace; stopped and its files removed on drop.
struct Journald {
    child: Child,
    namespace: String,
}

impl Journald {
    fn start(namespace: &str) -> Journald {
        let child = Command::new(JOURNALD)
            .arg(namespace)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start systemd-journald");
        let journald = Journald {
            child,
            namespace: namespace.to_string(),
        };
        let socket = journald.socket();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "journald did not create {socket:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        journald
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/run/systemd/journal.{}/socket", self.namespace))
    }

    /// Entries matching `matches` (FIELD=value), as JSON objects.
    fn entries(&self, matches: &[&str]) -> Vec<serde_json::Value> {
        let out = Command::new("journalctl")
            .arg(format!("--namespace={}", self.namespace))
            .args(["-o", "json", "--no-pager", "--all"])
            .args(matches)
            .output()
            .expect("run journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(format!("/run/systemd/journal.{}", self.namespace));
        let suffix = format!(".{}", self.namespace);
        for root in ["/var/log/journal", "/run/log/journal"] {
            for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().ends_with(&suffix) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

fn renamed_shell(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("procexit-journald-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::copy("/bin/sh", &path).unwrap();
    settle_executable(&path);
    path
}

/// Runs `shell -c script` (extra args after) until journald holds an entry
/// for it; returns that entry.
fn run_until_logged(
    journald: &Journald,
    shell: &Path,
    script: &str,
    extra: &[String],
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let child = Command::new(shell)
            .args(["-c", script, "sh"])
            .args(extra)
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait_with_output().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let found = journald.entries(&[&format!("PROCEXIT_PID={pid}")]);
        if let Some(entry) = found.into_iter().next() {
            return entry;
        }
    }
    panic!("no journal entry for {script:?} within 30 s");
}

#[test]
fn watch_writes_structured_entries_to_a_real_journald() {
    if !is_root() {
        skip("starting systemd-journald needs root");
        return;
    }
    if !Path::new(JOURNALD).exists() {
        skip("no /lib/systemd/systemd-journald (apt-get install systemd)");
        return;
    }
    let namespace = format!("procexittest{}", std::process::id());
    let journald = Journald::start(&namespace);
    // With this process's pid: another run of these tests must not match.
    let name = &format!("pxjou{}", std::process::id());
    let shell = renamed_shell(name);
    let watch = procexit()
        // The connector keeps whole command lines (the eBPF source 2 KiB):
        // the large-entry case below needs 300 KB of them.
        .args(["watch", "--source", "connector", "--name", name])
        .args(["--journald-namespace", &namespace])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // A failure: exit code 3, at warning priority.
    let failed = run_until_logged(&journald, &shell, "sleep 0.1; exit 3", &[]);
    assert_eq!(failed["PROCEXIT_TYPE"], "exit", "{failed}");
    assert_eq!(failed["PROCEXIT_EXIT_CODE"], "3", "{failed}");
    assert_eq!(failed["PROCEXIT_NAME"], name.as_str(), "{failed}");
    assert_eq!(failed["PRIORITY"], "4", "{failed}");
    assert_eq!(failed["SYSLOG_IDENTIFIER"], "procexit", "{failed}");
    assert!(
        failed.get("PROCEXIT_SIGNAL").is_none(),
        "null keys are left out"
    );
    let message = failed["MESSAGE"].as_str().unwrap();
    assert!(message.contains("exited with code 3"), "{message}");

    // A signal: found by field match, like `journalctl PROCEXIT_SIGNAL=9`.
    let killed = run_until_logged(&journald, &shell, "sleep 0.1; kill -9 $$", &[]);
    assert_eq!(killed["PROCEXIT_SIGNAL"], "9", "{killed}");
    assert_eq!(killed["PRIORITY"], "4");
    assert_eq!(killed["PROCEXIT_KIND"], "signaled", "{killed}");
    assert_eq!(killed["PROCEXIT_STATUS_NAME"], "SIGKILL", "{killed}");
    assert!(!journald
        .entries(&["PROCEXIT_KIND=signaled", &format!("PROCEXIT_NAME={name}")])
        .is_empty());

    // A success, at info priority.
    let ok = run_until_logged(&journald, &shell, "sleep 0.1; exit 0", &[]);
    assert_eq!(ok["PROCEXIT_EXIT_CODE"], "0");
    assert_eq!(ok["PRIORITY"], "6");

    // An entry larger than a datagram may be (the command line alone is
    // 3 × 100 KB) goes through a sealed memfd.
    let big: Vec<String> = (0..3)
        .map(|i| format!("{i}{}", "x".repeat(100_000)))
        .collect();
    let large = run_until_logged(&journald, &shell, "sleep 0.3; exit 4", &big);
    assert_eq!(large["PROCEXIT_EXIT_CODE"], "4");
    let command_line = &large["PROCEXIT_COMMAND_LINE"];
    // journalctl prints a value it deems large as null unless --all; with
    // --all it is the whole text.
    let text = command_line
        .as_str()
        .unwrap_or_else(|| panic!("{command_line}"));
    assert!(text.len() > 300_000, "{} bytes", text.len());

    let pid = watch.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = watch.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout stays quiet with --journald");
    assert!(stderr.contains(", 0 could not be written"), "{stderr}");
    // The closing stats record is in the journal too.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!journald.entries(&["PROCEXIT_TYPE=stats"]).is_empty());
}

#[test]
fn journald_not_running_is_a_clear_error() {
    let out = procexit()
        .args(["watch", "--journald-namespace", "procexit-nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach journald") && stderr.contains("systemd-journald running"),
        "{stderr}"
    );
}

/// Runs a freshly copied executable once: a thread of this test binary may
/// have forked while the copy was open for writing, and exec fails with
/// ETXTBSY until that child has exec'd in turn.
fn settle_executable(path: &std::path::Path) {
    for _ in 0..200 {
        match std::process::Command::new(path).args(["-c", ":"]).status() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

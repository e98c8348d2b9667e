//! Tests of the `procexit` binary as a user runs it.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{
    binary_for_nobody, connector_bind_as, connector_usable, is_root, procexit, skip, stdout_of,
    strict, AS_NOBODY,
};

/// A copy of /bin/sh under a unique name, so a `--name` filter matches only
/// the processes of one test even when tests run in parallel.
fn renamed_shell(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("procexit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if !path.exists() {
        std::fs::copy("/bin/sh", &path).unwrap();
    }
    path
}

fn run_wait(args: &[&str]) -> Output {
    procexit().arg("wait").args(args).output().unwrap()
}

#[test]
fn help_has_examples() {
    let out = procexit().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("Examples:"));
    for sub in ["watch", "wait"] {
        let out = procexit().args([sub, "--help"]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
    }
}

#[test]
fn wait_returns_the_exit_code_of_a_non_child() {
    if !connector_usable() {
        return;
    }
    let mut target = Command::new("sh")
        .args(["-c", "sleep 0.4; exit 3"])
        .spawn()
        .unwrap();
    let pid = target.id().to_string();
    let waiter = std::thread::spawn(move || run_wait(&[&pid]));
    target.wait().unwrap();
    let out = waiter.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("code 3"));
}

#[test]
fn wait_reports_signals_like_a_shell() {
    if !connector_usable() {
        return;
    }
    let mut target = Command::new("sleep").arg("5").spawn().unwrap();
    let pid = target.id().to_string();
    let waiter = std::thread::spawn(move || run_wait(&["--json", &pid]));
    // `wait` must be watching before the kill (an ended process, zombie or
    // not, is "no such process" to it): a busy machine can take a while.
    std::thread::sleep(Duration::from_millis(1000));
    target.kill().unwrap();
    target.wait().unwrap();
    let out = waiter.join().unwrap();
    assert_eq!(out.status.code(), Some(128 + 9));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["signal"], 9);
    assert_eq!(line["exit_code"], serde_json::Value::Null);
    assert_eq!(line["kind"], "signaled");
    assert_eq!(line["status_name"], "SIGKILL");
}

/// `wait PID` names the process that held PID when waiting started, never a
/// later holder of the pid. In a new pid namespace (few processes, so the
/// reuse is certain) the waited process O ends while `wait` is stopped,
/// its pid is handed to a new process N through `ns_last_pid`, and only then
/// does `wait` run again: a pid-only waiter would find PID alive and report
/// N's code 7 (or, matching the connector's records by pid, nothing at all,
/// as they carry the initial namespace's pids); `wait` must report O's 3.
#[test]
fn wait_reports_the_original_process_when_its_pid_is_reused() {
    if !connector_usable() {
        return;
    }
    if !is_root() {
        return skip("a new pid namespace and ns_last_pid need root");
    }
    // Inside a pid namespace the status can only come from the pidfd.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut version = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    if (version.next(), version.next()) < (Some(6), Some(15)) {
        return skip(&format!(
            "wait inside a pid namespace needs Linux 6.15+ (pidfd exit status); this is {}",
            release.trim()
        ));
    }
    let unshare_works = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare_works {
        return skip("unshare --pid --fork --mount-proc does not work here");
    }
    let dir = std::env::temp_dir().join(format!("procexit-reuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Inside the namespace: O waits on a fifo; `wait` starts and is stopped
    // once it listens; O ends and is reaped; N is forced onto O's pid; `wait`
    // continues; N ends with 7 a little later.
    let script = r#"
        set -eu
        mkfifo "$D/o" "$D/n"
        sh -c 'read -r line < "$1"; exit 3' sh "$D/o" &
        o=$!
        "$PROCEXIT" wait --json --timeout 20s "$o" > "$D/out" 2> "$D/err" &
        w=$!
        sleep 1
        kill -STOP "$w"
        echo > "$D/o"
        wait "$o" || true
        echo $((o - 1)) > /proc/sys/kernel/ns_last_pid
        sh -c 'read -r line < "$1"; exit 7' sh "$D/n" &
        n=$!
        echo "original $o newcomer $n" > "$D/pids"
        kill -CONT "$w"
        sleep 0.3
        echo > "$D/n"
        wait "$n" || true
        set +e
        wait "$w"
        echo $? > "$D/status"
    "#;
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", script])
        .env("D", &dir)
        .env("PROCEXIT", env!("CARGO_BIN_EXE_procexit"))
        .output()
        .unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let (pids, status, stdout, stderr) = (read("pids"), read("status"), read("out"), read("err"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{out:?}");
    let ids: Vec<u32> = pids
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(ids.len(), 2, "{pids:?}");
    assert_eq!(ids[0], ids[1], "the pid was not reused: {pids}");
    assert_eq!(
        status.trim(),
        "3",
        "wait's status; stdout {stdout} stderr {stderr}"
    );
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["pid"], ids[0], "{line}");
    assert_eq!(line["exit_code"], 3, "{line}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn wait_on_missing_pid_is_a_clear_error() {
    if !connector_usable() {
        return;
    }
    let out = run_wait(&["4000000"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no process with pid 4000000"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn wait_times_out_with_124() {
    if !connector_usable() {
        return;
    }
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let started = Instant::now();
    let out = run_wait(&["--timeout", "300ms", &target.id().to_string()]);
    assert_eq!(out.status.code(), Some(124));
    // Long before the target ends (generous: a loaded machine starts slowly).
    assert!(started.elapsed() < Duration::from_secs(10));
    target.kill().unwrap();
    target.wait().unwrap();
}

/// Whether the eBPF source can be forced here (root, or CAP_BPF + CAP_PERFMON).
fn ebpf_usable() -> bool {
    let out = procexit()
        .args([
            "watch", "--source", "ebpf", "--pid", "4000000", "--count", "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-TERM", &out.id().to_string()])
        .status();
    let out = out.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {stderr}");
        eprintln!("SKIPPED: eBPF source not usable here: {stderr}");
        return false;
    }
    true
}

#[test]
fn watch_json_lines_carry_the_documented_keys_connector() {
    if connector_usable() {
        watch_json_lines_carry_the_documented_keys("connector", "pxjsonconn");
    }
}

#[test]
fn watch_json_lines_carry_the_documented_keys_ebpf() {
    if ebpf_usable() {
        watch_json_lines_carry_the_documented_keys("ebpf", "pxjsonebpf");
    }
}

fn watch_json_lines_carry_the_documented_keys(source: &str, name: &str) {
    let shell = renamed_shell(name);
    let mut watch = procexit()
        .args([
            "watch", "--source", source, "--json", "--failed", "--name", name, "--count", "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    // Keep producing failing `sh` until the watcher has started and seen one.
    let producer = std::thread::spawn(move || {
        for _ in 0..50 {
            let _ = Command::new(&shell)
                .args(["-c", "sleep 0.05; exit 9"])
                .status();
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    for key in [
        "pid",
        "ppid",
        "exit_code",
        "signal",
        "core_dumped",
        "name",
        "command_line",
        "user",
        "start_time",
        "exit_time",
        "duration_ms",
        "process_key",
        "source",
        "killer_pid",
        "killer_name",
        "oom_killed",
        "cpu_user_ms",
        "cpu_system_ms",
        "peak_rss_bytes",
        "kind",
        "status_name",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {first}");
    }
    assert_eq!(v["type"], "exit");
    assert_eq!(v["exit_code"], 9, "{first}");
    assert_eq!(v["kind"], "exited", "{first}");
    assert_eq!(v["status_name"], serde_json::Value::Null, "{first}");
    assert_eq!(v["name"], name, "{first}");
    if source == "ebpf" {
        assert_eq!(v["source"], "linux-ebpf", "{first}");
        assert_eq!(
            v["command_line"],
            format!("{} -c sleep 0.05; exit 9", shell_path(name))
        );
        assert_eq!(v["oom_killed"], false, "{first}");
        assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0, "{first}");
        assert!(
            v["cgroup"].as_str().is_some_and(|c| c.starts_with('/')),
            "{first}"
        );
    } else {
        assert!(
            v["source"].as_str().unwrap().starts_with("linux-"),
            "{first}"
        );
        assert_eq!(v["oom_killed"], serde_json::Value::Null, "{first}");
    }
    assert!(v["exit_time"].as_str().unwrap().ends_with('Z'));
    let stats: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(stats["type"], "stats");
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success());
    // Said once, on stderr: which source, which keys stay null.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = if source == "ebpf" {
        "source linux-ebpf"
    } else {
        "source linux-connector"
    };
    assert_eq!(stderr.matches(expected).count(), 1, "{stderr}");
    assert!(stderr.contains("always null:"), "{stderr}");
    producer.join().unwrap();
}

fn shell_path(name: &str) -> String {
    renamed_shell(name).display().to_string()
}

#[test]
fn watch_stops_on_sigterm_with_a_summary_connector() {
    if connector_usable() {
        watch_stops_on_sigterm_with_a_summary("connector");
    }
}

#[test]
fn watch_stops_on_sigterm_with_a_summary_ebpf() {
    if ebpf_usable() {
        watch_stops_on_sigterm_with_a_summary("ebpf");
    }
}

fn watch_stops_on_sigterm_with_a_summary(source: &str) {
    let watch = procexit()
        .args(["watch", "--source", source])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let pid = watch.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exits seen") && stderr.contains("lost"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_name_the_argument_on_one_line() {
    for (args, culprit) in [
        (&["watch", "--bogus"][..], "--bogus"),
        (&["watch", "--count"][..], "--count"),
        (&["watch", "--rotate-size", "1M"][..], "--output"),
        (&["wait", "abc"][..], "abc"),
        (&["bogus"][..], "bogus"),
    ] {
        let out = procexit().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(culprit), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Without a command: the help, on stderr.
    let out = procexit().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: procexit <COMMAND>"));
    let out = procexit().arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = format!("procexit {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), version);
    let out = procexit().args(["help", "wait"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: procexit wait"));
}

#[test]
fn bad_flag_values_are_one_line_errors() {
    let out = procexit()
        .args(["watch", "--duration", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
}

/// As `nobody`, `watch` delivers through the connector alone where the
/// running kernel lets unprivileged processes listen, and otherwise fails
/// with one line and status 2 that says what to do. Which of the two this
/// kernel does is probed first, independently of procexit.
#[test]
fn watch_unprivileged_matches_what_this_kernel_allows() {
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !is_root() || !setpriv {
        skip("needs root (to drop to nobody) and setpriv");
        return;
    }
    let allowed = connector_bind_as(&AS_NOBODY);
    let exe = binary_for_nobody("procexit-unprivileged");
    let mut watch = Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(&exe)
        .args([
            "watch", "--json", "--count", "1", "--failed", "--name", "pxunpriv",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let shell = renamed_shell("pxunpriv");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let producer = std::thread::spawn(move || {
        for _ in 0..50 {
            if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let _ = Command::new(&shell)
                .args(["-c", "sleep 0.05; exit 12"])
                .status();
        }
    });
    let first_line = BufReader::new(stdout).lines().next();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let out = watch.wait_with_output().unwrap();
    producer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match allowed {
        Ok(()) => {
            let line = match first_line {
                Some(Ok(line)) => line,
                other => panic!("the kernel lets nobody listen, but no line ({other:?}): {stderr}"),
            };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["exit_code"], 12);
            // Without root there is no taskstats and no eBPF: the connector alone.
            assert_eq!(v["source"], "linux-connector");
            assert!(out.status.success(), "{stderr}");
            assert!(stderr.contains("source linux-connector"), "{stderr}");
        }
        Err(errno) => {
            assert_eq!(errno, 1, "the probe's bind failed with an unexpected errno");
            assert!(
                first_line.is_none(),
                "a line although the kernel refuses nobody"
            );
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
            // Says what to do, and claims no kernel version it did not check.
            assert!(
                stderr.contains("CAP_NET_ADMIN") && stderr.contains("os error 1"),
                "{stderr}"
            );
            assert!(!stderr.contains("before 6.6"), "{stderr}");
        }
    }

    // Forcing eBPF without the right: one line saying what is missing.
    let out = Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(&exe)
        .args(["watch", "--source", "ebpf"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("eBPF source needs root") && stderr.contains("CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
}

/// As `nobody`, `wait` on another user's process reports its end: with the
/// connector's record where the kernel lets `nobody` listen, else from the
/// pidfd alone (one stderr line says so), with the status where the kernel
/// keeps it and a plain "unknown" (status 3) where it does not.
#[test]
fn wait_unprivileged_matches_what_this_kernel_allows() {
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !is_root() || !setpriv {
        skip("needs root (to drop to nobody) and setpriv");
        return;
    }
    let allowed = connector_bind_as(&AS_NOBODY);
    let exe = binary_for_nobody("procexit-wait-unprivileged");
    // Root's process, which nobody may not signal or trace.
    let mut target = Command::new("sh")
        .args(["-c", "read -r line; exit 7"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let wait = Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(&exe)
        .args([
            "wait",
            "--json",
            "--timeout",
            "20s",
            &target.id().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give the waiter time to start before the process ends.
    std::thread::sleep(Duration::from_millis(500));
    use std::io::Write;
    target.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert_eq!(target.wait().unwrap().code(), Some(7));
    let out = wait.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    match allowed {
        Ok(()) => {
            assert_eq!(out.status.code(), Some(7), "{stderr}");
            let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(v["exit_code"], 7);
            assert_eq!(v["source"], "linux-connector");
        }
        Err(_) => {
            assert!(
                stderr.contains("waiting on pidfds alone"),
                "no note about the fallback: {stderr}"
            );
            match out.status.code() {
                // The kernel keeps the status on the pidfd (6.15+).
                Some(7) => {
                    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
                    assert_eq!(v["exit_code"], 7);
                    assert_eq!(v["source"], "handle");
                    assert_eq!(stderr.lines().count(), 1, "{stderr}");
                }
                // It does not: the end is known, the status plainly unknown.
                Some(3) => {
                    assert!(stdout.is_empty(), "{stdout}");
                    assert!(stderr.contains("exit status is unknown"), "{stderr}");
                }
                other => panic!("status {other:?}: {stderr}"),
            }
        }
    }
}

/// Reads `watch --json` lines on a thread; `lost` says when a loss marker
/// has gone by.
fn json_reader(
    stdout: std::process::ChildStdout,
) -> (
    std::sync::mpsc::Receiver<serde_json::Value>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    (rx, reader)
}

fn stats_loss(stats: &serde_json::Value) -> u64 {
    ["lost", "dropped", "overruns"]
        .iter()
        .map(|k| stats[k].as_u64().expect("a counter"))
        .sum()
}

/// A lossy run (a ~2 KiB socket buffer overrun by a burst of exits) makes
/// `watch --strict` exit with 3 after its summary.
#[test]
fn watch_strict_fails_a_lossy_run() {
    if !connector_usable() {
        return;
    }
    let shell = renamed_shell("pxstrict");
    let mut watch = procexit()
        .args([
            "watch",
            "--source",
            "connector",
            "--strict",
            "--json",
            "--socket-buffer",
            "1",
            "--failed",
            "--name",
            "pxstrict",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, reader) = json_reader(watch.stdout.take().unwrap());
    // Started once an exit of ours comes through.
    let mut started = false;
    for _ in 0..100 {
        let _ = Command::new(&shell).args(["-c", "exit 5"]).status();
        if lines.recv_timeout(Duration::from_millis(100)).is_ok() {
            started = true;
            break;
        }
    }
    assert!(started, "watch printed nothing");
    // Bursts of exits until the watcher has marked a loss in the stream.
    let burst = "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done";
    let mut marked = false;
    for _ in 0..5 {
        let loops: Vec<_> = (0..4)
            .map(|_| Command::new("sh").args(["-c", burst]).spawn().unwrap())
            .collect();
        for mut child in loops {
            child.wait().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            marked |= line["type"] == "lost";
        }
        if marked {
            break;
        }
    }
    assert!(marked, "no loss with a 2 KiB buffer: nothing to test");
    let pid = watch.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = watch.wait().unwrap();
    let stats: Vec<_> = lines.iter().filter(|l| l["type"] == "stats").collect();
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(stats.len(), 1, "one stats line; {stderr}");
    assert!(stats_loss(&stats[0]) > 0, "{}", stats[0]);
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--strict"), "{stderr}");
}

/// Without loss `watch --strict` exits 0; the exit status always agrees with
/// the closing counters.
#[test]
fn watch_strict_passes_a_clean_run() {
    if !connector_usable() {
        return;
    }
    let shell = renamed_shell("pxstrictok");
    let mut watch = procexit()
        .args([
            "watch",
            "--strict",
            "--json",
            "--name",
            "pxstrictok",
            "--count",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, reader) = json_reader(watch.stdout.take().unwrap());
    let producer = std::thread::spawn(move || {
        for _ in 0..50 {
            let _ = Command::new(&shell).args(["-c", "sleep 0.05"]).status();
        }
    });
    let status = watch.wait().unwrap();
    reader.join().unwrap();
    producer.join().unwrap();
    let lines: Vec<_> = lines.iter().collect();
    let stats = lines.last().expect("a stats line");
    assert_eq!(stats["type"], "stats");
    let expected = if stats_loss(stats) > 0 { 3 } else { 0 };
    assert_eq!(status.code(), Some(expected), "{stats}");
}

#[test]
fn watch_cgroup_filters_on_the_cgroup_path_connector() {
    if connector_usable() {
        watch_cgroup_filters_on_the_cgroup_path("connector");
    }
}

#[test]
fn watch_cgroup_filters_on_the_cgroup_path_ebpf() {
    if ebpf_usable() {
        watch_cgroup_filters_on_the_cgroup_path("ebpf");
    }
}

/// `watch --cgroup GLOB` prints only exits from matching cgroups: a shell
/// moved into a fresh cgroup is printed, the same shell outside is not.
fn watch_cgroup_filters_on_the_cgroup_path(source: &str) {
    if !is_root() {
        return skip("creating a cgroup needs root");
    }
    let roots: Vec<std::path::PathBuf> = [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/memory",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .filter(|root| root.join("cgroup.procs").exists())
    .collect();
    assert!(!roots.is_empty(), "no cgroup hierarchy at /sys/fs/cgroup");
    let name = format!("procexit-cli-test-{source}-{}", std::process::id());
    let dirs: Vec<_> = roots.iter().map(|root| root.join(&name)).collect();
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap();
    }
    let mut watch = procexit()
        .args([
            "watch", "--source", source, "--json", "--count", "1", "--cgroup",
        ])
        .arg(format!("*/{name}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, reader) = json_reader(watch.stdout.take().unwrap());
    let moves: String = dirs
        .iter()
        .map(|dir| format!("echo $$ > {}/cgroup.procs && ", dir.display()))
        .collect();
    let inside = format!("{moves}exec sh -c 'exit 6'");
    let mut first = None;
    for _ in 0..50 {
        // One exit outside the cgroup, then one inside.
        let _ = Command::new("sh").args(["-c", "exit 5"]).status();
        let _ = Command::new("sh").args(["-c", &inside]).status();
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            first = Some(line);
            break;
        }
    }
    if first.is_none() {
        // Nothing matched, so `--count 1` would keep it running: end it.
        let _ = watch.kill();
    }
    let status = watch.wait().unwrap();
    reader.join().unwrap();
    for dir in &dirs {
        let _ = std::fs::remove_dir(dir);
    }
    let first = first.expect("an exit from inside the cgroup");
    assert_eq!(first["exit_code"], 6, "{first}");
    assert_eq!(first["cgroup"], format!("/{name}"), "{first}");
    assert_eq!(first["container_id"], serde_json::Value::Null);
    assert_eq!(first["source"] == "linux-ebpf", source == "ebpf", "{first}");
    assert!(status.success());
}

/// Values that used to be taken silently or with the wrong reason are
/// usage errors (status 2, one line) that say what is wrong with them.
#[test]
fn flag_values_are_checked_and_the_error_says_why() {
    for (args, expected) in [
        (
            &["watch", "--count", "-1"][..],
            "invalid value '-1' for '--count <N>'",
        ),
        (
            &["watch", "--duration", "-1"][..],
            "invalid value '-1' for '--duration",
        ),
        (&["watch", "--count", "0"][..], "1 or more"),
        (&["replay", "--count", "0", "x.etl"][..], "1 or more"),
        (
            &["watch", "--journald-namespace", ""][..],
            "namespace name is empty",
        ),
        (
            &["watch", "--journald-namespace", "a/b"][..],
            "namespace name has only",
        ),
        (&["watch", "--pid", "0"][..], "pid 0 is not a process"),
        (&["wait", "0"][..], "pid 0 is not a process"),
        (
            &[
                "watch",
                "--output",
                "x",
                "--rotate-size",
                "1M",
                "--rotate-keep",
                "0",
            ][..],
            "keep at least 1",
        ),
        (&["watch", "--duration", "5"][..], "needs a unit"),
        (&["wait", "1", "--timeout", "30"][..], "needs a unit"),
    ] {
        let out = procexit().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("needs a value"), "{args:?}: {stderr}");
    }
}

/// The help says what the program does: output is batched, and only the
/// connector source lacks the command line of quick programs.
#[test]
fn help_texts_match_the_behaviour() {
    let watch = stdout_of(&["watch", "--help"]);
    let flat = watch.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!flat.contains("flushed per line"), "{watch}");
    assert!(flat.contains("written in batches"), "{watch}");
    assert!(
        flat.contains("with the process connector, programs that exit at once often have none"),
        "{watch}"
    );
    assert!(
        flat.contains("the eBPF source and Windows have it for every process"),
        "{watch}"
    );
}

/// The examples of `procexit --help` have their descriptions in one column.
#[test]
fn help_examples_are_aligned() {
    let help = stdout_of(&["--help"]);
    let examples = help.split("Examples:").nth(1).expect("an Examples section");
    let columns: Vec<usize> = examples
        .lines()
        .filter_map(|line| {
            let gap = line.trim_start().find("  ")?;
            let start = line.len() - line.trim_start().len() + gap;
            Some(start + line[start..].len() - line[start..].trim_start().len())
        })
        .collect();
    assert!(columns.len() >= 5, "{examples}");
    assert!(
        columns.windows(2).all(|w| w[0] == w[1]),
        "{columns:?}\n{examples}"
    );
}

//! packaging/procexit.service: systemd accepts it, and its capability set is
//! enough for the full Linux source (connector + taskstats) and no wider.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{connector_bind_as, is_root, skip};

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/procexit.service")
}

fn unit_value(key: &str) -> String {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("procexit-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("no systemd-analyze (apt-get install systemd)");
        return;
    }
    // The unit names /usr/local/bin/procexit: verify a copy pointing at the
    // binary under test (verify checks that ExecStart is executable).
    let dir = temp_dir("verify");
    let text = std::fs::read_to_string(unit_path())
        .unwrap()
        .replace("/usr/local/bin/procexit", env!("CARGO_BIN_EXE_procexit"));
    let unit = dir.join("procexit.service");
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The ExecStart command line parses as procexit flags.
    let exec = unit_value("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_procexit"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{exec}: {out:?}");
}

/// `setpriv` arguments for a capability bounding set and no new privileges,
/// as the unit runs procexit.
fn bounded(caps: &str) -> [String; 2] {
    [
        format!("--bounding-set={caps}"),
        "--no-new-privs".to_string(),
    ]
}

/// Runs `watch` as root with only the given capabilities (and no new
/// privileges, as the unit says): the `source` of one exit, or the exit
/// status and stderr when `watch` ended without one.
fn source_with_bounding_set(caps: &str) -> Result<String, (Option<i32>, String)> {
    let dir = temp_dir(&caps.replace([',', '+', '-'], "_"));
    let name = format!("pxcap{}", std::process::id());
    let shell = dir.join(&name);
    std::fs::copy("/bin/sh", &shell).unwrap();
    settle_executable(&shell);
    let mut watch = Command::new("setpriv")
        .args(bounded(caps))
        .arg(env!("CARGO_BIN_EXE_procexit"))
        .args(["watch", "--json", "--count", "1", "--name", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let producer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !finished.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = Command::new(&shell).args(["-c", "exit 3"]).status();
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let line = BufReader::new(stdout).lines().next();
    let _ = watch.kill();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let out = watch.wait_with_output().unwrap();
    producer.join().unwrap();
    match line {
        Some(Ok(line)) => {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            Ok(value["source"].as_str().unwrap().to_string())
        }
        _ => Err((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
    }
}

#[test]
fn the_units_capabilities_are_enough_for_taskstats_and_needed() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        skip("needs root and setpriv");
        return;
    }
    let caps: Vec<String> = unit_value("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect();
    assert_eq!(caps, ["net_admin", "bpf", "perfmon"]);
    let set = |caps: &[String]| {
        let mut set = "-all".to_string();
        for cap in caps {
            set.push_str(&format!(",+{cap}"));
        }
        set
    };
    let without = |gone: &[&str]| -> Vec<String> {
        caps.iter()
            .filter(|c| !gone.contains(&c.as_str()))
            .cloned()
            .collect()
    };
    // With the unit's set: the eBPF source (CAP_BPF + CAP_PERFMON).
    assert_eq!(source_with_bounding_set(&set(&caps)).unwrap(), "linux-ebpf");
    // Without either of those the connector with taskstats (CAP_NET_ADMIN).
    assert_eq!(
        source_with_bounding_set(&set(&without(&["bpf"]))).unwrap(),
        "linux-taskstats"
    );
    assert_eq!(
        source_with_bounding_set(&set(&without(&["perfmon"]))).unwrap(),
        "linux-taskstats"
    );
    // Without CAP_NET_ADMIN too, taskstats is refused. Whether the connector
    // alone still listens depends on the kernel build: ask it first, then
    // expect the connector's records or the one-line refusal (status 2).
    let no_admin = set(&without(&["bpf", "net_admin"]));
    let probe_args = bounded(&no_admin);
    let probe_args: Vec<&str> = probe_args.iter().map(String::as_str).collect();
    match (
        connector_bind_as(&probe_args),
        source_with_bounding_set(&no_admin),
    ) {
        (Ok(()), outcome) => assert_eq!(outcome.unwrap(), "linux-connector"),
        (Err(errno), Err((status, stderr))) => {
            assert_eq!(errno, 1, "probe: {errno}");
            assert_eq!(status, Some(2), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
        }
        (Err(errno), Ok(source)) => {
            panic!("the kernel refused the probe (errno {errno}), yet watch got {source}")
        }
    }
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

//! `watch --output FILE`: rotation under a flood, SIGHUP reopening, errors.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{is_root, procexit, skip};

/// Whether the process connector works here (any user ≥ 6.6, root before).
fn connector_usable() -> bool {
    let out = procexit()
        .args(["wait", &std::process::id().to_string(), "--timeout", "10ms"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("process connector") {
        skip(&stderr);
        return false;
    }
    true
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("procexit-sinks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `prefix` and this test process's pid: a process name (at most 15
/// characters) no other run of these tests on the machine uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id())
}

/// A copy of /bin/sh under a unique name (`--name` then matches only it).
fn renamed_shell(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/sh", &path).unwrap();
    settle_executable(&path);
    path
}

/// The JSON records of a file (every line must be whole JSON).
fn records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends in a torn line",
        path.display()
    );
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", path.display()))
        })
        .collect()
}

fn exits_named(records: &[serde_json::Value], name: &str) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["type"] == "exit" && r["name"] == name)
        .map(|r| r["pid"].as_u64().unwrap())
        .collect()
}

/// Runs `shell` until one of its exits appears in `file` (the monitor is
/// then running and the file sink writing); returns how many ran.
fn probe_until_written(shell: &Path, file: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        Command::new(shell).args(["-c", ":"]).status().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        if !exits_named(&records(file), name).is_empty() {
            return;
        }
    }
    panic!("no {name} exit reached {} within 20 s", file.display());
}

fn stop(watch: Child) -> std::process::Output {
    let pid = watch.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    watch.wait_with_output().unwrap()
}

#[test]
fn rotation_under_a_flood_loses_and_duplicates_nothing() {
    if !connector_usable() {
        return;
    }
    const FLOOD: usize = 3000;
    let dir = temp_dir("flood");
    let file = dir.join("exits.jsonl");
    let (probe_name, flood_name) = (unique("pxrp"), unique("pxrf"));
    let probe = renamed_shell(&dir, &probe_name);
    let flood = renamed_shell(&dir, &flood_name);
    let watch = procexit()
        .arg("watch")
        .args(["--name", &probe_name, "--name", &flood_name, "--output"])
        .arg(&file)
        .args(["--rotate-size", "64k", "--rotate-keep", "1000", "--json"])
        .stdout(Stdio::from(
            std::fs::File::create(dir.join("stdout.jsonl")).unwrap(),
        ))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    probe_until_written(&probe, &file, &probe_name);

    // The known set: every pid of the flood, 32 processes at a time.
    let mut expected: HashMap<u64, usize> = HashMap::new();
    let mut running = Vec::new();
    for _ in 0..FLOOD {
        let child = Command::new(&flood).args(["-c", ":"]).spawn().unwrap();
        *expected.entry(u64::from(child.id())).or_default() += 1;
        running.push(child);
        if running.len() >= 32 {
            for mut child in running.drain(..) {
                child.wait().unwrap();
            }
        }
    }
    for mut child in running {
        child.wait().unwrap();
    }
    // Give the monitor time to deliver the last exits, then stop it.
    let written = |dir: &Path| -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("exits.jsonl")
            })
            .collect();
        // Oldest first: FILE.N … FILE.1, FILE.
        files.sort_by_key(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            std::cmp::Reverse(
                name.rsplit_once('.')
                    .and_then(|(_, n)| n.parse::<u32>().ok())
                    .unwrap_or(0),
            )
        });
        files.iter().flat_map(|f| records(f)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while exits_named(&written(&dir), &flood_name).len() < FLOOD && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = stop(watch);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let all = written(&dir);
    let rotated = std::fs::read_dir(&dir).unwrap().count() - 4; // shells, FILE, stdout
    assert!(rotated >= 5, "only {rotated} rotations: {stderr}");
    // The file sink lost and repeated nothing: the rotated files hold
    // exactly the records the same stream printed on stdout.
    let printed = records(&dir.join("stdout.jsonl"));
    let count = |records: &[serde_json::Value]| {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for pid in exits_named(records, &flood_name) {
            *counts.entry(pid).or_default() += 1;
        }
        counts
    };
    let found = count(&all);
    assert_eq!(found, count(&printed), "the files differ from the stream");
    assert_eq!(all.len(), printed.len());
    // And the stream holds the flood: every pid once, none unknown; pids
    // may be missing only as far as the monitor reported loss (a loaded
    // machine can overrun the kernel's buffer).
    let reported_loss: u64 = all
        .iter()
        .filter(|r| r["type"] == "lost")
        .map(|r| r["count"].as_u64().unwrap_or(0).max(1))
        .sum();
    let missing: Vec<_> = expected.keys().filter(|p| !found.contains_key(p)).collect();
    let extra: Vec<_> = found.keys().filter(|p| !expected.contains_key(p)).collect();
    // A pid the flood got twice (pids wrap when other work on the machine
    // spawns many processes) is expected twice.
    let twice: Vec<_> = found
        .iter()
        .filter(|(pid, n)| expected.get(pid).is_some_and(|want| *n > want))
        .collect();
    assert!(
        extra.is_empty() && twice.is_empty(),
        "unexpected {extra:?}, repeated {twice:?}"
    );
    assert!(
        missing.len() as u64 <= reported_loss,
        "{} flood exits missing, {reported_loss} reported lost",
        missing.len()
    );
    // The stats record closes the stream, in the newest file.
    assert_eq!(all.last().unwrap()["type"], "stats");
    assert!(stderr.contains("could not be written"), "{stderr}");
    assert!(stderr.contains(", 0 could not be written"), "{stderr}");
}

#[test]
fn sighup_reopens_the_file() {
    if !connector_usable() {
        return;
    }
    let dir = temp_dir("hup");
    let file = dir.join("exits.jsonl");
    let old = dir.join("exits.jsonl.old");
    let name = unique("pxhup");
    let shell = renamed_shell(&dir, &name);
    let watch = procexit()
        .arg("watch")
        .args(["--name", &name, "--output"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    probe_until_written(&shell, &file, &name);
    // logrotate without copytruncate: rename, then SIGHUP.
    std::fs::rename(&file, &old).unwrap();
    let pid = watch.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(file.exists(), "not reopened after SIGHUP");
    probe_until_written(&shell, &file, &name);
    let before = exits_named(&records(&old), &name);
    let after = exits_named(&records(&file), &name);
    let out = stop(watch);
    assert!(out.status.success(), "SIGHUP must not stop it: {out:?}");
    assert!(!before.is_empty() && !after.is_empty());
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "{before:?} {after:?}"
    );
}

#[test]
fn unwritable_output_path_is_a_clear_error() {
    let dir = temp_dir("unwritable");
    let out = procexit()
        .args(["watch", "--output"])
        .arg(dir.join("missing/exits.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open the output file") && stderr.contains("No such file"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let out = procexit()
        .args(["watch", "--output"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Is a directory"));
}

/// A tiny tmpfs filled up: records are counted as unwritten (and said so),
/// no torn line is left, and writing resumes when space comes back.
#[test]
fn full_disk_is_counted_and_leaves_whole_lines() {
    if !connector_usable() {
        return;
    }
    if !is_root() {
        skip("mounting a small tmpfs needs root");
        return;
    }
    let dir = temp_dir("full");
    let mount = dir.join("mnt");
    std::fs::create_dir_all(&mount).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs failed");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());

    let file = mount.join("exits.jsonl");
    let name = unique("pxfull");
    let shell = renamed_shell(&dir, &name);
    let watch = procexit()
        .arg("watch")
        .args(["--name", &name, "--output"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    probe_until_written(&shell, &file, &name);
    // Fill the file system to the last byte.
    let filler = mount.join("filler");
    let mut fill = std::fs::File::create(&filler).unwrap();
    let chunk = vec![b'x'; 512];
    while std::io::Write::write_all(&mut fill, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut fill, b"x").is_ok() {}
    drop(fill);
    // Some lines may still fit in the file's last page: enough records to
    // overflow it, so that a write falls short half-way through a line.
    for _ in 0..40 {
        Command::new(&shell).args(["-c", ":"]).status().unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    records(&file); // whole lines only, even now
    let full_len = std::fs::metadata(&file).unwrap().len();
    // Space again: the next records are written.
    std::fs::remove_file(&filler).unwrap();
    probe_until_written_after(&shell, &file, full_len);
    let out = stop(watch);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "records were lost: {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("writing again"), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("records written"))
        .unwrap_or_else(|| panic!("no sink summary: {stderr}"));
    // "procexit: output file F: W records written, U could not be written (…)"
    let number_before = |marker: &str| -> u64 {
        let head = &summary[..summary.find(marker).unwrap()];
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let counts = [
        number_before(" records written"),
        number_before(" could not be written"),
    ];
    let (written, unwritten) = (counts[0], counts[1]);
    assert!(unwritten >= 1, "{summary}");
    // Whole lines only (records() checks every line and the end).
    let all = records(&file);
    assert_eq!(all.len() as u64, written, "{summary}");
    assert_eq!(all.last().unwrap()["type"], "stats");
}

fn probe_until_written_after(shell: &Path, file: &Path, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        Command::new(shell).args(["-c", ":"]).status().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        if std::fs::metadata(file).unwrap().len() > len {
            return;
        }
    }
    panic!("writing did not resume");
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

//! What only the Linux eBPF source can tell: the command line of every
//! instant process, who sent the fatal signal, OOM kills, core dumps, CPU
//! time and peak RSS. They need root (or CAP_BPF + CAP_PERFMON): without it
//! they print why and skip, unless PROCEXIT_STRICT_SKIPS=1 (set by .ci/run),
//! which turns a skip into a failure.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procexit::{
    Backend, Error, Event, ExitStatus, Filter, LinuxOptions, Monitor, ProcessExit, Source,
};

/// The burst loads both cores; one at a time.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn strict() -> bool {
    std::env::var("PROCEXIT_STRICT_SKIPS").is_ok_and(|v| v == "1")
}

fn skip(reason: &str) {
    assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {reason}");
    eprintln!("SKIPPED: {reason}");
}

fn start(filter: Filter, options: LinuxOptions) -> Option<Monitor> {
    match Monitor::builder()
        .backend(Backend::LinuxEbpf)
        .filter(filter)
        .linux(options)
        .start()
    {
        Ok(m) => Some(m),
        Err(e @ (Error::EbpfPermission { .. } | Error::EbpfUnavailable { .. })) => {
            skip(&format!("eBPF source not usable here: {e}"));
            None
        }
        Err(e) => panic!("eBPF source failed to start: {e}"),
    }
}

fn me() -> u32 {
    std::process::id()
}

/// Collects exits until `done` says so or 20 s pass; fails on any loss.
fn collect(
    monitor: &Monitor,
    mut done: impl FnMut(&HashMap<u32, ProcessExit>) -> bool,
) -> HashMap<u32, ProcessExit> {
    let mut seen = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&seen) && Instant::now() < deadline {
        match monitor.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Exit(exit)) => {
                seen.insert(exit.pid, exit);
            }
            Ok(Event::Lost { count, reason }) => panic!("lost {count} exits ({reason:?})"),
            Ok(_) | Err(_) => {}
        }
    }
    seen
}

fn run(program: &str, args: &[&str]) -> u32 {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let _ = child.wait();
    pid
}

#[test]
fn every_instant_process_has_its_command_line() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(monitor) = start(Filter::new(), LinuxOptions::new()) else {
        return;
    };
    const N: usize = 2000;
    let mut shell = Command::new("sh")
        .args([
            "-c",
            &format!("i=0; while [ $i -lt {N} ]; do /bin/true ARG$i; i=$((i+1)); done"),
        ])
        .spawn()
        .unwrap();
    let shell_pid = shell.id();
    assert!(shell.wait().unwrap().success());
    let mut lines: Vec<Option<String>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.len() < N && Instant::now() < deadline {
        match monitor.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Exit(exit)) if exit.ppid == Some(shell_pid) => {
                assert_eq!(exit.status, ExitStatus::Code(0));
                lines.push(exit.command_line);
            }
            Ok(Event::Lost { count, reason }) => panic!("lost {count} exits ({reason:?})"),
            _ => {}
        }
    }
    let with_arg = lines
        .iter()
        .enumerate()
        .filter(|(i, line)| line.as_deref() == Some(format!("/bin/true ARG{i}").as_str()))
        .count();
    eprintln!("{with_arg} of {N} `/bin/true ARG` exits carry their ARG");
    assert_eq!(lines.len(), N, "exits seen");
    assert_eq!(with_arg, N, "command lines: {:?}", &lines[..5]);
}

#[test]
fn a_process_killed_by_another_names_the_sender() {
    let Some(monitor) = start(Filter::new().ppid(me()), LinuxOptions::new()) else {
        return;
    };
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let victim_pid = victim.id();
    std::thread::sleep(Duration::from_millis(100));
    // /bin/kill, a process of its own (a shell's kill would be a builtin).
    let killer_pid = run("/bin/kill", &["-TERM", &victim_pid.to_string()]);
    let _ = victim.wait();
    // Self-inflicted: no killer.
    let suicide = run("sh", &["-c", "kill -KILL $$"]);
    let seen = collect(&monitor, |s| {
        [victim_pid, killer_pid, suicide]
            .iter()
            .all(|p| s.contains_key(p))
    });
    let victim = &seen[&victim_pid];
    assert_eq!(victim.status.signal(), Some(15));
    let killer = victim.killer.as_ref().expect("killer recorded");
    assert_eq!(killer.pid, killer_pid);
    assert_eq!(killer.name.as_deref(), Some("kill"));
    assert_eq!(victim.oom_killed, Some(false));
    let suicide = &seen[&suicide];
    assert_eq!(suicide.status.signal(), Some(9));
    assert_eq!(suicide.killer, None);
    assert_eq!(seen[&killer_pid].killer, None);
}

/// A memory cgroup (v1) of 32 MiB for one test; removed on drop.
struct MemoryCgroup(std::path::PathBuf);

impl MemoryCgroup {
    fn new() -> Result<MemoryCgroup, String> {
        let root = std::path::Path::new("/sys/fs/cgroup/memory");
        if !root.join("memory.limit_in_bytes").exists() {
            return Err("no cgroup v1 memory controller at /sys/fs/cgroup/memory".into());
        }
        let dir = root.join(format!("procexit-test-{}", me()));
        let _ = std::fs::create_dir(&dir);
        let group = MemoryCgroup(dir);
        std::fs::write(group.0.join("memory.limit_in_bytes"), "33554432")
            .map_err(|e| format!("cannot set the memory limit: {e}"))?;
        // Without swap accounting a swapping kernel could page out instead.
        let _ = std::fs::write(group.0.join("memory.swappiness"), "0");
        let _ = std::fs::write(group.0.join("memory.memsw.limit_in_bytes"), "33554432");
        Ok(group)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The kernel refuses to remove a group that still has processes;
        // they are gone by now (killed and reaped).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_process_the_oom_killer_chose_is_marked() {
    let group = match MemoryCgroup::new() {
        Ok(g) => g,
        Err(reason) => return skip(&reason),
    };
    let Some(monitor) = start(Filter::new().ppid(me()), LinuxOptions::new()) else {
        return;
    };
    // Joins the 32 MiB group, then asks for 256 MiB.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec perl -e '$x = \"a\" x (256 * 1024 * 1024); sleep 1'",
        group.0.display()
    );
    let hog = run("sh", &["-c", &script]);
    let seen = collect(&monitor, |s| s.contains_key(&hog));
    let exit = &seen[&hog];
    assert_eq!(exit.status.signal(), Some(9), "{exit:?}");
    assert_eq!(exit.oom_killed, Some(true), "{exit:?}");
    assert_eq!(exit.killer, None, "the OOM killer is not a process");
    drop(group);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
}

/// Runs `sh -c "echo $$ > DIR/cgroup.procs; exit 9"` for each directory
/// (created first, nested ones included) and removes them at once after
/// the shell was reaped; returns the shell's pid.
fn exit_at_once_in(dirs: &[std::path::PathBuf]) -> u32 {
    for dir in dirs {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    let moves: String = dirs
        .iter()
        .map(|dir| format!("echo $$ > {}/cgroup.procs && ", dir.display()))
        .collect();
    let pid = run("sh", &["-c", &format!("{moves}exit 9")]);
    for dir in dirs {
        // Innermost first: a cgroup with children cannot be removed.
        for gone in dir
            .ancestors()
            .take_while(|d| d.to_string_lossy().contains("procexit-"))
        {
            let _ = std::fs::remove_dir(gone);
        }
    }
    pid
}

/// A process that joins a new cgroup without exec and exits at once, its
/// cgroup removed right after, still has that cgroup: the BPF program reads
/// it on the exiting task. 16 levels below the root are kept, 17 are not.
#[test]
fn a_process_that_exits_at_once_has_the_cgroup_it_exited_in() {
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
    if roots.is_empty() {
        return skip("no cgroup hierarchy at /sys/fs/cgroup");
    }
    let Some(monitor) = start(Filter::new().ppid(me()), LinuxOptions::new()) else {
        return;
    };
    let top = format!("procexit-ebpf-{}", me());
    let nested = |levels: usize| {
        let mut path = format!("/{top}");
        for level in 1..levels {
            path.push_str(&format!("/l{level}"));
        }
        path
    };
    for (levels, kept) in [(2, true), (16, true), (17, false)] {
        let path = nested(levels);
        let dirs: Vec<_> = roots
            .iter()
            .map(|root| root.join(path.trim_start_matches('/')))
            .collect();
        let pid = exit_at_once_in(&dirs);
        let seen = collect(&monitor, |s| s.contains_key(&pid));
        let exit = &seen[&pid];
        assert_eq!(exit.status, ExitStatus::Code(9), "the moves failed");
        let expected = kept.then_some(path.as_str());
        assert_eq!(exit.cgroup.as_deref(), expected, "{levels} levels");
        assert_eq!(exit.container_id, None);
    }
    for root in &roots {
        assert!(
            !root.join(&top).exists(),
            "left {top} in {}",
            root.display()
        );
    }
}

#[test]
fn a_segfault_with_a_core_dump_is_marked() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.trim().is_empty() {
        return skip("core dumps are disabled (empty kernel.core_pattern)");
    }
    let Some(monitor) = start(Filter::new().ppid(me()), LinuxOptions::new()) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("procexit-core-{}", me()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -c unlimited; exec perl -e 'kill SEGV => $$'"])
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let pid = child.id();
    let _ = child.wait();
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    let _ = std::fs::remove_dir_all(&dir);
    let exit = &seen[&pid];
    assert_eq!(
        exit.status,
        ExitStatus::Signal {
            signal: 11,
            core_dumped: true
        },
        "core_pattern {pattern:?}"
    );
}

/// utime + stime of a zombie child from /proc (fields 14 and 15, in clock
/// ticks; USER_HZ is 100 on every architecture procexit builds for), read
/// before it is reaped: what the kernel itself reports.
fn zombie_cpu_time(pid: u32) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            // After ")": state is field 3, utime 14, stime 15.
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            return Some(Duration::from_millis(ticks * 1000 / 100));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_busy_60_mb_process_reports_cpu_time_and_peak_rss() {
    let Some(monitor) = start(Filter::new().ppid(me()), LinuxOptions::new()) else {
        return;
    };
    // 60 MiB in one string, then a busy loop until the next second or two.
    let mut child = Command::new("perl")
        .args([
            "-e",
            "my $x = \"a\" x (60 * 1024 * 1024); my $t = time + 2; while (time < $t) {}",
        ])
        .spawn()
        .unwrap();
    let pid = child.id();
    let kernel_cpu = zombie_cpu_time(pid).expect("zombie's /proc/PID/stat");
    let _ = child.wait();
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    let exit = &seen[&pid];
    let cpu = exit.resources.cpu_user.unwrap() + exit.resources.cpu_system.unwrap();
    let lived = exit.duration().unwrap();
    eprintln!(
        "busy: cpu {cpu:?} (/proc says {kernel_cpu:?}) over {lived:?}, peak rss {:?}",
        exit.resources.peak_rss_bytes
    );
    // The same total /proc gives (which scales the tick samples to the
    // precise runtime: allow a few ticks and 25 %).
    let diff = cpu.abs_diff(kernel_cpu);
    assert!(
        diff <= Duration::from_millis(40) + kernel_cpu / 4,
        "cpu {cpu:?} vs /proc {kernel_cpu:?}"
    );
    assert!(cpu > Duration::ZERO && cpu <= lived + Duration::from_millis(50));
    let rss = exit.resources.peak_rss_bytes.unwrap();
    assert!(
        (60 << 20..400 << 20).contains(&rss),
        "peak rss {rss} not near 60 MiB"
    );
    assert_eq!(exit.source, Source::LinuxEbpf);
}

#[test]
fn command_lines_copied_at_exec_when_forced() {
    let options = LinuxOptions::new().ebpf_args_at_exec(true);
    let Some(monitor) = start(Filter::new().ppid(me()), options) else {
        return;
    };
    let pid = run("/bin/true", &["copied", "at exec"]);
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    assert_eq!(
        seen[&pid].command_line.as_deref(),
        Some("/bin/true copied at exec")
    );
}

#[test]
fn the_kernel_filter_counts_what_it_removes() {
    let Some(monitor) = start(
        Filter::new().failed_only(true).ppid(me()),
        LinuxOptions::new(),
    ) else {
        return;
    };
    let ok = run("sh", &["-c", "exit 0"]);
    let failed = run("sh", &["-c", "exit 9"]);
    let seen = collect(&monitor, |s| s.contains_key(&failed));
    assert_eq!(seen[&failed].status, ExitStatus::Code(9));
    assert!(!seen.contains_key(&ok));
    std::thread::sleep(Duration::from_millis(300));
    let stats = monitor.stop().unwrap();
    // The successful exit and every other process's were dropped in the
    // kernel but still counted.
    assert!(stats.filtered >= 1, "{stats:?}");
    assert_eq!(stats.seen, stats.filtered + stats.delivered, "{stats:?}");
}

#[test]
fn a_full_ring_buffer_is_never_silent() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    // One page: room for a single record of a 2000-byte command line (the
    // record carries only the used part of argv), so a burst overflows it;
    // ten at a time end together, which no reader can keep up with.
    let options = LinuxOptions::new().ebpf_ring_buffer(4096);
    let Some(monitor) = start(Filter::new(), options) else {
        return;
    };
    // Fewer under emulation (the kernel matrix boots kernels under qemu):
    // a multiple of ten, at least 100, still far more than one page holds.
    let n = std::env::var("PROCEXIT_RING_TEST_EXITS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(2000, |v| v.max(100) / 10 * 10);
    let mut shell = Command::new("sh")
        .args([
            "-c",
            &format!(
                "a=$(printf '%02000d' 0); i=0; \
                 while [ $i -lt {n} ]; do \
                 for j in 1 2 3 4 5 6 7 8 9 10; do /bin/true $a & done; wait; \
                 i=$((i+10)); done"
            ),
        ])
        .spawn()
        .unwrap();
    let shell_pid = shell.id();
    assert!(shell.wait().unwrap().success());
    let (mut delivered, mut lost_in_band) = (0usize, 0u64);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match monitor.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Exit(exit)) if exit.ppid == Some(shell_pid) => delivered += 1,
            Ok(Event::Lost { count, reason }) => {
                assert_eq!(reason, procexit::LossReason::Kernel);
                lost_in_band += count;
            }
            _ => {}
        }
    }
    let stats = monitor.stop().unwrap();
    // What is left after stop: markers queued at the end.
    eprintln!("one-page ring: {delivered} of {n} delivered, {stats:?}");
    let missing = (n - delivered) as u64;
    assert!(missing > 0, "a one-record ring kept up with the burst");
    // Every missing exit is in the count (which also holds other
    // processes' exits lost meanwhile), and the count is in the stream.
    assert!(stats.lost >= missing, "{missing} missing, {stats:?}");
    assert!(lost_in_band >= missing && lost_in_band <= stats.lost);
}

//! End-to-end tests of the Linux sources with real processes of known
//! outcome; each scenario runs against the process connector (any user on
//! kernels ≥ 6.6, root before) and the eBPF source (root, or CAP_BPF +
//! CAP_PERFMON). Without them they print why and skip, unless
//! PROCEXIT_STRICT_SKIPS=1 (set by .ci/run), which turns a skip into a failure.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procexit::{
    Backend, Error, Event, ExitKind, ExitStatus, Filter, Monitor, ProcessExit, Source, User,
};

/// Burst tests load both cores; run them one at a time so that one's
/// overruns cannot starve the other's reader.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn strict() -> bool {
    std::env::var("PROCEXIT_STRICT_SKIPS").is_ok_and(|v| v == "1")
}

fn skip(reason: &str) {
    assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {reason}");
    eprintln!("SKIPPED: {reason}");
}

/// Starts a monitor on one source, or explains why it cannot run here.
fn start_monitor(backend: Backend, filter: Filter) -> Option<Monitor> {
    match Monitor::builder().backend(backend).filter(filter).start() {
        Ok(m) => Some(m),
        Err(e @ (Error::ConnectorPermission { .. } | Error::ConnectorUnavailable { .. })) => {
            skip(&format!("process connector not usable here: {e}"));
            None
        }
        Err(e @ (Error::EbpfPermission { .. } | Error::EbpfUnavailable { .. })) => {
            skip(&format!("eBPF source not usable here: {e}"));
            None
        }
        Err(e) => panic!("monitor failed to start: {e}"),
    }
}

/// Collects exits until `done` says so or 10 s pass.
fn collect(
    monitor: &Monitor,
    mut done: impl FnMut(&HashMap<u32, ProcessExit>) -> bool,
) -> HashMap<u32, ProcessExit> {
    let mut seen = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
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

fn me() -> u32 {
    std::process::id()
}

fn exit_codes_are_exact(backend: Backend) {
    let Some(monitor) = start_monitor(backend, Filter::new().ppid(me())) else {
        return;
    };
    let mut expected = Vec::new();
    for code in [0u32, 1, 42, 255] {
        let script = format!("sleep 0.1; exit {code}");
        expected.push((run("sh", &["-c", &script]), code, format!("sh -c {script}")));
    }
    let seen = collect(&monitor, |s| {
        expected.iter().all(|(pid, ..)| s.contains_key(pid))
    });
    for (pid, code, command_line) in &expected {
        let exit = seen
            .get(pid)
            .unwrap_or_else(|| panic!("no exit for pid {pid}"));
        assert_eq!(exit.status, ExitStatus::Code(*code));
        assert_eq!(exit.ppid, Some(me()));
        assert_eq!(exit.name.as_deref(), Some("sh"));
        assert_eq!(exit.command_line.as_deref(), Some(command_line.as_str()));
        match backend {
            Backend::LinuxEbpf => assert_eq!(exit.source, Source::LinuxEbpf),
            _ => assert!(matches!(
                exit.source,
                Source::LinuxConnector | Source::LinuxTaskstats
            )),
        }
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        assert_eq!(exit.user, Some(User::Uid(uid)));
        let lived = exit.duration().expect("duration");
        assert!(lived >= Duration::from_millis(90), "lived {lived:?}");
        assert!(exit.process_key.is_some());
    }
}

fn signals_are_reported_as_signals(backend: Backend) {
    let Some(monitor) = start_monitor(backend, Filter::new().ppid(me())) else {
        return;
    };
    let mut sleeper = Command::new("sleep").arg("10").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    let killed = sleeper.id();
    let segv = run("sh", &["-c", "sleep 0.1; kill -SEGV $$"]);
    let seen = collect(&monitor, |s| {
        s.contains_key(&killed) && s.contains_key(&segv)
    });
    let k = &seen[&killed];
    assert_eq!(k.status.signal(), Some(9));
    assert_eq!(k.status.code(), None);
    assert_eq!(k.name.as_deref(), Some("sleep"));
    assert_eq!(k.command_line.as_deref(), Some("sleep 10"));
    assert_eq!(k.status.shell_status(), 137);
    let s = &seen[&segv];
    assert_eq!(s.status.signal(), Some(11));
    assert_eq!(s.ppid, Some(me()));
}

/// One live process per kind: a plain exit, a kill and a core dump (the
/// connector cannot see the OOM killer's choice, so there `oom_killed` stays
/// unknown; the eBPF source says false).
fn kinds_and_names_of_live_exits(backend: Backend) {
    use std::os::unix::process::ExitStatusExt;
    let Some(monitor) = start_monitor(backend, Filter::new().ppid(me())) else {
        return;
    };
    // The default core_pattern ("core") writes into the working directory.
    let dir = std::env::temp_dir().join(format!("procexit-core-{}", me()));
    std::fs::create_dir_all(&dir).unwrap();
    let spawn = |script: &str| {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .current_dir(&dir)
            .spawn()
            .expect("spawn sh");
        let status = child.wait().unwrap();
        (child.id(), status)
    };
    let (exited, _) = spawn("sleep 0.1; exit 3");
    let (termed, _) = spawn("sleep 0.1; kill -TERM $$");
    let (dumped, dumped_status) = spawn("ulimit -c unlimited; sleep 0.1; kill -SEGV $$");
    let seen = collect(&monitor, |s| {
        [exited, termed, dumped].iter().all(|p| s.contains_key(p))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let kind_and_name = |pid: u32| {
        let exit = seen
            .get(&pid)
            .unwrap_or_else(|| panic!("no exit for {pid}"));
        match backend {
            Backend::LinuxEbpf => assert_eq!(exit.oom_killed, Some(false)),
            _ => assert_eq!(exit.oom_killed, None, "the connector cannot tell"),
        }
        (exit.kind(), exit.status_name())
    };
    assert_eq!(kind_and_name(exited), (ExitKind::Exited, None));
    assert_eq!(kind_and_name(termed), (ExitKind::Signaled, Some("SIGTERM")));
    // The record agrees with what the kernel told the parent.
    assert_eq!(
        seen[&dumped].status.core_dumped(),
        dumped_status.core_dumped()
    );
    if !dumped_status.core_dumped() {
        let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
        skip(&format!(
            "the kernel wrote no core dump (core_pattern {:?}), so the core_dumped kind is untested",
            pattern.trim()
        ));
        return;
    }
    assert_eq!(
        kind_and_name(dumped),
        (ExitKind::CoreDumped, Some("SIGSEGV"))
    );
}

fn grandchild_is_reported_with_its_own_parent(backend: Backend) {
    let Some(monitor) = start_monitor(backend, Filter::new()) else {
        return;
    };
    let out = Command::new("sh")
        .args(["-c", "sh -c 'sleep 0.2; exit 7' & echo $!; wait"])
        .output()
        .unwrap();
    let middle = out.status;
    assert!(middle.success());
    let grandchild: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let seen = collect(&monitor, |s| s.contains_key(&grandchild));
    let g = &seen[&grandchild];
    assert_eq!(g.status, ExitStatus::Code(7));
    assert_ne!(
        g.ppid,
        Some(me()),
        "the grandchild's parent is the shell, not us"
    );
    assert!(g.ppid.is_some());
    assert_eq!(g.command_line.as_deref(), Some("sh -c sleep 0.2; exit 7"));
}

fn process_that_execs_twice_has_its_last_identity(backend: Backend) {
    let Some(monitor) = start_monitor(backend, Filter::new().ppid(me())) else {
        return;
    };
    // sh → env → sleep, all in the same process.
    let pid = run("sh", &["-c", "exec env sleep 0.2"]);
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    let exit = &seen[&pid];
    assert_eq!(exit.name.as_deref(), Some("sleep"));
    assert_eq!(exit.command_line.as_deref(), Some("sleep 0.2"));
    assert_eq!(exit.status, ExitStatus::Code(0));
    assert_eq!(exit.ppid, Some(me()));
}

fn one_millisecond_process_is_never_misnamed(backend: Backend) {
    let Some(monitor) = start_monitor(backend, Filter::new().ppid(me())) else {
        return;
    };
    let pids: Vec<u32> = (0..20).map(|_| run("sleep", &["0.001"])).collect();
    let seen = collect(&monitor, |s| pids.iter().all(|p| s.contains_key(p)));
    for pid in &pids {
        let exit = seen.get(pid).unwrap_or_else(|| panic!("no exit for {pid}"));
        assert_eq!(exit.status, ExitStatus::Code(0));
        assert_eq!(exit.ppid, Some(me()));
        // The program may be gone before /proc is read: then the name is
        // unknown, but it is never the parent's (the test binary's).
        assert!(
            matches!(exit.name.as_deref(), None | Some("sleep")),
            "name {:?}",
            exit.name
        );
        assert!(matches!(
            exit.command_line.as_deref(),
            None | Some("sleep 0.001")
        ));
        if backend == Backend::LinuxEbpf {
            // Read on the exiting task itself: never too late.
            assert_eq!(exit.name.as_deref(), Some("sleep"));
            assert_eq!(exit.command_line.as_deref(), Some("sleep 0.001"));
        }
    }
}

fn leader_first_exit_reports_the_process_status(backend: Backend) {
    let Some(monitor) = start_monitor(backend, Filter::new().ppid(me())) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("procexit-test-{}", me()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("leader_first");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/leader_first.c");
    match Command::new("cc")
        .args([source, "-pthread", "-o"])
        .arg(&exe)
        .status()
    {
        Ok(s) if s.success() => {}
        other => return skip(&format!("no C compiler to build the fixture: {other:?}")),
    }
    let pid = run(exe.to_str().unwrap(), &[]);
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    let exit = &seen[&pid];
    assert_eq!(exit.status, ExitStatus::Code(5), "{exit:?}");
    assert_eq!(exit.name.as_deref(), Some("leader_first"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn burst_of_short_processes_loses_nothing(backend: Backend) {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(monitor) = start_monitor(backend, Filter::new()) else {
        return;
    };
    const PER_LOOP: usize = 1500;
    const LOOPS: usize = 4;
    let script = format!("i=0; while [ $i -lt {PER_LOOP} ]; do /bin/true; i=$((i+1)); done");
    let started = Instant::now();
    let loops: Vec<_> = (0..LOOPS)
        .map(|_| Command::new("sh").args(["-c", &script]).spawn().unwrap())
        .collect();
    let parents: Vec<u32> = loops.iter().map(|c| c.id()).collect();
    for mut child in loops {
        assert!(child.wait().unwrap().success());
    }
    let elapsed = started.elapsed();
    let mut per_parent: HashMap<u32, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lost = 0;
    while per_parent.values().sum::<usize>() < PER_LOOP * LOOPS && Instant::now() < deadline {
        match monitor.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Exit(exit)) => {
                if let Some(ppid) = exit.ppid.filter(|p| parents.contains(p)) {
                    assert_eq!(exit.status, ExitStatus::Code(0));
                    *per_parent.entry(ppid).or_default() += 1;
                }
            }
            Ok(Event::Lost { count, .. }) => lost += count,
            _ => {}
        }
    }
    let stats = monitor.stop().unwrap();
    let total: usize = per_parent.values().sum();
    eprintln!(
        "burst: {total} of {} exits in {elapsed:?} ({:.0}/s), stats {stats:?}",
        PER_LOOP * LOOPS,
        (PER_LOOP * LOOPS) as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert_eq!(stats.lost + stats.overruns + stats.dropped, 0);
    assert_eq!(total, PER_LOOP * LOOPS);
}

fn stop_is_prompt_and_drop_does_not_hang(backend: Backend) {
    let Some(monitor) = start_monitor(backend, Filter::new()) else {
        return;
    };
    let started = Instant::now();
    let stats = monitor.stop().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let _ = stats;
    let Some(monitor) = start_monitor(backend, Filter::new()) else {
        return;
    };
    let stopper = monitor.stopper();
    let t = std::thread::spawn(move || monitor.iter().count());
    std::thread::sleep(Duration::from_millis(100));
    stopper.stop();
    t.join().unwrap();
}

#[test]
fn callback_receives_exits() {
    let (tx, rx) = std::sync::mpsc::channel();
    let monitor = match Monitor::builder()
        .filter(Filter::new().ppid(me()))
        .start_with_handler(move |event| {
            let _ = tx.send(event);
        }) {
        Ok(m) => m,
        Err(e) => return skip(&format!("process connector not usable here: {e}")),
    };
    let pid = run("sh", &["-c", "exit 3"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        if let Ok(Event::Exit(exit)) = rx.recv_timeout(Duration::from_millis(100)) {
            if exit.pid == pid {
                found = Some(exit);
            }
        }
    }
    drop(monitor);
    assert_eq!(found.expect("exit delivered").status, ExitStatus::Code(3));
}

#[test]
fn wait_set_reports_non_child_and_rejects_missing_pids() {
    let mut child = Command::new("sh")
        .args(["-c", "sleep 1; exit 4"])
        .spawn()
        .unwrap();
    let pid = child.id();
    // It lives long enough for either source to start on a loaded machine.
    // Reaped on another thread: the waiter is not the parent.
    let reaper = std::thread::spawn(move || child.wait());
    let mut set = match procexit::WaitSet::new(&[pid]) {
        Ok(s) => s,
        Err(e @ (Error::ConnectorPermission { .. } | Error::ConnectorUnavailable { .. })) => {
            let _ = reaper.join();
            return skip(&format!("process connector not usable here: {e}"));
        }
        Err(e) => panic!("{e}"),
    };
    let exit = set
        .next_exit(Some(Instant::now() + Duration::from_secs(5)))
        .unwrap()
        .expect("exit before deadline");
    assert_eq!((exit.pid, exit.status), (pid, ExitStatus::Code(4)));
    assert!(set.remaining().is_empty());
    reaper.join().unwrap().unwrap();
    // A pid that cannot exist (above pid_max).
    assert!(matches!(
        procexit::WaitSet::new(&[4_000_000]),
        Err(Error::NoSuchProcess { pid: 4_000_000 })
    ));
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn taskstats_merges_into_the_record_as_root() {
    if !is_root() {
        return skip("taskstats needs root (CAP_NET_ADMIN)");
    }
    let options = procexit::LinuxOptions::new().taskstats(procexit::Taskstats::Required);
    let monitor = match Monitor::builder()
        .backend(Backend::LinuxConnector)
        .filter(Filter::new().ppid(me()))
        .linux(options)
        .start()
    {
        Ok(m) => m,
        Err(e) => panic!("taskstats required as root but: {e}"),
    };
    let pid = run("sh", &["-c", "sleep 0.1; exit 6"]);
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    let exit = &seen[&pid];
    assert_eq!(exit.source, Source::LinuxTaskstats);
    assert_eq!(exit.status, ExitStatus::Code(6));
    assert_eq!(exit.name.as_deref(), Some("sh"));
    assert_eq!(exit.user, Some(User::Uid(0)));
    assert_eq!(exit.ppid, Some(me()));
}

/// As root, taskstats gives the resource use: it agrees with what the kernel
/// tells the parent through wait4's rusage for the same process.
#[test]
fn taskstats_fills_resources_as_root() {
    if !is_root() {
        return skip("taskstats needs root (CAP_NET_ADMIN)");
    }
    let options = procexit::LinuxOptions::new().taskstats(procexit::Taskstats::Required);
    let monitor = match Monitor::builder()
        .backend(Backend::LinuxConnector)
        .filter(Filter::new().ppid(me()))
        .linux(options)
        .start()
    {
        Ok(m) => m,
        Err(e) => panic!("taskstats required as root but: {e}"),
    };
    // A single-threaded shell, with no children, that spins for a while,
    // writes 4 KiB itself (printf is built in) and prints its own peak
    // RSS (VmHWM, read with the built-in `read`).
    let script = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; \
                  x=0123456789abcdef; x=$x$x$x$x; x=$x$x$x$x; x=$x$x$x$x; \
                  printf %s $x$x$x$x > /dev/null; \
                  while read -r key value unit; do \
                    [ \"$key\" = VmHWM: ] && echo \"$value\"; \
                  done < /proc/$$/status; exit 0";
    // Reaped below by wait4, which std's Child cannot do (it gives no rusage).
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut printed).unwrap();
    let hwm_kib: u64 = printed.trim().parse().expect("VmHWM in KiB");
    let pid = child.id();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let waited = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid as i32);
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    let exit = &seen[&pid];
    assert_eq!(exit.source, Source::LinuxTaskstats);
    let r = &exit.resources;
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let rusage_cpu = micros(usage.ru_utime) + micros(usage.ru_stime);
    let cpu = r.cpu_user.expect("cpu_user") + r.cpu_system.expect("cpu_system");
    let cpu = cpu.as_micros() as u64;
    assert!(
        rusage_cpu > 50_000,
        "the loop used too little CPU: {rusage_cpu} µs"
    );
    // taskstats gives the tick-sampled times, rusage scales them to the
    // precise runtime: on a loaded machine a ~0.1 s process's sums were
    // seen more than 25 % apart, so only the order of magnitude is checked
    // here (the field offsets are checked exactly by the decoder's tests).
    assert!(
        cpu * 2 >= rusage_cpu && cpu <= rusage_cpu * 2 + 20_000,
        "taskstats {cpu} µs vs rusage {rusage_cpu} µs"
    );
    // The peak is about what the shell saw shortly before its end (RSS
    // counters are per-CPU and read with some slack: seen 10 % apart), and
    // at most rusage's, which also covers the forked copy before exec.
    let peak = r.peak_rss_bytes.expect("peak_rss_bytes");
    let max_kib = usage.ru_maxrss as u64;
    assert!(
        peak * 4 >= hwm_kib * 1024 * 3 && peak <= max_kib * 1024,
        "peak {peak} B, VmHWM {hwm_kib} KiB, ru_maxrss {max_kib} KiB"
    );
    assert!(r.hard_faults.is_some());
    // The kernel counts I/O bytes in whole KiB (rounded down).
    let written = r.io_write_bytes.expect("io_write_bytes");
    assert!(written >= 4096 && written % 1024 == 0, "{written}");
    assert!(r.io_read_bytes.is_some());
    // Its call counts are rounded to 1024 as well: too coarse to report.
    assert_eq!((r.io_read_ops, r.io_write_ops), (None, None));
}

#[test]
fn overruns_with_a_tiny_socket_buffer_are_never_silent() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    // A ~2 KB receive buffer holds a couple of messages: a burst overruns it.
    let options = procexit::LinuxOptions::new()
        .socket_buffer(1)
        .taskstats(procexit::Taskstats::Off);
    let monitor = match Monitor::builder()
        .backend(Backend::LinuxConnector)
        .linux(options)
        .start()
    {
        Ok(m) => m,
        Err(e) => return skip(&format!("process connector not usable here: {e}")),
    };
    const PER_LOOP: usize = 1000;
    let script = format!("i=0; while [ $i -lt {PER_LOOP} ]; do /bin/true; i=$((i+1)); done");
    let loops: Vec<_> = (0..4)
        .map(|_| Command::new("sh").args(["-c", &script]).spawn().unwrap())
        .collect();
    let parents: Vec<u32> = loops.iter().map(|c| c.id()).collect();
    for mut child in loops {
        assert!(child.wait().unwrap().success());
    }
    // After the burst the monitor keeps working: a known exit still arrives.
    // A probe may itself fall into an overrun on a loaded machine, so a new
    // one is started every half second until one comes through.
    let (mut delivered, mut overrun_markers) = (0usize, 0u64);
    let mut probes: Vec<u32> = Vec::new();
    let mut probe_seen = false;
    let mut next_probe = Instant::now() + Duration::from_millis(300);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe_seen && Instant::now() < deadline {
        if Instant::now() >= next_probe {
            probes.push(run("sh", &["-c", "exit 77"]));
            next_probe = Instant::now() + Duration::from_millis(500);
        }
        match monitor.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Exit(exit)) => {
                if exit.ppid.is_some_and(|p| parents.contains(&p)) {
                    delivered += 1;
                }
                if probes.contains(&exit.pid) {
                    assert_eq!(exit.status, ExitStatus::Code(77));
                    probe_seen = true;
                }
            }
            Ok(Event::Lost {
                reason: procexit::LossReason::Overrun,
                ..
            }) => overrun_markers += 1,
            _ => {}
        }
    }
    let stats = monitor.stop().unwrap();
    eprintln!(
        "tiny buffer: {delivered} of {} delivered, {overrun_markers} overrun markers, {stats:?}",
        4 * PER_LOOP
    );
    assert!(probe_seen, "the monitor must keep going after overruns");
    if delivered < 4 * PER_LOOP {
        assert!(
            stats.overruns > 0 && overrun_markers > 0,
            "silent loss: {stats:?}"
        );
    }
}

fn process_alive_before_the_monitor_gets_a_full_record(backend: Backend) {
    // `head -c 1` ends (status 0) once it reads a byte: it is sure to run
    // until the monitor has started, however long that takes under load.
    let mut child = Command::new("head")
        .args(["-c", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(300));
    let Some(monitor) = start_monitor(backend, Filter::new().pid(pid)) else {
        drop(child.stdin.take());
        let _ = child.wait();
        return;
    };
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    let reaper = std::thread::spawn(move || child.wait());
    let seen = collect(&monitor, |s| s.contains_key(&pid));
    reaper.join().unwrap().unwrap();
    let exit = seen
        .get(&pid)
        .expect("the exit of a process alive before the start");
    assert_eq!(exit.status, ExitStatus::Code(0));
    assert_eq!(exit.name.as_deref(), Some("head"));
    assert_eq!(exit.command_line.as_deref(), Some("head -c 1"));
    assert_eq!(exit.ppid, Some(me()));
    // Start time from /proc or the task (clock ticks): the whole life, not
    // just the part the monitor saw.
    let lived = exit.duration().expect("duration");
    assert!(lived >= Duration::from_millis(280), "lived {lived:?}");
    assert!(exit.process_key.is_some());
}

/// The hierarchies a cgroup path may be read from here: the unified one (at
/// /sys/fs/cgroup on cgroup v2, /sys/fs/cgroup/unified on hybrid systems)
/// and the v1 memory controller.
fn cgroup_roots() -> (Option<std::path::PathBuf>, Option<std::path::PathBuf>) {
    let unified = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|root| root.join("cgroup.controllers").exists());
    let memory = Some(std::path::PathBuf::from("/sys/fs/cgroup/memory"))
        .filter(|root| root.join("memory.limit_in_bytes").exists());
    (unified, memory)
}

/// This process's path in the unified hierarchy (the `0::` line).
fn own_unified_path() -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

/// A process that moves itself into new cgroups and then execs is reported
/// with the cgroup `/proc/PID/cgroup` names by the rule of
/// `procexit::cgroup::cgroup_path`, and with the container id its
/// docker-style name holds: moved in the unified hierarchy only, in the v1
/// memory hierarchy only (its unified path stays `/`), and in both (the
/// unified one wins), as far as this machine has those hierarchies.
fn cgroup_of_a_process_started_inside_a_cgroup(backend: Backend) {
    if !is_root() {
        return skip("creating a cgroup needs root");
    }
    let (unified, memory) = cgroup_roots();
    let seed = u64::from(me()) << 20 ^ 0x5eed_cafe ^ u64::from(backend == Backend::LinuxEbpf) << 8;
    let scope = |n: u64| {
        let id = format!("{:016x}", seed + n).repeat(4);
        (format!("docker-{id}.scope"), id)
    };
    // (directories to join, the name expected as /NAME)
    let mut cases: Vec<(Vec<std::path::PathBuf>, String, String)> = Vec::new();
    if let Some(root) = &unified {
        let (name, id) = scope(1);
        cases.push((vec![root.join(&name)], name, id));
    }
    // Memory alone decides only while the unified path is the root.
    if let Some(root) = memory
        .as_ref()
        .filter(|_| matches!(own_unified_path().as_deref(), None | Some("/")))
    {
        let (name, id) = scope(2);
        cases.push((vec![root.join(&name)], name, id));
    }
    if let (Some(u), Some(m)) = (&unified, &memory) {
        let (name, id) = scope(3);
        let (other, _) = scope(4);
        cases.push((vec![m.join(&other), u.join(&name)], name, id));
    }
    if cases.is_empty() {
        return skip("no unified or v1 memory cgroup hierarchy at /sys/fs/cgroup");
    }
    let Some(monitor) = start_monitor(backend, Filter::new().ppid(me())) else {
        return;
    };
    for (dirs, name, id) in cases {
        for dir in &dirs {
            std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        let moves: String = dirs
            .iter()
            .map(|dir| format!("echo $$ > {}/cgroup.procs && ", dir.display()))
            .collect();
        // The connector source reads the cgroup from /proc when it sees the
        // exec: the process lives long enough for a busy machine's reader.
        let script = format!("{moves}exec sh -c 'sleep 0.5; exit 4'");
        let pid = run("sh", &["-c", &script]);
        let seen = collect(&monitor, |s| s.contains_key(&pid));
        for dir in &dirs {
            let _ = std::fs::remove_dir(dir);
        }
        let exit = seen.get(&pid).expect("the exit");
        assert_eq!(exit.status, ExitStatus::Code(4), "the moves failed");
        assert_eq!(
            exit.cgroup.as_deref(),
            Some(format!("/{name}").as_str()),
            "joined {dirs:?}"
        );
        assert_eq!(exit.container_id.as_deref(), Some(id.as_str()));
    }
}

/// `WaitSet` on a pid whose process ends and whose pid is then given to a
/// new process (forced through `ns_last_pid`) reports the first process's
/// exit, with its start time as `process_key`, and never the newcomer's.
#[test]
fn wait_is_not_fooled_by_pid_reuse() {
    if !is_root() {
        return skip("forcing pid reuse through /proc/sys/kernel/ns_last_pid needs root");
    }
    if !std::path::Path::new("/proc/sys/kernel/ns_last_pid").exists() {
        return skip("no /proc/sys/kernel/ns_last_pid (kernel without CONFIG_CHECKPOINT_RESTORE)");
    }
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let start_ticks = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = stat.get(stat.rfind(')')? + 1..)?;
        after.split_whitespace().nth(19)?.parse::<u64>().ok()
    };
    let mut original = Command::new("sh")
        .args(["-c", "read -r line; exit 3"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = original.id();
    let original_start = start_ticks(pid).expect("the original's start time");
    let mut set = match procexit::WaitSet::new(&[pid]) {
        Ok(set) => set,
        Err(e) => {
            drop(original.stdin.take());
            let _ = original.wait();
            return skip(&format!("process connector not usable here: {e}"));
        }
    };
    // Let the clock move on, so the two processes' start times differ.
    std::thread::sleep(Duration::from_millis(300));
    drop(original.stdin.take());
    assert_eq!(original.wait().unwrap().code(), Some(3));

    // Hand the pid to a new process: ns_last_pid = pid - 1, then fork. Other
    // processes on the machine may take it first, so try a few times.
    let mut reused = None;
    for _ in 0..200 {
        let mut last = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/sys/kernel/ns_last_pid")
            .unwrap();
        write!(last, "{}", pid - 1).unwrap();
        drop(last);
        let mut child = Command::new("sh")
            .args(["-c", "read -r line; exit 7"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        if child.id() == pid {
            reused = Some(child);
            break;
        }
        drop(child.stdin.take());
        child.wait().unwrap();
    }
    let Some(mut newcomer) = reused else {
        panic!("could not get pid {pid} reused in 200 tries");
    };
    let newcomer_start = start_ticks(pid).expect("the newcomer's start time");
    assert!(
        newcomer_start > original_start + 1,
        "start times must differ"
    );
    drop(newcomer.stdin.take());
    assert_eq!(newcomer.wait().unwrap().code(), Some(7));

    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = set
        .next_exit(Some(deadline))
        .unwrap()
        .expect("the original's exit");
    assert_eq!(exit.pid, pid);
    assert_eq!(exit.status, ExitStatus::Code(3), "{exit:?}");
    let key = exit.process_key.expect("a process key");
    assert!(
        key.abs_diff(original_start) <= 1,
        "{key} vs {original_start}"
    );
    assert!(set.remaining().is_empty());

    // Waiting on the pid now names no process: it has ended.
    assert!(matches!(
        procexit::WaitSet::new(&[pid]),
        Err(Error::NoSuchProcess { .. })
    ));
}

/// Every scenario above runs once per Linux source: `connector::name` and
/// `ebpf::name`.
macro_rules! on_both_sources {
    ($($name:ident),* $(,)?) => {
        mod connector {
            $(#[test]
            fn $name() {
                super::$name(procexit::Backend::LinuxConnector)
            })*
        }
        mod ebpf {
            $(#[test]
            fn $name() {
                super::$name(procexit::Backend::LinuxEbpf)
            })*
        }
    };
}

on_both_sources!(
    exit_codes_are_exact,
    kinds_and_names_of_live_exits,
    signals_are_reported_as_signals,
    grandchild_is_reported_with_its_own_parent,
    process_that_execs_twice_has_its_last_identity,
    one_millisecond_process_is_never_misnamed,
    leader_first_exit_reports_the_process_status,
    burst_of_short_processes_loses_nothing,
    stop_is_prompt_and_drop_does_not_hang,
    process_alive_before_the_monitor_gets_a_full_record,
    cgroup_of_a_process_started_inside_a_cgroup
);

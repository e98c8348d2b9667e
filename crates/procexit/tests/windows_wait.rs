//! `WaitSet` on Windows (process handles). Runs under Wine in CI and on
//! real Windows; needs no elevation.

#![cfg(windows)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procexit::{Error, ExitStatus, Source, WaitSet};

fn soon(secs: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(secs))
}

#[test]
fn reports_the_exit_code_name_and_times_of_a_process() {
    // `cmd /c pause` waits on stdin, so the child is alive when the set opens it.
    let mut child = Command::new("cmd")
        .args(["/c", "pause >nul & exit 42"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cmd.exe");
    let pid = child.id();
    let mut set = WaitSet::new(&[pid]).expect("open the child");
    assert_eq!(
        set.next_exit(Some(Instant::now())).unwrap(),
        None,
        "still running"
    );
    drop(child.stdin.take()); // EOF ends `pause`
    let exit = set.next_exit(soon(30)).unwrap().expect("exit within 30 s");
    assert_eq!(exit.pid, pid);
    assert_eq!(exit.status, ExitStatus::Code(42));
    assert_eq!(
        exit.name.as_deref().map(str::to_ascii_lowercase).as_deref(),
        Some("cmd.exe")
    );
    assert_eq!(exit.source, Source::Handle);
    assert!(exit.start_time.is_some() && exit.exit_time.is_some());
    assert!(set.remaining().is_empty());
    assert_eq!(set.next_exit(None).unwrap(), None);
    child.wait().unwrap();
}

#[test]
fn waits_for_several_in_the_order_they_end() {
    let spawn = |code: u32| {
        Command::new("cmd")
            .args(["/c", &format!("pause >nul & exit {code}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("cmd.exe")
    };
    let (mut a, mut b) = (spawn(7), spawn(9));
    let mut set = WaitSet::new(&[a.id(), b.id()]).unwrap();
    drop(b.stdin.take());
    let first = set.next_exit(soon(30)).unwrap().unwrap();
    assert_eq!((first.pid, first.status), (b.id(), ExitStatus::Code(9)));
    assert_eq!(set.remaining(), &[a.id()]);
    a.kill().unwrap(); // TerminateProcess with exit code 1
    let second = set.next_exit(soon(30)).unwrap().unwrap();
    assert_eq!((second.pid, second.status), (a.id(), ExitStatus::Code(1)));
    a.wait().unwrap();
    b.wait().unwrap();
}

#[test]
fn a_dead_pid_is_no_such_process() {
    let mut child = Command::new("cmd").args(["/c", "exit 0"]).spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    drop(child); // closes our handle: the process object goes away
    match WaitSet::new(&[pid]) {
        Err(Error::NoSuchProcess { pid: p }) => assert_eq!(p, pid),
        other => panic!("{other:?}"),
    }
    // Far beyond any pid in use.
    let r = WaitSet::new(&[0x7fff_fff0]);
    assert!(
        matches!(r, Err(Error::NoSuchProcess { pid: 0x7fff_fff0 })),
        "{r:?}"
    );
}

//! The live process table of the Linux backend: turns the connector's
//! per-thread events into one record per process.
//!
//! - The parent comes from FORK (the EXIT event's parent is 0 for threads,
//!   reaped and autoreaped children).
//! - A process ends when its last task ends: the leader may exit first, and
//!   then the real status is in the last thread's EXIT.
//! - Name, command line and uid come from /proc at EXEC (best effort: a
//!   program that exits at once is often gone before we look; then they are
//!   `None`, never the parent's).
//! - Processes alive before the monitor started are seeded from /proc.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::ffi;
use super::procfs;
use crate::decode::proc_connector::{ProcEvent, ProcMessage};
use crate::decode::taskstats::TaskExit;
use crate::event::{ExitStatus, ProcessExit, Source, User};
use crate::queue::Sink;

/// Converts kernel clocks to wall time and boot ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns (signed).
    mono_to_real: i128,
    /// CLOCK_BOOTTIME − CLOCK_MONOTONIC, in ns.
    mono_to_boot: i128,
    ticks_per_second: u64,
}

impl Clocks {
    pub(crate) fn now() -> Clocks {
        let mono = i128::from(ffi::clock_ns(libc::CLOCK_MONOTONIC));
        let real = i128::from(ffi::clock_ns(libc::CLOCK_REALTIME));
        let boot = i128::from(ffi::clock_ns(libc::CLOCK_BOOTTIME));
        Clocks {
            mono_to_real: real - mono,
            mono_to_boot: boot - mono,
            ticks_per_second: ffi::clock_ticks_per_second(),
        }
    }

    fn wall_from_mono(&self, mono_ns: u64) -> Option<SystemTime> {
        let real = i128::from(mono_ns) + self.mono_to_real;
        let real = u64::try_from(real).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(real))
    }

    fn ticks_from_mono(&self, mono_ns: u64) -> Option<u64> {
        let boot = u64::try_from(i128::from(mono_ns) + self.mono_to_boot).ok()?;
        Some(boot / (1_000_000_000 / self.ticks_per_second.max(1)))
    }

    fn wall_from_ticks(&self, ticks: u64) -> Option<SystemTime> {
        // Boot instant in wall time = REALTIME − BOOTTIME.
        let boot_wall = self.mono_to_real - self.mono_to_boot;
        let since_boot = i128::from(ticks) * 1_000_000_000 / i128::from(self.ticks_per_second);
        let real = u64::try_from(boot_wall + since_boot).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(real))
    }
}

#[derive(Debug, Default, Clone)]
struct Proc {
    ppid: Option<u32>,
    name: Option<String>,
    command_line: Option<String>,
    uid: Option<u32>,
    start_ticks: Option<u64>,
    start_time: Option<SystemTime>,
    /// Live threads other than the leader.
    threads: HashSet<u32>,
    /// Set when the leader ended while other threads lived on:
    /// (wait status, monotonic ns of the leader's exit).
    leader_exit: Option<(u32, u64)>,
    /// Status of the most recent task EXIT of this process.
    last_status: Option<u32>,
    /// When a resync found it gone from /proc without an EXIT.
    vanished_at: Option<Instant>,
}

/// How long a finished process waits for its taskstats record (they
/// normally arrive within microseconds of each other).
const TASKSTATS_WAIT: Duration = Duration::from_millis(100);
/// How long a taskstats record waits for the connector's view.
const TASKSTATS_KEEP: Duration = Duration::from_secs(2);
/// How long a process found gone at a resync may still deliver its EXIT
/// (queued behind the overrun) before it is counted as lost.
const VANISHED_GRACE: Duration = Duration::from_secs(1);

/// The table. Owned by the backend thread; no locking.
pub(crate) struct Table {
    procs: HashMap<u32, Proc>,
    clocks: Clocks,
    /// Whether taskstats records are coming (then finished processes wait
    /// briefly to be merged with theirs).
    with_taskstats: bool,
    /// Finished processes waiting for their taskstats record.
    awaiting: HashMap<u32, (ProcessExit, Instant)>,
    /// Taskstats records that came before the connector finished the process.
    early: HashMap<u32, (TaskExit, Instant)>,
}

impl Table {
    pub(crate) fn new(with_taskstats: bool) -> Table {
        Table {
            procs: HashMap::new(),
            clocks: Clocks::now(),
            with_taskstats,
            awaiting: HashMap::new(),
            early: HashMap::new(),
        }
    }

    /// Whether finished processes are waiting for taskstats.
    pub(crate) fn has_awaiting(&self) -> bool {
        !self.awaiting.is_empty()
    }

    /// A taskstats record: merged into the process's record when it is the
    /// last task of its process.
    pub(crate) fn apply_taskstats(&mut self, record: TaskExit, sink: &Sink) {
        if !record.is_group_end() {
            return;
        }
        let tgid = record.process_id();
        match self.awaiting.remove(&tgid) {
            Some((exit, _)) => sink.exit(merge_taskstats(exit, &record)),
            None => {
                self.early.insert(tgid, (record, Instant::now()));
            }
        }
    }

    /// Emits processes that waited long enough for taskstats, and forgets
    /// taskstats records the connector never matched.
    pub(crate) fn flush_awaiting(&mut self, now: Instant, sink: &Sink) {
        let due: Vec<u32> = self
            .awaiting
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= TASKSTATS_WAIT)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            if let Some((exit, _)) = self.awaiting.remove(&pid) {
                sink.exit(exit);
            }
        }
        self.early
            .retain(|_, (_, since)| now.duration_since(*since) < TASKSTATS_KEEP);
    }

    /// Emits everything still waiting (at stop).
    pub(crate) fn flush_all(&mut self, sink: &Sink) {
        for (_, (exit, _)) in self.awaiting.drain() {
            sink.exit(exit);
        }
    }

    fn emit(&mut self, exit: ProcessExit, sink: &Sink) {
        if !self.with_taskstats {
            sink.exit(exit);
            return;
        }
        if let Some((record, _)) = self.early.remove(&exit.pid) {
            sink.exit(merge_taskstats(exit, &record));
            return;
        }
        if let Some((older, _)) = self.awaiting.insert(exit.pid, (exit, Instant::now())) {
            // The pid ended twice within the wait: the first one goes as is.
            sink.exit(older);
        }
    }

    fn read_proc(&self, pid: u32) -> Option<Proc> {
        let stat = procfs::stat(pid)?;
        let threads = procfs::tasks(pid)
            .unwrap_or_default()
            .into_iter()
            .filter(|&tid| tid != pid)
            .collect();
        Some(Proc {
            ppid: Some(stat.ppid),
            name: Some(stat.comm),
            command_line: procfs::cmdline(pid),
            uid: procfs::uid(pid),
            start_ticks: Some(stat.start_ticks),
            start_time: self.clocks.wall_from_ticks(stat.start_ticks),
            threads,
            leader_exit: None,
            last_status: None,
            vanished_at: None,
        })
    }

    /// Adds every process now in /proc. Returns how many were added.
    pub(crate) fn seed(&mut self) -> usize {
        let mut added = 0;
        for pid in procfs::pids() {
            if self.procs.contains_key(&pid) {
                continue;
            }
            if let Some(proc) = self.read_proc(pid) {
                self.procs.insert(pid, proc);
                added += 1;
            }
        }
        added
    }

    /// After the kernel dropped events. A tracked process whose pid now
    /// belongs to another process ended unseen: removed and returned as
    /// lost. One that is gone from /proc may still have its EXIT queued
    /// behind the overrun, so it is only marked; the sweep counts it lost if
    /// no EXIT came within [`VANISHED_GRACE`]. New processes are seeded.
    pub(crate) fn resync(&mut self) -> u64 {
        let mut lost = 0u64;
        let now = Instant::now();
        self.procs.retain(|&pid, proc| {
            if proc.leader_exit.is_some() {
                return true; // the sweep finishes these
            }
            match procfs::stat(pid) {
                Some(stat) => {
                    let same = proc
                        .start_ticks
                        .is_none_or(|ticks| stat.start_ticks.abs_diff(ticks) <= 1);
                    if !same {
                        lost += 1;
                    }
                    same
                }
                None => {
                    proc.vanished_at.get_or_insert(now);
                    true
                }
            }
        });
        self.seed();
        lost
    }

    /// Applies one connector event; finished processes go to `sink`.
    pub(crate) fn apply(&mut self, message: &ProcMessage, sink: &Sink) {
        let ts = message.timestamp_ns;
        match message.event {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
                ..
            } => {
                if child_pid == child_tgid {
                    self.on_process_fork(parent_tgid, child_tgid, ts, sink);
                } else {
                    if !self.procs.contains_key(&child_tgid) {
                        let seeded = self.read_proc(child_tgid).unwrap_or_default();
                        self.procs.insert(child_tgid, seeded);
                    }
                    if let Some(proc) = self.procs.get_mut(&child_tgid) {
                        proc.threads.insert(child_pid);
                    }
                }
            }
            ProcEvent::Exec { tgid, .. } => self.on_exec(tgid),
            ProcEvent::Uid {
                pid, tgid, ruid, ..
            } if pid == tgid => {
                if let Some(proc) = self.procs.get_mut(&tgid) {
                    proc.uid = Some(ruid);
                }
            }
            ProcEvent::Comm { pid, tgid, comm } if pid == tgid => {
                if let Some(proc) = self.procs.get_mut(&tgid) {
                    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                    proc.name = comm
                        .get(..end)
                        .map(|name| String::from_utf8_lossy(name).into_owned());
                }
            }
            ProcEvent::Exit {
                pid,
                tgid,
                exit_code,
                parent_tgid,
                ..
            } => self.on_exit(pid, tgid, exit_code, parent_tgid, ts, sink),
            _ => {}
        }
    }

    fn on_process_fork(&mut self, parent: u32, child: u32, ts: u64, sink: &Sink) {
        let start_ticks = self.clocks.ticks_from_mono(ts);
        if let Some(old) = self.procs.get(&child) {
            let same = match (old.start_ticks, start_ticks) {
                (Some(a), Some(b)) => a.abs_diff(b) <= 1,
                _ => false,
            };
            if same {
                // Seeded from /proc after this FORK was queued: same process.
                return;
            }
            if old.leader_exit.is_none() {
                // The pid was reused: the old process ended without an EXIT
                // reaching us.
                sink.lost(1);
            }
        }
        let inherited = self.procs.get(&parent);
        let proc = Proc {
            ppid: Some(parent),
            name: inherited.and_then(|p| p.name.clone()),
            command_line: inherited.and_then(|p| p.command_line.clone()),
            uid: inherited.and_then(|p| p.uid),
            start_ticks,
            start_time: self.clocks.wall_from_mono(ts),
            ..Proc::default()
        };
        self.procs.insert(child, proc);
    }

    fn on_exec(&mut self, tgid: u32) {
        let stat = procfs::stat(tgid);
        let proc = self.procs.entry(tgid).or_default();
        // After exec the other threads are gone and the name is new. What
        // /proc no longer holds is unknown, not the old program's.
        proc.threads.clear();
        proc.leader_exit = None;
        proc.name = procfs::comm(tgid).or_else(|| stat.as_ref().map(|s| s.comm.clone()));
        proc.command_line = procfs::cmdline(tgid);
        if let Some(uid) = procfs::uid(tgid) {
            proc.uid = Some(uid);
        }
        if let Some(stat) = stat {
            proc.start_ticks = Some(stat.start_ticks);
            if proc.ppid.is_none() {
                proc.ppid = Some(stat.ppid);
            }
            if proc.start_time.is_none() {
                proc.start_time = self.clocks.wall_from_ticks(stat.start_ticks);
            }
        }
    }

    fn on_exit(&mut self, pid: u32, tgid: u32, status: u32, parent: u32, ts: u64, sink: &Sink) {
        if pid != tgid {
            // A thread ended.
            let Some(proc) = self.procs.get_mut(&tgid) else {
                return;
            };
            proc.threads.remove(&pid);
            proc.last_status = Some(status);
            if proc.leader_exit.is_some() && proc.threads.is_empty() {
                self.finish(tgid, status, ts, sink);
            }
            return;
        }
        let proc = self.procs.entry(tgid).or_insert_with(|| Proc {
            // Not seen before (started while events were lost): what the
            // EXIT itself says, plus what /proc may still show.
            ppid: (parent != 0).then_some(parent),
            ..Proc::default()
        });
        proc.last_status = Some(status);
        if proc.threads.is_empty() {
            self.finish(tgid, status, ts, sink);
        } else {
            proc.leader_exit = Some((status, ts));
        }
    }

    fn finish(&mut self, tgid: u32, status: u32, ts: u64, sink: &Sink) {
        let Some(mut proc) = self.procs.remove(&tgid) else {
            return;
        };
        if proc.name.is_none() {
            // The zombie may still be there; accept it only if it is the
            // same process (same start time).
            if let Some(stat) = procfs::stat(tgid) {
                let same = proc
                    .start_ticks
                    .is_none_or(|t| t.abs_diff(stat.start_ticks) <= 1);
                if same {
                    proc.name = Some(stat.comm);
                    proc.start_ticks = proc.start_ticks.or(Some(stat.start_ticks));
                }
            }
        }
        let mut exit = ProcessExit::new(
            tgid,
            ExitStatus::from_wait_status(status),
            Source::LinuxConnector,
        );
        exit.ppid = proc.ppid;
        exit.name = proc.name;
        exit.command_line = proc.command_line;
        exit.user = proc.uid.map(User::Uid);
        exit.process_key = proc.start_ticks;
        exit.start_time = proc.start_time.or_else(|| {
            proc.start_ticks
                .and_then(|t| self.clocks.wall_from_ticks(t))
        });
        exit.exit_time = self.clocks.wall_from_mono(ts);
        self.emit(exit, sink);
    }

    /// Finishes processes whose leader ended while threads lived on, once
    /// /proc shows no thread but the leader (the threads' EXITs were lost).
    pub(crate) fn sweep(&mut self, now_mono_ns: u64, sink: &Sink) {
        let stale: Vec<(u32, u32, u64)> = self
            .procs
            .iter()
            .filter_map(|(&pid, proc)| {
                let (status, ts) = proc.leader_exit?;
                if now_mono_ns.saturating_sub(ts) < 500_000_000 {
                    return None;
                }
                let alive = procfs::tasks(pid).is_some_and(|tasks| tasks.iter().any(|&t| t != pid));
                (!alive).then(|| (pid, proc.last_status.unwrap_or(status), ts))
            })
            .collect();
        for (pid, status, ts) in stale {
            sink.anomaly();
            self.finish(pid, status, ts, sink);
        }
        self.count_vanished(VANISHED_GRACE, sink);
    }

    /// Counts as lost the processes found gone at a resync whose EXIT did
    /// not come within `grace` (zero at stop: the stream ends now).
    pub(crate) fn count_vanished(&mut self, grace: Duration, sink: &Sink) {
        let before = self.procs.len();
        self.procs
            .retain(|_, proc| proc.vanished_at.is_none_or(|at| at.elapsed() < grace));
        sink.lost((before - self.procs.len()) as u64);
    }

    /// Refreshes the clock offsets (they drift when the wall clock is set).
    pub(crate) fn refresh_clocks(&mut self) {
        self.clocks = Clocks::now();
    }
}

/// Fills what the connector's view lacks from the taskstats record of the
/// same process (its comm, parent at exit, uid, resource use).
fn merge_taskstats(mut exit: ProcessExit, record: &TaskExit) -> ProcessExit {
    exit.source = Source::LinuxTaskstats;
    exit.resources = record.resources();
    if exit.name.is_none() && !record.comm.is_empty() {
        exit.name = Some(record.comm.clone());
    }
    if exit.ppid.is_none() && record.ppid != 0 {
        exit.ppid = Some(record.ppid);
    }
    if exit.user.is_none() {
        exit.user = Some(User::Uid(record.uid));
    }
    exit
}

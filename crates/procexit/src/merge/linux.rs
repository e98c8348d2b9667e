//! Linux task events → [`ProcessExit`] records: the process table that turns
//! the kernel's per-thread events into one record per process.
//!
//! - The parent comes from FORK (the EXIT event's parent is 0 for threads,
//!   reaped and autoreaped children).
//! - A process ends when its last task ends: the leader may exit first, and
//!   then the real status is in the last thread's EXIT.
//! - Name, command line and uid come from /proc at EXEC (best effort: a
//!   program that exits at once is often gone before we look; then they are
//!   `None`, never the parent's).
//! - Processes alive before the monitor started are seeded from /proc.
//! - After an overrun the table is resynchronised from /proc; processes that
//!   vanished unseen are counted as lost.
//! - With taskstats, a finished process waits briefly for its taskstats
//!   record, which fills in what the connector's view lacks.
//!
//! Everything the table asks of the OS (/proc reads, clocks) goes through
//! the [`Host`] trait, so the whole state machine runs against a fake in the
//! unit tests below. The connector backend feeds it decoded
//! [`ProcMessage`]s; another Linux source can call the same `on_*` methods.

use std::collections::{HashMap, HashSet};

use super::key_hash::KeyHash;
use std::time::{Duration, SystemTime};

use crate::decode::cgroup::container_id;
use crate::decode::proc_connector::{ProcEvent, ProcMessage};
use crate::decode::taskstats::TaskExit;
use crate::event::{ExitStatus, ProcessExit, Source, User};
use crate::queue::Sink;

/// Facts from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Short name (field 2, without the parentheses).
    pub(crate) comm: String,
    /// State letter (field 3): `R`, `S`, `Z` …
    pub(crate) state: char,
    /// Parent pid (field 4).
    pub(crate) ppid: u32,
    /// Start time in clock ticks since boot (field 22).
    pub(crate) start_ticks: u64,
}

/// The kernel clocks read at one instant, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClockReading {
    /// `CLOCK_MONOTONIC`: the clock of connector time stamps.
    pub(crate) monotonic_ns: u64,
    /// `CLOCK_REALTIME`: wall time.
    pub(crate) realtime_ns: u64,
    /// `CLOCK_BOOTTIME`: the clock of `/proc/<pid>/stat` start times.
    pub(crate) boottime_ns: u64,
    /// `sysconf(_SC_CLK_TCK)`: the unit of start times.
    pub(crate) ticks_per_second: u64,
}

/// What the table asks of the OS. Every read is best effort: `None` when the
/// process is gone or the file unreadable (/proc races with exits). The real
/// implementation reads /proc and `clock_gettime`; the tests use a fake.
pub(crate) trait Host {
    /// `/proc/<pid>/stat`.
    fn stat(&self, pid: u32) -> Option<ProcStat>;
    /// `/proc/<pid>/comm` (the name after an exec or a rename).
    fn comm(&self, pid: u32) -> Option<String>;
    /// `/proc/<pid>/cmdline`, NULs turned into spaces; `None` when empty.
    fn cmdline(&self, pid: u32) -> Option<String>;
    /// The real uid (`/proc/<pid>/status`).
    fn uid(&self, pid: u32) -> Option<u32>;
    /// The thread ids of a process (`/proc/<pid>/task`).
    fn tasks(&self, pid: u32) -> Option<Vec<u32>>;
    /// The cgroup path (`/proc/<pid>/cgroup`, chosen by
    /// [`cgroup_path`](crate::decode::cgroup::cgroup_path)).
    fn cgroup(&self, pid: u32) -> Option<String>;
    /// Every pid now in /proc.
    fn pids(&self) -> Vec<u32>;
    /// The clocks, now.
    fn clocks(&self) -> ClockReading;
    /// `CLOCK_MONOTONIC` now, in ns (the table's clock for its timeouts).
    fn monotonic_ns(&self) -> u64 {
        self.clocks().monotonic_ns
    }
}

/// Converts kernel clocks to wall time and boot ticks.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns (signed).
    mono_to_real: i128,
    /// CLOCK_BOOTTIME − CLOCK_MONOTONIC, in ns.
    mono_to_boot: i128,
    ticks_per_second: u64,
}

impl Clocks {
    fn new(r: ClockReading) -> Clocks {
        let mono = i128::from(r.monotonic_ns);
        Clocks {
            mono_to_real: i128::from(r.realtime_ns).saturating_sub(mono),
            mono_to_boot: i128::from(r.boottime_ns).saturating_sub(mono),
            ticks_per_second: r.ticks_per_second.max(1),
        }
    }

    fn wall_from_mono(&self, mono_ns: u64) -> Option<SystemTime> {
        let real = i128::from(mono_ns).saturating_add(self.mono_to_real);
        let real = u64::try_from(real).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(real))
    }

    fn ticks_from_mono(&self, mono_ns: u64) -> Option<u64> {
        let boot = u64::try_from(i128::from(mono_ns).saturating_add(self.mono_to_boot)).ok()?;
        boot.checked_div(1_000_000_000u64.checked_div(self.ticks_per_second)?)
    }

    fn wall_from_ticks(&self, ticks: u64) -> Option<SystemTime> {
        // Boot instant in wall time = REALTIME − BOOTTIME.
        let boot_wall = self.mono_to_real.saturating_sub(self.mono_to_boot);
        let since_boot = i128::from(ticks)
            .saturating_mul(1_000_000_000)
            .checked_div(i128::from(self.ticks_per_second))?;
        let real = u64::try_from(boot_wall.saturating_add(since_boot)).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(real))
    }
}

/// Two start times in ticks name the same process (one tick of rounding
/// between the connector's clock and /proc).
fn same_start(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= 1
}

#[derive(Debug, Default, Clone)]
struct Proc {
    ppid: Option<u32>,
    name: Option<String>,
    command_line: Option<String>,
    uid: Option<u32>,
    /// Read at exec (and when seeded from /proc); a fork inherits its
    /// parent's, as the kernel does until someone moves the child.
    cgroup: Option<String>,
    start_ticks: Option<u64>,
    start_time: Option<SystemTime>,
    /// Live threads other than the leader.
    threads: HashSet<u32, KeyHash>,
    /// Set when the leader ended while other threads lived on:
    /// (wait status, monotonic ns of the leader's exit).
    leader_exit: Option<(u32, u64)>,
    /// Status of the most recent task EXIT of this process.
    last_status: Option<u32>,
    /// Monotonic ns when a resync found it gone from /proc without an EXIT.
    vanished_at: Option<u64>,
}

/// How long a finished process waits for its taskstats record (they
/// normally arrive within microseconds of each other).
pub(crate) const TASKSTATS_WAIT: Duration = Duration::from_millis(100);
/// How long a taskstats record waits for the connector's view.
const TASKSTATS_KEEP: Duration = Duration::from_secs(2);
/// How long a process found gone at a resync may still deliver its EXIT
/// (queued behind the overrun) before it is counted as lost.
pub(crate) const VANISHED_GRACE: Duration = Duration::from_secs(1);
/// How long after its leader's EXIT a process whose threads all vanished
/// from /proc is finished without their EXITs.
const LEADER_ORPHAN_WAIT: Duration = Duration::from_millis(500);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The Linux process table. Owned by one backend thread; no locking.
pub(crate) struct ProcessTable<H: Host> {
    host: H,
    procs: HashMap<u32, Proc, KeyHash>,
    clocks: Clocks,
    /// Whether taskstats records are coming (then finished processes wait
    /// briefly to be merged with theirs).
    with_taskstats: bool,
    /// Finished processes waiting for their taskstats record, with the
    /// monotonic ns when they started waiting.
    awaiting: HashMap<u32, (ProcessExit, u64), KeyHash>,
    /// Taskstats records that came before the connector finished the
    /// process, with the monotonic ns of their arrival.
    early: HashMap<u32, (TaskExit, u64), KeyHash>,
}

impl<H: Host> ProcessTable<H> {
    /// An empty table over `host`. `with_taskstats`: finished processes wait
    /// up to [`TASKSTATS_WAIT`] for their taskstats record.
    pub(crate) fn new(host: H, with_taskstats: bool) -> ProcessTable<H> {
        let clocks = Clocks::new(host.clocks());
        ProcessTable {
            host,
            procs: HashMap::with_hasher(KeyHash::new()),
            clocks,
            with_taskstats,
            awaiting: HashMap::with_hasher(KeyHash::new()),
            early: HashMap::with_hasher(KeyHash::new()),
        }
    }

    /// Whether finished processes are waiting for taskstats (the backend
    /// then wakes up sooner to flush them).
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
                let now = self.host.monotonic_ns();
                self.early.insert(tgid, (record, now));
            }
        }
    }

    /// The host's monotonic clock, ns (the time base of the waits).
    pub(crate) fn monotonic_ns(&self) -> u64 {
        self.host.monotonic_ns()
    }

    /// Emits processes that waited long enough for taskstats, and forgets
    /// taskstats records the connector never matched. `checked_at`: the
    /// monotonic ns at or before which the taskstats socket was last read
    /// to the end; a process is due only if its wait had passed by then, so
    /// a record still queued is never given up.
    pub(crate) fn flush_awaiting(&mut self, sink: &Sink, checked_at: u64) {
        let now = self.host.monotonic_ns();
        let waited = |since: u64, limit: Duration| now.saturating_sub(since) >= nanos(limit);
        let due: Vec<u32> = self
            .awaiting
            .iter()
            .filter(|(_, (_, since))| checked_at.saturating_sub(*since) >= nanos(TASKSTATS_WAIT))
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            if let Some((exit, _)) = self.awaiting.remove(&pid) {
                sink.exit(exit);
            }
        }
        self.early
            .retain(|_, (_, since)| !waited(*since, TASKSTATS_KEEP));
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
        let now = self.host.monotonic_ns();
        if let Some((older, _)) = self.awaiting.insert(exit.pid, (exit, now)) {
            // The pid ended twice within the wait: the first one goes as is.
            sink.exit(older);
        }
    }

    fn read_proc(&self, pid: u32) -> Option<Proc> {
        let stat = self.host.stat(pid)?;
        let threads = self
            .host
            .tasks(pid)
            .unwrap_or_default()
            .into_iter()
            .filter(|&tid| tid != pid)
            .collect();
        Some(Proc {
            ppid: Some(stat.ppid),
            name: Some(stat.comm),
            command_line: self.host.cmdline(pid),
            uid: self.host.uid(pid),
            cgroup: self.host.cgroup(pid),
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
        let mut added = 0usize;
        for pid in self.host.pids() {
            if self.procs.contains_key(&pid) {
                continue;
            }
            if let Some(proc) = self.read_proc(pid) {
                self.procs.insert(pid, proc);
                added = added.saturating_add(1);
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
        let now = self.host.monotonic_ns();
        let host = &self.host;
        self.procs.retain(|&pid, proc| {
            if proc.leader_exit.is_some() {
                return true; // the sweep finishes these
            }
            match host.stat(pid) {
                Some(stat) => {
                    let same = proc
                        .start_ticks
                        .is_none_or(|ticks| same_start(stat.start_ticks, ticks));
                    if !same {
                        lost = lost.saturating_add(1);
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
                    self.on_thread_fork(child_tgid, child_pid);
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

    /// A new process `child` forked by `parent` at monotonic `ts`.
    pub(crate) fn on_process_fork(&mut self, parent: u32, child: u32, ts: u64, sink: &Sink) {
        let start_ticks = self.clocks.ticks_from_mono(ts);
        if let Some(old) = self.procs.get(&child) {
            let same = match (old.start_ticks, start_ticks) {
                (Some(a), Some(b)) => same_start(a, b),
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
            cgroup: inherited.and_then(|p| p.cgroup.clone()),
            start_ticks,
            start_time: self.clocks.wall_from_mono(ts),
            ..Proc::default()
        };
        self.procs.insert(child, proc);
    }

    /// A new thread `tid` in process `tgid`.
    pub(crate) fn on_thread_fork(&mut self, tgid: u32, tid: u32) {
        if !self.procs.contains_key(&tgid) {
            let seeded = self.read_proc(tgid).unwrap_or_default();
            self.procs.insert(tgid, seeded);
        }
        if let Some(proc) = self.procs.get_mut(&tgid) {
            proc.threads.insert(tid);
        }
    }

    /// Process `tgid` called execve: a new program, read from /proc.
    pub(crate) fn on_exec(&mut self, tgid: u32) {
        let stat = self.host.stat(tgid);
        let name = self
            .host
            .comm(tgid)
            .or_else(|| stat.as_ref().map(|s| s.comm.clone()));
        let command_line = self.host.cmdline(tgid);
        let uid = self.host.uid(tgid);
        let cgroup = self.host.cgroup(tgid);
        let proc = self.procs.entry(tgid).or_default();
        // After exec the other threads are gone and the name is new. What
        // /proc no longer holds is unknown, not the old program's.
        proc.threads.clear();
        proc.leader_exit = None;
        proc.name = name;
        proc.command_line = command_line;
        if let Some(uid) = uid {
            proc.uid = Some(uid);
        }
        if cgroup.is_some() {
            proc.cgroup = cgroup;
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

    /// Task `pid` of process `tgid` ended with wait status `status` at
    /// monotonic `ts`; `parent` is the EXIT event's parent (0 when unknown).
    pub(crate) fn on_exit(
        &mut self,
        pid: u32,
        tgid: u32,
        status: u32,
        parent: u32,
        ts: u64,
        sink: &Sink,
    ) {
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
            if let Some(stat) = self.host.stat(tgid) {
                let same = proc
                    .start_ticks
                    .is_none_or(|t| same_start(t, stat.start_ticks));
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
        exit.container_id = proc.cgroup.as_deref().and_then(container_id);
        exit.cgroup = proc.cgroup;
        exit.process_key = proc.start_ticks;
        exit.start_time = proc.start_time.or_else(|| {
            proc.start_ticks
                .and_then(|t| self.clocks.wall_from_ticks(t))
        });
        exit.exit_time = self.clocks.wall_from_mono(ts);
        self.emit(exit, sink);
    }

    /// Housekeeping, every few hundred ms: finishes processes whose leader
    /// ended while threads lived on, once /proc shows no thread but the
    /// leader (the threads' EXITs were lost; an anomaly each), and counts as
    /// lost the processes found gone at a resync whose EXIT never came.
    pub(crate) fn sweep(&mut self, sink: &Sink) {
        let now = self.host.monotonic_ns();
        let host = &self.host;
        let stale: Vec<(u32, u32, u64)> = self
            .procs
            .iter()
            .filter_map(|(&pid, proc)| {
                let (status, ts) = proc.leader_exit?;
                if now.saturating_sub(ts) < nanos(LEADER_ORPHAN_WAIT) {
                    return None;
                }
                let alive = host
                    .tasks(pid)
                    .is_some_and(|tasks| tasks.iter().any(|&t| t != pid));
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
        let now = self.host.monotonic_ns();
        let before = self.procs.len();
        self.procs.retain(|_, proc| {
            proc.vanished_at
                .is_none_or(|at| now.saturating_sub(at) < nanos(grace))
        });
        let gone = before.saturating_sub(self.procs.len());
        sink.lost(u64::try_from(gone).unwrap_or(u64::MAX));
    }

    /// Refreshes the clock offsets (they drift when the wall clock is set).
    pub(crate) fn refresh_clocks(&mut self) {
        self.clocks = Clocks::new(self.host.clocks());
    }

    /// The host, for tests that move its clock or change /proc.
    #[cfg(test)]
    fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }
}

/// Fills what the connector's view lacks from the taskstats record of the
/// same process (its comm, parent at exit, uid, resource use).
fn merge_taskstats(mut exit: ProcessExit, record: &TaskExit) -> ProcessExit {
    exit.source = Source::LinuxTaskstats;
    exit.resources = record.resources();
    if exit.name.is_none() && !record.comm.is_empty() {
        exit.name = Some(record.comm.to_text());
    }
    if exit.ppid.is_none() && record.ppid != 0 {
        exit.ppid = Some(record.ppid);
    }
    if exit.user.is_none() {
        exit.user = Some(User::Uid(record.uid));
    }
    exit
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]

    use super::*;
    use crate::decode::taskstats::AGROUP;
    use crate::event::{Event, LossReason};
    use crate::filter::Filter;
    use crate::queue::{Pop, Shared};
    use std::sync::Arc;
    use std::time::Instant;

    /// Wall clock = monotonic + this (2023-11-14T22:13:20Z at mono 0).
    const REAL_OFFSET: u64 = 1_700_000_000_000_000_000;
    /// Boot clock = monotonic + this (5 s spent suspended).
    const BOOT_OFFSET: u64 = 5_000_000_000;
    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    /// What the fake /proc holds for one pid.
    #[derive(Clone)]
    struct FakeProc {
        stat: ProcStat,
        comm: Option<String>,
        cmdline: Option<String>,
        uid: Option<u32>,
        tasks: Vec<u32>,
        cgroup: Option<String>,
    }

    /// A scripted /proc and clock.
    #[derive(Default)]
    struct FakeHost {
        procs: HashMap<u32, FakeProc>,
        mono_ns: u64,
        /// How far the wall clock was set forward.
        wall_set_ns: u64,
    }

    impl FakeHost {
        /// Puts a process in /proc, started at monotonic `start_mono`.
        fn add(&mut self, pid: u32, ppid: u32, name: &str, cmdline: &str, start_mono: u64) {
            self.procs.insert(
                pid,
                FakeProc {
                    stat: ProcStat {
                        comm: name.into(),
                        state: 'S',
                        ppid,
                        start_ticks: ticks(start_mono),
                    },
                    comm: Some(name.into()),
                    cmdline: (!cmdline.is_empty()).then(|| cmdline.into()),
                    uid: Some(1000),
                    tasks: vec![pid],
                    cgroup: Some(format!("/user.slice/fake-{ppid}.scope")),
                },
            );
        }
    }

    impl Host for FakeHost {
        fn stat(&self, pid: u32) -> Option<ProcStat> {
            Some(self.procs.get(&pid)?.stat.clone())
        }
        fn comm(&self, pid: u32) -> Option<String> {
            self.procs.get(&pid)?.comm.clone()
        }
        fn cmdline(&self, pid: u32) -> Option<String> {
            self.procs.get(&pid)?.cmdline.clone()
        }
        fn uid(&self, pid: u32) -> Option<u32> {
            self.procs.get(&pid)?.uid
        }
        fn tasks(&self, pid: u32) -> Option<Vec<u32>> {
            Some(self.procs.get(&pid)?.tasks.clone())
        }
        fn cgroup(&self, pid: u32) -> Option<String> {
            self.procs.get(&pid)?.cgroup.clone()
        }
        fn pids(&self) -> Vec<u32> {
            let mut pids: Vec<u32> = self.procs.keys().copied().collect();
            pids.sort_unstable();
            pids
        }
        fn clocks(&self) -> ClockReading {
            ClockReading {
                monotonic_ns: self.mono_ns,
                realtime_ns: self.mono_ns + REAL_OFFSET + self.wall_set_ns,
                boottime_ns: self.mono_ns + BOOT_OFFSET,
                ticks_per_second: 100,
            }
        }
    }

    /// Start ticks /proc shows for a process forked at monotonic `mono`.
    fn ticks(mono: u64) -> u64 {
        (mono + BOOT_OFFSET) / (SEC / 100)
    }

    fn wall(mono: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(mono + REAL_OFFSET)
    }

    /// A table with its output queue.
    struct Rig {
        table: ProcessTable<FakeHost>,
        shared: Arc<Shared>,
        sink: Sink,
    }

    impl Rig {
        fn new(host: FakeHost, with_taskstats: bool) -> Rig {
            let shared = Arc::new(Shared::new(1024, Filter::new()));
            Rig {
                table: ProcessTable::new(host, with_taskstats),
                sink: Sink::new(shared.clone()),
                shared,
            }
        }

        /// With taskstats, an empty /proc and the clock at `mono_ns`.
        fn with_taskstats_at(mono_ns: u64) -> Rig {
            let host = FakeHost {
                mono_ns,
                ..FakeHost::default()
            };
            Rig::new(host, true)
        }

        fn host(&mut self) -> &mut FakeHost {
            self.table.host_mut()
        }

        /// Flushes the waits as if the taskstats socket was just read.
        fn flush_awaiting(&mut self) {
            let now = self.table.monotonic_ns();
            self.table.flush_awaiting(&self.sink, now);
        }

        fn event(&mut self, ts: u64, event: ProcEvent) {
            let message = ProcMessage {
                cpu: 0,
                timestamp_ns: ts,
                event,
            };
            self.table.apply(&message, &self.sink);
        }

        fn fork(&mut self, ts: u64, parent: u32, child_tgid: u32, child_pid: u32) {
            self.event(
                ts,
                ProcEvent::Fork {
                    parent_pid: parent,
                    parent_tgid: parent,
                    child_pid,
                    child_tgid,
                },
            );
        }

        fn exec(&mut self, ts: u64, tgid: u32) {
            self.event(ts, ProcEvent::Exec { pid: tgid, tgid });
        }

        fn exit(&mut self, ts: u64, tgid: u32, pid: u32, status: u32) {
            self.event(
                ts,
                ProcEvent::Exit {
                    pid,
                    tgid,
                    exit_code: status,
                    exit_signal: 17,
                    parent_pid: 0,
                    parent_tgid: 0,
                },
            );
        }

        /// Everything queued so far.
        fn drain(&self) -> Vec<Event> {
            let mut out = Vec::new();
            while let Pop::Event(e) = self.shared.pop(Some(Instant::now())) {
                out.push(e);
            }
            out
        }

        /// The exits queued so far; fails on a loss marker.
        fn exits(&self) -> Vec<ProcessExit> {
            self.drain()
                .into_iter()
                .map(|e| match e {
                    Event::Exit(exit) => exit,
                    other => panic!("expected an exit, got {other:?}"),
                })
                .collect()
        }

        fn lost(&self) -> u64 {
            self.shared.stats().lost
        }
    }

    fn taskstats(pid: u32, comm: &str, ppid: u32, uid: u32, group_end: bool) -> TaskExit {
        TaskExit {
            version: 16,
            pid,
            tgid: None,
            exit_code: 0,
            flags: if group_end { AGROUP } else { 0 },
            comm: crate::decode::taskstats::Comm::from_bytes(comm.as_bytes()),
            uid,
            ppid,
            btime: 0,
            etime_us: 0,
            usage: None,
        }
    }

    #[test]
    fn taskstats_brings_the_resource_use() {
        let mut record = taskstats(7, "sh", 1, 0, true);
        record.usage = Some(crate::decode::taskstats::TaskUsage {
            utime_us: 2_000,
            hiwater_rss_kib: 3,
            ..Default::default()
        });
        let exit = ProcessExit::new(7, ExitStatus::Code(0), Source::LinuxConnector);
        let merged = merge_taskstats(exit, &record);
        assert_eq!(merged.resources, record.resources());
        assert_eq!(merged.resources.peak_rss_bytes, Some(3 * 1024));
        assert_eq!(
            merged.resources.cpu_user,
            Some(std::time::Duration::from_millis(2))
        );
    }

    /// A shell (pid 100) in /proc from before the start, so children
    /// inherit from a known parent.
    fn with_shell() -> FakeHost {
        let mut host = FakeHost {
            mono_ns: 60 * SEC,
            ..FakeHost::default()
        };
        host.add(100, 1, "bash", "-bash", 10 * SEC);
        host
    }

    #[test]
    fn fork_exec_exit_gives_one_full_record() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        let t0 = 61 * SEC;
        rig.fork(t0, 100, 200, 200);
        rig.host().add(200, 100, "sleep", "sleep 1", t0);
        rig.exec(t0 + MS, 200);
        rig.exit(t0 + SEC, 200, 200, 3 << 8);
        let exits = rig.exits();
        assert_eq!(exits.len(), 1);
        let e = &exits[0];
        assert_eq!((e.pid, e.ppid), (200, Some(100)));
        assert_eq!(e.status, ExitStatus::Code(3));
        assert_eq!(e.name.as_deref(), Some("sleep"));
        assert_eq!(e.command_line.as_deref(), Some("sleep 1"));
        assert_eq!(e.user, Some(User::Uid(1000)));
        assert_eq!(e.source, Source::LinuxConnector);
        assert_eq!(e.process_key, Some(ticks(t0)));
        assert_eq!(e.start_time, Some(wall(t0)));
        assert_eq!(e.exit_time, Some(wall(t0 + SEC)));
        assert_eq!(e.duration(), Some(Duration::from_secs(1)));
    }

    /// A fork inherits the parent's cgroup; an exec reads its own (a
    /// runtime moves the child into the container's cgroup before exec).
    #[test]
    fn cgroup_is_inherited_at_fork_and_read_at_exec() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        let t0 = 61 * SEC;
        rig.fork(t0, 100, 210, 210);
        rig.exit(t0 + MS, 210, 210, 0);
        let id = "9c1d2e3f4a5b6c7d8e9f00112233445566778899aabbccddeeff001122334455";
        let moved = format!("/system.slice/docker-{id}.scope");
        rig.fork(t0 + 2 * MS, 100, 211, 211);
        rig.host()
            .add(211, 100, "nginx", "nginx -g daemon off;", t0);
        rig.host().procs.get_mut(&211).unwrap().cgroup = Some(moved.clone());
        rig.exec(t0 + 3 * MS, 211);
        rig.exit(t0 + SEC, 211, 211, 0);
        let exits = rig.exits();
        assert_eq!(exits[0].cgroup.as_deref(), Some("/user.slice/fake-1.scope"));
        assert_eq!(exits[0].container_id, None);
        assert_eq!(exits[1].cgroup.as_deref(), Some(moved.as_str()));
        assert_eq!(exits[1].container_id.as_deref(), Some(id));
    }

    #[test]
    fn fork_without_exec_inherits_the_parents_program() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        rig.fork(61 * SEC, 100, 201, 201);
        rig.exit(62 * SEC, 201, 201, 9); // SIGKILL
        let e = &rig.exits()[0];
        assert_eq!(e.name.as_deref(), Some("bash"));
        assert_eq!(e.command_line.as_deref(), Some("-bash"));
        assert_eq!(
            e.status,
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false
            }
        );
    }

    #[test]
    fn exec_twice_keeps_only_the_last_program() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        let t0 = 61 * SEC;
        rig.fork(t0, 100, 202, 202);
        rig.host().add(202, 100, "sh", "sh -c exec true", t0);
        rig.exec(t0 + MS, 202);
        // The second program is gone from /proc's cmdline before we look:
        // the old command line must not be reported as its own.
        let p = rig.host().procs.get_mut(&202).unwrap();
        p.comm = Some("true".into());
        p.cmdline = None;
        rig.exec(t0 + 2 * MS, 202);
        rig.exit(t0 + 3 * MS, 202, 202, 0);
        let e = &rig.exits()[0];
        assert_eq!(e.name.as_deref(), Some("true"));
        assert_eq!(e.command_line, None);
        assert_eq!(e.ppid, Some(100));
        assert_eq!(e.start_time, Some(wall(t0)));
    }

    #[test]
    fn exec_by_a_thread_drops_the_other_threads() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        let t0 = 61 * SEC;
        rig.fork(t0, 100, 203, 203);
        rig.fork(t0 + MS, 203, 203, 204); // a thread
        rig.host().add(203, 100, "java", "java -jar x", t0);
        // execve from any thread kills the others; their EXITs never come.
        rig.exec(t0 + 2 * MS, 203);
        rig.exit(t0 + 3 * MS, 203, 203, 0);
        assert_eq!(rig.exits().len(), 1);
    }

    #[test]
    fn leader_first_exit_reports_the_last_threads_status() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        let t0 = 61 * SEC;
        rig.fork(t0, 100, 300, 300);
        rig.fork(t0 + MS, 300, 300, 301);
        rig.fork(t0 + MS, 300, 300, 302);
        // The leader calls pthread_exit; the threads run on.
        rig.exit(t0 + 2 * MS, 300, 300, 0);
        assert!(rig.drain().is_empty());
        rig.exit(t0 + 3 * MS, 300, 301, 0);
        assert!(rig.drain().is_empty());
        // The last thread calls exit(7): that is the process's status.
        rig.exit(t0 + 4 * MS, 300, 302, 7 << 8);
        let exits = rig.exits();
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].pid, 300);
        assert_eq!(exits[0].status, ExitStatus::Code(7));
        assert_eq!(exits[0].exit_time, Some(wall(t0 + 4 * MS)));
    }

    #[test]
    fn thread_exits_alone_report_nothing() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        rig.fork(61 * SEC, 100, 310, 310);
        rig.fork(61 * SEC, 310, 310, 311);
        rig.exit(62 * SEC, 310, 311, 0);
        assert!(rig.drain().is_empty());
        rig.exit(63 * SEC, 310, 310, 1 << 8);
        assert_eq!(rig.exits()[0].status, ExitStatus::Code(1));
    }

    #[test]
    fn leader_exit_with_lost_thread_exits_is_swept_as_an_anomaly() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        let t0 = 61 * SEC;
        rig.fork(t0, 100, 320, 320);
        rig.fork(t0, 320, 320, 321);
        rig.host().add(320, 100, "app", "app", t0);
        rig.host().procs.get_mut(&320).unwrap().tasks = vec![320, 321];
        rig.exit(t0 + MS, 320, 320, 2 << 8);
        // The thread still shows in /proc: not finished.
        rig.host().mono_ns = t0 + 2 * SEC;
        rig.table.sweep(&rig.sink);
        assert!(rig.drain().is_empty());
        // Its EXIT was lost and it is gone now.
        rig.host().procs.get_mut(&320).unwrap().tasks = vec![320];
        rig.table.sweep(&rig.sink);
        let exits = rig.exits();
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].status, ExitStatus::Code(2));
        assert_eq!(exits[0].exit_time, Some(wall(t0 + MS)));
        assert_eq!(rig.shared.stats().anomalies, 1);
    }

    #[test]
    fn processes_alive_before_start_get_full_records() {
        let mut host = with_shell();
        host.add(400, 100, "vim", "vim notes.txt", 20 * SEC);
        let mut rig = Rig::new(host, false);
        assert_eq!(rig.table.seed(), 2);
        rig.host().procs.remove(&400);
        rig.exit(70 * SEC, 400, 400, 0);
        let e = &rig.exits()[0];
        assert_eq!(e.ppid, Some(100));
        assert_eq!(e.name.as_deref(), Some("vim"));
        assert_eq!(e.command_line.as_deref(), Some("vim notes.txt"));
        assert_eq!(e.process_key, Some(ticks(20 * SEC)));
        // Start time from /proc's ticks: whole-life duration (10 ms ticks).
        assert_eq!(e.start_time, Some(wall(20 * SEC)));
        assert_eq!(e.duration(), Some(Duration::from_secs(50)));
    }

    #[test]
    fn a_fork_queued_before_the_seed_does_not_replace_it() {
        let t0 = 59 * SEC;
        let mut host = with_shell();
        host.add(410, 100, "make", "make -j2", t0);
        let mut rig = Rig::new(host, false);
        rig.table.seed();
        // The FORK of 410 was already queued when /proc was read.
        rig.fork(t0, 100, 410, 410);
        rig.exit(61 * SEC, 410, 410, 0);
        assert_eq!(rig.lost(), 0);
        let e = &rig.exits()[0];
        assert_eq!(e.command_line.as_deref(), Some("make -j2"));
    }

    #[test]
    fn pid_reuse_counts_the_unseen_exit_as_lost() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        rig.fork(61 * SEC, 100, 500, 500);
        // Its EXIT is lost; later the pid comes back for a new process.
        rig.fork(90 * SEC, 100, 500, 500);
        assert_eq!(rig.lost(), 1);
        assert_eq!(
            rig.drain(),
            vec![Event::Lost {
                count: 1,
                reason: LossReason::Kernel
            }]
        );
        rig.exit(91 * SEC, 500, 500, 0);
        let e = &rig.exits()[0];
        assert_eq!(e.process_key, Some(ticks(90 * SEC)));
        assert_eq!(e.start_time, Some(wall(90 * SEC)));
    }

    #[test]
    fn pid_reuse_after_a_leader_exit_is_no_loss() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        rig.fork(61 * SEC, 100, 510, 510);
        rig.fork(61 * SEC, 510, 510, 511);
        rig.exit(62 * SEC, 510, 510, 0); // leader gone, thread lives
        rig.fork(90 * SEC, 100, 510, 510);
        assert_eq!(rig.lost(), 0);
    }

    #[test]
    fn exit_of_an_unknown_process_uses_the_event_and_the_zombie() {
        let host = FakeHost {
            mono_ns: 60 * SEC,
            ..FakeHost::default()
        };
        let mut rig = Rig::new(host, false);
        // Started while events were lost; /proc still shows the zombie.
        rig.host().add(520, 1, "cron", "", 50 * SEC);
        rig.event(
            61 * SEC,
            ProcEvent::Exit {
                pid: 520,
                tgid: 520,
                exit_code: 0,
                exit_signal: 17,
                parent_pid: 1,
                parent_tgid: 1,
            },
        );
        let e = &rig.exits()[0];
        assert_eq!(e.ppid, Some(1));
        assert_eq!(e.name.as_deref(), Some("cron"));
        assert_eq!(e.process_key, Some(ticks(50 * SEC)));
        assert_eq!(e.start_time, Some(wall(50 * SEC)));
    }

    #[test]
    fn a_zombie_of_another_process_lends_no_name() {
        let mut rig = Rig::new(with_shell(), true);
        rig.table.seed();
        // A process we know only from FORK (no exec, parent unknown).
        rig.fork(61 * SEC, 999, 530, 530);
        // By its exit the pid shows a different process (start differs).
        rig.host().add(530, 1, "other", "", 80 * SEC);
        rig.exit(81 * SEC, 530, 530, 0);
        rig.host().mono_ns = 82 * SEC;
        rig.flush_awaiting();
        let e = &rig.exits()[0];
        assert_eq!(e.name, None);
        assert_eq!(e.process_key, Some(ticks(61 * SEC)));
    }

    #[test]
    fn comm_and_uid_events_update_the_record() {
        let mut rig = Rig::new(with_shell(), false);
        rig.table.seed();
        rig.fork(61 * SEC, 100, 540, 540);
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"worker");
        rig.event(
            61 * SEC,
            ProcEvent::Comm {
                pid: 540,
                tgid: 540,
                comm,
            },
        );
        rig.event(
            61 * SEC,
            ProcEvent::Uid {
                pid: 540,
                tgid: 540,
                ruid: 33,
                euid: 33,
            },
        );
        rig.exit(62 * SEC, 540, 540, 0);
        let e = &rig.exits()[0];
        assert_eq!(e.name.as_deref(), Some("worker"));
        assert_eq!(e.user, Some(User::Uid(33)));
    }

    #[test]
    fn taskstats_after_the_exit_is_merged() {
        let mut rig = Rig::new(FakeHost::default(), true);
        rig.fork(SEC, 999, 600, 600);
        rig.exit(2 * SEC, 600, 600, 0);
        assert!(rig.drain().is_empty(), "waits for taskstats");
        assert!(rig.table.has_awaiting());
        // A thread's record is not the process's end.
        rig.table
            .apply_taskstats(taskstats(600, "ignored", 5, 7, false), &rig.sink);
        assert!(rig.drain().is_empty());
        rig.table
            .apply_taskstats(taskstats(600, "job", 42, 1001, true), &rig.sink);
        let e = &rig.exits()[0];
        assert_eq!(e.source, Source::LinuxTaskstats);
        assert_eq!(e.name.as_deref(), Some("job"));
        // The FORK's parent wins over the taskstats one (parent at exit).
        assert_eq!(e.ppid, Some(999));
        assert_eq!(e.user, Some(User::Uid(1001)));
        assert!(!rig.table.has_awaiting());
    }

    #[test]
    fn taskstats_before_the_exit_is_merged_at_once() {
        let mut rig = Rig::new(FakeHost::default(), true);
        rig.exit(2 * SEC, 610, 610, 0); // unknown process, parent 0
        rig.table.flush_all(&rig.sink);
        let plain = rig.exits();
        assert_eq!(plain[0].source, Source::LinuxConnector);
        rig.table
            .apply_taskstats(taskstats(611, "early", 42, 7, true), &rig.sink);
        rig.exit(3 * SEC, 611, 611, 0);
        let e = &rig.exits()[0];
        assert_eq!(e.source, Source::LinuxTaskstats);
        assert_eq!((e.name.as_deref(), e.ppid), (Some("early"), Some(42)));
    }

    #[test]
    fn a_record_is_not_given_up_while_the_socket_was_not_read_after_the_wait() {
        let mut rig = Rig::with_taskstats_at(10 * SEC);
        rig.exit(10 * SEC, 630, 630, 0);
        // The thread was off the CPU for a second: the clock passed the
        // wait, but the socket was last read before it ended.
        let last_read = rig.table.monotonic_ns();
        rig.host().mono_ns += SEC;
        rig.table.flush_awaiting(&rig.sink, last_read);
        assert!(
            rig.drain().is_empty(),
            "given up before the socket was read"
        );
        // Read now: the record was queued, and merges.
        rig.table
            .apply_taskstats(taskstats(630, "late", 1, 0, true), &rig.sink);
        let e = &rig.exits()[0];
        assert_eq!((e.pid, e.source), (630, Source::LinuxTaskstats));
    }

    #[test]
    fn without_taskstats_the_connector_record_goes_after_the_wait() {
        let mut rig = Rig::with_taskstats_at(10 * SEC);
        rig.exit(10 * SEC, 620, 620, 0);
        rig.flush_awaiting();
        assert!(rig.drain().is_empty());
        rig.host().mono_ns += nanos(TASKSTATS_WAIT);
        rig.flush_awaiting();
        let e = &rig.exits()[0];
        assert_eq!((e.pid, e.source), (620, Source::LinuxConnector));
        // A stale early record is forgotten, not merged into a later exit.
        rig.table
            .apply_taskstats(taskstats(621, "stale", 1, 0, true), &rig.sink);
        rig.host().mono_ns += nanos(TASKSTATS_KEEP);
        rig.flush_awaiting();
        rig.exit(rig.table.host.mono_ns, 621, 621, 0);
        rig.table.flush_all(&rig.sink);
        assert_eq!(rig.exits()[0].source, Source::LinuxConnector);
    }

    #[test]
    fn a_pid_ending_twice_within_the_wait_reports_both() {
        let mut rig = Rig::new(FakeHost::default(), true);
        rig.exit(SEC, 630, 630, 1 << 8);
        rig.exit(SEC + MS, 630, 630, 2 << 8);
        let first = rig.exits();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].status, ExitStatus::Code(1));
        rig.table.flush_all(&rig.sink);
        assert_eq!(rig.exits()[0].status, ExitStatus::Code(2));
    }

    #[test]
    fn overrun_resync_counts_reused_pids_and_vanished_processes() {
        let mut host = with_shell();
        host.add(700, 100, "a", "a", 20 * SEC);
        host.add(701, 100, "b", "b", 20 * SEC);
        host.add(702, 100, "c", "c", 20 * SEC);
        let mut rig = Rig::new(host, false);
        rig.table.seed();
        // During the overrun: 700 ended (its EXIT is still queued), 701
        // ended unseen, 702's pid went to a new process, 703 started.
        rig.host().procs.remove(&700);
        rig.host().procs.remove(&701);
        rig.host().add(702, 100, "c2", "c2", 65 * SEC);
        rig.host().add(703, 100, "d", "d", 66 * SEC);
        rig.host().mono_ns = 70 * SEC;
        assert_eq!(rig.table.resync(), 1, "702 was replaced");
        // 700's EXIT arrives within the grace: reported, not lost.
        rig.exit(70 * SEC, 700, 700, 0);
        assert_eq!(rig.exits()[0].name.as_deref(), Some("a"));
        rig.host().mono_ns = 70 * SEC + nanos(VANISHED_GRACE) / 2;
        rig.table.sweep(&rig.sink);
        assert_eq!(rig.lost(), 0);
        rig.host().mono_ns = 70 * SEC + nanos(VANISHED_GRACE);
        rig.table.sweep(&rig.sink);
        assert_eq!(rig.lost(), 1, "701 never came");
        assert_eq!(
            rig.drain(),
            vec![Event::Lost {
                count: 1,
                reason: LossReason::Kernel
            }]
        );
        // The new processes are tracked with their own start.
        rig.exit(71 * SEC, 702, 702, 0);
        rig.exit(71 * SEC, 703, 703, 0);
        let exits = rig.exits();
        assert_eq!(exits[0].name.as_deref(), Some("c2"));
        assert_eq!(exits[0].process_key, Some(ticks(65 * SEC)));
        assert_eq!(exits[1].command_line.as_deref(), Some("d"));
    }

    #[test]
    fn vanished_processes_are_lost_at_stop() {
        let mut host = with_shell();
        host.add(710, 100, "a", "a", 20 * SEC);
        let mut rig = Rig::new(host, false);
        rig.table.seed();
        rig.host().procs.remove(&710);
        assert_eq!(rig.table.resync(), 0);
        rig.table.count_vanished(Duration::ZERO, &rig.sink);
        assert_eq!(rig.lost(), 1);
        // Only once.
        rig.table.count_vanished(Duration::ZERO, &rig.sink);
        assert_eq!(rig.lost(), 1);
    }

    #[test]
    fn clocks_follow_a_changed_wall_clock_after_refresh() {
        let mut rig = Rig::new(FakeHost::default(), false);
        rig.exit(SEC, 800, 800, 0);
        assert_eq!(rig.exits()[0].exit_time, Some(wall(SEC)));
        // The wall clock is set an hour forward: the offsets read at start
        // hold until the next refresh.
        rig.host().mono_ns = 2 * SEC;
        rig.host().wall_set_ns = 3600 * SEC;
        rig.exit(2 * SEC, 801, 801, 0);
        assert_eq!(rig.exits()[0].exit_time, Some(wall(2 * SEC)));
        rig.table.refresh_clocks();
        rig.exit(3 * SEC, 802, 802, 0);
        assert_eq!(rig.exits()[0].exit_time, Some(wall(3603 * SEC)));
    }

    #[test]
    fn clock_conversions_round_trip() {
        let clocks = Clocks::new(FakeHost::default().clocks());
        assert_eq!(clocks.ticks_from_mono(0), Some(500));
        assert_eq!(clocks.wall_from_ticks(500), Some(wall(0)));
        assert_eq!(clocks.wall_from_mono(3 * SEC), Some(wall(3 * SEC)));
        let broken = Clocks::new(ClockReading {
            monotonic_ns: u64::MAX,
            realtime_ns: 0,
            boottime_ns: 0,
            ticks_per_second: 0,
        });
        // Nonsense readings give `None` or a value, never a panic.
        let _ = broken.ticks_from_mono(u64::MAX);
        let _ = broken.wall_from_ticks(u64::MAX);
        assert_eq!(broken.wall_from_mono(0), None);
    }
}

//! The Linux [`Waiter`] behind [`WaitSet`](crate::WaitSet): a monitor on
//! the process connector filtered on the waited pids, and a pidfd on each.

use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::event::{Event, ProcessExit};
use crate::filter::Filter;
use crate::monitor::{Monitor, RecvError};
use crate::sys::process;

/// Waits for arbitrary processes by listening to the connector, so the real
/// exit status is known even for processes that are not our children.
///
/// Pid reuse cannot fool it: when waiting starts it opens a pidfd on each
/// process and records the process's start time (`/proc/PID/stat` field
/// 22, the records' `process_key`) while the pidfd shows it alive, so the
/// start time is that process's. An exit of the same pid with another start
/// time is another process's and is never reported for it. A process that
/// ends before the connector listens is `NoSuchProcess` (its status is
/// gone), never a later holder of its pid.
///
/// When the pidfd shows the process ended and no connector record came for
/// it within [`CONNECTOR_GRACE`], its status is read from the pidfd itself
/// (Linux ≥ 6.15, once its parent reaped it). That is the only way inside a
/// pid namespace, where the connector reports the initial namespace's pids
/// and no record matches; it also covers a record lost to an overrun.
///
/// Where the kernel refuses this process as a connector listener (an
/// unprivileged user on many kernels), the pidfds alone are watched: when
/// each process ended is known, and its status where the pidfd keeps it
/// (Linux 6.15+, once its parent has reaped it); elsewhere its end is
/// [`Error::ExitStatusUnknown`].
pub(crate) struct Waiter {
    /// A monitor filtered on the pids; `None` once it has ended, or when
    /// the connector refused us (then `fallback` says why).
    monitor: Option<Monitor>,
    /// Why the pidfds alone are watched, if they are.
    fallback: Option<Error>,
    /// Who each pid was when waiting started.
    identities: Vec<Identity>,
}

/// How long a waited process may be seen ended before its status is taken
/// from its pidfd instead of a connector record (which carries more: name,
/// command line, times). Records come within milliseconds of the exit.
const CONNECTOR_GRACE: Duration = Duration::from_millis(500);
/// How often the pidfds are looked at while a record is awaited.
const PIDFD_POLL: Duration = Duration::from_millis(50);

/// The process a waited pid named when waiting started.
struct Identity {
    pid: u32,
    /// Start time in clock ticks since boot.
    start_ticks: u64,
    /// Its name then (`comm`), for a record built from the pidfd.
    comm: String,
    /// `None` on kernels without pidfd_open (before 5.3).
    pidfd: Option<std::os::fd::OwnedFd>,
    /// When the pidfd was first seen ended.
    ended_at: Option<Instant>,
    /// The pidfd cannot give the exit status (kernel before 6.15).
    no_pidfd_status: bool,
}

impl Identity {
    /// Whether this very process is still running (not a zombie).
    fn alive(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => !process::pidfd_exited(pidfd),
            None => process::stat(self.pid)
                .is_some_and(|s| s.state != 'Z' && s.start_ticks == self.start_ticks),
        }
    }
}

impl Waiter {
    pub(crate) fn new(pids: &[u32]) -> Result<Waiter> {
        // Who each pid names now, when waiting starts.
        let identities = pids
            .iter()
            .map(|&pid| identify(pid).ok_or(Error::NoSuchProcess { pid }))
            .collect::<Result<Vec<_>>>()?;
        let filter = pids.iter().fold(Filter::new(), |f, &pid| f.pid(pid));
        // The connector starts in milliseconds; the eBPF source needs a BTF
        // parse and program verification first (0.1–0.3 s on a busy
        // machine), a window in which a waited-for process could end.
        let started = Monitor::builder()
            .backend(Backend::LinuxConnector)
            .filter(filter)
            .queue_capacity(1024)
            .start();
        let (monitor, fallback) = match started {
            Ok(monitor) => (Some(monitor), None),
            // Refused as a listener: the pidfds still tell when each ended.
            Err(refused @ Error::ConnectorPermission { .. })
                if identities.iter().all(|id| id.pidfd.is_some()) =>
            {
                (None, Some(refused))
            }
            Err(error) => return Err(error),
        };
        // A process that ended before the monitor listened left no exit to
        // report: it had already ended.
        for id in &identities {
            if !id.alive() {
                return Err(Error::NoSuchProcess { pid: id.pid });
            }
        }
        Ok(Waiter {
            monitor,
            fallback,
            identities,
        })
    }

    /// Why the pidfds alone are watched (the connector refused us), if so.
    pub(crate) fn fallback(&self) -> Option<&Error> {
        self.fallback.as_ref()
    }

    /// How long an ended process may go without a connector record before
    /// its pidfd is asked: no time when no record can come.
    fn grace(&self) -> Duration {
        if self.fallback.is_some() {
            Duration::ZERO
        } else {
            CONNECTOR_GRACE
        }
    }

    /// Whether `exit` is the exit of the process we wait for under its pid
    /// (and not of a later process that reused the pid).
    fn is_waited(&self, exit: &ProcessExit) -> bool {
        self.identities
            .iter()
            .any(|id| id.pid == exit.pid && is_same_process(id.start_ticks, exit.process_key))
    }

    /// The exit of a waited process that ended more than
    /// [`CONNECTOR_GRACE`] ago without a connector record, read from its
    /// pidfd (see [`Waiter`]).
    fn exit_from_pidfd(&mut self, now: Instant) -> Option<Result<ProcessExit>> {
        let grace = self.grace();
        let without_connector = self.fallback.is_some();
        let mut found = None;
        for (index, id) in self.identities.iter_mut().enumerate() {
            let Some(pidfd) = id.pidfd.as_ref().filter(|_| !id.no_pidfd_status) else {
                continue;
            };
            if id.ended_at.is_none() && process::pidfd_exited(pidfd) {
                id.ended_at = Some(now);
            }
            let waited_long_enough = id
                .ended_at
                .is_some_and(|t| now.saturating_duration_since(t) >= grace);
            if !waited_long_enough {
                continue;
            }
            match process::pidfd_exit_status(pidfd) {
                Ok(Some(status)) => {
                    found = Some((index, Some(status)));
                    break;
                }
                // A zombie: its parent has not reaped it yet.
                Ok(None) => {}
                // This kernel keeps no status on pidfds: without the
                // connector nothing else will tell it.
                Err(_) if without_connector => {
                    found = Some((index, None));
                    break;
                }
                Err(_) => id.no_pidfd_status = true,
            }
        }
        let (index, status) = found?;
        let id = self.identities.remove(index);
        let Some(status) = status else {
            let code = match &self.fallback {
                Some(Error::ConnectorPermission { code }) => *code,
                _ => 0,
            };
            return Some(Err(Error::ExitStatusUnknown {
                pid: id.pid,
                name: id.comm,
                code,
            }));
        };
        let mut exit = ProcessExit::new(
            id.pid,
            crate::event::ExitStatus::from_wait_status(status),
            crate::event::Source::Handle,
        );
        exit.name = Some(id.comm).filter(|c| !c.is_empty());
        exit.process_key = Some(id.start_ticks);
        Some(Ok(exit))
    }

    pub(crate) fn next_exit(&mut self, deadline: Option<Instant>) -> Result<Option<ProcessExit>> {
        if self.monitor.is_none() && self.fallback.is_none() {
            return Ok(None);
        }
        loop {
            let now = Instant::now();
            if let Some(exit) = self.exit_from_pidfd(now) {
                return exit.map(Some);
            }
            if deadline.is_some_and(|d| now >= d) || self.identities.is_empty() {
                return Ok(None);
            }
            if self.fallback.is_some() {
                // The pidfds alone: look again shortly.
                let pause = deadline.map_or(PIDFD_POLL, |d| {
                    d.saturating_duration_since(now).min(PIDFD_POLL)
                });
                std::thread::sleep(pause);
                continue;
            }
            // Wake up now and then to look at the pidfds (while one may
            // still give a status).
            let polling = self
                .identities
                .iter()
                .any(|id| id.pidfd.is_some() && !id.no_pidfd_status);
            let until = match (deadline, polling) {
                (Some(d), true) => Some(d.min(now + PIDFD_POLL)),
                (Some(d), false) => Some(d),
                (None, true) => Some(now + PIDFD_POLL),
                (None, false) => None,
            };
            let Some(monitor) = &self.monitor else {
                return Ok(None);
            };
            let event = match until {
                None => monitor.recv().ok_or(RecvError::Stopped),
                Some(u) => monitor.recv_timeout(u.saturating_duration_since(now)),
            };
            match event {
                Ok(Event::Exit(exit)) if self.is_waited(&exit) => {
                    self.identities.retain(|id| id.pid != exit.pid);
                    return Ok(Some(exit));
                }
                Ok(_) | Err(RecvError::Timeout) => continue,
                Err(RecvError::Stopped) => {
                    // The backend ended on its own: report why.
                    return match self.monitor.take() {
                        Some(monitor) => monitor.stop().map(|_| None),
                        None => Ok(None),
                    };
                }
            }
        }
    }
}

/// Opens a pidfd on `pid` and reads its start time while the pidfd shows
/// the process alive. `None` when there is no such process, or it has
/// already ended (a zombie). Without pidfd_open (kernels before 5.3) the
/// start time is read all the same; only the check that the pid did not
/// change hands during the read is missing.
fn identify(pid: u32) -> Option<Identity> {
    let pidfd = match process::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return None,
    };
    let stat = process::stat(pid)?;
    if stat.state == 'Z' || !process::process_exists(pid) {
        return None;
    }
    // Still alive after the read: the pid was not reused in between, so
    // the start time read is the pidfd's process's.
    if pidfd.as_ref().is_some_and(process::pidfd_exited) {
        return None;
    }
    Some(Identity {
        pid,
        start_ticks: stat.start_ticks,
        comm: stat.comm,
        pidfd,
        ended_at: None,
        no_pidfd_status: false,
    })
}

/// Whether an exit record's `process_key` (start ticks) is the waited
/// process's. The table derives the start of a process forked while it
/// watched from the fork's timestamp, which can be one tick off /proc's
/// value; pids are not reused within a tick in practice. A record without
/// a key cannot be told apart and is not taken for the waited process.
fn is_same_process(start_ticks: u64, process_key: Option<u64>) -> bool {
    process_key.is_some_and(|key| key.abs_diff(start_ticks) <= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExitStatus, Source};

    fn exit(pid: u32, key: Option<u64>) -> ProcessExit {
        let mut exit = ProcessExit::new(pid, ExitStatus::Code(0), Source::LinuxConnector);
        exit.process_key = key;
        exit
    }

    #[test]
    fn only_the_identified_process_is_waited_for() {
        let set = Waiter {
            monitor: None,
            fallback: None,
            identities: vec![Identity {
                pid: 40,
                start_ticks: 1000,
                comm: "sh".into(),
                pidfd: None,
                ended_at: None,
                no_pidfd_status: false,
            }],
        };
        assert!(set.is_waited(&exit(40, Some(1000))));
        // The table's fork-time estimate may be a tick off /proc's value.
        assert!(set.is_waited(&exit(40, Some(1001))));
        // The same pid, started later: another process.
        assert!(!set.is_waited(&exit(40, Some(1500))));
        // No start time: cannot be told apart, so not taken.
        assert!(!set.is_waited(&exit(40, None)));
        assert!(!set.is_waited(&exit(41, Some(1000))));
    }

    #[test]
    fn an_ended_process_without_a_record_gets_its_status_from_the_pidfd() {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read -r line; exit 5"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let id = identify(child.id()).expect("the child is alive");
        let start_ticks = id.start_ticks;
        let mut set = Waiter {
            monitor: None,
            fallback: None,
            identities: vec![id],
        };
        let now = Instant::now();
        assert!(set.exit_from_pidfd(now).is_none(), "still running");
        let _ = child.stdin.take().unwrap().write_all(b"\n");
        assert_eq!(child.wait().unwrap().code(), Some(5));
        // Ended, but a connector record may still come: not yet.
        assert!(set.exit_from_pidfd(now).is_none());
        let later = now + CONNECTOR_GRACE;
        match set.exit_from_pidfd(later).transpose().unwrap() {
            Some(exit) => {
                assert_eq!(exit.status, ExitStatus::Code(5));
                assert_eq!(exit.source, Source::Handle);
                assert_eq!(exit.process_key, Some(start_ticks));
                assert_eq!(exit.name.as_deref(), Some("sh"));
                assert!(set.identities.is_empty());
            }
            // A kernel before 6.15 keeps no status on the pidfd.
            None => assert!(set.identities[0].no_pidfd_status),
        }
    }

    /// Refused by the connector, the waiter takes each end from the pidfd at
    /// once (no record can come): the status where the kernel keeps it,
    /// else `ExitStatusUnknown` for that process.
    #[test]
    fn without_the_connector_the_pidfd_alone_reports_the_end() {
        use std::io::Write;
        // Held until identified: a child that ended first is no one to wait for.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read -r line; exit 6"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let id = identify(child.id()).expect("the child is alive");
        let mut set = Waiter {
            monitor: None,
            fallback: Some(Error::ConnectorPermission { code: 1 }),
            identities: vec![id],
        };
        let _ = child.stdin.take().unwrap().write_all(b"\n");
        assert_eq!(child.wait().unwrap().code(), Some(6));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        match set.next_exit(Some(deadline)) {
            Ok(Some(exit)) => {
                assert_eq!(exit.status, ExitStatus::Code(6));
                assert_eq!(exit.source, Source::Handle);
                // Not held back by the grace a connector record would get.
                assert!(
                    started.elapsed() < CONNECTOR_GRACE,
                    "{:?}",
                    started.elapsed()
                );
            }
            // A kernel before 6.15 keeps no status on the pidfd.
            Err(Error::ExitStatusUnknown { pid, code, .. }) => {
                assert_eq!(pid, child.id());
                assert_eq!(code, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(set.identities.is_empty());
        assert!(matches!(set.next_exit(Some(deadline)), Ok(None)));
    }

    #[test]
    fn identify_reads_a_live_process_and_refuses_a_missing_one() {
        let me = std::process::id();
        let id = identify(me).expect("we are alive");
        assert_eq!(id.start_ticks, process::stat(me).unwrap().start_ticks);
        assert!(id.alive());
        assert!(identify(u32::MAX).is_none());
    }
}

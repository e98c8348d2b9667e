//! Linux backend: the netlink process connector (any user on kernels ≥ 6.6,
//! CAP_NET_ADMIN before), with a process table that turns per-thread events
//! into one record per process.

mod bpf_loader;
mod ebpf;
mod ffi;
mod procfs;
mod taskstats;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::decode::proc_connector::{
    listen_request, parse_datagram, ProcEvent, CN_IDX_PROC, PROC_CN_MCAST_LISTEN,
};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::event::ProcessExit;
use crate::filter::Filter;
use crate::monitor::{spawn_backend, Backend, Monitor, RecvError, Running, StopSignal};
use crate::queue::Sink;
use crate::sys::Config;

pub(crate) use self::bpf_loader::{
    object::object as bpf_object, object_btf, read_kernel_btf, relocate_object, relocated_programs,
};
pub(crate) use self::ebpf::resolve_backend;
use self::ffi::{NetlinkSocket, Received, Waker};
use self::procfs::ProcFs;
use self::taskstats::Taskstats;
use crate::config::Taskstats as TaskstatsMode;
use crate::merge::linux::ProcessTable;

/// `NETLINK_CONNECTOR`.
const NETLINK_CONNECTOR: u32 = 11;
/// The part of the receive buffer each datagram of a batch gets: a page,
/// more than any datagram the kernel sends here (connector ones are under
/// 100 bytes, taskstats ones under 1 KiB). A longer one would be counted as
/// an anomaly, never read cut.
const DATAGRAM_SLOT: usize = 4096;
/// One slot per datagram of a `recvmmsg` batch.
const RECV_BUFFER: usize = DATAGRAM_SLOT * ffi::RECV_BATCH;
/// How long `start` waits for the kernel's ACK of LISTEN. Inside a user or
/// pid namespace no ACK comes although events do; then we go on.
const ACK_WAIT: Duration = Duration::from_millis(500);
/// Idle wake-up for housekeeping (sweep, clock refresh).
const TICK_MS: i32 = 250;
/// The window over which [`BurstGate`] measures the message rate.
const BURST_WINDOW: Duration = Duration::from_millis(10);
/// The longest a burst's next messages may gather before they are read.
/// Each wake-up costs both threads a sleep and a wake (tens of µs on a busy
/// machine), so a longer gathering makes a burst cheaper per exit; while a
/// burst lasts, its exits reach the consumer this much later at most.
const BURST_GATHER_MAX: Duration = Duration::from_millis(16);
/// The shortest gathering: below this a wait saves no wake-up.
const BURST_GATHER_MIN: Duration = Duration::from_millis(1);

/// Reads a burst in batches. Waking per message costs more than the
/// message (poll, two context switches, the consumer's wake-up), so while
/// messages come faster than `per_second` the reader waits after each read
/// and takes what gathered in one go. The wait lasts [`BURST_GATHER_MAX`]
/// at most, and never longer than the kernel's buffer takes to fill half
/// way at the rate just measured (an unprivileged connector socket holds a
/// few hundred datagrams), so gathering cannot overrun it. A slower stream
/// is read the moment each message comes: latency grows only under a
/// burst, by at most the gathering time.
pub(crate) struct BurstGate {
    per_window: usize,
    /// Messages the kernel's buffer holds (an estimate on the safe side).
    capacity: usize,
    window_start: Instant,
    in_window: usize,
    bursting: bool,
    /// The gathering time for the current rate.
    gather: Duration,
}

impl BurstGate {
    /// `per_second`: the rate above which reads are gathered; `capacity`:
    /// how many messages the kernel's buffer holds.
    pub(crate) fn new(per_second: usize, capacity: usize) -> BurstGate {
        BurstGate {
            per_window: per_second / (1000 / BURST_WINDOW.as_millis() as usize),
            capacity,
            window_start: Instant::now(),
            in_window: 0,
            bursting: false,
            gather: BURST_GATHER_MIN,
        }
    }

    /// How long to gather when `messages` came in `elapsed`: the time the
    /// buffer takes to fill half way at that rate, within the bounds.
    fn gather_for(&self, messages: usize, elapsed: Duration) -> Duration {
        let half = u32::try_from(self.capacity / 2).unwrap_or(u32::MAX);
        let messages = u32::try_from(messages.max(1)).unwrap_or(u32::MAX);
        (elapsed * half / messages).clamp(BURST_GATHER_MIN, BURST_GATHER_MAX)
    }

    /// After a wake-up that read `read` messages: waits (or until `waker`
    /// fires) when the stream is bursting.
    pub(crate) fn after_read(&mut self, read: usize, waker: &Waker) -> Result<()> {
        self.in_window += read;
        let elapsed = self.window_start.elapsed();
        if elapsed >= BURST_WINDOW {
            self.bursting = self.in_window >= self.per_window;
            self.gather = self.gather_for(self.in_window, elapsed);
            self.in_window = 0;
            self.window_start = Instant::now();
        } else if self.in_window >= self.per_window {
            // Decided early: the window is already over the rate.
            self.bursting = true;
            self.gather = self.gather_for(self.in_window, elapsed.max(Duration::from_micros(100)));
        }
        if self.bursting && read > 0 {
            let ms = i32::try_from(self.gather.as_millis()).unwrap_or(i32::MAX);
            ffi::poll_readable([Some(waker.as_fd())], ms)
                .map_err(|code| Error::Os { call: "poll", code })?;
        }
        Ok(())
    }
}

/// What one queued datagram takes of a netlink socket's receive buffer,
/// rounded up: the kernel counts the whole socket buffer (a taskstats
/// record's data is under 1 KiB, its kernel bookkeeping about as much).
const DATAGRAM_TRUESIZE: usize = 2048;

/// Connector (+ taskstats) messages per second above which the reader
/// gathers: fork, exit and taskstats make about three per process, so
/// this is some 2 000 exits per second.
const CONNECTOR_BURST_RATE: usize = 6_000;

struct Stop(Waker);

impl StopSignal for Stop {
    fn stop(&self) {
        self.0.wake();
    }
}

/// An open, listening connector socket.
struct Connector {
    socket: NetlinkSocket,
    /// Datagrams its receive buffer holds.
    capacity: usize,
}

impl Connector {
    fn open(socket_buffer: usize) -> Result<(Connector, Vec<Vec<u8>>)> {
        let socket = NetlinkSocket::open(NETLINK_CONNECTOR).map_err(|code| match code {
            libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT => Error::ConnectorUnavailable { code },
            code => Error::Os {
                call: "socket(NETLINK_CONNECTOR)",
                code,
            },
        })?;
        socket.bind(CN_IDX_PROC).map_err(|code| match code {
            libc::EPERM | libc::EACCES => Error::ConnectorPermission { code },
            code => Error::Os {
                call: "bind(CN_IDX_PROC)",
                code,
            },
        })?;
        let capacity = socket.set_receive_buffer(socket_buffer) / DATAGRAM_TRUESIZE;
        socket
            .send_to_kernel(&listen_request(PROC_CN_MCAST_LISTEN, socket.port_id()))
            .map_err(|code| match code {
                libc::ECONNREFUSED => Error::ConnectorUnavailable { code },
                libc::EPERM | libc::EACCES => Error::ConnectorPermission { code },
                code => Error::Os {
                    call: "send(PROC_CN_MCAST_LISTEN)",
                    code,
                },
            })?;
        let connector = Connector { socket, capacity };
        let early = connector.wait_for_ack()?;
        Ok((connector, early))
    }

    /// Waits for the ACK of LISTEN; returns the datagrams that came first
    /// (to be processed once the table is ready).
    fn wait_for_ack(&self) -> Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + ACK_WAIT;
        let mut early = Vec::new();
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(early);
            }
            let timeout = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            let [readable] = ffi::poll_readable([Some(self.socket.as_fd())], timeout)
                .map_err(|code| Error::Os { call: "poll", code })?;
            if !readable {
                continue;
            }
            match self.socket.recv_nonblocking(&mut buf) {
                Ok(Received::Data(n)) => {
                    let datagram = buf.get(..n).unwrap_or(&[]);
                    for message in parse_datagram(datagram).flatten() {
                        if let ProcEvent::Ack { err } = message.event {
                            return match err {
                                0 => Ok(early),
                                e => Err(Error::ConnectorPermission {
                                    code: i32::try_from(e).unwrap_or(libc::EPERM),
                                }),
                            };
                        }
                    }
                    early.push(datagram.to_vec());
                }
                Ok(Received::WouldBlock) | Ok(Received::Overrun) => {}
                Err(code) => {
                    return Err(Error::Os {
                        call: "recv(NETLINK_CONNECTOR)",
                        code,
                    })
                }
            }
        }
    }
}

pub(crate) fn start(options: &Config<'_>, sink: Sink) -> Result<Running> {
    start_with(options, sink, ebpf::start)
}

/// `start`, with the eBPF source's start as a parameter (tests make it fail).
fn start_with(
    options: &Config<'_>,
    sink: Sink,
    start_ebpf: impl FnOnce(&Config<'_>, Sink) -> Result<Running>,
) -> Result<Running> {
    let mut fallback = None;
    match (options.backend, resolve_backend(options)) {
        (Backend::Auto, Backend::LinuxEbpf) => match start_ebpf(options, sink.clone()) {
            Ok(running) => return Ok(running),
            // The program may not load on this kernel (an older layout, a
            // lower memlock limit, a verifier that refuses it): the
            // connector still gives every exit.
            Err(error) => fallback = Some(error),
        },
        (_, Backend::LinuxEbpf) => return start_ebpf(options, sink),
        (_, Backend::LinuxConnector) => {}
        _ => {
            return Err(Error::Unsupported {
                what: "this backend (Windows ETW)",
            })
        }
    }
    let (connector, early) = Connector::open(options.linux.socket_buffer_bytes())?;
    let taskstats = match options.linux.taskstats_mode() {
        TaskstatsMode::Off => None,
        TaskstatsMode::Auto => Taskstats::open(options.linux.socket_buffer_bytes()).ok(),
        TaskstatsMode::Required => Some(
            Taskstats::open(options.linux.socket_buffer_bytes())
                .map_err(|code| Error::TaskstatsUnavailable { code })?,
        ),
    };
    let waker = Waker::new().map_err(|code| Error::Os {
        call: "eventfd",
        code,
    })?;
    let stop = Arc::new(Stop(waker));
    let wake = stop.clone();
    // The table is seeded after LISTEN, so no process can slip between the
    // snapshot and the first event.
    let mut table = ProcessTable::new(ProcFs, taskstats.is_some());
    table.seed();
    let thread = spawn_backend("procexit-linux", sink, move |sink| {
        let mut buf = vec![0u8; RECV_BUFFER];
        for datagram in &early {
            apply_datagram(&mut table, datagram, sink);
        }
        let result = run(
            &connector,
            taskstats.as_ref(),
            &wake.0,
            &mut table,
            &mut buf,
            sink,
        );
        table.flush_all(sink);
        result
    })?;
    Ok(Running {
        stop,
        thread,
        fallback,
    })
}

fn apply_datagram(table: &mut ProcessTable<ProcFs>, datagram: &[u8], sink: &Sink) {
    for message in parse_datagram(datagram) {
        match message {
            Ok(message) => table.apply(&message, sink),
            Err(_) => sink.anomaly(),
        }
    }
}

/// The backend loop: read until stopped, then drain what is queued.
fn run(
    connector: &Connector,
    taskstats: Option<&Taskstats>,
    waker: &Waker,
    table: &mut ProcessTable<ProcFs>,
    buf: &mut [u8],
    sink: &Sink,
) -> Result<()> {
    let mut needs_resync = false;
    let mut last_housekeeping = Instant::now();
    // Both sockets fill at once: the smaller buffer bounds the gathering.
    let capacity = taskstats.map_or(connector.capacity, |t| t.capacity.min(connector.capacity));
    let mut gate = BurstGate::new(CONNECTOR_BURST_RATE, capacity);
    loop {
        let timeout = if table.has_awaiting() { 20 } else { TICK_MS };
        let [data, stats, stop] = ffi::poll_readable(
            [
                Some(connector.socket.as_fd()),
                taskstats.map(|t| t.socket.as_fd()),
                Some(waker.as_fd()),
            ],
            timeout,
        )
        .map_err(|code| Error::Os { call: "poll", code })?;
        // Everything this wake-up reads reaches the consumer with one wake-up.
        let batch = sink.batch();
        let mut read = 0usize;
        if stats || stop {
            read += drain_taskstats(taskstats, table, buf, sink)?;
        }
        if data || stop {
            // Read everything available now (also the final drain on stop).
            let drained = connector.socket.drain(buf, DATAGRAM_SLOT, |datagram| {
                read += 1;
                match datagram {
                    Some(datagram) => apply_datagram(table, datagram, sink),
                    // Longer than a page: never sent by the kernel.
                    None => sink.anomaly(),
                }
            });
            needs_resync |= drained.overruns > 0;
            if let Some(code) = drained.error {
                return Err(Error::Os {
                    call: "recv(NETLINK_CONNECTOR)",
                    code,
                });
            }
        }
        if needs_resync {
            // Resync only once the socket is drained, so exits still queued
            // behind the overrun are delivered rather than counted as lost.
            needs_resync = false;
            sink.overrun(table.resync());
        }
        // A process finished here gives up its taskstats record only after
        // the socket was read again at least TASKSTATS_WAIT later, however
        // long this thread was kept off the CPU in between.
        let checked_at = table.monotonic_ns();
        if table.has_awaiting() {
            read += drain_taskstats(taskstats, table, buf, sink)?;
        }
        table.flush_awaiting(sink, checked_at);
        if stop {
            table.count_vanished(Duration::ZERO, sink);
            return Ok(());
        }
        if last_housekeeping.elapsed() >= Duration::from_millis(TICK_MS as u64) {
            last_housekeeping = Instant::now();
            table.refresh_clocks();
            table.sweep(sink);
        }
        drop(batch);
        gate.after_read(read, waker)?;
    }
}

/// Reads every taskstats record queued now into the table; returns how
/// many datagrams it read. A lost record costs only enrichment (the
/// connector still reports the exit): an anomaly, not a lost exit.
fn drain_taskstats(
    taskstats: Option<&Taskstats>,
    table: &mut ProcessTable<ProcFs>,
    buf: &mut [u8],
    sink: &Sink,
) -> Result<usize> {
    let Some(taskstats) = taskstats else {
        return Ok(0);
    };
    let mut read = 0usize;
    let outcome = taskstats.drain(buf, |record| {
        read += 1;
        table.apply_taskstats(record, sink)
    });
    for _ in 0..outcome.overruns.saturating_add(outcome.anomalies) {
        sink.anomaly();
    }
    match outcome.error {
        Some(code) => Err(Error::Os {
            call: "recv(TASKSTATS)",
            code,
        }),
        None => Ok(read),
    }
}

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
pub(crate) struct Waiter {
    /// A monitor filtered on the pids; `None` once it has ended.
    monitor: Option<Monitor>,
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
            Some(pidfd) => !ffi::pidfd_exited(pidfd),
            None => procfs::stat(self.pid)
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
        let monitor = Monitor::builder()
            .backend(Backend::LinuxConnector)
            .filter(filter)
            .queue_capacity(1024)
            .start()?;
        // A process that ended before the monitor listened left no exit to
        // report: it had already ended.
        for id in &identities {
            if !id.alive() {
                return Err(Error::NoSuchProcess { pid: id.pid });
            }
        }
        Ok(Waiter {
            monitor: Some(monitor),
            identities,
        })
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
    fn exit_from_pidfd(&mut self, now: Instant) -> Option<ProcessExit> {
        let mut found = None;
        for (index, id) in self.identities.iter_mut().enumerate() {
            let Some(pidfd) = id.pidfd.as_ref().filter(|_| !id.no_pidfd_status) else {
                continue;
            };
            if id.ended_at.is_none() && ffi::pidfd_exited(pidfd) {
                id.ended_at = Some(now);
            }
            let waited_long_enough = id
                .ended_at
                .is_some_and(|t| now.saturating_duration_since(t) >= CONNECTOR_GRACE);
            if !waited_long_enough {
                continue;
            }
            match ffi::pidfd_exit_status(pidfd) {
                Ok(Some(status)) => {
                    found = Some((index, status));
                    break;
                }
                // A zombie: its parent has not reaped it yet.
                Ok(None) => {}
                Err(_) => id.no_pidfd_status = true,
            }
        }
        let (index, status) = found?;
        let id = self.identities.remove(index);
        let mut exit = ProcessExit::new(
            id.pid,
            crate::event::ExitStatus::from_wait_status(status),
            crate::event::Source::Handle,
        );
        exit.name = Some(id.comm).filter(|c| !c.is_empty());
        exit.process_key = Some(id.start_ticks);
        Some(exit)
    }

    pub(crate) fn next_exit(&mut self, deadline: Option<Instant>) -> Result<Option<ProcessExit>> {
        if self.monitor.is_none() {
            return Ok(None);
        }
        loop {
            let now = Instant::now();
            if let Some(exit) = self.exit_from_pidfd(now) {
                return Ok(Some(exit));
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
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
    let pidfd = match ffi::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return None,
    };
    let stat = procfs::stat(pid)?;
    if stat.state == 'Z' || !ffi::process_exists(pid) {
        return None;
    }
    // Still alive after the read: the pid was not reused in between, so
    // the start time read is the pidfd's process's.
    if pidfd.as_ref().is_some_and(ffi::pidfd_exited) {
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
    fn a_burst_gathers_no_longer_than_half_the_buffer_takes_to_fill() {
        let ms = Duration::from_millis;
        // An unprivileged connector socket: about 200 datagrams. 300 in
        // 10 ms fill half of it in 3.3 ms.
        let small = BurstGate::new(CONNECTOR_BURST_RATE, 208);
        let gather = small.gather_for(300, ms(10));
        assert!(gather > ms(3) && gather < ms(4), "{gather:?}");
        // A large buffer: the cap.
        let large = BurstGate::new(CONNECTOR_BURST_RATE, 8192);
        assert_eq!(large.gather_for(300, ms(10)), BURST_GATHER_MAX);
        // A flood into a tiny buffer, or no buffer known: the floor.
        assert_eq!(small.gather_for(100_000, ms(10)), BURST_GATHER_MIN);
        assert_eq!(BurstGate::new(1, 0).gather_for(0, ms(10)), BURST_GATHER_MIN);
    }

    #[test]
    fn auto_falls_back_to_the_connector_when_ebpf_does_not_load() {
        let (filter, linux, windows) = (
            Filter::new(),
            crate::config::LinuxOptions::new(),
            crate::config::WindowsOptions::new(),
        );
        let options = Config {
            backend: Backend::Auto,
            filter: &filter,
            linux: &linux,
            windows: &windows,
        };
        if resolve_backend(&options) != Backend::LinuxEbpf {
            return crate::test_skip::skip(
                "Auto does not choose eBPF here (needs root and kernel BTF)",
            );
        }
        let shared = Arc::new(crate::queue::Shared::new(16, Filter::new()));
        let refused = |_: &Config<'_>, _: Sink| -> Result<Running> {
            Err(Error::EbpfUnavailable {
                step: "load program",
                detail: "refused by the test".into(),
                code: 22,
            })
        };
        let running = start_with(&options, Sink::new(shared.clone()), refused)
            .expect("the connector runs instead");
        assert!(matches!(
            running.fallback,
            Some(Error::EbpfUnavailable { code: 22, .. })
        ));
        // Forced, the same failure is the error.
        let forced = Config {
            backend: Backend::LinuxEbpf,
            ..options
        };
        assert!(start_with(&forced, Sink::new(shared.clone()), refused).is_err());
        running.stop.stop();
        running.thread.join().unwrap().unwrap();
    }

    #[test]
    fn only_the_identified_process_is_waited_for() {
        let set = Waiter {
            monitor: None,
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
            identities: vec![id],
        };
        let now = Instant::now();
        assert_eq!(set.exit_from_pidfd(now), None, "still running");
        let _ = child.stdin.take().unwrap().write_all(b"\n");
        assert_eq!(child.wait().unwrap().code(), Some(5));
        // Ended, but a connector record may still come: not yet.
        assert_eq!(set.exit_from_pidfd(now), None);
        let later = now + CONNECTOR_GRACE;
        match set.exit_from_pidfd(later) {
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

    #[test]
    fn identify_reads_a_live_process_and_refuses_a_missing_one() {
        let me = std::process::id();
        let id = identify(me).expect("we are alive");
        assert_eq!(id.start_ticks, procfs::stat(me).unwrap().start_ticks);
        assert!(id.alive());
        assert!(identify(u32::MAX).is_none());
    }
}

//! Linux backend: the eBPF source (`ebpf.rs`, with its own loader in
//! `bpf_loader/`) and the netlink process connector (unprivileged where the
//! kernel's build allows it, CAP_NET_ADMIN elsewhere), whose process table
//! turns per-thread events into one record per process.

mod bpf_loader;
mod ebpf;
mod ebpf_probe;
mod ffi;
mod procfs;
mod taskstats;

/// What the Linux waiter ([`crate::wait`]) asks of the OS: pidfds on the
/// waited processes and their `/proc/PID/stat`.
pub(crate) mod process {
    pub(crate) use super::ffi::{pidfd_exit_status, pidfd_exited, pidfd_open, process_exists};
    pub(crate) use super::procfs::stat;
}

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{spawn_backend, Backend, Running, StopSignal};
use crate::decode::proc_connector::{
    listen_request, parse_datagram, ProcEvent, CN_IDX_PROC, PROC_CN_MCAST_LISTEN,
};
use crate::error::{Error, Result};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

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
}

//! The Linux calls of the backend: netlink sockets, an eventfd to wake the
//! loop, poll, clocks and pidfds, through rustix's safe, typed wrappers. The
//! two exceptions go through libc: the pidfd's exit status
//! (`PIDFD_GET_INFO`), an ioctl neither rustix nor libc wraps, and
//! `recvmmsg`, which rustix lacks. Errors come back as the raw errno, which
//! the callers map to typed [`Error`](crate::Error)s.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, Protocol, RecvFlags, SendFlags, SocketFlags, SocketType};
use rustix::process::{Pid, PidfdFlags};
pub(crate) use rustix::time::ClockId;

fn code(e: Errno) -> i32 {
    e.raw_os_error()
}

/// Datagrams one `recvmmsg` call of [`NetlinkSocket::drain`] takes at most.
pub(crate) const RECV_BATCH: usize = 32;

/// A netlink socket of one protocol, closed on drop.
#[derive(Debug)]
pub(crate) struct NetlinkSocket {
    fd: OwnedFd,
}

/// What a receive returned.
pub(crate) enum Received {
    /// A datagram of this many bytes.
    Data(usize),
    /// Nothing to read now (non-blocking read).
    WouldBlock,
    /// The kernel dropped messages because our buffer was full.
    Overrun,
}

/// What [`NetlinkSocket::drain`] met besides datagrams.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// Times the kernel reported dropped messages (ENOBUFS).
    pub(crate) overruns: u64,
    /// The errno that ended reading early, if one did.
    pub(crate) error: Option<i32>,
}

/// What one `recvmmsg` call of [`NetlinkSocket::drain`] returned.
enum Batch {
    /// Every slot was filled: more may wait.
    Full,
    /// Some slots were left free: the socket is empty.
    Partial,
    /// Nothing to read.
    Empty,
    /// The kernel dropped messages because our buffer was full.
    Overrun,
}

impl NetlinkSocket {
    /// socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, protocol).
    pub(crate) fn open(protocol: u32) -> Result<NetlinkSocket, i32> {
        let protocol = Protocol::from_raw(
            rustix::net::RawProtocol::new(protocol).ok_or(libc::EPROTONOSUPPORT)?,
        );
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(protocol),
        )
        .map_err(code)?;
        Ok(NetlinkSocket { fd })
    }

    /// bind() to our port id (0: kernel assigns) and multicast `groups`.
    pub(crate) fn bind(&self, groups: u32) -> Result<(), i32> {
        rustix::net::bind(&self.fd, &SocketAddrNetlink::new(0, groups)).map_err(code)
    }

    /// Asks for a receive buffer of `bytes`: SO_RCVBUFFORCE (needs
    /// CAP_NET_ADMIN) first, then SO_RCVBUF (capped by rmem_max). Returns the
    /// effective size the kernel reports (it doubles the request).
    pub(crate) fn set_receive_buffer(&self, bytes: usize) -> usize {
        let bytes = bytes.min(i32::MAX as usize);
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&self.fd, bytes).is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&self.fd, bytes);
        }
        rustix::net::sockopt::socket_recv_buffer_size(&self.fd).unwrap_or(0)
    }

    /// Sends one datagram to the kernel (port id 0).
    pub(crate) fn send_to_kernel(&self, data: &[u8]) -> Result<(), i32> {
        let kernel = SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, data, SendFlags::empty(), &kernel)
            .map(|_| ())
            .map_err(code)
    }

    /// Receives one datagram into `buf` without blocking.
    pub(crate) fn recv_nonblocking(&self, buf: &mut [u8]) -> Result<Received, i32> {
        loop {
            return match rustix::net::recv(&self.fd, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => Ok(Received::Data(n)),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => Ok(Received::WouldBlock),
                Err(Errno::NOBUFS) => Ok(Received::Overrun),
                Err(e) => Err(code(e)),
            };
        }
    }

    /// Reads every datagram available now without blocking, in `recvmmsg`
    /// batches: datagram `i` of a batch lands in the `i`-th `slot`-byte part
    /// of `buf`, and `each` sees them in order (`None` for one the kernel
    /// cut because it was longer than `slot`). A batch with free slots left
    /// means the socket was empty, so no further call is made. Overruns
    /// (ENOBUFS) are counted and reading goes on; an error ends it.
    ///
    /// Under a burst one call takes what `RECV_BATCH` calls of
    /// [`recv_nonblocking`](Self::recv_nonblocking) would, and the syscall
    /// is most of a small datagram's cost.
    pub(crate) fn drain(
        &self,
        buf: &mut [u8],
        slot: usize,
        mut each: impl FnMut(Option<&[u8]>),
    ) -> Drained {
        let mut drained = Drained::default();
        loop {
            match self.recv_batch(buf, slot, &mut each) {
                Ok(Batch::Full) => {}
                Ok(Batch::Partial | Batch::Empty) => return drained,
                Ok(Batch::Overrun) => drained.overruns = drained.overruns.saturating_add(1),
                Err(code) => {
                    drained.error = Some(code);
                    return drained;
                }
            }
        }
    }

    /// One `recvmmsg` call of [`drain`](Self::drain) (rustix has none).
    fn recv_batch(
        &self,
        buf: &mut [u8],
        slot: usize,
        mut each: impl FnMut(Option<&[u8]>),
    ) -> Result<Batch, i32> {
        use std::os::fd::AsRawFd;
        let slot = slot.max(1);
        // SAFETY: iovec and mmsghdr are plain C structs of integers and
        // pointers, for which all zero bytes (null pointers, zero lengths)
        // is a valid value.
        #[allow(unsafe_code)]
        let (mut iov, mut headers): (
            [libc::iovec; RECV_BATCH],
            [libc::mmsghdr; RECV_BATCH],
        ) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let mut slots = 0usize;
        for (vec, chunk) in iov.iter_mut().zip(buf.chunks_mut(slot)) {
            vec.iov_base = chunk.as_mut_ptr().cast();
            vec.iov_len = chunk.len();
            slots += 1;
        }
        for (header, vec) in headers.iter_mut().zip(iov.iter_mut()).take(slots) {
            header.msg_hdr.msg_iov = vec;
            header.msg_hdr.msg_iovlen = 1;
        }
        let received = loop {
            // SAFETY: the first `slots` headers each point to one iovec of
            // `iov`, which points into its own disjoint chunk of `buf`; `iov`,
            // `headers` and `buf` outlive the call and are not otherwise used
            // during it, and `slots` <= RECV_BATCH, the length of `headers`.
            // No address or control buffers are given (null, length 0).
            #[allow(unsafe_code)]
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    headers.as_mut_ptr(),
                    slots as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break usize::try_from(n).unwrap_or(0).min(slots);
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(Batch::Empty),
                Some(libc::ENOBUFS) => return Ok(Batch::Overrun),
                other => return Err(other.unwrap_or(libc::EIO)),
            }
        };
        for (header, chunk) in headers.iter().zip(buf.chunks(slot)).take(received) {
            let len = usize::try_from(header.msg_len).unwrap_or(usize::MAX);
            let cut = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            each(chunk.get(..len).filter(|_| !cut));
        }
        Ok(if received == slots {
            Batch::Full
        } else {
            Batch::Partial
        })
    }

    /// The port id the kernel gave this socket.
    pub(crate) fn port_id(&self) -> u32 {
        rustix::net::getsockname(&self.fd)
            .ok()
            .and_then(|addr| SocketAddrNetlink::try_from(addr).ok())
            .map_or(0, |addr| addr.pid())
    }
}

impl AsFd for NetlinkSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An eventfd that wakes the backend loop (used to stop it).
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> Result<Waker, i32> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(code)?;
        Ok(Waker { fd })
    }

    /// Makes the eventfd readable; safe to call from any thread, any number
    /// of times.
    pub(crate) fn wake(&self) {
        // A full counter (EAGAIN) still leaves the fd readable, so errors
        // are moot.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes. Returns
/// which fds are readable; a `None` slot is never readable.
pub(crate) fn poll_readable<const N: usize>(
    fds: [Option<BorrowedFd<'_>>; N],
    timeout_ms: i32,
) -> Result<[bool; N], i32> {
    let mut slots = [None; N];
    let mut pollfds = Vec::with_capacity(N);
    for (slot, fd) in slots.iter_mut().zip(fds) {
        if let Some(fd) = fd {
            *slot = Some(pollfds.len());
            pollfds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
    }
    let timeout = Timespec {
        tv_sec: i64::from(timeout_ms.max(0) / 1000),
        tv_nsec: i64::from(timeout_ms.max(0) % 1000) * 1_000_000,
    };
    loop {
        match poll(&mut pollfds, Some(&timeout)) {
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(code(e)),
        }
    }
    let ready = PollFlags::IN | PollFlags::ERR | PollFlags::HUP;
    Ok(slots.map(|slot| {
        slot.and_then(|i| pollfds.get(i))
            .is_some_and(|p| p.revents().intersects(ready))
    }))
}

/// Nanoseconds of a clock (CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME).
pub(crate) fn clock_ns(clock: ClockId) -> u64 {
    let ts = rustix::time::clock_gettime(clock);
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on every usual
/// configuration).
pub(crate) fn clock_ticks_per_second() -> u64 {
    Some(rustix::param::clock_ticks_per_second())
        .filter(|&v| v > 0)
        .unwrap_or(100)
}

fn pid(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Whether a process with this pid exists (kill(pid, 0); EPERM means it
/// exists but belongs to someone else).
pub(crate) fn process_exists(pid_: u32) -> bool {
    let Some(pid) = pid(pid_) else {
        return false;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Ok(()) | Err(Errno::PERM)
    )
}

/// A pidfd (`pidfd_open(2)`, Linux ≥ 5.3): a handle on one process that a
/// later process with the same pid cannot take over. `Ok(None)` when the
/// kernel has no pidfd_open; `Err(ESRCH)` when there is no such process.
pub(crate) fn pidfd_open(pid_: u32) -> Result<Option<OwnedFd>, i32> {
    let pid = pid(pid_).ok_or(libc::ESRCH)?;
    match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOSYS) => Ok(None),
        Err(e) => Err(code(e)),
    }
}

/// Whether the process of a pidfd has ended (the fd polls readable once the
/// process has exited, zombie or reaped).
pub(crate) fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    poll_readable([Some(pidfd.as_fd())], 0).is_ok_and(|[ready]| ready)
}

/// `struct pidfd_info` of include/uapi/linux/pidfd.h, its first version
/// (`PIDFD_INFO_SIZE_VER0`, 64 bytes, Linux 6.13+; `exit_code` is filled
/// from 6.15 on).
#[repr(C)]
#[derive(Debug, Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

/// `PIDFD_INFO_EXIT`: ask for (and, in the reply, have) the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// `_IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: u64 = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

/// The wait status of a pidfd's process once it has ended and its parent
/// has reaped it (`PIDFD_GET_INFO` with `PIDFD_INFO_EXIT`, Linux ≥ 6.15;
/// the kernel keeps it for every pidfd holder, also after the pid is
/// reused). `Ok(None)` while the process runs or is a zombie; `Err(errno)`
/// when the kernel cannot tell: ENOTTY before 6.13, ESRCH for a reaped
/// process before 6.15.
pub(crate) fn pidfd_exit_status(pidfd: &OwnedFd) -> Result<Option<u32>, i32> {
    use std::os::fd::AsRawFd;
    const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: PIDFD_GET_INFO reads and writes one `struct pidfd_info` of
    // the size encoded in the request (64 bytes), which `info` is
    // (repr(C), size asserted above); the fd is a valid open pidfd for the
    // whole call.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            PIDFD_GET_INFO as _,
            std::ptr::addr_of_mut!(info),
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL));
    }
    if info.mask & PIDFD_INFO_EXIT == 0 {
        return Ok(None);
    }
    Ok(Some(u32::from_ne_bytes(info.exit_code.to_ne_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_sees_a_woken_eventfd_and_never_an_absent_slot() {
        let waker = Waker::new().expect("eventfd");
        assert_eq!(
            poll_readable([None, Some(waker.as_fd())], 0),
            Ok([false, false])
        );
        waker.wake();
        waker.wake();
        assert_eq!(
            poll_readable([None, Some(waker.as_fd())], 0),
            Ok([false, true])
        );
    }

    #[test]
    fn processes_and_pidfds() {
        let me = std::process::id();
        assert!(process_exists(me));
        assert!(!process_exists(0));
        assert!(process_exists(1), "init exists (EPERM counts as existing)");
        match pidfd_open(me) {
            Ok(Some(fd)) => assert!(!pidfd_exited(&fd)),
            Ok(None) => {} // a kernel before 5.3
            Err(code) => panic!("pidfd_open(self): errno {code}"),
        }
        assert_eq!(pidfd_open(0).err(), Some(libc::ESRCH));
    }

    #[test]
    fn a_reaped_childs_status_comes_from_its_pidfd() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("spawn sh");
        let pidfd = pidfd_open(child.id()).expect("pidfd_open");
        assert_eq!(child.wait().expect("wait").code(), Some(3));
        let Some(pidfd) = pidfd else {
            return; // a kernel before 5.3
        };
        match pidfd_exit_status(&pidfd) {
            Ok(status) => assert_eq!(status, Some(3 << 8)),
            // Kernels before 6.15 cannot tell.
            Err(code) => assert!(code == libc::ENOTTY || code == libc::ESRCH, "{code}"),
        }
        let me = pidfd_open(std::process::id()).unwrap().unwrap();
        assert!(matches!(pidfd_exit_status(&me), Ok(None) | Err(_)));
    }

    #[test]
    fn clocks_run_and_ticks_are_positive() {
        let a = clock_ns(ClockId::Monotonic);
        let b = clock_ns(ClockId::Monotonic);
        assert!(a > 0 && b >= a);
        assert!(clock_ns(ClockId::Boottime) >= a);
        assert!(clock_ns(ClockId::Realtime) > 1_600_000_000 * 1_000_000_000);
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn a_netlink_socket_gets_a_port_and_a_receive_buffer() {
        let socket = NetlinkSocket::open(16).expect("NETLINK_GENERIC socket");
        socket.bind(0).expect("bind");
        assert_ne!(socket.port_id(), 0);
        // The kernel doubles the request (and may cap it without privilege).
        assert!(socket.set_receive_buffer(64 * 1024) >= 64 * 1024);
        let mut buf = [0u8; 64];
        assert!(matches!(
            socket.recv_nonblocking(&mut buf),
            Ok(Received::WouldBlock)
        ));
    }
}

//! The raw Linux calls of the backend: netlink sockets, an eventfd to wake
//! the loop, poll and clocks. Every `unsafe` block of the Linux backend is
//! here; each returns an owned type or a typed error.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

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

impl NetlinkSocket {
    /// socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, protocol).
    pub(crate) fn open(protocol: i32) -> Result<NetlinkSocket, i32> {
        // SAFETY: plain syscall with constant arguments; no pointers.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(NetlinkSocket { fd })
    }

    /// bind() to our port id (0: kernel assigns) and multicast `groups`.
    pub(crate) fn bind(&self, groups: u32) -> Result<(), i32> {
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        // SAFETY: `addr` is a valid sockaddr_nl that outlives the call, and
        // the length passed is its exact size.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    fn set_int_option(&self, level: i32, name: i32, value: i32) -> Result<(), i32> {
        // SAFETY: the option value points to a live i32 and the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    fn get_int_option(&self, level: i32, name: i32) -> Result<i32, i32> {
        let mut value: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: `value` and `len` are live locals of the sizes the kernel expects.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&mut value as *mut i32).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            Err(errno())
        } else {
            Ok(value)
        }
    }

    /// Asks for a receive buffer of `bytes`: SO_RCVBUFFORCE (needs
    /// CAP_NET_ADMIN) first, then SO_RCVBUF (capped by rmem_max). Returns the
    /// effective size the kernel reports (it doubles the request).
    pub(crate) fn set_receive_buffer(&self, bytes: usize) -> usize {
        let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
        if self
            .set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
            .is_err()
        {
            let _ = self.set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes);
        }
        self.get_int_option(libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map(|v| usize::try_from(v).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Sends one datagram to the kernel (port id 0).
    pub(crate) fn send_to_kernel(&self, data: &[u8]) -> Result<(), i32> {
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `data` and `addr` are valid for the lengths given and
        // outlive the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    /// Receives one datagram into `buf` without blocking.
    pub(crate) fn recv_nonblocking(&self, buf: &mut [u8]) -> Result<Received, i32> {
        loop {
            // SAFETY: `buf` is a valid writable slice of the length given.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if rc >= 0 {
                return Ok(Received::Data(usize::try_from(rc).unwrap_or(0)));
            }
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => return Ok(Received::WouldBlock),
                libc::ENOBUFS => return Ok(Received::Overrun),
                code => return Err(code),
            }
        }
    }

    /// The port id the kernel gave this socket.
    pub(crate) fn port_id(&self) -> u32 {
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` and `len` are live locals sized for sockaddr_nl.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            0
        } else {
            addr.nl_pid
        }
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An eventfd that wakes the backend loop (used to stop it).
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> Result<Waker, i32> {
        // SAFETY: plain syscall with constant arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: `fd` was just returned by eventfd() and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    /// Makes the eventfd readable; safe to call from any thread, any number
    /// of times.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64, as eventfd requires. A full
        // counter (EAGAIN) still leaves the fd readable, so errors are moot.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes. Returns
/// which fds are readable.
pub(crate) fn poll_readable<const N: usize>(
    fds: [RawFd; N],
    timeout_ms: i32,
) -> Result<[bool; N], i32> {
    let mut pollfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: `pollfds` is a live array of N pollfd and N is passed as its length.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
        if rc >= 0 {
            break;
        }
        let code = errno();
        if code != libc::EINTR {
            return Err(code);
        }
    }
    Ok(pollfds.map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0))
}

/// Nanoseconds of a clock (CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME).
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec; these clocks always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on every usual
/// configuration).
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory arguments.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
}

/// Whether a process with this pid exists (kill(pid, 0); EPERM means it
/// exists but belongs to someone else).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || errno() == libc::EPERM
}

/// A pidfd (`pidfd_open(2)`, Linux ≥ 5.3): a handle on one process that a
/// later process with the same pid cannot take over. `Ok(None)` when the
/// kernel has no pidfd_open; `Err(ESRCH)` when there is no such process.
pub(crate) fn pidfd_open(pid: u32) -> Result<Option<OwnedFd>, i32> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Err(libc::ESRCH);
    };
    if pid <= 0 {
        return Err(libc::ESRCH);
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        let code = errno();
        return if code == libc::ENOSYS {
            Ok(None)
        } else {
            Err(code)
        };
    }
    let fd = RawFd::try_from(rc).map_err(|_| libc::EBADF)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the process of a pidfd has ended (the fd polls readable once the
/// process has exited, zombie or reaped).
pub(crate) fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    poll_readable([pidfd.as_raw_fd()], 0).is_ok_and(|[ready]| ready)
}

//! Taskstats listener: one record per exiting task, registered for every
//! CPU. Needs CAP_NET_ADMIN in the initial user, pid and net namespaces.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::ffi::{self, NetlinkSocket, Received};
use crate::decode::netlink::{messages, parse_error, NLMSG_ERROR};
use crate::decode::taskstats::{
    self, parse_family_id, request, TaskExit, CTRL_ATTR_FAMILY_NAME, CTRL_CMD_GETFAMILY,
    GENL_ID_CTRL, TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, TASKSTATS_CMD_GET,
};

/// `NETLINK_GENERIC`.
const NETLINK_GENERIC: u32 = 16;
const REPLY_WAIT: Duration = Duration::from_millis(500);

pub(crate) struct Taskstats {
    pub(crate) socket: NetlinkSocket,
    /// Records its receive buffer holds.
    pub(crate) capacity: usize,
}

/// Why taskstats could not be used (an errno).
pub(crate) type Refused = i32;

impl Taskstats {
    pub(crate) fn open(socket_buffer: usize) -> Result<Taskstats, Refused> {
        let socket = NetlinkSocket::open(NETLINK_GENERIC)?;
        socket.bind(0)?;
        let port = socket.port_id();
        socket.send_to_kernel(&request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            CTRL_ATTR_FAMILY_NAME,
            b"TASKSTATS\0",
            port,
        ))?;
        let mut family = None;
        read_replies(&socket, |kind, message| {
            if kind == NLMSG_ERROR {
                return Some(parse_error(message).unwrap_or(libc::EPROTO));
            }
            if kind == GENL_ID_CTRL {
                family = parse_family_id(message).ok().flatten();
            }
            None
        })?;
        let family = family.ok_or(libc::ENOENT)?;
        let capacity = socket.set_receive_buffer(socket_buffer) / super::DATAGRAM_TRUESIZE;
        let mut mask = cpu_mask().into_bytes();
        mask.push(0);
        socket.send_to_kernel(&request(
            family,
            TASKSTATS_CMD_GET,
            TASKSTATS_CMD_ATTR_REGISTER_CPUMASK,
            &mask,
            port,
        ))?;
        read_replies(&socket, |kind, message| {
            (kind == NLMSG_ERROR).then(|| parse_error(message).unwrap_or(libc::EPROTO))
        })?;
        Ok(Taskstats { socket, capacity })
    }

    /// Reads every record available now.
    pub(crate) fn drain(&self, buf: &mut [u8], mut on_record: impl FnMut(TaskExit)) -> ReadOutcome {
        let mut anomalies = 0u64;
        let drained = self.socket.drain(buf, super::DATAGRAM_SLOT, |datagram| {
            let Some(datagram) = datagram else {
                anomalies += 1;
                return;
            };
            for message in messages(datagram) {
                match message.map(|(_, m, _)| taskstats::parse_message(m)) {
                    Ok(Ok(Some(record))) => on_record(record),
                    Ok(Ok(None)) => {}
                    Ok(Err(_)) | Err(_) => anomalies += 1,
                }
            }
        });
        ReadOutcome {
            overruns: drained.overruns,
            anomalies,
            error: drained.error,
        }
    }
}

#[derive(Default)]
pub(crate) struct ReadOutcome {
    pub(crate) overruns: u64,
    pub(crate) anomalies: u64,
    pub(crate) error: Option<i32>,
}

/// Reads replies until the handler returns an errno (0 = ACK) or time runs out.
fn read_replies(
    socket: &NetlinkSocket,
    mut handle: impl FnMut(u16, &[u8]) -> Option<i32>,
) -> Result<(), Refused> {
    let deadline = Instant::now() + REPLY_WAIT;
    let mut buf = vec![0u8; 16 * 1024];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        let [ready] = ffi::poll_readable([Some(socket.as_fd())], ms)?;
        if !ready {
            continue;
        }
        if let Received::Data(n) = socket.recv_nonblocking(&mut buf)? {
            for (kind, message, _) in messages(buf.get(..n).unwrap_or(&[])).flatten() {
                match handle(kind, message) {
                    Some(0) => return Ok(()),
                    Some(errno) => return Err(errno),
                    None => {}
                }
            }
        }
    }
    Err(libc::ETIMEDOUT)
}

/// Every possible CPU, as the kernel lists them ("0-1").
fn cpu_mask() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            format!("0-{}", n.saturating_sub(1))
        })
}

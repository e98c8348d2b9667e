//! Linux process connector messages (`NETLINK_CONNECTOR`, `CN_IDX_PROC`).
//!
//! Layout (include/uapi/linux/netlink.h, connector.h, cn_proc.h), all
//! native-endian (little-endian on every target we build):
//!
//! | struct        | field            | offset | size |
//! |---------------|------------------|--------|------|
//! | nlmsghdr      | len, type, flags, seq, pid | 0 | 16 |
//! | cn_msg        | idx, val, seq, ack, len, flags | 16 | 20 |
//! | proc_event    | what u32, cpu u32, timestamp_ns u64 | 36 | 16 |
//! | event_data    | union, by `what` | 52 | ≤ 24 |
//!
//! Newer kernels may append fields: records are parsed inside their declared
//! lengths and trailing bytes are allowed.

use super::netlink::messages;
pub use super::netlink::{NLMSG_DONE, NLMSG_ERROR, NLMSG_HDR_LEN};
use super::{Cursor, DecodeError};

/// `sizeof(struct cn_msg)`.
pub const CN_MSG_LEN: usize = 20;
/// `CN_IDX_PROC` (also the multicast group).
pub const CN_IDX_PROC: u32 = 1;
/// `CN_VAL_PROC`.
pub const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN`.
pub const PROC_CN_MCAST_LISTEN: u32 = 1;
/// `PROC_CN_MCAST_IGNORE`.
pub const PROC_CN_MCAST_IGNORE: u32 = 2;

const WHAT_NONE: u32 = 0;
const WHAT_FORK: u32 = 0x1;
const WHAT_EXEC: u32 = 0x2;
const WHAT_UID: u32 = 0x4;
const WHAT_COMM: u32 = 0x200;
const WHAT_COREDUMP: u32 = 0x4000_0000;
const WHAT_EXIT: u32 = 0x8000_0000;

/// One decoded process connector event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcEvent {
    /// Reply to LISTEN; `err` is 0 on success, an errno otherwise.
    Ack {
        /// errno.
        err: u32,
    },
    /// A task was created: a process when `child_pid == child_tgid`, a
    /// thread otherwise.
    Fork {
        /// Creating thread.
        parent_pid: u32,
        /// Creating process.
        parent_tgid: u32,
        /// New task id.
        child_pid: u32,
        /// New task's process.
        child_tgid: u32,
    },
    /// A task called execve.
    Exec {
        /// Task id.
        pid: u32,
        /// Process id.
        tgid: u32,
    },
    /// Real/effective uid changed.
    Uid {
        /// Task id.
        pid: u32,
        /// Process id.
        tgid: u32,
        /// Real uid.
        ruid: u32,
        /// Effective uid.
        euid: u32,
    },
    /// The task renamed itself (prctl PR_SET_NAME).
    Comm {
        /// Task id.
        pid: u32,
        /// Process id.
        tgid: u32,
        /// New name, NUL-padded.
        comm: [u8; 16],
    },
    /// A core dump is being written (comes before the EXIT).
    Coredump {
        /// Task id.
        pid: u32,
        /// Process id.
        tgid: u32,
    },
    /// A task ended. One per thread; `exit_code` is a wait status.
    Exit {
        /// Task id.
        pid: u32,
        /// Process id.
        tgid: u32,
        /// Wait status (`code << 8`, or the signal | 0x80 for core).
        exit_code: u32,
        /// SIGCHLD (17) for a process, -1 (as u32) for a thread.
        exit_signal: u32,
        /// Parent task: unreliable (0 for threads, reaped or autoreaped
        /// children); track the parent from FORK instead.
        parent_pid: u32,
        /// Parent process, same caveat.
        parent_tgid: u32,
    },
    /// An event type we do not use (GID, SID, PTRACE, …).
    Other {
        /// The `what` value.
        what: u32,
    },
}

/// A connector event with its header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcMessage {
    /// CPU that sent it.
    pub cpu: u32,
    /// `ktime_get_ns()` (CLOCK_MONOTONIC) when it was sent.
    pub timestamp_ns: u64,
    /// The event.
    pub event: ProcEvent,
}

/// Iterates over the netlink messages of one datagram and decodes the
/// connector's proc events. Messages from other connector ids are skipped.
pub fn parse_datagram(
    datagram: &[u8],
) -> impl Iterator<Item = Result<ProcMessage, DecodeError>> + '_ {
    messages(datagram).filter_map(|message| match message {
        Err(e) => Some(Err(e)),
        Ok((kind, _, _)) if kind != NLMSG_DONE => None,
        Ok((_, message, at)) => parse_message(message)
            .map_err(|mut e| {
                e.offset = e.offset.saturating_add(at);
                e
            })
            .transpose(),
    })
}

/// Decodes one netlink message (header included). `Ok(None)` for a
/// connector message that is not a proc event.
pub fn parse_message(message: &[u8]) -> Result<Option<ProcMessage>, DecodeError> {
    let mut c = Cursor::new(message);
    c.skip(NLMSG_HDR_LEN)?;
    let idx = c.u32()?;
    let val = c.u32()?;
    c.skip(8)?; // seq, ack
    let data_len = usize::from(c.u16()?);
    c.skip(2)?; // flags
    if idx != CN_IDX_PROC || val != CN_VAL_PROC {
        return Ok(None);
    }
    let data = c.bytes(data_len.min(c.remaining()))?;
    let mut d = Cursor::new(data);
    let what = d.u32()?;
    let cpu = d.u32()?;
    let timestamp_ns = d.u64()?;
    let event = match what {
        WHAT_NONE => ProcEvent::Ack { err: d.u32()? },
        WHAT_FORK => ProcEvent::Fork {
            parent_pid: d.u32()?,
            parent_tgid: d.u32()?,
            child_pid: d.u32()?,
            child_tgid: d.u32()?,
        },
        WHAT_EXEC => ProcEvent::Exec {
            pid: d.u32()?,
            tgid: d.u32()?,
        },
        WHAT_UID => ProcEvent::Uid {
            pid: d.u32()?,
            tgid: d.u32()?,
            ruid: d.u32()?,
            euid: d.u32()?,
        },
        WHAT_COMM => {
            let pid = d.u32()?;
            let tgid = d.u32()?;
            let mut comm = [0u8; 16];
            comm.copy_from_slice(d.bytes(16)?);
            ProcEvent::Comm { pid, tgid, comm }
        }
        WHAT_COREDUMP => ProcEvent::Coredump {
            pid: d.u32()?,
            tgid: d.u32()?,
        },
        WHAT_EXIT => ProcEvent::Exit {
            pid: d.u32()?,
            tgid: d.u32()?,
            exit_code: d.u32()?,
            exit_signal: d.u32()?,
            parent_pid: d.u32()?,
            parent_tgid: d.u32()?,
        },
        other => ProcEvent::Other { what: other },
    };
    Ok(Some(ProcMessage {
        cpu,
        timestamp_ns,
        event,
    }))
}

/// Builds the LISTEN (or IGNORE) request: nlmsghdr + cn_msg + u32 op.
/// `sender_pid` goes in `nlmsg_pid` (0 lets the kernel fill it).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only the Linux backend sends
pub(crate) fn listen_request(op: u32, sender_pid: u32) -> [u8; NLMSG_HDR_LEN + CN_MSG_LEN + 4] {
    const LEN: usize = NLMSG_HDR_LEN + CN_MSG_LEN + 4;
    let mut out = [0u8; LEN];
    let mut fields: Vec<u8> = Vec::with_capacity(LEN);
    fields.extend_from_slice(&(LEN as u32).to_le_bytes());
    fields.extend_from_slice(&NLMSG_DONE.to_le_bytes());
    fields.extend_from_slice(&0u16.to_le_bytes()); // flags
    fields.extend_from_slice(&0u32.to_le_bytes()); // seq
    fields.extend_from_slice(&sender_pid.to_le_bytes());
    fields.extend_from_slice(&CN_IDX_PROC.to_le_bytes());
    fields.extend_from_slice(&CN_VAL_PROC.to_le_bytes());
    fields.extend_from_slice(&0u32.to_le_bytes()); // seq
    fields.extend_from_slice(&0u32.to_le_bytes()); // ack
    fields.extend_from_slice(&4u16.to_le_bytes()); // len
    fields.extend_from_slice(&0u16.to_le_bytes()); // flags
    fields.extend_from_slice(&op.to_le_bytes());
    out.copy_from_slice(&fields);
    out
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used
)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;

    fn message(what: u32, ts: u64, data: &[u32]) -> Vec<u8> {
        let payload_len = 16 + 4 * data.len();
        let total = NLMSG_HDR_LEN + CN_MSG_LEN + payload_len;
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_le_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_le_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&CN_IDX_PROC.to_le_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_le_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&(payload_len as u16).to_le_bytes());
        m.extend_from_slice(&[0; 2]);
        m.extend_from_slice(&what.to_le_bytes());
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&ts.to_le_bytes());
        for v in data {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m
    }

    #[test]
    fn decodes_exit_and_fork() {
        let exit = message(WHAT_EXIT, 99, &[10, 10, 0x2a00, 17, 1, 1]);
        let fork = message(WHAT_FORK, 100, &[1, 1, 11, 11]);
        let mut datagram = exit.clone();
        datagram.extend_from_slice(&fork);
        let got: Vec<_> = parse_datagram(&datagram).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            Ok(ProcMessage {
                cpu: 1,
                timestamp_ns: 99,
                event: ProcEvent::Exit {
                    pid: 10,
                    tgid: 10,
                    exit_code: 0x2a00,
                    exit_signal: 17,
                    parent_pid: 1,
                    parent_tgid: 1
                }
            })
        );
        assert!(matches!(
            got[1],
            Ok(ProcMessage {
                event: ProcEvent::Fork { child_tgid: 11, .. },
                ..
            })
        ));
    }

    #[test]
    fn truncation_and_garbage_never_panic() {
        let exit = message(WHAT_EXIT, 99, &[10, 10, 0x2a00, 17, 1, 1]);
        for cut in 0..exit.len() {
            let _ = parse_datagram(&exit[..cut]).count();
            let _ = parse_message(&exit[..cut]);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let mut buf = exit.clone();
            for _ in 0..4 {
                seed = xorshift(seed);
                let i = (seed as usize) % buf.len();
                buf[i] = (seed >> 32) as u8;
            }
            let _ = parse_datagram(&buf).count();
        }
    }

    #[test]
    fn listen_request_layout() {
        let r = listen_request(PROC_CN_MCAST_LISTEN, 0);
        assert_eq!(r.len(), 40);
        assert_eq!(&r[0..4], &40u32.to_le_bytes());
        assert_eq!(&r[16..20], &1u32.to_le_bytes());
        assert_eq!(&r[36..40], &1u32.to_le_bytes());
    }
}

//! Linux taskstats over generic netlink: the per-task exit records the
//! kernel sends to listeners registered for a CPU mask.
//!
//! Layouts (include/uapi/linux/netlink.h, genetlink.h, taskstats.h):
//!
//! | struct      | fields                                   | offset |
//! |-------------|------------------------------------------|--------|
//! | nlmsghdr    | len u32, type u16, flags u16, seq, pid   | 0      |
//! | genlmsghdr  | cmd u8, version u8, reserved u16         | 16     |
//! | nlattr…     | len u16 (incl. 4-byte header), type u16, payload, 4-aligned | 20 |
//!
//! `struct taskstats` fields we read (stable since version 1 of the basic
//! accounting part; the kernel here sends version 16, 560 bytes):
//! `ac_exitcode` u32 @4, `ac_flag` u8 @8, `ac_comm` `[32]` @80, `ac_uid` u32
//! @120, `ac_gid` @124, `ac_pid` @128, `ac_ppid` @132, `ac_btime` u32 (s)
//! @136, `ac_etime` u64 (µs) @144, `ac_utime` (µs) @152, `ac_stime` (µs)
//! @160, `ac_majflt` @176, `hiwater_rss` (KiB) @200, `read_char` @216,
//! `write_char` @224, `read_syscalls` @232, `write_syscalls` @240 (all u64;
//! the last five from extended accounting, version 2 and later, zero in a
//! kernel built without `CONFIG_TASK_XACCT`; the kernel rounds the four I/O
//! counters down to a multiple of 1024, `KB_MASK` in kernel/tsacct.c).
//!
//! Except `hiwater_rss`, which belongs to the address space and so to the
//! whole process, these are the ending task's own: the kernel's per-process
//! aggregate (`TASKSTATS_TYPE_AGGR_TGID`) carries only delay accounting.

use std::time::Duration;

use super::{Cursor, DecodeError, DecodeErrorKind};
use crate::event::Resources;

/// `GENL_ID_CTRL`: the controller family, which resolves family names.
pub const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_GETFAMILY`.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
/// `CTRL_ATTR_FAMILY_ID`.
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME`.
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// `TASKSTATS_CMD_GET`.
pub const TASKSTATS_CMD_GET: u8 = 1;
/// `TASKSTATS_CMD_NEW`.
pub const TASKSTATS_CMD_NEW: u8 = 2;
/// `TASKSTATS_CMD_ATTR_REGISTER_CPUMASK`.
pub const TASKSTATS_CMD_ATTR_REGISTER_CPUMASK: u16 = 3;

const TYPE_PID: u16 = 1;
const TYPE_TGID: u16 = 2;
const TYPE_STATS: u16 = 3;
const TYPE_AGGR_PID: u16 = 4;
const TYPE_AGGR_TGID: u16 = 5;
/// `NLA_TYPE_MASK`: the top two bits of nla_type are flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `AGROUP`: this record is the last task of its thread group.
pub const AGROUP: u8 = 0x20;
/// The first `struct taskstats` version whose kernels set [`AGROUP`]
/// (Linux 5.19). Earlier ones (5.10 sends version 10) never set it.
pub const AGROUP_VERSION: u16 = 11;

/// One task's exit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExit {
    /// `version` of the kernel's `struct taskstats`.
    pub version: u16,
    /// Task id (from the AGGR_PID attribute).
    pub pid: u32,
    /// Thread-group id when the message carried one (multi-threaded group
    /// ended); otherwise `None` (then `pid` is the process for AGROUP records,
    /// and that process only ever had this one thread: the kernel keeps a
    /// group aggregate, and so sends the id, once a second thread existed).
    pub tgid: Option<u32>,
    /// Wait status.
    pub exit_code: u32,
    /// `ac_flag` (AFORK, ASU, ACORE, AXSIG, AGROUP …).
    pub flags: u8,
    /// `ac_comm`, up to its first NUL (bytes as the kernel gave them).
    pub comm: Comm,
    /// Real uid.
    pub uid: u32,
    /// Parent at exit (right even where the connector says 0).
    pub ppid: u32,
    /// Start time, seconds since the epoch.
    pub btime: u32,
    /// Elapsed time in µs.
    pub etime_us: u64,
    /// The task's resource use, when the record is long enough to hold it.
    pub usage: Option<TaskUsage>,
}

/// The length of `ac_comm` (`TS_COMM_LEN`).
const COMM_LEN: usize = 32;

/// A task's `ac_comm`, kept in place: a record is decoded for every task
/// that ends, and its name is needed only when the connector had none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm {
    bytes: [u8; COMM_LEN],
    len: u8,
}

impl Comm {
    /// The name in `raw` up to its first NUL (at most 32 bytes, the size
    /// of `ac_comm`).
    pub fn from_bytes(raw: &[u8]) -> Comm {
        let mut bytes = [0u8; COMM_LEN];
        let end = raw
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.len())
            .min(COMM_LEN);
        let name = raw.get(..end).unwrap_or(&[]);
        if let Some(slot) = bytes.get_mut(..name.len()) {
            slot.copy_from_slice(name);
        }
        Comm {
            bytes,
            len: u8::try_from(name.len()).unwrap_or(0),
        }
    }

    /// The name's bytes (not necessarily UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Whether the kernel gave no name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The name as text, invalid UTF-8 replaced.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// What one task used (`struct taskstats` basic and extended accounting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskUsage {
    /// `ac_utime`: user CPU time, µs.
    pub utime_us: u64,
    /// `ac_stime`: system CPU time, µs.
    pub stime_us: u64,
    /// `ac_majflt`: major page faults (those that read from disk).
    pub major_faults: u64,
    /// `hiwater_rss`: peak resident set of the address space, KiB.
    pub hiwater_rss_kib: u64,
    /// `read_char`: bytes passed to read system calls.
    pub read_bytes: u64,
    /// `write_char`: bytes passed to write system calls.
    pub write_bytes: u64,
    /// `read_syscalls`.
    pub read_calls: u64,
    /// `write_syscalls`.
    pub write_calls: u64,
}

impl TaskExit {
    /// The process's resource use as far as this record gives it: the peak
    /// RSS always (it belongs to the address space); CPU times, hard faults
    /// and I/O bytes only for a process that had one thread (the record holds
    /// the ending task's own values, and `tgid` is `None` exactly then). I/O
    /// call counts never: the kernel rounds them to a multiple of 1024.
    pub fn resources(&self) -> Resources {
        let mut resources = Resources::default();
        let Some(usage) = self.usage else {
            return resources;
        };
        // Zero: no address space (kernel threads) or no extended accounting.
        if usage.hiwater_rss_kib > 0 {
            resources.peak_rss_bytes = usage.hiwater_rss_kib.checked_mul(1024);
        }
        if self.tgid.is_none() {
            resources.cpu_user = Some(Duration::from_micros(usage.utime_us));
            resources.cpu_system = Some(Duration::from_micros(usage.stime_us));
            resources.hard_faults = Some(usage.major_faults);
            resources.io_read_bytes = Some(usage.read_bytes);
            resources.io_write_bytes = Some(usage.write_bytes);
        }
        resources
    }

    /// Whether this is the last task of its process: the [`AGROUP`] flag
    /// where the kernel sets it. Before version [`AGROUP_VERSION`] the
    /// message's shape says it: the thread-group aggregate (`tgid`) comes
    /// only with the last task of a process that had several threads, and a
    /// record without it is taken as the end of the process `pid` (true for
    /// a single-threaded process; the record of a thread that is not the
    /// last names a thread id, which matches no ended process, and one of a
    /// main thread that ended first is replaced by the last task's record).
    pub fn is_group_end(&self) -> bool {
        self.flags & AGROUP != 0 || self.version < AGROUP_VERSION
    }

    /// The process this task belonged to.
    pub fn process_id(&self) -> u32 {
        self.tgid.unwrap_or(self.pid)
    }
}

/// Iterates over the attributes of `data`: (type, payload).
pub fn attributes(data: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), DecodeError>> + '_ {
    let mut c = Cursor::new(data);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || c.remaining() < 4 {
            return None;
        }
        let start = c.position();
        let attr = (|| {
            let len = usize::from(c.u16()?);
            let kind = c.u16()? & NLA_TYPE_MASK;
            let payload_len = len.checked_sub(4).ok_or(DecodeError {
                offset: start,
                kind: DecodeErrorKind::Invalid("nla_len"),
            })?;
            let payload = c.bytes(payload_len)?;
            // Attributes are padded to 4 bytes; the last may lack padding.
            let pad = len.wrapping_neg() & 3;
            let _ = c.skip(pad.min(c.remaining()));
            Ok((kind, payload))
        })();
        if attr.is_err() {
            failed = true;
        }
        Some(attr)
    })
}

/// Decodes a `struct taskstats` payload.
fn parse_stats(pid: u32, tgid: Option<u32>, stats: &[u8]) -> Result<TaskExit, DecodeError> {
    let mut c = Cursor::new(stats);
    let version = c.u16()?;
    c.skip(2)?;
    let exit_code = c.u32()?;
    let flags = c.u8()?;
    c.skip(80 - 9)?;
    let comm = Comm::from_bytes(c.bytes(COMM_LEN)?);
    c.skip(120 - 112)?;
    let uid = c.u32()?;
    let _gid = c.u32()?;
    let _ac_pid = c.u32()?;
    let ppid = c.u32()?;
    let btime = c.u32()?;
    c.skip(4)?;
    let etime_us = c.u64()?;
    let usage = parse_usage(stats).ok();
    Ok(TaskExit {
        version,
        pid,
        tgid,
        exit_code,
        flags,
        comm,
        uid,
        ppid,
        btime,
        etime_us,
        usage,
    })
}

/// The resource fields of a `struct taskstats` (see the module's layout).
fn parse_usage(stats: &[u8]) -> Result<TaskUsage, DecodeError> {
    let mut c = Cursor::new(stats);
    c.skip(152)?;
    let utime_us = c.u64()?;
    let stime_us = c.u64()?;
    let _minflt = c.u64()?;
    let major_faults = c.u64()?;
    c.skip(200 - 184)?;
    let hiwater_rss_kib = c.u64()?;
    let _hiwater_vm = c.u64()?;
    Ok(TaskUsage {
        utime_us,
        stime_us,
        major_faults,
        hiwater_rss_kib,
        read_bytes: c.u64()?,
        write_bytes: c.u64()?,
        read_calls: c.u64()?,
        write_calls: c.u64()?,
    })
}

/// Decodes one generic netlink message (header included) from the
/// TASKSTATS family. `Ok(None)` when it is not an exit record.
pub fn parse_message(message: &[u8]) -> Result<Option<TaskExit>, DecodeError> {
    let mut c = Cursor::new(message);
    c.skip(16)?;
    let cmd = c.u8()?;
    c.skip(3)?;
    if cmd != TASKSTATS_CMD_NEW {
        return Ok(None);
    }
    let mut task: Option<(u32, &[u8])> = None;
    let mut tgid = None;
    for attr in attributes(c.rest()) {
        let (kind, payload) = attr?;
        if kind != TYPE_AGGR_PID && kind != TYPE_AGGR_TGID {
            continue;
        }
        let mut id = None;
        let mut stats = None;
        for inner in attributes(payload) {
            let (inner_kind, inner_payload) = inner?;
            match inner_kind {
                TYPE_PID | TYPE_TGID => id = Some(Cursor::new(inner_payload).u32()?),
                TYPE_STATS => stats = Some(inner_payload),
                _ => {}
            }
        }
        match (kind, id, stats) {
            (TYPE_AGGR_PID, Some(pid), Some(stats)) => task = Some((pid, stats)),
            (TYPE_AGGR_TGID, Some(id), _) => tgid = Some(id),
            _ => {}
        }
    }
    match task {
        Some((pid, stats)) => parse_stats(pid, tgid, stats).map(Some),
        None => Ok(None),
    }
}

/// Builds a generic netlink request: nlmsghdr + genlmsghdr + one attribute
/// whose payload is `value`.
/// The request asks for an ACK (`NLM_F_ACK`), so errors such as EPERM come
/// back as an `NLMSG_ERROR` reply.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only the Linux backend sends
pub(crate) fn request(family: u16, cmd: u8, attr_type: u16, value: &[u8], sender: u32) -> Vec<u8> {
    let attr_len = 4usize.saturating_add(value.len());
    let padded = attr_len.saturating_add(3) & !3;
    let total = 20usize.saturating_add(padded);
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes());
    m.extend_from_slice(&family.to_le_bytes());
    m.extend_from_slice(&5u16.to_le_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    m.extend_from_slice(&0u32.to_le_bytes()); // seq
    m.extend_from_slice(&sender.to_le_bytes());
    m.extend_from_slice(&[cmd, 1, 0, 0]); // cmd, version, reserved
    m.extend_from_slice(&u16::try_from(attr_len).unwrap_or(u16::MAX).to_le_bytes());
    m.extend_from_slice(&attr_type.to_le_bytes());
    m.extend_from_slice(value);
    m.resize(total, 0);
    m
}

/// Finds `CTRL_ATTR_FAMILY_ID` in the controller's reply (header included).
pub fn parse_family_id(message: &[u8]) -> Result<Option<u16>, DecodeError> {
    let mut c = Cursor::new(message);
    c.skip(20)?;
    for attr in attributes(c.rest()) {
        let (kind, payload) = attr?;
        if kind == CTRL_ATTR_FAMILY_ID {
            return Cursor::new(payload).u16().map(Some);
        }
    }
    Ok(None)
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

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_le_bytes());
        a.extend_from_slice(&kind.to_le_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn stats(code: u32, flags: u8, comm: &str, uid: u32, ppid: u32) -> Vec<u8> {
        let mut s = vec![0u8; 560];
        s[0..2].copy_from_slice(&16u16.to_le_bytes());
        s[4..8].copy_from_slice(&code.to_le_bytes());
        s[8] = flags;
        s[80..80 + comm.len()].copy_from_slice(comm.as_bytes());
        s[120..124].copy_from_slice(&uid.to_le_bytes());
        s[132..136].copy_from_slice(&ppid.to_le_bytes());
        s[144..152].copy_from_slice(&1500u64.to_le_bytes());
        // Resource fields: each holds its own offset, to catch a misread.
        for offset in [152usize, 160, 176, 200, 216, 224, 232, 240] {
            s[offset..offset + 8].copy_from_slice(&(offset as u64).to_le_bytes());
        }
        s
    }

    fn message(attrs: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 16];
        m[0..4].copy_from_slice(&((20 + attrs.len()) as u32).to_le_bytes());
        m.extend_from_slice(&[TASKSTATS_CMD_NEW, 1, 0, 0]);
        m.extend_from_slice(attrs);
        m
    }

    #[test]
    fn decodes_a_last_thread_record_with_its_group() {
        let mut pid_attr = attr(TYPE_PID, &77u32.to_le_bytes());
        pid_attr.extend(attr(TYPE_STATS, &stats(0x500, AGROUP, "worker", 1000, 5)));
        let mut tgid_attr = attr(TYPE_TGID, &70u32.to_le_bytes());
        tgid_attr.extend(attr(TYPE_STATS, &[0u8; 560]));
        let mut attrs = attr(TYPE_AGGR_PID, &pid_attr);
        attrs.extend(attr(TYPE_AGGR_TGID, &tgid_attr));
        let got = parse_message(&message(&attrs)).unwrap().unwrap();
        assert_eq!(got.pid, 77);
        assert_eq!(got.process_id(), 70);
        assert_eq!(got.exit_code, 0x500);
        assert!(got.is_group_end());
        assert_eq!(got.comm, "worker");
        assert_eq!((got.uid, got.ppid, got.etime_us), (1000, 5, 1500));
        let usage = got.usage.unwrap();
        assert_eq!((usage.utime_us, usage.stime_us), (152, 160));
        assert_eq!((usage.major_faults, usage.hiwater_rss_kib), (176, 200));
        assert_eq!((usage.read_bytes, usage.write_bytes), (216, 224));
        assert_eq!((usage.read_calls, usage.write_calls), (232, 240));
    }

    #[test]
    fn before_version_11_a_record_without_agroup_still_ends_its_process() {
        // 5.10 sends version 10, whose kernels never set AGROUP.
        let mut v10 = stats(0x300, 0, "sh", 0, 1);
        v10[0..2].copy_from_slice(&10u16.to_le_bytes());
        let mut pid_attr = attr(TYPE_PID, &9u32.to_le_bytes());
        pid_attr.extend(attr(TYPE_STATS, &v10));
        let got = parse_message(&message(&attr(TYPE_AGGR_PID, &pid_attr)))
            .unwrap()
            .unwrap();
        assert_eq!((got.version, got.process_id()), (10, 9));
        assert!(got.is_group_end());
        assert_eq!(got.resources().cpu_user, Some(Duration::from_micros(152)));
        // From version 11 on, only AGROUP says so: a thread that is not the
        // last is not the end of its process.
        let mut pid_attr = attr(TYPE_PID, &9u32.to_le_bytes());
        pid_attr.extend(attr(TYPE_STATS, &stats(0, 0, "sh", 0, 1)));
        let got = parse_message(&message(&attr(TYPE_AGGR_PID, &pid_attr)))
            .unwrap()
            .unwrap();
        assert_eq!(got.version, 16);
        assert!(!got.is_group_end());
    }

    #[test]
    fn single_thread_record_has_no_tgid_and_short_stats_no_usage() {
        let mut pid_attr = attr(TYPE_PID, &9u32.to_le_bytes());
        pid_attr.extend(attr(TYPE_STATS, &stats(0, AGROUP, "sh", 0, 1)));
        let got = parse_message(&message(&attr(TYPE_AGGR_PID, &pid_attr)))
            .unwrap()
            .unwrap();
        assert_eq!(got.tgid, None);
        assert!(got.usage.is_some());
        // A version-1 sized record (up to ac_etime) has no usage part.
        let mut pid_attr = attr(TYPE_PID, &9u32.to_le_bytes());
        pid_attr.extend(attr(TYPE_STATS, &stats(0, AGROUP, "sh", 0, 1)[..168]));
        let got = parse_message(&message(&attr(TYPE_AGGR_PID, &pid_attr)))
            .unwrap()
            .unwrap();
        assert_eq!(got.usage, None);
        assert_eq!(got.resources(), Resources::default());
    }

    #[test]
    fn resources_are_per_process_only_for_one_thread() {
        let mut pid_attr = attr(TYPE_PID, &9u32.to_le_bytes());
        pid_attr.extend(attr(TYPE_STATS, &stats(0, AGROUP, "sh", 0, 1)));
        let single = parse_message(&message(&attr(TYPE_AGGR_PID, &pid_attr)))
            .unwrap()
            .unwrap()
            .resources();
        assert_eq!(single.cpu_user, Some(Duration::from_micros(152)));
        assert_eq!(single.cpu_system, Some(Duration::from_micros(160)));
        assert_eq!(single.peak_rss_bytes, Some(200 * 1024));
        assert_eq!(single.hard_faults, Some(176));
        assert_eq!(
            (single.io_read_bytes, single.io_write_bytes),
            (Some(216), Some(224))
        );
        // The kernel rounds call counts down to a multiple of 1024: too coarse.
        assert_eq!((single.io_read_ops, single.io_write_ops), (None, None));
        let mut tgid_attr = attr(TYPE_TGID, &9u32.to_le_bytes());
        tgid_attr.extend(attr(TYPE_STATS, &[0u8; 560]));
        let mut attrs = attr(TYPE_AGGR_PID, &pid_attr);
        attrs.extend(attr(TYPE_AGGR_TGID, &tgid_attr));
        let threaded = parse_message(&message(&attrs))
            .unwrap()
            .unwrap()
            .resources();
        assert_eq!(threaded.peak_rss_bytes, Some(200 * 1024));
        assert_eq!((threaded.cpu_user, threaded.hard_faults), (None, None));
    }

    #[test]
    fn comm_stops_at_the_first_nul_and_keeps_odd_bytes() {
        let mut raw = [0u8; COMM_LEN];
        raw[..6].copy_from_slice(b"worker");
        raw[7] = b'x'; // after the NUL: not part of the name
        let comm = Comm::from_bytes(&raw);
        assert_eq!(comm.as_bytes(), b"worker");
        assert_eq!(comm.to_text(), "worker");
        // All 32 bytes used, no NUL: all kept.
        let full = Comm::from_bytes(&[b'a'; COMM_LEN]);
        assert_eq!(full.as_bytes().len(), COMM_LEN);
        // Longer input than ac_comm: cut at 32.
        assert_eq!(Comm::from_bytes(&[b'b'; 40]).as_bytes(), &[b'b'; COMM_LEN]);
        // Not UTF-8: bytes kept, text replaced.
        let odd = Comm::from_bytes(b"a\xffb\0");
        assert_eq!(odd.as_bytes(), b"a\xffb");
        assert_eq!(odd.to_text(), "a\u{fffd}b");
        assert!(Comm::from_bytes(b"\0abc").is_empty());
        assert!(Comm::from_bytes(&[]).is_empty());
    }

    #[test]
    fn truncated_and_garbage_input_never_panics() {
        let mut pid_attr = attr(TYPE_PID, &77u32.to_le_bytes());
        pid_attr.extend(attr(TYPE_STATS, &stats(0, AGROUP, "x", 0, 1)));
        let m = message(&attr(TYPE_AGGR_PID, &pid_attr));
        for cut in 0..m.len() {
            let _ = parse_message(&m[..cut]);
        }
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..5000 {
            let mut b = m.clone();
            for _ in 0..3 {
                seed = xorshift(seed);
                let i = (seed as usize) % b.len();
                b[i] = (seed >> 24) as u8;
            }
            let _ = parse_message(&b);
        }
    }

    #[test]
    fn request_layout() {
        let r = request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            CTRL_ATTR_FAMILY_NAME,
            b"TASKSTATS\0",
            0,
        );
        assert_eq!(r.len(), 20 + 16);
        assert_eq!(&r[0..4], &36u32.to_le_bytes());
        assert_eq!(&r[20..22], &14u16.to_le_bytes());
    }
}

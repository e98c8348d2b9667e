//! The exit record procexit's own BPF program (Linux eBPF source) writes to
//! its ring buffer, one per ended process.
//!
//! The layout is fixed by `struct exit_record` in
//! `sys/linux/bpf/procexit.bpf.c` (native byte order, little-endian on every
//! architecture the object is built for):
//!
//! | field             | type      | offset |
//! |-------------------|-----------|--------|
//! | start_boottime_ns | u64       | 0      |
//! | exit_boottime_ns  | u64       | 8      |
//! | utime_ns          | u64       | 16     |
//! | stime_ns          | u64       | 24     |
//! | maxrss_pages      | u64       | 32     |
//! | pid, ppid, uid    | u32 × 3   | 40     |
//! | wait_status       | u32       | 52     |
//! | flags             | u32       | 56     |
//! | killer_pid        | u32       | 60     |
//! | killer_signal     | u32       | 64     |
//! | args_len          | u32       | 68     |
//! | comm              | [u8; 16]  | 72     |
//! | killer_comm       | [u8; 16]  | 88     |
//! | cgroup_len        | u32       | 104    |
//! | cgroup            | [u8; 768] | 108    |
//! | args              | args_len bytes | 876 |
//!
//! `cgroup` holds the process's cgroup path (`/`, `/a/b`), `cgroup_len`
//! bytes of it, no NUL. The program sends only the used part of `args`
//! (its C array holds [`ARGS_MAX`] bytes), so a record is
//! [`RECORD_MIN`] + `args_len` bytes long; anything after that (the ring's
//! padding) is ignored.

use super::{Cursor, DecodeError, DecodeErrorKind};

/// Bytes of command line the BPF program keeps (`ARGS_MAX`).
pub const ARGS_MAX: usize = 2048;
/// Bytes of the record's cgroup field (`CGROUP_FIELD`).
pub const CGROUP_FIELD: usize = 768;
/// Size of a record with an empty command line (where `args` starts).
pub const RECORD_MIN: usize = 104 + 4 + CGROUP_FIELD;

/// The command line was longer than [`ARGS_MAX`] and was cut.
pub const FLAG_ARGS_TRUNCATED: u32 = 1;
/// The address space was gone and no copy from exec was kept.
pub const FLAG_ARGS_UNKNOWN: u32 = 2;
/// Another process sent a signal to this one (`killer_*` are set).
pub const FLAG_KILLER: u32 = 4;
/// The OOM killer chose this process.
pub const FLAG_OOM_KILLED: u32 = 8;
/// The command line was copied at exec, not at exit.
pub const FLAG_ARGS_FROM_EXEC: u32 = 16;
/// The cgroup path was not kept (deeper than 16 levels, longer than 512
/// bytes, or unreadable); `cgroup` is empty.
pub const FLAG_CGROUP_UNKNOWN: u32 = 32;

/// One decoded record; its text and byte fields borrow the ring buffer's
/// memory, so decoding allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EbpfExit<'a> {
    /// Start of the thread-group leader, ns of CLOCK_BOOTTIME.
    pub start_boottime_ns: u64,
    /// When the last thread exited, ns of CLOCK_BOOTTIME.
    pub exit_boottime_ns: u64,
    /// User CPU time of the whole process, ns.
    pub utime_ns: u64,
    /// System CPU time of the whole process, ns.
    pub stime_ns: u64,
    /// High-water resident set size, in pages.
    pub maxrss_pages: u64,
    /// Thread-group id.
    pub pid: u32,
    /// The real parent's thread-group id at exit.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// The wait status of the process.
    pub wait_status: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The last process that sent this one a signal (valid with [`FLAG_KILLER`]).
    pub killer_pid: u32,
    /// The signal it sent.
    pub killer_signal: u32,
    /// `comm` of the exiting task, up to its first NUL (not necessarily
    /// UTF-8: a process names itself).
    pub comm: &'a [u8],
    /// `comm` of the sender, up to its first NUL.
    pub killer_comm: &'a [u8],
    /// Raw argv bytes (NUL-separated), at most [`ARGS_MAX`].
    pub args: &'a [u8],
    /// The cgroup path's bytes (kernfs names need not be UTF-8), empty
    /// with [`FLAG_CGROUP_UNKNOWN`].
    pub cgroup: &'a [u8],
}

/// A fixed-size `comm` field up to its first NUL.
fn comm(raw: &[u8]) -> &[u8] {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    raw.get(..end).unwrap_or(&[])
}

impl<'a> EbpfExit<'a> {
    /// Decodes one ring-buffer record.
    pub fn parse(data: &'a [u8]) -> Result<EbpfExit<'a>, DecodeError> {
        let mut c = Cursor::new(data);
        let start_boottime_ns = c.u64()?;
        let exit_boottime_ns = c.u64()?;
        let utime_ns = c.u64()?;
        let stime_ns = c.u64()?;
        let maxrss_pages = c.u64()?;
        let pid = c.u32()?;
        let ppid = c.u32()?;
        let uid = c.u32()?;
        let wait_status = c.u32()?;
        let flags = c.u32()?;
        let killer_pid = c.u32()?;
        let killer_signal = c.u32()?;
        let args_len = c.u32()?;
        let comm_raw = c.bytes(16)?;
        let killer_raw = c.bytes(16)?;
        let args_len = usize::try_from(args_len).unwrap_or(usize::MAX);
        if args_len > ARGS_MAX {
            return Err(c.error(DecodeErrorKind::Invalid("command line length")));
        }
        let cgroup_len = usize::try_from(c.u32()?).unwrap_or(usize::MAX);
        if cgroup_len > CGROUP_FIELD {
            return Err(c.error(DecodeErrorKind::Invalid("cgroup path length")));
        }
        let cgroup = c.bytes(CGROUP_FIELD)?.get(..cgroup_len).unwrap_or(&[]);
        let args = c.bytes(args_len)?;
        Ok(EbpfExit {
            start_boottime_ns,
            exit_boottime_ns,
            utime_ns,
            stime_ns,
            maxrss_pages,
            pid,
            ppid,
            uid,
            wait_status,
            flags,
            killer_pid,
            killer_signal,
            comm: comm(comm_raw),
            killer_comm: comm(killer_raw),
            args,
            cgroup,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn record() -> Vec<u8> {
        let mut r = Vec::new();
        for v in [10u64, 20, 30, 40, 50] {
            r.extend_from_slice(&v.to_le_bytes());
        }
        for v in [4242u32, 1, 1000, 0x2a00, FLAG_KILLER, 77, 9, 11] {
            r.extend_from_slice(&v.to_le_bytes());
        }
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"true");
        r.extend_from_slice(&comm);
        let mut killer = [0u8; 16];
        killer[..4].copy_from_slice(b"kill");
        r.extend_from_slice(&killer);
        r.extend_from_slice(&4u32.to_le_bytes());
        let mut cgroup = vec![0u8; CGROUP_FIELD];
        cgroup[..7].copy_from_slice(b"/a/b\0zz");
        r.extend_from_slice(&cgroup);
        assert_eq!(r.len(), RECORD_MIN);
        r.extend_from_slice(b"/bin/true\0x");
        // The ring pads records to 8 bytes.
        r.extend_from_slice(&[0xAA; 5]);
        r
    }

    #[test]
    fn decodes_every_field() {
        let data = record();
        let exit = EbpfExit::parse(&data).unwrap();
        assert_eq!(exit.start_boottime_ns, 10);
        assert_eq!(exit.maxrss_pages, 50);
        assert_eq!((exit.pid, exit.ppid, exit.uid), (4242, 1, 1000));
        assert_eq!(exit.wait_status, 0x2a00);
        assert_eq!((exit.killer_pid, exit.killer_signal), (77, 9));
        assert_eq!(exit.comm, b"true");
        assert_eq!(exit.killer_comm, b"kill");
        assert_eq!(exit.args, b"/bin/true\0x");
        assert_eq!(exit.cgroup, b"/a/b");
    }

    #[test]
    fn rejects_short_and_bad_lengths() {
        let r = record();
        // Cut anywhere before the last command-line byte.
        for cut in [0, 39, 103, 107, RECORD_MIN - 1, RECORD_MIN, RECORD_MIN + 10] {
            assert!(EbpfExit::parse(&r[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            EbpfExit::parse(&r[..RECORD_MIN + 11]).unwrap().args.len(),
            11
        );
        let mut bad = r.clone();
        bad[68..72].copy_from_slice(&(ARGS_MAX as u32 + 1).to_le_bytes());
        assert!(EbpfExit::parse(&bad).is_err());
        let mut bad = r.clone();
        bad[104..108].copy_from_slice(&(CGROUP_FIELD as u32 + 1).to_le_bytes());
        assert!(EbpfExit::parse(&bad).is_err());
        let mut full = r;
        full[104..108].copy_from_slice(&(CGROUP_FIELD as u32).to_le_bytes());
        assert_eq!(EbpfExit::parse(&full).unwrap().cgroup.len(), CGROUP_FIELD);
    }
}

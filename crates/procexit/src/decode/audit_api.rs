//! Payloads of the `Microsoft-Windows-Kernel-Audit-API-Calls` manifest
//! provider ([`KERNEL_AUDIT_API_CALLS_GUID`](super::KERNEL_AUDIT_API_CALLS_GUID)):
//! event 2, logged when a process terminates *another* process
//! (`PspLogAuditTerminateRemoteProcessEvent`). The caller is the event
//! header's process id; the payload names the target
//! (docs/etw-process-events.md §7):
//!
//! | field                     | type   | v0 | v1 |
//! |---------------------------|--------|----|----|
//! | TargetProcessId           | u32    | 0  | 0  |
//! | ReturnCode (NTSTATUS)     | u32    | 4  | 4  |
//! | TargetProcessStartKey     | u64    | —  | 8  |
//! | TargetProcessCreationTime | u64 FT | —  | 16 |
//!
//! Manifest payloads are packed and carry no pointers: x86 and x64 are the
//! same. Later versions are read with the v1 fields (fields are appended).

use super::{Cursor, DecodeError};

/// TerminateProcess of another process.
pub const EVENT_TERMINATE_PROCESS: u16 = 2;

/// A decoded event 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TerminateProcess {
    /// The process asked to end.
    pub target_pid: u32,
    /// NTSTATUS of the call: 0 (STATUS_SUCCESS) when it was terminated.
    pub return_code: u32,
    /// The target's process start key (v≥1).
    pub target_start_key: Option<u64>,
    /// The target's creation time, FILETIME (v≥1).
    pub target_create_time: Option<u64>,
}

impl TerminateProcess {
    /// Whether the call succeeded (NTSTATUS success or informational:
    /// the top bit clear).
    pub fn succeeded(&self) -> bool {
        self.return_code & 0x8000_0000 == 0
    }
}

/// Decodes event 2 of the given version.
pub fn decode_terminate_process(
    payload: &[u8],
    version: u8,
) -> Result<TerminateProcess, DecodeError> {
    let mut c = Cursor::new(payload);
    let target_pid = c.u32()?;
    let return_code = c.u32()?;
    let (target_start_key, target_create_time) = if version >= 1 {
        (Some(c.u64()?), Some(c.u64()?).filter(|&t| t != 0))
    } else {
        (None, None)
    };
    Ok(TerminateProcess {
        target_pid,
        return_code,
        target_start_key,
        target_create_time,
    })
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
    use crate::decode::DecodeErrorKind;

    fn v1(pid: u32, rc: u32, key: u64, created: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&pid.to_le_bytes());
        b.extend_from_slice(&rc.to_le_bytes());
        b.extend_from_slice(&key.to_le_bytes());
        b.extend_from_slice(&created.to_le_bytes());
        b
    }

    #[test]
    fn decodes_both_versions() {
        let b = v1(4242, 0, 0x0001_0000_0000_0abc, 133_000_000_000_000_000);
        let t = decode_terminate_process(&b, 1).unwrap();
        assert_eq!(t.target_pid, 4242);
        assert!(t.succeeded());
        assert_eq!(t.target_start_key, Some(0x0001_0000_0000_0abc));
        assert_eq!(t.target_create_time, Some(133_000_000_000_000_000));
        // v0: the first two fields only; the rest of the bytes are ignored.
        let t = decode_terminate_process(&b, 0).unwrap();
        assert_eq!((t.target_pid, t.target_start_key), (4242, None));
        // A newer version reads the v1 fields.
        assert_eq!(
            decode_terminate_process(&b, 7).unwrap().target_create_time,
            Some(133_000_000_000_000_000)
        );
        // STATUS_ACCESS_DENIED: the call failed.
        let t = decode_terminate_process(&v1(1, 0xC000_0022, 0, 0), 1).unwrap();
        assert!(!t.succeeded());
        assert_eq!(t.target_create_time, None, "0 is no time");
    }

    #[test]
    fn short_payloads_are_errors_with_their_offset() {
        let b = v1(1, 0, 2, 3);
        for (len, version, offset) in [(0, 0, 0), (3, 0, 0), (7, 0, 4), (8, 1, 8), (23, 1, 16)] {
            let e = decode_terminate_process(&b[..len], version).unwrap_err();
            assert_eq!(e.offset, offset, "{len} bytes v{version}");
            assert!(matches!(e.kind, DecodeErrorKind::Truncated { .. }));
        }
        assert!(decode_terminate_process(&b[..8], 0).is_ok());
    }
}

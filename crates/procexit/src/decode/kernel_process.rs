//! Payloads of the `Microsoft-Windows-Kernel-Process` manifest provider
//! ([`KERNEL_PROCESS_GUID`](super::KERNEL_PROCESS_GUID)): ProcessStop (id 2)
//! and ProcessStart (id 1).
//!
//! Manifest payloads are packed and carry no pointers, so x86 and x64 are
//! identical. ProcessStop (docs/etw-process-events.md §5):
//!
//! | field                   | type   | v0 | v1 | v2 |
//! |-------------------------|--------|----|----|----|
//! | ProcessID               | u32    | 0  | 0  | 0  |
//! | ProcessSequenceNumber   | u64    | —  | —  | 4  |
//! | CreateTime              | u64 FT | 4  | 4  | 12 |
//! | ExitTime                | u64 FT | 12 | 12 | 20 |
//! | ExitCode                | u32    | 20 | 20 | 28 |
//! | TokenElevationType      | u32    | 24 | 24 | 32 |
//! | HandleCount             | u32    | 28 | 28 | 36 |
//! | CommitCharge            | u64    | 32 | 32 | 40 |
//! | CommitPeak              | u64    | 40 | 40 | 48 |
//! | CPUCycleCount           | u64    | —  | 48 | 56 |
//! | Read/WriteOperationCount| 2×u32  | —  | 56 | 64 |
//! | Read/WriteTransferKB    | 2×u32  | —  | 64 | 72 |
//! | HardFaultCount          | u32    | —  | 72 | 80 |
//! | ImageName               | ANSI Z | 48 | 76 | 84 |
//!
//! ProcessStart (manifest templates `ProcessStartArgs`, `_V1`, `_V2` and
//! `ProcessRundownArgs_V1`, which v3 uses; Windows 10 build 18990 manifest
//! dump, same fields in the OSSEM dictionary):
//!
//! | field                       | type    | v0 | v1 | v2 | v3 |
//! |-----------------------------|---------|----|----|----|----|
//! | ProcessID                   | u32     | 0  | 0  | 0  | 0  |
//! | ProcessSequenceNumber       | u64     | —  | —  | —  | 4  |
//! | CreateTime                  | u64 FT  | 4  | 4  | 4  | 12 |
//! | ParentProcessID             | u32     | 12 | 12 | 12 | 20 |
//! | ParentProcessSequenceNumber | u64     | —  | —  | —  | 24 |
//! | SessionID                   | u32     | 16 | 16 | 16 | 32 |
//! | Flags                       | u32     | —  | 20 | 20 | 36 |
//! | TokenElevationType, IsElevated | 2×u32 | — | — | —  | 40 |
//! | MandatoryLabel              | SID     | —  | —  | —  | 48 |
//! | ImageName (full NT path)    | UTF-16 Z| 20 | 24 | 24 | var |
//! | ImageChecksum, TimeDateStamp| 2×u32   | —  | —  | var| var |
//! | PackageFullName, RelativeAppId | UTF-16 Z | — | — | var | var |
//!
//! Later versions are read with the newest known layout's fixed fields; for
//! them the variable-length fields are left `None` because a newer field
//! (SecurityMitigations) may sit before them.

use super::{Cursor, DecodeError};
use crate::event::Resources;

/// ProcessStart.
pub const EVENT_PROCESS_START: u16 = 1;
/// ProcessStop.
pub const EVENT_PROCESS_STOP: u16 = 2;

/// A decoded ProcessStop (id 2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStop {
    /// The process that ended.
    pub pid: u32,
    /// Boot-unique process sequence number (v≥2).
    pub sequence_number: Option<u64>,
    /// Process creation time, FILETIME.
    pub create_time: u64,
    /// Process exit time, FILETIME.
    pub exit_time: u64,
    /// Exit code or NTSTATUS.
    pub exit_code: u32,
    /// `TOKEN_ELEVATION_TYPE` of the process token.
    pub token_elevation_type: Option<u32>,
    /// Open handles at exit.
    pub handle_count: Option<u32>,
    /// Commit charge at exit, bytes.
    pub commit_charge: Option<u64>,
    /// Peak commit charge, bytes.
    pub commit_peak: Option<u64>,
    /// CPU cycles consumed (v≥1).
    pub cpu_cycle_count: Option<u64>,
    /// Read and write I/O operations (v≥1).
    pub io_operation_counts: Option<(u32, u32)>,
    /// KiB read and written by I/O operations (v≥1).
    pub io_transfer_kib: Option<(u32, u32)>,
    /// Hard page faults (v≥1).
    pub hard_fault_count: Option<u32>,
    /// Short image name (8-bit, decoded as Latin-1); `None` if cut off.
    pub image_name: Option<String>,
}

impl ProcessStop {
    /// The resource use this stop event reports, in the record's units.
    pub fn resources(&self) -> Resources {
        let mut resources = Resources {
            peak_commit_bytes: self.commit_peak,
            cpu_cycles: self.cpu_cycle_count,
            hard_faults: self.hard_fault_count.map(u64::from),
            ..Resources::default()
        };
        if let Some((reads, writes)) = self.io_operation_counts {
            resources.io_read_ops = Some(reads.into());
            resources.io_write_ops = Some(writes.into());
        }
        if let Some((read_kib, write_kib)) = self.io_transfer_kib {
            resources.io_read_bytes = Some(u64::from(read_kib) * 1024);
            resources.io_write_bytes = Some(u64::from(write_kib) * 1024);
        }
        resources
    }
}

/// Decodes a ProcessStop payload of manifest `version` 0, 1 or 2 (higher
/// versions are read with the v2 layout, extra bytes ignored).
///
/// ProcessID through ExitCode must be present; the counters and the image
/// name are `None` when the payload ends before them.
pub fn decode_process_stop(payload: &[u8], version: u8) -> Result<ProcessStop, DecodeError> {
    let mut c = Cursor::new(payload);
    let pid = c.u32()?;
    let sequence_number = if version >= 2 { Some(c.u64()?) } else { None };
    let create_time = c.u64()?;
    let exit_time = c.u64()?;
    let exit_code = c.u32()?;
    let mut stop = ProcessStop {
        pid,
        sequence_number,
        create_time,
        exit_time,
        exit_code,
        token_elevation_type: None,
        handle_count: None,
        commit_charge: None,
        commit_peak: None,
        cpu_cycle_count: None,
        io_operation_counts: None,
        io_transfer_kib: None,
        hard_fault_count: None,
        image_name: None,
    };
    // Optional tail: stop at the first field that does not fit.
    let _complete: Option<()> = (|| {
        stop.token_elevation_type = Some(c.u32().ok()?);
        stop.handle_count = Some(c.u32().ok()?);
        stop.commit_charge = Some(c.u64().ok()?);
        stop.commit_peak = Some(c.u64().ok()?);
        if version >= 1 {
            stop.cpu_cycle_count = Some(c.u64().ok()?);
            stop.io_operation_counts = Some((c.u32().ok()?, c.u32().ok()?));
            stop.io_transfer_kib = Some((c.u32().ok()?, c.u32().ok()?));
            stop.hard_fault_count = Some(c.u32().ok()?);
        }
        stop.image_name = Some(c.ansi_z()?);
        Some(())
    })();
    Ok(stop)
}

/// A decoded ProcessStart (id 1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStart {
    /// The new process.
    pub pid: u32,
    /// Boot-unique process sequence number (v≥3).
    pub sequence_number: Option<u64>,
    /// Creation time, FILETIME; with `pid` it matches the ProcessStop.
    pub create_time: u64,
    /// Parent process id.
    pub ppid: u32,
    /// Parent's sequence number (v≥3).
    pub parent_sequence_number: Option<u64>,
    /// Session id.
    pub session_id: u32,
    /// Process flags (v≥1); 0x1 = has a package id.
    pub flags: Option<u32>,
    /// Full NT path of the image, e.g. `\Device\HarddiskVolume3\Windows\System32\cmd.exe`.
    pub image_name: Option<String>,
    /// Package full name (v≥2); `None` when empty.
    pub package_full_name: Option<String>,
}

/// Decodes a ProcessStart payload of manifest `version` 0 to 3 (see the
/// table above). Fixed fields must be present; strings degrade to `None`.
pub fn decode_process_start(payload: &[u8], version: u8) -> Result<ProcessStart, DecodeError> {
    let mut c = Cursor::new(payload);
    let pid = c.u32()?;
    let sequence_number = if version >= 3 { Some(c.u64()?) } else { None };
    let create_time = c.u64()?;
    let ppid = c.u32()?;
    let parent_sequence_number = if version >= 3 { Some(c.u64()?) } else { None };
    let session_id = c.u32()?;
    let flags = if version >= 1 { Some(c.u32()?) } else { None };
    let mut start = ProcessStart {
        pid,
        sequence_number,
        create_time,
        ppid,
        parent_sequence_number,
        session_id,
        flags,
        image_name: None,
        package_full_name: None,
    };
    if version > 3 {
        return Ok(start);
    }
    let _complete: Option<()> = (|| {
        if version == 3 {
            // Token elevation type and flag, then the mandatory label SID.
            c.skip(8).ok()?;
            skip_sid(&mut c)?;
        }
        start.image_name = Some(c.utf16_z()?);
        if version >= 2 {
            c.skip(8).ok()?; // ImageChecksum, TimeDateStamp
            start.package_full_name = Some(c.utf16_z()?).filter(|s| !s.is_empty());
        }
        Some(())
    })();
    Ok(start)
}

/// A raw manifest `win:SID`: revision, count, 6-byte authority, count × u32.
fn skip_sid(c: &mut Cursor<'_>) -> Option<()> {
    let _revision = c.u8().ok()?;
    let count = c.u8().ok()?;
    c.skip(usize::from(count).saturating_mul(4).saturating_add(6))
        .ok()
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
    use crate::test_rng::xorshift;

    const CREATE: u64 = 132_404_547_797_984_230;
    const EXIT: u64 = 132_404_547_910_855_393;

    fn stop_payload(version: u8) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(5120u32.to_le_bytes());
        if version >= 2 {
            b.extend(0x1_0000_00a5u64.to_le_bytes());
        }
        b.extend(CREATE.to_le_bytes());
        b.extend(EXIT.to_le_bytes());
        b.extend(0xc000_013au32.to_le_bytes());
        b.extend(3u32.to_le_bytes()); // TokenElevationType
        b.extend(57u32.to_le_bytes()); // HandleCount
        b.extend(4_096_000u64.to_le_bytes());
        b.extend(8_192_000u64.to_le_bytes());
        if version >= 1 {
            b.extend(987_654_321u64.to_le_bytes());
            for v in [1u32, 2, 3, 4, 11] {
                b.extend(v.to_le_bytes());
            }
        }
        b.extend(b"ping.exe\0");
        b
    }

    #[test]
    fn stop_offsets_match_the_reference() {
        for (version, image_at) in [(0u8, 48usize), (1, 76), (2, 84)] {
            let b = stop_payload(version);
            assert_eq!(&b[image_at..], b"ping.exe\0", "v{version}");
        }
    }

    #[test]
    fn stop_decodes_every_version() {
        for version in 0..=2 {
            let s = decode_process_stop(&stop_payload(version), version).unwrap();
            assert_eq!(s.pid, 5120);
            assert_eq!(s.sequence_number, (version >= 2).then_some(0x1_0000_00a5));
            assert_eq!((s.create_time, s.exit_time), (CREATE, EXIT));
            assert_eq!(s.exit_code, 0xc000_013a);
            assert_eq!(s.handle_count, Some(57));
            assert_eq!(s.commit_peak, Some(8_192_000));
            assert_eq!(s.cpu_cycle_count, (version >= 1).then_some(987_654_321));
            assert_eq!(s.hard_fault_count, (version >= 1).then_some(11));
            assert_eq!(s.io_operation_counts, (version >= 1).then_some((1, 2)));
            assert_eq!(s.io_transfer_kib, (version >= 1).then_some((3, 4)));
            assert_eq!(s.image_name.as_deref(), Some("ping.exe"));
            let r = s.resources();
            assert_eq!(r.peak_commit_bytes, Some(8_192_000));
            assert_eq!(r.cpu_cycles, (version >= 1).then_some(987_654_321));
            assert_eq!(r.hard_faults, (version >= 1).then_some(11));
            assert_eq!(r.io_read_ops, (version >= 1).then_some(1));
            assert_eq!(r.io_write_ops, (version >= 1).then_some(2));
            assert_eq!(r.io_read_bytes, (version >= 1).then_some(3 * 1024));
            assert_eq!(r.io_write_bytes, (version >= 1).then_some(4 * 1024));
            // Not in this event: CPU times and RSS.
            assert_eq!((r.cpu_user, r.peak_rss_bytes), (None, None));
        }
    }

    #[test]
    fn stop_truncation_at_every_length() {
        for version in 0..=2 {
            let full = stop_payload(version);
            let required = if version >= 2 { 32 } else { 24 };
            for len in 0..full.len() {
                match decode_process_stop(&full[..len], version) {
                    Err(e) => {
                        assert!(len < required, "v{version} len {len}");
                        assert!(e.offset <= len);
                    }
                    Ok(s) => {
                        assert!(len >= required, "v{version} len {len}");
                        assert_eq!(s.image_name, None);
                        assert_eq!(s.exit_code, 0xc000_013a);
                    }
                }
            }
        }
    }

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    const PATH: &str = "\\Device\\HarddiskVolume3\\Windows\\System32\\PING.EXE";

    fn start_payload(version: u8) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(5120u32.to_le_bytes());
        if version >= 3 {
            b.extend(0xa5u64.to_le_bytes());
        }
        b.extend(CREATE.to_le_bytes());
        b.extend(4000u32.to_le_bytes());
        if version >= 3 {
            b.extend(0x77u64.to_le_bytes());
        }
        b.extend(1u32.to_le_bytes()); // SessionID
        if version >= 1 {
            b.extend(0u32.to_le_bytes()); // Flags
        }
        if version >= 3 {
            b.extend(2u32.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            // S-1-16-8192 (medium integrity).
            b.extend([1, 1, 0, 0, 0, 0, 0, 16]);
            b.extend(8192u32.to_le_bytes());
        }
        b.extend(utf16z(PATH));
        if version >= 2 {
            b.extend(0x1234u32.to_le_bytes());
            b.extend(0x5678u32.to_le_bytes());
            b.extend(utf16z(""));
            b.extend(utf16z(""));
        }
        b
    }

    #[test]
    fn start_decodes_every_version() {
        for version in 0..=3 {
            let s = decode_process_start(&start_payload(version), version).unwrap();
            assert_eq!((s.pid, s.ppid, s.session_id), (5120, 4000, 1), "v{version}");
            assert_eq!(s.create_time, CREATE);
            assert_eq!(s.sequence_number, (version >= 3).then_some(0xa5));
            assert_eq!(s.parent_sequence_number, (version >= 3).then_some(0x77));
            assert_eq!(s.flags, (version >= 1).then_some(0));
            assert_eq!(s.image_name.as_deref(), Some(PATH), "v{version}");
            assert_eq!(s.package_full_name, None);
        }
        let s = decode_process_start(&start_payload(3), 4).unwrap();
        assert_eq!((s.pid, s.ppid, s.image_name), (5120, 4000, None));
    }

    #[test]
    fn start_truncation_and_garbage_never_panic() {
        for version in 0..=3 {
            let full = start_payload(version);
            for len in 0..full.len() {
                if let Ok(s) = decode_process_start(&full[..len], version) {
                    assert_eq!(s.pid, 5120);
                }
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            state = xorshift(state);
            let len = (state % 120) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 % 64) ^ i as u64) as u8)
                .collect();
            let version = (state >> 40) as u8 % 6;
            let _ = decode_process_start(&bytes, version);
            let _ = decode_process_stop(&bytes, version);
        }
    }
}

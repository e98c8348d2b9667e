//! Payloads of the kernel "Process" MOF class ([`PROCESS_GUID`](super::PROCESS_GUID)):
//! Start, End, DCStart, DCEnd and Defunct, versions 0 to 5.
//!
//! Layouts (docs/etw-process-events.md §1.3–1.5; P = producer pointer size,
//! all fields packed little-endian, offsets after the SID are variable):
//!
//! | ver | ptr @0           | pid    | ppid  | session | exit  | DTB ptr | flags  | UserSID | strings                         |
//! |-----|------------------|--------|-------|---------|-------|---------|--------|---------|---------------------------------|
//! | 0   | pid (ptr)        | —      | P ptr | —       | —     | —       | —      | 2P      | image                           |
//! | 1   | reserved (PDB)   | P      | P+4   | P+8     | P+12  | —       | —      | P+16    | image                           |
//! | 2   | UniqueProcessKey | P      | P+4   | P+8     | P+12  | —       | —      | P+16    | image, cmdline                  |
//! | 3   | UniqueProcessKey | P      | P+4   | P+8     | P+12  | P+16    | —      | 2P+16   | image, cmdline                  |
//! | ≥4  | UniqueProcessKey | P      | P+4   | P+8     | P+12  | P+16    | 2P+16  | 2P+20   | image, cmdline, package, app id |
//!
//! v5 (Defunct only) appends `ExitTime` (u64 FILETIME); versions above 5 are
//! read with the v4 prefix and any extra bytes are ignored (§1.2).
//! UserSID (§1.4): a u32 0 means "no SID" (4 bytes); otherwise a producer-sized
//! `TOKEN_USER` (2P bytes) followed by the SID (8 + 4n bytes). Strings: image
//! is 8-bit NUL-terminated, the others UTF-16LE NUL-terminated (§1.5).
//! Self-check (§1.6): the last field must end exactly at the payload end
//! (v5: at least 8 bytes must remain for `ExitTime`); if the 4-byte null-SID
//! reading fails that, two fallbacks are tried: a `TOKEN_USER` with a null
//! pointer still followed by a SID, then a pointer-sized null SID.

use std::fmt;

use super::{Cursor, DecodeError, Latin1Str, PayloadText, PointerSize, Utf16Str};

/// Process creation.
pub const OPCODE_START: u8 = 1;
/// Process exit (also called Stop).
pub const OPCODE_END: u8 = 2;
/// Rundown at trace start: a process alive when the session began.
pub const OPCODE_DC_START: u8 = 3;
/// Rundown at trace end: a process alive when the session stopped.
pub const OPCODE_DC_END: u8 = 4;
/// An exited process whose object is still referenced (zombie), listed at rundown.
pub const OPCODE_DEFUNCT: u8 = 39;

/// One decoded Process-class payload. Fields the version does not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessPayload {
    /// Kernel address of the process object (v≥2); with `pid` it identifies
    /// one process across pid reuse. `None` for v0 and v1 (v1's first field
    /// is a reserved page-directory value, not a key).
    pub unique_process_key: Option<u64>,
    /// Process id of the subject process (not the event header's).
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Terminal-services session id (v≥1).
    pub session_id: Option<u32>,
    /// Exit code on End/Defunct (v≥1); on Start/DCStart usually 259 (STILL_ACTIVE).
    pub exit_status: Option<i32>,
    /// Page-directory base of the address space (v≥3).
    pub directory_table_base: Option<u64>,
    /// Process flags (v≥4): 0x1 package, 0x2 WOW64, 0x4 protected.
    pub flags: Option<u32>,
    /// Owner SID in `S-1-5-18` form; `None` when the field is null or unreadable.
    pub user_sid: Option<String>,
    /// Image leaf name (`cmd.exe`), decoded as Latin-1.
    pub image_file_name: Option<String>,
    /// Command line (v≥2), lossy UTF-16; `Some("")` when the event carries an empty one.
    pub command_line: Option<String>,
    /// Package full name (v≥4); `None` when empty.
    pub package_full_name: Option<String>,
    /// Application id (v≥4); `None` when empty.
    pub application_id: Option<String>,
    /// v5 (Defunct): when the process exited, as FILETIME.
    pub exit_time: Option<u64>,
    /// Set when the self-check needed a fallback or some optional field could not be read.
    pub anomaly: Option<Anomaly>,
}

impl ProcessPayload {
    /// Whether every byte of the payload was accounted for by the version's
    /// layout, possibly through one of the SID fallbacks.
    pub fn is_fully_decoded(&self) -> bool {
        matches!(
            self.anomaly,
            None | Some(Anomaly::PointerSizedNullSid | Anomaly::NullTokenUserPointer)
        )
    }
}

/// What did not match the documented layout. The required fields were read
/// regardless; the variant says which optional ones may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Anomaly {
    /// The null SID took P bytes (8 on x64) instead of 4: only that reading
    /// passed the length check. All fields were decoded.
    PointerSizedNullSid,
    /// The SID field starts with a 0 pointer but still holds a `TOKEN_USER`
    /// and a SID: only that reading passed the length check. All fields
    /// were decoded.
    NullTokenUserPointer,
    /// The payload ends inside the SID or a string (no terminator): that
    /// field and all after it are `None`.
    StringsTruncated,
    /// The SID header is malformed (revision ≠ 1 or more than 15
    /// sub-authorities): the SID and the strings after it are `None`.
    InvalidSid,
    /// This many bytes follow the last field the version defines.
    TrailingBytes(u32),
    /// A v5 payload without the 8 bytes of `ExitTime` after its strings.
    MissingExitTime,
}

/// `S-1-…` sub-authority count limit (`SID_MAX_SUB_AUTHORITIES`).
const SID_MAX_SUB_AUTHORITIES: u8 = 15;

/// A payload decoded without copying: the fixed fields as in
/// [`ProcessPayload`], the SID and strings as the payload's own bytes. The
/// exit tracker reads this and copies only the text it keeps;
/// [`to_payload`](Self::to_payload) gives the owned form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessPayloadRef<'a> {
    /// See [`ProcessPayload::unique_process_key`].
    pub unique_process_key: Option<u64>,
    /// See [`ProcessPayload::pid`].
    pub pid: u32,
    /// See [`ProcessPayload::ppid`].
    pub ppid: u32,
    /// See [`ProcessPayload::session_id`].
    pub session_id: Option<u32>,
    /// See [`ProcessPayload::exit_status`].
    pub exit_status: Option<i32>,
    /// See [`ProcessPayload::directory_table_base`].
    pub directory_table_base: Option<u64>,
    /// See [`ProcessPayload::flags`].
    pub flags: Option<u32>,
    /// See [`ProcessPayload::user_sid`].
    pub user_sid: Option<SidRef<'a>>,
    /// See [`ProcessPayload::image_file_name`].
    pub image_file_name: Option<Latin1Str<'a>>,
    /// See [`ProcessPayload::command_line`].
    pub command_line: Option<Utf16Str<'a>>,
    /// See [`ProcessPayload::package_full_name`] (`None` when empty).
    pub package_full_name: Option<Utf16Str<'a>>,
    /// See [`ProcessPayload::application_id`] (`None` when empty).
    pub application_id: Option<Utf16Str<'a>>,
    /// See [`ProcessPayload::exit_time`].
    pub exit_time: Option<u64>,
    /// See [`ProcessPayload::anomaly`].
    pub anomaly: Option<Anomaly>,
}

impl ProcessPayloadRef<'_> {
    /// The owned form, strings decoded.
    pub fn to_payload(&self) -> ProcessPayload {
        ProcessPayload {
            unique_process_key: self.unique_process_key,
            pid: self.pid,
            ppid: self.ppid,
            session_id: self.session_id,
            exit_status: self.exit_status,
            directory_table_base: self.directory_table_base,
            flags: self.flags,
            user_sid: self.user_sid.map(|s| s.to_owned_string()),
            image_file_name: self.image_file_name.map(|s| s.to_owned_string()),
            command_line: self.command_line.map(|s| s.to_owned_string()),
            package_full_name: self.package_full_name.map(|s| s.to_owned_string()),
            application_id: self.application_id.map(|s| s.to_owned_string()),
            exit_time: self.exit_time,
            anomaly: self.anomaly,
        }
    }
}

/// A well-formed SID (revision 1, at most 15 sub-authorities) as stored in
/// the payload; its text form is `S-1-5-18` (the authority in hex from 2^32
/// on, as `ConvertSidToStringSid` writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidRef<'a> {
    authority: u64,
    /// The sub-authorities, 4 little-endian bytes each.
    subs: &'a [u8],
}

impl SidRef<'_> {
    /// The text form, written into a stack buffer (no allocation).
    fn text(&self) -> SidText {
        let mut text = SidText {
            buf: [0; SID_TEXT_MAX],
            len: 0,
        };
        text.push(b"S-1-");
        if let Ok(authority) = u32::try_from(self.authority) {
            text.push_decimal(authority);
        } else {
            text.push(b"0x");
            for shift in (0..12u32).rev() {
                let nibble = (self.authority >> shift.saturating_mul(4)) & 0xf;
                text.push(&[b"0123456789ABCDEF"
                    .get(nibble as usize)
                    .copied()
                    .unwrap_or(b'0')]);
            }
        }
        for sub in self.sub_authorities() {
            text.push(b"-");
            text.push_decimal(sub);
        }
        text
    }
}

impl SidRef<'_> {
    fn sub_authorities(&self) -> impl Iterator<Item = u32> + '_ {
        self.subs.chunks_exact(4).map(|s| match s {
            [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
            _ => 0,
        })
    }
}

/// The text of the SID seen last, kept so that the same SID (a machine's
/// events carry a handful of users) is written out once, not per event.
#[derive(Debug, Default)]
pub(crate) struct SidTextCache {
    authority: u64,
    subs: Vec<u8>,
    text: String,
}

impl SidTextCache {
    /// The text of `sid`, written out only when it differs from the last.
    pub(crate) fn text_of(&mut self, sid: &SidRef<'_>) -> &str {
        if !self.holds(sid) {
            self.authority = sid.authority;
            self.subs.clear();
            self.subs.extend_from_slice(sid.subs);
            self.text.clear();
            self.text.push_str(sid.text().as_str());
        }
        &self.text
    }

    /// Whether the cached text is that of `sid`.
    pub(crate) fn holds(&self, sid: &SidRef<'_>) -> bool {
        !self.text.is_empty() && self.authority == sid.authority && self.subs == sid.subs
    }

    /// The cached text (empty before the first SID).
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// Whether `part` is `value` written as [`SidText::push_decimal`] writes it.
fn is_decimal_of(part: &str, value: u32) -> bool {
    (part == "0" || !part.starts_with('0'))
        && part.bytes().all(|b| b.is_ascii_digit())
        && part.parse::<u32>() == Ok(value)
}

/// "S-1-" + "0x" and 12 hex digits + 15 × ("-" and 10 digits) = 183 bytes.
const SID_TEXT_MAX: usize = 184;

/// A SID's text form on the stack.
struct SidText {
    buf: [u8; SID_TEXT_MAX],
    len: usize,
}

impl SidText {
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(slot) = self.buf.get_mut(self.len..end) {
            slot.copy_from_slice(bytes);
            self.len = end;
        }
    }

    fn push_decimal(&mut self, mut value: u32) {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            // value / 10 as a multiply and shift (exact for every u32): the
            // size-optimised release build would otherwise emit a division.
            let quotient = ((u64::from(value).wrapping_mul(0xCCCC_CCCD)) >> 35) as u32;
            let digit = value.wrapping_sub(quotient.wrapping_mul(10)) as u8;
            start = start.saturating_sub(1);
            if let Some(d) = digits.get_mut(start) {
                *d = b'0'.saturating_add(digit);
            }
            value = quotient;
            if value == 0 || start == 0 {
                break;
            }
        }
        self.push(digits.get(start..).unwrap_or(&[]));
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, letters and '-' were pushed.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl fmt::Display for SidRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl PayloadText for SidRef<'_> {
    fn is_empty(&self) -> bool {
        false
    }

    fn to_owned_string(&self) -> String {
        self.text().as_str().to_owned()
    }

    fn eq_str(&self, text: &str) -> bool {
        // Compared number by number, without writing the text out.
        let (Some(rest), Ok(authority)) =
            (text.strip_prefix("S-1-"), u32::try_from(self.authority))
        else {
            return self.text().as_str() == text;
        };
        let mut parts = rest.split('-');
        let mut values = std::iter::once(authority).chain(self.sub_authorities());
        loop {
            match (parts.next(), values.next()) {
                (None, None) => return true,
                (Some(part), Some(value)) if is_decimal_of(part, value) => {}
                _ => return false,
            }
        }
    }
}

/// Decodes one Process-class payload of MOF `version`, written by a producer
/// with `pointer`-sized pointers (from the event header flags).
///
/// Fails only when a fixed field (pid, ppid, key, session, exit status, DTB,
/// flags) is cut off; the SID and strings degrade to `None` with
/// [`ProcessPayload::anomaly`] set.
pub fn decode_process(
    payload: &[u8],
    version: u8,
    pointer: PointerSize,
) -> Result<ProcessPayload, DecodeError> {
    decode_process_ref(payload, version, pointer).map(|p| p.to_payload())
}

/// [`decode_process`] without copying the SID and strings: they stay
/// borrowed from `payload`.
pub fn decode_process_ref(
    payload: &[u8],
    version: u8,
    pointer: PointerSize,
) -> Result<ProcessPayloadRef<'_>, DecodeError> {
    let mut out = ProcessPayloadRef::EMPTY;
    decode_process_into(payload, version, pointer, &mut out)?;
    Ok(out)
}

impl ProcessPayloadRef<'_> {
    /// Every field `None` or 0: what [`decode_process_into`] fills.
    pub(crate) const EMPTY: ProcessPayloadRef<'static> = ProcessPayloadRef {
        unique_process_key: None,
        pid: 0,
        ppid: 0,
        session_id: None,
        exit_status: None,
        directory_table_base: None,
        flags: None,
        user_sid: None,
        image_file_name: None,
        command_line: None,
        package_full_name: None,
        application_id: None,
        exit_time: None,
        anomaly: None,
    };
}

/// [`decode_process_ref`] into `out` (which starts as
/// [`ProcessPayloadRef::EMPTY`]), so that the exit tracker's per-event
/// decode writes the fields where they are read instead of returning the
/// whole struct through copies. On error `out` holds what was read.
pub(crate) fn decode_process_into<'a>(
    payload: &'a [u8],
    version: u8,
    pointer: PointerSize,
    out: &mut ProcessPayloadRef<'a>,
) -> Result<(), DecodeError> {
    let mut c = Cursor::new(payload);
    if version == 0 {
        // Both ids are pointer-sized in v0; the value lives in the low 32 bits.
        out.pid = low_u32(c.pointer(pointer)?);
        out.ppid = low_u32(c.pointer(pointer)?);
    } else {
        let first = c.pointer(pointer)?;
        if version >= 2 {
            out.unique_process_key = Some(first);
        }
        out.pid = c.u32()?;
        out.ppid = c.u32()?;
        out.session_id = Some(c.u32()?);
        out.exit_status = Some(c.i32()?);
        if version >= 3 {
            out.directory_table_base = Some(c.pointer(pointer)?);
        }
        if version >= 4 {
            out.flags = Some(c.u32()?);
        }
    }
    decode_tail(c, version, pointer, out);
    Ok(())
}

/// Takes the low 32 bits of a v0 pointer-sized id.
fn low_u32(value: u64) -> u32 {
    u32::try_from(value & u64::from(u32::MAX)).unwrap_or(0)
}

/// Everything after the fixed fields: the SID, the strings, the anomaly.
#[inline(always)]
fn decode_tail<'a>(
    c: Cursor<'a>,
    version: u8,
    pointer: PointerSize,
    out: &mut ProcessPayloadRef<'a>,
) {
    let mut probe = c;
    match probe.u32() {
        Err(_) => out.anomaly = Some(Anomaly::StringsTruncated),
        Ok(0) => {
            out.anomaly = decode_strings(probe, version, out);
            if out.anomaly.is_none() {
                return;
            }
            // §1.6 fallbacks, each accepted only if it passes the length check.
            // A TOKEN_USER whose pointer is 0 but which is followed by a SID
            // (user-mode writers of Process events do this).
            let mut with_sid = c;
            if let Ok(sid) = read_sid(&mut with_sid, pointer) {
                let mut alt = *out;
                if decode_strings(with_sid, version, &mut alt).is_none() {
                    *out = alt;
                    out.user_sid = Some(sid);
                    out.anomaly = Some(Anomaly::NullTokenUserPointer);
                    return;
                }
            }
            // A null SID written pointer-sized (one decoder family's reading).
            let mut wide = c;
            if pointer == PointerSize::Eight
                && wide.bytes(8).is_ok_and(|b| b.iter().all(|&b| b == 0))
            {
                let mut alt = *out;
                if decode_strings(wide, version, &mut alt).is_none() {
                    *out = alt;
                    out.anomaly = Some(Anomaly::PointerSizedNullSid);
                }
            }
        }
        Ok(_) => {
            let mut c = c;
            match read_sid(&mut c, pointer) {
                Ok(sid) => {
                    out.user_sid = Some(sid);
                    out.anomaly = decode_strings(c, version, out);
                }
                Err(anomaly) => out.anomaly = Some(anomaly),
            }
        }
    }
}

/// Reads a non-null SID field: the producer's `TOKEN_USER` (2P bytes), then
/// the SID (§1.4).
#[inline(always)]
fn read_sid<'a>(c: &mut Cursor<'a>, pointer: PointerSize) -> Result<SidRef<'a>, Anomaly> {
    let truncated = |_| Anomaly::StringsTruncated;
    c.skip(pointer.bytes().saturating_mul(2))
        .map_err(truncated)?;
    let revision = c.u8().map_err(truncated)?;
    let count = c.u8().map_err(truncated)?;
    if revision != 1 || count > SID_MAX_SUB_AUTHORITIES {
        return Err(Anomaly::InvalidSid);
    }
    let authority = c.bytes(6).map_err(truncated)?;
    let authority = authority
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let subs = c
        .bytes(usize::from(count).saturating_mul(4))
        .map_err(truncated)?;
    Ok(SidRef { authority, subs })
}

/// Finds the strings of `version` (and a v5 `ExitTime`) and runs the §1.6
/// length check: writes those fields of `out`, each `None` when the payload
/// ends before it, and returns the anomaly, `None` exactly when the check
/// passed. Package name and application id are `None` when empty.
fn decode_strings<'a>(
    mut c: Cursor<'a>,
    version: u8,
    out: &mut ProcessPayloadRef<'a>,
) -> Option<Anomaly> {
    out.image_file_name = None;
    out.command_line = None;
    out.package_full_name = None;
    out.application_id = None;
    out.exit_time = None;
    let Some(image) = c.latin1_z() else {
        return Some(Anomaly::StringsTruncated);
    };
    out.image_file_name = Some(image);
    if version >= 2 {
        let Some(cmd) = c.utf16le_z() else {
            return Some(Anomaly::StringsTruncated);
        };
        out.command_line = Some(cmd);
    }
    if version >= 4 {
        let Some(package) = c.utf16le_z() else {
            return Some(Anomaly::StringsTruncated);
        };
        out.package_full_name = Some(package).filter(|s| !s.is_empty());
        let Some(app_id) = c.utf16le_z() else {
            return Some(Anomaly::StringsTruncated);
        };
        out.application_id = Some(app_id).filter(|s| !s.is_empty());
    }
    match version {
        5 => match c.u64() {
            Ok(t) => {
                out.exit_time = Some(t);
                trailing(&c)
            }
            Err(_) => Some(Anomaly::MissingExitTime),
        },
        // Newer versions may append fields we do not know; that is expected.
        6.. => None,
        _ => trailing(&c),
    }
}

fn trailing(c: &Cursor<'_>) -> Option<Anomaly> {
    match c.remaining() {
        0 => None,
        n => Some(Anomaly::TrailingBytes(u32::try_from(n).unwrap_or(u32::MAX))),
    }
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
    use crate::test_rng::xorshift;

    /// The SID cases every layout is tested with.
    #[derive(Clone, Copy, Debug)]
    enum Sid {
        Null,
        System,
        DomainUser,
    }

    impl Sid {
        const ALL: [Sid; 3] = [Sid::Null, Sid::System, Sid::DomainUser];

        fn text(self) -> Option<&'static str> {
            match self {
                Sid::Null => None,
                Sid::System => Some("S-1-5-18"),
                Sid::DomainUser => Some("S-1-5-21-1004336348-1177238915-682003330-1001"),
            }
        }

        /// The SID field as a producer with `p`-byte pointers writes it.
        fn field(self, p: PointerSize) -> Vec<u8> {
            let subs: &[u32] = match self {
                Sid::Null => return vec![0; 4],
                Sid::System => &[18],
                Sid::DomainUser => &[21, 1_004_336_348, 1_177_238_915, 682_003_330, 1001],
            };
            // TOKEN_USER: a non-null PSID, attributes, padding on x64.
            let mut out = match p {
                PointerSize::Four => vec![0x10, 0x20, 0x30, 0x40, 0, 0, 0, 0],
                PointerSize::Eight => {
                    let mut v = 0xffff_a000_1234_5678u64.to_le_bytes().to_vec();
                    v.extend_from_slice(&[0; 8]);
                    v
                }
            };
            out.extend_from_slice(&[1, subs.len() as u8, 0, 0, 0, 0, 0, 5]);
            for s in subs {
                out.extend_from_slice(&s.to_le_bytes());
            }
            out
        }
    }

    fn ptr(p: PointerSize, v: u64) -> Vec<u8> {
        match p {
            PointerSize::Four => (v as u32).to_le_bytes().to_vec(),
            PointerSize::Eight => v.to_le_bytes().to_vec(),
        }
    }

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    const KEY: u64 = 0xffff_c58a_1b2c_3080;
    const DTB: u64 = 0x3_b6f0_0000;
    const CMD: &str = "\"C:\\Windows\\system32\\cmd.exe\" /c exit 3";

    /// Fixed fields of `version`, then `sid_field`, then the strings and extras.
    fn build_with_sid(version: u8, p: PointerSize, sid_field: &[u8]) -> Vec<u8> {
        let key = match p {
            PointerSize::Four => KEY & 0xffff_ffff,
            PointerSize::Eight => KEY,
        };
        let mut b = Vec::new();
        if version == 0 {
            b.extend(ptr(p, 4242));
            b.extend(ptr(p, 77));
        } else {
            b.extend(ptr(p, key));
            b.extend(4242u32.to_le_bytes());
            b.extend(77u32.to_le_bytes());
            b.extend(3u32.to_le_bytes());
            b.extend((-1_073_741_510i32).to_le_bytes());
            if version >= 3 {
                b.extend(ptr(p, DTB));
            }
            if version >= 4 {
                b.extend(2u32.to_le_bytes());
            }
        }
        b.extend_from_slice(sid_field);
        b.extend(b"cmd.exe\0");
        if version >= 2 {
            b.extend(utf16z(CMD));
        }
        if version >= 4 {
            b.extend(utf16z(""));
            b.extend(utf16z(""));
        }
        if version >= 5 {
            b.extend(132_445_961_474_624_863u64.to_le_bytes());
        }
        b
    }

    fn build(version: u8, p: PointerSize, sid: Sid) -> Vec<u8> {
        build_with_sid(version, p, &sid.field(p))
    }

    fn check(d: &ProcessPayload, version: u8, p: PointerSize, sid: Sid) {
        let ctx = format!("v{version} {p:?} {sid:?}");
        assert_eq!(d.pid, 4242, "{ctx}");
        assert_eq!(d.ppid, 77, "{ctx}");
        assert_eq!(d.user_sid.as_deref(), sid.text(), "{ctx}");
        assert_eq!(d.image_file_name.as_deref(), Some("cmd.exe"), "{ctx}");
        assert_eq!(d.anomaly, None, "{ctx}");
        assert!(d.is_fully_decoded(), "{ctx}");
        let key = match p {
            PointerSize::Four => KEY & 0xffff_ffff,
            PointerSize::Eight => KEY,
        };
        assert_eq!(d.unique_process_key, (version >= 2).then_some(key), "{ctx}");
        assert_eq!(d.session_id, (version >= 1).then_some(3), "{ctx}");
        assert_eq!(
            d.exit_status,
            (version >= 1).then_some(-1_073_741_510),
            "{ctx}"
        );
        assert_eq!(d.directory_table_base.is_some(), version >= 3, "{ctx}");
        assert_eq!(d.flags, (version >= 4).then_some(2), "{ctx}");
        assert_eq!(
            d.command_line.as_deref(),
            (version >= 2).then_some(CMD),
            "{ctx}"
        );
        assert_eq!(d.package_full_name, None, "{ctx}");
        assert_eq!(d.application_id, None, "{ctx}");
        assert_eq!(
            d.exit_time,
            (version == 5).then_some(132_445_961_474_624_863),
            "{ctx}"
        );
    }

    #[test]
    fn every_version_pointer_size_and_sid() {
        for version in 0..=5 {
            for p in [PointerSize::Four, PointerSize::Eight] {
                for sid in Sid::ALL {
                    let bytes = build(version, p, sid);
                    let d = decode_process(&bytes, version, p).unwrap();
                    check(&d, version, p, sid);
                }
            }
        }
    }

    #[test]
    fn sid_field_lengths_match_the_reference() {
        // §1.4: SYSTEM x64 28 / x86 20; user x64 44 / x86 36.
        assert_eq!(Sid::System.field(PointerSize::Eight).len(), 28);
        assert_eq!(Sid::System.field(PointerSize::Four).len(), 20);
        assert_eq!(Sid::DomainUser.field(PointerSize::Eight).len(), 44);
        assert_eq!(Sid::DomainUser.field(PointerSize::Four).len(), 36);
        // §1.4: v4 image offset x64 64 (SYSTEM) / 80 (user); x86 48 / 64.
        for (p, sid, image_at) in [
            (PointerSize::Eight, Sid::System, 64),
            (PointerSize::Eight, Sid::DomainUser, 80),
            (PointerSize::Four, Sid::System, 48),
            (PointerSize::Four, Sid::DomainUser, 64),
        ] {
            let bytes = build(4, p, sid);
            assert_eq!(&bytes[image_at..image_at + 8], b"cmd.exe\0");
        }
    }

    #[test]
    fn newer_versions_use_the_v4_prefix_and_ignore_extras() {
        let mut bytes = build(4, PointerSize::Eight, Sid::System);
        bytes.extend([0xaa; 12]);
        let d = decode_process(&bytes, 7, PointerSize::Eight).unwrap();
        assert_eq!(d.pid, 4242);
        assert_eq!(d.command_line.as_deref(), Some(CMD));
        assert_eq!(d.exit_time, None);
        assert_eq!(d.anomaly, None);
    }

    #[test]
    fn pointer_sized_null_sid_is_accepted_as_a_fallback() {
        for version in 0..=5 {
            let bytes = build_with_sid(version, PointerSize::Eight, &[0; 8]);
            let d = decode_process(&bytes, version, PointerSize::Eight).unwrap();
            assert_eq!(d.anomaly, Some(Anomaly::PointerSizedNullSid), "v{version}");
            assert!(d.is_fully_decoded());
            assert_eq!(d.user_sid, None);
            assert_eq!(d.image_file_name.as_deref(), Some("cmd.exe"), "v{version}");
            assert_eq!(d.command_line.as_deref(), (version >= 2).then_some(CMD));
        }
    }

    #[test]
    fn trailing_bytes_and_missing_exit_time_are_reported() {
        let mut bytes = build(4, PointerSize::Eight, Sid::System);
        bytes.extend([1, 2, 3]);
        let d = decode_process(&bytes, 4, PointerSize::Eight).unwrap();
        assert_eq!(d.anomaly, Some(Anomaly::TrailingBytes(3)));
        assert_eq!(d.command_line.as_deref(), Some(CMD));

        let bytes = build(4, PointerSize::Eight, Sid::System);
        let d = decode_process(&bytes, 5, PointerSize::Eight).unwrap();
        assert_eq!(d.anomaly, Some(Anomaly::MissingExitTime));
        assert_eq!(d.exit_time, None);
        assert!(!d.is_fully_decoded());
    }

    #[test]
    fn malformed_sid_keeps_the_fixed_fields() {
        let mut field = Sid::System.field(PointerSize::Eight);
        field[17] = 40; // sub-authority count > 15
        let bytes = build_with_sid(4, PointerSize::Eight, &field);
        let d = decode_process(&bytes, 4, PointerSize::Eight).unwrap();
        assert_eq!(d.anomaly, Some(Anomaly::InvalidSid));
        assert_eq!((d.pid, d.exit_status), (4242, Some(-1_073_741_510)));
        assert_eq!(d.image_file_name, None);
    }

    #[test]
    fn sid_with_large_authority_uses_hex() {
        let mut field = Sid::System.field(PointerSize::Four);
        field[10] = 1; // first (most significant) authority byte: 0x01_0000_0000_05
        let bytes = build_with_sid(3, PointerSize::Four, &field);
        let d = decode_process(&bytes, 3, PointerSize::Four).unwrap();
        assert_eq!(d.user_sid.as_deref(), Some("S-1-0x010000000005-18"));
    }

    #[test]
    fn sid_text_compares_without_writing() {
        let subs: Vec<u8> = [21u32, 0, 4_294_967_295, 1001]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let sid = SidRef {
            authority: 5,
            subs: &subs,
        };
        let text = "S-1-5-21-0-4294967295-1001";
        assert_eq!(sid.to_owned_string(), text);
        assert_eq!(sid.to_string(), text);
        assert!(sid.eq_str(text));
        for other in [
            "S-1-5-21-0-4294967295-100",
            "S-1-5-21-0-4294967295-1001-",
            "S-1-5-21-00-4294967295-1001",
            "S-1-5-21-0-4294967295",
            "S-1-5-21-+0-4294967295-1001",
            "S-2-5-21-0-4294967295-1001",
            "",
        ] {
            assert!(!sid.eq_str(other), "{other}");
        }
        let wide = SidRef {
            authority: 0x0000_1234_5678_9abc,
            subs: &[],
        };
        assert_eq!(wide.to_owned_string(), "S-1-0x123456789ABC");
        assert!(wide.eq_str("S-1-0x123456789ABC") && !wide.eq_str("S-1-0x123456789abc"));
    }

    #[test]
    fn strings_decode_lossily() {
        let mut bytes = build_with_sid(2, PointerSize::Four, &[0; 4]);
        let image_at = 20 + 4;
        bytes[image_at] = 0xe9; // Latin-1 'é'
        let d = decode_process(&bytes, 2, PointerSize::Four).unwrap();
        assert_eq!(d.image_file_name.as_deref(), Some("\u{e9}md.exe"));

        // An unpaired surrogate in the command line becomes U+FFFD.
        let mut bytes = build_with_sid(2, PointerSize::Four, &[0; 4]);
        let cmd_at = image_at + 8;
        bytes[cmd_at..cmd_at + 2].copy_from_slice(&0xd800u16.to_le_bytes());
        let d = decode_process(&bytes, 2, PointerSize::Four).unwrap();
        assert!(d.command_line.unwrap().starts_with('\u{fffd}'));
    }

    /// Cutting the payload anywhere either fails with an in-bounds offset
    /// (inside the fixed fields) or keeps the fixed fields and flags the rest.
    #[test]
    fn truncation_at_every_length() {
        for version in 0..=5 {
            for p in [PointerSize::Four, PointerSize::Eight] {
                for sid in Sid::ALL {
                    let full = build(version, p, sid);
                    let fixed = match version {
                        0 => 2 * p.bytes(),
                        1 | 2 => p.bytes() + 16,
                        3 => 2 * p.bytes() + 16,
                        _ => 2 * p.bytes() + 20,
                    };
                    for len in 0..full.len() {
                        let cut = &full[..len];
                        match decode_process(cut, version, p) {
                            Err(e) => {
                                assert!(len < fixed, "v{version} {p:?} {sid:?} len {len}");
                                assert!(e.offset <= len);
                                assert!(matches!(e.kind, DecodeErrorKind::Truncated { .. }));
                            }
                            Ok(d) => {
                                assert!(len >= fixed, "v{version} {p:?} {sid:?} len {len}");
                                assert_eq!(d.pid, 4242);
                                assert!(d.anomaly.is_some(), "v{version} {p:?} {sid:?} len {len}");
                                assert!(!d.is_fully_decoded());
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = xorshift(state);
            state
        };
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        for version in 0..=5 {
            for p in [PointerSize::Four, PointerSize::Eight] {
                seeds.push(build(version, p, Sid::DomainUser));
                seeds.push(build(version, p, Sid::Null));
            }
        }
        for i in 0..20_000 {
            let r = next();
            let mut bytes = if i % 2 == 0 {
                // Pure noise of random length.
                (0..(r % 200)).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                // A valid payload with a few flipped bytes.
                let mut b = seeds[(r % seeds.len() as u64) as usize].clone();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() % b.len() as u64) as usize;
                    b[at] = next() as u8;
                }
                b
            };
            if i % 7 == 0 {
                bytes.truncate((next() % (bytes.len() as u64 + 1)) as usize);
            }
            let version = (next() % 9) as u8;
            let p = if next() % 2 == 0 {
                PointerSize::Four
            } else {
                PointerSize::Eight
            };
            if let Err(e) = decode_process(&bytes, version, p) {
                assert!(e.offset <= bytes.len());
            }
        }
    }

    /// Real payloads cut from the shared test traces; expected values are
    /// those of the matching `*.expected.json` (`payload_fully_decoded`: true).
    #[test]
    fn real_payloads_decode_like_the_expected_json() {
        // perfview_diaghub.kernel.1.etl: End v4, x64, conhost.exe (payload_len 176).
        let b = crate::decode::test_hex(&[
            "40736df404a8ffff782e0000e4340000020000000000000000d082700200000000000000a00886c783d3ffff00000000",
            "83d3ffff010500000000000515000000a065cf7e784b9b5fe77c877013b99e02636f6e686f73742e657865005c003f00",
            "3f005c0043003a005c00570049004e0044004f00570053005c00730079007300740065006d00330032005c0063006f00",
            "6e0068006f00730074002e006500780065002000300078003400000000000000",
        ]);
        assert_eq!(b.len(), 176);
        let d = decode_process(&b, 4, PointerSize::Eight).unwrap();
        assert_eq!(d.anomaly, None);
        assert_eq!(d.unique_process_key, Some(18_446_647_337_966_990_144));
        assert_eq!((d.pid, d.ppid, d.session_id), (11896, 13540, Some(2)));
        assert_eq!((d.exit_status, d.flags), (Some(0), Some(0)));
        assert_eq!(d.directory_table_base, Some(10_477_555_712));
        assert_eq!(
            d.user_sid.as_deref(),
            Some("S-1-5-21-2127521184-1604012920-1887927527-43956499")
        );
        assert_eq!(d.image_file_name.as_deref(), Some("conhost.exe"));
        assert_eq!(
            d.command_line.as_deref(),
            Some("\\??\\C:\\WINDOWS\\system32\\conhost.exe 0x4")
        );
        assert_eq!((d.package_full_name, d.application_id), (None, None));

        // Same file: Defunct v5, MpCmdRun.exe (payload_len 91); note the
        // non-zero padding after the TOKEN_USER attributes.
        let b = crate::decode::test_hex(&[
            "80b0a3e204a8ffff2011000030070000000000000000000000d04e0f0400000000000000e0f7d39f83d3ffff00000000",
            "140000000101000000000005120000004d70436d6452756e2e657865000000000000005f4da175e68ad601",
        ]);
        let d = decode_process(&b, 5, PointerSize::Eight).unwrap();
        assert_eq!(d.anomaly, None);
        assert_eq!((d.pid, d.ppid), (4384, 1840));
        assert_eq!(d.user_sid.as_deref(), Some("S-1-5-18"));
        assert_eq!(d.image_file_name.as_deref(), Some("MpCmdRun.exe"));
        assert_eq!(d.command_line.as_deref(), Some(""));
        assert_eq!(d.exit_time, Some(132_445_961_474_624_863));

        // sawbuck_process_data_32_v3.etl (synthetic, 32-bit): End v3 whose
        // TOKEN_USER pointer is 0 although a SID follows.
        let b = crate::decode::test_hex(&[
            "00000000f0060000dc0300000100000000000000000000000000000000000000010500000000000515000000962cec2c",
            "68fd3106f1dca4d3e80300006e6f74657061642e65786500220043003a005c00570069006e0064006f00770073005c00",
            "730079007300740065006d00330032005c006e006f00740065007000610064002e00650078006500220020000000",
        ]);
        let d = decode_process(&b, 3, PointerSize::Four).unwrap();
        assert_eq!(d.anomaly, Some(Anomaly::NullTokenUserPointer));
        assert!(d.is_fully_decoded());
        assert_eq!((d.pid, d.ppid, d.exit_status), (1776, 988, Some(0)));
        assert_eq!(d.unique_process_key, Some(0));
        assert_eq!(
            d.user_sid.as_deref(),
            Some("S-1-5-21-753675414-103939432-3550797041-1000")
        );
        assert_eq!(d.image_file_name.as_deref(), Some("notepad.exe"));
        assert_eq!(
            d.command_line.as_deref(),
            Some("\"C:\\Windows\\system32\\notepad.exe\" ")
        );

        // sawbuck_process_data_32_v1.etl: End v1, same quirk, no key.
        let b = crate::decode::test_hex(&[
            "00000000f0060000dc03000001000000000000000000000000000000010500000000000515000000962cec2c68fd3106",
            "f1dca4d3e80300006e6f74657061642e65786500",
        ]);
        let d = decode_process(&b, 1, PointerSize::Four).unwrap();
        assert_eq!(d.anomaly, Some(Anomaly::NullTokenUserPointer));
        assert_eq!((d.pid, d.unique_process_key), (1776, None));
        assert_eq!(d.image_file_name.as_deref(), Some("notepad.exe"));
    }
}

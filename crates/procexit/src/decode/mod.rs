//! Pure decoders of OS event payloads: `&[u8]` in, typed records or a typed
//! error with the byte offset out. No OS calls, no `unsafe`, no panics: every
//! read goes through [`Cursor`], which is bounds-checked.

#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::fmt;

pub mod audit_api;
pub mod cgroup;
pub mod ebpf_exit;
pub mod kernel_process;
pub mod lost_event;
pub mod mof_process;
pub mod netlink;
pub mod proc_connector;
pub mod taskstats;
pub mod view;

/// A GUID as Windows lays it out: `Data1` u32, `Data2` u16, `Data3` u16 (all
/// little-endian on disk), `Data4` 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid {
    /// First 4 bytes.
    pub data1: u32,
    /// Next 2 bytes.
    pub data2: u16,
    /// Next 2 bytes.
    pub data3: u16,
    /// Last 8 bytes, in order.
    pub data4: [u8; 8],
}

impl Guid {
    /// Builds a GUID from its parts.
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
        Guid {
            data1,
            data2,
            data3,
            data4,
        }
    }

    /// Reads the 16-byte on-disk (little-endian) form.
    pub fn from_le_bytes(b: [u8; 16]) -> Guid {
        let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7] = b;
        Guid {
            data1: u32::from_le_bytes([a0, a1, a2, a3]),
            data2: u16::from_le_bytes([b0, b1]),
            data3: u16::from_le_bytes([c0, c1]),
            data4: [d0, d1, d2, d3, d4, d5, d6, d7],
        }
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

/// Kernel "Process" MOF event class: `3d6fa8d0-fe05-11d0-9dda-00c04fd7ba7c`.
pub const PROCESS_GUID: Guid = Guid::new(
    0x3d6f_a8d0,
    0xfe05,
    0x11d0,
    [0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c],
);

/// Microsoft-Windows-Kernel-Process: `22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716`.
pub const KERNEL_PROCESS_GUID: Guid = Guid::new(
    0x22fb_2cd6,
    0x0e7b,
    0x422b,
    [0xa0, 0xc7, 0x2f, 0xad, 0x1f, 0xd0, 0xe7, 0x16],
);

/// Microsoft-Windows-Kernel-Audit-API-Calls: `e02a841c-75a3-4fa7-afc8-ae09cf9b7f23`.
pub const KERNEL_AUDIT_API_CALLS_GUID: Guid = Guid::new(
    0xe02a_841c,
    0x75a3,
    0x4fa7,
    [0xaf, 0xc8, 0xae, 0x09, 0xcf, 0x9b, 0x7f, 0x23],
);

/// Real-time Lost_Event provider: `6a399ae0-4bc6-4de9-870b-3657f8947e7e`.
pub const LOST_EVENT_GUID: Guid = Guid::new(
    0x6a39_9ae0,
    0x4bc6,
    0x4de9,
    [0x87, 0x0b, 0x36, 0x57, 0xf8, 0x94, 0x7e, 0x7e],
);

/// EventTrace header class (logfile header events): `68fdd900-4a3e-11d1-84f4-0000f80464e3`.
pub const EVENT_TRACE_GUID: Guid = Guid::new(
    0x68fd_d900,
    0x4a3e,
    0x11d1,
    [0x84, 0xf4, 0x00, 0x00, 0xf8, 0x04, 0x64, 0xe3],
);

/// Width of pointer-sized fields in a payload: the *producer's*, taken from
/// each event's header flags, never from the consumer's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointerSize {
    /// 32-bit producer.
    Four,
    /// 64-bit producer.
    Eight,
}

impl PointerSize {
    /// `EVENT_HEADER_FLAG_32_BIT_HEADER`.
    pub const FLAG_32_BIT_HEADER: u16 = 0x0020;
    /// `EVENT_HEADER_FLAG_64_BIT_HEADER`.
    pub const FLAG_64_BIT_HEADER: u16 = 0x0040;

    /// From `EVENT_HEADER.Flags`; `None` when neither width flag is set.
    pub fn from_header_flags(flags: u16) -> Option<PointerSize> {
        if flags & Self::FLAG_64_BIT_HEADER != 0 {
            Some(PointerSize::Eight)
        } else if flags & Self::FLAG_32_BIT_HEADER != 0 {
            Some(PointerSize::Four)
        } else {
            None
        }
    }

    /// 4 or 8.
    pub fn bytes(self) -> usize {
        match self {
            PointerSize::Four => 4,
            PointerSize::Eight => 8,
        }
    }
}

/// A decoding failure: what went wrong and at which byte offset of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeError {
    /// Offset into the payload (or file) where decoding failed.
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// What went wrong while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends before a field: `need` bytes were wanted, `have` remain.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A layout version this decoder does not know.
    UnknownVersion(u8),
    /// An event type (opcode or id) this decoder does not handle.
    UnsupportedEvent(u16),
    /// A field holds a value that cannot be right (the name says which).
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DecodeErrorKind::Truncated { need, have } => write!(
                f,
                "truncated at byte {}: need {need} bytes, {have} left",
                self.offset
            ),
            DecodeErrorKind::UnknownVersion(v) => {
                write!(f, "unknown version {v} at byte {}", self.offset)
            }
            DecodeErrorKind::UnsupportedEvent(e) => {
                write!(f, "unsupported event type {e} at byte {}", self.offset)
            }
            DecodeErrorKind::Invalid(what) => write!(f, "invalid {what} at byte {}", self.offset),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A bounds-checked little-endian reader over a byte slice. Every read
/// returns `Err` with the offset instead of panicking.
///
/// The one-field readers are `#[inline(always)]`: the release profile
/// optimises for size and would otherwise make a call per field.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    #[inline]
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data, pos: 0 }
    }

    /// The current offset.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The unread bytes.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    /// An error of `kind` at the current offset.
    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.pos,
            kind,
        }
    }

    /// Takes the next `n` bytes.
    #[inline(always)]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.data.get(self.pos..end)) {
            Some(slice) => {
                self.pos = self.pos.saturating_add(n);
                Ok(slice)
            }
            None => Err(self.error(DecodeErrorKind::Truncated {
                need: n,
                have: self.remaining(),
            })),
        }
    }

    /// Skips `n` bytes.
    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.bytes(n).map(|_| ())
    }

    /// Takes the next `len` bytes as a cursor of their own, so what is read
    /// through it cannot run into the bytes after them (the next record).
    #[inline(always)]
    pub fn split(&mut self, len: usize) -> Result<Cursor<'a>, DecodeError> {
        self.bytes(len).map(Cursor::new)
    }

    #[inline(always)]
    fn array_at<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let slice = self.data.get(at..at.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Some(out)
    }

    /// The u8 at offset `at` from the start, without moving; `None` past the end.
    #[inline(always)]
    pub fn u8_at(&self, at: usize) -> Option<u8> {
        self.data.get(at).copied()
    }

    /// The little-endian u16 at offset `at`, without moving.
    #[inline(always)]
    pub fn u16_at(&self, at: usize) -> Option<u16> {
        self.array_at(at).map(u16::from_le_bytes)
    }

    /// The little-endian u32 at offset `at`, without moving.
    #[inline(always)]
    pub fn u32_at(&self, at: usize) -> Option<u32> {
        self.array_at(at).map(u32::from_le_bytes)
    }

    /// The little-endian u64 at offset `at`, without moving.
    #[inline(always)]
    pub fn u64_at(&self, at: usize) -> Option<u64> {
        self.array_at(at).map(u64::from_le_bytes)
    }

    /// The GUID (on-disk layout) at offset `at`, without moving.
    #[inline]
    pub fn guid_at(&self, at: usize) -> Option<Guid> {
        self.array_at(at).map(Guid::from_le_bytes)
    }

    /// All bytes of the cursor, read or not.
    pub fn all(&self) -> &'a [u8] {
        self.data
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads a u8.
    #[inline(always)]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[b]| b)
    }

    /// Reads a little-endian u16.
    #[inline(always)]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a little-endian u32.
    #[inline(always)]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian i32.
    #[inline(always)]
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        self.array().map(i32::from_le_bytes)
    }

    /// Reads a little-endian u64.
    #[inline(always)]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a pointer-sized field, widened to u64.
    #[inline(always)]
    pub fn pointer(&mut self, size: PointerSize) -> Result<u64, DecodeError> {
        match size {
            PointerSize::Four => self.u32().map(u64::from),
            PointerSize::Eight => self.u64(),
        }
    }

    /// An 8-bit NUL-terminated string, each byte taken as Latin-1. `None`
    /// when no terminator remains; the cursor then stays where it was.
    pub fn ansi_z(&mut self) -> Option<String> {
        self.latin1_z().map(|s| s.to_owned_string())
    }

    /// The bytes of an 8-bit NUL-terminated string, borrowed; the cursor
    /// moves past the NUL. `None` when no terminator remains; the cursor
    /// then stays where it was.
    #[inline]
    pub fn latin1_z(&mut self) -> Option<Latin1Str<'a>> {
        let rest = self.rest();
        let len = rest.iter().position(|&b| b == 0)?;
        let text = rest.get(..len)?;
        self.pos = self.pos.saturating_add(len).saturating_add(1);
        Some(Latin1Str(text))
    }

    /// A UTF-16LE NUL-terminated string, decoded lossily. `None` when no
    /// terminator remains; the cursor then stays where it was.
    pub fn utf16_z(&mut self) -> Option<String> {
        self.utf16le_z().map(|s| s.to_owned_string())
    }

    /// The code units of a UTF-16LE NUL-terminated string, borrowed; the
    /// cursor moves past the NUL. `None` when no terminator remains; the
    /// cursor then stays where it was.
    #[inline]
    pub fn utf16le_z(&mut self) -> Option<Utf16Str<'a>> {
        let rest = self.rest();
        let (len, ascii) = match rest {
            // Empty (the package and app id of most Process events).
            [0, 0, ..] => (0, true),
            _ => utf16_scan(rest)?,
        };
        let text = rest.get(..len)?;
        self.pos = self.pos.saturating_add(len).saturating_add(2);
        Some(Utf16Str { bytes: text, ascii })
    }

    /// Reads a GUID (16 bytes, on-disk layout).
    pub fn guid(&mut self) -> Result<Guid, DecodeError> {
        self.array().map(Guid::from_le_bytes)
    }
}

/// Text kept as the payload's bytes until a caller needs it owned: the
/// decoders locate strings without copying them, and the exit tracker turns
/// into `String`s only those it keeps.
pub trait PayloadText {
    /// Whether the text is empty.
    fn is_empty(&self) -> bool;
    /// The text as an owned `String` (lossy where the encoding says so).
    fn to_owned_string(&self) -> String;
    /// Whether [`to_owned_string`](Self::to_owned_string) would equal `text`,
    /// found without allocating.
    fn eq_str(&self, text: &str) -> bool;
}

/// An 8-bit string (no terminator), each byte a Latin-1 character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latin1Str<'a>(&'a [u8]);

impl<'a> Latin1Str<'a> {
    /// The characters of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Latin1Str<'a> {
        Latin1Str(bytes)
    }

    /// The raw bytes, one per character.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl PayloadText for Latin1Str<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn to_owned_string(&self) -> String {
        // ASCII is the same in Latin-1 and UTF-8: one copy, no per-byte work.
        match std::str::from_utf8(self.0) {
            Ok(ascii) if self.0.is_ascii() => ascii.to_owned(),
            _ => self.0.iter().map(|&b| char::from(b)).collect(),
        }
    }

    fn eq_str(&self, text: &str) -> bool {
        if self.0.is_ascii() {
            self.0 == text.as_bytes()
        } else {
            self.0.iter().map(|&b| char::from(b)).eq(text.chars())
        }
    }
}

/// UTF-16LE code units (no terminator), as bytes of even length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf16Str<'a> {
    bytes: &'a [u8],
    /// Every unit is below 0x80: the text is those bytes.
    ascii: bool,
}

/// Four UTF-16 units in a little-endian u64: the low bit of each unit.
const UNIT_LOW_BITS: u64 = 0x0001_0001_0001_0001;
/// The high bit of each unit.
const UNIT_HIGH_BITS: u64 = 0x8000_8000_8000_8000;
/// The bits that make a unit non-ASCII.
const UNIT_NON_ASCII: u64 = 0xff80_ff80_ff80_ff80;

/// Eight bytes as a little-endian u64 (`chunk` holds exactly eight).
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes)
}

/// The byte length of the UTF-16LE text before the first 0 unit of
/// `bytes`, and whether all of it is ASCII; `None` without a 0 unit. Four
/// units at a time: the string scans of every Process event run through here.
fn utf16_scan(bytes: &[u8]) -> Option<(usize, bool)> {
    // The bits of every whole word before the terminator's.
    let mut seen = 0u64;
    let mut len = 0usize;
    for chunk in bytes.chunks_exact(8) {
        let w = word(chunk);
        // Nonzero exactly when one of the four units is 0.
        if w.wrapping_sub(UNIT_LOW_BITS) & !w & UNIT_HIGH_BITS != 0 {
            break;
        }
        seen |= w;
        len = len.saturating_add(8);
    }
    let mut ascii = seen & UNIT_NON_ASCII == 0;
    for unit in bytes.get(len..)?.chunks_exact(2) {
        match unit {
            [0, 0] => return Some((len, ascii)),
            [lo, hi] => ascii &= *hi == 0 && lo.is_ascii(),
            _ => {}
        }
        len = len.saturating_add(2);
    }
    None
}

/// The low bytes of four ASCII units, in order.
#[inline(always)]
fn narrow(w: u64) -> [u8; 4] {
    let w = w & 0x00ff_00ff_00ff_00ff;
    let w = (w | (w >> 8)) & 0x0000_ffff_0000_ffff;
    let w = (w | (w >> 16)) & 0x0000_0000_ffff_ffff;
    (w as u32).to_le_bytes()
}

impl<'a> Utf16Str<'a> {
    /// The units of `bytes`; `None` when its length is odd.
    pub fn new(bytes: &'a [u8]) -> Option<Utf16Str<'a>> {
        if bytes.len() % 2 != 0 {
            return None;
        }
        let ascii = bytes
            .chunks_exact(2)
            .all(|u| matches!(u, [lo, 0] if lo.is_ascii()));
        Some(Utf16Str { bytes, ascii })
    }

    /// The raw bytes, two per code unit.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn chars(&self) -> impl Iterator<Item = char> + 'a {
        let units = self.bytes.chunks_exact(2).map(|u| match u {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            _ => 0,
        });
        char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    /// ASCII text as its bytes, four units at a time (`self.ascii` holds).
    fn ascii_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() / 2);
        let mut words = self.bytes.chunks_exact(8);
        // One reservation for all words (the iterator knows its length).
        out.extend((&mut words).flat_map(|chunk| narrow(word(chunk))));
        out.extend(words.remainder().iter().step_by(2));
        out
    }
}

impl PayloadText for Utf16Str<'_> {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn to_owned_string(&self) -> String {
        if self.ascii {
            match String::from_utf8(self.ascii_bytes()) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }
        } else {
            // Same as String::from_utf16_lossy, without collecting the units.
            self.chars().collect()
        }
    }

    fn eq_str(&self, text: &str) -> bool {
        if !self.ascii {
            return self.chars().eq(text.chars());
        }
        if self.bytes.len() != text.len().saturating_mul(2) {
            return false;
        }
        let mut words = self.bytes.chunks_exact(8);
        let mut expected = text.as_bytes().chunks_exact(4);
        for (chunk, want) in (&mut words).zip(&mut expected) {
            if narrow(word(chunk)) != want {
                return false;
            }
        }
        words
            .remainder()
            .iter()
            .step_by(2)
            .eq(expected.remainder().iter())
    }
}

/// A NUL-separated argv area as one line: arguments joined with spaces,
/// invalid UTF-8 replaced; `None` when there is nothing. Callers trim the
/// terminator(s) their source leaves at the end.
#[cfg(target_os = "linux")]
pub(crate) fn argv_line(args: &[u8]) -> Option<String> {
    if args.is_empty() {
        return None;
    }
    let joined: Vec<u8> = args
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    // Valid UTF-8 (nearly always) is kept without a second copy.
    Some(
        String::from_utf8(joined)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Bytes from hex text split into parts (tests with real payloads).
#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
pub(crate) fn test_hex(parts: &[&str]) -> Vec<u8> {
    let text: String = parts.concat();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn split_confines_reads_to_its_bytes() {
        let bytes = [1u8, 0, 2, 0, 0, 0, 9, 9, 9, 9];
        let mut c = Cursor::new(&bytes);
        let mut first = c.split(6).unwrap();
        assert_eq!(first.u16().unwrap(), 1);
        assert_eq!(first.u32().unwrap(), 2);
        // The split part ends where it was cut, though bytes follow.
        assert!(first.u8().is_err());
        assert_eq!(first.u32_at(4), None);
        assert_eq!(first.u16_at(4), Some(0));
        assert_eq!(c.position(), 6);
        assert_eq!(c.u32_at(6), Some(0x0909_0909));
        assert!(c.split(5).is_err());
        assert_eq!(c.position(), 6);
        // Peeks never move and never read past the end.
        assert_eq!(c.u8_at(9), Some(9));
        assert_eq!(c.u8_at(10), None);
        assert_eq!(c.u64_at(usize::MAX), None);
        assert_eq!(c.guid_at(0), None);
    }

    #[test]
    fn string_scans_find_the_first_terminator() {
        let mut state = 0x853c_49e6_748f_ea9bu64;
        for _ in 0..20_000 {
            state = crate::test_rng::xorshift(state);
            let len = (state % 40) as usize;
            // Bytes drawn from few values, so that 0s and 0x80s are common.
            let bytes: Vec<u8> = (0..len)
                .map(|i| [0u8, 0x80, 0xff, b'a', 1][(state >> (i % 60)) as usize % 5])
                .collect();
            let mut c = Cursor::new(&bytes);
            let text = c.latin1_z();
            let nul = bytes.iter().position(|&b| b == 0);
            assert_eq!(text.map(|t| t.as_bytes().len()), nul);
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|u| u16::from_le_bytes([u[0], u[1]]))
                .collect();
            let end = units.iter().position(|&u| u == 0);
            let want = end.map(|n| (2 * n, units[..n].iter().all(|&u| u < 0x80)));
            assert_eq!(utf16_scan(&bytes), want, "{bytes:?}");
            let mut c = Cursor::new(&bytes);
            let text = c.utf16le_z();
            assert_eq!(text.map(|t| t.as_bytes().len()), want.map(|w| w.0));
            // The owned text is the lossy decode of the units.
            if let Some(text) = text {
                let n = end.unwrap();
                assert_eq!(
                    text.to_owned_string(),
                    String::from_utf16_lossy(&units[..n])
                );
                assert!(text.eq_str(&String::from_utf16_lossy(&units[..n])));
            }
        }
    }

    #[test]
    fn guid_round_trips_its_text_form() {
        assert_eq!(
            PROCESS_GUID.to_string(),
            "3d6fa8d0-fe05-11d0-9dda-00c04fd7ba7c"
        );
        let bytes = [
            0xd0, 0xa8, 0x6f, 0x3d, 0x05, 0xfe, 0xd0, 0x11, 0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7,
            0xba, 0x7c,
        ];
        assert_eq!(Guid::from_le_bytes(bytes), PROCESS_GUID);
    }

    #[test]
    fn cursor_reports_truncation_with_offset() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 2]);
        assert_eq!(c.u32(), Ok(1));
        let err = c.u32().unwrap_err();
        assert_eq!(err.offset, 4);
        assert_eq!(err.kind, DecodeErrorKind::Truncated { need: 4, have: 1 });
        assert_eq!(c.u8(), Ok(2));
        assert!(c.bytes(usize::MAX).is_err());
    }

    #[test]
    fn utf16_strings_match_the_standard_library() {
        // Lengths around the four-unit steps, ASCII or not, with a NUL or not.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 19) as usize;
            let units: Vec<u16> = (0..len)
                .map(|i| match (seed >> (i % 60)) & 7 {
                    0 if round % 3 == 0 => 0,
                    1 if round % 2 == 0 => 0xd800 | (i as u16),
                    2 if round % 5 == 0 => 0x00e9,
                    3 if round % 7 == 0 => 0x0180,
                    _ => 0x20 + (((seed >> i) & 0x3f) as u16),
                })
                .collect();
            let mut bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
            if round % 11 == 0 {
                bytes.push(0); // an odd byte after the units
            }
            let expected = units
                .iter()
                .position(|&u| u == 0)
                .map(|end| String::from_utf16_lossy(&units[..end]));
            let mut c = Cursor::new(&bytes);
            let got = c.utf16le_z();
            assert_eq!(got.map(|s| s.to_owned_string()), expected, "{units:x?}");
            if let (Some(got), Some(text)) = (got, &expected) {
                assert!(got.eq_str(text));
                assert!(!got.eq_str(&format!("{text}x")));
                assert_eq!(Utf16Str::new(got.as_bytes()), Some(got));
                if let Some(shorter) = text.get(..text.len().saturating_sub(1)) {
                    assert_eq!(got.eq_str(shorter), shorter == text);
                }
                assert_eq!(c.position(), got.as_bytes().len() + 2);
            } else {
                assert_eq!(c.position(), 0);
            }
        }
    }

    #[test]
    fn latin1_strings_compare_and_copy() {
        let mut c = Cursor::new(b"caf\xe9\0cmd.exe\0tail");
        let cafe = c.latin1_z().unwrap();
        assert_eq!(cafe.to_owned_string(), "caf\u{e9}");
        assert!(cafe.eq_str("caf\u{e9}") && !cafe.eq_str("caf"));
        let cmd = c.latin1_z().unwrap();
        assert!(cmd.eq_str("cmd.exe") && !cmd.eq_str("cmd.ex"));
        assert_eq!(c.latin1_z(), None);
        assert_eq!(c.rest(), b"tail");
    }

    #[test]
    fn pointer_size_from_flags() {
        assert_eq!(
            PointerSize::from_header_flags(0x40),
            Some(PointerSize::Eight)
        );
        assert_eq!(
            PointerSize::from_header_flags(0x20),
            Some(PointerSize::Four)
        );
        assert_eq!(PointerSize::from_header_flags(0x100), None);
    }
}

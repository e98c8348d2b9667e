//! Plain LZ77 "Xpress" decompression (MS-XCA §2.4, `COMPRESSION_FORMAT_XPRESS`),
//! the format of compressed `.etl` buffers (buffer flag 0x40).
//!
//! Written here rather than taken from a crate: of the registry crates
//! measured (`docs/etl-file-format.md` §2) none was at once
//! exact on every real buffer, panic-free on corrupt input and permissively
//! licensed. This one writes into a caller-sized slice, so a corrupt stream
//! can never make it allocate or run past the buffer's declared size.

use std::fmt;

/// Why a stream could not be decompressed. `input` is the offset in the
/// compressed bytes where decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XpressError {
    /// Offset in the compressed input.
    pub input: usize,
    /// Bytes written when the error was found.
    pub output: usize,
    /// What went wrong.
    pub kind: XpressErrorKind,
}

/// What went wrong while decompressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum XpressErrorKind {
    /// The input ends inside a flag word, token or length field.
    Truncated,
    /// A match refers to bytes before the start of the output.
    BadDistance {
        /// The match distance.
        distance: usize,
    },
    /// The stream would write more than the output holds.
    OutputOverflow,
    /// An extended match length is below its minimum (a corrupt stream).
    BadLength,
}

impl fmt::Display for XpressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            XpressErrorKind::Truncated => write!(f, "compressed data truncated"),
            XpressErrorKind::BadDistance { distance } => {
                write!(
                    f,
                    "match distance {distance} reaches before the output start"
                )
            }
            XpressErrorKind::OutputOverflow => write!(f, "decompressed data exceeds the buffer"),
            XpressErrorKind::BadLength => write!(f, "invalid match length"),
        }?;
        write!(
            f,
            " (input byte {}, output byte {})",
            self.input, self.output
        )
    }
}

impl std::error::Error for XpressError {}

/// Decompresses `input` into `out` and returns the number of bytes written.
/// Never writes past `out.len()`: a stream that would is an error. Bytes of
/// `out` after the returned count (or, on an error, after
/// [`XpressError::output`]) may have been overwritten as scratch space.
///
/// The stream ends on a 1 flag bit read when the input is exhausted (this
/// also covers a trailing flag word of all ones), or when the input runs out
/// exactly at a flag-word boundary.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, XpressError> {
    let mut d = Decoder {
        input,
        ip: 0,
        out,
        op: 0,
        flags: 0,
        flag_count: 0,
        half_byte: None,
    };
    loop {
        d.fast();
        if !d.step()? {
            return Ok(d.op);
        }
    }
}

struct Decoder<'i, 'o> {
    input: &'i [u8],
    ip: usize,
    out: &'o mut [u8],
    op: usize,
    /// The current flag word and how many of its bits are still unused
    /// (the next one is bit `flag_count - 1`).
    flags: u32,
    flag_count: u32,
    /// Position of the byte whose high nibble the next length-7 match uses.
    half_byte: Option<usize>,
}

/// Input bytes the fast loop needs ahead of it for one step: a flag word
/// and a 32-byte literal copy, or a flag word and the longest match token
/// (2 + 1 + 1 + 2 + 4 bytes).
const FAST_INPUT: usize = 4 + 32;
/// Output room the fast loop keeps for one literal run (copied as 32 bytes).
const FAST_OUTPUT: usize = 32;
/// No pending half byte, in [`Decoder::fast`]'s registers.
const NO_HALF: usize = usize::MAX;
/// Matches are copied in chunks of this many bytes (or half as many).
const CHUNK: usize = 16;

impl Decoder<'_, '_> {
    fn err(&self, kind: XpressErrorKind) -> XpressError {
        XpressError {
            input: self.ip,
            output: self.op,
            kind,
        }
    }

    /// The next `N` input bytes; the input position moves past them (to
    /// the end of the input when fewer remain).
    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], XpressError> {
        let end = self.ip.saturating_add(N);
        match self.input.get(self.ip..end) {
            Some(bytes) => {
                self.ip = end;
                <[u8; N]>::try_from(bytes).map_err(|_| self.err(XpressErrorKind::Truncated))
            }
            None => {
                // Where a byte-by-byte read would stop: at the end.
                self.ip = self.input.len();
                Err(self.err(XpressErrorKind::Truncated))
            }
        }
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, XpressError> {
        self.take::<1>().map(|[b]| b)
    }

    #[inline(always)]
    fn u16(&mut self) -> Result<u16, XpressError> {
        self.take().map(u16::from_le_bytes)
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, XpressError> {
        self.take().map(u32::from_le_bytes)
    }

    /// As many steps as can be taken far from the ends of the input and
    /// output, with positions in registers and fixed-size copies. Stops
    /// before a step it cannot take so (near an end, a match that is
    /// invalid, long-coded, too long for the room left or closer than 8
    /// bytes), leaving it to [`step`](Self::step), which takes it
    /// byte-exactly and reports errors.
    ///
    /// Each turn copies the pending run of literals (possibly none) as one
    /// 32-byte copy, then, unless the run used up the flag word, one match
    /// in 16- or 8-byte chunks: no branch on literal-or-match. Copies may
    /// write past the run or match into scratch space that the next turn
    /// overwrites.
    #[inline(never)]
    fn fast(&mut self) {
        let input = self.input;
        let out = &mut *self.out;
        let (mut ip, mut op) = (self.ip, self.op);
        // The pending half byte as a plain position (NO_HALF: none), which
        // keeps it in one register.
        let (mut flags, mut flag_count, mut half_byte) = (
            self.flags,
            self.flag_count,
            self.half_byte.unwrap_or(NO_HALF),
        );
        let (Some(input_end), Some(output_end)) = (
            input.len().checked_sub(FAST_INPUT),
            out.len().checked_sub(FAST_OUTPUT),
        ) else {
            return;
        };
        while ip <= input_end && op <= output_end {
            if flag_count == 0 {
                let Some(word) = array_at::<4>(input, ip) else {
                    break;
                };
                flags = u32::from_le_bytes(word);
                flag_count = 32;
                ip = ip.wrapping_add(4);
            }
            // flag_count is 1..=32 here: the shift is 0..=31.
            let pending = flags << (32u32.wrapping_sub(flag_count) & 31);
            let literals = pending.leading_zeros().min(flag_count);
            let Some(run) = array_at::<32>(input, ip) else {
                break;
            };
            put_array(out, op, run);
            ip = ip.wrapping_add(literals as usize);
            op = op.wrapping_add(literals as usize);
            flag_count = flag_count.wrapping_sub(literals);
            if flag_count == 0 {
                continue;
            }
            // The positions may have moved up to 32 bytes: the match needs
            // its own margins (its token is at most 4 bytes here).
            if ip > input_end.wrapping_add(32 - 4) || op > output_end {
                break;
            }
            let Some(token) = array_at::<2>(input, ip).map(u16::from_le_bytes) else {
                break;
            };
            let mut next = ip.wrapping_add(2);
            let mut next_half = half_byte;
            let distance = usize::from(token >> 3).wrapping_add(1);
            let mut length = usize::from(token & 7);
            if length == 7 {
                length = if next_half == NO_HALF {
                    next_half = next;
                    let low = input.get(next).copied().unwrap_or(0) & 0x0f;
                    next = next.wrapping_add(1);
                    usize::from(low)
                } else {
                    let high = input.get(next_half).copied().unwrap_or(0) >> 4;
                    next_half = NO_HALF;
                    usize::from(high)
                };
                if length == 15 {
                    length = usize::from(input.get(next).copied().unwrap_or(0));
                    next = next.wrapping_add(1);
                    if length == 255 {
                        // Rare long matches: step() reads their lengths.
                        break;
                    }
                    length = length.wrapping_add(15);
                }
                length = length.wrapping_add(7);
            }
            length = length.wrapping_add(3);
            let end = op.wrapping_add(length);
            if distance > op || distance < CHUNK / 2 || end > output_end {
                break;
            }
            let from = op.wrapping_sub(distance);
            // Each chunk reads only bytes before the one it writes
            // (distance >= chunk), so overlapping matches repeat as they
            // should; `end + CHUNK` is within `out`. Most matches take one
            // or two chunks.
            if distance >= CHUNK {
                copy_chunk::<CHUNK>(out, from, op);
                let mut at = CHUNK;
                while at < length {
                    copy_chunk::<CHUNK>(out, from.wrapping_add(at), op.wrapping_add(at));
                    at = at.wrapping_add(CHUNK);
                }
            } else {
                let mut at = 0;
                while at < length {
                    copy_chunk::<{ CHUNK / 2 }>(out, from.wrapping_add(at), op.wrapping_add(at));
                    at = at.wrapping_add(CHUNK / 2);
                }
            }
            op = end;
            ip = next;
            half_byte = next_half;
            flag_count = flag_count.wrapping_sub(1);
        }
        (self.ip, self.op) = (ip, op);
        (self.flags, self.flag_count) = (flags, flag_count);
        self.half_byte = (half_byte != NO_HALF).then_some(half_byte);
    }

    /// One step, byte-exact near the ends and on corrupt input: a flag
    /// word if none is pending, then a literal run or one match.
    /// `Ok(false)` at the end of the stream.
    fn step(&mut self) -> Result<bool, XpressError> {
        if self.flag_count == 0 {
            if self.ip == self.input.len() {
                return Ok(false);
            }
            self.flags = self.u32()?;
            self.flag_count = 32;
        }
        // The flag bits still to use, first one at the top: its leading
        // zeros are a run of literals, copied as one slice.
        let pending = self
            .flags
            .checked_shl(32u32.saturating_sub(self.flag_count))
            .unwrap_or(0);
        let literals = pending.leading_zeros().min(self.flag_count);
        if literals > 0 {
            self.literals(literals as usize)?;
            self.flag_count = self.flag_count.saturating_sub(literals);
            return Ok(true);
        }
        self.flag_count = self.flag_count.saturating_sub(1);
        if self.ip == self.input.len() {
            return Ok(false);
        }
        let token = self.u16()?;
        let distance = usize::from(token >> 3).saturating_add(1);
        let mut length = usize::from(token & 7);
        if length == 7 {
            length = match self.half_byte.take() {
                Some(at) => {
                    let b = self.input.get(at).copied().unwrap_or(0);
                    usize::from(b >> 4)
                }
                None => {
                    self.half_byte = Some(self.ip);
                    usize::from(self.byte()? & 0x0f)
                }
            };
            if length == 15 {
                length = usize::from(self.byte()?);
                if length == 255 {
                    length = usize::from(self.u16()?);
                    if length == 0 {
                        length = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
                    }
                    length = length
                        .checked_sub(15 + 7)
                        .ok_or(self.err(XpressErrorKind::BadLength))?;
                }
                length = length.saturating_add(15);
            }
            length = length.saturating_add(7);
        }
        length = length.saturating_add(3);
        self.copy_match(distance, length)?;
        Ok(true)
    }

    /// Copies `n` literal bytes as one slice. Errors as byte by byte: the
    /// bytes that fit are copied, then a missing input byte is `Truncated`
    /// and a byte with no room left is `OutputOverflow` (after reading it).
    fn literals(&mut self, n: usize) -> Result<(), XpressError> {
        let input_left = self.input.len().saturating_sub(self.ip);
        let room = self.out.len().saturating_sub(self.op);
        let k = n.min(input_left).min(room);
        let src = self.input.get(self.ip..self.ip.saturating_add(k));
        let dst = self.out.get_mut(self.op..self.op.saturating_add(k));
        if let (Some(src), Some(dst)) = (src, dst) {
            dst.copy_from_slice(src);
        }
        self.ip = self.ip.saturating_add(k);
        self.op = self.op.saturating_add(k);
        if k == n {
            Ok(())
        } else if k == input_left {
            Err(self.err(XpressErrorKind::Truncated))
        } else {
            self.ip = self.ip.saturating_add(1);
            Err(self.err(XpressErrorKind::OutputOverflow))
        }
    }

    fn copy_match(&mut self, distance: usize, length: usize) -> Result<(), XpressError> {
        let src = self
            .op
            .checked_sub(distance)
            .ok_or(self.err(XpressErrorKind::BadDistance { distance }))?;
        let end = self
            .op
            .checked_add(length)
            .filter(|&end| end <= self.out.len())
            .ok_or(self.err(XpressErrorKind::OutputOverflow))?;
        // One check covers the whole match: src < op < end <= out.len().
        let Some(window) = self.out.get_mut(src..end) else {
            return Err(self.err(XpressErrorKind::OutputOverflow));
        };
        if distance >= length {
            // Source and destination do not overlap: one bulk copy.
            let (from, to) = window.split_at_mut(distance);
            if let (Some(to), Some(from)) = (to.get_mut(..length), from.get(..length)) {
                to.copy_from_slice(from);
            }
        } else if distance == 1 {
            // A run of one byte.
            if let Some((first, rest)) = window.split_first_mut() {
                rest.fill(*first);
            }
        } else {
            // Overlapping: the match repeats its first `distance` bytes. The
            // bytes written so far are whole periods, so each step copies
            // all of them at once (doubling) without overlap.
            let mut have = distance;
            while have < window.len() {
                let n = have.min(window.len().saturating_sub(have));
                window.copy_within(..n, have);
                have = have.saturating_add(n);
            }
        }
        self.op = end;
        Ok(())
    }
}

/// Copies `out[from..from + N]` to `out[to..to + N]` as one fixed-size
/// load and store; out of range, nothing (callers check).
#[inline(always)]
fn copy_chunk<const N: usize>(out: &mut [u8], from: usize, to: usize) {
    if let Some(chunk) = array_at::<N>(out, from) {
        put_array(out, to, chunk);
    }
}

/// `N` bytes at `at` as an array (a fixed-size load), if there are `N`.
#[inline(always)]
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes
        .get(at..at.wrapping_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
}

/// Stores `value` at `at` (a fixed-size store); out of range, nothing.
#[inline(always)]
fn put_array<const N: usize>(bytes: &mut [u8], at: usize, value: [u8; N]) {
    if let Some(dst) = bytes
        .get_mut(at..at.wrapping_add(N))
        .and_then(|s| <&mut [u8; N]>::try_from(s).ok())
    {
        *dst = value;
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;

    fn run(input: &[u8], cap: usize) -> Result<Vec<u8>, XpressError> {
        let mut out = vec![0u8; cap];
        let n = decompress(input, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// MS-XCA plain LZ77 decoded one byte at a time: the oracle the
    /// decoder's chunked copies are checked against, errors included.
    fn reference(input: &[u8], out: &mut [u8]) -> Result<usize, XpressError> {
        use XpressErrorKind::*;
        let (mut ip, mut op) = (0usize, 0usize);
        let mut half_byte: Option<usize> = None;
        let err = |input, output, kind| XpressError {
            input,
            output,
            kind,
        };
        let take = |ip: &mut usize, n: usize| -> Option<u64> {
            let bytes = input.get(*ip..*ip + n)?;
            *ip += n;
            Some(
                bytes
                    .iter()
                    .rev()
                    .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
            )
        };
        loop {
            if ip == input.len() {
                return Ok(op);
            }
            let flags = take(&mut ip, 4).ok_or(err(input.len(), op, Truncated))? as u32;
            for bit in (0..32).rev() {
                if flags >> bit & 1 == 0 {
                    if ip == input.len() {
                        return Err(err(ip, op, Truncated));
                    }
                    if op == out.len() {
                        return Err(err(ip + 1, op, OutputOverflow));
                    }
                    out[op] = input[ip];
                    (ip, op) = (ip + 1, op + 1);
                    continue;
                }
                if ip == input.len() {
                    return Ok(op);
                }
                let truncated = |op| err(input.len(), op, Truncated);
                let token = take(&mut ip, 2).ok_or(truncated(op))? as usize;
                let distance = (token >> 3) + 1;
                let mut length = token & 7;
                if length == 7 {
                    length = match half_byte.take() {
                        Some(at) => usize::from(input[at] >> 4),
                        None => {
                            half_byte = Some(ip);
                            take(&mut ip, 1).ok_or(truncated(op))? as usize & 0x0f
                        }
                    };
                    if length == 15 {
                        length = take(&mut ip, 1).ok_or(truncated(op))? as usize;
                        if length == 255 {
                            length = take(&mut ip, 2).ok_or(truncated(op))? as usize;
                            if length == 0 {
                                length = take(&mut ip, 4).ok_or(truncated(op))? as usize;
                            }
                            length = length.checked_sub(22).ok_or(err(ip, op, BadLength))?;
                        }
                        length += 15;
                    }
                    length += 7;
                }
                length += 3;
                if distance > op {
                    return Err(err(ip, op, BadDistance { distance }));
                }
                if op + length > out.len() {
                    return Err(err(ip, op, OutputOverflow));
                }
                for _ in 0..length {
                    out[op] = out[op - distance];
                    op += 1;
                }
            }
        }
    }

    /// The compressed buffer bodies of a trace, with their inflated sizes.
    fn compressed_bodies(trace: &[u8]) -> Vec<(&[u8], usize)> {
        use crate::etl::layout::buffer;
        let mut bodies = Vec::new();
        let mut at = 0usize;
        while let Some(head) = trace.get(at..at + buffer::LEN) {
            let word = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().unwrap()) as usize;
            let (size, filled) = (word(buffer::BUFFER_SIZE), word(buffer::FILLED));
            let flags = u16::from_le_bytes([head[buffer::FLAGS], head[buffer::FLAGS + 1]]);
            if size < buffer::LEN {
                break;
            }
            if flags & buffer::FLAG_COMPRESSED != 0 {
                if let Some(body) = trace.get(at + buffer::LEN..at + size) {
                    bodies.push((body, filled.saturating_sub(buffer::LEN)));
                }
            }
            at += size;
        }
        bodies
    }

    /// Both decoders on `input` with `cap` bytes of room: the same result,
    /// the same error (offsets included) and the same bytes up to where
    /// each stopped.
    fn same_as_reference(input: &[u8], cap: usize) {
        let mut want = vec![0u8; cap];
        let mut got = vec![0x5au8; cap];
        let expected = reference(input, &mut want);
        let actual = decompress(input, &mut got);
        assert_eq!(actual, expected, "cap {cap}, {} input bytes", input.len());
        let n = match expected {
            Ok(n) => n,
            Err(e) => e.output,
        };
        assert!(got[..n] == want[..n], "output differs, cap {cap}");
    }

    #[test]
    fn chunked_copies_match_a_byte_by_byte_decoder() {
        // Real buffers, whole, cut short, with too little room and with
        // bytes changed; then random streams rich in short, overlapping
        // and long matches.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/etl/");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut real = 0;
        for name in ["perfview_net.4.5.2.x64.etl", "perfview_net.4.5.2.x86.etl"] {
            let trace = std::fs::read(format!("{dir}{name}")).unwrap();
            for (i, (body, inflated)) in compressed_bodies(&trace).into_iter().enumerate() {
                real += 1;
                same_as_reference(body, inflated);
                if i % 8 != 0 {
                    continue;
                }
                seed = xorshift(seed);
                same_as_reference(&body[..(seed as usize) % body.len()], inflated);
                same_as_reference(body, (seed as usize >> 20) % (inflated + 1));
                let mut bent = body.to_vec();
                for _ in 0..4 {
                    seed = xorshift(seed);
                    let at = (seed as usize) % bent.len();
                    bent[at] ^= (seed >> 56) as u8 | 1;
                }
                same_as_reference(&bent, inflated);
            }
        }
        assert!(real > 100, "only {real} compressed buffers found");
        for _ in 0..3000 {
            let mut stream = Vec::new();
            let mut produced = 0usize;
            for _ in 0..(1 + seed % 6) {
                seed = xorshift(seed);
                let flags = seed as u32;
                stream.extend_from_slice(&flags.to_le_bytes());
                for bit in (0..32).rev() {
                    seed = xorshift(seed);
                    if flags >> bit & 1 == 0 {
                        stream.push(seed as u8);
                        produced += 1;
                        continue;
                    }
                    let distance = match seed % 4 {
                        0 => 1 + (seed >> 8) as usize % 8,
                        1 => 8 + (seed >> 8) as usize % 9,
                        2 => 1 + (seed >> 8) as usize % 40,
                        _ => 1 + (seed >> 8) as usize % 8192,
                    }
                    .min(produced.max(1));
                    let length = match (seed >> 32) % 3 {
                        0 => 3 + (seed >> 40) as usize % 7,
                        1 => 3 + (seed >> 40) as usize % 40,
                        _ => 3 + (seed >> 40) as usize % 400,
                    };
                    let extra = length - 3;
                    let token = ((distance - 1) << 3) | extra.min(7);
                    stream.extend_from_slice(&(token as u16).to_le_bytes());
                    if extra >= 7 {
                        // Each extended length takes a byte of its own here
                        // (the low nibble; the high nibble 0 for the next).
                        let rest = extra - 7;
                        stream.push(rest.min(15) as u8);
                        if rest >= 15 {
                            let rest = rest - 15;
                            if rest < 255 {
                                stream.push(rest as u8);
                            } else {
                                stream.push(255);
                                stream.extend_from_slice(&((rest + 22) as u16).to_le_bytes());
                            }
                        }
                    }
                    produced += length;
                }
            }
            seed = xorshift(seed);
            for cap in [produced, produced + 64, (seed as usize) % (produced + 1)] {
                same_as_reference(&stream, cap);
            }
        }
    }

    #[test]
    fn literals_then_end_flag() {
        // Flags: three literal bits (0) then a 1 bit with the input exhausted.
        let flags: u32 = 0b0001 << 28;
        let mut input = flags.to_le_bytes().to_vec();
        input.extend_from_slice(b"abc");
        assert_eq!(run(&input, 16).unwrap(), b"abc");
    }

    #[test]
    fn overlapping_match_repeats() {
        // "a" then a match of distance 1, length 3+2=5 -> "aaaaaa".
        let flags: u32 = 0x7fff_ffff;
        let mut input = flags.to_le_bytes().to_vec();
        input.push(b'a');
        input.extend_from_slice(&2u16.to_le_bytes());
        let out = run(&input, 16).unwrap();
        assert_eq!(out, b"aaaaaa");
    }

    #[test]
    fn standalone_trailing_flag_word_ends_the_stream() {
        // 32 literals use up a flag word; the next word is all ones.
        let mut input = 0u32.to_le_bytes().to_vec();
        input.extend_from_slice(&[b'z'; 32]);
        input.extend_from_slice(&[0xff; 4]);
        assert_eq!(run(&input, 32).unwrap(), [b'z'; 32]);
    }

    #[test]
    fn extended_lengths_use_nibbles_bytes_and_words() {
        // Four matches of distance 1 after one literal: nibble (7+3+4=14),
        // shared high nibble (7+3+2=12), byte (15+7+3+10=35), word (300).
        let flags: u32 = 0x7fff_ffff;
        let mut input = flags.to_le_bytes().to_vec();
        input.push(b'x');
        input.extend_from_slice(&7u16.to_le_bytes());
        input.push(0x24); // low nibble 4 for this match, high nibble 2 for the next
        input.extend_from_slice(&7u16.to_le_bytes());
        input.extend_from_slice(&7u16.to_le_bytes());
        input.push(0xff); // low nibble 15 here, high nibble 15 for the next match
        input.push(10);
        input.extend_from_slice(&7u16.to_le_bytes());
        input.push(255);
        input.extend_from_slice(&(300u16 - 3).to_le_bytes());
        let out = run(&input, 1024).unwrap();
        assert_eq!(out.len(), 1 + 14 + 12 + 35 + 300);
        assert!(out.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn bad_distance_overflow_and_truncation_are_errors() {
        let flags: u32 = 1 << 31;
        let mut input = flags.to_le_bytes().to_vec();
        input.extend_from_slice(&(5u16 << 3).to_le_bytes());
        assert!(matches!(
            run(&input, 16).unwrap_err().kind,
            XpressErrorKind::BadDistance { distance: 6 }
        ));

        let flags: u32 = 0b01 << 30;
        let mut input = flags.to_le_bytes().to_vec();
        input.push(b'a');
        input.extend_from_slice(&6u16.to_le_bytes());
        assert_eq!(
            run(&input, 4).unwrap_err().kind,
            XpressErrorKind::OutputOverflow
        );

        assert_eq!(
            run(&[0, 0], 4).unwrap_err().kind,
            XpressErrorKind::Truncated
        );
        let flags: u32 = 0;
        let input = flags.to_le_bytes();
        assert_eq!(run(&input, 4).unwrap_err().kind, XpressErrorKind::Truncated);
    }
}

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
/// Never writes past `out.len()`: a stream that would is an error.
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
    };
    d.run()?;
    Ok(d.op)
}

struct Decoder<'i, 'o> {
    input: &'i [u8],
    ip: usize,
    out: &'o mut [u8],
    op: usize,
}

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

    fn run(&mut self) -> Result<(), XpressError> {
        let mut flags: u32 = 0;
        let mut flag_count: u32 = 0;
        // Position of the byte whose high nibble the next length-7 match uses.
        let mut half_byte: Option<usize> = None;
        loop {
            if flag_count == 0 {
                if self.ip == self.input.len() {
                    return Ok(());
                }
                flags = self.u32()?;
                flag_count = 32;
            }
            // The flag bits still to use, first one at the top: its leading
            // zeros are a run of literals, copied as one slice.
            let pending = flags
                .checked_shl(32u32.saturating_sub(flag_count))
                .unwrap_or(0);
            let literals = pending.leading_zeros().min(flag_count);
            if literals > 0 {
                self.literals(literals as usize)?;
                flag_count = flag_count.saturating_sub(literals);
                continue;
            }
            flag_count = flag_count.saturating_sub(1);
            if self.ip == self.input.len() {
                return Ok(());
            }
            let token = self.u16()?;
            let distance = usize::from(token >> 3).saturating_add(1);
            let mut length = usize::from(token & 7);
            if length == 7 {
                length = match half_byte.take() {
                    Some(at) => {
                        let b = self.input.get(at).copied().unwrap_or(0);
                        usize::from(b >> 4)
                    }
                    None => {
                        half_byte = Some(self.ip);
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
        }
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn run(input: &[u8], cap: usize) -> Result<Vec<u8>, XpressError> {
        let mut out = vec![0u8; cap];
        let n = decompress(input, &mut out)?;
        out.truncate(n);
        Ok(out)
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

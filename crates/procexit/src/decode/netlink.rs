//! Netlink framing shared by the process connector and taskstats: a
//! datagram holds one or more messages, each with a 16-byte `nlmsghdr`
//! (len u32, type u16, flags u16, seq u32, pid u32) and 4-byte alignment.

use super::{Cursor, DecodeError, DecodeErrorKind};

/// `NLMSG_HDRLEN`.
pub const NLMSG_HDR_LEN: usize = 16;
/// `NLMSG_ERROR`: an error or (errno 0) an ACK.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: also the type the connector sends its events with.
pub const NLMSG_DONE: u16 = 3;

/// Splits a datagram into its messages: (nlmsg_type, whole message, offset
/// of the message in the datagram). Stops after the first malformed header.
pub fn messages(
    datagram: &[u8],
) -> impl Iterator<Item = Result<(u16, &[u8], usize), DecodeError>> + '_ {
    let mut offset = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        let rest = datagram.get(offset..)?;
        if failed || rest.len() < NLMSG_HDR_LEN {
            return None;
        }
        let mut c = Cursor::new(rest);
        let header = (|| Ok::<_, DecodeError>((c.u32()? as usize, c.u16()?)))();
        let at = offset;
        let result = header.and_then(|(len, kind)| {
            let message = rest
                .get(..len)
                .filter(|_| len >= NLMSG_HDR_LEN)
                .ok_or(DecodeError {
                    offset: at,
                    kind: DecodeErrorKind::Invalid("nlmsg_len"),
                })?;
            offset = offset.saturating_add(len.saturating_add(3) & !3);
            Ok((kind, message, at))
        });
        if result.is_err() {
            failed = true;
        }
        Some(result)
    })
}

/// The errno of an `NLMSG_ERROR` message (0 is an ACK).
pub fn parse_error(message: &[u8]) -> Result<i32, DecodeError> {
    let mut c = Cursor::new(message);
    c.skip(NLMSG_HDR_LEN)?;
    c.i32().map(|e| e.saturating_neg())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_aligned_messages_and_stops_on_a_bad_length() {
        let mut d = vec![0u8; 20];
        d[0] = 18; // 18 bytes, padded to 20
        d[4] = 7;
        let mut second = vec![0u8; 16];
        second[0] = 16;
        second[4] = 3;
        d.extend_from_slice(&second);
        let got: Vec<_> = messages(&d)
            .map(|m| m.map(|(k, m, at)| (k, m.len(), at)))
            .collect();
        assert_eq!(got, vec![Ok((7, 18, 0)), Ok((3, 16, 20))]);
        let mut bad = d.clone();
        bad[0] = 200;
        let got: Vec<_> = messages(&bad).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }
}

//! Real-time loss notifications from the `Lost_Event` provider
//! ([`LOST_EVENT_GUID`](super::LOST_EVENT_GUID)).
//!
//! | opcode | name          | meaning                                   |
//! |--------|---------------|-------------------------------------------|
//! | 32     | RTLostEvent   | events were lost before reaching a buffer |
//! | 33     | RTLostBuffer  | whole buffers were lost                   |
//! | 34     | RTLostFile    | the backing file could not be written     |
//!
//! See docs/etw-process-events.md §1.7. These events carry no count,
//! so a consumer can only mark a gap of unknown size.

/// `RTLostEvent`: events were lost between the logger and a buffer.
pub const OPCODE_RT_LOST_EVENT: u8 = 32;
/// `RTLostBuffer`: one or more buffers were lost.
pub const OPCODE_RT_LOST_BUFFER: u8 = 33;
/// `RTLostFile`: the real-time backing file was lost.
pub const OPCODE_RT_LOST_FILE: u8 = 34;

/// Which kind of loss a `Lost_Event` notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostKind {
    /// Opcode 32.
    Event,
    /// Opcode 33.
    Buffer,
    /// Opcode 34.
    File,
}

/// Maps a `Lost_Event` opcode to its kind; `None` for any other opcode.
pub fn classify_lost(opcode: u8) -> Option<LostKind> {
    match opcode {
        OPCODE_RT_LOST_EVENT => Some(LostKind::Event),
        OPCODE_RT_LOST_BUFFER => Some(LostKind::Buffer),
        OPCODE_RT_LOST_FILE => Some(LostKind::File),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_three_opcodes_and_nothing_else() {
        assert_eq!(classify_lost(32), Some(LostKind::Event));
        assert_eq!(classify_lost(33), Some(LostKind::Buffer));
        assert_eq!(classify_lost(34), Some(LostKind::File));
        for op in (0..=u8::MAX).filter(|op| !(32..=34).contains(op)) {
            assert_eq!(classify_lost(op), None, "opcode {op}");
        }
    }
}

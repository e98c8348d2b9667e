//! The counters of a monitor, kept by the queue and read through
//! [`Monitor::stats`](crate::Monitor::stats).

/// Counters of a running (or stopped) monitor. Every exit the OS reported is
/// in `seen`; every one of those is then filtered, delivered, still queued,
/// or dropped. Exits the OS itself lost are in `lost`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Exits the backend reported.
    pub seen: u64,
    /// Exits the filter removed.
    pub filtered: u64,
    /// Exits handed to the consumer.
    pub delivered: u64,
    /// Exits dropped because the consumer was slower than the queue allowed.
    pub dropped: u64,
    /// Exits lost in the kernel or transport (known count; a lower bound when
    /// `overruns` is non-zero).
    pub lost: u64,
    /// Overruns the kernel reported without a count (netlink ENOBUFS, ETW
    /// real-time buffers lost).
    pub overruns: u64,
    /// Records that could not be decoded exactly (counted, not fatal).
    pub anomalies: u64,
    /// Windows: times the ETW session was stopped from outside (for example
    /// `logman stop`) and restarted; each is a gap of unknown size, marked
    /// `Lost { reason: SessionStopped }` in the stream.
    pub session_gaps: u64,
    /// Windows: live-process records (start time, command line from the
    /// start event) dropped to keep the table within its bounds (16 384
    /// processes, 16 MiB of command lines). Exits of those processes are
    /// still reported, with what their end event carries.
    pub evicted: u64,
}

impl Stats {
    /// Whether anything was lost or dropped.
    pub fn has_loss(&self) -> bool {
        self.dropped > 0 || self.lost > 0 || self.overruns > 0 || self.session_gaps > 0
    }
}

//! Where an exit is decided, for every source: state machines that turn
//! decoded OS events into exit records. No OS calls and no I/O: backends and
//! the `.etl` reader feed them events in order, and what the Linux table must
//! ask the OS (/proc, clocks) goes through its small [`linux::Host`] trait.
//!
//! - [`etw`]: ETW kernel Process and Kernel-Process events (live and `.etl`).
//! - [`linux`]: process connector events (threads, exec, resync, taskstats).

#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod bounded;
#[cfg(target_os = "linux")]
pub(crate) mod ebpf;
pub(crate) mod etw;
mod key_hash;
#[cfg(target_os = "linux")]
pub(crate) mod linux;

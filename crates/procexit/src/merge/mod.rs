//! Pure state machines that turn decoded OS events into exit records. No OS
//! calls and no I/O: backends and the `.etl` reader feed them events in order.

#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

#[cfg(target_os = "linux")]
pub(crate) mod ebpf;
pub(crate) mod etw;

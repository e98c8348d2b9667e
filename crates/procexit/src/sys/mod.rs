//! OS backends. Private: the public API wraps them.
//!
//! Each OS module provides, with these exact names:
//! - `fn start(config: &Config, sink: Sink) -> Result<Running>`:
//!   open the OS facility, spawn the backend thread with
//!   [`spawn_backend`](crate::backend::spawn_backend), and return at once.
//!   The thread puts exits and losses into the `Sink` (never blocking) and,
//!   once stopped, drains what the OS already delivered and returns.
//! - on Windows (and where nothing is supported), `struct Waiter` with
//!   `fn new(pids: &[u32]) -> Result<Waiter>` and
//!   `fn next_exit(&mut self, deadline: Option<Instant>) -> Result<Option<ProcessExit>>`,
//!   the per-OS waiter behind [`crate::wait::WaitSet`]; Linux's waiter is
//!   built on a public `Monitor` and lives in `wait/linux.rs`, over the
//!   pidfd calls of `sys::process`.
//!
//! All `unsafe` code of the crate lives below this module, each block with a
//! `// SAFETY:` comment.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

/// Elsewhere than Linux, `Auto` is decided inside the backend.
#[cfg(not(target_os = "linux"))]
pub(crate) fn resolve_backend(options: &Config<'_>) -> Backend {
    options.backend
}

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use self::windows::*;

#[cfg(not(any(target_os = "linux", windows)))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows)))]
pub(crate) use unsupported::*;

mod hint;
pub(crate) use hint::prefetch;

use crate::backend::Backend;
use crate::config::{LinuxOptions, WindowsOptions};

/// What a backend needs to start: the OS-facing options of a monitor. The
/// consumer-side settings (filter, queue) stay with the monitor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config<'a> {
    /// Which OS facility.
    pub(crate) backend: Backend,
    /// The monitor's filter: the Linux eBPF source applies what it can of
    /// it in the kernel.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) filter: &'a crate::filter::Filter,
    /// Linux options (read by the Linux backend only).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) linux: &'a LinuxOptions,
    /// Windows options (read by the Windows backend only).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) windows: &'a WindowsOptions,
}

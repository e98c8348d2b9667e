//! OS backends. Private: the public API wraps them.
//!
//! Each OS module provides, with these exact names:
//! - `fn start(options: &MonitorBuilder, sink: Sink) -> Result<Running>`:
//!   open the OS facility, spawn the backend thread with
//!   [`spawn_backend`](crate::monitor::spawn_backend), and return at once.
//!   The thread puts exits and losses into the `Sink` (never blocking) and,
//!   once stopped, drains what the OS already delivered and returns.
//! - `struct WaitSet` with `fn new(pids: &[u32]) -> Result<WaitSet>` and
//!   `fn next_exit(&mut self, deadline: Option<Instant>) -> Result<Option<ProcessExit>>`,
//!   used by [`crate::wait::WaitSet`].
//!
//! All `unsafe` code of the crate lives below this module, each block with a
//! `// SAFETY:` comment.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

/// Elsewhere than Linux, `Auto` is decided inside the backend.
#[cfg(not(target_os = "linux"))]
pub(crate) fn resolve_backend(options: &crate::monitor::MonitorBuilder) -> crate::monitor::Backend {
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

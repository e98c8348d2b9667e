//! procexit: learn how every process on a machine ended.
//!
//! One exit record ([`ProcessExit`]) and one API ([`Monitor`]) over the OS
//! facilities that report process exits system-wide:
//!
//! - Linux: an eBPF program on each process's last thread exit (root, or
//!   CAP_BPF + CAP_PERFMON, and a kernel with BTF): the complete record,
//!   with command line, CPU time, peak RSS, killer and OOM kills; otherwise
//!   the netlink process connector (unprivileged where the kernel allows
//!   it, CAP_NET_ADMIN elsewhere), merged with taskstats when permitted
//!   ([`Backend`] chooses);
//! - Windows: an ETW kernel trace session (or Microsoft-Windows-Kernel-Process),
//!   through raw FFI;
//! - any OS: Windows `.etl` trace files, read offline ([`etl`]).
//!
//! Loss is never silent: exits the kernel lost or the consumer was too slow
//! for arrive in order as [`Event::Lost`] and are counted in [`Stats`].
//!
//! ```no_run
//! use procexit::{Event, Filter, Monitor};
//!
//! let monitor = Monitor::builder()
//!     .filter(Filter::new().failed_only(true))
//!     .start()?;
//! while let Some(event) = monitor.recv() {
//!     if let Event::Exit(exit) = event {
//!         println!("{} ({}) ended with {}", exit.pid, exit.name.as_deref().unwrap_or("?"), exit.status);
//!     }
//! }
//! # Ok::<(), procexit::Error>(())
//! ```
//!
//! Layout: `decode` and `etl` are pure parsers of `&[u8]` (no OS calls, no
//! `unsafe`, never panic on input); `merge` decides what is an exit, for
//! every source; `sys` holds the OS backends and every `unsafe` block of the
//! crate; [`schema`] is what the JSON output prints.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod backend;
pub mod config;
pub(crate) mod decode;
mod error;
pub mod etl;
mod event;
mod exit_kind;
mod filter;
pub(crate) mod merge;
mod monitor;
// The names' text is used through build.rs's packed copy (exit_kind.rs);
// the statics themselves only in tests.
#[cfg_attr(not(test), allow(dead_code))]
mod ntstatus_names;
mod queue;
pub mod schema;
mod stats;
mod sys;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod test_skip;
#[doc(hidden)]
pub mod unstable;
mod wait;

pub use config::{LinuxOptions, Taskstats, WindowsOptions};
pub use decode::cgroup;
pub use error::{Error, Result};
pub use event::{
    format_rfc3339, signal_name, system_time_from_filetime, Event, ExitStatus, Killer, LossReason,
    ProcessExit, Resources, Rfc3339, Source, User,
};
pub use exit_kind::{
    ntstatus_name, win32_error_name, windows_status_name, ExitKind, DBG_TERMINATE_PROCESS,
    STATUS_CONTROL_C_EXIT,
};
pub use filter::Filter;
pub use monitor::{
    Backend, Iter, Limitation, Monitor, MonitorBuilder, RecvError, Stopper, DEFAULT_QUEUE_CAPACITY,
};
pub use stats::Stats;
pub use wait::WaitSet;

/// The README's Rust examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// So do docs/library.md's.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/library.md")]
struct LibraryDocDoctests;

//! What every OS backend shares with the public API: which facility
//! ([`Backend`]), how a started backend is stopped and joined
//! ([`Running`], [`StopSignal`]) and the thread it runs on
//! ([`spawn_backend`]). It sits below both `monitor` and `sys`, so neither
//! imports the other's internals.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::queue::Sink;

/// Which OS facility a monitor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The best one for this OS and privileges. Linux: the eBPF source when
    /// the process may load BPF programs (root, or CAP_BPF + CAP_PERFMON) and
    /// the kernel has BTF, else the process
    /// connector (plus taskstats when permitted). Windows: the ETW kernel
    /// session.
    #[default]
    Auto,
    /// Linux netlink process connector (taskstats added when permitted).
    LinuxConnector,
    /// Linux eBPF program on each process's last thread exit: the complete
    /// record (command line, CPU time, peak RSS, killer, OOM kill). Needs
    /// root, or CAP_BPF + CAP_PERFMON, and a kernel with BTF.
    LinuxEbpf,
    /// Windows: a private kernel system-logger session (Process MOF events).
    EtwKernel,
    /// Windows: Microsoft-Windows-Kernel-Process on an ordinary session
    /// (no command line; uses no system-logger slot).
    EtwKernelProcess,
}

/// What a backend hands back from `sys::start`: how to stop it and the
/// thread to join. The thread returns when the backend has stopped and
/// drained everything the OS had already delivered.
pub(crate) struct Running {
    pub(crate) stop: Arc<dyn StopSignal>,
    pub(crate) thread: JoinHandle<Result<()>>,
    /// Why `Backend::Auto` runs its second choice (see [`Monitor::fallback`](crate::Monitor::fallback)).
    pub(crate) fallback: Option<Error>,
}

/// Asks a backend to stop; must return promptly and be callable from any
/// thread, more than once.
pub(crate) trait StopSignal: Send + Sync {
    fn stop(&self);
}

/// Spawns a backend thread that runs `body` and then, however it ends
/// (return, error or panic), closes the stream so consumers never hang.
pub(crate) fn spawn_backend<F>(name: &str, sink: Sink, body: F) -> Result<JoinHandle<Result<()>>>
where
    F: FnOnce(&Sink) -> Result<()> + Send + 'static,
{
    struct CloseOnDrop(Sink);
    impl Drop for CloseOnDrop {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let guard = CloseOnDrop(sink);
            body(&guard.0)
        })
        .map_err(|e| Error::Os {
            call: "spawn",
            code: e.raw_os_error().unwrap_or(0),
        })
}

/// Record keys a monitor leaves null on this machine, and why (see
/// [`Monitor::limitations`](crate::Monitor::limitations)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limitation {
    /// The JSON keys left null (`"killer_pid"`, `"killer_name"`).
    pub keys: &'static [&'static str],
    /// Why: the part that did not load or attach, and the kernel's error.
    pub reason: String,
}

impl std::fmt::Display for Limitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} null: {}", self.keys.join(", "), self.reason)
    }
}

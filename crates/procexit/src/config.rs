//! OS-specific monitor options. Each is ignored on the other OS, so one
//! program can set both.

use std::time::Duration;

/// Whether the Linux backend adds taskstats (root / CAP_NET_ADMIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Taskstats {
    /// Use it when permitted, silently go without it otherwise.
    #[default]
    Auto,
    /// Never use it.
    Off,
    /// Fail to start when it cannot be used.
    Required,
}

/// Linux options (see docs/linux.md).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct LinuxOptions {
    taskstats: Taskstats,
    socket_buffer: usize,
    ebpf_args_at_exec: bool,
    ebpf_ring_buffer: usize,
}

/// 16 MiB effective: measured to lose nothing at 100 000 exits at ~30k/s,
/// where the 208 KiB default lost 0.2–2.4 %.
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;

impl Default for LinuxOptions {
    fn default() -> Self {
        LinuxOptions {
            taskstats: Taskstats::Auto,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
            ebpf_args_at_exec: false,
            ebpf_ring_buffer: DEFAULT_EBPF_RING_BUFFER,
        }
    }
}

impl LinuxOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Taskstats use (default [`Taskstats::Auto`]).
    pub fn taskstats(mut self, mode: Taskstats) -> Self {
        self.taskstats = mode;
        self
    }

    /// Netlink receive buffer asked for, in bytes (the kernel doubles it).
    /// Set with SO_RCVBUFFORCE where permitted, else capped by
    /// `net.core.rmem_max`. Default [`DEFAULT_SOCKET_BUFFER`].
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.socket_buffer = bytes;
        self
    }

    /// eBPF source: copy each command line when the program is executed
    /// rather than when it exits (default `false`). The source switches to
    /// this by itself on kernels that free the address space before the exit
    /// hook runs; forcing it costs a copy per exec and misses processes that
    /// were already running when the monitor started.
    pub fn ebpf_args_at_exec(mut self, yes: bool) -> Self {
        self.ebpf_args_at_exec = yes;
        self
    }

    /// eBPF source: size of the ring buffer between the kernel and procexit,
    /// in bytes, rounded up to a power of two of at least one page (default
    /// [`DEFAULT_EBPF_RING_BUFFER`]). When it is full, records are lost and
    /// counted.
    pub fn ebpf_ring_buffer(mut self, bytes: usize) -> Self {
        self.ebpf_ring_buffer = bytes;
        self
    }

    /// The eBPF ring buffer size asked for.
    pub fn ebpf_ring_buffer_bytes(&self) -> usize {
        self.ebpf_ring_buffer
    }

    /// Whether command lines are copied at exec (eBPF source).
    pub fn ebpf_args_at_exec_enabled(&self) -> bool {
        self.ebpf_args_at_exec
    }

    /// The taskstats mode.
    pub fn taskstats_mode(&self) -> Taskstats {
        self.taskstats
    }

    /// The socket buffer size asked for.
    pub fn socket_buffer_bytes(&self) -> usize {
        self.socket_buffer
    }
}

/// 8 MiB: about 9 000 exit records of the eBPF source with a 50-byte
/// command line (a record is 876 bytes plus its command line, at most
/// 2 KiB of it). Mapped into procexit, so it counts in its resident size.
pub const DEFAULT_EBPF_RING_BUFFER: usize = 8 << 20;

/// The default ETW session name; a stale session of this name left by a
/// crash is reclaimed at start.
pub const DEFAULT_SESSION_NAME: &str = "procexit";

/// Every ETW session name procexit uses starts with this (compared without
/// regard to case, as ETW compares names), so a leftover session it stops
/// to reclaim can only be one of its own.
pub const SESSION_NAME_PREFIX: &str = "procexit";

/// The default Windows flush interval. Windows rounds waits up to its
/// timer tick (15.625 ms unless a program asks for a finer one), so an
/// exit waits at most one tick for its buffer to be handed over: within
/// the 25 ms exit-to-line goal at the 95th percentile.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// Windows options (see docs/windows.md).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct WindowsOptions {
    session_name: String,
    flush_interval: Duration,
    buffer_size_kb: u32,
    min_buffers: Option<u32>,
    max_buffers: Option<u32>,
    service: bool,
}

impl Default for WindowsOptions {
    fn default() -> Self {
        WindowsOptions {
            session_name: DEFAULT_SESSION_NAME.into(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            buffer_size_kb: 64,
            min_buffers: None,
            max_buffers: None,
            service: false,
        }
    }
}

impl WindowsOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ETW session name (default [`DEFAULT_SESSION_NAME`]); it must start
    /// with [`SESSION_NAME_PREFIX`] (else start fails with
    /// [`Error::SessionNameRejected`](crate::Error::SessionNameRejected)).
    /// Its GUID is derived from the name, so two names never collide; one
    /// name runs one monitor at a time on a machine.
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = name.into();
        self
    }

    /// How often buffers are flushed to the consumer: the delivery latency
    /// (default [`DEFAULT_FLUSH_INTERVAL`]; ETW's own minimum flush timer
    /// is 1 s). Windows rounds the wait up to its timer tick (15.6 ms by
    /// default).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// ETW buffer size in KiB (default 64, at least 64 so one buffer holds a
    /// process event with the longest command line, at most 1024).
    pub fn buffer_size_kb(mut self, kb: u32) -> Self {
        self.buffer_size_kb = kb;
        self
    }

    /// Minimum and maximum buffer counts (default: scaled with the CPU count).
    pub fn buffers(mut self, min: u32, max: u32) -> Self {
        self.min_buffers = Some(min);
        self.max_buffers = Some(max);
        self
    }

    /// Whether the monitor runs inside a Windows service (default `false`).
    ///
    /// A service is not ended by logoff or shutdown console events (the
    /// service manager sends SERVICE_CONTROL_SHUTDOWN / PRESHUTDOWN
    /// instead, and the service stops the monitor then), so in service mode
    /// procexit's console handler leaves the session running on them. A
    /// console program stops its session on logoff and shutdown, also in
    /// session 0 (an OpenSSH login, a scheduled task). Told, never guessed:
    /// session 0 alone does not make a process a service.
    pub fn service(mut self, yes: bool) -> Self {
        self.service = yes;
        self
    }

    /// Whether service mode is set.
    pub fn is_service(&self) -> bool {
        self.service
    }

    /// The session name.
    pub fn session_name_str(&self) -> &str {
        &self.session_name
    }

    /// The flush interval.
    pub fn flush_interval_duration(&self) -> Duration {
        self.flush_interval
    }

    /// The buffer size in KiB.
    pub fn buffer_size(&self) -> u32 {
        self.buffer_size_kb
    }

    /// The (minimum, maximum) buffer counts, when set.
    pub fn buffer_counts(&self) -> (Option<u32>, Option<u32>) {
        (self.min_buffers, self.max_buffers)
    }
}

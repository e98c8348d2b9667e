//! The one API every backend serves: start a monitor, receive exits, stop.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::backend::{Backend, Limitation};
use crate::backend::{Running, StopSignal};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::filter::Filter;
use crate::queue::{Pop, Shared, Sink};
use crate::stats::Stats;
use crate::sys;

/// Options for a monitor; built with [`Monitor::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MonitorBuilder {
    pub(crate) filter: Filter,
    pub(crate) queue_capacity: usize,
    pub(crate) backend: Backend,
    pub(crate) linux: crate::config::LinuxOptions,
    pub(crate) windows: crate::config::WindowsOptions,
}

/// Default queue capacity: room for a burst of exits while the consumer is
/// busy, a few MB at most.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

impl Default for MonitorBuilder {
    fn default() -> Self {
        MonitorBuilder {
            filter: Filter::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            backend: Backend::Auto,
            linux: Default::default(),
            windows: Default::default(),
        }
    }
}

impl MonitorBuilder {
    /// Deliver only exits that pass this filter (the others are counted in
    /// `Stats::filtered`).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// How many events may wait for the consumer before exits are dropped
    /// (and counted). Default [`DEFAULT_QUEUE_CAPACITY`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Choose the OS facility (default [`Backend::Auto`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The backend [`start`](Self::start) will use: on Linux `Auto` is
    /// resolved for this process's privileges; elsewhere the choice is
    /// returned as set.
    pub fn resolved_backend(&self) -> Backend {
        sys::resolve_backend(&self.sys_config())
    }

    /// Linux-specific options (ignored elsewhere).
    pub fn linux(mut self, options: crate::config::LinuxOptions) -> Self {
        self.linux = options;
        self
    }

    /// Windows-specific options (ignored elsewhere).
    pub fn windows(mut self, options: crate::config::WindowsOptions) -> Self {
        self.windows = options;
        self
    }

    /// What the OS backend is given.
    fn sys_config(&self) -> sys::Config<'_> {
        sys::Config {
            backend: self.backend,
            filter: &self.filter,
            linux: &self.linux,
            windows: &self.windows,
        }
    }

    /// Starts the monitor; exits are received from the returned [`Monitor`]
    /// (`recv`, `recv_timeout`, `iter`).
    pub fn start(self) -> Result<Monitor> {
        let shared = Arc::new(Shared::new(self.queue_capacity, self.filter.clone()));
        let mut running = sys::start(&self.sys_config(), Sink::new(shared.clone()))?;
        Ok(Monitor {
            shared,
            fallback: running.fallback.take(),
            running: Some(running),
            dispatcher: None,
        })
    }

    /// Starts the monitor and calls `handler` for every event on a
    /// dedicated thread, until the monitor is stopped or dropped.
    pub fn start_with_handler<H>(self, mut handler: H) -> Result<Monitor>
    where
        H: FnMut(Event) + Send + 'static,
    {
        let mut monitor = self.start()?;
        let shared = monitor.shared.clone();
        let dispatcher = std::thread::Builder::new()
            .name("procexit-dispatch".into())
            .spawn(move || {
                while let Pop::Event(event) = shared.pop(None) {
                    handler(event);
                }
            })
            .map_err(|e| Error::Os {
                call: "spawn",
                code: e.raw_os_error().unwrap_or(0),
            })?;
        monitor.dispatcher = Some(dispatcher);
        Ok(monitor)
    }
}

/// Why [`Monitor::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The time ran out; the monitor is still running.
    Timeout,
    /// The monitor stopped and every event was received.
    Stopped,
}

/// A running system-wide exit monitor. Stops on [`Monitor::stop`] or drop.
///
/// ```no_run
/// use procexit::{Event, Monitor};
///
/// let monitor = Monitor::builder().start()?;
/// for event in &monitor {
///     match event {
///         Event::Exit(exit) => println!("{} {} {}", exit.pid, exit.status, exit.name.unwrap_or_default()),
///         Event::Lost { count, .. } => eprintln!("lost {count} exits"),
///         _ => {}
///     }
/// }
/// # Ok::<(), procexit::Error>(())
/// ```
pub struct Monitor {
    shared: Arc<Shared>,
    running: Option<Running>,
    dispatcher: Option<JoinHandle<()>>,
    fallback: Option<Error>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("running", &self.running.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Monitor {
    /// Options for a new monitor.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::default()
    }

    /// Blocks until the next event; `None` once the monitor stopped and
    /// everything was received.
    pub fn recv(&self) -> Option<Event> {
        match self.shared.pop(None) {
            Pop::Event(event) => Some(event),
            Pop::TimedOut | Pop::Ended => None,
        }
    }

    /// Like [`recv`](Self::recv) but gives up after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<Event, RecvError> {
        let deadline = Instant::now().checked_add(timeout);
        match self.shared.pop(deadline) {
            Pop::Event(event) => Ok(event),
            Pop::TimedOut => Err(RecvError::Timeout),
            Pop::Ended => Err(RecvError::Stopped),
        }
    }

    /// A blocking iterator over events; it ends when the monitor stops.
    pub fn iter(&self) -> Iter<'_> {
        Iter { monitor: self }
    }

    /// Why [`Backend::Auto`] did not start its first choice, if it did not:
    /// on Linux, the error that stopped the eBPF source from loading (the
    /// process connector runs instead). `None` when the first choice runs
    /// or a backend was forced.
    pub fn fallback(&self) -> Option<&Error> {
        self.fallback.as_ref()
    }

    /// The record keys this monitor leaves null on this machine although
    /// its source fills them elsewhere (a kernel without a hook or helper
    /// the source uses), each with the reason; empty when the source gives
    /// its full record. Known once [`MonitorBuilder::start`] returned.
    pub fn limitations(&self) -> Vec<Limitation> {
        self.shared.limitations()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// A handle that stops this monitor from another thread (for example a
    /// Ctrl-C handler); the consumer then receives what is left and the end.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            signal: self.running.as_ref().map(|r| r.stop.clone()),
        }
    }

    /// Stops the monitor: the backend drains what the OS already delivered,
    /// then the stream ends. Returns the final counters, or the error that
    /// stopped the backend early.
    pub fn stop(mut self) -> Result<Stats> {
        self.shutdown()?;
        Ok(self.stats())
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut result = Ok(());
        if let Some(running) = self.running.take() {
            running.stop.stop();
            result = match running.thread.join() {
                Ok(r) => r,
                Err(panic) => Err(Error::ThreadPanicked(panic_message(&panic))),
            };
            self.shared.close();
        }
        if let Some(dispatcher) = self.dispatcher.take() {
            if let Err(panic) = dispatcher.join() {
                if result.is_ok() {
                    result = Err(Error::ThreadPanicked(panic_message(&panic)));
                }
            }
        }
        result
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // Errors were the caller's to collect with stop(); dropping only
        // guarantees that nothing keeps running.
        let _ = self.shutdown();
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Stops a [`Monitor`] from another thread. Cloneable.
#[derive(Clone)]
pub struct Stopper {
    signal: Option<Arc<dyn StopSignal>>,
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper").finish_non_exhaustive()
    }
}

impl Stopper {
    /// Asks the monitor to stop; returns at once.
    pub fn stop(&self) {
        if let Some(signal) = &self.signal {
            signal.stop();
        }
    }
}

/// Blocking iterator over a monitor's events, from [`Monitor::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    monitor: &'a Monitor,
}

impl Iterator for Iter<'_> {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.monitor.recv()
    }
}

impl<'a> IntoIterator for &'a Monitor {
    type Item = Event;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

//! Windows backend: a real-time ETW session through raw FFI (windows-sys
//! only), and `wait` through process handles.
//!
//! Threads of a running monitor:
//! - consumer: ProcessTrace → [`consumer::on_event`] → tracker → sink;
//! - control (the backend thread): [`supervise::supervise`] flushes every
//!   `flush_interval`, polls the loss counters, restarts a session stopped
//!   from outside, and on stop runs STOP → join consumer → CloseTrace →
//!   free the callback context (docs/etw-process-events.md §4).
//!
//! Everything that can fail (the name lock, StartTraceW, EnableTraceEx2,
//! OpenTraceW) runs before any thread exists, so a failed start leaves
//! nothing behind.

mod console;
mod consumer;
mod ffi;
mod lock;
mod plan;
mod properties;
mod session;
mod supervise;
mod trace;
mod wait;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use consumer::Context;
use ffi::{os_error, ACCESS_DENIED, NOT_RUNNING};
use lock::NameLock;
use plan::Plan;
use properties::LossCounters;
use session::Session;
use supervise::{supervise, Lifecycle, Stop};
use trace::TraceReader;

use crate::backend::{spawn_backend, Backend, Running};
use crate::config::WindowsOptions;
use crate::error::{Error, Result};
use crate::event::Source;
use crate::queue::Sink;
use crate::sys::Config;

pub(crate) use wait::Waiter;

/// How often the loss counters are polled.
const QUERY_EVERY: Duration = Duration::from_secs(1);
/// How long ProcessTrace may take to return after STOP before the trace is
/// closed under it (Microsoft warns of several seconds' lag).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// ERROR_TIMEOUT.
const TIMEOUT: u32 = 1460;

/// Threads this backend started that are still running (tests check that
/// nothing leaks).
pub(crate) static LIVE_THREADS: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn start(options: &Config<'_>, sink: Sink) -> Result<Running> {
    let win = options.windows.clone();
    let plan = Plan::choose(options.backend)?;
    session::check_name(win.session_name_str())?;
    // Before any session exists: a second monitor of this name must not
    // touch the first one's session.
    let lock = NameLock::acquire(win.session_name_str())?;
    let session = start_session(options.backend, plan, &win)?;
    let source = match session.plan {
        Plan::KernelProcess => Source::EtwKernelProcess,
        Plan::PrivateKernel { .. } => Source::EtwKernel,
    };
    let context = Arc::new(Context::new(sink.clone(), source));
    let attached = Attached::open(session, &context)?;
    let live = Live {
        backend: options.backend,
        options: win.clone(),
        context,
        current: Some(attached),
        _lock: lock,
    };
    let stop = Arc::new(Stop::default());
    let flush_interval = win.flush_interval_duration().max(Duration::from_millis(1));
    LIVE_THREADS.fetch_add(1, Ordering::SeqCst);
    let thread = spawn_backend("procexit-etw", sink, {
        let stop = stop.clone();
        move |sink| {
            let _count = ThreadCount;
            supervise(live, sink, &stop, flush_interval, QUERY_EVERY)
        }
    })
    .inspect_err(|_| {
        LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
    })?;
    Ok(Running {
        stop,
        thread,
        fallback: None,
    })
}

/// Starts the session for `plan`; `Backend::Auto` falls back from the
/// kernel session to Kernel-Process on any failure the latter may not
/// share (no system-logger slot, containers, clock-type limits, rights
/// that allow ordinary sessions only).
fn start_session(backend: Backend, plan: Plan, options: &WindowsOptions) -> Result<Session> {
    match Session::start(plan, options) {
        Err(e) if backend == Backend::Auto && plan != Plan::KernelProcess && falls_back(&e) => {
            Session::start(Plan::KernelProcess, options)
        }
        other => other,
    }
}

/// Whether a failed kernel-session start is worth retrying with
/// Kernel-Process: not when elevation is missing or the name is the
/// problem, which the other session would meet the same way.
fn falls_back(error: &Error) -> bool {
    !matches!(
        error,
        Error::NotElevated { .. }
            | Error::SessionNameRejected { .. }
            | Error::SessionNotOurs { .. }
            | Error::SessionExists { .. }
            | Error::AlreadyRunning { .. }
    )
}

/// Decrements [`LIVE_THREADS`] when a counted thread ends.
struct ThreadCount;

impl Drop for ThreadCount {
    fn drop(&mut self) {
        LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn_counted<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    LIVE_THREADS.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _count = ThreadCount;
            body()
        })
        .map_err(|e| {
            LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
            os_error("CreateThread", e.raw_os_error().unwrap_or(0) as u32)
        })
}

/// A started session with its consumer thread.
struct Attached {
    session: Session,
    reader: Arc<TraceReader>,
    consumer: JoinHandle<u32>,
}

impl Attached {
    /// Opens the consumer on a started session and runs ProcessTrace on its
    /// own thread; on failure the session is stopped.
    fn open(mut session: Session, context: &Arc<Context>) -> Result<Attached> {
        let reader = match TraceReader::open(session.name(), context) {
            Ok(reader) => Arc::new(reader),
            Err(code) => {
                let _ = session.stop();
                // Right after our own StartTraceW succeeded, access denied
                // means ETW does not work here (Wine's stub), not missing
                // elevation.
                return Err(if code == ACCESS_DENIED {
                    Error::EtwUnavailable {
                        call: "OpenTraceW",
                        code,
                    }
                } else {
                    ffi::etw_error("OpenTraceW", code, session.name())
                });
            }
        };
        let consumer = spawn_counted("procexit-etw-consumer", {
            let reader = reader.clone();
            let context = context.clone();
            move || {
                let rc = reader.process();
                reader.close();
                // Only now may the context go: no callback can run any more.
                drop(context);
                rc
            }
        })
        .inspect_err(|_| {
            let _ = session.stop();
        })?;
        Ok(Attached {
            session,
            reader,
            consumer,
        })
    }

    /// Lets go of a session that ended without our stop: never STOP it
    /// (the name may be another session's by now), close, join.
    fn abandon(mut self) {
        self.session.forget();
        self.reader.close();
        let _ = self.consumer.join();
    }

    /// STOP first: ETW then delivers what is buffered and ProcessTrace
    /// returns; CloseTrace after a grace period; then join.
    fn shutdown(mut self) -> (Option<LossCounters>, Result<()>) {
        let (last, mut error) = match self.session.stop() {
            Ok(last) => (last, None),
            Err(e) => (None, Some(e)),
        };
        wait_until(Instant::now() + STOP_GRACE, || self.consumer.is_finished());
        self.reader.close();
        // CloseTrace ends ProcessTrace once the buffers are drained. Should
        // both STOP and CloseTrace fail to, stop() must not hang: the thread
        // is left with its own Arc<Context>, so a late callback is safe.
        if !wait_until(Instant::now() + STOP_GRACE, || self.consumer.is_finished()) {
            let e = error.unwrap_or_else(|| os_error("ProcessTrace", TIMEOUT));
            return (last, Err(e));
        }
        match self.consumer.join() {
            // After our stop ProcessTrace returns 0 (or 4201 once the
            // session is gone); anything else is reported.
            Ok(0 | NOT_RUNNING) => {}
            Ok(rc) => error = error.or(Some(os_error("ProcessTrace", rc))),
            Err(_) => {
                error = error.or(Some(Error::ThreadPanicked("ETW consumer thread".into())));
            }
        }
        (last, error.map_or(Ok(()), Err))
    }
}

/// The live monitor the control loop drives.
struct Live {
    backend: Backend,
    options: WindowsOptions,
    context: Arc<Context>,
    /// `None` after a restart failed.
    current: Option<Attached>,
    /// Held until the monitor is gone.
    _lock: NameLock,
}

impl Lifecycle for Live {
    fn name(&self) -> &str {
        self.options.session_name_str()
    }

    fn consumer_ended(&self) -> bool {
        self.current
            .as_ref()
            .is_none_or(|a| a.consumer.is_finished())
    }

    fn flush(&self) {
        // A failed flush only delays delivery to ETW's 1 s timer.
        if let Some(a) = &self.current {
            let _ = a.session.flush();
        }
    }

    fn query(&self) -> Option<LossCounters> {
        self.current.as_ref()?.session.query().ok()
    }

    fn restart(&mut self) -> Result<()> {
        let plan = match self.current.take() {
            Some(old) => {
                let plan = old.session.plan;
                old.abandon();
                plan
            }
            None => Plan::choose(self.backend)?,
        };
        let session = start_session(self.backend, plan, &self.options)?;
        self.current = Some(Attached::open(session, &self.context)?);
        Ok(())
    }

    fn shutdown(mut self) -> (Option<LossCounters>, Result<()>) {
        match self.current.take() {
            Some(a) => a.shutdown(),
            None => (None, Ok(())),
        }
    }
}

#[cfg(test)]
#[test]
fn auto_falls_back_unless_the_other_session_would_fail_the_same_way() {
    let name = || "procexit".to_owned();
    for e in [
        Error::NoSessionSlots { code: 1450 },
        Error::Os {
            call: "StartTraceW",
            code: 87,
        },
        Error::Os {
            call: "StartTraceW",
            code: 50,
        },
    ] {
        assert!(falls_back(&e), "{e:?}");
    }
    for e in [
        Error::NotElevated { code: 5 },
        Error::SessionNameRejected { name: name() },
        Error::SessionNotOurs { name: name() },
        Error::SessionExists {
            name: name(),
            code: 183,
        },
        Error::AlreadyRunning { name: name() },
    ] {
        assert!(!falls_back(&e), "{e:?}");
    }
}

/// Polls `done` every 10 ms until it holds (`true`) or `deadline` passed.
fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests;

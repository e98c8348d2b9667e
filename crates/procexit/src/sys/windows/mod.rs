//! Windows backend: a real-time ETW session through raw FFI (windows-sys
//! only), and `wait` through process handles.
//!
//! Threads of a running monitor:
//! - consumer: ProcessTrace → [`consumer::on_event`] → tracker → sink;
//! - control (the backend thread): flushes every `flush_interval`, polls
//!   the loss counters, and on stop runs STOP → join consumer → CloseTrace
//!   → free the callback context (docs/etw-process-events.md §4.5).
//!
//! Everything that can fail (StartTraceW, EnableTraceEx2, OpenTraceW) runs
//! before any thread exists, so a failed start leaves nothing behind.

mod consumer;
mod ffi;
mod plan;
mod properties;
mod session;
mod trace;
mod wait;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use consumer::Context;
use ffi::{os_error, ACCESS_DENIED, NOT_RUNNING};
use plan::Plan;
use properties::LossCounters;
use session::Session;
use trace::TraceReader;

use crate::error::{Error, Result};
use crate::event::Source;
use crate::monitor::{spawn_backend, Backend, MonitorBuilder, Running, StopSignal};
use crate::queue::Sink;

pub(crate) use wait::WaitSet;

/// How often the loss counters are polled.
const QUERY_EVERY: Duration = Duration::from_secs(1);
/// How long ProcessTrace may take to return after STOP before the trace is
/// closed under it (MS warns of several seconds' lag).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// ERROR_TIMEOUT.
const TIMEOUT: u32 = 1460;

/// Threads this backend started that are still running (tests check that
/// nothing leaks).
pub(crate) static LIVE_THREADS: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn start(options: &MonitorBuilder, sink: Sink) -> Result<Running> {
    let win = &options.windows;
    let plan = Plan::choose(options.backend)?;
    let session = match Session::start(plan, win) {
        // No system-logger slot: Kernel-Process needs none (docs/etw-process-events.md §5).
        Err(Error::NoSessionSlots { .. })
            if options.backend == Backend::Auto && plan != Plan::KernelProcess =>
        {
            Session::start(Plan::KernelProcess, win)?
        }
        other => other?,
    };
    run(session, sink, win.flush_interval_duration())
}

/// Opens the consumer on a started session and spawns the two threads.
fn run(mut session: Session, sink: Sink, flush_interval: Duration) -> Result<Running> {
    let source = match session.plan {
        Plan::KernelProcess => Source::EtwKernelProcess,
        _ => Source::EtwKernel,
    };
    let context = Arc::new(Context::new(sink.clone(), source));
    let reader = match TraceReader::open(session.name(), &context) {
        Ok(reader) => Arc::new(reader),
        Err(code) => {
            let _ = session.stop();
            // Right after our own StartTraceW succeeded, access denied means
            // ETW does not work here (Wine's stub), not missing elevation.
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
    let stop = Arc::new(Stop::default());
    let control = Control {
        session,
        reader,
        context,
        consumer,
        stop: stop.clone(),
        flush_interval: flush_interval.max(Duration::from_millis(1)),
    };
    LIVE_THREADS.fetch_add(1, Ordering::SeqCst);
    let thread = spawn_backend("procexit-etw", sink, move |sink| {
        let _count = ThreadCount;
        control.run(sink)
    })
    .inspect_err(|_| {
        LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
    })?;
    Ok(Running { stop, thread })
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

/// The stop request: a flag and a condvar the control thread sleeps on.
#[derive(Default)]
struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal for Stop {
    fn stop(&self) {
        *self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

impl Stop {
    /// Sleeps up to `timeout`; `true` once a stop was requested.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, timeout, |requested| !*requested)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

struct Control {
    session: Session,
    reader: Arc<TraceReader>,
    context: Arc<Context>,
    consumer: JoinHandle<u32>,
    stop: Arc<Stop>,
    flush_interval: Duration,
}

impl Control {
    fn run(mut self, sink: &Sink) -> Result<()> {
        let mut seen = LossCounters::default();
        let mut last_query = Instant::now();
        let mut error = None;
        let mut ended_early = false;
        while !self.stop.wait(self.flush_interval) {
            if self.consumer.is_finished() {
                // ProcessTrace ended without our STOP: the session was
                // stopped from outside (logman, another tool) or failed.
                ended_early = true;
                break;
            }
            // A failed flush only delays delivery to ETW's 1 s timer.
            let _ = self.session.flush();
            if last_query.elapsed() >= QUERY_EVERY {
                last_query = Instant::now();
                if let Ok(now) = self.session.query() {
                    report_loss(sink, &self.context, &mut seen, now);
                }
            }
        }
        // STOP first: ETW then delivers what is buffered and ProcessTrace
        // returns (docs/etw-process-events.md §4.5).
        match self.session.stop() {
            Ok(Some(last)) => report_loss(sink, &self.context, &mut seen, last),
            Ok(None) => {}
            Err(e) => error = Some(e),
        }
        wait_until(Instant::now() + STOP_GRACE, || self.consumer.is_finished());
        self.reader.close();
        // CloseTrace ends ProcessTrace once the buffers are drained. Should
        // both STOP and CloseTrace fail to, stop() must not hang: the thread
        // is left with its own Arc<Context>, so a late callback is safe.
        if !wait_until(Instant::now() + STOP_GRACE, || self.consumer.is_finished()) {
            return Err(error.unwrap_or_else(|| os_error("ProcessTrace", TIMEOUT)));
        }
        let rc = match self.consumer.join() {
            Ok(rc) => rc,
            Err(_) => return Err(Error::ThreadPanicked("ETW consumer thread".into())),
        };
        // After our stop ProcessTrace returns 0 (or 4201 once the session
        // is gone); anything else, or any early end, is reported.
        if ended_early || (rc != 0 && rc != NOT_RUNNING) {
            let code = if rc == 0 { NOT_RUNNING } else { rc };
            error = Some(os_error("ProcessTrace", code));
        }
        drop(self.context);
        error.map_or(Ok(()), Err)
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

/// Puts counter increases into the stream, minus what Lost_Event
/// notifications already reported in-band.
pub(crate) fn report_loss(
    sink: &Sink,
    context: &Context,
    seen: &mut LossCounters,
    now: LossCounters,
) {
    let events = now.events_lost.saturating_sub(seen.events_lost);
    let buffers = now
        .realtime_buffers_lost
        .saturating_sub(seen.realtime_buffers_lost);
    *seen = LossCounters {
        events_lost: seen.events_lost.max(now.events_lost),
        realtime_buffers_lost: seen.realtime_buffers_lost.max(now.realtime_buffers_lost),
    };
    let inband_events = take_up_to(&context.inband_lost_events, u64::from(events));
    sink.lost(u64::from(events) - inband_events);
    let inband_buffers = take_up_to(&context.inband_lost_buffers, u64::from(buffers));
    for _ in inband_buffers..u64::from(buffers) {
        sink.overrun(0);
    }
}

/// Subtracts up to `max` from `counter`; returns how much was taken.
fn take_up_to(counter: &std::sync::atomic::AtomicU64, max: u64) -> u64 {
    let mut taken = 0;
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        taken = v.min(max);
        Some(v - taken)
    });
    taken
}

#[cfg(test)]
mod tests;

//! The control loop of a running monitor, apart from the Win32 calls so
//! that every path is unit-tested with a fake: flush, poll the loss
//! counters (the one authority for how much was lost), notice a session
//! stopped from outside and restart it, and finally stop
//! (docs/windows-sessions.md).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::properties::LossCounters;
use crate::backend::StopSignal;
use crate::error::{Error, Result};
use crate::queue::Sink;

/// A session stopped from outside more often than this within
/// [`RESTART_WINDOW`] is given up on: something keeps stopping it.
pub(crate) const MAX_RESTARTS: usize = 5;
pub(crate) const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// What the control loop drives: the live session and its consumer.
pub(crate) trait Lifecycle {
    /// The session's name, for errors.
    fn name(&self) -> &str;
    /// Whether ProcessTrace returned (without our stop: the loop checks
    /// this only before asking for one).
    fn consumer_ended(&self) -> bool;
    /// Hands partly filled buffers to the consumer now.
    fn flush(&self);
    /// The session's cumulative loss counters, when ETW answers.
    fn query(&self) -> Option<LossCounters>;
    /// After an unexpected end: let go of the dead session without
    /// stopping anything (its name may already be someone else's), start
    /// a new one and consume it.
    fn restart(&mut self) -> Result<()>;
    /// Our stop: STOP, let the consumer drain, close, join. Returns the
    /// final counters when ETW gave them.
    fn shutdown(self) -> (Option<LossCounters>, Result<()>);
}

/// The stop request: a flag and a condvar the control loop sleeps on.
#[derive(Default)]
pub(crate) struct Stop {
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
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
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

/// Loss counters already reported for the current session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LossLedger {
    seen: LossCounters,
}

/// Puts the counters' increases since the last reading into the stream
/// and the stats: `EventsLost` as lost events, `RealTimeBuffersLost` as
/// overruns. These polled deltas are the only count of loss; ETW's in-band
/// lost-event records only mark where a gap is (see `consumer`).
pub(crate) fn report_loss(sink: &Sink, ledger: &mut LossLedger, now: LossCounters) {
    let seen = &mut ledger.seen;
    let events = now.events_lost.saturating_sub(seen.events_lost);
    let buffers = now
        .realtime_buffers_lost
        .saturating_sub(seen.realtime_buffers_lost);
    seen.events_lost = seen.events_lost.max(now.events_lost);
    seen.realtime_buffers_lost = seen.realtime_buffers_lost.max(now.realtime_buffers_lost);
    sink.lost(u64::from(events));
    sink.overruns(u64::from(buffers));
}

/// Runs until a stop is requested (or the session cannot be kept alive).
pub(crate) fn supervise<L: Lifecycle>(
    mut live: L,
    sink: &Sink,
    stop: &Stop,
    flush_interval: Duration,
    query_every: Duration,
) -> Result<()> {
    let mut ledger = LossLedger::default();
    let mut last_query = Instant::now();
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    while !stop.wait(flush_interval) {
        if live.consumer_ended() {
            // Stopped from outside (logman, another tool) or failed: the
            // events since the last delivery are gone, how many is unknown.
            sink.session_stopped();
            let now = Instant::now();
            restarts.retain(|&t| now.duration_since(t) < RESTART_WINDOW);
            restarts.push_back(now);
            if restarts.len() > MAX_RESTARTS {
                let name = live.name().to_owned();
                let _ = live.shutdown();
                return Err(Error::SessionKeptStopping {
                    name,
                    times: restarts.len(),
                });
            }
            if let Err(e) = live.restart() {
                let _ = live.shutdown();
                return Err(e);
            }
            // A new session counts from zero.
            ledger = LossLedger::default();
            last_query = Instant::now();
            continue;
        }
        live.flush();
        if last_query.elapsed() >= query_every {
            last_query = Instant::now();
            if let Some(now) = live.query() {
                report_loss(sink, &mut ledger, now);
            }
        }
    }
    let (last, result) = live.shutdown();
    if let Some(last) = last {
        report_loss(sink, &mut ledger, last);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, LossReason};
    use crate::filter::Filter;
    use crate::queue::{Pop, Shared};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Arc;

    /// A scripted session: its consumer ends at the given flush counts,
    /// QUERY answers from a list, a stop is requested after `stop_after`
    /// flushes.
    struct Fake {
        stop: Arc<Stop>,
        flushes: Cell<usize>,
        stop_after: usize,
        /// Flush counts after which the consumer is found ended.
        ends_after: Vec<usize>,
        ended: Cell<bool>,
        restarts: usize,
        restart_fails: bool,
        /// Counter readings, one per QUERY (the last repeats).
        readings: Vec<LossCounters>,
        queries: Cell<usize>,
        final_counters: Option<LossCounters>,
        shutdowns: Rc<Cell<usize>>,
    }

    // The fake lives on one thread; Cell is enough.
    impl Fake {
        fn new(stop: &Arc<Stop>, stop_after: usize) -> Fake {
            Fake {
                stop: stop.clone(),
                flushes: Cell::new(0),
                stop_after,
                ends_after: Vec::new(),
                ended: Cell::new(false),
                restarts: 0,
                restart_fails: false,
                readings: vec![LossCounters::default()],
                queries: Cell::new(0),
                final_counters: None,
                shutdowns: Rc::new(Cell::new(0)),
            }
        }
    }

    impl Lifecycle for Fake {
        fn name(&self) -> &str {
            "procexit-fake"
        }
        fn consumer_ended(&self) -> bool {
            self.ended.get()
        }
        fn flush(&self) {
            let n = self.flushes.get() + 1;
            self.flushes.set(n);
            if self.ends_after.contains(&n) {
                self.ended.set(true);
            }
            if n >= self.stop_after {
                self.stop.stop();
            }
        }
        fn query(&self) -> Option<LossCounters> {
            let i = self.queries.get();
            self.queries.set(i + 1);
            self.readings.get(i).or(self.readings.last()).copied()
        }
        fn restart(&mut self) -> Result<()> {
            self.restarts += 1;
            if self.restart_fails {
                return Err(Error::NotElevated { code: 5 });
            }
            self.ended.set(false);
            Ok(())
        }
        fn shutdown(self) -> (Option<LossCounters>, Result<()>) {
            self.shutdowns.set(self.shutdowns.get() + 1);
            (self.final_counters, Ok(()))
        }
    }

    fn sink() -> (Arc<Shared>, Sink) {
        let shared = Arc::new(Shared::new(64, Filter::new()));
        (shared.clone(), Sink::new(shared))
    }

    fn drain(shared: &Shared) -> Vec<Event> {
        let mut out = Vec::new();
        while let Pop::Event(e) = shared.pop(Some(Instant::now())) {
            out.push(e);
        }
        out
    }

    const TICK: Duration = Duration::from_millis(1);

    fn session_stopped() -> Event {
        Event::Lost {
            count: 0,
            reason: LossReason::SessionStopped,
        }
    }

    #[test]
    fn a_session_stopped_from_outside_is_marked_counted_and_restarted() {
        let (shared, sink) = sink();
        let stop = Arc::new(Stop::default());
        let mut fake = Fake::new(&stop, 6);
        fake.ends_after = vec![2];
        // Loss before the outside stop, then the new session's own count.
        fake.readings = vec![
            LossCounters {
                events_lost: 4,
                realtime_buffers_lost: 0,
            },
            LossCounters {
                events_lost: 1,
                realtime_buffers_lost: 0,
            },
        ];
        let shutdowns = fake.shutdowns.clone();
        supervise(fake, &sink, &stop, TICK, Duration::ZERO).expect("restarted");
        assert_eq!(shutdowns.get(), 1, "stopped once, by us");
        let stats = shared.stats();
        assert_eq!(stats.session_gaps, 1);
        assert!(stats.has_loss());
        // 4 from the first session, 1 from the restarted one (which counts
        // from zero again), nothing else.
        assert_eq!(stats.lost, 5);
        let events = drain(&shared);
        assert_eq!(
            events.iter().filter(|e| **e == session_stopped()).count(),
            1
        );
    }

    #[test]
    fn a_failed_restart_ends_the_monitor_with_its_error() {
        let (shared, sink) = sink();
        let stop = Arc::new(Stop::default());
        let mut fake = Fake::new(&stop, 100);
        fake.ends_after = vec![1];
        fake.restart_fails = true;
        let shutdowns = fake.shutdowns.clone();
        let result = supervise(fake, &sink, &stop, TICK, Duration::from_secs(3600));
        assert!(matches!(result, Err(Error::NotElevated { code: 5 })));
        assert_eq!(shutdowns.get(), 1);
        assert_eq!(shared.stats().session_gaps, 1);
        assert_eq!(drain(&shared), [session_stopped()]);
    }

    #[test]
    fn a_session_that_keeps_stopping_is_given_up() {
        let (shared, sink) = sink();
        let stop = Arc::new(Stop::default());
        let mut fake = Fake::new(&stop, 1000);
        fake.ends_after = (1..100).collect();
        let result = supervise(fake, &sink, &stop, TICK, Duration::from_secs(3600));
        assert!(matches!(
            result,
            Err(Error::SessionKeptStopping { ref name, times }) if name == "procexit-fake" && times == MAX_RESTARTS + 1
        ));
        assert_eq!(shared.stats().session_gaps, MAX_RESTARTS as u64 + 1);
    }

    #[test]
    fn our_own_stop_is_no_gap_and_reports_the_final_counters() {
        let (shared, sink) = sink();
        let stop = Arc::new(Stop::default());
        let mut fake = Fake::new(&stop, 3);
        fake.final_counters = Some(LossCounters {
            events_lost: 2,
            realtime_buffers_lost: 3,
        });
        supervise(fake, &sink, &stop, TICK, Duration::from_secs(3600)).expect("clean");
        let stats = shared.stats();
        assert_eq!((stats.session_gaps, stats.lost, stats.overruns), (0, 2, 3));
        assert!(!drain(&shared).contains(&session_stopped()));
    }
}

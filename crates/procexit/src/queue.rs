//! The bounded queue between a backend thread and the consumer, and the
//! counters behind [`Stats`](crate::Stats).
//!
//! The producer never blocks: when the queue is full an exit is dropped and
//! counted, and a `Lost { reason: QueueFull }` marker is put in the stream at
//! the place of the gap as soon as there is room again. Loss is never silent.
//!
//! Wake-ups cost more than the events themselves under a burst, so the
//! consumer is woken only when it waits, and a producer that handles many
//! events per wake-up of its own (a drained socket, a ring buffer) opens a
//! [`Batch`]: the consumer is then woken once per batch, not per event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::event::{Event, LossReason, ProcessExit};
use crate::filter::Filter;
use crate::stats::Stats;

#[derive(Default)]
struct State {
    items: VecDeque<Event>,
    /// Exits dropped since the last marker was queued.
    pending_dropped: u64,
    /// Kernel losses reported while the queue was full.
    pending_kernel_lost: u64,
    /// An overrun whose marker waits for room: the exits known lost in it.
    pending_overrun: Option<u64>,
    /// A stopped-session marker waits for room.
    pending_session_stopped: bool,
    closed: bool,
    /// Consumers blocked in `pop` (only they need a wake-up).
    waiting: usize,
    /// Open batches: while one is open, pushes leave the wake-up to the
    /// batch's end.
    batches: usize,
}

#[derive(Default)]
struct Counters {
    seen: AtomicU64,
    filtered: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    overruns: AtomicU64,
    anomalies: AtomicU64,
    session_gaps: AtomicU64,
    evicted: AtomicU64,
}

/// Shared between the backend (producer) and the monitor (consumer).
pub(crate) struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    filter: Filter,
    counters: Counters,
    /// What the backend cannot report on this machine (set at its start).
    limitations: Mutex<Vec<crate::backend::Limitation>>,
}

/// Where a backend puts what it learns. Cheap to clone; every method is
/// non-blocking and never panics.
#[derive(Clone)]
pub(crate) struct Sink {
    shared: std::sync::Arc<Shared>,
}

impl Shared {
    pub(crate) fn new(capacity: usize, filter: Filter) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            filter,
            counters: Counters::default(),
            limitations: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent
        // (every update is a single push/pop or counter change), so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Releases the lock and wakes a waiting consumer, unless a batch is
    /// open (its end wakes) or nobody waits (a futex wake per event is the
    /// largest cost under a burst).
    fn wake(&self, state: MutexGuard<'_, State>) {
        let wake = state.waiting > 0 && state.batches == 0 && !state.items.is_empty();
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    fn begin_batch(&self) {
        self.lock().batches += 1;
    }

    fn end_batch(&self) {
        let mut state = self.lock();
        state.batches = state.batches.saturating_sub(1);
        self.wake(state);
    }

    /// Queues loss markers that were waiting for room.
    fn flush_pending(&self, state: &mut State) {
        if state.pending_session_stopped && state.items.len() < self.capacity {
            state.pending_session_stopped = false;
            push_marker(&mut state.items, 0, LossReason::SessionStopped);
        }
        if state.pending_overrun.is_some() && state.items.len() < self.capacity {
            let count = state.pending_overrun.take().unwrap_or(0);
            push_marker(&mut state.items, count, LossReason::Overrun);
        }
        if state.pending_kernel_lost > 0 && state.items.len() < self.capacity {
            let count = std::mem::take(&mut state.pending_kernel_lost);
            push_marker(&mut state.items, count, LossReason::Kernel);
        }
        if state.pending_dropped > 0 && state.items.len() < self.capacity {
            let count = std::mem::take(&mut state.pending_dropped);
            push_marker(&mut state.items, count, LossReason::QueueFull);
        }
    }

    fn push_exit(&self, exit: ProcessExit) {
        let c = &self.counters;
        c.seen.fetch_add(1, Ordering::Relaxed);
        if !self.filter.matches(&exit) {
            c.filtered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut state = self.lock();
        if state.closed {
            return;
        }
        self.flush_pending(&mut state);
        let has_pending = state.pending_dropped > 0
            || state.pending_kernel_lost > 0
            || state.pending_overrun.is_some()
            || state.pending_session_stopped;
        if state.items.len() >= self.capacity || has_pending {
            state.pending_dropped += 1;
            c.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            state.items.push_back(Event::Exit(exit));
        }
        self.wake(state);
    }

    fn push_lost(&self, count: u64) {
        if count == 0 {
            return;
        }
        self.counters.lost.fetch_add(count, Ordering::Relaxed);
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.pending_kernel_lost += count;
        self.flush_pending(&mut state);
        self.wake(state);
    }

    #[cfg_attr(windows, allow(dead_code))] // ETW counts overruns by polling
    fn push_overrun(&self, known_lost: u64) {
        let c = &self.counters;
        c.overruns.fetch_add(1, Ordering::Relaxed);
        c.lost.fetch_add(known_lost, Ordering::Relaxed);
        self.mark_overrun(known_lost);
    }

    /// Queues (or makes pending) an overrun marker without counting.
    fn mark_overrun(&self, known_lost: u64) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let pending = state.pending_overrun.unwrap_or(0);
        state.pending_overrun = Some(pending.saturating_add(known_lost));
        self.flush_pending(&mut state);
        self.wake(state);
    }

    #[cfg_attr(not(windows), allow(dead_code))] // ETW-only gap kinds
    fn push_session_stopped(&self) {
        self.counters.session_gaps.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.pending_session_stopped = true;
        self.flush_pending(&mut state);
        self.wake(state);
    }

    /// Marks the end of the stream: the consumer gets what is queued, then
    /// `None`. Pending loss markers are queued even past capacity so the end
    /// of the stream still reports them.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if std::mem::take(&mut state.pending_session_stopped) {
            push_marker(&mut state.items, 0, LossReason::SessionStopped);
        }
        if let Some(count) = state.pending_overrun.take() {
            push_marker(&mut state.items, count, LossReason::Overrun);
        }
        let kernel = std::mem::take(&mut state.pending_kernel_lost);
        push_marker(&mut state.items, kernel, LossReason::Kernel);
        let dropped = std::mem::take(&mut state.pending_dropped);
        push_marker(&mut state.items, dropped, LossReason::QueueFull);
        state.closed = true;
        drop(state);
        self.ready.notify_all();
    }

    /// Takes the next event. `None` means the stream ended (closed and
    /// drained) or, with a deadline, that it passed; `ended` tells which.
    pub(crate) fn pop(&self, deadline: Option<Instant>) -> Pop {
        let mut state = self.lock();
        loop {
            if let Some(event) = state.items.pop_front() {
                self.flush_pending(&mut state);
                if matches!(event, Event::Exit(_)) {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                return Pop::Event(event);
            }
            if state.closed {
                return Pop::Ended;
            }
            let wait = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Pop::TimedOut;
                    }
                    Some(deadline.saturating_duration_since(now))
                }
            };
            state.waiting += 1;
            state = match wait {
                None => self.ready.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(wait) => {
                    self.ready
                        .wait_timeout(state, wait.min(Duration::from_secs(3600)))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            state.waiting -= 1;
        }
    }

    /// What the backend said it cannot report here.
    pub(crate) fn limitations(&self) -> Vec<crate::backend::Limitation> {
        self.limitations
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            seen: get(&c.seen),
            filtered: get(&c.filtered),
            delivered: get(&c.delivered),
            dropped: get(&c.dropped),
            lost: get(&c.lost),
            overruns: get(&c.overruns),
            anomalies: get(&c.anomalies),
            session_gaps: get(&c.session_gaps),
            evicted: get(&c.evicted),
        }
    }
}

/// Appends a loss marker, merged into the last one when it has the same
/// reason (two markers in a row say nothing more than one). An overrun is
/// marked even with no known count: the gap itself is the news.
fn push_marker(items: &mut VecDeque<Event>, count: u64, reason: LossReason) {
    if count == 0 && !matches!(reason, LossReason::Overrun | LossReason::SessionStopped) {
        return;
    }
    if let Some(Event::Lost {
        count: last,
        reason: last_reason,
    }) = items.back_mut()
    {
        if *last_reason == reason {
            *last = last.saturating_add(count);
            return;
        }
    }
    items.push_back(Event::Lost { count, reason });
}

// Same trade-off as `Event`: the event is the common case.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Pop {
    Event(Event),
    TimedOut,
    Ended,
}

impl Sink {
    pub(crate) fn new(shared: std::sync::Arc<Shared>) -> Sink {
        Sink { shared }
    }

    /// A process ended: filter it and queue it (or count it as dropped).
    /// Records keys the backend leaves null on this machine, and why.
    // Only the Linux sources have optional hooks that can fail to load.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn limitation(&self, limitation: crate::backend::Limitation) {
        let mut list = self
            .shared
            .limitations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        list.push(limitation);
    }

    pub(crate) fn exit(&self, exit: ProcessExit) {
        self.shared.push_exit(exit);
    }

    /// The kernel or transport lost `count` exits (or, when the count is
    /// unknown, at least `count`).
    pub(crate) fn lost(&self, count: u64) {
        self.shared.push_lost(count);
    }

    /// The kernel reported an overrun (ENOBUFS, a lost ETW buffer) whose
    /// size it did not say; `known_lost` exits are known to be in the gap
    /// (a lower bound, possibly 0). Counted, and marked in the stream.
    #[cfg_attr(windows, allow(dead_code))] // ETW counts overruns by polling
    pub(crate) fn overrun(&self, known_lost: u64) {
        self.shared.push_overrun(known_lost);
    }

    /// `count` overruns whose sizes the kernel did not say (ETW real-time
    /// buffers lost): counted, and marked once in the stream.
    #[cfg_attr(not(windows), allow(dead_code))] // ETW-only gap kinds
    pub(crate) fn overruns(&self, count: u64) {
        if count == 0 {
            return;
        }
        self.shared
            .counters
            .overruns
            .fetch_add(count, Ordering::Relaxed);
        self.shared.mark_overrun(0);
    }

    /// Marks where the OS said a gap is, without counting anything: the
    /// count comes from the OS's counters (ETW's in-band lost-event
    /// records, whose totals the polled session counters give).
    #[cfg_attr(not(windows), allow(dead_code))] // ETW-only gap kinds
    pub(crate) fn gap(&self) {
        self.shared.mark_overrun(0);
    }

    /// The trace session was stopped from outside: a gap of unknown size,
    /// counted in `Stats::session_gaps` and marked in the stream.
    #[cfg_attr(not(windows), allow(dead_code))] // ETW-only gap kinds
    pub(crate) fn session_stopped(&self) {
        self.shared.push_session_stopped();
    }

    /// `count` per-process records dropped to keep a table within its
    /// memory bounds (counted in `Stats::evicted`).
    #[cfg_attr(not(windows), allow(dead_code))] // the ETW tracker's table
    pub(crate) fn evicted(&self, count: u64) {
        self.shared
            .counters
            .evicted
            .fetch_add(count, Ordering::Relaxed);
    }

    /// Opens a batch: the consumer is woken once, when the batch is
    /// dropped, for everything pushed meanwhile. For a producer that
    /// handles many events per wake-up of its own.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn batch(&self) -> Batch<'_> {
        self.shared.begin_batch();
        Batch {
            shared: &self.shared,
        }
    }

    /// Ends the stream (see [`Shared::close`]).
    pub(crate) fn close(&self) {
        self.shared.close();
    }

    /// Exits a source filtered out before they reached us (the eBPF
    /// program's in-kernel filter): seen and filtered.
    // Used by the Linux eBPF source only.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn filtered_upstream(&self, count: u64) {
        let c = &self.shared.counters;
        c.seen.fetch_add(count, Ordering::Relaxed);
        c.filtered.fetch_add(count, Ordering::Relaxed);
    }

    /// A record that could not be decoded exactly (counted, never fatal).
    pub(crate) fn anomaly(&self) {
        self.shared
            .counters
            .anomalies
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// An open batch of pushes (see [`Sink::batch`]); dropping it wakes the
/// consumer if it waits.
pub(crate) struct Batch<'a> {
    shared: &'a Shared,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.shared.end_batch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExitStatus, Source};
    use std::sync::Arc;

    fn exit(pid: u32) -> ProcessExit {
        ProcessExit::new(pid, ExitStatus::Code(0), Source::LinuxConnector)
    }

    fn drain(shared: &Shared) -> Vec<Event> {
        let mut out = Vec::new();
        while let Pop::Event(e) = shared.pop(Some(Instant::now())) {
            out.push(e);
        }
        out
    }

    #[test]
    fn overflow_is_counted_and_marked_in_order() {
        let shared = Arc::new(Shared::new(2, Filter::new()));
        let sink = Sink::new(shared.clone());
        for pid in 1..=5 {
            sink.exit(exit(pid));
        }
        // Two fit, three are dropped; after the consumer makes room the marker
        // goes in before anything newer.
        assert!(matches!(shared.pop(None), Pop::Event(Event::Exit(e)) if e.pid == 1));
        sink.exit(exit(6));
        let rest = drain(&shared);
        assert_eq!(
            rest,
            vec![
                Event::Exit(exit(2)),
                Event::Lost {
                    count: 4,
                    reason: LossReason::QueueFull
                },
            ]
        );
        let stats = shared.stats();
        assert_eq!((stats.seen, stats.delivered, stats.dropped), (6, 2, 4));
        sink.exit(exit(7));
        assert_eq!(drain(&shared), vec![Event::Exit(exit(7))]);
    }

    #[test]
    fn close_flushes_pending_markers() {
        let shared = Arc::new(Shared::new(1, Filter::new()));
        let sink = Sink::new(shared.clone());
        sink.exit(exit(1));
        sink.exit(exit(2));
        sink.lost(3);
        shared.close();
        let all = drain(&shared);
        assert_eq!(all.len(), 3);
        assert!(matches!(shared.pop(None), Pop::Ended));
        assert_eq!(shared.stats().lost, 3);
    }

    #[test]
    fn overruns_are_marked_even_without_a_count() {
        let shared = Arc::new(Shared::new(8, Filter::new()));
        let sink = Sink::new(shared.clone());
        sink.exit(exit(1));
        sink.overrun(0);
        sink.overrun(2);
        sink.exit(exit(2));
        assert_eq!(
            drain(&shared),
            vec![
                Event::Exit(exit(1)),
                Event::Lost {
                    count: 2,
                    reason: LossReason::Overrun
                },
                Event::Exit(exit(2)),
            ]
        );
        let stats = shared.stats();
        assert_eq!((stats.overruns, stats.lost), (2, 2));
    }

    #[test]
    fn a_waiting_consumer_is_woken_by_a_push_and_at_the_end_of_a_batch() {
        let shared = Arc::new(Shared::new(8, Filter::new()));
        let sink = Sink::new(shared.clone());
        let consumer = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut pids = Vec::new();
                while pids.len() < 3 {
                    if let Pop::Event(Event::Exit(e)) = shared.pop(None) {
                        pids.push(e.pid);
                    }
                }
                pids
            })
        };
        // A plain push wakes it.
        sink.exit(exit(1));
        // A batch: nothing is woken until it ends, then both arrive.
        let batch = sink.batch();
        // Until the consumer took the first exit and waits again.
        let waits_again = || {
            let state = shared.lock();
            state.items.is_empty() && state.waiting > 0
        };
        while !waits_again() {
            std::thread::yield_now();
        }
        sink.exit(exit(2));
        sink.exit(exit(3));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(shared.lock().items.len(), 2, "woken inside a batch");
        drop(batch);
        assert_eq!(consumer.join().unwrap(), vec![1, 2, 3]);
        assert_eq!(shared.lock().waiting, 0);
    }

    #[test]
    fn filtered_exits_are_counted_not_queued() {
        let shared = Arc::new(Shared::new(8, Filter::new().pid(2)));
        let sink = Sink::new(shared.clone());
        sink.exit(exit(1));
        sink.exit(exit(2));
        assert_eq!(drain(&shared), vec![Event::Exit(exit(2))]);
        assert_eq!(shared.stats().filtered, 1);
    }
}

//! ETW process events → [`ProcessExit`] records: the one place that decides
//! what is an exit, for live sessions and `.etl` files alike.
//!
//! Kernel Process class (docs/etw-process-events.md §1.7):
//! - Start (1) and DCStart (3) seed what an End may lack (name, command line,
//!   user). Only Start's event time is a start time: DCStart is a rundown
//!   logged when the session began, so it gives no start time.
//! - End (2) is the exit.
//! - Defunct (39) is a rundown record of a zombie (ended, still referenced),
//!   listed when a session stops. It is an exit only when no End was seen
//!   for its (pid, UniqueProcessKey) and the process ended inside the
//!   observed window: its v5 `ExitTime` is at or after the window start (the
//!   trace or session start), or, without ExitTime, the process was seen
//!   alive in this window (Start or DCStart). Otherwise it is a fact about
//!   the rundown, not an exit. Its event time is the rundown time, so only
//!   the payload `ExitTime` is used as exit time.
//! - Everything else (DCEnd, Terminate, PerfCtr…) is ignored.
//!
//! Microsoft-Windows-Kernel-Process (§5): ProcessStop carries create and exit
//! times and the exit code, but no key, parent or command line. A ProcessStart
//! with the same (pid, CreateTime) supplies the parent. When the same stream
//! also carries kernel Process events (a trace that enabled both), each exit
//! comes twice; one record is made: the kernel End, with the ProcessStop's
//! create time (and parent) added when it lacks them. A ProcessStop that
//! comes first waits for its End ([`on_kernel_process_event`] returns
//! nothing); one that no End matched is released by [`finish`].
//!
//! Memory is bounded: live processes, recently reported keys and waiting
//! ProcessStops are kept in insertion-ordered maps or queues that drop (or,
//! for ProcessStops, release) their oldest entries when full.
//!
//! Microsoft-Windows-Kernel-Audit-API-Calls event 2 (§7) is logged when a
//! process terminates another one: the caller is the event header's pid,
//! the target's pid (and, from v1, its creation time) are in the payload.
//! A successful call waits (a bounded queue) for the target's exit and is
//! joined to it by pid, creation time when both sides have one, and time:
//! the exit comes after the call, within [`KILL_WINDOW`]. The joined exit
//! names the caller as its [`Killer`], with the name the caller's own start
//! or rundown event gave. A process that ends by itself, or whose end came
//! before the call was delivered, names none.
//!
//! [`on_kernel_process_event`]: EtwExitTracker::on_kernel_process_event
//! [`finish`]: EtwExitTracker::finish

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use super::bounded::Bounded;

use crate::decode::audit_api::{decode_terminate_process, EVENT_TERMINATE_PROCESS};
use crate::decode::kernel_process::{
    decode_process_start, decode_process_stop, ProcessStop, EVENT_PROCESS_START, EVENT_PROCESS_STOP,
};
use crate::decode::lost_event::{classify_lost, LostKind};
use crate::decode::mof_process::{
    decode_process_into, ProcessPayloadRef, SidRef, SidTextCache, OPCODE_DC_END, OPCODE_DC_START,
    OPCODE_DEFUNCT, OPCODE_END, OPCODE_START,
};
use crate::decode::view::{EventHeader, EventView};
use crate::decode::{
    DecodeError, DecodeErrorKind, PayloadText, KERNEL_AUDIT_API_CALLS_GUID, KERNEL_PROCESS_GUID,
    LOST_EVENT_GUID, PROCESS_GUID,
};
use crate::event::{
    system_time_from_filetime, ExitStatus, Killer, ProcessExit, Resources, Source, User,
};

/// Processes seen starting and not yet ended. Entries whose End was lost
/// are evicted oldest-first beyond this.
const MAX_LIVE: usize = 16_384;
/// Bytes of command lines the live table may hold. Any user can start
/// processes with 32 K-character command lines; without a budget they
/// would grow an administrator's monitor without bound. Beyond it the
/// oldest live entries are evicted (their End still carries the command
/// line; only a start time is lost) and counted.
const COMMAND_LINE_BUDGET: usize = 16 << 20;
/// Recently reported (pid, key) pairs remembered for End/Defunct dedup.
/// Only a Defunct looks them up (rundown records, a handful per session),
/// so they are a queue scanned then, not a map updated on every exit.
const MAX_REPORTED: usize = 4096;
/// ProcessStops waiting for their kernel End, and kernel exits remembered
/// for ProcessStops that come after their End.
const MAX_PAIRING: usize = 1024;
/// The two records of one exit carry exit times microseconds apart; pids are
/// reused far more slowly.
const SAME_EXIT_WINDOW: u64 = 2 * 10_000_000;
/// How long after a TerminateProcess call its target's exit may come
/// (FILETIME ticks): a terminated process ends once its threads leave the
/// kernel, normally at once.
const KILL_WINDOW: u64 = 30 * 10_000_000;

/// A successful TerminateProcess of another process, waiting for the
/// target's exit.
#[derive(Debug, Clone)]
struct Kill {
    target_pid: u32,
    target_create_time: Option<u64>,
    /// FILETIME of the call.
    time: Option<u64>,
    killer: Killer,
}

/// (pid, UniqueProcessKey): one process across pid reuse. `key` is 0
/// before v2 or when the payload's is 0 (an EPROCESS address never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcKey {
    pid: u32,
    key: u64,
}

impl ProcKey {
    /// The key as records carry it.
    fn process_key(self) -> Option<u64> {
        Some(self.key).filter(|&k| k != 0)
    }
}

impl Hash for ProcKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One word for the map's keyed multiply: pids are small, kernel
        // addresses vary in their low 48 bits.
        state.write_u64(self.key ^ u64::from(self.pid).rotate_right(16));
    }
}

/// What a Start/DCStart told us about a live process. The texts are boxed
/// (two words each, not three): at 64 bytes a seed moves through the live
/// table in a few vector stores, where a larger one took a string-copy
/// instruction per move at the release opt-level.
#[derive(Debug, Clone)]
struct Seed {
    /// FILETIME of a real Start (op 1) event; never from DCStart.
    start_time: Option<u64>,
    name: Option<Box<str>>,
    command_line: Option<Box<str>>,
    user: Option<Box<str>>,
}

impl Seed {
    /// Bytes of command line it holds (counted against the budget).
    fn command_line_len(&self) -> usize {
        self.command_line.as_ref().map_or(0, |c| c.len())
    }
}

/// What a Kernel-Process ProcessStart told us.
#[derive(Debug, Clone)]
struct KpSeed {
    ppid: u32,
    image_path: Option<String>,
}

/// Tracks process lifetimes across ETW process events and emits one
/// [`ProcessExit`] per ended process.
///
/// `T` is what the caller attaches to each Kernel-Process event (the `.etl`
/// reader attaches the event's item). It comes back from
/// [`take_released`](Self::take_released), with the event's exit record if
/// it gives one, as soon as that is decided: at once, or — for a ProcessStop
/// that waits for its kernel End — when the End comes (without a record: the
/// End's record includes it) or at [`finish`](Self::finish).
#[derive(Debug)]
pub(crate) struct EtwExitTracker<T = ()> {
    source: Source,
    live: Bounded<ProcKey, Seed>,
    /// The last MAX_REPORTED exits' keys, oldest first.
    reported: VecDeque<ProcKey>,
    kp_live: Bounded<(u32, u64), KpSeed>,
    anomalies: u64,
    /// Command-line bytes held in `live`.
    command_line_bytes: usize,
    command_line_budget: usize,
    /// Live entries dropped to stay within MAX_LIVE or the byte budget.
    evicted: u64,
    /// FILETIME the observed window began: trace or session start.
    window_start: Option<u64>,
    /// A kernel Process event was seen: ProcessStops then pair with Ends.
    kernel_seen: bool,
    /// ProcessStops waiting for their End, oldest first.
    waiting_stops: VecDeque<(ProcessExit, T)>,
    /// Kernel-Process events decided, in order, with their exit if any.
    released: VecDeque<(Option<ProcessExit>, T)>,
    /// (pid, status, exit FILETIME) of recent kernel exits.
    recent_exits: VecDeque<(u32, ExitStatus, u64)>,
    /// The last user SID's text: Starts and Ends of one user's processes
    /// copy it instead of writing the SID out each time.
    sid_text: SidTextCache,
    /// TerminateProcess calls waiting for their target's exit, oldest
    /// first.
    kills: VecDeque<Kill>,
}

impl<T> EtwExitTracker<T> {
    /// A tracker whose records carry `source`. With [`Source::EtwKernel`],
    /// records built from Kernel-Process events carry
    /// [`Source::EtwKernelProcess`] instead. `window_start` is the FILETIME
    /// the observation began (the trace's or session's start), if known;
    /// without it a Defunct counts as an exit only for a process seen alive.
    pub(crate) fn new(source: Source, window_start: Option<u64>) -> Self {
        EtwExitTracker {
            source,
            live: Bounded::new(MAX_LIVE),
            reported: VecDeque::with_capacity(MAX_REPORTED),
            kp_live: Bounded::new(MAX_LIVE),
            anomalies: 0,
            command_line_bytes: 0,
            command_line_budget: COMMAND_LINE_BUDGET,
            evicted: 0,
            window_start: window_start.filter(|&t| t != 0),
            kernel_seen: false,
            waiting_stops: VecDeque::new(),
            released: VecDeque::new(),
            recent_exits: VecDeque::with_capacity(MAX_PAIRING),
            sid_text: SidTextCache::default(),
            kills: VecDeque::new(),
        }
    }

    /// Releases the ProcessStops still waiting for an End as exits (to
    /// [`take_released`](Self::take_released)): call at the end of the stream.
    pub(crate) fn finish(&mut self) {
        for (exit, tag) in self.waiting_stops.drain(..) {
            self.released.push_back((Some(exit), tag));
        }
    }

    /// The Kernel-Process events decided since the last call, in order: each
    /// caller's tag with the exit record it gives, if any.
    pub(crate) fn take_released(
        &mut self,
    ) -> std::collections::vec_deque::Drain<'_, (Option<ProcessExit>, T)> {
        self.released.drain(..)
    }

    /// One kernel Process-class lifecycle event, decoded once by the
    /// caller ([`decode_process_event`]). `timestamp` = event time as
    /// FILETIME if known. Returns the exit record for End, and for a Defunct
    /// that the module's rule makes an exit.
    ///
    /// A Start/DCStart that did not decode is counted in
    /// [`anomalies`](Self::anomalies) and yields `Ok(None)`; an End/Defunct
    /// that did not decode is an error. Either way the tracker stays usable.
    pub(crate) fn on_process_event(
        &mut self,
        op: ProcessOp,
        timestamp: Option<u64>,
        decoded: Result<&ProcessPayloadRef<'_>, DecodeError>,
    ) -> Result<Option<ProcessExit>, DecodeError> {
        self.kernel_seen = true;
        match op {
            ProcessOp::Start | ProcessOp::DcStart => {
                match decoded {
                    Ok(p) => {
                        self.note(p);
                        let start_time = if op == ProcessOp::Start {
                            timestamp
                        } else {
                            None
                        };
                        self.seed(p, start_time);
                    }
                    Err(_) => self.bump_anomalies(),
                }
                Ok(None)
            }
            ProcessOp::End => {
                let p = decoded?;
                self.note(p);
                self.end(p, timestamp)
            }
            ProcessOp::Defunct => {
                let p = decoded?;
                self.note(p);
                if !self.defunct_is_exit(p) {
                    return Ok(None);
                }
                // The event time is when the rundown saw the zombie, not the exit.
                self.end(p, p.exit_time)
            }
            ProcessOp::DcEnd => Ok(None),
        }
    }

    /// Decodes and tracks one kernel Process event given as bytes (tests).
    #[cfg(test)]
    fn on_process_bytes(
        &mut self,
        opcode: u8,
        version: u8,
        pointer: crate::decode::PointerSize,
        timestamp: Option<u64>,
        payload: &[u8],
    ) -> Result<Option<ProcessExit>, DecodeError> {
        let mut header = EventHeader::new(PROCESS_GUID, opcode, version.into(), pointer);
        header.time = timestamp;
        match route(&header) {
            Route::Process(op) => {
                let decoded = decode_process_event(&EventView {
                    header,
                    payload,
                    extended: &[],
                    place: (),
                });
                self.on_process_event(op, timestamp, decoded.as_ref().map_err(|e| *e))
            }
            _ => Ok(None),
        }
    }

    /// One Microsoft-Windows-Kernel-Process event: ProcessStart (id 1) seeds
    /// the parent, ProcessStop (id 2) gives an exit — unless a kernel End
    /// already reported it, or (in a stream with kernel Process events) it
    /// waits for its End. What is decided goes to
    /// [`take_released`](Self::take_released) with `tag`; when the wait
    /// queue is full its oldest stop is released as an exit.
    ///
    /// A ProcessStart that does not decode is counted as an anomaly; a
    /// ProcessStop that does not decode is an error (its tag is released
    /// without a record).
    pub(crate) fn on_kernel_process_event(
        &mut self,
        op: KernelProcessOp,
        version: u8,
        timestamp: Option<u64>,
        payload: &[u8],
        tag: T,
    ) -> Result<(), DecodeError> {
        match op {
            KernelProcessOp::Start => {
                match decode_process_start(payload, version) {
                    Ok(s) => {
                        self.kp_live.insert(
                            (s.pid, s.create_time),
                            KpSeed {
                                ppid: s.ppid,
                                image_path: s.image_name,
                            },
                        );
                    }
                    Err(_) => self.bump_anomalies(),
                }
                self.released.push_back((None, tag));
                Ok(())
            }
            KernelProcessOp::Stop => match decode_process_stop(payload, version) {
                Ok(stop) => {
                    self.on_stop(stop, timestamp, tag);
                    Ok(())
                }
                Err(e) => {
                    self.released.push_back((None, tag));
                    Err(e)
                }
            },
        }
    }

    /// One Kernel-Audit-API-Calls TerminateProcess event (id 2) of version
    /// `version`, by `caller` (the header's pid) at `timestamp`. A call
    /// that failed, or without a caller, is no kill; a payload that does
    /// not decode is an anomaly.
    pub(crate) fn on_terminate(
        &mut self,
        caller: Option<u32>,
        version: u8,
        timestamp: Option<u64>,
        payload: &[u8],
    ) {
        let call = match decode_terminate_process(payload, version) {
            Ok(call) => call,
            Err(_) => return self.bump_anomalies(),
        };
        let Some(caller) = caller.filter(|&c| c != call.target_pid) else {
            return;
        };
        if !call.succeeded() {
            return;
        }
        let name = self.name_of(caller);
        if self.kills.len() == MAX_PAIRING {
            self.kills.pop_front();
        }
        self.kills.push_back(Kill {
            target_pid: call.target_pid,
            target_create_time: call.target_create_time,
            time: timestamp,
            killer: Killer { pid: caller, name },
        });
    }

    /// The short name of a live process by pid, from its start or rundown
    /// event: kernel Process seeds first, then Kernel-Process starts. A
    /// scan, done only for a TerminateProcess call.
    fn name_of(&self, pid: u32) -> Option<String> {
        if let Some(name) = self
            .live
            .find(|k| k.pid == pid)
            .and_then(|s| s.name.as_deref())
        {
            return Some(name.to_owned());
        }
        self.kp_live
            .find(|&(p, _)| p == pid)
            .and_then(|s| s.image_path.as_deref())
            .and_then(leaf_name)
    }

    /// The waiting TerminateProcess call that ended the process `pid`
    /// created at `create_ft` and ended at `exit_ft` (FILETIMEs, when
    /// known), taken out of the queue: the newest that matches.
    fn take_kill(
        &mut self,
        pid: u32,
        create_ft: Option<u64>,
        exit_ft: Option<u64>,
    ) -> Option<Killer> {
        if self.kills.is_empty() {
            return None;
        }
        let at = self.kills.iter().rposition(|k| {
            let created = match (k.target_create_time, create_ft) {
                (Some(a), Some(b)) => a.abs_diff(b) <= SAME_EXIT_WINDOW,
                _ => true,
            };
            // Clocks of two processors: a little slack before the exit.
            let timely = match (k.time, exit_ft) {
                (Some(call), Some(exit)) => {
                    call <= exit.saturating_add(SAME_EXIT_WINDOW)
                        && exit.saturating_sub(call) <= KILL_WINDOW
                }
                _ => true,
            };
            k.target_pid == pid && created && timely
        })?;
        self.kills.remove(at).map(|k| k.killer)
    }

    fn on_stop(&mut self, s: ProcessStop, timestamp: Option<u64>, tag: T) {
        if s.image_name.is_none() {
            self.bump_anomalies();
        }
        let seed = self.kp_live.remove(&(s.pid, s.create_time));
        let source = match self.source {
            Source::EtwKernel => Source::EtwKernelProcess,
            other => other,
        };
        let mut exit = ProcessExit::new(s.pid, ExitStatus::Code(s.exit_code), source);
        exit.resources = s.resources();
        exit.start_time = system_time_from_filetime(s.create_time);
        exit.exit_time = system_time_from_filetime(s.exit_time)
            .or_else(|| timestamp.and_then(system_time_from_filetime));
        exit.ppid = seed.as_ref().map(|seed| seed.ppid);
        exit.killer = self.take_kill(s.pid, Some(s.create_time), Some(s.exit_time));
        exit.name = non_empty(s.image_name).or_else(|| {
            seed.and_then(|seed| seed.image_path)
                .as_deref()
                .and_then(leaf_name)
        });
        if self.was_reported_by_kernel(&exit) {
            self.released.push_back((None, tag));
        } else if !self.kernel_seen {
            self.released.push_back((Some(exit), tag));
        } else {
            self.waiting_stops.push_back((exit, tag));
            if self.waiting_stops.len() > MAX_PAIRING {
                if let Some((exit, tag)) = self.waiting_stops.pop_front() {
                    self.released.push_back((Some(exit), tag));
                }
            }
        }
    }

    /// Events decoded with an [`Anomaly`](crate::decode::mof_process::Anomaly)
    /// or without a ProcessStop image name, plus Start/DCStart/ProcessStart
    /// events that could not be decoded at all.
    pub(crate) fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// Live entries evicted so far to keep the table within its entry and
    /// command-line bounds.
    #[cfg_attr(not(windows), allow(dead_code))] // read by the live backend
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    fn bump_anomalies(&mut self) {
        self.anomalies = self.anomalies.saturating_add(1);
    }

    fn note(&mut self, p: &ProcessPayloadRef<'_>) {
        if p.anomaly.is_some() {
            self.bump_anomalies();
        }
    }

    fn seed(&mut self, p: &ProcessPayloadRef<'_>, start_time: Option<u64>) {
        let key = proc_key(p);
        // Exact-size strings: boxing them does not reallocate.
        let command_line = owned_non_empty(p.command_line).map(String::into_boxed_str);
        self.command_line_bytes = self
            .command_line_bytes
            .saturating_add(command_line.as_ref().map_or(0, |c| c.len()));
        let name = owned_non_empty(p.image_file_name).map(String::into_boxed_str);
        let user = p.user_sid.map(|sid| Box::from(self.sid_text.text_of(&sid)));
        let (mut freed, mut evicted) = (0usize, 0u64);
        self.live.insert_with(
            key,
            |earlier| Seed {
                // Keep a start time an earlier Start already gave this process.
                start_time: start_time.or_else(|| earlier.and_then(|s| s.start_time)),
                name,
                command_line,
                user,
            },
            |gone, was_evicted| {
                freed = freed.saturating_add(gone.command_line_len());
                evicted = evicted.saturating_add(u64::from(was_evicted));
            },
        );
        self.command_line_bytes = self.command_line_bytes.saturating_sub(freed);
        self.evicted = self.evicted.saturating_add(evicted);
        while self.command_line_bytes > self.command_line_budget {
            let Some(gone) = self.live.pop_oldest() else {
                break;
            };
            self.evicted = self.evicted.saturating_add(1);
            self.forget_bytes(&gone);
        }
    }

    fn forget_bytes(&mut self, seed: &Seed) {
        self.command_line_bytes = self
            .command_line_bytes
            .saturating_sub(seed.command_line_len());
    }

    /// Whether a Defunct record is an exit (see the module docs).
    fn defunct_is_exit(&self, p: &ProcessPayloadRef<'_>) -> bool {
        let key = proc_key(p);
        if self.reported.contains(&key) {
            return false;
        }
        match (p.exit_time.filter(|&t| t != 0), self.window_start) {
            (Some(exit_time), Some(start)) => exit_time >= start,
            _ => self.live.contains(&key),
        }
    }

    /// The waiting ProcessStop of the same kernel exit (`exit_ft`: its exit
    /// FILETIME, if it has one), taken out of the queue (its tag is
    /// released); the exit is remembered for stops that come later.
    fn pair_with_waiting_stop(
        &mut self,
        pid: u32,
        status: ExitStatus,
        exit_ft: Option<u64>,
    ) -> Option<ProcessExit> {
        let exit_ft = exit_ft?;
        let position = self.waiting_stops.iter().position(|(stop, _)| {
            same_exit(
                (stop.pid, stop.status, stop.exit_time.map(filetime_of)),
                (pid, status, Some(exit_ft)),
            )
        });
        let stop = position
            .and_then(|i| self.waiting_stops.remove(i))
            .map(|(stop, tag)| {
                self.released.push_back((None, tag));
                stop
            });
        if self.recent_exits.len() == MAX_PAIRING {
            self.recent_exits.pop_front();
        }
        self.recent_exits.push_back((pid, status, exit_ft));
        stop
    }

    fn was_reported_by_kernel(&self, stop: &ProcessExit) -> bool {
        let stop_ft = stop.exit_time.map(filetime_of);
        self.recent_exits.iter().any(|&(pid, status, ft)| {
            same_exit((pid, status, Some(ft)), (stop.pid, stop.status, stop_ft))
        })
    }

    /// [`prefer`] for the user SID, through the last SID's text: when the
    /// payload's SID is that one and the Start stored the same text, the
    /// stored text moves into the record; otherwise the cached text is
    /// copied (written out only for a new SID).
    fn user_text(&mut self, sid: Option<SidRef<'_>>, kept: Option<String>) -> Option<String> {
        match (sid, kept) {
            (None, kept) => kept,
            (Some(sid), Some(kept))
                if self.sid_text.holds(&sid) && kept == self.sid_text.text() =>
            {
                Some(kept)
            }
            (Some(sid), _) => Some(self.sid_text.text_of(&sid).to_owned()),
        }
    }

    /// Builds the record for an ended process (with what a waiting
    /// ProcessStop of the same exit adds) and forgets its live state.
    /// `Ok` is always `Some`: the record is built where the caller's result
    /// lives, not moved into it.
    fn end(
        &mut self,
        p: &ProcessPayloadRef<'_>,
        exit_time: Option<u64>,
    ) -> Result<Option<ProcessExit>, DecodeError> {
        // v0 has no exit status; inventing one would be wrong.
        let Some(status) = p.exit_status else {
            return Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::Invalid("exit status (absent in a v0 payload)"),
            });
        };
        let key = proc_key(p);
        let seed = self.live.remove(&key);
        if let Some(seed) = &seed {
            self.forget_bytes(seed);
        }
        if self.reported.len() == MAX_REPORTED {
            self.reported.pop_front();
        }
        self.reported.push_back(key);
        let status = ExitStatus::Code(u32::from_le_bytes(status.to_le_bytes()));
        let exit_time_utc = exit_time.and_then(system_time_from_filetime);
        // The FILETIME of a time that converts is the time's own.
        let exit_ft = exit_time.filter(|_| exit_time_utc.is_some());
        let stop = self.pair_with_waiting_stop(p.pid, status, exit_ft);
        // The End's own text wins; what the Start stored fills its gaps.
        // Usually both say the same: then the stored String moves into the
        // record instead of the End's text being copied again.
        let seed = seed.unwrap_or(Seed {
            start_time: None,
            name: None,
            command_line: None,
            user: None,
        });
        let start_time = seed.start_time.and_then(system_time_from_filetime);
        // A ProcessStop that waited for this End may have taken the kill.
        let killer = self
            .take_kill(p.pid, seed.start_time, exit_time)
            .or_else(|| stop.as_ref().and_then(|stop| stop.killer.clone()));
        Ok(Some(ProcessExit {
            pid: p.pid,
            ppid: Some(p.ppid),
            status,
            name: prefer(p.image_file_name, seed.name.map(String::from)),
            command_line: prefer(p.command_line, seed.command_line.map(String::from)),
            start_time: match &stop {
                Some(stop) => start_time.or(stop.start_time),
                None => start_time,
            },
            exit_time: exit_time_utc,
            user: self
                .user_text(p.user_sid, seed.user.map(String::from))
                .map(User::Sid),
            process_key: key.process_key(),
            source: self.source,
            killer,
            oom_killed: None,
            // Only the ProcessStop reports resource use. Chosen here, not
            // in a variable first: the record is written once, in place.
            resources: match stop {
                Some(stop) => stop.resources,
                None => Resources::default(),
            },
            cgroup: None,
            container_id: None,
        }))
    }
}

impl EtwExitTracker<()> {
    /// One event of any provider, as the real-time consumer hands it over:
    /// routed, decoded and tracked with the calls its callback makes
    /// (exits of Kernel-Process events come from
    /// [`take_released`](Self::take_released)). For benchmarks.
    pub(crate) fn on_event<P>(
        &mut self,
        view: &EventView<'_, P>,
    ) -> Result<Option<ProcessExit>, DecodeError> {
        match route(&view.header) {
            Route::Process(op) => {
                let mut payload = ProcessPayloadRef::EMPTY;
                let decoded = decode_process_view(view, &mut payload).map(|()| &payload);
                self.on_process_event(op, view.header.time, decoded)
            }
            Route::KernelProcess(op) => {
                let version = u8::try_from(view.header.version).unwrap_or(u8::MAX);
                self.on_kernel_process_event(op, version, view.header.time, view.payload, ())
                    .map(|()| None)
            }
            Route::Terminate => {
                let version = u8::try_from(view.header.version).unwrap_or(u8::MAX);
                self.on_terminate(view.header.pid, version, view.header.time, view.payload);
                Ok(None)
            }
            Route::Lost(_) | Route::Other => Ok(None),
        }
    }
}

/// A kernel Process-class lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessOp {
    /// Opcode 1.
    Start,
    /// Opcode 2.
    End,
    /// Opcode 3: alive when the session started.
    DcStart,
    /// Opcode 4: alive when the session stopped.
    DcEnd,
    /// Opcode 39: a zombie at rundown.
    Defunct,
}

/// A Microsoft-Windows-Kernel-Process event the tracker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelProcessOp {
    /// ProcessStart (id 1).
    Start,
    /// ProcessStop (id 2).
    Stop,
}

/// Where an ETW event goes: the one routing decision, by provider GUID and
/// opcode or event id, for the real-time callback and the `.etl` reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A kernel Process lifecycle event (decode with [`decode_process_event`]).
    Process(ProcessOp),
    /// A Kernel-Process start or stop.
    KernelProcess(KernelProcessOp),
    /// A Kernel-Audit-API-Calls TerminateProcess of another process (id 2).
    Terminate,
    /// A real-time loss notification; `None` for an unknown loss opcode.
    Lost(Option<LostKind>),
    /// Anything else (other kernel classes and Process opcodes such as
    /// Terminate or PerfCtr, trace headers, other providers).
    Other,
}

/// Routes one event by its header.
pub(crate) fn route(header: &EventHeader) -> Route {
    if header.provider == PROCESS_GUID {
        match header.opcode {
            OPCODE_START => Route::Process(ProcessOp::Start),
            OPCODE_END => Route::Process(ProcessOp::End),
            OPCODE_DC_START => Route::Process(ProcessOp::DcStart),
            OPCODE_DC_END => Route::Process(ProcessOp::DcEnd),
            OPCODE_DEFUNCT => Route::Process(ProcessOp::Defunct),
            _ => Route::Other,
        }
    } else if header.provider == KERNEL_PROCESS_GUID {
        match header.event_id {
            EVENT_PROCESS_START => Route::KernelProcess(KernelProcessOp::Start),
            EVENT_PROCESS_STOP => Route::KernelProcess(KernelProcessOp::Stop),
            _ => Route::Other,
        }
    } else if header.provider == LOST_EVENT_GUID {
        Route::Lost(classify_lost(header.opcode))
    } else if header.provider == KERNEL_AUDIT_API_CALLS_GUID
        && header.event_id == EVENT_TERMINATE_PROCESS
    {
        Route::Terminate
    } else {
        Route::Other
    }
}

/// The one decode of a kernel Process payload, with the layout of the
/// event's version and pointer width. Versions beyond a byte do not exist;
/// they saturate, so the newest layout reads them.
/// The strings stay borrowed from the payload: the tracker copies only the
/// ones it keeps.
pub(crate) fn decode_process_event<'a, P>(
    view: &EventView<'a, P>,
) -> Result<ProcessPayloadRef<'a>, DecodeError> {
    let mut payload = ProcessPayloadRef::EMPTY;
    decode_process_view(view, &mut payload)?;
    Ok(payload)
}

/// [`decode_process_event`] into `out` (starting as
/// [`ProcessPayloadRef::EMPTY`]): the per-event form, without moving the
/// decoded payload around.
pub(crate) fn decode_process_view<'a, P>(
    view: &EventView<'a, P>,
    out: &mut ProcessPayloadRef<'a>,
) -> Result<(), DecodeError> {
    let version = u8::try_from(view.header.version).unwrap_or(u8::MAX);
    decode_process_into(view.payload, version, view.header.pointer_size, out)
}

/// Whether two (pid, status, exit FILETIME) describe the same exit.
fn same_exit(a: (u32, ExitStatus, Option<u64>), b: (u32, ExitStatus, Option<u64>)) -> bool {
    let close = match (a.2, b.2) {
        (Some(x), Some(y)) => x.abs_diff(y) <= SAME_EXIT_WINDOW,
        _ => false,
    };
    a.0 == b.0 && a.1 == b.1 && close
}

/// `SystemTime` → FILETIME (100 ns ticks since 1601-01-01 UTC); the inverse
/// of [`system_time_from_filetime`] for times after 1970 (0 before).
pub(crate) fn filetime_of(t: std::time::SystemTime) -> u64 {
    const TICKS_1601_TO_1970: u64 = 116_444_736_000_000_000;
    // Whole seconds and 100 ns ticks of the rest: the same value as the
    // nanoseconds divided by 100, without a 128-bit division per exit.
    let since_1970 = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .checked_mul(10_000_000)
            .and_then(|ticks| ticks.checked_add(u64::from(d.subsec_nanos() / 100)))
            .unwrap_or(u64::MAX)
    });
    since_1970.saturating_add(TICKS_1601_TO_1970)
}

fn proc_key(p: &ProcessPayloadRef<'_>) -> ProcKey {
    // An EPROCESS address is never 0; a 0 key (synthetic traces) means "none".
    ProcKey {
        pid: p.pid,
        key: p.unique_process_key.unwrap_or(0),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Payload text as an owned `String`; `None` when absent or empty.
fn owned_non_empty<T: PayloadText>(text: Option<T>) -> Option<String> {
    text.filter(|t| !t.is_empty()).map(|t| t.to_owned_string())
}

/// The payload's text when it has some, else `kept`; `kept` itself (moved,
/// not copied) when it holds the same text.
fn prefer<T: PayloadText>(text: Option<T>, kept: Option<String>) -> Option<String> {
    match (text.filter(|t| !t.is_empty()), kept) {
        (None, kept) => kept,
        (Some(text), Some(kept)) if text.eq_str(&kept) => Some(kept),
        (Some(text), _) => Some(text.to_owned_string()),
    }
}

/// `\Device\HarddiskVolume3\Windows\System32\cmd.exe` → `cmd.exe`.
fn leaf_name(path: &str) -> Option<String> {
    path.rsplit('\\')
        .next()
        .filter(|leaf| !leaf.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]

    use super::*;
    use crate::decode::PointerSize;
    use crate::test_rng::xorshift;
    use std::time::SystemTime;

    const P8: PointerSize = PointerSize::Eight;
    const T_START: u64 = 132_445_973_974_989_595;
    const T_END: u64 = 132_445_974_082_348_412;
    /// Start of the observed window: one second before `T_START`.
    const T_WINDOW: u64 = T_START - 10_000_000;

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    /// A v4/v5 x64 payload with a SYSTEM SID, or no SID and no strings
    /// content when `bare` (to test seeding).
    fn mof(version: u8, key: u64, pid: u32, status: i32, name: &str, cmd: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(key.to_le_bytes());
        b.extend(pid.to_le_bytes());
        b.extend(700u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(status.to_le_bytes());
        b.extend(0x1000u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        if name.is_empty() {
            b.extend([0; 4]);
        } else {
            b.extend([0x11; 8]);
            b.extend([0; 8]);
            b.extend([1, 1, 0, 0, 0, 0, 0, 5]);
            b.extend(18u32.to_le_bytes());
        }
        b.extend(name.as_bytes());
        b.push(0);
        b.extend(utf16z(cmd));
        b.extend(utf16z(""));
        b.extend(utf16z(""));
        if version >= 5 {
            b.extend(T_START.to_le_bytes());
        }
        b
    }

    fn ft(t: u64) -> Option<SystemTime> {
        system_time_from_filetime(t)
    }

    #[test]
    fn start_then_end_gives_start_time_and_fills_gaps() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        let start = mof(4, 0xaa, 10, 259, "git.exe", "git.exe remote -v");
        assert_eq!(
            t.on_process_bytes(OPCODE_START, 4, P8, Some(T_START), &start),
            Ok(None)
        );
        // An End whose SID and strings are empty takes them from the Start.
        let end = mof(4, 0xaa, 10, 1, "", "");
        let exit = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END), &end)
            .unwrap()
            .unwrap();
        assert_eq!(exit.pid, 10);
        assert_eq!(exit.ppid, Some(700));
        assert_eq!(exit.status, ExitStatus::Code(1));
        assert_eq!(exit.name.as_deref(), Some("git.exe"));
        assert_eq!(exit.command_line.as_deref(), Some("git.exe remote -v"));
        assert_eq!(exit.user, Some(User::Sid("S-1-5-18".into())));
        assert_eq!(exit.process_key, Some(0xaa));
        assert_eq!(exit.start_time, ft(T_START));
        assert_eq!(exit.exit_time, ft(T_END));
        assert_eq!(exit.source, Source::EtwKernel);
        assert_eq!(t.live.len(), 0);
        assert_eq!(t.anomalies(), 0);
    }

    #[test]
    fn dcstart_then_end_has_no_start_time() {
        let mut t = EtwExitTracker::<()>::new(Source::EtlFile, Some(T_WINDOW));
        let dc = mof(4, 0xbb, 11, 259, "svc.exe", "svc.exe -k");
        t.on_process_bytes(OPCODE_DC_START, 4, P8, Some(T_START), &dc)
            .unwrap();
        let end = mof(4, 0xbb, 11, -1_073_741_510, "svc.exe", "");
        let exit = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END), &end)
            .unwrap()
            .unwrap();
        assert_eq!(exit.start_time, None);
        assert_eq!(exit.command_line.as_deref(), Some("svc.exe -k"));
        assert_eq!(exit.status, ExitStatus::Code(0xc000_013a));
        assert_eq!(exit.source, Source::EtlFile);
    }

    #[test]
    fn end_then_defunct_same_key_is_one_record() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        let end = mof(4, 0xcc, 12, 0, "a.exe", "a");
        assert!(t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END), &end)
            .unwrap()
            .is_some());
        let defunct = mof(5, 0xcc, 12, 0, "a.exe", "");
        assert_eq!(
            t.on_process_bytes(OPCODE_DEFUNCT, 5, P8, Some(T_END + 10), &defunct),
            Ok(None)
        );
        // A v5 Defunct of a process that ended inside the window and had
        // no End is an exit, timed by its payload's ExitTime.
        let other = mof(5, 0xdd, 13, 0, "b.exe", "");
        let exit = t
            .on_process_bytes(OPCODE_DEFUNCT, 5, P8, Some(T_END + 10), &other)
            .unwrap()
            .unwrap();
        assert_eq!(exit.exit_time, ft(T_START));
        assert_eq!(exit.start_time, None);
        assert_eq!(exit.name.as_deref(), Some("b.exe"));
        // Repeated rundowns do not report it twice.
        assert_eq!(
            t.on_process_bytes(OPCODE_DEFUNCT, 5, P8, Some(T_END + 20), &other),
            Ok(None)
        );
        // A v4 Defunct (no ExitTime) of a process never seen alive: a zombie
        // from before the window, not an exit.
        let v4 = mof(4, 0xee, 14, 0, "c.exe", "");
        assert_eq!(
            t.on_process_bytes(OPCODE_DEFUNCT, 4, P8, Some(T_END), &v4),
            Ok(None)
        );
    }

    /// `payload` with its trailing v5 ExitTime replaced by `exit_time`.
    fn exit_time_at(mut payload: Vec<u8>, exit_time: u64) -> Vec<u8> {
        let at = payload.len() - 8;
        payload[at..].copy_from_slice(&exit_time.to_le_bytes());
        payload
    }

    #[test]
    fn defunct_v4_of_a_process_seen_alive_is_an_exit() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        let dc = mof(4, 0x51, 51, 259, "held.exe", "held.exe --wait");
        t.on_process_bytes(OPCODE_DC_START, 4, P8, Some(T_WINDOW), &dc)
            .unwrap();
        // Its End was lost; the stop-time rundown lists it as a zombie.
        let defunct = mof(4, 0x51, 51, 7, "held.exe", "");
        let exit = t
            .on_process_bytes(OPCODE_DEFUNCT, 4, P8, Some(T_END), &defunct)
            .unwrap()
            .unwrap();
        assert_eq!(exit.status, ExitStatus::Code(7));
        assert_eq!(exit.command_line.as_deref(), Some("held.exe --wait"));
        // The rundown's time is not the exit time, and v4 has none.
        assert_eq!(exit.exit_time, None);
        // A Start seeds it as well.
        let start = mof(4, 0x52, 52, 259, "new.exe", "");
        t.on_process_bytes(OPCODE_START, 4, P8, Some(T_START), &start)
            .unwrap();
        let exit = t
            .on_process_bytes(
                OPCODE_DEFUNCT,
                4,
                P8,
                Some(T_END),
                &mof(4, 0x52, 52, 0, "", ""),
            )
            .unwrap()
            .unwrap();
        assert_eq!(exit.start_time, ft(T_START));
    }

    #[test]
    fn defunct_that_ended_before_the_window_is_a_zombie() {
        let mut t = EtwExitTracker::<()>::new(Source::EtlFile, Some(T_START));
        // v5, ExitTime a day before the window: never an exit.
        let old = exit_time_at(
            mof(5, 0x61, 61, 0, "smss.exe", ""),
            T_START - 864_000_000_000,
        );
        assert_eq!(
            t.on_process_bytes(OPCODE_DEFUNCT, 5, P8, Some(T_END), &old),
            Ok(None)
        );
        // ExitTime exactly at the window start counts as inside.
        let edge = exit_time_at(mof(5, 0x62, 62, 0, "edge.exe", ""), T_START);
        assert!(t
            .on_process_bytes(OPCODE_DEFUNCT, 5, P8, Some(T_END), &edge)
            .unwrap()
            .is_some());
        // Without a known window start, ExitTime alone proves nothing: only a
        // process seen alive counts.
        let mut t = EtwExitTracker::<()>::new(Source::EtlFile, None);
        let unseen = mof(5, 0x63, 63, 0, "x.exe", "");
        assert_eq!(
            t.on_process_bytes(OPCODE_DEFUNCT, 5, P8, Some(T_END), &unseen),
            Ok(None)
        );
        t.on_process_bytes(
            OPCODE_DC_START,
            5,
            P8,
            None,
            &mof(4, 0x64, 64, 259, "y.exe", ""),
        )
        .unwrap();
        assert!(t
            .on_process_bytes(
                OPCODE_DEFUNCT,
                5,
                P8,
                Some(T_END),
                &mof(5, 0x64, 64, 0, "", "")
            )
            .unwrap()
            .is_some());
    }

    /// Every exit `take_released` gives after one Kernel-Process event.
    fn released(t: &mut EtwExitTracker<u32>) -> Vec<(Option<u32>, u32)> {
        t.take_released()
            .map(|(e, tag)| (e.map(|e| e.pid), tag))
            .collect()
    }

    #[test]
    fn kernel_end_and_process_stop_of_one_exit_give_one_record() {
        // Stop first: it waits, and the End takes its create time.
        let mut t = EtwExitTracker::<u32>::new(Source::EtlFile, Some(T_WINDOW));
        t.on_process_bytes(
            OPCODE_DC_START,
            4,
            P8,
            None,
            &mof(4, 9, 70, 259, "z.exe", ""),
        )
        .unwrap();
        t.on_kernel_process_event(KernelProcessOp::Stop, 1, None, &stop_at(1, 71, T_END), 1)
            .unwrap();
        assert_eq!(released(&mut t), vec![]);
        let end = mof(
            4,
            0x71,
            71,
            0xc000_0005_u32 as i32,
            "crash.exe",
            "crash.exe -x",
        );
        let exit = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END + 20), &end)
            .unwrap()
            .unwrap();
        assert_eq!(exit.start_time, ft(T_START));
        assert_eq!(exit.command_line.as_deref(), Some("crash.exe -x"));
        assert_eq!(exit.source, Source::EtlFile);
        assert_eq!(released(&mut t), vec![(None, 1)]);
        // End first: the stop that follows is the same exit.
        let end = mof(4, 0x72, 72, 0xc000_0005_u32 as i32, "b.exe", "");
        t.on_process_bytes(OPCODE_END, 4, P8, Some(T_END), &end)
            .unwrap()
            .unwrap();
        t.on_kernel_process_event(KernelProcessOp::Stop, 1, None, &stop_at(1, 72, T_END), 2)
            .unwrap();
        assert_eq!(released(&mut t), vec![(None, 2)]);
        // A stop no End matches is released at the end of the stream.
        t.on_kernel_process_event(KernelProcessOp::Stop, 1, None, &stop_at(1, 73, T_END), 3)
            .unwrap();
        assert_eq!(released(&mut t), vec![]);
        t.finish();
        assert_eq!(released(&mut t), vec![(Some(73), 3)]);
    }

    #[test]
    fn process_stops_alone_are_exits_at_once() {
        // A stream without kernel Process events (the Kernel-Process backend).
        let mut t = EtwExitTracker::<u32>::new(Source::EtwKernelProcess, Some(T_WINDOW));
        t.on_kernel_process_event(KernelProcessOp::Stop, 2, None, &stop_at(2, 80, T_END), 1)
            .unwrap();
        assert_eq!(released(&mut t), vec![(Some(80), 1)]);
        // Starts give their tag back without a record.
        t.on_kernel_process_event(KernelProcessOp::Start, 1, None, &[], 2)
            .unwrap();
        assert_eq!(released(&mut t), vec![(None, 2)]);
        // A stop that does not decode: an error, and its tag comes back.
        assert!(t
            .on_kernel_process_event(KernelProcessOp::Stop, 1, None, &[1, 2], 3)
            .is_err());
        assert_eq!(released(&mut t), vec![(None, 3)]);
    }

    #[test]
    fn pid_reuse_with_different_keys_gives_two_records() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        t.on_process_bytes(
            OPCODE_START,
            4,
            P8,
            Some(T_START),
            &mof(4, 1, 20, 259, "x.exe", "x 1"),
        )
        .unwrap();
        t.on_process_bytes(
            OPCODE_START,
            4,
            P8,
            Some(T_START + 5),
            &mof(4, 2, 20, 259, "y.exe", "y 2"),
        )
        .unwrap();
        let a = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END), &mof(4, 1, 20, 3, "", ""))
            .unwrap()
            .unwrap();
        let b = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END), &mof(4, 2, 20, 4, "", ""))
            .unwrap()
            .unwrap();
        assert_eq!((a.process_key, a.name.as_deref()), (Some(1), Some("x.exe")));
        assert_eq!((b.process_key, b.name.as_deref()), (Some(2), Some("y.exe")));
        assert_eq!(b.start_time, ft(T_START + 5));
        // A Defunct for the first key is deduplicated, not the pid as a whole.
        let d = mof(5, 3, 20, 0, "z.exe", "");
        assert!(t
            .on_process_bytes(OPCODE_DEFUNCT, 5, P8, None, &d)
            .unwrap()
            .is_some());
    }

    #[test]
    fn bad_events_are_not_fatal() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        // Undecodable Start: counted, ignored.
        assert_eq!(
            t.on_process_bytes(OPCODE_START, 4, P8, None, &[1, 2, 3]),
            Ok(None)
        );
        assert_eq!(t.anomalies(), 1);
        // Undecodable End: an error for that event only.
        assert!(t
            .on_process_bytes(OPCODE_END, 4, P8, None, &[1, 2, 3])
            .is_err());
        // v0 End has no exit status: error, not a made-up code.
        let mut v0 = Vec::new();
        v0.extend(30u64.to_le_bytes());
        v0.extend(4u64.to_le_bytes());
        v0.extend([0; 4]);
        v0.extend(b"old.exe\0");
        assert!(t.on_process_bytes(OPCODE_END, 0, P8, None, &v0).is_err());
        // Other opcodes (Terminate, PerfCtr, DCEnd) are ignored whatever the payload.
        for op in [4u8, 11, 32, 33] {
            assert_eq!(t.on_process_bytes(op, 2, P8, None, &[9; 4]), Ok(None));
        }
        // Later events still work.
        let exit = t
            .on_process_bytes(
                OPCODE_END,
                4,
                P8,
                Some(T_END),
                &mof(4, 5, 31, 0, "ok.exe", ""),
            )
            .unwrap()
            .unwrap();
        assert_eq!(exit.name.as_deref(), Some("ok.exe"));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        for i in 0..(MAX_LIVE as u64 + 1000) {
            let p = mof(4, 0x1000 + i, i as u32, 259, "n.exe", "");
            t.on_process_bytes(OPCODE_START, 4, P8, Some(T_START), &p)
                .unwrap();
        }
        assert_eq!(t.live.len(), MAX_LIVE);
        assert_eq!(t.evicted(), 1000);
        assert!(t.live.slots() <= MAX_LIVE + 1);
        for i in 0..(MAX_REPORTED as u64 + 1000) {
            let p = mof(4, 0x1000 + i, i as u32, 0, "n.exe", "");
            t.on_process_bytes(OPCODE_END, 4, P8, None, &p).unwrap();
        }
        assert_eq!(t.reported.len(), MAX_REPORTED);
        // Oldest live entries were evicted: their End has no start time.
        let early = t
            .on_process_bytes(OPCODE_END, 4, P8, None, &mof(4, 0x1000, 0, 0, "", ""))
            .unwrap()
            .unwrap();
        assert_eq!(early.start_time, None);
    }

    #[test]
    fn command_lines_stay_within_the_byte_budget() {
        let mut t: EtwExitTracker = EtwExitTracker::new(Source::EtwKernel, None);
        t.command_line_budget = 100_000;
        // 32 000-character command lines (64 KB of UTF-16 on the wire,
        // 32 KB held as UTF-8): only three fit in 100 000 bytes.
        let long = "x".repeat(32_000);
        for i in 0..10u64 {
            let p = mof(4, 0x2000 + i, 500 + i as u32, 259, "big.exe", &long);
            t.on_process_bytes(OPCODE_START, 4, P8, Some(T_START), &p)
                .unwrap();
            assert!(t.command_line_bytes <= 100_000);
        }
        assert_eq!(t.live.len(), 3);
        assert_eq!(t.evicted(), 7);
        assert_eq!(t.command_line_bytes, 3 * 32_000);
        // An evicted process's End still carries its own command line.
        let end = mof(4, 0x2000, 500, 0, "big.exe", &long);
        let exit = t
            .on_process_bytes(OPCODE_END, 4, P8, None, &end)
            .unwrap()
            .unwrap();
        assert_eq!(exit.start_time, None);
        assert_eq!(exit.command_line.as_deref(), Some(long.as_str()));
        // Ends and restarts of a pid give their bytes back.
        let last = mof(4, 0x2009, 509, 0, "big.exe", "");
        t.on_process_bytes(OPCODE_END, 4, P8, None, &last).unwrap();
        assert_eq!(t.command_line_bytes, 2 * 32_000);
        let again = mof(4, 0x2008, 508, 259, "big.exe", "short");
        t.on_process_bytes(OPCODE_DC_START, 4, P8, None, &again)
            .unwrap();
        assert_eq!(t.command_line_bytes, 32_000 + 5);
        assert_eq!(t.evicted(), 7);
    }

    /// One Kernel-Process event; the exit it released, if any.
    fn kp(
        t: &mut EtwExitTracker,
        id: u16,
        version: u8,
        timestamp: Option<u64>,
        payload: &[u8],
    ) -> Result<Option<ProcessExit>, DecodeError> {
        let mut header = EventHeader::new(KERNEL_PROCESS_GUID, 0, version.into(), P8);
        header.event_id = id;
        let Route::KernelProcess(op) = route(&header) else {
            return Ok(None);
        };
        let result = t.on_kernel_process_event(op, version, timestamp, payload, ());
        let mut exits: Vec<ProcessExit> = t.take_released().filter_map(|(e, ())| e).collect();
        assert!(exits.len() <= 1);
        result.map(|()| exits.pop())
    }

    /// A ProcessStop of `pid` created at `T_START`, ended at `exit`, code
    /// 0xC0000005.
    fn stop_at(version: u8, pid: u32, exit: u64) -> Vec<u8> {
        let mut b = kp_stop(version, pid, T_START, "crash.exe");
        let at = if version >= 2 { 20 } else { 12 };
        b[at..at + 8].copy_from_slice(&exit.to_le_bytes());
        b
    }

    fn kp_stop(version: u8, pid: u32, create: u64, name: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(pid.to_le_bytes());
        if version >= 2 {
            b.extend(77u64.to_le_bytes());
        }
        b.extend(create.to_le_bytes());
        b.extend(T_END.to_le_bytes());
        b.extend(0xc000_0005u32.to_le_bytes());
        b.extend([0; 8]);
        b.extend([0; 16]);
        if version >= 1 {
            b.extend([0; 28]);
        }
        b.extend(name.as_bytes());
        b.push(0);
        b
    }

    /// A Kernel-Audit-API-Calls event 2 v1 payload.
    fn terminate(target: u32, rc: u32, created: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(target.to_le_bytes());
        b.extend(rc.to_le_bytes());
        b.extend(0x0001_0000_0000_0042u64.to_le_bytes());
        b.extend(created.to_le_bytes());
        b
    }

    /// Routes a TerminateProcess event by `caller` at `time` as the
    /// callback does.
    fn kill(t: &mut EtwExitTracker, caller: u32, version: u8, time: u64, payload: &[u8]) {
        let mut header = EventHeader::new(KERNEL_AUDIT_API_CALLS_GUID, 0, version.into(), P8);
        header.event_id = EVENT_TERMINATE_PROCESS;
        header.pid = Some(caller);
        header.time = Some(time);
        assert_eq!(route(&header), Route::Terminate);
        let view = EventView {
            header,
            payload,
            extended: &[],
            place: (),
        };
        assert_eq!(t.on_event(&view), Ok(None));
    }

    #[test]
    fn a_terminate_call_names_its_caller_on_the_targets_exit() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        // The killer's rundown and the victim's start.
        let killer = mof(4, 0xbb, 20, 259, "taskkill.exe", "taskkill /f /pid 10");
        t.on_process_bytes(OPCODE_DC_START, 4, P8, Some(T_START), &killer)
            .unwrap();
        let victim = mof(4, 0xaa, 10, 259, "sleep.exe", "sleep 60");
        t.on_process_bytes(OPCODE_START, 4, P8, Some(T_START), &victim)
            .unwrap();
        kill(&mut t, 20, 1, T_END - 100, &terminate(10, 0, T_START));
        let end = mof(4, 0xaa, 10, 1, "", "");
        let exit = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END), &end)
            .unwrap()
            .unwrap();
        assert_eq!(
            exit.killer,
            Some(Killer {
                pid: 20,
                name: Some("taskkill.exe".into())
            })
        );
        // The kill was used up: the killer's own exit names nobody.
        let end = mof(4, 0xbb, 20, 0, "", "");
        let exit = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(T_END + 10), &end)
            .unwrap()
            .unwrap();
        assert_eq!(exit.killer, None);
    }

    #[test]
    fn exits_without_a_matching_successful_call_name_no_killer() {
        let end = |t: &mut EtwExitTracker, pid: u32, at: u64| {
            let payload = mof(4, 0xaa, pid, 1, "x.exe", "");
            t.on_process_bytes(OPCODE_END, 4, P8, Some(at), &payload)
                .unwrap()
                .unwrap()
                .killer
        };
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        // A process that exits by itself.
        assert_eq!(end(&mut t, 10, T_END), None);
        // A failed call (STATUS_ACCESS_DENIED), a call on itself, a call on
        // another pid, a call after the exit, one too long before it, and
        // one on an older process of the same pid: none is this exit's.
        kill(
            &mut t,
            20,
            1,
            T_END - 100,
            &terminate(11, 0xc000_0022, T_START),
        );
        kill(&mut t, 11, 1, T_END - 100, &terminate(11, 0, T_START));
        kill(&mut t, 20, 1, T_END - 100, &terminate(12, 0, T_START));
        assert_eq!(end(&mut t, 11, T_END), None);
        kill(
            &mut t,
            20,
            1,
            T_END + 3 * 10_000_000,
            &terminate(13, 0, T_START),
        );
        assert_eq!(end(&mut t, 13, T_END), None);
        kill(
            &mut t,
            20,
            1,
            T_END - KILL_WINDOW - 1,
            &terminate(14, 0, T_START),
        );
        assert_eq!(end(&mut t, 14, T_END), None);
        let earlier = T_START - 100 * 10_000_000;
        kill(&mut t, 20, 1, T_END - 100, &terminate(15, 0, earlier));
        let start = mof(4, 0xaa, 15, 259, "x.exe", "");
        t.on_process_bytes(OPCODE_START, 4, P8, Some(T_START), &start)
            .unwrap();
        assert_eq!(end(&mut t, 15, T_END), None);
        // A v0 call (no creation time) still joins by pid and time; its
        // caller's name is unknown (no start or rundown seen).
        kill(&mut t, 30, 0, T_END - 100, &terminate(16, 0, 0)[..8]);
        assert_eq!(
            end(&mut t, 16, T_END),
            Some(Killer {
                pid: 30,
                name: None
            })
        );
        // A payload that does not decode is an anomaly, never a kill.
        let before = t.anomalies();
        kill(&mut t, 20, 1, T_END, &[1, 2, 3]);
        assert_eq!(t.anomalies(), before + 1);
    }

    #[test]
    fn a_kernel_process_stop_names_its_killer() {
        // The Kernel-Process session: the killer's name from its
        // ProcessStart image path, the victim's exact creation time.
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernelProcess, Some(T_WINDOW));
        let mut start = Vec::new();
        start.extend(20u32.to_le_bytes());
        start.extend(T_START.to_le_bytes());
        start.extend(4u32.to_le_bytes());
        start.extend(1u32.to_le_bytes());
        start.extend(0u32.to_le_bytes());
        start.extend(utf16z(
            "\\Device\\HarddiskVolume2\\Windows\\System32\\taskkill.exe",
        ));
        kp(&mut t, EVENT_PROCESS_START, 1, Some(T_START), &start).unwrap();
        kill(&mut t, 20, 1, T_END - 100, &terminate(71, 0, T_START));
        let exit = kp(&mut t, EVENT_PROCESS_STOP, 1, None, &stop_at(1, 71, T_END))
            .unwrap()
            .unwrap();
        assert_eq!(
            exit.killer,
            Some(Killer {
                pid: 20,
                name: Some("taskkill.exe".into())
            })
        );
    }

    #[test]
    fn kernel_process_stop_every_version() {
        for version in 0..=2 {
            let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
            let exit = kp(
                &mut t,
                EVENT_PROCESS_STOP,
                version,
                Some(T_END + 1),
                &kp_stop(version, 40, T_START, "crash.exe"),
            )
            .unwrap()
            .unwrap();
            assert_eq!(exit.pid, 40, "v{version}");
            assert_eq!(exit.status, ExitStatus::Code(0xc000_0005));
            assert_eq!(exit.start_time, ft(T_START));
            assert_eq!(exit.exit_time, ft(T_END));
            assert_eq!(exit.name.as_deref(), Some("crash.exe"));
            assert_eq!(exit.process_key, None);
            assert_eq!(exit.command_line, None);
            assert_eq!(exit.ppid, None);
            assert_eq!(exit.source, Source::EtwKernelProcess);
        }
    }

    #[test]
    fn kernel_process_start_supplies_the_parent() {
        let mut t = EtwExitTracker::<()>::new(Source::EtlFile, Some(T_WINDOW));
        let mut start = Vec::new();
        start.extend(41u32.to_le_bytes());
        start.extend(T_START.to_le_bytes());
        start.extend(900u32.to_le_bytes());
        start.extend(1u32.to_le_bytes());
        start.extend(0u32.to_le_bytes());
        start.extend(utf16z(
            "\\Device\\HarddiskVolume3\\Tools\\long-name-tool.exe",
        ));
        assert_eq!(
            kp(&mut t, EVENT_PROCESS_START, 1, Some(T_START), &start),
            Ok(None)
        );
        // Stop whose image name is cut off: the leaf of the start path is used.
        let mut stop = kp_stop(1, 41, T_START, "x");
        stop.truncate(stop.len() - 2);
        let exit = kp(&mut t, EVENT_PROCESS_STOP, 1, None, &stop)
            .unwrap()
            .unwrap();
        assert_eq!(exit.ppid, Some(900));
        assert_eq!(exit.name.as_deref(), Some("long-name-tool.exe"));
        assert_eq!(exit.source, Source::EtlFile);
        // Same pid, other create time: no parent.
        let exit = kp(
            &mut t,
            EVENT_PROCESS_STOP,
            1,
            None,
            &kp_stop(1, 41, T_START + 1, "x"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(exit.ppid, None);
        // Other ids are ignored; bad starts (and the cut-off name above) are counted.
        assert_eq!(kp(&mut t, 15, 1, None, &[0; 3]), Ok(None));
        assert_eq!(kp(&mut t, EVENT_PROCESS_START, 1, None, &[0; 3]), Ok(None));
        assert_eq!(t.anomalies(), 2);
    }

    #[test]
    fn garbage_never_panics() {
        let mut t = EtwExitTracker::<()>::new(Source::EtwKernel, Some(T_WINDOW));
        let mut state = 0xdead_beef_cafe_f00du64;
        for _ in 0..20_000 {
            state = xorshift(state);
            let len = (state % 160) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    (state.rotate_right(i as u32 % 64) as u8) & if i % 3 == 0 { 0 } else { 0xff }
                })
                .collect();
            let op = [1u8, 2, 3, 4, 11, 39][(state >> 32) as usize % 6];
            let version = (state >> 40) as u8 % 7;
            let p = if state & 1 == 0 {
                P8
            } else {
                PointerSize::Four
            };
            let _ = t.on_process_bytes(op, version, p, Some(state), &bytes);
            let _ = kp(&mut t, (state >> 48) as u16 % 3, version, None, &bytes);
        }
    }

    /// The conhost.exe Start and End of perfview_diaghub.kernel.1.etl, with
    /// the event times of its expected.json.
    #[test]
    fn real_start_and_end() {
        let start = crate::decode::test_hex(&[
            "40736df404a8ffff782e0000e4340000020000000301000000d082700200000000000000605f8eb183d3ffff00000000",
            "00000000010500000000000515000000a065cf7e784b9b5fe77c877013b99e02636f6e686f73742e657865005c003f00",
            "3f005c0043003a005c00570049004e0044004f00570053005c00730079007300740065006d00330032005c0063006f00",
            "6e0068006f00730074002e006500780065002000300078006600660066006600660066006600660020002d0046006f00",
            "72006300650056003100000000000000",
        ]);
        let end = crate::decode::test_hex(&[
            "40736df404a8ffff782e0000e4340000020000000000000000d082700200000000000000a00886c783d3ffff00000000",
            "83d3ffff010500000000000515000000a065cf7e784b9b5fe77c877013b99e02636f6e686f73742e657865005c003f00",
            "3f005c0043003a005c00570049004e0044004f00570053005c00730079007300740065006d00330032005c0063006f00",
            "6e0068006f00730074002e006500780065002000300078003400000000000000",
        ]);
        let mut t = EtwExitTracker::<()>::new(Source::EtlFile, Some(T_WINDOW));
        assert_eq!(
            t.on_process_bytes(OPCODE_START, 4, P8, Some(132_445_973_974_989_595), &start),
            Ok(None)
        );
        let exit = t
            .on_process_bytes(OPCODE_END, 4, P8, Some(132_445_974_082_348_412), &end)
            .unwrap()
            .unwrap();
        assert_eq!((exit.pid, exit.ppid), (11896, Some(13540)));
        assert_eq!(exit.status, ExitStatus::Code(0));
        assert_eq!(exit.process_key, Some(18_446_647_337_966_990_144));
        assert_eq!(exit.name.as_deref(), Some("conhost.exe"));
        // The End's own command line wins over the Start's.
        assert_eq!(
            exit.command_line.as_deref(),
            Some("\\??\\C:\\WINDOWS\\system32\\conhost.exe 0x4")
        );
        let lifetime = exit.duration().unwrap();
        assert_eq!(lifetime.as_micros(), 10_735_881);
        assert_eq!(t.anomalies(), 0);
    }
}

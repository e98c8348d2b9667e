//! Tests that run under Wine (CI) and on real Windows: struct layouts
//! against the documented tables, the callback → tracker → sink path with
//! hand-built records, and the session lifecycle against whatever ETW is
//! there (Wine's stubs: start succeeds, OpenTraceW fails with 5).

#![allow(unsafe_code)]

use std::mem::{offset_of, size_of};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use windows_sys::Win32::System::Diagnostics::Etw::{
    ENABLE_TRACE_PARAMETERS, EVENT_DESCRIPTOR, EVENT_HEADER, EVENT_RECORD, EVENT_TRACE_LOGFILEW,
    EVENT_TRACE_PROPERTIES, TRACE_LOGFILE_HEADER, WNODE_HEADER,
};

use super::console;
use super::consumer::{on_event, Context};
use super::ffi::{under_wine, win_guid};
use super::lock::NameLock;
use super::plan::Plan;
use super::properties::LossCounters;
use super::session::Session;
use super::supervise::{report_loss, LossLedger};
use super::{wait_until, LIVE_THREADS};
use crate::config::WindowsOptions;
use crate::decode::{Guid, KERNEL_PROCESS_GUID, LOST_EVENT_GUID, PROCESS_GUID};
use crate::error::Error;
use crate::event::{Event, ExitStatus, LossReason, Source, User};
use crate::filter::Filter;
use crate::monitor::{Backend, Monitor};
use crate::queue::{Pop, Shared, Sink};
use crate::test_skip::skip;

const X64: bool = cfg!(target_pointer_width = "64");

/// 64-bit value on x64, 32-bit value on x86 (docs/etw-process-events.md §2.2).
fn pick(x86: usize, x64: usize) -> usize {
    if X64 {
        x64
    } else {
        x86
    }
}

#[test]
fn layouts_match_the_reference_tables() {
    assert_eq!(size_of::<WNODE_HEADER>(), 48);
    assert_eq!(offset_of!(WNODE_HEADER, Guid), 24);
    assert_eq!(offset_of!(WNODE_HEADER, ClientContext), 40);
    assert_eq!(offset_of!(WNODE_HEADER, Flags), 44);

    type P = EVENT_TRACE_PROPERTIES;
    assert_eq!(size_of::<P>(), 120);
    assert_eq!(offset_of!(P, BufferSize), 48);
    assert_eq!(offset_of!(P, LogFileMode), 64);
    assert_eq!(offset_of!(P, FlushTimer), 68);
    assert_eq!(offset_of!(P, EnableFlags), 72);
    assert_eq!(offset_of!(P, EventsLost), 88);
    assert_eq!(offset_of!(P, RealTimeBuffersLost), 100);
    assert_eq!(offset_of!(P, LoggerThreadId), 104);
    assert_eq!(offset_of!(P, LogFileNameOffset), pick(108, 112));
    assert_eq!(offset_of!(P, LoggerNameOffset), pick(112, 116));

    assert_eq!(size_of::<EVENT_DESCRIPTOR>(), 16);
    type H = EVENT_HEADER;
    assert_eq!(size_of::<H>(), 80);
    assert_eq!(offset_of!(H, Flags), 4);
    assert_eq!(offset_of!(H, ProcessId), 12);
    assert_eq!(offset_of!(H, TimeStamp), 16);
    assert_eq!(offset_of!(H, ProviderId), 24);
    assert_eq!(offset_of!(H, EventDescriptor), 40);
    assert_eq!(offset_of!(H, EventDescriptor.Version), 42);
    assert_eq!(offset_of!(H, EventDescriptor.Opcode), 45);
    assert_eq!(offset_of!(H, ActivityId), 64);

    type R = EVENT_RECORD;
    assert_eq!(size_of::<R>(), pick(104, 112));
    assert_eq!(offset_of!(R, BufferContext), 80);
    assert_eq!(offset_of!(R, UserDataLength), 86);
    assert_eq!(offset_of!(R, ExtendedData), 88);
    assert_eq!(offset_of!(R, UserData), pick(92, 96));
    assert_eq!(offset_of!(R, UserContext), pick(96, 104));

    type L = EVENT_TRACE_LOGFILEW;
    assert_eq!(size_of::<L>(), pick(416, 448));
    assert_eq!(offset_of!(L, LoggerName), pick(4, 8));
    assert_eq!(offset_of!(L, Anonymous1), pick(20, 28));
    assert_eq!(offset_of!(L, CurrentEvent), pick(24, 32));
    assert_eq!(offset_of!(L, LogfileHeader), pick(112, 120));
    assert_eq!(offset_of!(L, BufferCallback), pick(384, 400));
    assert_eq!(offset_of!(L, Anonymous2), pick(400, 424));
    assert_eq!(offset_of!(L, Context), pick(408, 440));
    assert_eq!(size_of::<TRACE_LOGFILE_HEADER>(), pick(272, 280));
    assert_eq!(size_of::<ENABLE_TRACE_PARAMETERS>(), pick(36, 48));
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

/// Calls the real callback with a record pointing at `payload`.
fn deliver(context: &Context, provider: Guid, id: u16, opcode: u8, version: u8, payload: &[u8]) {
    let mut record = EVENT_RECORD::default();
    record.EventHeader.ProviderId = win_guid(&provider);
    record.EventHeader.Flags = 0x0040; // 64-bit header
    record.EventHeader.TimeStamp = 133_000_000_000_000_000;
    record.EventHeader.EventDescriptor.Id = id;
    record.EventHeader.EventDescriptor.Opcode = opcode;
    record.EventHeader.EventDescriptor.Version = version;
    record.UserData = payload.as_ptr().cast_mut().cast();
    record.UserDataLength = u16::try_from(payload.len()).unwrap();
    record.UserContext = std::ptr::from_ref(context).cast_mut().cast();
    // SAFETY: the record is fully initialised, UserData/UserDataLength
    // describe `payload`, and UserContext points at a live Context; all
    // outlive the call, as ETW guarantees for real records.
    unsafe { on_event(&mut record) };
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Kernel Process v4 End payload from a 64-bit kernel, SYSTEM user.
fn mof_end_v4(pid: u32, code: i32) -> Vec<u8> {
    mof_v4(pid, 0xffff_a001_0000_1000, code, "cmd /c exit 42")
}

/// A kernel Process v4 payload (any opcode) from a 64-bit kernel.
fn mof_v4(pid: u32, key: u64, code: i32, command_line: &str) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(key.to_le_bytes()); // UniqueProcessKey
    p.extend(pid.to_le_bytes());
    p.extend(100u32.to_le_bytes()); // ParentId
    p.extend(1u32.to_le_bytes()); // SessionId
    p.extend(code.to_le_bytes()); // ExitStatus
    p.extend(0x1aa000_u64.to_le_bytes()); // DirectoryTableBase
    p.extend(0u32.to_le_bytes()); // Flags
    p.extend(0xffff_c001_0000_2000_u64.to_le_bytes()); // TOKEN_USER.Sid
    p.extend([0u8; 8]); // Attributes + padding
    p.extend([1, 1, 0, 0, 0, 0, 0, 5]); // S-1-5-…
    p.extend(18u32.to_le_bytes()); // …-18
    p.extend(b"cmd.exe\0");
    p.extend(utf16z(command_line));
    p.extend(utf16z("")); // PackageFullName
    p.extend(utf16z("")); // ApplicationId
    p
}

#[test]
fn callback_turns_a_kernel_end_record_into_an_exit() {
    let (shared, sink) = sink();
    let context = Context::new(sink, Source::EtwKernel);
    deliver(&context, PROCESS_GUID, 0, 2, 4, &mof_end_v4(4242, 42));
    let events = drain(&shared);
    let [Event::Exit(exit)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(exit.pid, 4242);
    assert_eq!(exit.ppid, Some(100));
    assert_eq!(exit.status, ExitStatus::Code(42));
    assert_eq!(exit.name.as_deref(), Some("cmd.exe"));
    assert_eq!(exit.command_line.as_deref(), Some("cmd /c exit 42"));
    assert_eq!(exit.user, Some(User::Sid("S-1-5-18".into())));
    assert_eq!(exit.process_key, Some(0xffff_a001_0000_1000));
    assert_eq!(exit.source, Source::EtwKernel);
    assert!(exit.exit_time.is_some());
    assert_eq!(context.events.load(Ordering::Relaxed), 1);
    assert_eq!(shared.stats().anomalies, 0);
}

#[test]
fn callback_reports_no_zombie_rundown_from_before_the_session() {
    let (shared, sink) = sink();
    let context = Context::new(sink, Source::EtwKernel);
    // The stop-time rundown: a v5 Defunct whose ExitTime (2020) is long
    // before this session, and a v4 Defunct of a process never seen alive.
    let mut old = mof_end_v4(616, 0);
    old.extend(132_400_000_000_000_000_u64.to_le_bytes());
    deliver(&context, PROCESS_GUID, 0, 39, 5, &old);
    deliver(&context, PROCESS_GUID, 0, 39, 4, &mof_end_v4(988, 0));
    assert_eq!(drain(&shared), vec![]);
    // A process seen alive (DCStart) whose End was lost: its Defunct is
    // its exit.
    deliver(&context, PROCESS_GUID, 0, 3, 4, &mof_end_v4(4243, 259));
    deliver(&context, PROCESS_GUID, 0, 39, 4, &mof_end_v4(4243, 5));
    let events = drain(&shared);
    let [Event::Exit(exit)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!((exit.pid, exit.status), (4243, ExitStatus::Code(5)));
    assert_eq!(shared.stats().anomalies, 0);
}

#[test]
fn callback_handles_kernel_process_stop_lost_and_garbage() {
    let (shared, sink) = sink();
    let context = Context::new(sink, Source::EtwKernelProcess);
    // ProcessStop v0 (docs/etw-process-events.md §5): pid, create, exit, code, …, ImageName.
    let mut stop = Vec::new();
    stop.extend(77u32.to_le_bytes());
    stop.extend(132_000_000_000_000_000_u64.to_le_bytes());
    stop.extend(132_000_000_010_000_000_u64.to_le_bytes());
    stop.extend(3u32.to_le_bytes());
    stop.extend([0u8; 8 + 16]); // elevation, handles, commit charge/peak
    stop.extend(b"ping.exe\0");
    deliver(&context, KERNEL_PROCESS_GUID, 2, 2, 0, &stop);
    // In-band Lost_Event (RTLostEvent), then a truncated End.
    deliver(&context, LOST_EVENT_GUID, 0, 32, 2, &[]);
    deliver(&context, PROCESS_GUID, 0, 2, 4, &[1, 2, 3]);
    // Unknown provider: skipped.
    deliver(&context, Guid::new(1, 2, 3, [0; 8]), 0, 2, 0, &[0; 64]);

    let events = drain(&shared);
    assert_eq!(events.len(), 2, "{events:?}");
    let Event::Exit(exit) = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!((exit.pid, exit.status), (77, ExitStatus::Code(3)));
    assert_eq!(exit.name.as_deref(), Some("ping.exe"));
    assert_eq!(exit.source, Source::EtwKernelProcess);
    assert_eq!(exit.duration(), Some(Duration::from_secs(1)));
    // The in-band record marks the gap; the count comes from polling.
    assert_eq!(
        events[1],
        Event::Lost {
            count: 0,
            reason: LossReason::Overrun
        }
    );
    let stats = shared.stats();
    assert_eq!((stats.lost, stats.overruns, stats.anomalies), (0, 0, 1));
    assert_eq!(context.panics.load(Ordering::Relaxed), 0);
}

/// Records from this provider make `dispatch` panic (test builds only).
pub(super) const PANIC_PROVIDER: Guid = Guid::new(0x0bad_0bad, 0, 0, [0; 8]);

#[test]
fn a_panic_in_the_callback_is_caught_and_counted() {
    let (shared, sink) = sink();
    let context = Context::new(sink, Source::EtwKernel);
    deliver(&context, PANIC_PROVIDER, 0, 0, 0, &[]);
    // The callback returned normally; later events still work.
    deliver(&context, PROCESS_GUID, 0, 2, 4, &mof_end_v4(9, 0));
    assert_eq!(context.panics.load(Ordering::Relaxed), 1);
    assert_eq!(shared.stats().anomalies, 1);
    assert!(matches!(drain(&shared).as_slice(), [Event::Exit(e)] if e.pid == 9));
}

#[test]
fn long_command_lines_are_bounded_and_evictions_counted() {
    let (shared, sink) = sink();
    let context = Context::new(sink, Source::EtwKernel);
    // 32 000 characters: 64 000 bytes of UTF-16 in the event, the most a
    // Windows command line holds. 16 MiB of them as UTF-8 is 524.
    let long = "y".repeat(32_000);
    for i in 0..600u32 {
        let start = mof_v4(1000 + i, 0xffff_b000_0000_0000 + u64::from(i), 259, &long);
        assert!(start.len() < 65_536, "fits an event");
        deliver(&context, PROCESS_GUID, 0, 3, 4, &start);
    }
    assert_eq!(shared.stats().evicted, 600 - 524);
    assert_eq!(shared.stats().anomalies, 0);
}

#[test]
fn callback_ignores_null_pointers() {
    // SAFETY: on_event must accept a null record (it returns at once).
    unsafe { on_event(std::ptr::null_mut()) };
    let mut record = EVENT_RECORD::default();
    // SAFETY: a zeroed record with a null UserContext is ignored.
    unsafe { on_event(&mut record) };
}

/// Sums the counts of the loss markers and lists their reasons, in order.
fn markers(events: &[Event]) -> Vec<(u64, LossReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Lost { count, reason } => Some((*count, *reason)),
            _ => None,
        })
        .collect()
}

fn counters(events_lost: u32, realtime_buffers_lost: u32) -> LossCounters {
    LossCounters {
        events_lost,
        realtime_buffers_lost,
    }
}

#[test]
fn loss_marker_before_the_poll() {
    let (shared, sink) = sink();
    let context = Context::new(sink.clone(), Source::EtwKernel);
    let mut ledger = LossLedger::default();
    deliver(&context, PROCESS_GUID, 0, 2, 4, &mof_end_v4(1, 0));
    deliver(&context, LOST_EVENT_GUID, 0, 32, 2, &[]);
    // The marker counts nothing by itself.
    assert_eq!((shared.stats().lost, shared.stats().overruns), (0, 0));
    deliver(&context, PROCESS_GUID, 0, 2, 4, &mof_end_v4(2, 0));
    report_loss(&sink, &mut ledger, counters(5, 0));
    let events = drain(&shared);
    assert_eq!(
        markers(&events),
        [(0, LossReason::Overrun), (5, LossReason::Kernel)]
    );
    // The gap sits between the two exits, where ETW put it.
    assert!(matches!(&events[..2], [Event::Exit(a), Event::Lost { .. }] if a.pid == 1));
    assert_eq!((shared.stats().lost, shared.stats().overruns), (5, 0));
}

#[test]
fn loss_poll_before_the_marker() {
    let (shared, sink) = sink();
    let context = Context::new(sink.clone(), Source::EtwKernel);
    let mut ledger = LossLedger::default();
    report_loss(&sink, &mut ledger, counters(3, 1));
    deliver(&context, LOST_EVENT_GUID, 0, 32, 2, &[]);
    deliver(&context, LOST_EVENT_GUID, 0, 33, 2, &[]);
    // The late markers take nothing off the next poll's increase.
    report_loss(&sink, &mut ledger, counters(4, 1));
    let stats = shared.stats();
    assert_eq!((stats.lost, stats.overruns), (4, 1));
    assert_eq!(
        markers(&drain(&shared)),
        [
            (3, LossReason::Kernel),
            (0, LossReason::Overrun),
            (1, LossReason::Kernel),
        ]
    );
}

#[test]
fn loss_repeated_markers_and_polls() {
    let (shared, sink) = sink();
    let context = Context::new(sink.clone(), Source::EtwKernel);
    let mut ledger = LossLedger::default();
    for _ in 0..3 {
        deliver(&context, LOST_EVENT_GUID, 0, 32, 2, &[]);
    }
    // Same totals twice, then a counter that (wrongly) went down: nothing.
    report_loss(&sink, &mut ledger, counters(2, 0));
    report_loss(&sink, &mut ledger, counters(2, 0));
    report_loss(&sink, &mut ledger, counters(1, 0));
    assert_eq!(shared.stats().lost, 2);
    for _ in 0..2 {
        deliver(&context, LOST_EVENT_GUID, 0, 33, 2, &[]);
    }
    report_loss(&sink, &mut ledger, counters(9, 4));
    report_loss(&sink, &mut ledger, counters(9, 4));
    let stats = shared.stats();
    assert_eq!((stats.lost, stats.overruns), (9, 4));
    // Adjacent markers of one kind merge: one gap mark, one count each.
    assert_eq!(
        markers(&drain(&shared)),
        [
            (0, LossReason::Overrun),
            (2, LossReason::Kernel),
            (0, LossReason::Overrun),
            (7, LossReason::Kernel),
            (0, LossReason::Overrun),
        ]
    );
}

#[test]
fn waiting_for_the_consumer_is_bounded() {
    let start = Instant::now();
    assert!(!wait_until(start + Duration::from_millis(30), || false));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(wait_until(start, || true));
}

/// Starts a monitor on another thread so a hang fails the test instead of
/// blocking it.
fn start_bounded(backend: Backend, name: &str) -> Result<Monitor, Error> {
    let (tx, rx) = mpsc::channel();
    let options = WindowsOptions::new().session_name(name);
    std::thread::spawn(move || {
        let _ = tx.send(Monitor::builder().backend(backend).windows(options).start());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("start did not return within 20 s")
}

/// Serialises the tests that start sessions (they share LIVE_THREADS).
static SESSIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn monitor_lifecycle_against_the_local_etw() {
    let _serial = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    for backend in [Backend::Auto, Backend::EtwKernel, Backend::EtwKernelProcess] {
        let result = start_bounded(backend, "procexit-test-lifecycle");
        if under_wine() {
            match result {
                // Wine: StartTraceW (and EnableTraceEx2) succeed, OpenTraceW
                // fails with 5 — ETW unavailable, not "not elevated".
                Err(Error::EtwUnavailable {
                    call: "OpenTraceW",
                    code: 5,
                }) => {}
                other => panic!("{backend:?} under Wine: {other:?}"),
            }
        } else {
            match result {
                Ok(monitor) => {
                    monitor.stop().expect("clean stop");
                }
                Err(Error::NotElevated { code: 5 }) => {
                    skip("ETW sessions need an elevated Administrator")
                }
                Err(e) => panic!("{backend:?}: {e}"),
            }
        }
        // Nothing left running after a failed start or a stop.
        let deadline = Instant::now() + Duration::from_secs(10);
        while LIVE_THREADS.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            LIVE_THREADS.load(Ordering::SeqCst),
            0,
            "{backend:?} leaked a thread"
        );
    }
}

#[test]
fn a_service_session_outlives_logoff_and_shutdown_events() {
    let _serial = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    use windows_sys::Win32::System::Console::{CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT};
    // Listed as a service's session; the handle is never valid, so a STOP
    // (which the handler must not send) would fail, never touch a session.
    let listed = console::register(
        windows_sys::Win32::System::Diagnostics::Etw::CONTROLTRACE_HANDLE {
            Value: u64::MAX - 7,
        },
        true,
    );
    for event in [CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT] {
        assert_eq!(console::stop_all_for(Some(event)), 0);
    }
    assert!(!console::terminating(), "a service keeps running");
    drop(listed);
}

#[test]
fn a_second_monitor_of_one_name_is_refused_before_any_etw_call() {
    let _serial = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    // As a running monitor holds it.
    let held = NameLock::acquire("procexit-test-twice").expect("lock");
    for backend in [Backend::Auto, Backend::EtwKernelProcess] {
        assert!(matches!(
            start_bounded(backend, "PROCEXIT-test-twice"),
            Err(Error::AlreadyRunning { ref name, .. }) if name == "PROCEXIT-test-twice"
        ));
    }
    drop(held);
    // Another tool's session name is refused first, whatever runs.
    assert!(matches!(
        start_bounded(Backend::Auto, "EventLog-System"),
        Err(Error::SessionNameRejected { .. })
    ));
}

#[test]
fn session_control_calls_against_the_local_etw() {
    let _serial = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    let wine = under_wine();
    let options = WindowsOptions::new().session_name("procexit-test-control");
    for plan in [
        Plan::PrivateKernel { independent: true },
        Plan::KernelProcess,
    ] {
        let mut session = match Session::start(plan, &options, true) {
            Ok(session) => session,
            Err(Error::NotElevated { code: 5 }) if !wine => {
                return skip("ETW sessions need an elevated Administrator");
            }
            Err(e) => panic!("{plan:?}: {e}"),
        };
        assert_eq!(session.name(), "procexit-test-control");
        if wine {
            // The stub accepts the Kernel-Audit-API-Calls enable too.
            assert_eq!(session.audit, 0, "{plan:?}");
        }
        session.flush().expect("FLUSH by our handle");
        let counters = session.query().expect("QUERY by our handle");
        if wine {
            // Wine's stubs leave the buffer as it was.
            assert_eq!(counters, LossCounters::default());
        }
        // What the console handler does on close/logoff/shutdown: STOP by
        // handle, synchronously.
        assert!(console::stop_all_for(None) >= 1, "our session is listed");
        if wine {
            // The stub accepts every STOP and never ends a session.
            assert_eq!(session.stop().unwrap(), Some(LossCounters::default()));
        } else {
            // Really stopped: our own STOP then finds nothing to stop, and
            // QUERY by our handle fails.
            assert_eq!(session.stop().unwrap(), None);
            assert!(session.query().is_err(), "{plan:?} still running");
        }
        assert_eq!(session.stop().unwrap(), None, "stop is idempotent");
        assert_eq!(
            console::stop_all_for(None),
            0,
            "a stopped session is unlisted"
        );
    }
    let long = WindowsOptions::new().session_name(format!("procexit{}", "x".repeat(193)));
    assert!(matches!(
        Session::start(Plan::KernelProcess, &long, true),
        Err(Error::SessionNameRejected { .. })
    ));
}

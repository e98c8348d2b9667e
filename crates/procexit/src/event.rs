//! The platform-neutral exit record and the events a monitor delivers.
//!
//! One [`ProcessExit`] describes one process (not one thread) that ended, on
//! every OS and from every source. Fields the source cannot give are `None`:
//! nothing here is ever guessed.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The process exited with this code. On Linux 0–255; on Windows the full
    /// 32-bit exit code or NTSTATUS (for example `0xC000013A`).
    Code(u32),
    /// The process was killed by a signal (Unix only).
    Signal {
        /// The signal number (9 for SIGKILL, 11 for SIGSEGV, …).
        signal: i32,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// Decodes a Linux wait status (`exit_code` of the proc connector and of
    /// taskstats): `code << 8` for an exit, `signal | 0x80 (core)` for a kill.
    pub fn from_wait_status(status: u32) -> ExitStatus {
        let signal = status & 0x7f;
        if signal == 0 {
            ExitStatus::Code((status >> 8) & 0xff)
        } else {
            ExitStatus::Signal {
                // Masked to 7 bits, so the cast cannot truncate.
                signal: signal as i32,
                core_dumped: status & 0x80 != 0,
            }
        }
    }

    /// The exit code, or `None` when a signal killed the process.
    pub fn code(self) -> Option<u32> {
        match self {
            ExitStatus::Code(code) => Some(code),
            ExitStatus::Signal { .. } => None,
        }
    }

    /// The signal that killed the process, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Code(_) => None,
            ExitStatus::Signal { signal, .. } => Some(signal),
        }
    }

    /// Whether a core dump was written (always `false` for a plain exit).
    pub fn core_dumped(self) -> bool {
        matches!(
            self,
            ExitStatus::Signal {
                core_dumped: true,
                ..
            }
        )
    }

    /// `true` for exit code 0, `false` for any other code or a signal.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The status a shell would report: the code, or 128 + signal.
    pub fn shell_status(self) -> i32 {
        match self {
            // Windows codes above i32::MAX wrap like %ERRORLEVEL% does.
            ExitStatus::Code(code) => code as i32,
            ExitStatus::Signal { signal, .. } => 128 + signal,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) if code > 0xffff => write!(f, "code {code:#x}"),
            ExitStatus::Code(code) => write!(f, "code {code}"),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                write!(f, "signal {signal}")?;
                if let Some(name) = signal_name(signal) {
                    write!(f, " ({name})")?;
                }
                if core_dumped {
                    write!(f, " core dumped")?;
                }
                Ok(())
            }
        }
    }
}

/// The conventional name of a Linux signal number, for display.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|name| !name.is_empty())
}

/// Who ran the process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum User {
    /// A Unix user id (the real uid).
    Uid(u32),
    /// A Windows security identifier in string form, e.g. `S-1-5-18`.
    Sid(String),
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            User::Uid(uid) => write!(f, "{uid}"),
            User::Sid(sid) => f.write_str(sid),
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// Linux netlink process connector (optionally merged with taskstats).
    LinuxConnector,
    /// Linux process connector merged with a taskstats record.
    LinuxTaskstats,
    /// Linux eBPF program on the exit of a process's last thread (root, or
    /// CAP_BPF + CAP_PERFMON).
    LinuxEbpf,
    /// Windows kernel "Process" MOF events from a real-time ETW session.
    EtwKernel,
    /// Windows `Microsoft-Windows-Kernel-Process` manifest events (real-time).
    EtwKernelProcess,
    /// Decoded from a Windows `.etl` trace file.
    EtlFile,
    /// A single process waited on through an OS handle (`wait`).
    Handle,
}

impl Source {
    /// The stable string used in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::LinuxConnector => "linux-connector",
            Source::LinuxTaskstats => "linux-taskstats",
            Source::LinuxEbpf => "linux-ebpf",
            Source::EtwKernel => "etw-kernel",
            Source::EtwKernelProcess => "etw-kernel-process",
            Source::EtlFile => "etl-file",
            Source::Handle => "handle",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One process that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessExit {
    /// Process id (the thread-group id on Linux).
    pub pid: u32,
    /// Parent process id, when known.
    pub ppid: Option<u32>,
    /// Exit code or signal.
    pub status: ExitStatus,
    /// Short image name: `bash`, `cmd.exe`.
    pub name: Option<String>,
    /// Command line, when the OS still had it (often `None` for programs that
    /// exit at once on Linux: the kernel frees it before the exit event).
    pub command_line: Option<String>,
    /// When the process started.
    pub start_time: Option<SystemTime>,
    /// When the process ended.
    pub exit_time: Option<SystemTime>,
    /// Who ran it.
    pub user: Option<User>,
    /// Tells apart two processes that had the same pid: on Linux the start
    /// time in clock ticks since boot, on Windows the kernel's
    /// `UniqueProcessKey`.
    pub process_key: Option<u64>,
    /// Where the record came from.
    pub source: Source,
    /// Who ended the process, when another process sent the fatal signal
    /// (Linux eBPF source) or terminated it.
    pub killer: Option<Killer>,
    /// Whether the OOM killer chose this process: `Some(true)` when the source
    /// saw it, `Some(false)` when the source would have seen it and did not,
    /// `None` when the source cannot tell.
    pub oom_killed: Option<bool>,
    /// What the process used, as far as the source reports it.
    pub resources: Resources,
    /// The process's cgroup path (Linux), e.g. `/system.slice/cron.service`.
    pub cgroup: Option<String>,
    /// The container id named by the cgroup path (docker, containerd/CRI,
    /// podman), when there is one.
    pub container_id: Option<String>,
}

/// The process that ended another one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Killer {
    /// Process id of the sender.
    pub pid: u32,
    /// Its short name, when known.
    pub name: Option<String>,
}

/// Resource use of a process over its whole life; each field is `None` when
/// the source does not report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Resources {
    /// CPU time in user mode.
    pub cpu_user: Option<Duration>,
    /// CPU time in kernel mode.
    pub cpu_system: Option<Duration>,
    /// Peak resident set size (Linux high-water RSS), in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Hard (major) page faults: faults served by reading from disk. Linux
    /// `ac_majflt`, Windows `HardFaultCount`.
    pub hard_faults: Option<u64>,
    /// Bytes the process read through I/O calls (files, pipes, devices,
    /// sockets alike), in whole KiB (a multiple of 1024) on both OSes: Linux
    /// `read_char` (which the kernel rounds down), Windows
    /// `ReadTransferKiloBytes`.
    pub io_read_bytes: Option<u64>,
    /// Bytes written through I/O calls (Linux `write_char`, Windows
    /// `WriteTransferKiloBytes`).
    pub io_write_bytes: Option<u64>,
    /// Read I/O operations (Windows `ReadOperationCount`; Linux taskstats
    /// rounds its count to a multiple of 1024, so Linux leaves it `None`).
    pub io_read_ops: Option<u64>,
    /// Write I/O operations (Windows `WriteOperationCount`).
    pub io_write_ops: Option<u64>,
    /// CPU cycles the process used (Windows `CPUCycleCount`).
    pub cpu_cycles: Option<u64>,
    /// Peak commit charge in bytes: private memory the process had committed
    /// at most (Windows `CommitPeak`).
    pub peak_commit_bytes: Option<u64>,
}

impl ProcessExit {
    /// A record with only the facts every source has; the rest is `None`.
    pub fn new(pid: u32, status: ExitStatus, source: Source) -> ProcessExit {
        ProcessExit {
            pid,
            ppid: None,
            status,
            name: None,
            command_line: None,
            start_time: None,
            exit_time: None,
            user: None,
            process_key: None,
            source,
            killer: None,
            oom_killed: None,
            resources: Resources::default(),
            cgroup: None,
            container_id: None,
        }
    }

    /// How long the process lived, when both times are known.
    pub fn duration(&self) -> Option<Duration> {
        let start = self.start_time?;
        self.exit_time?.duration_since(start).ok()
    }
}

/// What a monitor delivers, in order.
// Exits are nearly every event: boxing them would cost an allocation each
// to shrink the rare `Lost` marker.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A process ended.
    Exit(ProcessExit),
    /// Exits were lost at this point of the stream.
    Lost {
        /// How many exits are known to be missing. When the kernel reports an
        /// overrun without a count this is a lower bound (see `Stats`).
        count: u64,
        /// Why they were lost.
        reason: LossReason,
    },
}

/// Why exits were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// The kernel or the transport dropped this many exits (ETW lost-event
    /// counters and notifications).
    Kernel,
    /// The kernel overran a buffer (netlink ENOBUFS, a lost ETW buffer)
    /// without saying what it dropped: `count` is the number of exits known
    /// to be in the gap (a lower bound, possibly 0: the dropped messages may
    /// not have been exits).
    Overrun,
    /// The consumer was slower than the producer and the bounded queue was full.
    QueueFull,
    /// Windows: the trace session was stopped from outside (for example
    /// `logman stop procexit -ets`) and procexit started it again; exits in
    /// between are missing, how many is unknown (`count` is 0).
    SessionStopped,
}

impl LossReason {
    /// The stable string used in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::Kernel => "kernel",
            LossReason::Overrun => "overrun",
            LossReason::QueueFull => "queue-full",
            LossReason::SessionStopped => "session-stopped",
        }
    }
}

/// Windows FILETIME (100 ns ticks since 1601-01-01 UTC) to `SystemTime`.
/// Returns `None` for 0 and for values before 1970.
pub fn system_time_from_filetime(filetime: u64) -> Option<SystemTime> {
    const TICKS_1601_TO_1970: u64 = 116_444_736_000_000_000;
    let ticks = filetime.checked_sub(TICKS_1601_TO_1970)?;
    if filetime == 0 {
        return None;
    }
    let secs = ticks / 10_000_000;
    let nanos = (ticks % 10_000_000) * 100;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32))
}

/// Formats a time as RFC 3339 UTC with microseconds: `2026-11-24T20:00:36.123456Z`.
pub fn format_rfc3339(time: SystemTime) -> String {
    Rfc3339::new(time).as_str().to_owned()
}

/// A time in the form of [`format_rfc3339`], built without allocating for
/// years 0–9999 (it runs twice per JSON exit line).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_micros(1_600_000_000_123_456);
/// assert_eq!(procexit::Rfc3339::new(t).as_str(), "2020-09-13T12:26:40.123456Z");
/// ```
#[derive(Debug, Clone)]
pub struct Rfc3339(Rfc3339Text);

#[derive(Debug, Clone)]
enum Rfc3339Text {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, ASCII.
    Fixed([u8; 27]),
    /// Years outside 0–9999.
    Formatted(String),
}

impl Rfc3339 {
    /// Formats `time`.
    pub fn new(time: SystemTime) -> Rfc3339 {
        let (secs, micros) = match time.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
            Err(e) => {
                // Before 1970: round towards the past.
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut micros = d.subsec_micros();
                if micros > 0 {
                    secs -= 1;
                    micros = 1_000_000 - micros;
                }
                (secs, micros)
            }
        };
        let Some(prefix) = date_and_seconds(secs) else {
            return Rfc3339(Rfc3339Text::Formatted(formatted(secs, micros)));
        };
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        for (slot, byte) in text.iter_mut().zip(prefix) {
            *slot = byte;
        }
        put_digits(&mut text, 20, 6, u64::from(micros));
        Rfc3339(Rfc3339Text::Fixed(text))
    }

    /// The formatted time.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ASCII digits and separators were written.
            Rfc3339Text::Fixed(text) => std::str::from_utf8(text).unwrap_or_default(),
            Rfc3339Text::Formatted(text) => text,
        }
    }
}

/// The RFC 3339 text of a time through the formatting machinery: the form
/// for years outside 0–9999 (and the tests' reference for the rest).
fn formatted(secs: i64, micros: u32) -> String {
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch, for years 0–9999.
///
/// Remembers the last two seconds it formatted, per thread: a JSON exit line
/// formats two times (start and exit), mostly in the same recent seconds,
/// and the calendar arithmetic cost more than the rest of the line's numbers.
// The initializer is `const`; clippy 1.96 still flags it when building for
// Windows with -Zbuild-std.
#[allow(clippy::missing_const_for_thread_local)]
fn date_and_seconds(secs: i64) -> Option<[u8; 20]> {
    thread_local! {
        static RECENT: std::cell::Cell<[(i64, [u8; 20]); 2]> =
            const { std::cell::Cell::new([(i64::MIN, [0; 20]); 2]) };
    }
    let recent = RECENT.with(std::cell::Cell::get);
    if let Some((_, prefix)) = recent.iter().find(|(s, _)| *s == secs) {
        return Some(*prefix);
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut prefix = *b"0000-00-00T00:00:00.";
    put_digits(&mut prefix, 0, 4, y as u64);
    put_digits(&mut prefix, 5, 2, u64::from(m));
    put_digits(&mut prefix, 8, 2, u64::from(d));
    put_digits(&mut prefix, 11, 2, rem / 3600);
    put_digits(&mut prefix, 14, 2, (rem % 3600) / 60);
    put_digits(&mut prefix, 17, 2, rem % 60);
    let [newest, _] = recent;
    RECENT.with(|cell| cell.set([(secs, prefix), newest]));
    Some(prefix)
}

/// Writes the last `width` decimal digits of `value` into
/// `text[first..first + width]` (bytes outside `text` are skipped).
fn put_digits(text: &mut [u8], first: usize, width: usize, mut value: u64) {
    for slot in text.iter_mut().skip(first).take(width).rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decodes_codes_and_signals() {
        assert_eq!(ExitStatus::from_wait_status(0x2a00), ExitStatus::Code(42));
        assert_eq!(ExitStatus::from_wait_status(0xff00), ExitStatus::Code(255));
        assert_eq!(
            ExitStatus::from_wait_status(0x9),
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false
            }
        );
        assert_eq!(
            ExitStatus::from_wait_status(0x8b),
            ExitStatus::Signal {
                signal: 11,
                core_dumped: true
            }
        );
        assert_eq!(ExitStatus::from_wait_status(0x8b).shell_status(), 139);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::new(1_583_020_800, 123_456_000); // 2020-03-01
        assert_eq!(format_rfc3339(t), "2020-03-01T00:00:00.123456Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 - 1); // 2000-02-28T23:59:59
        assert_eq!(format_rfc3339(t), "2000-02-28T23:59:59.000000Z");
    }

    #[test]
    fn filetime_converts() {
        // 2020-07-14T12:04:31.1387363Z from a real .etl logfile header.
        let t = system_time_from_filetime(132_392_018_711_387_363).unwrap();
        assert_eq!(format_rfc3339(t), "2020-07-14T12:04:31.138736Z");
        // Outside years 0..=9999 the general formatter takes over.
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(format_rfc3339(far), "14645-06-30T15:06:40.000000Z");
        assert_eq!(system_time_from_filetime(0), None);
    }

    /// Seconds remembered from earlier calls give the same text as fresh
    /// ones, whatever the order.
    #[test]
    fn rfc3339_recent_seconds_are_reused_correctly() {
        let base = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let order = [0u64, 1, 0, 2, 1, 0, 86_400, 0, 2, 2, 3_000_000_000];
        for (i, &offset) in order.iter().enumerate() {
            let t = base + Duration::from_secs(offset) + Duration::from_micros(i as u64 * 7);
            let fresh = std::thread::spawn(move || format_rfc3339(t))
                .join()
                .unwrap();
            assert_eq!(Rfc3339::new(t).as_str(), fresh, "{offset}");
        }
    }

    /// The allocation-free form against the formatting machinery, over
    /// times from before 1970 to year 9999 and just beyond.
    #[test]
    fn rfc3339_fixed_form_matches_formatting() {
        let mut x = 7u64;
        for _ in 0..20_000 {
            x = crate::test_rng::xorshift(x);
            let secs = (x % 600_000_000_000) as i64 - 100_000_000_000;
            x = crate::test_rng::xorshift(x);
            let micros = (x % 1_000_000) as u32;
            // Windows' SystemTime starts in 1601: skip what it cannot hold.
            let t = if secs >= 0 {
                UNIX_EPOCH.checked_add(Duration::new(secs as u64, micros * 1000))
            } else {
                UNIX_EPOCH
                    .checked_sub(Duration::new(secs.unsigned_abs(), 0))
                    .and_then(|t| t.checked_add(Duration::from_micros(micros.into())))
            };
            let Some(t) = t else { continue };
            assert_eq!(
                Rfc3339::new(t).as_str(),
                formatted(secs, micros),
                "{secs} {micros}"
            );
        }
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(64), None);
        assert_eq!(signal_name(-1), None);
    }
}

//! Linux eBPF source: the BPF program already emits one record per process
//! (on the last thread's exit, with the group's wait status), so an exit is
//! exactly one record; this turns it into a [`ProcessExit`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::decode::cgroup::container_id;
use crate::decode::ebpf_exit::{
    EbpfExit, FLAG_ARGS_TRUNCATED, FLAG_ARGS_UNKNOWN, FLAG_CGROUP_UNKNOWN, FLAG_KILLER,
    FLAG_OOM_KILLED,
};
use crate::event::{ExitStatus, Killer, ProcessExit, Resources, Source, User};

/// What the conversion needs to know about the machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Machine {
    /// CLOCK_REALTIME − CLOCK_BOOTTIME, ns (the boot instant in wall time).
    pub(crate) boot_wall_ns: i128,
    /// `sysconf(_SC_CLK_TCK)`: /proc's unit for start times.
    pub(crate) ticks_per_second: u64,
    /// Bytes per page.
    pub(crate) page_size: u64,
    /// Whether the OOM-victim hook is attached (else `oom_killed` is unknown).
    pub(crate) sees_oom: bool,
    /// Whether the signal-sender hook is attached.
    pub(crate) sees_killer: bool,
}

/// The command lines of the processes alive when the source started (read
/// from /proc), for the exits whose record has none: on kernels that free
/// the address space before the exit hook, the program has a command line
/// only for processes that exec'd after it was attached.
#[derive(Debug, Default)]
pub(crate) struct StartedBefore {
    /// pid → (start time in clock ticks since boot, command line).
    by_pid: HashMap<u32, (u64, String)>,
}

impl StartedBefore {
    /// From (pid, start ticks, command line) of each live process.
    pub(crate) fn from_proc(processes: impl IntoIterator<Item = (u32, u64, String)>) -> Self {
        StartedBefore {
            by_pid: processes
                .into_iter()
                .map(|(pid, ticks, line)| (pid, (ticks, line)))
                .collect(),
        }
    }

    /// Gives `exit` the command line its process had at the start when the
    /// record has none and it is the same process (same start time, not a
    /// later holder of the pid); forgets the pid either way.
    pub(crate) fn complete(&mut self, exit: &mut ProcessExit) {
        let Some((ticks, line)) = self.by_pid.remove(&exit.pid) else {
            return;
        };
        if exit.command_line.is_none() && exit.process_key == Some(ticks) {
            exit.command_line = Some(line);
        }
    }
}

/// Marks a command line that was cut at the BPF program's bound.
pub(crate) const TRUNCATED_MARK: &str = "…";

impl Machine {
    fn wall(&self, boot_ns: u64) -> Option<SystemTime> {
        let real = u64::try_from(i128::from(boot_ns).checked_add(self.boot_wall_ns)?).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(real))
    }

    /// The process key of the connector source: /proc's start time, in
    /// clock ticks since boot (`nsec_to_clock_t(start_boottime)`).
    fn ticks(&self, boot_ns: u64) -> Option<u64> {
        let ns_per_tick = 1_000_000_000u64.checked_div(self.ticks_per_second)?;
        boot_ns.checked_div(ns_per_tick)
    }
}

/// The exit record of one BPF record.
pub(crate) fn exit_from_record(record: &EbpfExit, machine: &Machine) -> ProcessExit {
    let status = ExitStatus::from_wait_status(record.wait_status);
    let mut exit = ProcessExit::new(record.pid, status, Source::LinuxEbpf);
    exit.ppid = Some(record.ppid);
    exit.name = text(record.comm);
    exit.command_line = command_line(record);
    exit.user = Some(User::Uid(record.uid));
    exit.start_time = machine.wall(record.start_boottime_ns);
    exit.exit_time = machine.wall(record.exit_boottime_ns);
    exit.process_key = machine.ticks(record.start_boottime_ns);
    exit.cgroup = cgroup(record);
    exit.container_id = exit.cgroup.as_deref().and_then(container_id);
    // A sender counts as the killer only when its signal is the one that
    // ended the process.
    let killed_by = status.signal().and_then(|s| u32::try_from(s).ok());
    exit.killer = (record.flags & FLAG_KILLER != 0 && killed_by == Some(record.killer_signal))
        .then(|| Killer {
            pid: record.killer_pid,
            name: text(record.killer_comm),
        });
    if !machine.sees_killer {
        exit.killer = None;
    }
    exit.oom_killed = machine
        .sees_oom
        .then_some(record.flags & FLAG_OOM_KILLED != 0);
    exit.resources = Resources {
        cpu_user: Some(Duration::from_nanos(record.utime_ns)),
        cpu_system: Some(Duration::from_nanos(record.stime_ns)),
        peak_rss_bytes: record
            .maxrss_pages
            .checked_mul(machine.page_size)
            .filter(|&b| b > 0),
        ..Resources::default()
    };
    exit
}

/// A `comm` as text (invalid UTF-8 replaced), `None` when empty.
fn text(comm: &[u8]) -> Option<String> {
    (!comm.is_empty()).then(|| String::from_utf8_lossy(comm).into_owned())
}

/// The cgroup path the program wrote (already the hierarchy
/// `decode::cgroup::cgroup_path` would choose); a path that is not UTF-8 is
/// unknown, as it is to the connector source, which reads it as text.
fn cgroup(record: &EbpfExit) -> Option<String> {
    if record.flags & FLAG_CGROUP_UNKNOWN != 0 || !record.cgroup.starts_with(b"/") {
        return None;
    }
    std::str::from_utf8(record.cgroup).ok().map(str::to_owned)
}

/// argv joined with spaces; a cut one ends with [`TRUNCATED_MARK`].
fn command_line(record: &EbpfExit) -> Option<String> {
    if record.flags & FLAG_ARGS_UNKNOWN != 0 {
        return None;
    }
    // Programs may rewrite their argv area and leave NUL padding at its end.
    let end = record
        .args
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i.saturating_add(1));
    let mut line = crate::decode::argv_line(record.args.get(..end).unwrap_or(&[]))?;
    if record.flags & FLAG_ARGS_TRUNCATED != 0 {
        line.push_str(TRUNCATED_MARK);
    }
    Some(line)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            boot_wall_ns: 1_700_000_000_000_000_000,
            ticks_per_second: 100,
            page_size: 4096,
            sees_oom: true,
            sees_killer: true,
        }
    }

    fn record() -> EbpfExit<'static> {
        EbpfExit {
            start_boottime_ns: 12_345_678_901,
            exit_boottime_ns: 13_345_678_901,
            utime_ns: 2_000_000,
            stime_ns: 1_000_000,
            maxrss_pages: 100,
            pid: 4242,
            ppid: 1,
            uid: 1000,
            wait_status: 0x9,
            flags: FLAG_KILLER,
            killer_pid: 77,
            killer_signal: 9,
            comm: b"sleep",
            killer_comm: b"kill",
            args: b"sleep\x0010\x00",
            cgroup: b"/",
        }
    }

    #[test]
    fn converts_a_killed_process() {
        let exit = exit_from_record(&record(), &machine());
        assert_eq!(exit.pid, 4242);
        assert_eq!(exit.ppid, Some(1));
        assert_eq!(exit.status.signal(), Some(9));
        assert_eq!(exit.command_line.as_deref(), Some("sleep 10"));
        assert_eq!(exit.process_key, Some(1234));
        assert_eq!(exit.duration(), Some(Duration::from_secs(1)));
        let killer = exit.killer.unwrap();
        assert_eq!((killer.pid, killer.name.as_deref()), (77, Some("kill")));
        assert_eq!(exit.oom_killed, Some(false));
        assert_eq!(exit.resources.peak_rss_bytes, Some(409_600));
        assert_eq!(exit.resources.cpu_user, Some(Duration::from_millis(2)));
        assert_eq!(exit.source, Source::LinuxEbpf);
    }

    #[test]
    fn a_sender_of_another_signal_is_not_the_killer() {
        let mut r = record();
        r.killer_signal = 15;
        assert_eq!(exit_from_record(&r, &machine()).killer, None);
        r.wait_status = 0;
        r.killer_signal = 9;
        assert_eq!(exit_from_record(&r, &machine()).killer, None);
    }

    #[test]
    fn cgroup_and_container() {
        let id = "9c1d2e3f4a5b6c7d8e9f00112233445566778899aabbccddeeff001122334455";
        let mut r = record();
        assert_eq!(
            exit_from_record(&r, &machine()).cgroup.as_deref(),
            Some("/")
        );
        let path = format!("/system.slice/docker-{id}.scope");
        r.cgroup = path.as_bytes();
        let exit = exit_from_record(&r, &machine());
        assert_eq!(exit.container_id.as_deref(), Some(id));
        assert_eq!(
            exit.cgroup,
            Some(format!("/system.slice/docker-{id}.scope"))
        );
        r.flags |= FLAG_CGROUP_UNKNOWN;
        let exit = exit_from_record(&r, &machine());
        assert_eq!((exit.cgroup, exit.container_id), (None, None));
        for bad in [&b""[..], b"a/b", b"/\xff"] {
            r.flags = 0;
            r.cgroup = bad;
            assert_eq!(exit_from_record(&r, &machine()).cgroup, None);
        }
    }

    #[test]
    fn cut_and_unknown_command_lines() {
        let mut r = record();
        r.flags |= FLAG_ARGS_TRUNCATED;
        let line = exit_from_record(&r, &machine()).command_line.unwrap();
        assert!(line.ends_with(TRUNCATED_MARK));
        r.flags = FLAG_ARGS_UNKNOWN;
        assert_eq!(exit_from_record(&r, &machine()).command_line, None);
        let blind = Machine {
            sees_oom: false,
            ..machine()
        };
        assert_eq!(exit_from_record(&r, &blind).oom_killed, None);
    }

    #[test]
    fn a_process_from_before_the_start_gets_its_command_line_from_proc() {
        let mut r = record();
        r.flags = FLAG_ARGS_UNKNOWN;
        let mut before = StartedBefore::from_proc([
            (4242, 1234, "daemon --foreground".to_string()),
            (4243, 99, "other".to_string()),
        ]);
        let mut exit = exit_from_record(&r, &machine());
        before.complete(&mut exit);
        assert_eq!(exit.command_line.as_deref(), Some("daemon --foreground"));
        // Used once: a later process with the pid gets nothing from it.
        let mut again = exit_from_record(&r, &machine());
        before.complete(&mut again);
        assert_eq!(again.command_line, None);
        // A later holder of a pid (another start time) gets nothing either,
        // and a record's own command line is kept.
        let mut later = record();
        later.pid = 4243;
        later.flags = FLAG_ARGS_UNKNOWN;
        let mut exit = exit_from_record(&later, &machine());
        before.complete(&mut exit);
        assert_eq!(exit.command_line, None);
        let mut before = StartedBefore::from_proc([(4242, 1234, "old".to_string())]);
        let mut exit = exit_from_record(&record(), &machine());
        before.complete(&mut exit);
        assert_eq!(exit.command_line.as_deref(), Some("sleep 10"));
    }
}

//! Best-effort reads of /proc, and [`ProcFs`], the process table's view of
//! the real system. Every function returns `None` when the process is gone
//! or the file is unreadable: /proc races with exits, and a missing fact is
//! reported as missing, never guessed.

use std::fs;

use super::ffi;
use crate::merge::linux::{ClockReading, Host, ProcStat as Stat};

/// A /proc text file. A process name is any bytes its owner chose (the
/// name of the file it ran): bytes that are not UTF-8 become U+FFFD instead
/// of making the whole file, and with it the process, unreadable.
fn read_lossy(path: &str) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The live system: /proc and the kernel clocks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcFs;

impl Host for ProcFs {
    fn stat(&self, pid: u32) -> Option<Stat> {
        stat(pid)
    }
    fn comm(&self, pid: u32) -> Option<String> {
        comm(pid)
    }
    fn cmdline(&self, pid: u32) -> Option<String> {
        cmdline(pid)
    }
    fn uid(&self, pid: u32) -> Option<u32> {
        uid(pid)
    }
    fn tasks(&self, pid: u32) -> Option<Vec<u32>> {
        tasks(pid)
    }
    fn cgroup(&self, pid: u32) -> Option<String> {
        cgroup(pid)
    }
    fn pids(&self) -> Vec<u32> {
        pids()
    }
    fn clocks(&self) -> ClockReading {
        ClockReading {
            monotonic_ns: ffi::clock_ns(ffi::ClockId::Monotonic),
            realtime_ns: ffi::clock_ns(ffi::ClockId::Realtime),
            boottime_ns: ffi::clock_ns(ffi::ClockId::Boottime),
            ticks_per_second: ffi::clock_ticks_per_second(),
        }
    }
    fn monotonic_ns(&self) -> u64 {
        ffi::clock_ns(ffi::ClockId::Monotonic)
    }
}

/// Parses the text of `/proc/<pid>/stat`. The comm is between the first `(`
/// and the *last* `)`, since a comm may itself contain parentheses.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    // After the comm: field 3 is state, 4 ppid, … 22 starttime.
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let start_ticks = fields.nth(22 - 5)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        start_ticks,
    })
}

/// The cgroup path of a live process (`/proc/<pid>/cgroup`; the choice of
/// line is [`cgroup_path`](crate::decode::cgroup::cgroup_path)'s). Every
/// Linux source calls this when a process execs (the eBPF source too), so
/// all give the same `cgroup`; pass the result to
/// [`container_id`](crate::decode::cgroup::container_id) for the container.
pub(crate) fn cgroup(pid: u32) -> Option<String> {
    crate::decode::cgroup::cgroup_path(&fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

pub(crate) fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&read_lossy(&format!("/proc/{pid}/stat"))?)
}

/// The command line with NUL separators turned into spaces; `None` when
/// empty (kernel threads, zombies, processes already gone).
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    parse_cmdline(&raw)
}

pub(crate) fn parse_cmdline(raw: &[u8]) -> Option<String> {
    crate::decode::argv_line(raw.strip_suffix(&[0]).unwrap_or(raw))
}

/// The short name (`comm`), without the trailing newline.
pub(crate) fn comm(pid: u32) -> Option<String> {
    let text = read_lossy(&format!("/proc/{pid}/comm"))?;
    Some(text.trim_end_matches('\n').to_string())
}

/// The real uid, from the `Uid:` line of `/proc/<pid>/status`.
pub(crate) fn uid(pid: u32) -> Option<u32> {
    let text = read_lossy(&format!("/proc/{pid}/status"))?;
    parse_status_uid(&text)
}

pub(crate) fn parse_status_uid(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The thread ids of a process, or `None` if it is gone.
pub(crate) fn tasks(pid: u32) -> Option<Vec<u32>> {
    let dir = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// Every pid in /proc.
pub(crate) fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_parentheses_in_comm() {
        let text =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 5678 1000 10";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.comm, "a) b (c)");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.start_ticks, 5678);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let me = std::process::id();
        let stat = stat(me).unwrap();
        assert!("RS".contains(stat.state), "state {}", stat.state);
        assert!(tasks(me).unwrap().contains(&me));
        assert!(cmdline(me).is_some());
    }

    #[test]
    fn cmdline_and_uid_parsing() {
        assert_eq!(
            parse_cmdline(b"sh\0-c\0exit 1\0").as_deref(),
            Some("sh -c exit 1")
        );
        assert_eq!(parse_cmdline(b""), None);
        assert_eq!(parse_cmdline(b"\0"), None);
        assert_eq!(
            parse_status_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
    }
}

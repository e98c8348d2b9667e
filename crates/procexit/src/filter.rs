//! Which exits to deliver. Pure: no OS calls.

use std::time::Duration;

use crate::event::ProcessExit;

/// A filter over exit records. Every condition that is set must hold (AND);
/// within one condition, any listed value matches (OR).
///
/// ```
/// use procexit::Filter;
/// use std::time::Duration;
///
/// let filter = Filter::new()
///     .name("python*")
///     .failed_only(true)
///     .min_duration(Duration::from_millis(100));
/// assert!(!filter.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    names: Vec<String>,
    pids: Vec<u32>,
    ppids: Vec<u32>,
    failed_only: bool,
    min_duration: Option<Duration>,
    cgroups: Vec<String>,
    uids: Vec<u32>,
    not_names: Vec<String>,
    not_pids: Vec<u32>,
    not_ppids: Vec<u32>,
}

impl Filter {
    /// A filter that lets everything through.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Keep exits whose image name matches this glob (`*`, `?`; matched
    /// without case on Windows-style names ending in `.exe` too: `cmd`
    /// matches `cmd.exe`). May be given several times.
    #[must_use]
    pub fn name(mut self, glob: impl Into<String>) -> Filter {
        self.names.push(glob.into());
        self
    }

    /// Keep exits of this pid. May be given several times.
    #[must_use]
    pub fn pid(mut self, pid: u32) -> Filter {
        self.pids.push(pid);
        self
    }

    /// Keep exits whose parent is this pid. May be given several times.
    #[must_use]
    pub fn ppid(mut self, ppid: u32) -> Filter {
        self.ppids.push(ppid);
        self
    }

    /// Keep only failures: a non-zero exit code or a signal.
    #[must_use]
    pub fn failed_only(mut self, yes: bool) -> Filter {
        self.failed_only = yes;
        self
    }

    /// Keep only processes that lived at least this long (exits whose
    /// duration is unknown are dropped when this is set).
    #[must_use]
    pub fn min_duration(mut self, duration: Duration) -> Filter {
        self.min_duration = Some(duration);
        self
    }

    /// The pids asked for (empty: any).
    // Used by the Linux eBPF source only.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn pid_list(&self) -> &[u32] {
        &self.pids
    }

    /// The parent pids asked for (empty: any).
    // Used by the Linux eBPF source only.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn ppid_list(&self) -> &[u32] {
        &self.ppids
    }

    /// Whether only failures are kept.
    // Used by the Linux eBPF source only.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn is_failed_only(&self) -> bool {
        self.failed_only
    }

    /// Keep exits whose cgroup path (Linux) matches this glob (`*` also
    /// crosses `/`): `/system.slice/docker-*`, `*kubepods*`. Exits whose
    /// cgroup is unknown are dropped when this is set. May be given several
    /// times.
    #[must_use]
    pub fn cgroup(mut self, glob: impl Into<String>) -> Filter {
        self.cgroups.push(glob.into());
        self
    }

    /// Keep exits of processes run by this Unix uid (exits whose user is
    /// unknown or a Windows SID are dropped when this is set). May be given
    /// several times.
    #[must_use]
    pub fn uid(mut self, uid: u32) -> Filter {
        self.uids.push(uid);
        self
    }

    /// Drop exits whose image name matches this glob (same matching as
    /// [`Filter::name`]). May be given several times.
    #[must_use]
    pub fn not_name(mut self, glob: impl Into<String>) -> Filter {
        self.not_names.push(glob.into());
        self
    }

    /// Drop exits of this pid. May be given several times.
    #[must_use]
    pub fn not_pid(mut self, pid: u32) -> Filter {
        self.not_pids.push(pid);
        self
    }

    /// Drop exits whose parent is this pid. May be given several times.
    #[must_use]
    pub fn not_ppid(mut self, ppid: u32) -> Filter {
        self.not_ppids.push(ppid);
        self
    }

    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether a process passes the identity conditions (name, pid, ppid),
    /// ignoring the ones only an exit has (failed, duration). For listing
    /// process starts and rundowns, which carry no cgroup: with a cgroup
    /// condition set, none passes.
    pub fn matches_process(&self, pid: u32, ppid: Option<u32>, name: Option<&str>) -> bool {
        self.cgroups.is_empty() && self.uids.is_empty() && self.matches_identity(pid, ppid, name)
    }

    /// Name, pid and ppid conditions.
    fn matches_identity(&self, pid: u32, ppid: Option<u32>, name: Option<&str>) -> bool {
        if self.not_pids.contains(&pid) || ppid.is_some_and(|p| self.not_ppids.contains(&p)) {
            return false;
        }
        if name.is_some_and(|name| self.not_names.iter().any(|glob| name_matches(glob, name))) {
            return false;
        }
        if !self.pids.is_empty() && !self.pids.contains(&pid) {
            return false;
        }
        if !self.ppids.is_empty() && !ppid.is_some_and(|p| self.ppids.contains(&p)) {
            return false;
        }
        if !self.names.is_empty() {
            let Some(name) = name else {
                return false;
            };
            if !self.names.iter().any(|glob| name_matches(glob, name)) {
                return false;
            }
        }
        true
    }

    /// Whether this exit passes the filter.
    pub fn matches(&self, exit: &ProcessExit) -> bool {
        if !self.matches_identity(exit.pid, exit.ppid, exit.name.as_deref()) {
            return false;
        }
        if !self.cgroups.is_empty() {
            let Some(cgroup) = exit.cgroup.as_deref() else {
                return false;
            };
            if !self
                .cgroups
                .iter()
                .any(|glob| glob_match(glob.as_bytes(), cgroup.as_bytes()))
            {
                return false;
            }
        }
        if !self.uids.is_empty()
            && !matches!(exit.user, Some(crate::event::User::Uid(uid)) if self.uids.contains(&uid))
        {
            return false;
        }
        if self.failed_only && exit.status.success() {
            return false;
        }
        if let Some(min) = self.min_duration {
            if exit.duration().is_none_or(|d| d < min) {
                return false;
            }
        }
        true
    }
}

/// Glob match of an image name. A Windows name also matches without its
/// `.exe` suffix, and case is ignored for `.exe` names (Windows file names
/// are case-insensitive).
fn name_matches(glob: &str, name: &str) -> bool {
    if glob_match(glob.as_bytes(), name.as_bytes()) {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix(".exe") {
        let glob = glob.to_ascii_lowercase();
        return glob_match(glob.as_bytes(), lower.as_bytes())
            || glob_match(glob.as_bytes(), stem.as_bytes());
    }
    false
}

/// `*` matches any run of bytes, `?` one byte; everything else is literal.
/// Iterative with one backtrack point, so it is linear-ish and never recurses.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExitStatus, Source};
    use std::time::{Duration, UNIX_EPOCH};

    fn exit(name: &str, code: u32) -> ProcessExit {
        let mut e = ProcessExit::new(10, ExitStatus::Code(code), Source::LinuxConnector);
        e.name = Some(name.into());
        e.ppid = Some(1);
        e
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"py*", b"python3"));
        assert!(glob_match(b"*thon?", b"python3"));
        assert!(!glob_match(b"*thon?", b"python"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"x"));
    }

    #[test]
    fn windows_names_match_without_exe_and_case() {
        let f = Filter::new().name("cmd");
        assert!(f.matches(&exit("CMD.EXE", 0)));
        assert!(!f.matches(&exit("cmdx.exe", 0)));
        assert!(!Filter::new().name("BASH").matches(&exit("bash", 0)));
    }

    #[test]
    fn conditions_combine() {
        let f = Filter::new().name("sh").failed_only(true);
        assert!(!f.matches(&exit("sh", 0)));
        assert!(f.matches(&exit("sh", 1)));
        assert!(!f.matches(&exit("bash", 1)));
        assert!(Filter::new().ppid(1).matches(&exit("x", 0)));
        assert!(!Filter::new().ppid(2).matches(&exit("x", 0)));
        assert!(!Filter::new().pid(11).matches(&exit("x", 0)));
        let mut e = exit("x", 0);
        assert!(!Filter::new()
            .min_duration(Duration::from_secs(1))
            .matches(&e));
        e.start_time = Some(UNIX_EPOCH);
        e.exit_time = Some(UNIX_EPOCH + Duration::from_secs(2));
        assert!(Filter::new()
            .min_duration(Duration::from_secs(1))
            .matches(&e));
    }

    #[test]
    fn cgroup_globs() {
        let mut e = exit("nginx", 0);
        let f = Filter::new().cgroup("/system.slice/docker-*");
        assert!(!f.matches(&e), "unknown cgroup is dropped");
        e.cgroup = Some("/system.slice/docker-0a1b.scope".into());
        assert!(f.matches(&e));
        assert!(
            !f.clone().name("bash").matches(&e),
            "and the rest still holds"
        );
        assert!(Filter::new()
            .cgroup("/user.slice/*")
            .cgroup("*docker*")
            .matches(&e));
        e.cgroup = Some("/user.slice/user-1000.slice/session-2.scope".into());
        assert!(!f.matches(&e));
        assert!(!f.matches_process(10, Some(1), Some("nginx")));
    }

    #[test]
    fn uid_and_negated_conditions() {
        let mut e = exit("bash", 0);
        assert!(
            !Filter::new().uid(1000).matches(&e),
            "unknown user is dropped"
        );
        e.user = Some(crate::event::User::Uid(1000));
        assert!(Filter::new().uid(0).uid(1000).matches(&e));
        assert!(!Filter::new().uid(0).matches(&e));
        assert!(!Filter::new().not_name("ba*").matches(&e));
        assert!(Filter::new().not_name("zsh").matches(&e));
        assert!(!Filter::new().not_pid(10).matches(&e));
        assert!(Filter::new().not_pid(11).matches(&e));
        assert!(!Filter::new().not_ppid(1).matches(&e));
        assert!(Filter::new().not_ppid(2).matches(&e));
        assert!(!Filter::new()
            .not_name("bash")
            .matches_process(10, Some(1), Some("bash")));
    }
}

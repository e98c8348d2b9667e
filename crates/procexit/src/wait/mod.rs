//! Waiting for arbitrary processes (not only children) to end.

use std::time::Instant;

use crate::error::Result;
use crate::event::ProcessExit;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
use crate::sys::Waiter;
#[cfg(target_os = "linux")]
use linux::Waiter;

/// A set of processes to wait for. Exits come back one at a time, in the
/// order the processes end.
///
/// On Linux this listens to the process connector (so any process, not only
/// children, and with the real exit status), and holds a pidfd on each
/// process: when no connector record comes for an ended process (inside a
/// pid namespace the connector reports other pids), its status is read from
/// the pidfd (Linux 6.15+, [`Source::Handle`](crate::Source::Handle)). On
/// Windows it waits on process handles (no ETW, no elevation needed).
///
/// ```no_run
/// use procexit::WaitSet;
///
/// let mut set = WaitSet::new(&[1234])?;
/// while let Some(exit) = set.next_exit(None)? {
///     println!("{} ended: {}", exit.pid, exit.status);
/// }
/// # Ok::<(), procexit::Error>(())
/// ```
pub struct WaitSet {
    inner: Waiter,
    remaining: Vec<u32>,
}

impl std::fmt::Debug for WaitSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl WaitSet {
    /// Starts waiting for `pids`. Fails with [`Error::NoSuchProcess`](crate::Error::NoSuchProcess)
    /// if one of them does not exist (or has already ended).
    pub fn new(pids: &[u32]) -> Result<WaitSet> {
        let mut remaining = pids.to_vec();
        remaining.sort_unstable();
        remaining.dedup();
        Ok(WaitSet {
            inner: Waiter::new(&remaining)?,
            remaining,
        })
    }

    /// The next process of the set to end. `Ok(None)` when every process has
    /// been reported, or when `deadline` passed first.
    /// [`Error::ExitStatusUnknown`](crate::Error::ExitStatusUnknown) reports
    /// one process that ended with a status this user cannot learn (see
    /// [`fallback`](Self::fallback)); the set goes on with the others.
    pub fn next_exit(&mut self, deadline: Option<Instant>) -> Result<Option<ProcessExit>> {
        if self.remaining.is_empty() {
            return Ok(None);
        }
        let exit = self.inner.next_exit(deadline);
        match &exit {
            Ok(Some(exit)) => self.remaining.retain(|&pid| pid != exit.pid),
            Err(crate::Error::ExitStatusUnknown { pid, .. }) => self.remaining.retain(|p| p != pid),
            _ => {}
        }
        exit
    }

    /// Why the set waits without the process connector, if it does: the
    /// kernel refused this process as a listener (Linux, often for
    /// unprivileged users), so exits are learned from pidfds alone, with
    /// their status only where the kernel keeps it (see
    /// [`Error::ExitStatusUnknown`](crate::Error::ExitStatusUnknown)).
    /// Always `None` on Windows.
    pub fn fallback(&self) -> Option<&crate::Error> {
        self.inner.fallback()
    }

    /// The pids still running.
    pub fn remaining(&self) -> &[u32] {
        &self.remaining
    }
}

//! Targets with no live backend: every call says so, nothing panics.
//! (The `.etl` reader still works everywhere.)

use std::time::Instant;

use crate::backend::Running;
use crate::error::{Error, Result};
use crate::event::ProcessExit;
use crate::queue::Sink;
use crate::sys::Config;

pub(crate) fn start(_options: &Config<'_>, _sink: Sink) -> Result<Running> {
    Err(Error::Unsupported {
        what: "live process-exit monitoring",
    })
}

pub(crate) struct Waiter;

impl Waiter {
    /// Always `None`: there is no fallback to report here (see
    /// [`WaitSet::fallback`](crate::WaitSet::fallback)).
    pub(crate) fn fallback(&self) -> Option<&crate::Error> {
        None
    }

    pub(crate) fn new(_pids: &[u32]) -> Result<Waiter> {
        Err(Error::Unsupported {
            what: "waiting for processes",
        })
    }

    pub(crate) fn next_exit(&mut self, _deadline: Option<Instant>) -> Result<Option<ProcessExit>> {
        Ok(None)
    }
}

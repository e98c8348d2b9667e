//! Signals `watch` reacts to: Ctrl-C and termination stop it (it then prints
//! its summary); on Unix, SIGHUP reopens the output file when there is one
//! (logrotate's rename-then-signal rotation) and stops it otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use procexit::Stopper;

/// Where a stop request finds the monitor. A request that comes before the
/// monitor has started is kept and applied when it attaches.
#[derive(Clone, Default)]
pub struct StopSlot {
    stopper: Arc<Mutex<Option<Stopper>>>,
    requested: Arc<AtomicBool>,
}

impl StopSlot {
    /// Asks the monitor to stop, now or as soon as it runs.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Some(stopper) = self.lock().as_ref() {
            stopper.stop();
        }
    }

    /// Hands over the running monitor's stopper.
    pub fn attach(&self, stopper: Stopper) {
        *self.lock() = Some(stopper.clone());
        if self.requested.load(Ordering::SeqCst) {
            stopper.stop();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Stopper>> {
        self.stopper.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Installs the handlers. `reopen` is set on SIGHUP when `Some`.
#[cfg(unix)]
pub fn install(slot: StopSlot, reopen: Option<Arc<AtomicBool>>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("procexit-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match (signal, &reopen) {
                    (SIGHUP, Some(reopen)) => reopen.store(true, Ordering::Relaxed),
                    _ => slot.request(),
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Installs the handlers (Ctrl-C, Ctrl-Break, console close).
#[cfg(windows)]
pub fn install(slot: StopSlot, _reopen: Option<Arc<AtomicBool>>) -> anyhow::Result<()> {
    ctrlc::set_handler(move || slot.request()).context("cannot install the Ctrl-C handler")
}

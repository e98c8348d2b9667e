//! Signals `watch` reacts to: Ctrl-C and termination stop it (it then prints
//! its summary); on Unix, SIGHUP reopens the output file when there is one
//! (logrotate's rename-then-signal rotation) and stops it otherwise.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use procexit::Stopper;

/// Installs the handlers. `reopen` is set on SIGHUP when `Some`.
#[cfg(unix)]
pub fn install(stopper: Stopper, reopen: Option<Arc<AtomicBool>>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use std::sync::atomic::Ordering;

    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("procexit-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match (signal, &reopen) {
                    (SIGHUP, Some(reopen)) => reopen.store(true, Ordering::Relaxed),
                    _ => stopper.stop(),
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Installs the handlers (Ctrl-C, Ctrl-Break, console close).
#[cfg(windows)]
pub fn install(stopper: Stopper, _reopen: Option<Arc<AtomicBool>>) -> anyhow::Result<()> {
    ctrlc::set_handler(move || stopper.stop()).context("cannot install the Ctrl-C handler")
}

//! Prints every process that fails (non-zero exit code or a signal) until
//! Ctrl-C or 60 seconds, then the counters. Run:
//! `cargo run -p procexit --example failed_exits`.

use std::time::{Duration, Instant};

use procexit::{Event, Filter, Monitor, RecvError};

fn main() -> Result<(), procexit::Error> {
    let monitor = Monitor::builder()
        .filter(Filter::new().failed_only(true))
        .start()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match monitor.recv_timeout(Duration::from_millis(500)) {
            Ok(Event::Exit(exit)) => println!(
                "{:>7} {:<16} {} ({})",
                exit.pid,
                exit.name.as_deref().unwrap_or("?"),
                exit.status,
                exit.command_line.as_deref().unwrap_or("no command line")
            ),
            Ok(Event::Lost { count, reason }) => eprintln!("-- {count} exits lost ({reason:?})"),
            Ok(_) | Err(RecvError::Timeout) => {}
            Err(RecvError::Stopped) => break,
        }
    }
    let stats = monitor.stop()?;
    eprintln!("{stats:?}");
    Ok(())
}

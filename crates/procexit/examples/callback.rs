//! Receives exits through a callback on the monitor's own thread and
//! counts them per exit code for five seconds. Run:
//! `cargo run -p procexit --example callback`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procexit::{Event, ExitStatus, Monitor};

fn main() -> Result<(), procexit::Error> {
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let sink = counts.clone();
    let monitor = Monitor::builder().start_with_handler(move |event| {
        if let Event::Exit(exit) = event {
            let key = match exit.status {
                ExitStatus::Code(code) => format!("code {code}"),
                ExitStatus::Signal { signal, .. } => format!("signal {signal}"),
            };
            *sink.lock().unwrap().entry(key).or_default() += 1;
        }
    })?;
    std::thread::sleep(Duration::from_secs(5));
    let stats = monitor.stop()?;
    for (status, n) in counts.lock().unwrap().iter() {
        println!("{n:>6}  {status}");
    }
    println!("lost {} dropped {}", stats.lost, stats.dropped);
    Ok(())
}

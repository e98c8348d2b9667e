//! Reads every event of `.etl` files, decodes the Process events and prints
//! counts: the procexit side of `bench/replay_bench.sh`.
//!
//! Usage: `cargo run --release --example etl_scan -- FILE.etl…`

use std::process::ExitCode;

use procexit::etl::read_process_events;

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in std::env::args().skip(1) {
        let mut events = match read_process_events(&path) {
            Ok(events) => events,
            Err(e) => {
                eprintln!("{path}: {e}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        let mut lifecycle = 0u64;
        for item in events.by_ref() {
            match item {
                Ok(_) => lifecycle += 1,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    status = ExitCode::FAILURE;
                }
            }
        }
        let s = events.summary();
        println!(
            "{path}: {} bytes, {} buffers, {} records, {} events, {lifecycle} process events, \
             {} exits, {} anomalies, {} unknown versions, {} decode errors",
            s.bytes,
            s.buffers,
            s.records,
            s.events,
            s.process_exits,
            s.anomalies,
            s.unknown_versions,
            s.decode_errors
        );
    }
    status
}

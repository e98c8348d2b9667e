//! Reads every event of `.etl` files, decodes the Process events and prints
//! counts: the procexit side of `bench/replay_bench.sh`.
//!
//! Usage: `etl_scan [--repeat N] [--read-only] FILE.etl…`. With `--repeat`,
//! each file is read N times and the best in-process time is printed too
//! (the Python decoders are timed the same way, without interpreter
//! start-up). `--read-only` only reads the file through the same buffered
//! reader, the baseline for "how close to disk speed".

use std::process::ExitCode;
use std::time::{Duration, Instant};

use procexit::etl::{read_process_events, ProcessSummary};

fn scan(path: &str) -> Result<(ProcessSummary, u64, u64), procexit::etl::EtlError> {
    let mut events = read_process_events(path)?;
    let (mut lifecycle, mut errors) = (0u64, 0u64);
    for item in events.by_ref() {
        match item {
            Ok(_) => lifecycle += 1,
            Err(e) => {
                errors += 1;
                eprintln!("{path}: {e}");
            }
        }
    }
    Ok((events.summary(), lifecycle, errors))
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeat = 1u32;
    if args.first().map(String::as_str) == Some("--repeat") {
        repeat = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1).max(1);
        args.drain(..2.min(args.len()));
    }
    if args.first().map(String::as_str) == Some("--read-only") {
        args.remove(0);
        for path in &args {
            let mut best = Duration::MAX;
            let mut bytes = 0;
            for _ in 0..repeat {
                let t0 = Instant::now();
                let file = std::fs::File::open(path).expect("open");
                let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
                bytes = std::io::copy(&mut reader, &mut std::io::sink()).expect("read");
                best = best.min(t0.elapsed());
            }
            println!(
                "{path}: {bytes} bytes read, best {:.6} s",
                best.as_secs_f64()
            );
        }
        return ExitCode::SUCCESS;
    }
    let mut status = ExitCode::SUCCESS;
    for path in &args {
        let mut best = Duration::MAX;
        let mut last = None;
        for _ in 0..repeat {
            let t0 = Instant::now();
            let result = scan(path);
            best = best.min(t0.elapsed());
            last = Some(result);
        }
        match last {
            Some(Ok((s, lifecycle, errors))) => {
                if errors > 0 {
                    status = ExitCode::FAILURE;
                }
                println!(
                    "{path}: {} bytes, {} buffers, {} records, {} events, {lifecycle} process \
                     events, {} exits, {} anomalies, {} unknown versions, {} decode errors, \
                     best {:.6} s",
                    s.bytes,
                    s.buffers,
                    s.records,
                    s.events,
                    s.process_exits,
                    s.anomalies,
                    s.unknown_versions,
                    s.decode_errors,
                    best.as_secs_f64()
                );
            }
            Some(Err(e)) => {
                eprintln!("{path}: {e}");
                status = ExitCode::FAILURE;
            }
            None => {}
        }
    }
    status
}

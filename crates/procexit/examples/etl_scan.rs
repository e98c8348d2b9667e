//! Reads every event of `.etl` files and prints counts: the procexit side of
//! `bench/replay_bench.sh`.
//!
//! Usage: `cargo run --release --example etl_scan -- FILE.etl…`

use std::collections::BTreeMap;
use std::process::ExitCode;

use procexit::decode::PROCESS_GUID;
use procexit::etl::EtlFile;

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in std::env::args().skip(1) {
        let mut file = match EtlFile::open(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{path}: {e}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        let mut events = 0u64;
        let mut payload_bytes = 0u64;
        let mut process: BTreeMap<(u8, u16), u64> = BTreeMap::new();
        let mut errors = 0u64;
        loop {
            match file.next_event() {
                Ok(Some(ev)) => {
                    events += 1;
                    payload_bytes += ev.payload.len() as u64;
                    if ev.provider == PROCESS_GUID {
                        *process.entry((ev.opcode, ev.version)).or_default() += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    errors += 1;
                    eprintln!("{path}: {e}");
                }
            }
        }
        let stats = file.stats();
        println!(
            "{path}: buffers {} records {} events {events} payload {payload_bytes} B errors {errors} process {process:?}",
            stats.buffers, stats.records
        );
    }
    status
}

//! The Windows hot path, measured on any OS (`bench/windows_hot_path.sh`
//! runs this and records the figures in bench/RESULTS.md):
//!
//! - `process_payload/decode`: the kernel Process payload decoder alone, on
//!   every Process payload of the repository's traces (ns per event);
//! - `process_events/…`: a dense synthetic trace of Process Start/End pairs
//!   (4000 processes, 8000 events): `decode+merge` hands each event, already
//!   in memory with its header, to the exit tracker as the real-time ETW
//!   callback does (route, decode, track; it receives decoded record headers
//!   from Windows, not a file): the per-event cost of the live hot path.
//!   `read` runs the raw record reader alone over the trace file (by
//!   batches, every event handed to `black_box`) and
//!   `read+decode+merge` the `.etl` path (`ProcessEvents`: reader, decoder,
//!   tracker, and an item with an owned copy of each payload);
//! - `etl_reader/<trace>`: each trace read from memory (bytes per second of
//!   file; the trace's event count and, for compressed traces, the bytes its
//!   buffers inflate to are printed, so events and decompressed bytes per
//!   second follow): `read` by batches ([`EtlFile::next_batch`], as
//!   `ProcessEvents` reads), `next_event` one call per event, each event
//!   handed whole to `black_box` so none of its fields can be left
//!   uncomputed; beside copying the same bytes (`copy`).

use std::path::PathBuf;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use procexit::etl::{EtlFile, ProcessEvents};
use procexit::unstable::decode::mof_process::decode_process;
use procexit::unstable::decode::view::{EventHeader, EventView};
use procexit::unstable::decode::{PointerSize, PROCESS_GUID};
use procexit::unstable::etw::ExitTracker;

#[path = "../tests/support/etl_builder.rs"]
mod etl_builder;

fn traces() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/etl"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "etl"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Every kernel Process payload (version, pointer size, bytes) of the traces.
fn process_payloads(traces: &[(String, Vec<u8>)]) -> Vec<(u8, PointerSize, Vec<u8>)> {
    let mut payloads = Vec::new();
    for (_, bytes) in traces {
        let Ok(mut file) = EtlFile::new(&bytes[..]) else {
            continue;
        };
        loop {
            match file.next_event() {
                Ok(Some(ev)) if ev.header.provider == PROCESS_GUID => payloads.push((
                    u8::try_from(ev.header.version).unwrap_or(u8::MAX),
                    ev.header.pointer_size,
                    ev.payload.to_vec(),
                )),
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => break,
            }
        }
    }
    payloads
}

fn payload_decode(c: &mut Criterion) {
    let payloads = process_payloads(&traces());
    assert!(!payloads.is_empty(), "no Process payloads in testdata/etl");
    let mut group = c.benchmark_group("process_payload");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut decoded = 0usize;
            for (version, pointer, payload) in &payloads {
                decoded += usize::from(decode_process(payload, *version, *pointer).is_ok());
            }
            decoded
        })
    });
    group.finish();
}

fn process_events(c: &mut Criterion) {
    // 4000 processes, each started and ended, 64-bit version-4 payloads
    // with a SID, an image name and a command line, in 64 KiB buffers.
    let trace = etl_builder::dense_process_trace(4000);
    let events = 8000u64;
    let mut group = c.benchmark_group("process_events");
    group.throughput(Throughput::Elements(events));
    // The events as the real-time callback receives them: header and payload.
    let mut received: Vec<(EventHeader, Vec<u8>)> = Vec::new();
    let mut file = EtlFile::new(&trace[..]).unwrap();
    while let Ok(Some(ev)) = file.next_event() {
        if ev.header.provider == PROCESS_GUID {
            received.push((ev.header, ev.payload.to_vec()));
        }
    }
    assert_eq!(received.len() as u64, events);
    group.bench_function("decode+merge", |b| {
        b.iter(|| {
            let mut tracker = ExitTracker::new(None);
            let mut exits = 0usize;
            for (header, payload) in &received {
                let view = EventView {
                    header: *header,
                    payload,
                    extended: &[],
                    place: (),
                };
                if let Ok(Some(exit)) = tracker.on_event(&view) {
                    exits += 1;
                    black_box(exit);
                }
            }
            assert_eq!(exits, 4000);
            exits
        })
    });
    // By batches, as `ProcessEvents` reads.
    group.bench_function("read", |b| {
        b.iter(|| {
            let mut file = EtlFile::new(&trace[..]).unwrap();
            let mut n = 0u64;
            while let Ok(Some(batch)) = file.next_batch() {
                for event in batch {
                    black_box(&event);
                    n += 1;
                }
            }
            assert_eq!(n, events + 1); // and the logfile header
            n
        })
    });
    group.bench_function("read+decode+merge", |b| {
        b.iter(|| {
            let items = ProcessEvents::new(EtlFile::new(&trace[..]).unwrap());
            let exits = items
                .filter_map(Result::ok)
                .filter(|i| i.exit.is_some())
                .count();
            assert_eq!(exits, 4000);
            exits
        })
    });
    group.finish();
}

fn etl_reader(c: &mut Criterion) {
    let mut group = c.benchmark_group("etl_reader");
    group.sample_size(10);
    for (name, bytes) in traces() {
        let mut file = match EtlFile::new(&bytes[..]) {
            Ok(f) => f,
            Err(_) => continue,
        };
        let mut events = 0u64;
        while let Ok(Some(_)) | Err(_) = file.next_event().map(|e| e.map(|_| ())) {
            events += 1;
            if events > 50_000_000 {
                break;
            }
        }
        let stats = file.stats();
        let compressed = stats.compressed_buffers > 0;
        eprintln!(
            "etl_reader/{name}: {} bytes, {events} events, {}, {} inflated bytes",
            bytes.len(),
            if compressed {
                "compressed"
            } else {
                "not compressed"
            },
            stats.inflated_bytes
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        // Each event is handed to `black_box` whole, so none of its fields
        // can be left uncomputed.
        group.bench_with_input(BenchmarkId::new("read", &name), &bytes, |b, bytes| {
            b.iter(|| {
                let mut file = EtlFile::new(&bytes[..]).unwrap();
                let mut n = 0u64;
                loop {
                    match file.next_batch() {
                        Ok(Some(batch)) => {
                            for event in batch {
                                black_box(&event);
                                n += 1;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => n += 1,
                    }
                }
                n
            })
        });
        group.bench_with_input(BenchmarkId::new("next_event", &name), &bytes, |b, bytes| {
            b.iter(|| {
                let mut file = EtlFile::new(&bytes[..]).unwrap();
                let mut n = 0u64;
                loop {
                    match file.next_event() {
                        Ok(Some(event)) => {
                            black_box(&event);
                            n += 1;
                        }
                        Ok(None) => break,
                        Err(_) => n += 1,
                    }
                }
                n
            })
        });
        group.bench_with_input(BenchmarkId::new("copy", &name), &bytes, |b, bytes| {
            b.iter(|| bytes.to_vec())
        });
    }
    group.finish();
}

criterion_group!(benches, payload_decode, process_events, etl_reader);
criterion_main!(benches);

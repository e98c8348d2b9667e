//! Smoke run of every fuzz target on the stable toolchain (libFuzzer needs
//! nightly; `fuzz/run.sh` does the long runs). Each target gets its seeds
//! (`fuzz/seeds/<target>`, the repository's `.etl` traces for the trace
//! targets, and a local `fuzz/corpus/<target>` when a fuzz run left one),
//! then mutations of them and random inputs from a fixed-seed generator, so
//! a failure reproduces. A failing input is written to the target directory
//! and named in the panic message.

#![cfg(unix)] // the decoders are the same everywhere; Linux runs it in CI

#[allow(dead_code)]
#[path = "../../../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Mutated and random inputs per target; `PROCEXIT_FUZZ_SMOKE_RUNS`
/// overrides.
fn runs() -> u64 {
    std::env::var("PROCEXIT_FUZZ_SMOKE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

/// Cuts a trace into seeds the way `fuzz/run.sh` does: buffer 0 alone, the
/// first buffers, and (for `xpress`) each compressed buffer's body with its
/// decompressed size in front.
fn trace_seeds(target: &str, trace: &[u8], seeds: &mut Vec<Vec<u8>>) {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(trace.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let (mut offset, mut index) = (0usize, 0usize);
    while let Some(size) = u32_at(offset) {
        let Some(buffer) = trace.get(offset..offset + size).filter(|_| size >= 72) else {
            break;
        };
        let filled = u32_at(offset + 0x30).unwrap_or(0);
        let flags = u16::from_le_bytes([buffer[0x34], buffer[0x35]]);
        match target {
            "etl_file" if index == 0 => seeds.push(buffer.to_vec()),
            "etl_file" if index < 4 && offset <= 256 << 10 => {
                seeds.push(trace[..offset + size].to_vec())
            }
            "xpress" if flags & 0x40 != 0 && index < 40 => {
                let cap = (filled.saturating_sub(72) & 0xffff) as u16;
                let mut seed = cap.to_le_bytes().to_vec();
                seed.extend_from_slice(&buffer[72..]);
                seeds.push(seed);
            }
            _ => {}
        }
        offset += size;
        index += 1;
    }
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(ROOT);
    let mut seeds = Vec::new();
    for dir in [
        root.join("fuzz/seeds").join(target),
        root.join("fuzz/corpus").join(target),
    ] {
        for file in files_in(&dir) {
            seeds.push(std::fs::read(file).unwrap());
        }
    }
    if target == "bpf_object" {
        let object = root.join("crates/procexit/src/sys/linux/bpf/procexit.bpf.o");
        seeds.push(std::fs::read(object).unwrap());
    }
    if matches!(target, "etl_file" | "xpress") {
        for file in files_in(&root.join("testdata/etl")) {
            if file.extension().is_some_and(|e| e == "etl") {
                trace_seeds(target, &std::fs::read(file).unwrap(), &mut seeds);
            }
        }
    }
    seeds
}

/// One mutation of `seed`: bit flips, interesting values, cuts, repeats,
/// random bytes (what libFuzzer's simplest mutators do).
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
            }
            2 if len >= 4 => {
                let i = rng.below(len - 3);
                let v: u32 = [0, u32::MAX, 0x8000_0000, 0xffff, 72, 0x1_0000][rng.below(6)];
                data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            3 => data.truncate(rng.below(len + 1)),
            4 if len > 0 => {
                let start = rng.below(len);
                let end = start + rng.below(len - start + 1);
                let chunk = data[start..end].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            5 => {
                let at = rng.below(len + 1);
                let extra: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, extra);
            }
            _ if len > 0 => {
                let start = rng.below(len);
                let end = start + rng.below((len - start).min(64) + 1);
                data.drain(start..end);
            }
            _ => {}
        }
    }
    data
}

fn run_one(name: &str, target: targets::Target, data: &[u8]) {
    if std::panic::catch_unwind(|| target(data)).is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-smoke");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}-crash-{}", data.len()));
        std::fs::write(&file, data).unwrap();
        panic!(
            "fuzz target {name} failed on an input ({} bytes), saved at {}",
            data.len(),
            file.display()
        );
    }
}

#[test]
fn every_fuzz_target_survives_seeds_mutations_and_random_input() {
    let runs = runs();
    for (name, target) in targets::ALL {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} holds no seed");
        // Trace inputs and BPF objects are large: fewer of them.
        let runs = match name {
            "etl_file" => runs / 10,
            "bpf_object" => runs / 20,
            _ => runs,
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let started = std::time::Instant::now();
        for seed in &seeds {
            run_one(name, target, seed);
        }
        for i in 0..runs {
            let data = if i % 8 == 7 {
                let len = rng.below(512);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let seed = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed)
            };
            run_one(name, target, &data);
        }
        eprintln!(
            "fuzz smoke {name}: {} seeds + {runs} generated inputs in {:.2?}",
            seeds.len(),
            started.elapsed()
        );
    }
}

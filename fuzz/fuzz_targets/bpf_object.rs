//! libFuzzer entry for the `bpf_object` target (body in `fuzz/targets.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::bpf_object(data));

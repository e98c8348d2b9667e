//! libFuzzer entry for the `audit_api` target (body in `fuzz/targets.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::audit_api(data));

//! The kernel Process payload decoder: byte 0 is the version, byte 1 picks
//! the pointer size, the rest is the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procexit::decode::mof_process::decode_process;
use procexit::decode::PointerSize;

fuzz_target!(|data: &[u8]| {
    let [version, width, payload @ ..] = data else {
        return;
    };
    let pointer = if width & 1 == 0 {
        PointerSize::Four
    } else {
        PointerSize::Eight
    };
    if let Ok(p) = decode_process(payload, *version, pointer) {
        let _ = p.is_fully_decoded();
    }
});

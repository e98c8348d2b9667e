//! The LZ77 Xpress decompressor: first two bytes choose the output size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procexit::etl::xpress::decompress;

fuzz_target!(|data: &[u8]| {
    let (cap, input) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return,
    };
    let mut out = vec![0u8; cap];
    if let Ok(n) = decompress(input, &mut out) {
        assert!(n <= cap);
    }
});

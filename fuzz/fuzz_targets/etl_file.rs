//! The `.etl` reader over arbitrary bytes: raw events, then process items.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procexit::etl::{EtlFile, ProcessEvents};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut file) = EtlFile::new(data) {
        let _ = file.header().filetime(i64::MAX);
        let mut n = 0usize;
        loop {
            match file.next_event() {
                Ok(Some(ev)) => {
                    assert!(ev.payload.len() <= data.len().max(1 << 20));
                    let _ = ev.time();
                }
                Ok(None) => break,
                Err(e) => assert!(e.offset <= data.len() as u64),
            }
            n += 1;
            // Progress: a buffer takes at least 72 input bytes and holds at
            // most 1 MiB of records of at least 8 bytes each.
            let bound = (data.len() / 72 + 1) * ((1 << 20) / 8 + 2);
            assert!(n <= bound, "reader does not advance");
        }
    }
    if let Ok(file) = EtlFile::new(data) {
        for item in ProcessEvents::new(file).take(1 << 22) {
            let _ = item;
        }
    }
});

//! Fuzzes the chunked-body decoder, feeding the input in two pieces split at the first byte's
//! value: consumption never exceeds the input and decoded bytes never exceed the limit.
#![no_main]

use atlas::http::chunked::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let mut decoder = ChunkedDecoder::new(4096);
    let mut out = Vec::new();
    let mut pos = 0;
    for end in [split, rest.len()] {
        if end < pos {
            continue;
        }
        match decoder.decode(&rest[pos..end], &mut out) {
            Ok(progress) => {
                assert!(progress.consumed <= end - pos);
                pos += progress.consumed;
                if progress.done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    assert!(out.len() <= 4096);
});

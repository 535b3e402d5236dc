//! The rkyv warm-restart snapshot reader (`atlas::fuzz::snapshot`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atlas::fuzz::snapshot(data));

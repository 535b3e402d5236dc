//! The rkyv L2 record reader (`atlas::fuzz::l2_record`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atlas::fuzz::l2_record(data));

//! The Open Inference Protocol client's response and metadata decoders (`atlas::fuzz::v2_response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atlas::fuzz::v2_response(data));

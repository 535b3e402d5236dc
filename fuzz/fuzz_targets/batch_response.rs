//! The model-endpoint response reader and batch decoder, client side (`atlas::fuzz::batch_response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atlas::fuzz::batch_response(data));

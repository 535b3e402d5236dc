//! JSON validation of each operation's request, canonical keys, the model run (`atlas::fuzz::ai_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atlas::fuzz::ai_request(data));

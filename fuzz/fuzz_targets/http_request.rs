//! HTTP request reader: head parser and chunked decoder as the connection drives them; split input reads the same as whole (`atlas::fuzz::http_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atlas::fuzz::http_request(data));

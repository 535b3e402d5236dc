//! Fuzzes the request-head parser: any bytes must give Incomplete, a head whose offsets lie
//! inside the input, or an error — never a panic.
#![no_main]

use atlas::http::parse::{parse_head, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done(head)) = parse_head(data, &Limits::default()) {
        assert!(head.len <= data.len());
        assert!(head.path.end <= head.len);
        for (name, value) in &head.headers {
            assert!(name.end <= head.len && value.end <= head.len);
        }
    }
});

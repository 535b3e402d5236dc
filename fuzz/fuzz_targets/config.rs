//! The configuration: TOML file and environment, gathered and validated (`atlas::fuzz::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atlas::fuzz::config(data));

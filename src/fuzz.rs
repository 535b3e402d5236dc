//! Fuzz entry points: one plain `fn(&[u8])` per parser that faces bytes from outside the
//! process. `fuzz/fuzz_targets/*.rs` call them under libFuzzer (`cargo fuzz`, which builds
//! with `--cfg fuzzing`); the unit tests below replay the committed seed corpus and every
//! regression input through the same functions, so a fixed crash stays fixed in `cargo test`.
//!
//! Each function states the property it checks beyond "does not panic": parsing is
//! independent of how the input was split, what is accepted round-trips, limits hold. A
//! violated property panics, which is what the fuzzer reports.
//!
//! Compiled for tests and fuzz builds only; never on a server path.

use std::path::Path;

use atlas_shard::{Cache, CacheKey, CacheOptions, ManualClock, Operation};
use bytes::Bytes;

use crate::client::ResponseReader;
use crate::http::parse::{parse_head, Limits, Parsed};
use crate::http::stream::{read_split, read_whole};
use crate::http::Request;

/// Splits `data` into cut points (from its first `n` bytes, as fractions of the rest) and
/// the rest.
fn cuts(data: &[u8], n: usize) -> (Vec<usize>, &[u8]) {
    let n = n.min(data.len());
    let (spec, rest) = data.split_at(n);
    let cuts = spec
        .iter()
        .map(|&b| usize::from(b) * rest.len() / 255)
        .collect();
    (cuts, rest)
}

/// The HTTP request reader (head parser and chunked decoder, as the connection drives them):
/// the input split at up to three points gives the same requests, bodies and error as the
/// input whole. The first byte picks small limits (so 413, 414 and 431 are reachable) or the
/// defaults; the next three pick the cuts.
pub fn http_request(data: &[u8]) {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let limits = if mode & 1 == 0 {
        Limits {
            max_target: 64,
            max_header_bytes: 256,
            max_headers: 8,
            max_body: 512,
        }
    } else {
        Limits::default()
    };
    let (cuts, input) = cuts(data, 3);
    let whole = read_whole(input, limits);
    let split = read_split(input, &cuts, limits);
    assert_eq!(whole, split, "cuts {cuts:?}");
    let consumed: usize = whole.messages.iter().map(|m| m.head_len).sum::<usize>();
    assert!(consumed <= input.len());
    for m in &whole.messages {
        assert!(m.body.len() as u64 <= limits.max_body);
        assert!(m.headers.len() <= limits.max_headers);
    }
}

/// A request head for `/ai/*` with some of the headers the envelope reads.
fn ai_head(flags: u8) -> Option<(crate::http::Head, Bytes)> {
    let mut raw = String::from("POST /ai/x HTTP/1.1\r\nHost: f\r\n");
    raw.push_str(match flags & 0b11 {
        0 => "",
        1 => "Content-Type: application/json\r\n",
        2 => "Content-Type: text/plain; charset=utf-8\r\n",
        _ => "Content-Type: application/xml\r\n",
    });
    raw.push_str(match (flags >> 2) & 0b11 {
        0 => "",
        1 => "Cache-Control: no-cache, max-age=5\r\n",
        2 => "Cache-Control: max-age=0\r\n",
        _ => "Cache-Control: no-store\r\n",
    });
    if flags & 0b1_0000 != 0 {
        raw.push_str("X-Priority: low\r\n");
    }
    raw.push_str("\r\n");
    let raw = Bytes::from(raw);
    match parse_head(&raw, &Limits::default()) {
        Ok(Parsed::Done(head)) => Some((head, raw)),
        _ => None,
    }
}

/// JSON validation of each operation's request, and the model run on what passes: the first
/// byte picks the operation and headers; the rest is the body, optionally followed by `0xFF`
/// and a stored user context (an object merged with `use_context`). Accepted requests must
/// have a canonical input that parses back to the same typed input (same key, same
/// computation), survive the remote endpoints' encoding unchanged, make a valid cache key,
/// and compute to a finite confidence and volatility and an object result (or a typed
/// error).
pub fn ai_request(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let op = Operation::ALL[usize::from(sel) % Operation::ALL.len()];
    let Some((head, raw)) = ai_head(sel >> 2) else {
        return;
    };
    // 0xFF never occurs in UTF-8, so it cannot be part of a JSON body.
    let (body, context) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let request = Request {
        head,
        raw,
        body: Bytes::copy_from_slice(body),
    };
    let Ok(draft) = crate::ai::request::parse(op, &request) else {
        return;
    };
    let context: Option<serde_json::Map<String, serde_json::Value>> =
        context.and_then(|c| serde_json::from_slice(c).ok());
    let use_context = draft.use_context;
    let Ok(parsed) = draft.finish(if use_context { context.as_ref() } else { None }) else {
        return;
    };
    // The canonical form is a fixed point and means the same input.
    let value: serde_json::Value = match serde_json::from_slice(&parsed.canonical) {
        Ok(v) => v,
        Err(e) => panic_with(&format!("canonical input is not JSON: {e}")),
    };
    assert_eq!(crate::ai::canonical::to_vec(&value), parsed.canonical);
    match crate::models::parse_input(op, &value) {
        Ok(again) => assert_eq!(again, parsed.input, "canonical form changed the input"),
        Err(e) => panic_with(&format!("canonical form refused: {e:?}")),
    }
    // What a remote endpoint receives parses back to the same input.
    let wire = match &parsed.input {
        crate::models::ModelInput::Portfolio(x) => serde_json::to_value(x),
        crate::models::ModelInput::Budget(x) => serde_json::to_value(x),
        crate::models::ModelInput::Risk(x) => serde_json::to_value(x),
        crate::models::ModelInput::Cashflow(x) => serde_json::to_value(x),
    };
    match wire.map(|w| crate::models::parse_input(op, &w)) {
        Ok(Ok(again)) => assert_eq!(again, parsed.input, "wire form changed the input"),
        other => panic_with(&format!("wire form refused: {other:?}")),
    }
    if CacheKey::new(op, Some(&parsed.user), &parsed.canonical).is_err() {
        // The route answers 400 for this; nothing else to check.
        return;
    }
    if let Ok(out) = crate::models::compute(&parsed.input) {
        assert!((0.0..=1.0).contains(&out.confidence), "{}", out.confidence);
        assert!(out.volatility.is_finite() && out.volatility >= 0.0);
        assert!(out.result.is_object());
    }
}

/// The client side of the batch protocol: a model endpoint's response bytes through the
/// response reader (split at a point from the second byte must read the same as whole) and,
/// for a 200, the batch decoder for 1 to 4 inputs (from the first byte). A decoded batch has
/// exactly one output per input, each with a confidence in [0, 1], a volatility ≥ 0 and an
/// object result.
pub fn batch_response(data: &[u8]) {
    let Some((&n, data)) = data.split_first() else {
        return;
    };
    let inputs = usize::from(n % 4) + 1;
    let (cut, bytes) = cuts(data, 1);
    let read = |pieces: &[&[u8]]| -> Result<Option<(u16, Bytes, bool)>, String> {
        let mut r = ResponseReader::new();
        let mut done = false;
        for p in pieces {
            done |= r.push(p).map_err(|e| e.to_string())?;
        }
        if !done {
            r.eof().map_err(|e| e.to_string())?;
        }
        Ok(r.finish()
            .map(|(resp, reuse)| (resp.status, resp.body, reuse)))
    };
    let whole = read(&[bytes]);
    let at = cut.first().copied().unwrap_or(0).min(bytes.len());
    let (a, b) = bytes.split_at(at);
    assert_eq!(read(&[a, b]), whole, "split at {at}");
    let Ok(Some((200, body, _))) = whole else {
        return;
    };
    if let Ok(outputs) = crate::endpoint::http::decode(&body, inputs) {
        assert_eq!(outputs.len(), inputs);
        for out in outputs.iter().flatten() {
            assert!((0.0..=1.0).contains(&out.confidence));
            assert!(out.volatility.is_finite() && out.volatility >= 0.0);
            assert!(out.result.is_object());
        }
    }
}

/// The Open Inference Protocol client's decoders, on a `200` body: the first byte picks the
/// input count (1 to 4, low bits) and the decoder (bit 7: a model's metadata, else an
/// inference response for request id `7`). A decoded batch has exactly one output per input,
/// each with a confidence in [0, 1], a volatility ≥ 0 and an object result; accepted metadata,
/// and a Triton model configuration read as one, give a `max_batch_size` of 1 to 1024 when
/// they give one.
pub fn v2_response(data: &[u8]) {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    if n & 0x80 != 0 {
        if let Ok(m) = crate::endpoint::v2::check_metadata(body) {
            assert!(m.max_batch_size.is_none_or(|b| (1..=1024).contains(&b)));
        }
        let limit = crate::endpoint::v2::config_max_batch(body);
        assert!(limit.is_none_or(|b| (1..=1024).contains(&b)));
        return;
    }
    let inputs = usize::from(n % 4) + 1;
    if let Ok(outputs) = crate::endpoint::v2::decode(body, inputs, "7") {
        assert_eq!(outputs.len(), inputs);
        for out in outputs.iter().flatten() {
            assert!((0.0..=1.0).contains(&out.confidence));
            assert!(out.volatility.is_finite() && out.volatility >= 0.0);
            assert!(out.result.is_object());
        }
    }
}

/// The L2 record reader, on raw bytes and on bytes given a valid trailer (so that the
/// archive validation behind the checksum is reached). An accepted record re-encodes to a
/// record that decodes equal, and restores into a cache without panicking.
pub fn l2_record(data: &[u8]) {
    use crate::l2::record::{seal, Record, MAGIC};
    let _ = Record::decode(data, None);
    let Ok(record) = Record::decode(&seal(data, MAGIC), None) else {
        return;
    };
    let _ = record.remaining_ms(0);
    let _ = record.remaining_ms(u64::MAX);
    match record
        .encode()
        .map(|b| Record::decode(&b, Some(&record.key)))
    {
        Ok(Ok(again)) => assert!(same_record(&again, &record), "round trip changed it"),
        other => panic_with(&format!(
            "an accepted record does not round-trip: {other:?}"
        )),
    }
    restore(vec![record.into_entry(1_000_000)]);
}

/// Records compare equal field by field, NaN floats equal to themselves.
fn same_record(a: &crate::l2::record::Record, b: &crate::l2::record::Record) -> bool {
    let bits = |r: &crate::l2::record::Record| (r.confidence.to_bits(), r.volatility.to_bits());
    let plain = |r: &crate::l2::record::Record| crate::l2::record::Record {
        confidence: 0.0,
        volatility: 0.0,
        ..r.clone()
    };
    bits(a) == bits(b) && plain(a) == plain(b)
}

/// The snapshot reader (`snapshot::decode_into`), on raw bytes and with a valid trailer;
/// nothing is appended unless the file is accepted, and accepted entries restore into a
/// cache whose byte budget holds.
pub fn snapshot(data: &[u8]) {
    use crate::l2::record::seal;
    use crate::snapshot::{decode_into, MAGIC};
    let mut out = Vec::new();
    if decode_into(data, 0, &mut out).is_err() {
        assert!(out.is_empty());
    }
    let mut out = Vec::new();
    match decode_into(&seal(data, MAGIC), 1_000_000, &mut out) {
        Ok(n) => assert_eq!(n, out.len()),
        Err(_) => assert!(out.is_empty()),
    }
    restore(out);
}

fn restore(entries: Vec<atlas_shard::SnapshotEntry>) {
    let budget = 64 * 1024;
    let mut cache = Cache::new(CacheOptions::with_max_bytes(budget), ManualClock::new());
    cache.restore(entries);
    assert!(cache.bytes_used() <= budget);
}

/// The configuration: bytes up to the first NUL are the TOML file, each following line is
/// an environment variable `NAME=value`. Gathering and validation never panic; an accepted
/// configuration renders, and every error names a setting or the file.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (file, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let flags = crate::config::Flags {
        config_file: Some(Path::new("/fuzz/atlas.toml").to_path_buf()),
        ..Default::default()
    };
    let (raw, errors) = crate::config::gather_with(
        &flags,
        |name| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        },
        |_| Ok(file.to_string()),
    );
    for e in &errors {
        assert!(!e.name.is_empty());
    }
    let _ = crate::config::render(&raw);
    match crate::config::build(&raw) {
        Ok(c) => {
            assert!(c.max_connections >= 1 && c.batch_size >= 1);
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
}

/// Reports a violated property (the fuzzer records the input).
#[allow(clippy::panic)]
fn panic_with(message: &str) -> ! {
    panic!("{message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every file under `fuzz/<dir>/<target>/` (the seed corpus and the regressions).
    fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut out = Vec::new();
        for dir in ["seeds", "regressions"] {
            let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for e in rd.flatten() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
        out
    }

    fn replay(target: &str, f: fn(&[u8])) {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "no seeds for {target}");
        for (path, bytes) in inputs {
            eprintln!("{}", path.display());
            f(&bytes);
        }
    }

    #[test]
    fn http_request_corpus() {
        replay("http_request", http_request);
    }

    #[test]
    fn ai_request_corpus() {
        replay("ai_request", ai_request);
    }

    #[test]
    fn batch_response_corpus() {
        replay("batch_response", batch_response);
    }

    #[test]
    fn v2_response_corpus() {
        replay("v2_response", v2_response);
    }

    #[test]
    fn l2_record_corpus() {
        replay("l2_record", l2_record);
    }

    #[test]
    fn snapshot_corpus() {
        replay("snapshot", snapshot);
    }

    #[test]
    fn config_corpus() {
        replay("config", config);
    }

    /// The committed archive seeds of `l2_record` and `snapshot` (archives without the
    /// trailer, which those targets add, and sealed ones) are what the current encoders
    /// write: a format change fails here until the seeds are rewritten with
    /// `ATLAS_WRITE_SEEDS=1 cargo test --lib fuzz::tests::archive_seeds_match_the_encoders`.
    #[test]
    fn archive_seeds_match_the_encoders() {
        let write = std::env::var_os("ATLAS_WRITE_SEEDS").is_some();
        let put = |path: std::path::PathBuf, bytes: Vec<u8>| {
            if write {
                std::fs::write(&path, bytes).unwrap();
            } else {
                let committed = std::fs::read(&path).unwrap_or_default();
                assert!(
                    committed == bytes,
                    "{} differs from what the encoder writes now; rewrite the seeds \
                     (ATLAS_WRITE_SEEDS=1)",
                    path.display()
                );
            }
        };
        use crate::l2::record::Record;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        let key = |user: &str| {
            CacheKey::new(Operation::RiskAssessment, Some(user), br#"{"age":35}"#)
                .unwrap()
                .bytes()
                .to_vec()
        };
        let entry = |user: &str, tags: usize| atlas_shard::SnapshotEntry {
            key: key(user),
            body: Bytes::from_static(
                br#"{"operation":"risk_assessment","result":{"risk_score":50}}"#,
            ),
            age_ms: 1_000,
            ttl_ms: 60_000,
            stale_while_revalidate_ms: 5_000,
            stale_if_error_ms: 30_000,
            confidence: 0.9,
            volatility: 0.1,
            hits: 2,
            refresh_ahead: true,
            tags: (0..tags).map(|i| format!("user:{user}:t{i}")).collect(),
            symbols: vec!["AAPL".into()],
        };
        let strip = |b: Vec<u8>| b[..b.len() - 8].to_vec();
        for (name, e) in [("one", entry("u-1", 1)), ("tags", entry("u-2", 5))] {
            let bytes = Record::from_entry(&e, 2_000_000).encode().unwrap();
            put(root.join("l2_record").join(name), strip(bytes.clone()));
            put(root.join("l2_record").join(format!("{name}.sealed")), bytes);
        }
        let entries: Vec<_> = (0..3).map(|i| entry(&format!("s-{i}"), i)).collect();
        for (name, list) in [("three", &entries[..]), ("empty", &entries[..0])] {
            let bytes = crate::snapshot::encode(0, list, 2_000_000).unwrap();
            put(root.join("snapshot").join(name), strip(bytes.clone()));
            put(root.join("snapshot").join(format!("{name}.sealed")), bytes);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn targets_take_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            http_request(&bytes);
            ai_request(&bytes);
            batch_response(&bytes);
            v2_response(&bytes);
            l2_record(&bytes);
            snapshot(&bytes);
            config(&bytes);
        }
    }
}

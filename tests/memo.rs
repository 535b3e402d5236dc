//! The request memo (`ATLAS_REQUEST_MEMO_BYTES`) against the real binary: a repeated request
//! is parsed once and answered exactly as before; the headers that change a request's meaning,
//! the caller and the body are all part of what is remembered; invalid and `use_context`
//! requests are never remembered; a caller never gets past the user check through another
//! caller's entry; and the memo turned off changes no answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use common::{Client, Response, Server};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn post(c: &mut Client, body: &str, headers: &str) -> Response {
    c.send(
        format!(
            "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn risk(user: &str, age: u32) -> String {
    format!(
        r#"{{"user_id":"{user}","input":{{"age":{age},"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}}}"#
    )
}

/// The memo section of shard 0 (the servers here have one shard).
fn memo(server: &Server) -> Value {
    server.connect().get("/health/detailed").json()["shards"][0]["request_memo"].clone()
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn cache(r: &Response) -> &str {
    r.header("X-Atlas-Cache").unwrap_or("")
}

/// Every header but the per-request timings.
fn stable_headers(r: &Response) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k != "date" && k != "x-atlas-total-ms"
        })
        .cloned()
        .collect();
    h.sort();
    h
}

#[test]
fn a_repeated_request_is_parsed_once_and_answered_as_before() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let body = risk("u-memo", 35);
    let first = post(&mut c, &body, "");
    assert_eq!((first.status, cache(&first)), (200, "miss"));
    let before = memo(&server);
    assert_eq!((n(&before, "entries"), n(&before, "hits")), (1, 0));
    let second = post(&mut c, &body, "");
    let third = post(&mut c, &body, "");
    assert_eq!((second.status, cache(&second)), (200, "hit"));
    assert_eq!(
        second.body, first.body,
        "a remembered request gets the same bytes"
    );
    assert_eq!(stable_headers(&second), stable_headers(&third));
    let after = memo(&server);
    assert_eq!((n(&after, "entries"), n(&after, "hits")), (1, 2));
    assert!(n(&after, "bytes") > body.len() as u64);
    assert!(n(&after, "bytes") <= n(&after, "max_bytes"));

    // The same input spelled differently is other bytes (a memo miss) but the same cache
    // entry (the canonical key): a hit with the same body.
    let respelled = body.replace(",", ", ").replace("20", "2e1");
    let r = post(&mut c, &respelled, "");
    assert_eq!((r.status, cache(&r)), (200, "hit"));
    assert_eq!(r.body, first.body);
    assert_eq!(n(&memo(&server), "entries"), 2);

    let metrics = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    assert!(
        metrics.contains("ai_request_memo_total{result=\"hit\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ai_request_memo_total{result=\"miss\"} 2"));
}

#[test]
fn headers_that_change_a_request_are_part_of_what_is_remembered() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let body = risk("u-headers", 40);
    assert_eq!(cache(&post(&mut c, &body, "")), "miss");
    assert_eq!(cache(&post(&mut c, &body, "")), "hit");
    // `no-store` on the same bytes must bypass the cache, not be served the remembered
    // default-mode request.
    let r = post(&mut c, &body, "Cache-Control: no-store\r\n");
    assert_eq!((r.status, cache(&r)), (200, "bypass"));
    let r = post(&mut c, &body, "Cache-Control: no-store\r\n");
    assert_eq!(cache(&r), "bypass");
    // A bad priority header is refused every time, however often the body was seen.
    for _ in 0..2 {
        let r = post(&mut c, &body, "X-Priority: urgent\r\n");
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("X-Priority"));
    }
    // A media type that is not JSON is refused even though the body was remembered as JSON.
    c.send(
        format!(
            "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).status, 415);
    let m = memo(&server);
    assert_eq!(
        n(&m, "entries"),
        2,
        "default and no-store remembered, errors not: {m}"
    );
}

#[test]
fn invalid_and_context_requests_are_never_remembered() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let bad = risk("u-bad", 7); // age under 18
    for _ in 0..3 {
        let r = post(&mut c, &bad, "");
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("input.age"));
    }
    assert_eq!(n(&memo(&server), "entries"), 0);

    // With `use_context` the input depends on the stored context at the time.
    let ctx = json!({"horizon_years": 5}).to_string();
    c.send(
        format!(
            "PUT /ai/context/u-ctx HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{ctx}",
            ctx.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).status, 200);
    let body = r#"{"user_id":"u-ctx","use_context":true,"input":{"age":35,"income_stability":4,"loss_tolerance":3,"experience":3}}"#;
    let first = post(&mut c, body, "");
    assert_eq!((first.status, cache(&first)), (200, "miss"));
    assert_eq!(cache(&post(&mut c, body, "")), "hit");
    // A new context changes the input: the same bytes now compute a new result.
    let ctx = json!({"horizon_years": 30}).to_string();
    c.send(
        format!(
            "PUT /ai/context/u-ctx HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{ctx}",
            ctx.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).status, 200);
    let changed = post(&mut c, body, "");
    assert_eq!((changed.status, cache(&changed)), (200, "miss"));
    assert_ne!(changed.body, first.body);
    assert_eq!(n(&memo(&server), "entries"), 0);
}

fn token(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn another_callers_remembered_request_never_passes_the_user_check() {
    let server = Server::start(&["--cores", "1"], &[("ATLAS_JWT_SECRET", SECRET)]);
    let mut c = server.connect();
    let body = risk("alice", 50);
    let alice = format!("Authorization: Bearer {}\r\n", token("alice"));
    let mallory = format!("Authorization: Bearer {}\r\n", token("mallory"));
    assert_eq!(post(&mut c, &body, &alice).status, 200);
    assert_eq!(cache(&post(&mut c, &body, &alice)), "hit");
    for _ in 0..2 {
        let r = post(&mut c, &body, &mallory);
        assert_eq!(
            (r.status, r.error_code()),
            (403, "user_mismatch".to_string())
        );
    }
    // Without a token, still 401.
    assert_eq!(post(&mut c, &body, "").status, 401);
    let m = memo(&server);
    assert_eq!(
        n(&m, "hits"),
        2,
        "alice once, mallory's own entry once: {m}"
    );
}

#[test]
fn with_the_memo_off_every_answer_is_the_same() {
    let on = Server::start(&["--cores", "1"], &[]);
    let off = Server::start(&["--cores", "1"], &[("ATLAS_REQUEST_MEMO_BYTES", "0")]);
    let (mut a, mut b) = (on.connect(), off.connect());
    for age in [30, 31, 30, 31, 30] {
        let body = risk("u-same", age);
        let (x, y) = (post(&mut a, &body, ""), post(&mut b, &body, ""));
        assert_eq!((x.status, cache(&x)), (y.status, cache(&y)));
        assert_eq!(x.body, y.body);
    }
    let m = memo(&off);
    assert_eq!((n(&m, "entries"), n(&m, "bytes"), n(&m, "hits")), (0, 0, 0));
    assert_eq!(n(&memo(&on), "hits"), 3);
}

//! Context memory against the real binary on two shards: `PUT|GET|DELETE
//! /ai/context/{user_id}`, versions, `use_context` merging into the input (and so into the
//! key), context changes invalidating the results that used it, TTL expiry and size limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::thread;
use std::time::Duration;

use common::{Client, Response, Server};
use serde_json::{json, Value};

fn send(c: &mut Client, method: &str, path: &str, body: &str) -> Response {
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(method == "HEAD")
}

fn put(c: &mut Client, user: &str, context: &Value) -> Response {
    send(
        c,
        "PUT",
        &format!("/ai/context/{user}"),
        &context.to_string(),
    )
}

fn risk(c: &mut Client, body: &Value) -> Response {
    send(c, "POST", "/ai/risk_assessment", &body.to_string())
}

fn ok(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn put_get_delete_with_versions() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let context = json!({"age": 41, "accounts": [{"name": "checking", "balance": 1200.5}]});
    let v = ok(&put(&mut c, "u-1", &context));
    assert_eq!(
        (
            &v["user_id"],
            &v["version"],
            &v["expires_in_s"],
            &v["removed"]
        ),
        (&json!("u-1"), &json!(1), &json!(3600), &json!(0))
    );
    assert_eq!(v["shards"].as_array().unwrap().len(), 2);
    assert_eq!(v["unreachable"], json!([]));

    // Read from a few connections (accepted on either shard): always the owner's copy.
    for _ in 0..4 {
        let v = ok(&server.connect().get("/ai/context/u-1"));
        assert_eq!(v["context"], context);
        assert_eq!((&v["user_id"], &v["version"]), (&json!("u-1"), &json!(1)));
        let left = v["expires_in_s"].as_u64().unwrap();
        assert!((3590..=3600).contains(&left), "{left}");
    }
    let head = send(&mut c, "HEAD", "/ai/context/u-1", "");
    assert_eq!(head.status, 200);

    let v = ok(&put(&mut c, "u-1", &json!({"age": 42})));
    assert_eq!(v["version"], 2);
    assert_eq!(ok(&c.get("/ai/context/u-1"))["context"], json!({"age": 42}));

    let v = ok(&send(&mut c, "DELETE", "/ai/context/u-1", ""));
    assert_eq!((&v["deleted"], &v["version"]), (&json!(true), &json!(2)));
    let r = c.get("/ai/context/u-1");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "context_not_found")
    );
    let v = ok(&send(&mut c, "DELETE", "/ai/context/u-1", ""));
    assert_eq!(
        (&v["deleted"], &v["version"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(
        ok(&put(&mut c, "u-1", &context))["version"],
        1,
        "a new context"
    );

    // User ids are percent-decoded from the path.
    ok(&put(&mut c, "a%20b%2Fc", &json!({"age": 50})));
    assert_eq!(ok(&c.get("/ai/context/a%20b%2Fc"))["user_id"], "a b/c");

    let long = "x".repeat(257);
    let cases = [
        (
            "PUT",
            "/ai/context/u-2".to_string(),
            "[1,2]",
            400,
            "invalid_request",
        ),
        (
            "PUT",
            "/ai/context/u-2".to_string(),
            "{oops",
            400,
            "invalid_json",
        ),
        (
            "PUT",
            format!("/ai/context/{long}"),
            "{}",
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/ai/context/%zz".to_string(),
            "",
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/ai/context/u-2".to_string(),
            "{}",
            405,
            "method_not_allowed",
        ),
        ("GET", "/ai/context/a/b".to_string(), "", 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let r = send(&mut c, method, &path, body);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{method} {path}"
        );
        assert_eq!(c.get("/health").status, 200, "usable after {method} {path}");
    }
}

fn risk_input(experience: u32) -> Value {
    json!({"age": 30, "horizon_years": 25, "income_stability": 4, "loss_tolerance": 4,
           "experience": experience})
}

#[test]
fn use_context_merges_into_the_input_and_context_changes_invalidate_its_results() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    // Fields of other operations (and unknown ones) are stored but not merged here.
    let context = json!({"age": 30, "horizon_years": 25, "income_stability": 4,
        "loss_tolerance": 4, "experience": 1, "monthly_income": 5000, "accounts": ["x"]});
    ok(&put(&mut c, "u-ctx", &context));

    // The request's own field wins over the context's.
    let with_context = |experience: Option<u32>| {
        let input = experience.map_or(json!({}), |e| json!({"experience": e}));
        json!({"user_id": "u-ctx", "use_context": true, "input": input})
    };
    let merged = risk(&mut c, &with_context(Some(5)));
    ok(&merged);
    assert_eq!(merged.header("X-Atlas-Cache"), Some("miss"));
    assert_eq!(merged.header("X-Atlas-Context-Version"), Some("1"));
    // The merged input is the key: the same full input sent without the context is a hit
    // on that entry, byte for byte.
    let full = risk(&mut c, &json!({"user_id": "u-ctx", "input": risk_input(5)}));
    assert_eq!(full.header("X-Atlas-Cache"), Some("hit"));
    assert_eq!(full.body, merged.body);
    // Without its own field, the context's value is used: another key, another result.
    let from_context = risk(&mut c, &json!({"user_id": "u-ctx", "use_context": true}));
    ok(&from_context);
    assert_eq!(from_context.header("X-Atlas-Cache"), Some("miss"));
    assert_ne!(from_context.body, merged.body, "experience 1, not 5");
    let same = risk(&mut c, &json!({"user_id": "u-ctx", "input": risk_input(1)}));
    assert_eq!(same.header("X-Atlas-Cache"), Some("hit"));
    // An unrelated result of the same user stays.
    let unrelated = json!({"user_id": "u-ctx", "input": risk_input(3)});
    assert_eq!(
        risk(&mut c, &unrelated).header("X-Atlas-Cache"),
        Some("miss")
    );

    // Updating the context removes the two results computed with it, on whichever shard.
    let v = ok(&put(
        &mut c,
        "u-ctx",
        &json!({"age": 60, "horizon_years": 5,
        "income_stability": 2, "loss_tolerance": 1, "experience": 1}),
    ));
    assert_eq!((&v["version"], &v["removed"]), (&json!(2), &json!(2)));
    assert_eq!(
        risk(&mut c, &unrelated).header("X-Atlas-Cache"),
        Some("hit")
    );
    let full = risk(&mut c, &json!({"user_id": "u-ctx", "input": risk_input(5)}));
    assert_eq!(full.header("X-Atlas-Cache"), Some("miss"));
    let updated = risk(&mut c, &with_context(Some(5)));
    assert_eq!(updated.header("X-Atlas-Cache"), Some("miss"));
    assert_eq!(updated.header("X-Atlas-Context-Version"), Some("2"));
    assert_ne!(updated.body, merged.body, "age 60 now");

    // Deleting it removes what was computed with it, and use_context then fails.
    let v = ok(&send(&mut c, "DELETE", "/ai/context/u-ctx", ""));
    assert_eq!(v["removed"], 1);
    let r = risk(&mut c, &with_context(Some(5)));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "context_not_found")
    );
    let r = risk(
        &mut c,
        &json!({"user_id": "u-none", "use_context": true, "input": {}}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "context_not_found")
    );
    // Without use_context the input is still required.
    let r = risk(&mut c, &json!({"user_id": "u-ctx"}));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    // A merged input is validated like any other; the request and the context each passed
    // their own checks, so what fails is their combination: 422.
    ok(&put(&mut c, "u-bad", &json!({"age": 7})));
    let r = risk(
        &mut c,
        &json!({"user_id": "u-bad", "use_context": true, "input": {
        "horizon_years": 5, "income_stability": 2, "loss_tolerance": 1, "experience": 1}}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (422, "inconsistent_input")
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("input.age"));
}

#[test]
fn contexts_expire_after_context_cache_ttl() {
    let server = Server::start(&["--cores", "2"], &[("CONTEXT_CACHE_TTL", "1")]);
    let mut c = server.connect();
    let v = ok(&put(&mut c, "u-ttl", &json!({"age": 30})));
    assert_eq!(v["expires_in_s"], 1);
    assert_eq!(ok(&c.get("/ai/context/u-ttl"))["version"], 1);
    thread::sleep(Duration::from_millis(1200));
    let r = c.get("/ai/context/u-ttl");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "context_not_found")
    );
    let r = risk(
        &mut c,
        &json!({"user_id": "u-ttl", "use_context": true, "input": {}}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "context_not_found")
    );
    assert_eq!(ok(&put(&mut c, "u-ttl", &json!({"age": 30})))["version"], 1);
}

#[test]
fn contexts_over_the_size_limit_are_refused_with_413() {
    let server = Server::start(&["--cores", "2"], &[("ATLAS_CONTEXT_MAX_BYTES", "1024")]);
    let mut c = server.connect();
    let big = json!({"notes": "n".repeat(1100)});
    let r = put(&mut c, "u-big", &big);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "context_too_large")
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1024"));
    assert_eq!(c.get("/health").status, 200, "the connection stays usable");
    let r = c.get("/ai/context/u-big");
    assert_eq!(r.status, 404, "nothing was stored");
    ok(&put(&mut c, "u-big", &json!({"notes": "n".repeat(900)})));

    let metrics = String::from_utf8(c.get("/metrics").body).unwrap();
    for line in [
        "ai_context_entries 1",
        "ai_context_operations_total{result=\"write\"} 1",
        "ai_context_operations_total{result=\"miss\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
}

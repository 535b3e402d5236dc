//! The AI operations end to end against the real binary: answers, caching per user, single
//! flight, batching, priorities, cache controls, bad input, owner routing, load shedding and
//! timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;

use common::{Client, Response, Server};
use serde_json::{json, Value};

fn post(c: &mut Client, op: &str, body: &Value, extra_headers: &str) -> Response {
    let text = body.to_string();
    c.send(
        format!(
            "POST /ai/{op} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn post_raw(c: &mut Client, op: &str, raw: &str) -> Response {
    c.send(
        format!(
            "POST /ai/{op} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{raw}",
            raw.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn portfolio(user: &str) -> Value {
    json!({"user_id": user, "input": {"holdings": [
        {"symbol": "AAPL", "weight": 0.6, "prices": [100, 102, 101, 105, 107, 106]},
        {"symbol": "MSFT", "weight": 0.4, "prices": [200, 198, 202, 204, 203, 207]}
    ]}})
}

/// Servers that take `heavy_portfolio` bodies (about 1.6 MB) need a larger body limit.
const BIG_BODIES: (&str, &str) = ("ATLAS_MAX_BODY_BYTES", "8388608");

/// A portfolio big enough that computing it takes a while (hundreds of ms in a debug build).
fn heavy_portfolio(user: &str, seed: usize) -> Value {
    sized_portfolio(user, seed, 60, 1500)
}

/// A portfolio of `n` holdings with `len` prices each, distinct per `seed`.
fn sized_portfolio(user: &str, seed: usize, n: usize, len: usize) -> Value {
    let holdings: Vec<Value> = (0..n)
        .map(|i| {
            let prices: Vec<f64> = (0..len)
                .map(|t| {
                    let t = t as f64;
                    100.0 + 10.0 * (t * 0.05 + (i + seed) as f64).sin() + t * 0.01 * (i % 5) as f64
                })
                .collect();
            json!({"symbol": format!("S{i}"), "weight": 1.0, "prices": prices})
        })
        .collect();
    json!({"user_id": user, "input": {"holdings": holdings}})
}

fn computations(server: &Server) -> u64 {
    let d = server.connect().get("/health/detailed").json();
    d["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["model_computations"].as_u64().unwrap())
        .sum()
}

#[test]
fn every_operation_answers_and_the_second_call_is_a_byte_identical_hit() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let cases = [
        ("portfolio_analysis", portfolio("u-1")),
        (
            "budget_optimization",
            json!({"user_id": "u-1", "input": {
                "monthly_income": 5000,
                "expenses": [{"category": "rent", "amount": 1500, "essential": true},
                             {"category": "dining", "amount": 600, "essential": false}],
                "debts": [{"name": "card", "balance": 3000, "apr": 0.2, "min_payment": 100}],
                "goals": [{"name": "car", "target": 6000, "current": 1000, "months": 24}]}}),
        ),
        (
            "risk_assessment",
            json!({"user_id": "u-1", "input": {"age": 35, "horizon_years": 20,
                "income_stability": 4, "loss_tolerance": 3, "experience": 3}}),
        ),
        (
            "cashflow_forecast",
            json!({"user_id": "u-1", "input": {"history": [100, 110, 120, 130, 140, 150, 160, 170], "horizon": 3}}),
        ),
    ];
    for (op, body) in &cases {
        let first = post(&mut c, op, body, "");
        assert_eq!(
            first.status,
            200,
            "{op}: {}",
            String::from_utf8_lossy(&first.body)
        );
        assert_eq!(first.header("X-Atlas-Cache"), Some("miss"), "{op}");
        assert_eq!(first.header("X-Atlas-Endpoint"), Some("embedded"));
        assert!(
            first
                .header("X-Atlas-Batch-Size")
                .unwrap()
                .parse::<usize>()
                .unwrap()
                >= 1
        );
        for h in [
            "X-Atlas-Total-Ms",
            "X-Atlas-Queue-Ms",
            "X-Atlas-Processing-Ms",
            "X-Atlas-Owner",
        ] {
            assert!(first.header(h).is_some(), "{op}: {h} missing");
        }
        let v = first.json();
        assert_eq!(v["operation"], *op);
        let confidence = v["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
        assert!(v["model_version"].as_str().is_some());

        let second = post(&mut c, op, body, "");
        assert_eq!(second.status, 200);
        assert_eq!(second.header("X-Atlas-Cache"), Some("hit"), "{op}");
        assert_eq!(
            second.body, first.body,
            "{op}: a hit serves the stored bytes"
        );
    }

    // Spot-check the answers themselves.
    let p = post(&mut c, "portfolio_analysis", &portfolio("u-1"), "").json();
    let w: f64 = p["result"]["max_sharpe_weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((w - 1.0).abs() < 1e-6, "max-Sharpe weights sum to 1: {w}");
    let f = post(&mut c, "cashflow_forecast", &cases[3].1, "").json();
    let forecast: Vec<f64> = f["result"]["forecast"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for (h, value) in forecast.iter().enumerate() {
        let expected = 180.0 + 10.0 * h as f64;
        assert!(
            (value - expected).abs() < 1.0,
            "a linear history continues: {forecast:?}"
        );
    }
}

#[test]
fn key_order_and_number_spelling_share_an_entry_but_users_never_do() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let a = r#"{"user_id":"u-1","input":{"history":[100,110,120,130],"horizon":2}}"#;
    let b = r#"{"input":{"horizon":2,"history":[1e2,110.0,120,130.00]},"user_id":"u-1"}"#;
    let other_user = r#"{"user_id":"u-2","input":{"history":[100,110,120,130],"horizon":2}}"#;
    let first = post_raw(&mut c, "cashflow_forecast", a);
    assert_eq!(first.header("X-Atlas-Cache"), Some("miss"));
    let same = post_raw(&mut c, "cashflow_forecast", b);
    assert_eq!(same.header("X-Atlas-Cache"), Some("hit"));
    let other = post_raw(&mut c, "cashflow_forecast", other_user);
    assert_eq!(
        other.header("X-Atlas-Cache"),
        Some("miss"),
        "another user's result is never served"
    );
}

#[test]
fn fifty_identical_concurrent_requests_compute_once() {
    // A request memo large enough for these 1.5 MB bodies: each shard parses the body once,
    // not 25 times (a debug build parses slowly, and the test must end well inside the
    // 10 s request timeout).
    let server = Server::start(
        &["--cores", "2"],
        &[BIG_BODIES, ("ATLAS_REQUEST_MEMO_BYTES", "67108864")],
    );
    let before = computations(&server);
    let body = heavy_portfolio("u-flight", 1);
    let barrier = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let mut c = server.connect();
            let body = body.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                post(&mut c, "portfolio_analysis", &body, "")
            })
        })
        .collect();
    let responses: Vec<Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first_body = &responses[0].body;
    for r in &responses {
        assert_eq!(r.status, 200);
        assert_eq!(&r.body, first_body);
    }
    assert_eq!(
        computations(&server) - before,
        1,
        "one computation for 50 identical requests"
    );
}

#[test]
fn distinct_concurrent_requests_form_batches() {
    let server = Server::start(&["--cores", "2"], &[BIG_BODIES]);
    let barrier = Arc::new(Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let mut c = server.connect();
            let body = sized_portfolio(&format!("u-{i}"), i, 12, 200);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                post(&mut c, "portfolio_analysis", &body, "")
            })
        })
        .collect();
    let sizes: Vec<usize> = handles
        .into_iter()
        .map(|h| {
            let r = h.join().unwrap();
            assert_eq!(r.status, 200);
            r.header("X-Atlas-Batch-Size").unwrap().parse().unwrap()
        })
        .collect();
    let max = *sizes.iter().max().unwrap();
    assert!(
        max > 1,
        "misses arriving together share model calls: {sizes:?}"
    );
    assert!(max <= 32, "BATCH_SIZE bounds a batch: {sizes:?}");
}

#[test]
fn high_priority_is_not_held_while_normal_waits() {
    // A long window, one shard: a normal request arriving while the endpoint is busy waits
    // for it; a high one is dispatched at once.
    let server = Server::start(
        &["--cores", "1"],
        &[("BATCH_TIMEOUT_MS", "5000"), BIG_BODIES],
    );
    let heavy = {
        let mut c = server.connect();
        thread::spawn(move || post(&mut c, "portfolio_analysis", &heavy_portfolio("u-h", 7), ""))
    };
    server.wait_in_flight(1);
    thread::sleep(std::time::Duration::from_millis(20));
    let risk = |user: &str| {
        json!({"user_id": user, "input": {"age": 40, "horizon_years": 10,
            "income_stability": 3, "loss_tolerance": 3, "experience": 3}})
    };
    let normal = {
        let mut c = server.connect();
        let body = risk("u-normal");
        thread::spawn(move || post(&mut c, "risk_assessment", &body, ""))
    };
    let mut c = server.connect();
    let high = post(
        &mut c,
        "risk_assessment",
        &risk("u-high"),
        "X-Priority: high\r\n",
    );
    let normal = normal.join().unwrap();
    let heavy = heavy.join().unwrap();
    assert_eq!((high.status, normal.status, heavy.status), (200, 200, 200));
    let q = |r: &Response| {
        r.header("X-Atlas-Queue-Ms")
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let heavy_ms: f64 = heavy
        .header("X-Atlas-Processing-Ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        q(&normal) > q(&high) * 4.0 && q(&high) < heavy_ms / 2.0,
        "high queued {} ms, normal {} ms, heavy batch {} ms",
        q(&high),
        q(&normal),
        heavy_ms
    );
}

#[test]
fn cache_controls() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let body = portfolio("u-cc");
    assert_eq!(
        post(&mut c, "portfolio_analysis", &body, "").header("X-Atlas-Cache"),
        Some("miss")
    );
    let mut no_store = body.clone();
    no_store["cache"] = json!({"mode": "no_store"});
    assert_eq!(
        post(&mut c, "portfolio_analysis", &no_store, "").header("X-Atlas-Cache"),
        Some("bypass")
    );
    assert_eq!(
        post(&mut c, "portfolio_analysis", &body, "").header("X-Atlas-Cache"),
        Some("hit")
    );
    let r = post(
        &mut c,
        "portfolio_analysis",
        &body,
        "Cache-Control: no-cache\r\n",
    );
    assert_eq!(r.header("X-Atlas-Cache"), Some("bypass"));
    let r = post(
        &mut c,
        "portfolio_analysis",
        &body,
        "Cache-Control: max-age=0\r\n",
    );
    assert_eq!(r.header("X-Atlas-Cache"), Some("bypass"));

    // no_store never writes: a fresh input sent with no_store stays uncached.
    let mut fresh = portfolio("u-cc2");
    fresh["cache"] = json!({"mode": "no_store"});
    assert_eq!(
        post(&mut c, "portfolio_analysis", &fresh, "").header("X-Atlas-Cache"),
        Some("bypass")
    );
    assert_eq!(
        post(&mut c, "portfolio_analysis", &portfolio("u-cc2"), "").header("X-Atlas-Cache"),
        Some("miss")
    );

    // ttl_s shortens the entry's life; past it, inside stale-while-revalidate, the old result
    // is served as `stale` while one refresh runs, and the refreshed result is then a hit.
    let mut short = portfolio("u-cc3");
    short["cache"] = json!({"ttl_s": 1});
    assert_eq!(
        post(&mut c, "portfolio_analysis", &short, "").header("X-Atlas-Cache"),
        Some("miss")
    );
    assert_eq!(
        post(&mut c, "portfolio_analysis", &short, "").header("X-Atlas-Cache"),
        Some("hit")
    );
    thread::sleep(std::time::Duration::from_millis(1300));
    let plain = portfolio("u-cc3");
    assert_eq!(
        post(&mut c, "portfolio_analysis", &plain, "").header("X-Atlas-Cache"),
        Some("stale")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = post(&mut c, "portfolio_analysis", &plain, "");
        if r.header("X-Atlas-Cache") == Some("hit") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never landed"
        );
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn bad_input_gets_its_status_and_the_connection_stays_usable() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("portfolio_analysis", "{not json".into(), 400, "invalid_json", ""),
        ("portfolio_analysis", r#"{"input":{}}"#.into(), 400, "invalid_request", "user_id"),
        ("portfolio_analysis", r#"{"user_id":"u","input":{},"extra":1}"#.into(), 400, "invalid_request", "extra"),
        (
            "portfolio_analysis",
            r#"{"user_id":"u","input":{"holdings":[{"symbol":"A","weight":1,"prices":[1,2,3]},{"symbol":"B","weight":1,"prices":"x"}]}}"#.into(),
            400,
            "invalid_request",
            "input.holdings[1].prices",
        ),
        ("cashflow_forecast", r#"{"user_id":"u","input":{"history":[1,2,3,4],"horizon":99}}"#.into(), 400, "invalid_request", "input.horizon"),
        ("risk_assessment", r#"{"user_id":"u","input":{},"priority":"urgent"}"#.into(), 400, "invalid_request", "priority"),
        ("astrology", r#"{"user_id":"u","input":{}}"#.into(), 404, "unknown_operation", "portfolio_analysis"),
        (
            "budget_optimization",
            r#"{"user_id":"u","input":{"monthly_income":3000,"expenses":[],"debts":[{"name":"a","balance":5000,"apr":0.2,"min_payment":300}],"goals":[],"debt_payment_budget":100}}"#.into(),
            422,
            "unprocessable_input",
            "",
        ),
    ];
    for (op, raw, status, code, mention) in cases {
        let r = post_raw(&mut c, op, &raw);
        assert_eq!(
            r.status,
            status,
            "{op} {raw}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), code, "{raw}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(mention),
            "{raw}: message {message:?} should mention {mention:?}"
        );
        assert_eq!(
            c.get("/health").status,
            200,
            "connection still usable after {raw}"
        );
    }
    let r = {
        c.send(b"POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Type: application/xml\r\nContent-Length: 2\r\n\r\n<a");
        c.read_response(false)
    };
    assert_eq!(r.status, 415);
    c.send(b"GET /ai/risk_assessment HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST")));
}

#[test]
fn requests_land_on_the_owner_shard_whichever_shard_accepted_them() {
    let server = Server::start(&["--cores", "2"], &[]);
    let body = portfolio("u-owner");
    let mut owners = HashSet::new();
    let mut accepted_by = HashSet::new();
    for i in 0..24 {
        let mut c = server.connect();
        let r = post(&mut c, "portfolio_analysis", &body, "");
        owners.insert(r.header("X-Atlas-Owner").unwrap().to_string());
        accepted_by.insert(r.header("X-Atlas-Shard").unwrap().to_string());
        if i > 0 {
            assert_eq!(r.header("X-Atlas-Cache"), Some("hit"));
        }
    }
    assert_eq!(owners.len(), 1, "one key, one owner");
    assert_eq!(accepted_by.len(), 2, "accepted on both shards");
    let mut spread = HashSet::new();
    let mut c = server.connect();
    for i in 0..24 {
        let r = post(
            &mut c,
            "portfolio_analysis",
            &portfolio(&format!("u-{i}")),
            "",
        );
        spread.insert(r.header("X-Atlas-Owner").unwrap().to_string());
    }
    assert_eq!(spread.len(), 2, "keys spread over both owners");
}

#[test]
fn overload_sheds_with_retry_after_and_slow_requests_time_out() {
    let server = Server::start(
        &["--cores", "1"],
        &[("MAX_CONCURRENT_REQUESTS", "1"), BIG_BODIES],
    );
    let heavy = {
        let mut c = server.connect();
        thread::spawn(move || post(&mut c, "portfolio_analysis", &heavy_portfolio("u-o", 3), ""))
    };
    server.wait_in_flight(1);
    let mut c = server.connect();
    let r = post(&mut c, "portfolio_analysis", &portfolio("u-o2"), "");
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "overloaded");
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(c.get("/health").status, 200, "health checks are never shed");
    assert_eq!(heavy.join().unwrap().status, 200);

    let server = Server::start(
        &["--cores", "1"],
        &[("REQUEST_TIMEOUT_MS", "20"), BIG_BODIES],
    );
    let mut c = server.connect();
    let r = post(&mut c, "portfolio_analysis", &heavy_portfolio("u-t", 4), "");
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "timeout");
}

#[test]
fn openapi_document_is_served() {
    let server = Server::start(&["--cores", "1"], &[]);
    let doc = server.connect().get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    for op in [
        "portfolio_analysis",
        "budget_optimization",
        "risk_assessment",
        "cashflow_forecast",
    ] {
        assert!(
            doc["paths"][format!("/ai/{op}")]["post"].is_object(),
            "documents /ai/{op}"
        );
    }
}

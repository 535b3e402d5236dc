//! Cache invalidation against the real binary on two shards: `POST /ai/cache/invalidate` by
//! tag, symbol, user, operation, key and everything, `POST /ai/events`, bad requests, the
//! dependencies a request declares surviving a hit or a shared computation, and the metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::thread;

use common::{Client, Response, Server};
use serde_json::{json, Value};

fn post(c: &mut Client, path: &str, body: &Value) -> Response {
    post_raw(c, path, &body.to_string())
}

fn post_raw(c: &mut Client, path: &str, text: &str) -> Response {
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

/// One cached result: the operation and the request body that computes it.
#[derive(Clone)]
struct Entry {
    op: &'static str,
    body: Value,
}

fn risk(user: &str, deps: &[&str]) -> Entry {
    Entry {
        op: "risk_assessment",
        body: json!({"user_id": user, "dependencies": deps, "input": {"age": 35,
            "horizon_years": 20, "income_stability": 4, "loss_tolerance": 3, "experience": 3}}),
    }
}

fn portfolio(user: &str, symbols: &[&str]) -> Entry {
    let holdings: Vec<Value> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let base = 100.0 + 10.0 * i as f64;
            json!({"symbol": s, "weight": 1.0,
                   "prices": [base, base + 2.0, base + 1.0, base + 5.0, base + 4.0]})
        })
        .collect();
    Entry {
        op: "portfolio_analysis",
        body: json!({"user_id": user, "input": {"holdings": holdings}}),
    }
}

fn cashflow(user: &str) -> Entry {
    Entry {
        op: "cashflow_forecast",
        body: json!({"user_id": user, "input": {"history": [100, 110, 120, 130, 140], "horizon": 2}}),
    }
}

fn budget(user: &str) -> Entry {
    Entry {
        op: "budget_optimization",
        body: json!({"user_id": user, "input": {"monthly_income": 4000,
            "expenses": [{"category": "rent", "amount": 1200, "essential": true}]}}),
    }
}

/// Sends every entry's request and returns each answer's `X-Atlas-Cache` and owner shard.
/// Afterwards every entry is cached again (a miss recomputes and stores).
fn states(c: &mut Client, entries: &[Entry]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            let r = post(c, &format!("/ai/{}", e.op), &e.body);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            (
                r.header("X-Atlas-Cache").unwrap().to_string(),
                r.header("X-Atlas-Owner").unwrap().to_string(),
            )
        })
        .collect()
}

/// Which entries are now misses (they were removed).
fn missed(c: &mut Client, entries: &[Entry]) -> Vec<usize> {
    states(c, entries)
        .iter()
        .enumerate()
        .filter(|(_, (cache, _))| cache == "miss")
        .map(|(i, _)| i)
        .collect()
}

/// Posts an invalidation, checks the answer's shape, returns it.
fn invalidate(c: &mut Client, body: Value, shards: usize) -> Value {
    let r = post(c, "/ai/cache/invalidate", &body);
    assert_eq!(
        r.status,
        200,
        "{body}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    let per_shard: Vec<u64> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(per_shard.len(), shards, "{v}");
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        v["removed"].as_u64().unwrap()
    );
    assert_eq!(v["unreachable"], json!([]));
    v
}

#[test]
fn each_selector_removes_exactly_its_entries_on_every_shard() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let mut entries = vec![
        risk("u-a", &["dep:x"]),             // 0
        risk("u-b", &["dep:y"]),             // 1
        portfolio("u-c", &["AAPL", "MSFT"]), // 2
        portfolio("u-d", &["TSLA"]),         // 3
        cashflow("u-a"),                     // 4
        budget("u-e"),                       // 5
        risk("u-f", &["dep:x", "dep:z"]),    // 6
        portfolio("u-g", &["MSFT"]),         // 7
    ];
    // More users, so that both shards own entries.
    for i in 0..8 {
        entries.push(budget(&format!("u-spread-{i}")));
    }
    let first = states(&mut c, &entries);
    assert!(first.iter().all(|(cache, _)| cache == "miss"));
    let owners: HashSet<&str> = first.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(owners.len(), 2, "entries live on both shards");
    assert!(missed(&mut c, &entries).is_empty(), "all cached");

    let v = invalidate(&mut c, json!({"dependencies": ["dep:x"]}), 2);
    assert_eq!(v["removed"], 2);
    assert_eq!(missed(&mut c, &entries), [0, 6]);

    let v = invalidate(&mut c, json!({"symbols": ["MSFT"]}), 2);
    assert_eq!(v["removed"], 2);
    assert_eq!(missed(&mut c, &entries), [2, 7]);

    let v = invalidate(&mut c, json!({"user_id": "u-a"}), 2);
    assert_eq!(v["removed"], 2);
    assert_eq!(missed(&mut c, &entries), [0, 4]);

    let v = invalidate(&mut c, json!({"operation": "portfolio_analysis"}), 2);
    assert_eq!(v["removed"], 3);
    assert_eq!(missed(&mut c, &entries), [2, 3, 7]);

    // A key is named like the request that computed it; key order and number spelling do
    // not matter, and only its owner shard is asked.
    let key = json!({"operation": "risk_assessment", "user_id": "u-b", "input": {
        "experience": 3.0, "loss_tolerance": 3, "income_stability": 4e0,
        "horizon_years": 20, "age": 35}});
    let v = invalidate(&mut c, json!({"keys": [key]}), 2);
    assert_eq!(v["removed"], 1);
    let owner: usize = first[1].1.parse().unwrap();
    assert_eq!(v["shards"][owner], 1, "{v}");
    assert_eq!(v["shards"][1 - owner], 0, "{v}");
    assert_eq!(missed(&mut c, &entries), [1]);
    // Another user's identical input is another key.
    let other = json!({"operation": "risk_assessment", "user_id": "u-nobody",
        "input": entries[1].body["input"].clone()});
    assert_eq!(
        invalidate(&mut c, json!({"keys": [other]}), 2)["removed"],
        0
    );

    // Selectors add up; an entry selected twice counts once.
    let v = invalidate(
        &mut c,
        json!({"dependencies": ["dep:z"], "user_id": "u-f", "symbols": ["TSLA"]}),
        2,
    );
    assert_eq!(v["removed"], 2);
    assert_eq!(missed(&mut c, &entries), [3, 6]);

    let v = invalidate(&mut c, json!({"all": true}), 2);
    assert_eq!(v["removed"], entries.len() as u64);
    assert!(v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n.as_u64() > Some(0)));
    assert_eq!(missed(&mut c, &entries).len(), entries.len());

    let metrics = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    for line in [
        "ai_invalidations_total{kind=\"tag\"} 2",
        "ai_invalidations_total{kind=\"key\"} 2",
        "ai_invalidations_total{kind=\"all\"} 1",
        "ai_invalidated_entries_total{kind=\"tag\"} 3",
        "ai_invalidated_entries_total{kind=\"symbol\"} 3",
        "ai_invalidated_entries_total{kind=\"user\"} 2",
        "ai_invalidated_entries_total{kind=\"operation\"} 3",
        "ai_invalidated_entries_total{kind=\"key\"} 1",
        "ai_invalidated_entries_total{kind=\"all\"} 16",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
}

/// Servers that take `heavy_portfolio` bodies (about 1.6 MB) need a larger body limit.
const BIG_BODIES: (&str, &str) = ("ATLAS_MAX_BODY_BYTES", "8388608");

/// A portfolio whose analysis takes hundreds of milliseconds in a debug build.
fn heavy_portfolio(user: &str, deps: &[&str]) -> Value {
    let holdings: Vec<Value> = (0..60)
        .map(|i| {
            let prices: Vec<f64> = (0..1500)
                .map(|t| {
                    let t = t as f64;
                    100.0 + 10.0 * (t * 0.05 + i as f64).sin() + t * 0.01 * (i % 5) as f64
                })
                .collect();
            json!({"symbol": format!("S{i}"), "weight": 1.0, "prices": prices})
        })
        .collect();
    json!({"user_id": user, "dependencies": deps, "input": {"holdings": holdings}})
}

#[test]
fn dependencies_declared_by_a_hit_or_a_waiting_request_are_kept() {
    let server = Server::start(&["--cores", "2"], &[BIG_BODIES]);
    let mut c = server.connect();

    // Served from an entry another request computed without the tag.
    let plain = risk("u-hit", &[]);
    let tagged = risk("u-hit", &["late:tag"]);
    assert_eq!(states(&mut c, std::slice::from_ref(&plain))[0].0, "miss");
    assert_eq!(states(&mut c, &[tagged])[0].0, "hit");
    assert_eq!(
        invalidate(&mut c, json!({"dependencies": ["late:tag"]}), 2)["removed"],
        1
    );
    assert_eq!(states(&mut c, &[plain])[0].0, "miss");

    // Waiting on a computation a request without the tag started.
    let leader = {
        let mut c = server.connect();
        thread::spawn(move || {
            post(
                &mut c,
                "/ai/portfolio_analysis",
                &heavy_portfolio("u-flight", &[]),
            )
        })
    };
    server.wait_in_flight(1);
    let follower = post(
        &mut c,
        "/ai/portfolio_analysis",
        &heavy_portfolio("u-flight", &["follower:tag"]),
    );
    let leader = leader.join().unwrap();
    assert_eq!((leader.status, follower.status), (200, 200));
    assert_eq!(follower.header("X-Atlas-Cache"), Some("miss"), "shared");
    assert_eq!(follower.body, leader.body);
    assert_eq!(
        invalidate(&mut c, json!({"dependencies": ["follower:tag"]}), 2)["removed"],
        1
    );
    let again = post(
        &mut c,
        "/ai/portfolio_analysis",
        &heavy_portfolio("u-flight", &[]),
    );
    assert_eq!(again.header("X-Atlas-Cache"), Some("miss"));

    // An invalidation that runs while a result it names is being computed keeps that result
    // out of the cache: the computation read its input before the invalidation.
    let computing = {
        let mut c = server.connect();
        thread::spawn(move || {
            post(
                &mut c,
                "/ai/portfolio_analysis",
                &heavy_portfolio("u-race", &[]),
            )
        })
    };
    server.wait_in_flight(1);
    let v = invalidate(&mut c, json!({"user_id": "u-race"}), 2);
    assert_eq!(v["removed"], 0, "nothing stored yet");
    let computed = computing.join().unwrap();
    assert_eq!(computed.header("X-Atlas-Cache"), Some("miss"));
    let after = post(
        &mut c,
        "/ai/portfolio_analysis",
        &heavy_portfolio("u-race", &[]),
    );
    assert_eq!(after.header("X-Atlas-Cache"), Some("miss"), "not stored");
    let last = post(
        &mut c,
        "/ai/portfolio_analysis",
        &heavy_portfolio("u-race", &[]),
    );
    assert_eq!(
        last.header("X-Atlas-Cache"),
        Some("hit"),
        "stored as usual after"
    );
}

#[test]
fn events_invalidate_symbols_users_and_configured_tags() {
    let server = Server::start(
        &["--cores", "2"],
        &[(
            "ATLAS_EVENT_TAGS",
            "interest_rate_change=market:rates|macro",
        )],
    );
    let mut c = server.connect();
    let entries = [
        portfolio("u-1", &["AAPL", "MSFT"]), // 0
        portfolio("u-2", &["TSLA"]),         // 1
        risk("u-3", &["macro"]),             // 2
        risk("u-4", &["other"]),             // 3
        budget("u-5"),                       // 4
        budget("u-6"),                       // 5
        risk("u-7", &["market:rates"]),      // 6
    ];
    states(&mut c, &entries);
    let event = |c: &mut Client, body: Value| {
        let r = post(c, "/ai/events", &body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["event"], body["type"]);
        assert_eq!(v["shards"].as_array().unwrap().len(), 2);
        assert_eq!(v["unreachable"], json!([]));
        v["removed"].as_u64().unwrap()
    };
    assert_eq!(
        event(
            &mut c,
            json!({"type": "market_data_update", "symbols": ["AAPL"]})
        ),
        1
    );
    assert_eq!(missed(&mut c, &entries), [0]);
    assert_eq!(
        event(
            &mut c,
            json!({"type": "user_profile_update", "user_id": "u-5"})
        ),
        1
    );
    assert_eq!(missed(&mut c, &entries), [4]);
    assert_eq!(event(&mut c, json!({"type": "interest_rate_change"})), 2);
    assert_eq!(missed(&mut c, &entries), [2, 6]);

    let r = post(&mut c, "/ai/events", &json!({"type": "solar_flare"}));
    assert_eq!((r.status, r.error_code().as_str()), (400, "unknown_event"));
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    for known in [
        "market_data_update",
        "user_profile_update",
        "interest_rate_change",
    ] {
        assert!(message.contains(known), "{message}");
    }
    let r = post(&mut c, "/ai/events", &json!({"type": "market_data_update"}));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    assert!(
        missed(&mut c, &entries).is_empty(),
        "refused events remove nothing"
    );

    let metrics = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    for line in [
        "ai_events_total{type=\"interest_rate_change\"} 1",
        "ai_events_total{type=\"market_data_update\"} 1",
        "ai_events_total{type=\"user_profile_update\"} 1",
        "ai_invalidations_total{kind=\"symbol\"} 1",
        "ai_invalidated_entries_total{kind=\"tag\"} 2",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
}

#[test]
fn bad_invalidation_requests_are_refused_and_the_connection_stays_usable() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let cases: [(&str, &str, u16, &str, &str); 10] = [
        ("/ai/cache/invalidate", "{not json", 400, "invalid_json", ""),
        (
            "/ai/cache/invalidate",
            "{}",
            400,
            "empty_invalidation",
            "dependencies",
        ),
        (
            "/ai/cache/invalidate",
            r#"{"all":false}"#,
            400,
            "empty_invalidation",
            "",
        ),
        (
            "/ai/cache/invalidate",
            r#"{"tags":["x"]}"#,
            400,
            "invalid_request",
            "tags",
        ),
        (
            "/ai/cache/invalidate",
            r#"{"dependencies":"x"}"#,
            400,
            "invalid_request",
            "dependencies",
        ),
        (
            "/ai/cache/invalidate",
            r#"{"all":true,"user_id":"u"}"#,
            400,
            "invalid_request",
            "all",
        ),
        (
            "/ai/cache/invalidate",
            r#"{"operation":"astrology"}"#,
            400,
            "invalid_request",
            "portfolio_analysis",
        ),
        (
            "/ai/cache/invalidate",
            r#"{"keys":[{"operation":"risk_assessment","user_id":"u"}]}"#,
            400,
            "invalid_request",
            "input",
        ),
        (
            "/ai/cache/invalidate",
            r#"{"user_id":""}"#,
            400,
            "invalid_request",
            "user_id",
        ),
        (
            "/ai/events",
            r#"{"type":"user_profile_update","symbols":["A"]}"#,
            400,
            "invalid_request",
            "symbols",
        ),
    ];
    for (path, raw, status, code, mention) in cases {
        let r = post_raw(&mut c, path, raw);
        assert_eq!(
            r.status,
            status,
            "{raw}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), code, "{raw}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(mention),
            "{raw}: {message:?} should mention {mention:?}"
        );
        assert_eq!(c.get("/health").status, 200, "usable after {raw}");
    }
    for path in ["/ai/cache/invalidate", "/ai/events"] {
        let r = c.get(path);
        assert_eq!((r.status, r.header("Allow")), (405, Some("POST")), "{path}");
    }
    c.send(b"POST /ai/events HTTP/1.1\r\nHost: t\r\nContent-Type: text/xml\r\nContent-Length: 2\r\n\r\n<a");
    assert_eq!(c.read_response(false).status, 415);

    let doc = c.get("/openapi.json").json();
    for (path, method) in [
        ("/ai/cache/invalidate", "post"),
        ("/ai/events", "post"),
        ("/ai/context/{user_id}", "put"),
        ("/ai/context/{user_id}", "get"),
        ("/ai/context/{user_id}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
}

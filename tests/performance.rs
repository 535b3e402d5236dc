//! `GET /ai/admin/performance`, `GET /health/detailed` and the alert webhook of the real
//! binary: both documents match the JSON Schemas in `monitoring/schemas/`, the performance
//! figures agree with the traffic sent, and a slow model tier makes the webhook receive the
//! response-time alert firing and then resolving (after a failed first try is retried).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Client, Server};

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/monitoring/schemas");

fn validate(schema_file: &str, doc: &Value) {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{SCHEMAS}/{schema_file}")).unwrap())
            .unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:#?}\n{doc:#}");
}

fn post(c: &mut Client, op: &str, body: &str) -> u16 {
    c.send(
        format!(
            "POST /ai/{op} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false).status
}

fn risk(user: &str) -> String {
    format!(
        r#"{{"user_id":"{user}","input":{{"age":35,"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}}}"#
    )
}

fn budget(user: &str, income: u32) -> String {
    format!(
        r#"{{"user_id":"{user}","input":{{"monthly_income":{income},"expenses":[{{"category":"rent","amount":1500,"essential":true}},{{"category":"dining","amount":400,"essential":false}}],"debts":[],"goals":[]}}}}"#
    )
}

/// Polls the performance document until `ready` holds for it.
fn performance_until(server: &Server, limit: Duration, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let r = server.connect().get("/ai/admin/performance");
        assert_eq!(r.status, 200);
        let doc = r.json();
        if ready(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "never ready: {doc:#}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn documents_match_their_schemas_and_count_what_was_sent() {
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_MONITOR_INTERVAL_S", "1"),
            ("ATLAS_ADAPTIVE_THRESHOLDS", "true"),
        ],
    );
    // Before any window: valid, with nulls where nothing was measured.
    let empty = server.connect().get("/ai/admin/performance").json();
    validate("performance.schema.json", &empty);

    let mut c = server.connect();
    // risk: 5 distinct users, each asked 4 times (5 misses, 15 hits); budget: 6 misses; 2 bad.
    for round in 0..4 {
        for u in 0..5 {
            assert_eq!(
                post(&mut c, "risk_assessment", &risk(&format!("p-{u}"))),
                200
            );
        }
        if round == 0 {
            for u in 0..6 {
                assert_eq!(
                    post(
                        &mut c,
                        "budget_optimization",
                        &budget(&format!("b-{u}"), 5000 + u)
                    ),
                    200
                );
            }
        }
    }
    assert_eq!(post(&mut c, "risk_assessment", "{broken"), 400);
    assert_eq!(post(&mut c, "risk_assessment", "{broken"), 400);

    let doc = performance_until(&server, Duration::from_secs(10), |d| {
        d["recent"]["totals"]["requests"] == 28
    });
    validate("performance.schema.json", &doc);
    let risk = &doc["recent"]["operations"]["risk_assessment"];
    assert_eq!(risk["requests"], 22);
    assert_eq!(risk["errors"], 0, "400s are not errors");
    assert_eq!(risk["cache_hit_rate"], 0.75);
    assert_eq!(risk["model_answers"], 5);
    assert!(risk["mean_batch_size"].as_f64().unwrap() >= 1.0);
    let p50 = risk["p50_ms"].as_f64().unwrap();
    let p99 = risk["p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{risk}");
    let budget = &doc["recent"]["operations"]["budget_optimization"];
    assert_eq!(
        (budget["requests"].clone(), budget["cache_hit_rate"].clone()),
        (6.into(), 0.0.into())
    );
    assert!(doc["recent"]["operations"]["cashflow_forecast"]["p95_ms"].is_null());
    assert_eq!(doc["adaptive"]["enabled"], true);
    assert_eq!(doc["health"]["components"]["errors"], 0.0);
    assert!(!doc["series"].as_array().unwrap().is_empty());

    let detailed = server.connect().get("/health/detailed").json();
    validate("health-detailed.schema.json", &detailed);
    assert_eq!(detailed["limits"]["shards"], 2);
    assert!(detailed["uptime_s"].as_f64().unwrap() > 0.0);

    // HEAD works, other methods are refused.
    let mut c = server.connect();
    c.send(b"POST /ai/admin/performance HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
}

/// A webhook receiver: records every POST body; answers 500 to the very first request and
/// 200 afterwards (so the first change is delivered on its second try).
/// The receiver's URL, the bodies it accepted, and how many requests it saw.
type Receiver = (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<u32>>);

fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/atlas", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0u32));
    let (b, a) = (Arc::clone(&bodies), Arc::clone(&attempts));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            // One connection may carry several requests (keep-alive).
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                assert!(line.starts_with("POST /hooks/atlas HTTP/1.1"), "{line}");
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let n = {
                    let mut n = a.lock().unwrap();
                    *n += 1;
                    *n
                };
                let status = if n == 1 {
                    "500 Internal Server Error"
                } else {
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    "200 OK"
                };
                let out = reader.get_mut();
                let _ = write!(out, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    (url, bodies, attempts)
}

#[test]
fn the_webhook_receives_fire_and_resolve_and_history_keeps_them() {
    let (hook, bodies, attempts) = receiver();
    let slow =
        Server::model_endpoint(&["--cores", "1", "--latency-ms", "400", "--concurrency", "16"]);
    let endpoints = format!("slow={};concurrency=16", slow.url());
    let server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_EMBEDDED", "false"),
            ("ATLAS_ENDPOINTS", endpoints.as_str()),
            ("ATLAS_MONITOR_INTERVAL_S", "1"),
            ("ATLAS_ALERT_FOR_WINDOWS", "1"),
            ("ALERT_RESPONSE_TIME_MS", "100"),
            ("ATLAS_ALERT_WEBHOOK", hook.as_str()),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let mut c = server.connect();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(
                        post(&mut c, "risk_assessment", &risk(&format!("w-{t}-{i}"))),
                        200
                    );
                    i += 1;
                }
            })
        })
        .collect();
    let firing = |b: &Value| b["alert"] == "response_time" && b["status"] == "firing";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bodies.lock().unwrap().iter().any(firing) {
        assert!(Instant::now() < deadline, "no firing notification");
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }
    let resolved = |b: &Value| b["alert"] == "response_time" && b["status"] == "resolved";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bodies.lock().unwrap().iter().any(resolved) {
        assert!(Instant::now() < deadline, "no resolved notification");
        thread::sleep(Duration::from_millis(100));
    }
    let got = bodies.lock().unwrap().clone();
    let fire = got.iter().find(|b| firing(b)).unwrap();
    assert_eq!(fire["source"], "atlas");
    assert!(
        fire["value"].as_f64().unwrap() > 0.075,
        "p95 above the warning: {fire}"
    );
    assert!(fire["instance"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", server.addr.port())));
    assert!(
        *attempts.lock().unwrap() > got.len() as u32,
        "the refused first try was retried"
    );

    let doc = performance_until(&server, Duration::from_secs(5), |d| {
        d["alerts"]["notifications"]["delivered"].as_u64() >= Some(2)
    });
    validate("performance.schema.json", &doc);
    let history = doc["alerts"]["history"].as_array().unwrap();
    assert!(history
        .iter()
        .any(|e| e["alert"] == "response_time" && e["status"] == "firing"));
    assert!(history
        .iter()
        .any(|e| e["alert"] == "response_time" && e["status"] == "resolved"));
    assert_eq!(doc["alerts"]["notifications"]["failed"], 0);
    let p95 = doc["recent"]["totals"]["p95_ms"].as_f64().unwrap();
    assert!(p95 > 300.0, "the model takes 400 ms: {p95}");
}

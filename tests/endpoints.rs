//! The model-endpoint tier with real processes: `atlas serve` routing to two or three
//! `atlas model-endpoint` processes on port 0 — weighted response-time routing, failover,
//! breakers, hangs, everything down, recovery, and the batch protocol itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Response, Server};
use serde_json::{json, Value};

fn risk(user: &str, age: u32) -> Value {
    json!({"user_id": user, "input": {"age": age, "horizon_years": 20,
        "income_stability": 4, "loss_tolerance": 3, "experience": 3}})
}

fn post(c: &mut Client, op: &str, body: &Value) -> Response {
    let text = body.to_string();
    c.send(
        format!(
            "POST /ai/{op} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn gateway(endpoints: &[(&str, &Server, &str)], extra: &[(&str, &str)]) -> Server {
    let spec: Vec<String> = endpoints
        .iter()
        .map(|(name, s, opts)| format!("{name}={}{opts}", s.url()))
        .collect();
    let spec = spec.join(",");
    let mut env: Vec<(&str, &str)> = vec![
        ("ATLAS_EMBEDDED", "false"),
        ("ATLAS_ENDPOINTS", spec.as_str()),
        ("ATLAS_HEALTH_INTERVAL_S", "1"),
    ];
    env.extend_from_slice(extra);
    Server::start(&["--cores", "1"], &env)
}

/// Sends `n` distinct requests from `threads` concurrent clients; returns the responses.
fn load(server: &Server, n: usize, threads: usize, tag: &str) -> Vec<Response> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut c = server.connect();
            let barrier = Arc::clone(&barrier);
            let tag = tag.to_string();
            thread::spawn(move || {
                barrier.wait();
                (t..n)
                    .step_by(threads)
                    .map(|i| post(&mut c, "risk_assessment", &risk(&format!("{tag}-{i}"), 30)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn by_endpoint(responses: &[Response]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in responses {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        *counts
            .entry(r.header("X-Atlas-Endpoint").unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn endpoint_view(server: &Server, name: &str) -> Value {
    let d = server.connect().get("/health/detailed").json();
    d["shards"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn batch_protocol_answers_each_item_and_a_bad_item_fails_alone() {
    let m = Server::model_endpoint(&["--cores", "1", "--id", "solo"]);
    let mut c = m.connect();
    let body = json!({"operation": "risk_assessment", "inputs": [
        {"age": 35, "horizon_years": 20, "income_stability": 4, "loss_tolerance": 3, "experience": 3},
        {"age": 35, "horizon_years": 20, "income_stability": 9, "loss_tolerance": 3, "experience": 3}
    ]})
    .to_string();
    c.send(
        format!(
            "POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["endpoint_id"], "solo");
    let outputs = v["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert!(outputs[0]["result"]["risk_score"].is_number());
    assert_eq!(outputs[1]["error"]["code"], "invalid_request");
    let info = c.get("/v1/info").json();
    assert_eq!(info["operations"].as_array().unwrap().len(), 4);
    assert_eq!(c.get("/health").status, 200);
}

#[test]
fn heavier_and_faster_endpoints_get_more_traffic() {
    let heavy =
        Server::model_endpoint(&["--cores", "1", "--latency-ms", "15", "--concurrency", "8"]);
    let light =
        Server::model_endpoint(&["--cores", "1", "--latency-ms", "15", "--concurrency", "8"]);
    let gw = gateway(
        &[
            ("heavy", &heavy, ";weight=4"),
            ("light", &light, ";weight=1"),
        ],
        &[("BATCH_SIZE", "1")],
    );
    let counts = by_endpoint(&load(&gw, 240, 16, "w"));
    let (h, l) = (
        counts.get("heavy").copied().unwrap_or(0),
        counts.get("light").copied().unwrap_or(0),
    );
    assert!(h > 2 * l, "weight 4 vs 1: {counts:?}");

    let fast = Server::model_endpoint(&["--cores", "1", "--latency-ms", "2", "--concurrency", "8"]);
    let slow =
        Server::model_endpoint(&["--cores", "1", "--latency-ms", "120", "--concurrency", "8"]);
    let gw = gateway(
        &[("fast", &fast, ""), ("slow", &slow, "")],
        &[("BATCH_SIZE", "1")],
    );
    let counts = by_endpoint(&load(&gw, 360, 16, "s"));
    let (f, s) = (
        counts.get("fast").copied().unwrap_or(0),
        counts.get("slow").copied().unwrap_or(0),
    );
    // Until its first answer returns, the slow endpoint looks like any new one (the 50 ms
    // prior), so it takes some early traffic; after that its peak-EWMA keeps it away.
    assert!(
        f > 2 * s,
        "the slow endpoint gets a small share: {counts:?}"
    );
}

#[test]
fn a_failing_endpoint_is_ejected_without_client_errors() {
    let good = Server::model_endpoint(&["--cores", "1"]);
    let bad = Server::model_endpoint(&["--cores", "1", "--fail-rate", "1"]);
    let gw = gateway(&[("good", &good, ""), ("bad", &bad, "")], &[]);
    let counts = by_endpoint(&load(&gw, 80, 4, "f"));
    assert_eq!(
        counts.get("good"),
        Some(&80),
        "every request answered by failover: {counts:?}"
    );
    // Ejected: each failure costs it a penalty latency, so it is rarely chosen again (the
    // breaker would open after 5 consecutive failures if it were).
    let view = endpoint_view(&gw, "bad");
    assert_eq!(view["errors"], view["calls"], "{view}");
    assert!(
        view["calls"].as_u64().unwrap() <= 5,
        "ejected quickly: {view}"
    );
}

#[test]
fn a_hanging_endpoint_costs_at_most_one_timeout_per_request() {
    let good = Server::model_endpoint(&["--cores", "1"]);
    let hung = Server::model_endpoint(&["--cores", "1", "--hang-rate", "1"]);
    let gw = gateway(
        &[
            ("good", &good, ";weight=1"),
            ("hung", &hung, ";timeout_ms=300;weight=5"),
        ],
        &[("REQUEST_TIMEOUT_MS", "3000")],
    );
    let mut c = gw.connect();
    for i in 0..12 {
        let start = Instant::now();
        let r = post(&mut c, "risk_assessment", &risk(&format!("h-{i}"), 40));
        let took = start.elapsed();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("X-Atlas-Endpoint"), Some("good"));
        assert!(
            took < Duration::from_millis(1500),
            "request {i} took {took:?}"
        );
    }
    // The timeout is charged as its latency: the hung endpoint is avoided after it.
    let view = endpoint_view(&gw, "hung");
    assert!(view["calls"].as_u64().unwrap() <= 3, "{view}");
    assert_eq!(view["errors"], view["calls"]);
}

#[test]
fn with_every_endpoint_down_cached_keys_are_served_stale_and_others_get_503() {
    let only = Server::model_endpoint(&["--cores", "1"]);
    let gw = gateway(&[("only", &only, ";timeout_ms=500")], &[]);
    let mut c = gw.connect();
    let mut cached = risk("u-down", 50);
    cached["cache"] = json!({"ttl_s": 1});
    assert_eq!(
        post(&mut c, "risk_assessment", &cached).header("X-Atlas-Cache"),
        Some("miss")
    );
    drop(only);
    thread::sleep(Duration::from_millis(1200));
    let r = post(&mut c, "risk_assessment", &risk("u-down", 50));
    assert_eq!((r.status, r.header("X-Atlas-Cache")), (200, Some("stale")));

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        i += 1;
        let r = post(&mut c, "risk_assessment", &risk(&format!("u-new-{i}"), 51));
        assert!(r.status == 502 || r.status == 503, "{}", r.status);
        if r.status == 503 {
            assert_eq!(r.error_code(), "no_endpoint");
            assert!(r.header("Retry-After").is_some());
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never opened");
    }
    assert!(i <= 6, "opened after at most 5 failures, took {i}");
}

#[test]
fn a_restarted_endpoint_is_probed_and_rejoins() {
    let first = Server::model_endpoint(&["--cores", "1"]);
    let addr = first.addr.to_string();
    let gw = gateway(&[("m", &first, ";timeout_ms=500")], &[]);
    let mut c = gw.connect();
    assert_eq!(
        post(&mut c, "risk_assessment", &risk("r-0", 30)).status,
        200
    );
    drop(first);
    for i in 1..=6 {
        let _ = post(&mut c, "risk_assessment", &risk(&format!("r-{i}"), 30));
    }
    assert_eq!(endpoint_view(&gw, "m")["state"], "open");
    let _again = Server::model_endpoint_at(&addr, &["--cores", "1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 0.. {
        let r = post(
            &mut c,
            "risk_assessment",
            &risk(&format!("r-back-{attempt}"), 31),
        );
        if r.status == 200 && endpoint_view(&gw, "m")["state"] == "closed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never rejoined: {}",
            endpoint_view(&gw, "m")
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn batches_larger_than_an_endpoints_max_batch_go_in_several_calls() {
    // The endpoint refuses calls of more than 2 inputs; with max_batch=2 the gateway splits
    // its batches, without it every batch larger than 2 fails.
    let small = Server::model_endpoint(&["--cores", "1", "--max-batch", "2", "--latency-ms", "30"]);
    let gw = gateway(&[("small", &small, ";max_batch=2")], &[]);
    let responses = load(&gw, 24, 12, "mb");
    assert!(responses.iter().all(|r| r.status == 200), "all answered");
    let max = responses
        .iter()
        .map(|r| {
            r.header("X-Atlas-Batch-Size")
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        max > 2,
        "the gateway batched more than 2 and split them: max batch {max}"
    );

    let gw = gateway(&[("small", &small, "")], &[]);
    let statuses: Vec<u16> = load(&gw, 24, 12, "mb2").iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&502),
        "without max_batch the endpoint refuses big batches: {statuses:?}"
    );
}

#[test]
fn killing_an_endpoint_under_load_moves_traffic_with_few_errors() {
    let a = Server::model_endpoint(&["--cores", "1", "--latency-ms", "5", "--concurrency", "8"]);
    let b = Server::model_endpoint(&["--cores", "1", "--latency-ms", "5", "--concurrency", "8"]);
    let gw = gateway(
        &[("a", &a, ";timeout_ms=500"), ("b", &b, ";timeout_ms=500")],
        &[],
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let mut c = gw.connect();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut statuses = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = post(&mut c, "risk_assessment", &risk(&format!("k-{t}-{i}"), 30));
                    statuses.push((r.status, r.header("X-Atlas-Endpoint").map(str::to_string)));
                    i += 1;
                }
                statuses
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(700));
    drop(b);
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let all: Vec<(u16, Option<String>)> = loaders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let errors = all.iter().filter(|(s, _)| *s != 200).count();
    assert!(all.len() > 100, "load ran: {} requests", all.len());
    assert!(errors <= 4, "{errors} client errors out of {}", all.len());
    // After the kill, the last requests of every loader went to `a`.
    let tail: Vec<&(u16, Option<String>)> = all.iter().rev().take(20).collect();
    assert!(
        tail.iter()
            .all(|(s, e)| *s == 200 && e.as_deref() == Some("a")),
        "{tail:?}"
    );
}

//! The Redis L2 with real `redis-server` processes and real `atlas serve` instances: a result
//! computed on one instance is an L2 hit on another; Redis killed mid-load fails no client
//! request and is used again once back; a corrupt value is a miss; Redis Cluster works across
//! slots; an instance starts and serves with Redis down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/redis.rs"]
mod redisd;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Response, Server};
use redisd::{Cluster, Redis};

fn risk(user: &str, age: u32) -> String {
    format!(
        r#"{{"user_id":"{user}","input":{{"age":{age},"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}}}"#
    )
}

fn post(c: &mut Client, body: &str) -> Response {
    c.send(
        format!(
            "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn gateway(redis_url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("ATLAS_REDIS_URL", redis_url),
        ("ATLAS_REDIS_TIMEOUT_MS", "50"),
    ];
    env.extend_from_slice(extra);
    Server::start(&["--cores", "1"], &env)
}

/// Result keys in one Redis node.
fn result_keys(redis: &Redis) -> usize {
    redis
        .cli(&["--scan", "--pattern", "atlas:v1:r:*"])
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn metric(server: &Server, series: &str) -> f64 {
    let text = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn a_result_computed_on_one_instance_is_an_l2_hit_on_another() {
    let redis = Redis::start();
    let a = gateway(&redis.url(), &[]);
    let b = gateway(&redis.url(), &[]);
    let body = risk("shared-1", 41);
    let first = post(&mut a.connect(), &body);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("X-Atlas-Cache"), Some("miss"));
    assert_eq!(first.header("X-Atlas-Cache-Level"), None);
    wait_until(Duration::from_secs(5), "the write-behind store", || {
        result_keys(&redis) == 1
    });
    // The value expires with the entry: a TTL is set.
    let key = redis.cli(&["--scan", "--pattern", "atlas:v1:r:*"]);
    let ttl: i64 = redis.cli(&["PTTL", key.trim()]).trim().parse().unwrap();
    assert!(ttl > 0, "PTTL {ttl}");

    let mut cb = b.connect();
    let on_b = post(&mut cb, &body);
    assert_eq!(on_b.status, 200);
    assert_eq!(on_b.header("X-Atlas-Cache"), Some("hit"));
    assert_eq!(on_b.header("X-Atlas-Cache-Level"), Some("l2"));
    assert_eq!(on_b.body, first.body, "byte-identical across instances");
    // Now in B's L1.
    let again = post(&mut cb, &body);
    assert_eq!(again.header("X-Atlas-Cache-Level"), Some("l1"));
    assert_eq!(metric(&b, r#"ai_l2_operations_total{result="hit"}"#), 1.0);
    assert_eq!(metric(&b, r#"ai_model_computations_total"#), 0.0);
    let d = b.connect().get("/health/detailed").json();
    assert_eq!(d["redis"]["configured"], true);
    assert_eq!(d["redis"]["status"], "up");
    assert_eq!(d["redis"]["hits"], 1);
    // Another user's identical input is not the same entry.
    let other = post(&mut cb, &risk("shared-2", 41));
    assert_eq!(other.header("X-Atlas-Cache"), Some("miss"));
}

#[test]
fn a_corrupt_or_foreign_value_is_a_miss() {
    let redis = Redis::start();
    let a = gateway(&redis.url(), &[]);
    let body = risk("corrupt-1", 52);
    let good = post(&mut a.connect(), &body);
    wait_until(Duration::from_secs(5), "the store", || {
        result_keys(&redis) == 1
    });
    let key = redis.cli(&["--scan", "--pattern", "atlas:v1:r:*"]);
    assert_eq!(
        redis
            .cli(&["SET", key.trim(), "not an atlas record"])
            .trim(),
        "OK"
    );
    let b = gateway(&redis.url(), &[]);
    let r = post(&mut b.connect(), &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Atlas-Cache"), Some("miss"));
    assert_eq!(r.body, good.body, "recomputed, same answer");
    assert_eq!(
        metric(&b, r#"ai_l2_operations_total{result="corrupt"}"#),
        1.0
    );
}

#[test]
fn redis_killed_mid_load_fails_no_request_and_is_used_again_when_back() {
    let mut redis = Redis::start();
    let server = gateway(&redis.url(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let mut c = server.connect();
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Half repeats (L1 hits), half new keys (L2 lookups and stores).
                    let r = post(&mut c, &risk(&format!("load-{t}-{}", i / 2), 40));
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    redis.kill();
    let at_kill = sent.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(1500));
    assert!(
        sent.load(Ordering::Relaxed) > at_kill + 20,
        "requests kept being answered with Redis down"
    );
    let d = server.connect().get("/health/detailed").json();
    assert_ne!(d["redis"]["status"], "up", "{}", d["redis"]);
    redis.restart();
    // The breaker probes Redis back and stores resume.
    wait_until(
        Duration::from_secs(15),
        "stores after Redis came back",
        || result_keys(&redis) > 0,
    );
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }
    let answered = metric(
        &server,
        r#"ai_optimized_requests_total{operation="risk_assessment",status="200"}"#,
    );
    assert_eq!(
        answered as u64,
        sent.load(Ordering::Relaxed),
        "every request answered 200"
    );
}

#[test]
fn an_instance_starts_and_serves_with_redis_down() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = gateway(&format!("redis://127.0.0.1:{port}"), &[]);
    let mut c = server.connect();
    for i in 0..5 {
        let r = post(&mut c, &risk("nobody-home", 30 + i));
        assert_eq!(r.status, 200);
    }
    let d = server.connect().get("/health/detailed").json();
    assert_eq!(d["redis"]["status"], "down");
    assert_eq!(d["redis"]["connections"], 0);
}

#[test]
fn cluster_mode_spreads_results_across_slots_and_serves_them_to_another_instance() {
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let a = gateway(&urls, &[]);
    let b = gateway(&urls, &[]);
    let mut ca = a.connect();
    let bodies: Vec<String> = (0..24).map(|i| risk(&format!("c-{i}"), 20 + i)).collect();
    for body in &bodies {
        assert_eq!(post(&mut ca, body).status, 200);
    }
    wait_until(Duration::from_secs(10), "24 stores", || {
        cluster.nodes.iter().map(result_keys).sum::<usize>() == 24
    });
    let used = cluster.nodes.iter().filter(|n| result_keys(n) > 0).count();
    assert!(used >= 2, "keys on {used} of 3 masters");
    let mut cb = b.connect();
    for body in &bodies {
        let r = post(&mut cb, body);
        assert_eq!(r.header("X-Atlas-Cache-Level"), Some("l2"));
    }
    let d = b.connect().get("/health/detailed").json();
    assert_eq!(d["redis"]["mode"], "cluster");
}

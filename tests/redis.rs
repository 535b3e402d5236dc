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

fn post_to(c: &mut Client, path: &str, body: &str) -> Response {
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn tagged(user: &str, tag: &str) -> String {
    format!(
        r#"{{"user_id":"{user}","dependencies":["{tag}"],"input":{{"age":44,"horizon_years":15,"income_stability":3,"loss_tolerance":3,"experience":2}}}}"#
    )
}

/// Polls `body` on `c` until it is a miss (the L1 copy is gone), within `limit`.
fn becomes_miss(c: &mut Client, body: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        // A probe that hits leaves the entry in place; only a miss recomputes.
        let r = post(c, body);
        if r.header("X-Atlas-Cache") == Some("miss") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "still {:?}",
            r.header("X-Atlas-Cache")
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_invalidation_on_one_instance_removes_the_result_on_the_other_and_in_redis() {
    let redis = Redis::start();
    let a = gateway(&redis.url(), &[]);
    let b = gateway(&redis.url(), &[]);
    let (mut ca, mut cb) = (a.connect(), b.connect());
    let body = tagged("inv-1", "market:rates");
    let keep = tagged("inv-2", "market:fx");
    for x in [&body, &keep] {
        assert_eq!(post(&mut ca, x).header("X-Atlas-Cache"), Some("miss"));
    }
    wait_until(Duration::from_secs(5), "two stores", || {
        result_keys(&redis) == 2
    });
    for x in [&body, &keep] {
        assert_eq!(post(&mut cb, x).header("X-Atlas-Cache-Level"), Some("l2"));
        assert_eq!(post(&mut cb, x).header("X-Atlas-Cache-Level"), Some("l1"));
    }
    // Give B's subscriber time to be in place (it subscribes at start).
    thread::sleep(Duration::from_millis(200));
    let r = post_to(
        &mut ca,
        "/ai/cache/invalidate",
        r#"{"dependencies":["market:rates"]}"#,
    );
    assert_eq!(r.status, 200);
    let report = r.json();
    assert_eq!(report["removed"], 1, "{report}");
    assert_eq!(report["l2"]["removed"], 1, "{report}");
    assert_eq!(
        result_keys(&redis),
        1,
        "only the other result is left in Redis"
    );
    let took = becomes_miss(&mut cb, &body, Duration::from_secs(2));
    assert!(
        took < Duration::from_millis(100),
        "B dropped its copy after {took:?}"
    );
    assert_eq!(
        post(&mut cb, &keep).header("X-Atlas-Cache-Level"),
        Some("l1")
    );

    // An event on B reaches A the same way.
    let by_user = risk("inv-3", 61);
    assert_eq!(
        post(&mut ca, &by_user).header("X-Atlas-Cache"),
        Some("miss")
    );
    let r = post_to(
        &mut cb,
        "/ai/events",
        r#"{"type":"user_profile_update","user_id":"inv-3"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let took = becomes_miss(&mut ca, &by_user, Duration::from_secs(2));
    assert!(
        took < Duration::from_millis(100),
        "A dropped its copy after {took:?}"
    );
}

/// The race a write-behind store can lose: it lands in Redis after another instance deleted
/// the result. Replayed deterministically by putting the pre-invalidation record back with
/// `COPY` after the invalidation; no instance that applied the invalidation may serve it.
#[test]
fn a_store_landing_after_an_invalidation_is_never_served_again() {
    let redis = Redis::start();
    let a = gateway(&redis.url(), &[]);
    let b = gateway(&redis.url(), &[]);
    let (mut ca, mut cb) = (a.connect(), b.connect());
    let body = tagged("late-1", "market:late");
    let first = post(&mut ca, &body);
    assert_eq!(first.header("X-Atlas-Cache"), Some("miss"));
    wait_until(Duration::from_secs(5), "the store", || {
        result_keys(&redis) == 1
    });
    let key = redis.cli(&["--scan", "--pattern", "atlas:v1:r:*"]);
    let key = key.trim();
    assert_eq!(redis.cli(&["COPY", key, "stash"]).trim(), "1");

    let r = post_to(
        &mut cb,
        "/ai/cache/invalidate",
        r#"{"dependencies":["market:late"]}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["l2"]["removed"], 1);
    wait_until(Duration::from_secs(5), "A applies B's invalidation", || {
        metric(&a, r#"ai_invalidated_entries_total{kind="tag"}"#) == 1.0
    });

    // The late store lands; A (which computed it) and B (which invalidated) both refuse it.
    for (server, client) in [(&a, &mut ca), (&b, &mut cb)] {
        assert_eq!(redis.cli(&["COPY", "stash", key, "REPLACE"]).trim(), "1");
        let r = post(client, &body);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("X-Atlas-Cache"),
            Some("miss"),
            "stale record served"
        );
        assert_eq!(
            metric(server, r#"ai_l2_operations_total{result="stale"}"#),
            1.0
        );
        // The recomputed result replaced the stale record: the next instance to miss L1
        // gets it from Redis.
        wait_until(Duration::from_secs(5), "the fresh store", || {
            redis.cli(&["GET", key]) != redis.cli(&["GET", "stash"])
        });
    }
    let c = gateway(&redis.url(), &[]);
    let r = post(&mut c.connect(), &body);
    assert_eq!(r.header("X-Atlas-Cache-Level"), Some("l2"));
    assert_eq!(r.body, first.body);
}

/// A tag declared by a later request that hits an entry also lists the Redis copy under it,
/// so invalidating that tag removes the result from Redis too (not only from L1).
#[test]
fn a_tag_a_hit_declared_later_invalidates_the_redis_copy_too() {
    let redis = Redis::start();
    let a = gateway(&redis.url(), &[]);
    let mut ca = a.connect();
    let first = tagged("gain-1", "market:first");
    let later = tagged("gain-1", "market:later");
    assert_eq!(post(&mut ca, &first).header("X-Atlas-Cache"), Some("miss"));
    assert_eq!(post(&mut ca, &later).header("X-Atlas-Cache"), Some("hit"));
    wait_until(
        Duration::from_secs(5),
        "the copy listed under the later tag",
        || redis.cli(&["SCARD", "atlas:v1:t:market:later"]).trim() == "1",
    );
    let r = post_to(
        &mut ca,
        "/ai/cache/invalidate",
        r#"{"dependencies":["market:later"]}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["removed"], 1);
    assert_eq!(r.json()["l2"]["removed"], 1, "{}", r.json());
    assert_eq!(result_keys(&redis), 0);
    let b = gateway(&redis.url(), &[]);
    assert_eq!(
        post(&mut b.connect(), &first).header("X-Atlas-Cache"),
        Some("miss")
    );
}

#[test]
fn invalidate_all_clears_redis_everywhere_in_a_cluster() {
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let a = gateway(&urls, &[]);
    let mut ca = a.connect();
    for i in 0..12 {
        assert_eq!(
            post(&mut ca, &risk(&format!("all-{i}"), 30 + i)).status,
            200
        );
    }
    wait_until(Duration::from_secs(10), "12 stores", || {
        cluster.nodes.iter().map(result_keys).sum::<usize>() == 12
    });
    let r = post_to(&mut ca, "/ai/cache/invalidate", r#"{"all":true}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["l2"]["removed"], 12, "{}", r.json());
    assert_eq!(cluster.nodes.iter().map(result_keys).sum::<usize>(), 0);
}

fn send(c: &mut Client, method: &str, path: &str, body: &str) -> Response {
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

#[test]
fn a_context_stored_on_one_instance_is_used_updated_and_deleted_on_the_other() {
    let redis = Redis::start();
    let a = gateway(&redis.url(), &[]);
    let b = gateway(&redis.url(), &[]);
    let (mut ca, mut cb) = (a.connect(), b.connect());
    thread::sleep(Duration::from_millis(200)); // subscribers in place
    let context =
        r#"{"age":30,"horizon_years":25,"income_stability":4,"loss_tolerance":4,"experience":1}"#;
    let r = send(&mut ca, "PUT", "/ai/context/ctx-u", context);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["context_l2"]["stored"], true);
    // The PUT's invalidation reaches B asynchronously; a result B computes before it arrives
    // would be dropped by it (correctly: B cannot tell it was computed after the change).
    wait_until(
        Duration::from_secs(5),
        "B applies A's context change",
        || metric(&b, r#"ai_peer_invalidations_total{kind="tag"}"#) >= 1.0,
    );
    // B has no local copy: it reads A's from Redis.
    let got = send(&mut cb, "GET", "/ai/context/ctx-u", "");
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["context"]["experience"], 1);
    let with = r#"{"user_id":"ctx-u","use_context":true}"#;
    let first = send(&mut cb, "POST", "/ai/risk_assessment", with);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.header("X-Atlas-Cache"), Some("miss"));
    assert_eq!(
        send(&mut cb, "POST", "/ai/risk_assessment", with).header("X-Atlas-Cache"),
        Some("hit")
    );
    // An update on A invalidates what B computed with the old context, and B sees the new one.
    let newer =
        r#"{"age":61,"horizon_years":5,"income_stability":2,"loss_tolerance":1,"experience":1}"#;
    assert_eq!(send(&mut ca, "PUT", "/ai/context/ctx-u", newer).status, 200);
    let started = Instant::now();
    loop {
        let r = send(&mut cb, "POST", "/ai/risk_assessment", with);
        if r.header("X-Atlas-Cache") == Some("miss") {
            assert_ne!(r.body, first.body, "computed from the new context");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "B kept the old result"
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        send(&mut cb, "GET", "/ai/context/ctx-u", "").json()["context"]["age"],
        61
    );
    // A delete on A is a delete everywhere.
    let d = send(&mut ca, "DELETE", "/ai/context/ctx-u", "");
    assert_eq!(d.json()["deleted"], true);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(send(&mut cb, "GET", "/ai/context/ctx-u", "").status, 404);
    let none = send(&mut cb, "POST", "/ai/risk_assessment", with);
    assert_eq!(none.status, 404);
}

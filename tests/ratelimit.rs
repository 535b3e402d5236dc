//! Rate limits with the real binary: a user's burst is accepted and the next request refused
//! with a correct `Retry-After` and `X-RateLimit-*` headers, whichever shard accepts it; the
//! global limit holds across shards; cache hits count or not per `ATLAS_RATE_LIMIT_HITS`;
//! two instances sharing one Redis enforce one limit within 10 %; Redis down falls back per
//! `ATLAS_RATE_LIMIT_REDIS_FAILURE` and `/health/detailed` says so; with authentication the
//! token's subject is charged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/redis.rs"]
mod redisd;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Client, Response, Server};
use redisd::Redis;

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

fn put_context(c: &mut Client, user: &str) -> Response {
    let body = r#"{"age":40}"#;
    c.send(
        format!(
            "PUT /ai/context/{user} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn detailed(server: &Server) -> Value {
    server.connect().get("/health/detailed").json()
}

fn validate_detailed(doc: &Value) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/monitoring/schemas/health-detailed.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

fn metric(server: &Server, series: &str) -> f64 {
    let text = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn header_u64(r: &Response, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .parse()
        .unwrap()
}

/// Every request on a new connection, so both shards accept some (and most need a hop to
/// the user's owner shard or none).
#[test]
fn a_burst_is_accepted_then_refused_with_retry_after_and_refilled_at_the_rate() {
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_RATE_LIMIT_USER_RPS", "0.5"),
            ("ATLAS_RATE_LIMIT_USER_BURST", "5"),
        ],
    );
    let mut accepting = BTreeSet::new();
    let started = Instant::now();
    for i in 0..5u64 {
        let r = post(&mut server.connect(), &risk("burst-user", 30 + i as u32));
        assert_eq!(r.status, 200, "request {i}: {:?}", r.json());
        assert_eq!(r.header("X-RateLimit-Limit"), Some("5"));
        assert_eq!(header_u64(&r, "X-RateLimit-Remaining"), 4 - i);
        accepting.insert(r.header("X-Atlas-Shard").unwrap().to_string());
    }
    // The 6th: the next token is 2 s (one interval at 0.5/s) after the first request.
    let r = post(&mut server.connect(), &risk("burst-user", 60));
    let elapsed = started.elapsed();
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limited_user");
    assert_eq!(r.header("X-RateLimit-Limit"), Some("5"));
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    let retry = header_u64(&r, "Retry-After");
    let reset = header_u64(&r, "X-RateLimit-Reset");
    assert!(elapsed < Duration::from_secs(1), "too slow: {elapsed:?}");
    assert_eq!(retry, 2, "{:?}", r.headers);
    // Full again 5 intervals after the first take.
    assert_eq!(reset, 10, "{:?}", r.headers);
    // Refused requests cost nothing, and other users are not affected.
    for _ in 0..3 {
        assert_eq!(
            post(&mut server.connect(), &risk("burst-user", 61)).status,
            429
        );
    }
    let other = post(&mut server.connect(), &risk("another-user", 30));
    assert_eq!(other.status, 200);
    assert_eq!(other.header("X-RateLimit-Remaining"), Some("4"));
    // After Retry-After: exactly one more.
    thread::sleep(Duration::from_secs(retry));
    let r = post(&mut server.connect(), &risk("burst-user", 62));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    let r = post(&mut server.connect(), &risk("burst-user", 63));
    assert_eq!(r.status, 429);
    accepting.insert(r.header("X-Atlas-Shard").unwrap().to_string());
    // The context routes are charged to the user in the path.
    let mut c = server.connect();
    for _ in 0..5 {
        let r = put_context(&mut c, "ctx-user");
        assert_eq!(r.status, 200);
        assert!(r.header("X-RateLimit-Remaining").is_some());
    }
    let r = put_context(&mut c, "ctx-user");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "rate_limited_user")
    );
    assert!(r.header("Retry-After").is_some());
    assert_eq!(
        metric(&server, "ai_rate_limited_total{scope=\"user\"}"),
        6.0
    );
    assert_eq!(
        metric(
            &server,
            "ai_optimized_requests_total{operation=\"risk_assessment\",status=\"429\"}"
        ),
        5.0
    );
    let doc = detailed(&server);
    validate_detailed(&doc);
    let rl = &doc["rate_limits"];
    assert_eq!(rl["user"]["burst"], 5);
    assert_eq!(rl["refused"]["user"], 6);
    assert_eq!(rl["redis"], Value::Null);
    // Twenty connections: both shards accepted requests at least once.
    for i in 0..20 {
        let r = post(&mut server.connect(), &risk(&format!("spread-{i}"), 30));
        accepting.insert(r.header("X-Atlas-Shard").unwrap().to_string());
    }
    assert_eq!(accepting.len(), 2, "{accepting:?}");
}

/// Sends `body(thread, i)` from `threads` connections for `secs`; answers (accepted per
/// accepting shard, refused with `code`, elapsed).
fn hammer(
    addrs: &[std::net::SocketAddr],
    threads: usize,
    secs: f64,
    body: impl Fn(usize, u64) -> String + Send + Sync + Copy + 'static,
    code: &'static str,
) -> (Vec<(String, u64)>, u64, Duration) {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = addrs[t % addrs.len()];
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut accepted = Vec::new();
                let mut refused = 0;
                let mut i = 0;
                while Instant::now() < until {
                    let r = post(&mut c, &body(t, i));
                    i += 1;
                    match r.status {
                        200 => accepted.push(format!(
                            "{}/{}",
                            addr.port(),
                            r.header("X-Atlas-Shard").unwrap()
                        )),
                        429 => {
                            assert_eq!(r.error_code(), code);
                            refused += 1;
                        }
                        s => panic!("status {s}: {:?}", r.json()),
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let mut by_shard = std::collections::BTreeMap::new();
    let mut refused = 0;
    for h in handles {
        let (a, r) = h.join().unwrap();
        for s in a {
            *by_shard.entry(s).or_insert(0u64) += 1;
        }
        refused += r;
    }
    (by_shard.into_iter().collect(), refused, started.elapsed())
}

fn total(by_shard: &[(String, u64)]) -> u64 {
    by_shard.iter().map(|(_, n)| n).sum()
}

#[test]
fn the_global_limit_holds_across_shards() {
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_RATE_LIMIT_GLOBAL_RPS", "40"),
            ("ATLAS_RATE_LIMIT_GLOBAL_BURST", "40"),
        ],
    );
    // 16 connections: the kernel spreads them over the two shards by hash, and with 8 all of
    // them landed on one shard about once in 128 runs (seen in CI), which this test cannot use.
    let (by_shard, refused, elapsed) = hammer(
        &[server.addr],
        16,
        2.0,
        |t, _| risk(&format!("g-{t}"), 30),
        "rate_limited_global",
    );
    let accepted = total(&by_shard);
    let bound = 40.0 + 40.0 * elapsed.as_secs_f64();
    assert!(
        accepted as f64 <= bound + 1.0 && accepted as f64 >= 0.95 * bound - 2.0,
        "accepted {accepted}, bound {bound:.1} ({by_shard:?})"
    );
    assert!(refused > 0);
    assert_eq!(by_shard.len(), 2, "both shards accepted: {by_shard:?}");
    // Answers carry no X-RateLimit headers without a user limit; the 429s do.
    let r = post(&mut server.connect(), &risk("g-x", 30));
    if r.status == 429 {
        assert_eq!(r.header("X-RateLimit-Limit"), Some("40"));
    } else {
        assert_eq!(r.header("X-RateLimit-Limit"), None);
    }
    assert_eq!(
        metric(&server, "ai_rate_limited_total{scope=\"global\"}"),
        (refused + u64::from(r.status == 429)) as f64
    );
}

#[test]
fn cache_hits_count_unless_configured_otherwise() {
    for count_hits in [true, false] {
        let server = Server::start(
            &["--cores", "2"],
            &[
                ("ATLAS_RATE_LIMIT_USER_RPS", "0.01"),
                ("ATLAS_RATE_LIMIT_USER_BURST", "3"),
                ("ATLAS_RATE_LIMIT_GLOBAL_RPS", "0.01"),
                ("ATLAS_RATE_LIMIT_GLOBAL_BURST", "4"),
                (
                    "ATLAS_RATE_LIMIT_HITS",
                    if count_hits { "true" } else { "false" },
                ),
            ],
        );
        // One connection: each hit's give-back reaches the owner shard before the next take.
        let mut c = server.connect();
        let mut statuses = Vec::new();
        for _ in 0..10 {
            let r = post(&mut c, &risk("hits", 30));
            statuses.push((r.status, r.header("X-Atlas-Cache").map(str::to_string)));
            if !count_hits {
                // The miss cost one token; each hit's token is given back: 2 left.
                assert_eq!(r.header("X-RateLimit-Remaining"), Some("2"), "{statuses:?}");
            }
        }
        let accepted = statuses.iter().filter(|(s, _)| *s == 200).count();
        if count_hits {
            assert_eq!(accepted, 3, "{statuses:?}");
            assert_eq!(statuses[3].0, 429);
            continue;
        }
        assert_eq!(accepted, 10, "{statuses:?}");
        assert_eq!(
            statuses
                .iter()
                .filter(|(_, c)| c.as_deref() == Some("hit"))
                .count(),
            9
        );
        // Give the last hit's token time to travel back to the owner shard.
        thread::sleep(Duration::from_millis(100));
        // Misses still cost: two more inputs use the user's last two tokens.
        assert_eq!(post(&mut server.connect(), &risk("hits", 31)).status, 200);
        assert_eq!(post(&mut server.connect(), &risk("hits", 32)).status, 200);
        let r = post(&mut server.connect(), &risk("hits", 33));
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (429, "rate_limited_user")
        );
        // With the user's bucket empty even a hit is refused (it needs a token to be let in).
        assert_eq!(post(&mut server.connect(), &risk("hits", 30)).status, 429);
        // The global bucket gave hits back too: 3 misses used 3 of its 4.
        let r = post(&mut server.connect(), &risk("hits-other", 30));
        assert_eq!(r.status, 200);
        let r = post(&mut server.connect(), &risk("hits-other", 31));
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (429, "rate_limited_global")
        );
    }
}

/// Two instances of two shards each share one Redis: one user hammering both for 3 s gets
/// burst + rate × time, within 10 %, split between the instances.
#[test]
fn two_instances_share_one_user_limit_through_redis() {
    let redis = Redis::start();
    let env = [
        ("ATLAS_REDIS_URL", redis.url()),
        ("ATLAS_REDIS_TIMEOUT_MS", "50".to_string()),
        ("ATLAS_RATE_LIMIT_USER_RPS", "50".to_string()),
        ("ATLAS_RATE_LIMIT_USER_BURST", "50".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Server::start(&["--cores", "2"], &env);
    let b = Server::start(&["--cores", "2"], &env);
    let (by_instance, refused, elapsed) = hammer(
        &[a.addr, b.addr],
        4,
        3.0,
        |_, _| risk("fleet-user", 30),
        "rate_limited_user",
    );
    let accepted = total(&by_instance);
    let expected = 50.0 + 50.0 * elapsed.as_secs_f64();
    let error = (accepted as f64 - expected) / expected;
    println!("accepted {accepted} of {expected:.0} expected ({:+.1} %), refused {refused}, {by_instance:?}", error * 100.0);
    assert!(
        error.abs() <= 0.10,
        "accepted {accepted}, expected {expected:.0}"
    );
    assert!(accepted as f64 <= expected + 1.0);
    for server in [&a, &b] {
        let port = server.addr.port().to_string();
        assert!(
            by_instance
                .iter()
                .any(|(k, n)| k.starts_with(&port) && *n > 0),
            "{by_instance:?}"
        );
        let doc = detailed(server);
        validate_detailed(&doc);
        assert_eq!(doc["rate_limits"]["redis"]["status"], "shared");
        assert!(doc["rate_limits"]["redis"]["takes"].as_u64().unwrap() > 0);
    }
}

/// The same with only a global limit: every shard of both instances takes global tokens
/// from Redis.
#[test]
fn two_instances_share_one_global_limit_through_redis() {
    let redis = Redis::start();
    let env = [
        ("ATLAS_REDIS_URL", redis.url()),
        ("ATLAS_REDIS_TIMEOUT_MS", "50".to_string()),
        ("ATLAS_RATE_LIMIT_GLOBAL_RPS", "100".to_string()),
        ("ATLAS_RATE_LIMIT_GLOBAL_BURST", "100".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Server::start(&["--cores", "2"], &env);
    let b = Server::start(&["--cores", "2"], &env);
    let (by_instance, refused, elapsed) = hammer(
        &[a.addr, b.addr],
        4,
        3.0,
        |t, _| risk(&format!("g-{t}"), 30),
        "rate_limited_global",
    );
    let accepted = total(&by_instance);
    let expected = 100.0 + 100.0 * elapsed.as_secs_f64();
    let error = (accepted as f64 - expected) / expected;
    println!("accepted {accepted} of {expected:.0} expected ({:+.1} %), refused {refused}, {by_instance:?}", error * 100.0);
    assert!(
        error.abs() <= 0.10,
        "accepted {accepted}, expected {expected:.0}"
    );
    assert!(accepted as f64 <= expected + 1.0);
    assert!(refused > 0);
}

#[test]
fn redis_down_falls_back_per_setting_and_health_says_so() {
    let mut redis = Redis::start();
    let start = |failure: &str| {
        Server::start(
            &["--cores", "2"],
            &[
                ("ATLAS_REDIS_URL", redis.url().as_str()),
                ("ATLAS_REDIS_TIMEOUT_MS", "50"),
                ("ATLAS_RATE_LIMIT_USER_RPS", "0.2"),
                ("ATLAS_RATE_LIMIT_USER_BURST", "3"),
                ("ATLAS_RATE_LIMIT_REDIS_FAILURE", failure),
            ],
        )
    };
    let local = start("local");
    let closed = start("closed");
    let open = start("open");
    for (server, left) in [(&local, "2"), (&closed, "1"), (&open, "0")] {
        let r = post(&mut server.connect(), &risk("before", 30));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-RateLimit-Remaining"), Some(left));
    }
    // The three instances share the bucket: "before" has spent all 3.
    assert_eq!(post(&mut local.connect(), &risk("before", 31)).status, 429);
    redis.kill();

    // local: each instance limits on its own (a new user gets a full local bucket).
    let statuses: Vec<u16> = (0..5)
        .map(|i| post(&mut local.connect(), &risk("during", 40 + i)).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let doc = detailed(&local);
    validate_detailed(&doc);
    let redis_doc = &doc["rate_limits"]["redis"];
    assert_eq!(redis_doc["failure_mode"], "local");
    assert_eq!(redis_doc["status"], "fallback", "{redis_doc}");
    assert!(redis_doc["fallbacks"].as_u64().unwrap() >= 5);

    // closed: refused with 503 while Redis is away.
    let r = post(&mut closed.connect(), &risk("during", 40));
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "rate_limit_unavailable");
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(
        detailed(&closed)["rate_limits"]["refused"]["unavailable"],
        1
    );

    // open: no limit, no headers.
    for i in 0..5 {
        let r = post(&mut open.connect(), &risk("during", 40 + i));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-RateLimit-Remaining"), None);
    }

    // Redis back: the limits are shared again (after the breaker's open time).
    redis.restart();
    // Users owned by either shard, so that every breaker gets a probe.
    wait_until(Duration::from_secs(15), "limits shared again", || {
        for i in 0..8 {
            post(&mut closed.connect(), &risk(&format!("after-{i}"), 30));
        }
        detailed(&closed)["rate_limits"]["redis"]["status"] == "shared"
    });
    // Every breaker is closed, but a Redis worker whose connection died with the restart
    // may still be waiting out its reconnect interval (`l2::pool::RECONNECT_EVERY`); a take
    // is never sent twice, so a request on it can still get 503 for that moment. Seen once
    // in a fresh-clone CI run; what must hold is that requests succeed again shortly.
    let mut i = 0;
    wait_until(Duration::from_secs(5), "a new user served again", || {
        i += 1;
        post(
            &mut closed.connect(),
            &risk(&format!("after-redis-is-back-{i}"), 30),
        )
        .status
            == 200
    });
    let text = String::from_utf8(local.connect().get("/metrics").body).unwrap();
    assert!(text.contains("ai_rate_limit_redis_total{result=\"fallback\"}"));
}

/// A shard takes a tenth of the burst from Redis at a time; what it has not spent after a
/// second goes back (here: all but one of 10, so the Redis bucket is full again and its key
/// gone long before its 10 s).
#[test]
fn unspent_tokens_go_back_to_redis() {
    let redis = Redis::start();
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_REDIS_URL", redis.url().as_str()),
            ("ATLAS_REDIS_TIMEOUT_MS", "50"),
            ("ATLAS_RATE_LIMIT_USER_RPS", "1"),
            ("ATLAS_RATE_LIMIT_USER_BURST", "100"),
        ],
    );
    let r = post(&mut server.connect(), &risk("saver", 30));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("99"));
    let key = "atlas:v1:rl:u:saver";
    assert_eq!(redis.cli(&["EXISTS", key]).trim(), "1");
    let pttl: i64 = redis.cli(&["PTTL", key]).trim().parse().unwrap();
    assert!(pttl > 8_000, "10 tokens at 1/s: {pttl} ms");
    wait_until(
        Duration::from_secs(5),
        "the unspent tokens returned",
        || metric(&server, "ai_rate_limit_redis_total{result=\"return\"}") >= 1.0,
    );
    wait_until(Duration::from_secs(2), "the bucket full again", || {
        redis.cli(&["EXISTS", key]).trim() == "0"
    });
}

/// With authentication the token's subject is charged: an admin acting for a user spends its
/// own tokens, not the user's; the static admin token has no per-user limit.
#[test]
fn with_authentication_the_token_subject_is_charged() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
    const ADMIN_TOKEN: &str = "operator-token-0123456789abcdefghij";
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_JWT_SECRET", SECRET),
            ("ATLAS_ADMIN_TOKEN", ADMIN_TOKEN),
            ("ATLAS_RATE_LIMIT_USER_RPS", "0.01"),
            ("ATLAS_RATE_LIMIT_USER_BURST", "2"),
        ],
    );
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = |claims: Value| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let alice = token(serde_json::json!({"sub": "alice", "exp": exp}));
    let ops = token(serde_json::json!({"sub": "ops", "exp": exp, "roles": ["admin"]}));
    let send = |token: &str, path: &str, method: &str, body: &str| {
        let mut c = server.connect();
        c.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        c.read_response(false)
    };
    let ai = |token: &str, user: &str, age: u32| {
        send(token, "/ai/risk_assessment", "POST", &risk(user, age))
    };
    assert_eq!(ai(&alice, "alice", 30).status, 200);
    assert_eq!(ai(&alice, "alice", 31).status, 200);
    let r = ai(&alice, "alice", 32);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "rate_limited_user")
    );
    // A user naming another user is refused before the limits (403 costs no token).
    assert_eq!(ai(&alice, "bob", 30).status, 403);
    // The admin acting for alice spends its own bucket.
    let r = ai(&ops, "alice", 33);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("1"));
    assert_eq!(ai(&ops, "alice", 34).status, 200);
    assert_eq!(ai(&ops, "alice", 35).status, 429);
    // The static admin token: no per-user limit.
    for age in 40..45 {
        let r = ai(ADMIN_TOKEN, "alice", age);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-RateLimit-Limit"), None);
    }
    // The context routes are charged the same way.
    let r = send(&alice, "/ai/context/alice", "PUT", r#"{"age":40}"#);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "rate_limited_user")
    );
    // Each refusal is a security event: a line naming the subject, and a count.
    thread::sleep(Duration::from_millis(200));
    let lines: Vec<String> = server
        .stderr()
        .into_iter()
        .filter(|l| l.contains("event=rate_limited"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains("scope=user subject=\"alice\""),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains(&alice)));
    assert_eq!(
        metric(&server, "ai_security_events_total{event=\"rate_limited\"}"),
        3.0
    );
    assert_eq!(
        send(ADMIN_TOKEN, "/ai/context/alice", "PUT", r#"{"age":40}"#).status,
        200
    );
}

//! SIGHUP on the real binary for the settings whose state lives in the shards: the remote
//! endpoints (a gateway switched from one `atlas model-endpoint` to another while requests
//! run, none failing) and the rate limits (a tighter per-user rate refuses at once).
//!
//! Deterministic on a loaded machine: every wait polls with a generous deadline; what is
//! asserted is the order of events (the "applied on all shards" log line), never a duration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, ConfigFile, Response, Server};

fn sighup(server: &Server) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGHUP);
    }
}

/// Collects stderr until a line contains `needle` (or 30 s pass).
fn log_until(server: &Server, log: &mut Vec<String>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        log.extend(server.stderr());
        if log.iter().any(|l| l.contains(needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Polls `done` every 50 ms until it holds or 30 s pass.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

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

/// The endpoint names each shard's pool holds, from `/health/detailed`.
fn pools(server: &Server) -> Vec<Vec<String>> {
    let doc = server.connect().get("/health/detailed").json();
    doc["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// One answered request of the background load.
struct Answer {
    status: u16,
    endpoint: String,
    /// Sent after the reload was applied on every shard.
    after: bool,
}

#[test]
fn sighup_switches_endpoints_without_failing_a_request() {
    let a = Server::model_endpoint(&[]);
    let b = Server::model_endpoint(&[]);
    let file = ConfigFile::new(
        "endpoints",
        &format!(
            "embedded = false\nhealth_interval_s = 1\nendpoints = \"a={}\"\n",
            a.url()
        ),
    );
    let server = Server::start(&["--cores", "2", "--config", file.path()], &[]);
    assert_eq!(pools(&server), [["a"], ["a"]]);

    // Two clients send distinct requests (every one a miss, so every one reaches an
    // endpoint) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let applied = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|t| {
            let mut c = server.connect();
            let (stop, applied, answers, sent) = (
                Arc::clone(&stop),
                Arc::clone(&applied),
                Arc::clone(&answers),
                Arc::clone(&sent),
            );
            thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Acquire) {
                    let after = applied.load(Ordering::Acquire);
                    let r = post(&mut c, &risk(&format!("switch-{t}-{i}"), 20 + i % 50));
                    sent.fetch_add(1, Ordering::Relaxed);
                    answers.lock().unwrap().push(Answer {
                        status: r.status,
                        endpoint: r.header("X-Atlas-Endpoint").unwrap_or("").to_string(),
                        after,
                    });
                    i += 1;
                }
            })
        })
        .collect();
    wait_until("answers from a", || {
        answers
            .lock()
            .unwrap()
            .iter()
            .filter(|x| x.endpoint == "a")
            .count()
            >= 10
    });

    file.write(&format!(
        "embedded = false\nhealth_interval_s = 1\nendpoints = \"b={}\"\n",
        b.url()
    ));
    sighup(&server);
    let mut log = Vec::new();
    assert!(
        log_until(&server, &mut log, "SIGHUP: applied on all 2 shards"),
        "{log:#?}"
    );
    applied.store(true, Ordering::Release);
    assert!(
        log.iter().any(|l| l.contains(&format!(
            "SIGHUP: ATLAS_ENDPOINTS: a={} -> b={} (applied)",
            a.url(),
            b.url()
        ))),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("endpoints on each shard: kept [], started [b], retired [a")),
        "{log:#?}"
    );
    let at_switch = sent.load(Ordering::Relaxed);
    wait_until("answers after the reload", || {
        sent.load(Ordering::Relaxed) >= at_switch + 20
    });
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().unwrap();
    }

    let answers = answers.lock().unwrap();
    let failed: Vec<(u16, &str)> = answers
        .iter()
        .filter(|x| x.status != 200)
        .map(|x| (x.status, x.endpoint.as_str()))
        .collect();
    assert!(failed.is_empty(), "failed during the switch: {failed:?}");
    let after: Vec<&str> = answers
        .iter()
        .filter(|x| x.after)
        .map(|x| x.endpoint.as_str())
        .collect();
    assert!(after.len() >= 20);
    assert!(after.iter().all(|e| *e == "b"), "{after:?}");
    assert_eq!(pools(&server), [["b"], ["b"]]);

    // The old endpoint is not needed any more: stop it; requests still succeed on b.
    drop(a);
    let mut c = server.connect();
    for i in 0..10 {
        let r = post(&mut c, &risk(&format!("after-{i}"), 30 + i));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("X-Atlas-Endpoint"), Some("b"));
    }
}

#[test]
fn sighup_tightens_the_user_rate_at_once() {
    let file = ConfigFile::new(
        "rates",
        "rate_limit_user_rps = 1000\nrate_limit_user_burst = 1000\nrate_limit_global_rps = 100000\n",
    );
    let server = Server::start(&["--cores", "2", "--config", file.path()], &[]);
    let mut c = server.connect();
    for i in 0..20 {
        let r = post(&mut c, &risk("tight", 20 + i));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("X-RateLimit-Limit"), Some("1000"));
    }

    // One token every 100 s, 3 at once; turning the global limit off needs a restart.
    file.write(
        "rate_limit_user_rps = 0.01\nrate_limit_user_burst = 3\nrate_limit_global_rps = 0\n",
    );
    sighup(&server);
    let mut log = Vec::new();
    assert!(
        log_until(&server, &mut log, "SIGHUP: applied on all 2 shards"),
        "{log:#?}"
    );
    for line in [
        "SIGHUP: ATLAS_RATE_LIMIT_USER_RPS: 1000 -> 0.01 (applied)",
        "SIGHUP: ATLAS_RATE_LIMIT_USER_BURST: 1000 -> 3 (applied)",
        "SIGHUP: ATLAS_RATE_LIMIT_GLOBAL_RPS: 100000 -> 0 (turns a rate limit on or off, which \
         needs a restart, not applied)",
    ] {
        assert!(log.iter().any(|l| l.contains(line)), "{line}: {log:#?}");
    }

    // The user kept its tokens, clamped to the new burst: 3 more, then 429.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = post(&mut c, &risk("tight", 80 + i));
        if r.status == 429 {
            assert_eq!(r.error_code(), "rate_limited_user");
            assert_eq!(r.header("X-RateLimit-Limit"), Some("3"));
            let message = r.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(
                message.contains("0.01 requests per second (burst 3)"),
                "{message}"
            );
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // A user never seen gets the new full bucket of 3.
    let r = post(&mut c, &risk("fresh", 30));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("2"));
}

/// `(calls, weight)` of endpoint `name`, summed and as seen by each shard.
fn endpoint_figures(server: &Server, name: &str) -> (u64, Vec<f64>) {
    let doc = server.connect().get("/health/detailed").json();
    let mut calls = 0;
    let mut weights = Vec::new();
    for shard in doc["shards"].as_array().unwrap() {
        for e in shard["endpoints"].as_array().unwrap() {
            if e["name"] == name {
                calls += e["calls"].as_u64().unwrap();
                weights.push(e["weight"].as_f64().unwrap());
            }
        }
    }
    (calls, weights)
}

#[test]
fn sighup_keeps_an_unchanged_endpoint_and_changes_its_weight_in_place() {
    let a = Server::model_endpoint(&[]);
    let b = Server::model_endpoint(&[]);
    let file = ConfigFile::new(
        "keep",
        &format!("embedded = false\nendpoints = \"a={}\"\n", a.url()),
    );
    let server = Server::start(&["--cores", "2", "--config", file.path()], &[]);
    let mut c = server.connect();
    for i in 0..6 {
        assert_eq!(post(&mut c, &risk(&format!("keep-{i}"), 30)).status, 200);
    }
    let (calls, weights) = endpoint_figures(&server, "a");
    assert_eq!((calls, weights), (6, vec![1.0, 1.0]));

    file.write(&format!(
        "embedded = false\nendpoints = \"a={};weight=3,b={}\"\n",
        a.url(),
        b.url()
    ));
    sighup(&server);
    let mut log = Vec::new();
    assert!(
        log_until(&server, &mut log, "SIGHUP: applied on all 2 shards"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("endpoints on each shard: kept [a], started [b], retired []")),
        "{log:#?}"
    );
    assert_eq!(pools(&server), [["a", "b"], ["a", "b"]]);
    // What the shards learned of `a` is kept (its breakers' call counts), the weight is new.
    assert_eq!(endpoint_figures(&server, "a"), (6, vec![3.0, 3.0]));
    assert_eq!(endpoint_figures(&server, "b"), (0, vec![1.0, 1.0]));
}

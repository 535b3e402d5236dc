//! Signals on the real binary: SIGHUP applies the reloadable settings of a changed config file
//! (visible in `/ai/admin/performance` and `/health/detailed`), logs the others as needing a
//! restart, and keeps the running configuration when the file is invalid; SIGTERM flushes the
//! Redis write-behind queue before exiting; a second SIGTERM exits at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/redis.rs"]
mod redisd;

use std::time::{Duration, Instant};

use common::{Client, ConfigFile, Response, Server};
use redisd::Redis;

fn signal(server: &Server, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.child.id() as i32, sig);
    }
}

fn warning_ms(server: &Server) -> f64 {
    let doc = server.connect().get("/ai/admin/performance").json();
    doc["alerts"]["thresholds"]["response_time_p95_ms"]["warning"]
        .as_f64()
        .unwrap()
}

fn batch_size(server: &Server) -> u64 {
    let doc = server.connect().get("/health/detailed").json();
    doc["limits"]["batch_size"].as_u64().unwrap()
}

/// Polls `f` until it returns `want` or 5 s pass; returns the last value.
fn settle<T: PartialEq + Copy>(want: T, mut f: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = f();
        if v == want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Collects stderr until a line contains `needle` (or 5 s pass).
fn log_until(server: &Server, log: &mut Vec<String>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        log.extend(server.stderr());
        if log.iter().any(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sighup_applies_reloadable_settings_and_a_bad_file_keeps_them() {
    let file = ConfigFile::new(
        "hup",
        "alert_response_time_ms = 400\nbatch_size = 32\nmax_connections = 20000\n",
    );
    let server = Server::start(&["--cores", "2", "--config", file.path()], &[]);
    assert_eq!(warning_ms(&server), 300.0);
    assert_eq!(batch_size(&server), 32);

    file.write("alert_response_time_ms = 2000\nbatch_size = 8\nmax_connections = 5\n");
    signal(&server, libc::SIGHUP);
    assert_eq!(settle(1500.0, || warning_ms(&server)), 1500.0);
    assert_eq!(settle(8, || batch_size(&server)), 8);
    let mut log = Vec::new();
    assert!(
        log_until(&server, &mut log, "SIGHUP: applied on all 2 shards"),
        "{log:?}"
    );
    let log = log.join("\n");
    assert!(
        log.contains("SIGHUP: ALERT_RESPONSE_TIME_MS: 400 -> 2000 (applied)"),
        "{log}"
    );
    assert!(
        log.contains("SIGHUP: BATCH_SIZE: 32 -> 8 (applied)"),
        "{log}"
    );
    assert!(
        log.contains("SIGHUP: ATLAS_MAX_CONNECTIONS: 20000 -> 5 (needs a restart, not applied)"),
        "{log}"
    );
    // The fixed setting really is not applied: 20 connections are still accepted.
    let clients: Vec<Client> = (0..20).map(|_| server.connect()).collect();
    for mut c in clients {
        assert_eq!(c.get("/health").status, 200);
    }

    // An invalid file: every problem is logged and nothing changes.
    file.write("alert_response_time_ms = 0\nbatch_size = 8\nnot_a_setting = 1\n");
    signal(&server, libc::SIGHUP);
    let mut log = Vec::new();
    assert!(
        log_until(&server, &mut log, "keeping the running one"),
        "{log:?}"
    );
    assert!(
        log_until(&server, &mut log, "unknown key `not_a_setting`"),
        "{log:?}"
    );
    assert!(
        log_until(&server, &mut log, "ALERT_RESPONSE_TIME_MS=\"0\""),
        "{log:?}"
    );
    assert_eq!(warning_ms(&server), 1500.0);
    assert_eq!(batch_size(&server), 8);
    assert_eq!(server.connect().get("/health/ready").status, 200);
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

fn result_keys(redis: &Redis) -> usize {
    redis
        .cli(&["--scan", "--pattern", "atlas:v1:r:*"])
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// Stores still queued when SIGTERM arrives reach Redis before the process exits: Redis is
/// stopped (SIGSTOP) for 2 s while results are computed, so their write-behind stores wait in
/// the queue; the drain ends long before Redis answers again, and only the flush waits.
#[test]
fn sigterm_flushes_queued_redis_stores() {
    let redis = Redis::start();
    let mut server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_REDIS_URL", &redis.url()),
            // Lookups give up after 200 ms (the breaker opens after 3); the workers' I/O
            // deadline is 20 x that, 4 s, longer than the stall.
            ("ATLAS_REDIS_TIMEOUT_MS", "200"),
            ("ATLAS_SHUTDOWN_GRACE_S", "10"),
        ],
    );
    let pid: i32 = redis
        .cli(&["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the redis-server this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    let mut c = server.connect();
    let n = 20;
    for age in 20..20 + n {
        let body = format!(
            r#"{{"user_id":"u-flush","input":{{"age":{age},"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}}}"#
        );
        assert_eq!(post(&mut c, &body).status, 200);
    }
    drop(c);
    let sent = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(15)).expect("exits");
    assert_eq!(status.code(), Some(0));
    waker.join().unwrap();
    assert!(
        sent.elapsed() > Duration::from_millis(500),
        "the exit waited for the stalled Redis"
    );
    assert_eq!(result_keys(&redis), n as usize, "every store reached Redis");
    let log = server.stderr().join("\n");
    assert!(log.contains("redis: flushed"), "{log}");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "within the grace: {:?}",
        sent.elapsed()
    );
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let mut server = Server::start(&["--cores", "1"], &[("ATLAS_SHUTDOWN_GRACE_S", "30")]);
    let mut stuck = server.connect();
    stuck.send(b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nh");
    std::thread::sleep(Duration::from_millis(100));
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("the second signal exits at once");
    assert_eq!(status.code(), Some(1));
}

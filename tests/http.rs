//! HTTP/1.1 behaviour of the real `atlas serve` binary over real sockets: keep-alive,
//! pipelining, HEAD, 100-continue, chunked bodies, every bad-input case, timeouts, the
//! connection cap, many concurrent connections, shard count and the mesh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{Client, Server};

#[test]
fn health_ready_and_head() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let r = c.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.header("Server"), Some("atlas"));
    assert_eq!(r.header("X-Atlas-Shard"), Some("0"));
    assert!(httpdate_like(r.header("Date").unwrap()));
    assert_eq!(r.header("Content-Type"), Some("application/json"));

    let r = c.get("/health/ready");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");

    c.send(b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_response(true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    // The next response starts right away: HEAD sent no body bytes.
    assert_eq!(c.get("/health").status, 200);
}

fn httpdate_like(s: &str) -> bool {
    s.ends_with(" GMT") && s.len() == 29
}

#[test]
fn keep_alive_serves_hundreds_of_requests_on_one_connection() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    for _ in 0..500 {
        let r = c.get("/health");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let paths = ["/health", "/nope", "/health/ready", "/health/detailed"];
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let p = paths[i % paths.len()];
        batch.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        expected.push(if p == "/nope" { 404 } else { 200 });
    }
    // A POST with a body in the middle of the pipeline must not desynchronise framing.
    batch.extend_from_slice(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nGET ");
    expected.push(404);
    batch.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    expected.push(200);
    c.send(&batch);
    for (i, want) in expected.iter().enumerate() {
        let r = c.read_response(false);
        assert_eq!(r.status, *want, "response {i}");
    }
}

#[test]
fn connection_close_and_http10() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(2)));

    let mut c = server.connect();
    c.send(b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
    assert!(c.closed_within(Duration::from_secs(2)));

    let mut c = server.connect();
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
}

/// Each case: raw request, expected status, expected error code, whether the server closes.
#[test]
fn bad_input_gets_clear_errors() {
    let server = Server::start(&["--cores", "1"], &[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: b\r\n".repeat(101)
    );
    let big_header = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17 * 1024)
    );
    let cases: Vec<(String, u16, &str, bool)> = vec![
        ("HELLO\r\n\r\n".into(), 400, "bad_request", true),
        ("POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 400, "bad_request", true),
        ("POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n".into(), 400, "bad_request", true),
        ("POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: three\r\n\r\n".into(), 400, "bad_request", true),
        ("GET /health HTTP/1.1\r\nHost: t\r\nX-Nul: a\0b\r\n\r\n".into(), 400, "bad_request", true),
        ("GET /health HTTP/1.1\r\nHost: t\r\nX-Fold: a\r\n folded\r\n\r\n".into(), 400, "bad_request", true),
        ("GET /health HTTP/1.1\r\n\r\n".into(), 400, "bad_request", true),
        (many_headers, 431, "header_fields_too_large", true),
        (big_header, 431, "header_fields_too_large", true),
        (long_target, 414, "uri_too_long", true),
        ("POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n".into(), 413, "payload_too_large", true),
        ("GET /health HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505, "http_version_not_supported", true),
        ("POST /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), 501, "unsupported_transfer_encoding", true),
        ("GET /health HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n".into(), 417, "expectation_failed", true),
        ("GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n".into(), 404, "not_found", false),
        ("DELETE /health HTTP/1.1\r\nHost: t\r\n\r\n".into(), 405, "method_not_allowed", false),
    ];
    for (raw, status, code, closes) in cases {
        let mut c = server.connect();
        c.send(raw.as_bytes());
        let r = c.read_response(false);
        let label = String::from_utf8_lossy(&raw.as_bytes()[..raw.len().min(60)]).to_string();
        assert_eq!(r.status, status, "{label:?}");
        assert_eq!(r.error_code(), code, "{label:?}");
        assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty());
        if status == 405 {
            assert_eq!(r.header("Allow"), Some("GET, HEAD"));
        }
        if closes {
            assert_eq!(r.header("Connection"), Some("close"), "{label:?}");
            assert!(
                c.closed_within(Duration::from_secs(2)),
                "{label:?} should close"
            );
        } else {
            assert_eq!(
                c.get("/health").status,
                200,
                "{label:?} should keep the connection"
            );
        }
    }
}

#[test]
fn chunked_bodies_are_framed_correctly() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    c.send(b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
    assert_eq!(c.read_response(false).status, 404);
    assert_eq!(c.get("/health").status, 200);

    let mut c = server.connect();
    c.send(b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "bad_chunked_body");
    assert!(c.closed_within(Duration::from_secs(2)));

    // A chunked body over ATLAS_MAX_BODY_BYTES is refused as soon as a chunk size says so.
    let small = Server::start(&["--cores", "1"], &[("ATLAS_MAX_BODY_BYTES", "100")]);
    let mut c = small.connect();
    c.send(b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n");
    assert_eq!(c.read_response(false).status, 413);
}

#[test]
fn expect_100_continue() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response(false);
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    assert_eq!(c.read_response(false).status, 200);

    // For a path that does not exist the body is refused unread: no 100, a 404, and close.
    let mut c = server.connect();
    c.send(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_response(false).status, 404);
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn slow_header_times_out_with_408() {
    let server = Server::start(&["--cores", "1"], &[("ATLAS_HEADER_TIMEOUT_MS", "300")]);
    let mut c = server.connect();
    let start = Instant::now();
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"X-Slow: 1\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 408);
    assert_eq!(r.error_code(), "request_timeout");
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let server = Server::start(&["--cores", "1"], &[("ATLAS_KEEPALIVE_TIMEOUT_S", "1")]);
    let mut c = server.connect();
    assert_eq!(c.get("/health").status, 200);
    let start = Instant::now();
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(start.elapsed() >= Duration::from_millis(800));
}

#[test]
fn connection_cap_answers_503_and_closes() {
    let server = Server::start(&["--cores", "1"], &[("ATLAS_MAX_CONNECTIONS", "3")]);
    let mut held: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    for c in &mut held {
        assert_eq!(c.get("/health").status, 200);
    }
    let mut extra = server.connect();
    let r = extra.read_response(false);
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "too_many_connections");
    assert!(extra.closed_within(Duration::from_secs(2)));
    // Freeing a slot lets a new connection in.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = server.connect();
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        if c.read_response(false).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_thousand_concurrent_connections() {
    common::raise_nofile();
    let server = Server::start(&[], &[]);
    let mut clients: Vec<std::net::TcpStream> = (0..2000)
        .map(|_| std::net::TcpStream::connect(server.addr).expect("connect"))
        .collect();
    for c in &mut clients {
        c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let mut shards = HashSet::new();
    for c in clients {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = Client::from_stream(c).read_response(false);
        assert_eq!(r.status, 200);
        shards.insert(r.header("X-Atlas-Shard").unwrap().to_string());
    }
    assert_eq!(
        shards.len(),
        server.shards,
        "every shard accepts: {shards:?}"
    );
}

#[test]
fn shard_counts_and_mesh_broadcast() {
    let one = Server::start(&["--cores", "1"], &[]);
    assert_eq!(one.shards, 1);
    let mut c = one.connect();
    let d = c.get("/health/detailed").json();
    assert_eq!(d["shards"].as_array().unwrap().len(), 1);

    let two = Server::start(&["--cores", "2"], &[]);
    assert_eq!(two.shards, 2);
    let mut seen = HashSet::new();
    for _ in 0..64 {
        let mut c = two.connect();
        let r = c.get("/health/detailed");
        let d = r.json();
        assert_eq!(d["status"], "ok");
        let shards = d["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 2);
        for (i, s) in shards.iter().enumerate() {
            assert_eq!(s["shard"], i, "broadcast answers come back in shard order");
            assert!(s["requests_total"].is_u64());
        }
        seen.insert(r.header("X-Atlas-Shard").unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "both shards accept connections");
}

#[test]
fn a_trickled_body_gets_an_overall_deadline() {
    let server = Server::start(&["--cores", "1"], &[("ATLAS_HEADER_TIMEOUT_MS", "1000")]);
    let mut c = server.connect();
    let start = Instant::now();
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
    // One byte every 300 ms: each read is well inside the timeout, the whole body is not.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        // Writes after the server answered and closed may fail; that is the point.
        let _ = c.stream().write_all(b"x");
    }
    let r = c.read_response(false);
    assert_eq!(r.status, 408);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_silent_new_connection_gets_the_header_timeout_not_the_keep_alive_one() {
    let server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_HEADER_TIMEOUT_MS", "300"),
            ("ATLAS_KEEPALIVE_TIMEOUT_S", "30"),
        ],
    );
    let mut c = server.connect();
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn http10_expect_is_ignored_and_lenient_chunk_framing_is_refused() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    c.send(b"GET /health HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(
        c.read_response(false).status,
        200,
        "no 100 Continue for HTTP/1.0"
    );

    // A size line with junk after a bare CR must not be read as a valid chunk: a proxy in
    // front could frame it differently (request smuggling).
    let mut c = server.connect();
    c.send(b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 zz\nhello\r\n0\rjunk\n\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "bad_chunked_body")
    );
    assert!(c.closed_within(Duration::from_secs(3)));
}

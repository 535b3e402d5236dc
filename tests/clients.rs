//! Misbehaving clients against the real binary (two shards): half-closed sockets, resets in
//! the middle of a request and of a response, a pipelined burst followed by a close, and
//! thousands of idle keep-alive connections. No shard stalls, other clients are served
//! meanwhile, and afterwards the server's open descriptors (`/proc/PID/fd`), connection
//! gauges and requests in flight are back where they started.
//!
//! The idle-connection test opens the issue's 10 000 connections (about 5 s on a 2-core
//! machine with a debug build), fewer when the open-file hard limit is lower;
//! `ATLAS_TEST_IDLE_CONNECTIONS=N` sets the count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Server};

fn risk_body(user: &str) -> String {
    format!(
        r#"{{"user_id":"{user}","input":{{"age":52,"horizon_years":8,"income_stability":2,"loss_tolerance":2,"experience":5}}}}"#
    )
}

fn risk_request(user: &str) -> Vec<u8> {
    let body = risk_body(user);
    format!(
        "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn start() -> Server {
    Server::start(&["--cores", "2"], &[])
}

fn fds(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .count()
}

/// Open connections and requests in flight summed over shards, as `/health/detailed` says
/// (its own connection included).
fn open_and_in_flight(server: &Server) -> (u64, u64) {
    let d = server.connect().get("/health/detailed").json();
    assert_eq!(d["status"], "ok", "every shard answered: {d}");
    d["shards"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(o, f), s| {
            (
                o + s["connections_open"].as_u64().unwrap(),
                f + s["in_flight"].as_u64().unwrap(),
            )
        })
}

/// Waits until the server is back to `baseline` descriptors with only the asking connection
/// open and nothing in flight.
fn back_to_baseline(server: &Server, baseline: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (open, in_flight) = open_and_in_flight(server);
        let now = fds(server);
        if open == 1 && in_flight == 0 && now == baseline {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now} descriptors (baseline {baseline}), {open} connections open, \
             {in_flight} in flight"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Baseline descriptors once the server has settled (a first request served).
fn baseline(server: &Server) -> usize {
    assert_eq!(server.connect().get("/health").status, 200);
    back_to_baseline(server, fds(server), "settling");
    fds(server)
}

/// A client that is served promptly while the others misbehave.
fn probe(server: &Server, what: &str) {
    for i in 0..4 {
        let start = Instant::now();
        let mut c = server.connect();
        c.send(&risk_request(&format!("probe-{what}-{i}")));
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "{what}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: probe took {:?}",
            start.elapsed()
        );
    }
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a valid struct.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    drop(stream);
}

/// "Nothing lost": a client that half-closes after sending gets an answer to every request
/// it sent (one request, and a pipelined burst of 60), in order, then an orderly close.
#[test]
fn half_closed_clients_get_every_answer() {
    let server = start();
    let base = baseline(&server);

    let mut c = server.connect();
    c.send(&risk_request("half-1"));
    c.stream().shutdown(Shutdown::Write).unwrap();
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert!(c.closed_within(Duration::from_secs(2)), "closed after");

    let mut c = server.connect();
    let mut burst = Vec::new();
    for i in 0..60 {
        if i % 3 == 0 {
            burst.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        } else {
            burst.extend_from_slice(&risk_request(&format!("burst-{}", i % 7)));
        }
    }
    c.send(&burst);
    c.stream().shutdown(Shutdown::Write).unwrap();
    for i in 0..60 {
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|| panic!("answer {i} of 60 missing"));
        assert_eq!(r.status, 200, "answer {i}");
        if i % 3 == 0 {
            assert_eq!(r.json()["status"], "ok", "answers in order ({i})");
        } else {
            assert_eq!(r.json()["operation"], "risk_assessment", "in order ({i})");
        }
    }
    assert!(c.closed_within(Duration::from_secs(2)));

    // A half-close before the request is complete: the server gives up on it and closes.
    let mut c = server.connect();
    c.send(b"POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n{\"us");
    c.stream().shutdown(Shutdown::Write).unwrap();
    assert!(c.closed_within(Duration::from_secs(3)));
    back_to_baseline(&server, base, "half-closed clients");
}

/// "Nothing lost": resets at any point cost the server nothing: every other client is
/// served meanwhile, and descriptors, open connections and requests in flight return to
/// their baseline (nothing leaks, no request stays accounted as in flight).
#[test]
fn resets_mid_request_and_mid_response_leave_nothing_behind() {
    let server = start();
    let base = baseline(&server);
    for round in 0..3 {
        let mut streams = Vec::new();
        for i in 0..15 {
            // Mid-head.
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Le")
                .unwrap();
            streams.push(s);
            // Mid-body.
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n{\"user_id\":")
                .unwrap();
            streams.push(s);
            // Mid-response: many large answers pipelined, none read.
            let mut s = TcpStream::connect(server.addr).unwrap();
            let mut many = Vec::new();
            for _ in 0..40 {
                many.extend_from_slice(b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n");
            }
            many.extend_from_slice(&risk_request(&format!("reset-{round}-{i}")));
            s.write_all(&many).unwrap();
            streams.push(s);
        }
        std::thread::sleep(Duration::from_millis(100));
        for s in streams {
            reset(s);
        }
        probe(&server, &format!("resets round {round}"));
    }
    back_to_baseline(&server, base, "after resets");
}

/// "Nothing lost": a client that pipelines a burst and closes without reading leaves no
/// request in flight and no connection open, and the shard keeps serving others.
#[test]
fn a_pipelined_burst_then_close_does_not_stall_the_shard() {
    let server = start();
    let base = baseline(&server);
    for round in 0..4 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let mut burst = Vec::new();
        for i in 0..200 {
            burst.extend_from_slice(&risk_request(&format!("pb-{round}-{}", i % 50)));
        }
        s.write_all(&burst).unwrap();
        drop(s);
        probe(&server, &format!("burst round {round}"));
    }
    back_to_baseline(&server, base, "after bursts");
}

/// The issue's 10 000, or what the open-file limit leaves room for (this process and the
/// server each hold one descriptor per connection); `ATLAS_TEST_IDLE_CONNECTIONS` overrides.
fn idle_count(nofile: u64) -> usize {
    std::env::var("ATLAS_TEST_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| 10_000.min(nofile.saturating_sub(256) as usize))
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// "Nothing lost": with thousands of idle keep-alive connections (each served one request
/// first), every shard still answers new clients promptly; once they close, descriptors
/// and connections return to baseline, and resident memory to within 4 MiB of where it was.
#[test]
fn many_idle_connections_stall_no_shard_and_are_given_back() {
    let n = idle_count(common::raise_nofile());
    let server = start();
    let base = baseline(&server);
    // Warm the allocator with a first round so the comparison is with a used process.
    probe(&server, "warm-up");
    let rss_before = rss_kib(server.child.id());
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for s in &mut idle {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let mut shards = [0usize; 2];
    let mut buf = [0u8; 1024];
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "closed while idle");
            got.extend_from_slice(&buf[..k]);
        }
        let text = String::from_utf8_lossy(&got);
        let shard = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Atlas-Shard: "))
            .unwrap();
        shards[shard.trim().parse::<usize>().unwrap()] += 1;
    }
    eprintln!(
        "{n} idle connections opened and served in {:?}, per shard {shards:?}",
        opened.elapsed()
    );
    assert!(shards.iter().all(|&k| k > 0), "both shards hold some");
    let (open, _) = open_and_in_flight(&server);
    assert_eq!(open as usize, n + 1);
    // Every shard answers new clients promptly (new connections spread over both).
    let mut answered_by = [false; 2];
    for i in 0..20 {
        let start = Instant::now();
        let mut c = Client::connect(server.addr);
        c.send(&risk_request(&format!("idle-probe-{i}")));
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        answered_by[r.header("X-Atlas-Shard").unwrap().parse::<usize>().unwrap()] = true;
    }
    assert!(answered_by.iter().all(|&b| b), "both shards answered");
    let rss_during = rss_kib(server.child.id());
    drop(idle);
    back_to_baseline(&server, base, "after idle connections");
    // The freed per-connection memory goes back to the OS (`runtime::trim`, within about
    // 6 s of the drop): back within 4 MiB of where it was.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rss_after = loop {
        let now = rss_kib(server.child.id());
        if now <= rss_before + 4 * 1024 || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "RSS: {rss_before} KiB before, {rss_during} KiB with {n} idle, {rss_after} KiB after"
    );
    assert!(
        rss_after <= rss_before + 4 * 1024,
        "RSS {rss_before} → {rss_during} → {rss_after} KiB"
    );
}

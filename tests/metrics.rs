//! `GET /metrics` of the real binary: a scrape taken under load passes `promtool check
//! metrics`, and the counters agree with what the client sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;

use common::{Client, Server};

fn post(c: &mut Client, body: &str) -> u16 {
    c.send(
        format!(
            "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
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

fn scrape(server: &Server) -> String {
    let r = server.connect().get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    String::from_utf8(r.body).unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("{series} missing"))
        .parse()
        .unwrap()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; tests/run.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool: {complaints}"
    );
}

#[test]
fn scrape_under_load_passes_promtool_and_counts_agree() {
    let server = Server::start(&["--cores", "2"], &[]);
    // Load in the background while scraping.
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let mut c = server.connect();
            thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(post(&mut c, &risk(&format!("load-{t}-{}", i % 10))), 200);
                }
            })
        })
        .collect();
    for _ in 0..5 {
        promtool_check(&scrape(&server));
    }
    for l in loaders {
        l.join().unwrap();
    }

    // Known traffic on top: 3 requests for one key (1 miss, 2 hits), 1 bad request.
    let before = scrape(&server);
    let ok = r#"ai_optimized_requests_total{operation="risk_assessment",status="200"}"#;
    let bad = r#"ai_optimized_requests_total{operation="risk_assessment",status="400"}"#;
    let ok_before = value(&before, ok);
    assert_eq!(ok_before, 200.0, "4 loaders x 50 requests");
    let mut c = server.connect();
    for _ in 0..3 {
        assert_eq!(post(&mut c, &risk("counted")), 200);
    }
    assert_eq!(post(&mut c, "{not json"), 400);
    let after = scrape(&server);
    promtool_check(&after);
    assert_eq!(value(&after, ok) - ok_before, 3.0);
    assert_eq!(value(&after, bad), 1.0);
    let hits = r#"ai_cache_operations_total{operation="risk_assessment",result="hit"}"#;
    let misses = r#"ai_cache_operations_total{operation="risk_assessment",result="miss"}"#;
    assert_eq!(value(&after, hits) - value(&before, hits), 2.0);
    assert_eq!(value(&after, misses) - value(&before, misses), 1.0);
    assert_eq!(
        value(&after, hits) + value(&after, misses),
        value(&after, ok),
        "every 200 was a hit or a miss"
    );
    let count =
        r#"ai_optimized_request_duration_seconds_count{operation="risk_assessment",cache="hit"}"#;
    assert_eq!(value(&after, count), value(&after, hits));
}

#[test]
fn metrics_can_be_turned_off() {
    let server = Server::start(&["--cores", "1"], &[("ENABLE_PROMETHEUS", "false")]);
    assert_eq!(server.connect().get("/metrics").status, 404);
}

fn wait_for(server: &Server, series: &str, want: f64, limit: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let text = scrape(server);
        let found = text
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.parse::<f64>().ok());
        if found == Some(want) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never became {want}; last: {found:?}"
        );
        thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_slow_model_fires_the_response_time_alert_and_it_resolves() {
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
        ],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let mut c = server.connect();
            let stop = std::sync::Arc::clone(&stop);
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(post(&mut c, &risk(&format!("slow-{t}-{i}"))), 200);
                    i += 1;
                }
            })
        })
        .collect();
    let firing = r#"ai_alerts_active{alert="response_time",severity="emergency"}"#;
    let text = wait_for(&server, firing, 1.0, std::time::Duration::from_secs(15));
    assert!(value(&text, "ai_health_score") < 100.0);
    promtool_check(&text);
    let detailed = server.connect().get("/health/detailed").json();
    assert_eq!(detailed["monitor"]["alerts"][0]["alert"], "response_time");
    let (code, out) = status(&server.url());
    assert_eq!(code, Some(1), "an emergency alert is unhealthy: {out}");
    assert!(
        out.contains("UNHEALTHY") && out.contains("response_time (emergency)"),
        "{out}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }
    let text = wait_for(&server, firing, 0.0, std::time::Duration::from_secs(15));
    assert!(
        value(&text, "ai_alert_events_total") >= 2.0,
        "fired and resolved"
    );
}

/// Runs `atlas status --url URL`: (exit code, stdout).
fn status(url: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atlas"))
        .args(["status", "--url", url])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn atlas_status_reports_a_healthy_instance_and_an_unreachable_one() {
    let server = Server::start(&["--cores", "2"], &[]);
    let (code, out) = status(&server.url());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("status: ok") && out.ends_with("healthy\n"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        2,
        "one row per shard: {out}"
    );
    let dead = format!("http://{}", server.addr);
    drop(server);
    assert_eq!(status(&dead).0, Some(2));
}

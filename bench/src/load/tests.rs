//! End-to-end runs of the generator against tiny in-test HTTP servers on 127.0.0.1: counts,
//! hit rate, keep-alive, the open-loop schedule, and bad peers (refused, closing mid-response,
//! not HTTP). Each run lasts about a second or less.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;

use super::stats::{ErrorKind, OpStats};
use super::*;

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    args: LoadArgs,
}

fn config(addr: SocketAddr, extra: &[&str]) -> Config {
    let url = format!("http://{addr}");
    let mut argv = vec!["atlas-bench", "--url", &url, "--quiet"];
    argv.extend_from_slice(extra);
    let cli = TestCli::try_parse_from(argv).unwrap();
    validate(&cli.args).unwrap_or_else(|e| panic!("{e:?}"))
}

fn run_quiet(cfg: &Config) -> (Outcome, String) {
    let mut out = Vec::new();
    let outcome = run(cfg, &mut out).unwrap();
    (outcome, String::from_utf8(out).unwrap())
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// A 200 with `X-Atlas-Cache: hit`, after `delay`.
    Hit { delay: Duration },
    /// Half a response, then close.
    HalfThenClose,
    /// A line that is not HTTP.
    Garbage,
    /// `GET /health` only: a 200 naming the accepting shard, as Atlas's `/health` does; any
    /// other request line gets a 400.
    Health,
}

struct TestServer {
    addr: SocketAddr,
    /// Requests read (heads with their bodies).
    requests: Arc<AtomicU64>,
    /// Connections accepted.
    accepted: Arc<AtomicU64>,
}

fn serve(b: Behaviour) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let (r, a) = (requests.clone(), accepted.clone());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            a.fetch_add(1, Ordering::Relaxed);
            let r = r.clone();
            thread::spawn(move || answer(stream, b, &r));
        }
    });
    TestServer {
        addr,
        requests,
        accepted,
    }
}

/// Reads requests (head, then `Content-Length` body) and answers each per `b`.
fn answer(stream: TcpStream, b: Behaviour, requests: &AtomicU64) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        let mut request_line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if request_line.is_empty() {
                request_line = line.clone();
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if !matches!(b, Behaviour::Health) {
            serde_json::from_slice::<serde_json::Value>(&body).expect("the body is JSON");
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let reply: &[u8] = match b {
            Behaviour::Health if request_line == "GET /health HTTP/1.1\r\n" && len == 0 => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Atlas-Shard: 0\r\n\r\n{}"
            }
            Behaviour::Health => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            Behaviour::Hit { delay } => {
                thread::sleep(delay);
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Atlas-Cache: hit\r\nX-Atlas-Batch-Size: 0\r\n\r\n{\"ok\":true}"
            }
            Behaviour::HalfThenClose => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"part");
                return;
            }
            Behaviour::Garbage => b"SSH-2.0-nope\r\n\r\n",
        };
        if w.write_all(reply).is_err() {
            return;
        }
    }
}

fn err(s: &OpStats, k: ErrorKind) -> u64 {
    s.errors[k as usize]
}

#[test]
fn closed_loop_counts_match_the_server_and_reuse_one_connection_per_user() {
    let server = serve(Behaviour::Hit {
        delay: Duration::ZERO,
    });
    let cfg = config(
        server.addr,
        &[
            "--users",
            "6",
            "--requests",
            "25",
            "--threads",
            "2",
            "--duration",
            "20",
        ],
    );
    let (outcome, text) = run_quiet(&cfg);
    let all = outcome.stats.overall();
    assert_eq!(all.attempted(), 150);
    assert_eq!(all.responses, 150);
    assert_eq!(all.ok, 150);
    assert_eq!(all.error_count(), 0);
    assert_eq!(all.hit_rate(), Some(1.0));
    assert_eq!(all.mean_batch(), None, "hits carry batch size 0");
    assert_eq!(all.statuses.get(&200), Some(&150));
    assert_eq!(server.requests.load(Ordering::Relaxed), 150);
    assert_eq!(server.accepted.load(Ordering::Relaxed), 6, "keep-alive");
    assert_eq!(outcome.stats.connects, 6);
    // Every operation of the default mix was used.
    assert!(outcome.stats.ops.iter().all(|o| o.responses > 0));
    assert!(outcome.pass, "{text}");
    assert!(
        text.contains("✅ Cache Hit Rate Goal (>=70%): 100.0% PASS"),
        "{text}"
    );
    // The assessment names the workload it measured.
    assert!(
        text.contains("workload: users: each user asks about 3 inputs"),
        "{text}"
    );
    let v = report::to_json(&outcome.stats, &outcome_info(&cfg), &[]);
    assert_eq!(v["workload"]["kind"], "users");
}

/// The run's description as the report gets it (what `run` builds).
fn outcome_info(cfg: &Config) -> report::RunInfo {
    report::RunInfo {
        model: String::new(),
        url: cfg.url.clone(),
        threads: 1,
        elapsed: Duration::from_secs(1),
        cpu: Duration::ZERO,
        server_cpu: None,
        open_loop: false,
        workload: cfg.workload_json.clone(),
        workload_line: cfg.plan.workload.describe(),
        get_path: None,
    }
}

#[test]
fn the_seeds_own_command_line_is_accepted_and_distinct_is_the_old_workload() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    // As the brief runs its load test: both bounds, the closed loop ends at the first.
    let cfg = config(
        addr,
        &[
            "--users",
            "10000",
            "--requests",
            "5",
            "--duration",
            "600",
            "--target-p95",
            "400",
        ],
    );
    assert!(cfg.plan.workload.repeat.is_some());
    assert_eq!(cfg.workload_json["user_inputs"], 3);
    let cfg = config(addr, &["--users", "50", "--requests", "20", "--distinct"]);
    assert!(cfg.plan.workload.repeat.is_none());
    assert_eq!(cfg.workload_json["kind"], "distinct");
    assert!(TestCli::try_parse_from([
        "x",
        "--url",
        "http://127.0.0.1:1",
        "--requests",
        "1",
        "--distinct",
        "--user-inputs",
        "2"
    ])
    .is_err());
    let cli = TestCli::try_parse_from([
        "x",
        "--url",
        "http://127.0.0.1:1",
        "--requests",
        "1",
        "--user-inputs",
        "0",
        "--new-input-share",
        "2",
    ])
    .unwrap();
    let all = validate(&cli.args).err().unwrap().join("\n");
    assert!(
        all.contains("--user-inputs") && all.contains("--new-input-share"),
        "{all}"
    );
}

#[test]
fn path_mode_sends_gets_and_judges_no_cache_goal() {
    let server = serve(Behaviour::Health);
    let cfg = config(
        server.addr,
        &["--path", "/health", "--users", "3", "--requests", "10"],
    );
    let (outcome, text) = run_quiet(&cfg);
    let all = outcome.stats.overall();
    assert_eq!(all.attempted(), 30);
    assert_eq!(all.statuses.get(&200), Some(&30), "{text}");
    assert_eq!(server.requests.load(Ordering::Relaxed), 30);
    assert_eq!(all.hop_share(), None, "/health names no owner");
    // Two goals only, both met: the run passes without any X-Atlas-Cache header.
    assert!(outcome.pass, "{text}");
    assert!(!text.contains("Cache Hit Rate Goal"), "{text}");
    assert!(text.contains("GET /health "), "{text}");
    assert!(!text.contains("portfolio_analysis"), "{text}");

    // The AI-operation flags cannot be combined with --path; a path must look like one.
    let url = format!("http://{}", server.addr);
    assert!(
        TestCli::try_parse_from(["x", "--url", &url, "--path", "/h", "--keyspace", "3"]).is_err()
    );
    let cli = TestCli::try_parse_from(["x", "--url", &url, "--path", "health", "--requests", "1"])
        .unwrap();
    assert!(validate(&cli.args).err().unwrap()[0].starts_with("--path"));
}

#[test]
fn open_loop_sends_the_scheduled_count_in_about_the_duration() {
    let server = serve(Behaviour::Hit {
        delay: Duration::ZERO,
    });
    let cfg = config(
        server.addr,
        &[
            "--rate",
            "200",
            "--duration",
            "1",
            "--connections",
            "8",
            "--operations",
            "risk_assessment",
        ],
    );
    let (outcome, _) = run_quiet(&cfg);
    let all = outcome.stats.overall();
    assert_eq!(all.attempted(), 200);
    assert_eq!(all.responses, 200, "unsent {}", all.unsent);
    assert_eq!(server.requests.load(Ordering::Relaxed), 200);
    assert!(outcome.stats.ops[workload::Operation::RiskAssessment.index()].responses == 200);
    // Scheduled over one second: not sent in a burst, not much later either.
    assert!(
        outcome.elapsed >= Duration::from_millis(990) && outcome.elapsed < Duration::from_secs(3),
        "{:?}",
        outcome.elapsed
    );
}

#[test]
fn open_loop_latency_counts_the_wait_for_a_connection() {
    // One connection, 20 ms per answer (50/s), 100 scheduled per second: the queue grows, so
    // latency from the scheduled time grows while the service time stays at ~20 ms.
    let server = serve(Behaviour::Hit {
        delay: Duration::from_millis(20),
    });
    let cfg = config(
        server.addr,
        &[
            "--rate",
            "100",
            "--duration",
            "0.6",
            "--connections",
            "1",
            "--threads",
            "1",
        ],
    );
    let (outcome, _) = run_quiet(&cfg);
    let all = outcome.stats.overall();
    assert_eq!(all.attempted(), 60);
    assert!(all.unsent > 10, "unsent {}", all.unsent);
    assert!(all.responses >= 20, "responses {}", all.responses);
    let service_p50 = all.service.value_at_percentile(50.0);
    let latency_max = all.latency.max();
    assert!(
        (19_000..60_000).contains(&service_p50),
        "service p50 {service_p50} µs"
    );
    assert!(
        latency_max > 150_000,
        "latency from the schedule must include queueing: max {latency_max} µs"
    );
}

#[test]
fn refused_connections_are_counted_as_connect_errors_without_hanging() {
    // Bind then drop: nothing listens on the port.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = config(addr, &["--users", "3", "--requests", "2"]);
    let (outcome, text) = run_quiet(&cfg);
    let all = outcome.stats.overall();
    assert_eq!(all.attempted(), 6);
    assert_eq!(err(&all, ErrorKind::Connect), 6);
    assert_eq!(all.responses, 0);
    assert!(!outcome.pass);
    assert!(text.contains("❌ Success Rate Goal"), "{text}");
}

#[test]
fn a_server_closing_mid_response_or_speaking_garbage_is_reported_by_kind() {
    let half = serve(Behaviour::HalfThenClose);
    let (outcome, _) = run_quiet(&config(half.addr, &["--users", "2", "--requests", "3"]));
    let all = outcome.stats.overall();
    assert_eq!(all.attempted(), 6);
    assert_eq!(err(&all, ErrorKind::Closed), 6, "{:?}", all.errors);

    let garbage = serve(Behaviour::Garbage);
    let (outcome, _) = run_quiet(&config(garbage.addr, &["--users", "2", "--requests", "3"]));
    let all = outcome.stats.overall();
    assert_eq!(err(&all, ErrorKind::Protocol), 6, "{:?}", all.errors);
}

#[test]
fn a_silent_server_times_out_and_the_duration_bounds_a_closed_loop() {
    // Accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let cfg = config(
        addr,
        &["--users", "2", "--duration", "0.3", "--timeout", "0.5"],
    );
    let start = std::time::Instant::now();
    let (outcome, _) = run_quiet(&cfg);
    let all = outcome.stats.overall();
    assert_eq!(err(&all, ErrorKind::Timeout), 2, "{:?}", all.errors);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn bad_flags_are_all_reported_at_once() {
    let cli = TestCli::try_parse_from([
        "x",
        "--url",
        "https://127.0.0.1:1",
        "--operations",
        "nope=1",
        "--keyspace",
        "0",
        "--rate",
        "100",
    ])
    .unwrap();
    let errs = validate(&cli.args).err().unwrap();
    let all = errs.join("\n");
    for want in ["--url", "--operations", "--keyspace", "--duration"] {
        assert!(all.contains(want), "{want} missing from {all}");
    }
    assert!(parse_url("http://127.0.0.1:8083/").is_ok());
    assert_eq!(
        parse_url("http://127.0.0.1:8083").unwrap().1,
        "127.0.0.1:8083"
    );
    assert!(parse_url("http://127.0.0.1:8083/ai").is_err());
}

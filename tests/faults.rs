//! Fault injection on the model tier, with real processes: `atlas serve` routing to a fake
//! model endpoint (a std `TcpListener` thread in this test) that closes mid-response, answers
//! garbage, answers the wrong number of outputs, answers a byte at a time, resets the
//! connection, or answers twice. Every client request ends with the right status within its
//! deadline, the endpoint's breaker opens, and nothing from a bad answer is ever cached.
//!
//! "Nothing lost" here: every request sent gets exactly one answer (a 2xx from a good answer,
//! else 502/504/503 with the documented code) before `REQUEST_TIMEOUT_MS` plus a small
//! slack; the cache stores results only from good answers (`ai_cache_operations_total{result=
//! "store"}` counts exactly those, and a later identical request is a miss, not a hit).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Response, Server};
use serde_json::{json, Value};

/// How the fake endpoint answers `POST /v1/batch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// One `{"result": {"fake": ...}}` per input.
    Good,
    /// A head promising 500 bytes, a few of them, then close.
    CloseMidResponse,
    /// Bytes that are not HTTP, then the connection stays open.
    Garbage,
    /// A 200 whose body is not JSON.
    GarbageBody,
    /// A 200 whose outputs are not objects (`"result": 42`).
    NotAnObject,
    /// One output more than inputs.
    WrongCount,
    /// A good answer, one byte every 10 ms (longer than the endpoint timeout).
    Slow,
    /// Read the request, then reset the connection (RST).
    Reset,
    /// A good answer, then 20 ms later a second, stale answer on the same connection.
    AnswerTwice,
    /// No answer while the mode stays `Hold`; a good one once it changes.
    Hold,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        [
            Mode::Good,
            Mode::CloseMidResponse,
            Mode::Garbage,
            Mode::GarbageBody,
            Mode::NotAnObject,
            Mode::WrongCount,
            Mode::Slow,
            Mode::Reset,
            Mode::AnswerTwice,
            Mode::Hold,
        ][usize::from(v)]
    }
}

/// A fake model endpoint: answers `GET /health` with 200 always, `POST /v1/batch` per its
/// current mode. Stops when dropped.
struct Fake {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    batches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn start(mode: Mode) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let fake = Fake {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(AtomicU8::new(mode as u8)),
            batches: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (mode, batches, stop) = (
            Arc::clone(&fake.mode),
            Arc::clone(&fake.batches),
            Arc::clone(&fake.stop),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (mode, batches, stop) =
                            (Arc::clone(&mode), Arc::clone(&batches), Arc::clone(&stop));
                        thread::spawn(move || serve(stream, &mode, &batches, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        fake
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The answer to a batch of `n` inputs, each result marked with `tag`.
fn answer(n: usize, tag: &str) -> Vec<u8> {
    let outputs: Vec<Value> = (0..n)
        .map(|i| json!({"result": {"fake": tag, "i": i}, "confidence": 0.9, "volatility": 0.1}))
        .collect();
    let body = json!({"outputs": outputs, "endpoint_id": "fake", "model_version": "f"}).to_string();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

fn respond_json(stream: &mut TcpStream, body: &str) -> std::io::Result<()> {
    stream.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// One connection: reads requests (keep-alive) and answers each per the mode at that moment.
fn serve(stream: TcpStream, mode: &AtomicU8, batches: &AtomicUsize, stop: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) if !stop.load(Ordering::Relaxed) && line.is_empty() => continue,
            Err(_) => return,
        }
        let Some(body) = common::read_request_body(&mut reader) else {
            return;
        };
        let stream = reader.get_mut();
        if line.starts_with("GET /health") {
            if respond_json(stream, "{}").is_err() {
                return;
            }
            continue;
        }
        batches.fetch_add(1, Ordering::SeqCst);
        let inputs = serde_json::from_slice::<Value>(&body).unwrap()["inputs"]
            .as_array()
            .unwrap()
            .len();
        let result = match Mode::from_u8(mode.load(Ordering::SeqCst)) {
            Mode::Good => stream.write_all(&answer(inputs, "good")),
            Mode::CloseMidResponse => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"outputs\":[{\"res",
                );
                return;
            }
            Mode::Garbage => stream.write_all(b"\x00\x01\x02 this is not HTTP \xff\r\n\r\n"),
            Mode::GarbageBody => respond_json(stream, "<html>not json</html>"),
            Mode::NotAnObject => {
                let outputs: Vec<Value> = (0..inputs)
                    .map(|_| json!({"result": 42, "confidence": 0.9}))
                    .collect();
                respond_json(stream, &json!({ "outputs": outputs }).to_string())
            }
            Mode::WrongCount => stream.write_all(&answer(inputs + 1, "wrong-count")),
            Mode::Hold => {
                while Mode::from_u8(mode.load(Ordering::SeqCst)) == Mode::Hold
                    && !stop.load(Ordering::Relaxed)
                {
                    thread::sleep(Duration::from_millis(5));
                }
                stream.write_all(&answer(inputs, "held"))
            }
            Mode::Slow => {
                for b in answer(inputs, "slow") {
                    if stream.write_all(&[b]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            }
            Mode::Reset => {
                // SO_LINGER 0: close sends RST instead of FIN.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt on a socket this thread owns, with a valid struct.
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(stream),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as u32,
                    );
                }
                return;
            }
            Mode::AnswerTwice => {
                let first = stream.write_all(&answer(inputs, "good"));
                thread::sleep(Duration::from_millis(20));
                first.and_then(|()| stream.write_all(&answer(1, "stale")))
            }
        };
        if result.is_err() {
            return;
        }
    }
}

fn risk(user: &str) -> Value {
    json!({"user_id": user, "input": {"age": 41, "horizon_years": 15,
        "income_stability": 3, "loss_tolerance": 4, "experience": 2}})
}

fn post(c: &mut Client, body: &Value) -> Response {
    let text = body.to_string();
    c.send(
        format!(
            "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

/// Request deadline of the gateways below, and the slack allowed on top of it.
const REQUEST_TIMEOUT_MS: u64 = 2000;
const SLACK: Duration = Duration::from_millis(700);

/// A gateway whose only model endpoint is `fake` (400 ms per call).
fn gateway(fake: &Fake) -> Server {
    let spec = format!("fake={};timeout_ms=400", fake.url());
    Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_EMBEDDED", "false"),
            ("ATLAS_ENDPOINTS", spec.as_str()),
            ("ATLAS_HEALTH_INTERVAL_S", "60"),
            ("REQUEST_TIMEOUT_MS", "2000"),
            ("BATCH_TIMEOUT_MS", "1"),
        ],
    )
}

/// Sum of the samples of `metric` whose labels contain every one of `labels`.
fn metric(server: &Server, name: &str, labels: &[&str]) -> f64 {
    let text = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    text.lines()
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn stores(server: &Server) -> f64 {
    metric(server, "ai_cache_operations_total", &["result=\"store\""])
}

fn endpoint_state(server: &Server) -> String {
    let d = server.connect().get("/health/detailed").json();
    d["shards"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "fake")
        .map(|e| e["state"].as_str().unwrap().to_string())
        .unwrap()
}

/// Sends `body` and checks the answer is one of `statuses` and came within the deadline.
fn expect(c: &mut Client, body: &Value, statuses: &[u16], what: &str) -> Response {
    let start = Instant::now();
    let r = post(c, body);
    let took = start.elapsed();
    assert!(
        statuses.contains(&r.status),
        "{what}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        took < Duration::from_millis(REQUEST_TIMEOUT_MS) + SLACK,
        "{what}: took {took:?}"
    );
    r
}

/// One fault: a bad answer fails the request with `bad_status` in time and stores nothing; the
/// same request after the endpoint recovers is a miss computed from the good answer, then a
/// hit; repeated bad answers open the breaker (503 `no_endpoint`, fast).
fn fault_case(mode: Mode, bad_status: u16) {
    let fake = Fake::start(mode);
    let gw = gateway(&fake);
    let mut c = gw.connect();

    let r = expect(&mut c, &risk("victim"), &[bad_status], &format!("{mode:?}"));
    assert_ne!(r.header("X-Atlas-Cache"), Some("hit"));
    assert_eq!(
        stores(&gw),
        0.0,
        "{mode:?}: nothing stored from a bad answer"
    );

    fake.set(Mode::Good);
    let r = expect(&mut c, &risk("victim"), &[200], "after recovery");
    assert_eq!(
        r.header("X-Atlas-Cache"),
        Some("miss"),
        "{mode:?}: not cached"
    );
    assert_eq!(r.json()["result"]["fake"], "good");
    let r = expect(&mut c, &risk("victim"), &[200], "again");
    assert_eq!(r.header("X-Atlas-Cache"), Some("hit"));
    assert_eq!(stores(&gw), 1.0);

    // Consecutive failures open the breaker; from then on requests are refused at once.
    fake.set(mode);
    let mut statuses = Vec::new();
    for i in 0..7 {
        let r = expect(
            &mut c,
            &risk(&format!("later-{i}")),
            &[bad_status, 503],
            &format!("{mode:?} #{i}"),
        );
        if r.status == 503 {
            assert_eq!(r.error_code(), "no_endpoint");
        }
        statuses.push(r.status);
    }
    assert_eq!(endpoint_state(&gw), "open", "{mode:?}: {statuses:?}");
    assert_eq!(statuses.last(), Some(&503), "{mode:?}: {statuses:?}");
    assert_eq!(stores(&gw), 1.0, "{mode:?}: still only the good answer");
    // Requests accepted = requests answered (1 + 2 + 7 AI requests).
    let answered = metric(&gw, "ai_optimized_requests_total", &[]);
    assert_eq!(answered, 10.0, "{mode:?}");
}

#[test]
fn an_endpoint_closing_mid_response() {
    fault_case(Mode::CloseMidResponse, 502);
}

#[test]
fn an_endpoint_answering_garbage() {
    fault_case(Mode::Garbage, 502);
    fault_case(Mode::GarbageBody, 502);
}

/// Regression: a well-formed answer whose results are not objects used to be cached and
/// served.
#[test]
fn an_endpoint_answering_results_that_are_not_objects() {
    fault_case(Mode::NotAnObject, 502);
}

#[test]
fn an_endpoint_answering_the_wrong_number_of_outputs() {
    fault_case(Mode::WrongCount, 502);
}

#[test]
fn an_endpoint_answering_a_byte_at_a_time() {
    fault_case(Mode::Slow, 504);
}

#[test]
fn an_endpoint_resetting_connections() {
    fault_case(Mode::Reset, 502);
}

/// Regression: bytes an endpoint sends after its answer (here a whole second answer) stayed
/// unread on the pooled connection and were taken as the answer to the next batch sent on
/// it, so that batch's requests got (and cached) results computed for another request. A
/// pooled connection with unread bytes is now discarded.
#[test]
fn a_late_second_answer_is_never_taken_for_the_next_one() {
    let fake = Fake::start(Mode::AnswerTwice);
    let gw = gateway(&fake);
    let mut c = gw.connect();
    for i in 0..6 {
        let r = expect(&mut c, &risk(&format!("twice-{i}")), &[200], "answer twice");
        assert_eq!(r.json()["result"]["fake"], "good", "request {i}");
        // Let the stale answer arrive on the idle pooled connection.
        thread::sleep(Duration::from_millis(60));
    }
    for i in 0..6 {
        let r = expect(&mut c, &risk(&format!("twice-{i}")), &[200], "hits");
        assert_eq!(r.header("X-Atlas-Cache"), Some("hit"));
        assert_eq!(r.json()["result"]["fake"], "good", "cached {i}");
    }
    assert_eq!(fake.batches.load(Ordering::SeqCst), 6);
}

/// `MAX_CONCURRENT_REQUESTS` holds for the instance: requests that all arrive on one shard are
/// admitted up to the whole cap (not that shard's half of it), and one more, on any shard, is
/// shed. The endpoint holds its answers, so the requests stay in flight as long as needed.
#[test]
fn the_cap_holds_for_the_instance_however_connections_spread() {
    let fake = Fake::start(Mode::Hold);
    let spec = format!("fake={};timeout_ms=20000", fake.url());
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_EMBEDDED", "false"),
            ("ATLAS_ENDPOINTS", spec.as_str()),
            ("ATLAS_HEALTH_INTERVAL_S", "60"),
            ("BATCH_TIMEOUT_MS", "1"),
            ("REQUEST_TIMEOUT_MS", "30000"),
            ("MAX_CONCURRENT_REQUESTS", "3"),
        ],
    );
    // The kernel spreads connections over the shards: keep opening them until one shard has
    // three and the other one.
    let mut by_shard: Vec<Vec<Client>> = vec![Vec::new(), Vec::new()];
    for _ in 0..200 {
        let mut c = server.connect();
        let shard: usize = c
            .get("/health")
            .header("X-Atlas-Shard")
            .unwrap()
            .parse()
            .unwrap();
        by_shard[shard].push(c);
        if by_shard.iter().any(|v| v.len() >= 3) && by_shard.iter().all(|v| !v.is_empty()) {
            break;
        }
    }
    let busy = usize::from(by_shard[1].len() >= 3);
    let mut other = by_shard[1 - busy].pop().unwrap();
    let held: Vec<_> = by_shard[busy]
        .drain(..3)
        .enumerate()
        .map(|(i, mut c)| thread::spawn(move || post(&mut c, &risk(&format!("u-cap-{i}")))))
        .collect();
    server.wait_in_flight(3);
    let r = post(&mut other, &risk("u-cap-more"));
    assert_eq!((r.status, r.error_code()), (503, "overloaded".to_string()));
    fake.set(Mode::Good);
    for h in held {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("X-Atlas-Shard"), Some(busy.to_string().as_str()));
    }
    // Room again once they are answered.
    assert_eq!(post(&mut other, &risk("u-cap-more")).status, 200);
}

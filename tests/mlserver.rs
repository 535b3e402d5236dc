//! Open Inference Protocol (KServe V2) endpoints against a real MLServer: `atlas serve` with
//! `v2+http://…` endpoints in front of MLServer running the runtime of `examples/mlserver/`
//! (PyPI `mlserver`, installed by `tests/run.sh`) — same numbers as the embedded model,
//! batching seen from the server's side, malformed answers refused, readiness and metadata
//! keeping a model out of rotation, and failover when the server dies and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/mlserver.rs"]
mod mlserver;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, ConfigFile, Response, Server};
use mlserver::MlServer;
use serde_json::{json, Value};

fn risk_input(age: u32, holdings: bool) -> Value {
    let mut v = json!({"age": age, "horizon_years": 20, "income_stability": 4,
        "loss_tolerance": 3, "experience": 2});
    if holdings {
        v["periods_per_year"] = json!(12);
        v["holdings"] = json!([
            {"symbol": "AAA", "weight": 2, "prices": [100, 104, 99, 107, 111, 108]},
            {"symbol": "BBB", "weight": 1, "prices": [50, 49, 52, 51, 55, 56]}]);
    }
    v
}

fn post(c: &mut Client, op: &str, body: &Value) -> Response {
    c.post_json(&format!("/ai/{op}"), body)
}

fn ask(c: &mut Client, user: &str, age: u32) -> Response {
    post(
        c,
        "risk_assessment",
        &json!({"user_id": user, "input": risk_input(age, false)}),
    )
}

/// `atlas serve --cores 1` with `endpoints` and health checks every second.
fn gateway(endpoints: &str, embedded: bool) -> Server {
    Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_EMBEDDED", if embedded { "true" } else { "false" }),
            ("ATLAS_ENDPOINTS", endpoints),
            ("ATLAS_HEALTH_INTERVAL_S", "1"),
        ],
    )
}

/// Endpoint `name` as each shard sees it.
fn endpoint_views(server: &Server, name: &str) -> Vec<Value> {
    let d = server.connect().get("/health/detailed").json();
    d["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap()
        })
        .collect()
}

fn endpoint_view(server: &Server, name: &str) -> Value {
    endpoint_views(server, name).swap_remove(0)
}

/// Waits (up to 30 s) until `pred` holds for endpoint `name` on every shard; returns shard
/// 0's view.
fn wait_view(server: &Server, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut views = endpoint_views(server, name);
        if views.iter().all(&pred) {
            return views.swap_remove(0);
        }
        assert!(Instant::now() < deadline, "{name} never {what}: {views:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn ready(v: &Value) -> bool {
    v["problem"].is_null()
}

/// Asserts that `a` and `b` are the same JSON with numbers equal to within `tolerance`.
fn assert_close(a: &Value, b: &Value, tolerance: f64, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= tolerance, "{at}: {x} vs {y}");
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut kx: Vec<_> = x.keys().collect();
            let mut ky: Vec<_> = y.keys().collect();
            kx.sort();
            ky.sort();
            assert_eq!(kx, ky, "{at}: keys");
            for k in kx {
                assert_close(&x[k], &y[k], tolerance, &format!("{at}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_close(p, q, tolerance, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn the_runtime_gives_the_embedded_models_numbers_and_misses_reach_it_in_batches() {
    let ml = MlServer::start(&[("risk", json!({}))]);
    let inputs: Vec<Value> = [
        (35, false),
        (90, false),
        (18, false),
        (47, true),
        (70, true),
    ]
    .iter()
    .map(|&(age, h)| risk_input(age, h))
    .collect();

    // Unrounded, model against model: MLServer's V2 answer against `atlas model-endpoint`.
    let reference = Server::model_endpoint(&["--cores", "1"]);
    let batch = json!({"operation": "risk_assessment", "inputs": inputs}).to_string();
    let mut c = reference.connect();
    c.send(
        format!(
            "POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{batch}",
            batch.len()
        )
        .as_bytes(),
    );
    let embedded = c.read_response(false).json();
    let infer = json!({"id": "x-1", "parameters": {"operation": "risk_assessment"},
        "inputs": [{"name": "input", "datatype": "BYTES", "shape": [inputs.len()],
            "data": inputs.iter().map(Value::to_string).collect::<Vec<_>>()}]});
    let (status, body) = ml
        .http("POST", "/v2/models/risk/infer", &infer.to_string())
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v2: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v2["id"], "x-1", "the id is echoed");
    let output = &v2["outputs"][0];
    assert_eq!(output["datatype"], "BYTES");
    for (i, text) in output["data"].as_array().unwrap().iter().enumerate() {
        let mut theirs: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
        let mut ours = embedded["outputs"][i].clone();
        for v in [&mut theirs, &mut ours] {
            let o = v.as_object_mut().unwrap();
            o.entry("volatility").or_insert(json!(0.0));
        }
        assert_close(&theirs, &ours, 1e-9, &format!("outputs[{i}]"));
    }

    // Through the real gateway: the same answers as an embedded-only gateway.
    let endpoint = format!("risk=v2+{}/risk;ops=risk_assessment;max_batch=64", ml.url());
    let gw = gateway(&endpoint, false);
    let view = wait_view(&gw, "risk", "became ready", ready);
    assert_eq!(
        (view["protocol"].as_str(), view["model"].as_str()),
        (Some("v2"), Some("risk"))
    );
    let local = Server::start(&["--cores", "1"], &[]);
    let (mut g, mut l) = (gw.connect(), local.connect());
    for (i, input) in inputs.iter().enumerate() {
        let body = json!({"user_id": format!("same-{i}"), "input": input});
        let (a, b) = (
            post(&mut g, "risk_assessment", &body),
            post(&mut l, "risk_assessment", &body),
        );
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("X-Atlas-Endpoint"), Some("risk"));
        let (a, b) = (a.json(), b.json());
        assert_close(&a["result"], &b["result"], 1e-9, "result");
        assert_close(&a["confidence"], &b["confidence"], 1e-9, "confidence");
    }
    // A hit does not reach the server.
    let before = ml.batch_sizes("risk").len();
    let again = post(
        &mut g,
        "risk_assessment",
        &json!({"user_id": "same-0", "input": inputs[0]}),
    );
    assert_eq!(again.header("X-Atlas-Cache"), Some("hit"));
    assert_eq!(ml.batch_sizes("risk").len(), before);

    // A burst of 64 distinct misses reaches MLServer as fewer, larger V2 requests.
    let barrier = Arc::new(Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let mut c = gw.connect();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                ask(&mut c, &format!("burst-{i}"), 20 + i).status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let sizes = ml.batch_sizes("risk")[before..].to_vec();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        64,
        "every miss computed once: {sizes:?}"
    );
    assert!(
        sizes.len() < 64 && sizes.iter().any(|s| *s > 1),
        "batched: {sizes:?}"
    );
    let metrics = String::from_utf8(gw.connect().get("/metrics").body).unwrap();
    assert!(
        metrics.contains(&format!(
            "ai_endpoint_calls_total{{endpoint=\"risk\"}} {}",
            sizes.len() + inputs.len()
        )),
        "one call per V2 request"
    );
}

#[test]
fn malformed_answers_fail_the_call_are_counted_and_never_cached() {
    let ml = MlServer::start(&[
        ("short", json!({"mode": "wrong_count"})),
        ("floats", json!({"mode": "wrong_datatype"})),
        ("broken", json!({"mode": "fail"})),
    ]);
    for (model, reason, says) in [
        ("short", "protocol", "for 1 inputs"),
        ("floats", "protocol", "FP64, not BYTES"),
        (
            "broken",
            "status",
            "answered HTTP 500: the model failed on purpose",
        ),
    ] {
        let gw = gateway(&format!("bad=v2+{}/{model}", ml.url()), false);
        wait_view(&gw, "bad", "became ready", ready);
        let mut c = gw.connect();
        for attempt in 0..2 {
            let r = ask(&mut c, "same-user", 40);
            assert_eq!(
                r.status,
                502,
                "{model}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let message = r.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(message.contains(says), "{model}: {message}");
            assert_ne!(r.header("X-Atlas-Cache"), Some("hit"), "{model}");
            // Nothing was cached: the repeat reached the server again.
            assert_eq!(ml.batch_sizes(model).len(), attempt + 1, "{model}");
        }
        let view = endpoint_view(&gw, "bad");
        assert_eq!(view["errors_by_reason"][reason], 2, "{model}: {view}");
        assert!(
            view["last_error"].as_str().unwrap().contains(says),
            "{model}: {view}"
        );
        let metrics = String::from_utf8(gw.connect().get("/metrics").body).unwrap();
        assert!(
            metrics.contains(&format!(
                "ai_endpoint_errors_total{{endpoint=\"bad\",reason=\"{reason}\"}} 2"
            )),
            "{model}"
        );
        assert!(
            gw.stderr()
                .iter()
                .any(|l| l.contains("endpoint bad failed") && l.contains(says)),
            "{model}: the log says why: {:?}",
            gw.stderr()
        );
    }

    // With another endpoint beside it, a malformed answer fails over.
    let gw = gateway(&format!("bad=v2+{}/floats;weight=1000", ml.url()), true);
    wait_view(&gw, "bad", "became ready", ready);
    let mut c = gw.connect();
    let before = ml.batch_sizes("floats").len();
    let r = ask(&mut c, "failover", 41);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("X-Atlas-Endpoint"), Some("embedded"));
    assert_eq!(
        ml.batch_sizes("floats").len(),
        before + 1,
        "tried the V2 endpoint first"
    );
}

#[test]
fn readiness_and_metadata_keep_a_model_out_of_rotation_while_the_rest_serves() {
    let ml = MlServer::start(&[
        ("risk", json!({})),
        (
            "typed",
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1]}]}),
        ),
    ]);
    let gw = gateway(
        &format!(
            "risk=v2+{u}/risk;weight=1000,missing=v2+{u}/nope,typed=v2+{u}/typed,old=v2+{u}/risk;version=7,loading=v2+{u}/slow",
            u = ml.url()
        ),
        true,
    );
    wait_view(&gw, "risk", "became ready", ready);
    for (name, says) in [
        ("missing", "model `nope` not found on the server"),
        (
            "typed",
            "model `typed` cannot take Atlas's requests: its input `input` is FP32, not BYTES",
        ),
        ("old", "model `risk` version 7 not found"),
    ] {
        let v = wait_view(&gw, name, "reported its problem", |v| {
            v["problem"].as_str().is_some_and(|p| p.contains(says))
        });
        assert_eq!(v["state"], "open", "{v}");
    }
    let metrics = String::from_utf8(gw.connect().get("/metrics").body).unwrap();
    assert!(metrics.contains("ai_endpoint_state{endpoint=\"missing\",shard=\"0\"} 2"));
    let mut c = gw.connect();
    let r = ask(&mut c, "u-0", 30);
    assert_eq!(
        (r.status, r.header("X-Atlas-Endpoint")),
        (200, Some("risk"))
    );

    // Another model of the same server loads for 20 s: the server is not ready meanwhile, but
    // `risk` is, and stays in rotation; the loading one is out, with both reasons.
    ml.add_model("slow", json!({"mode": "slow_load", "load_seconds": 20}));
    let loader = {
        let url = format!("127.0.0.1:{}", ml.port);
        thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(url).unwrap();
            s.write_all(b"POST /v2/repository/models/slow/load HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ml.http("GET", "/v2/health/ready", "").unwrap().0 == 200 {
        assert!(
            Instant::now() < deadline,
            "the server never reported not ready"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(2500)); // two health checks
    let v = endpoint_view(&gw, "risk");
    assert!(ready(&v) && v["state"] == "closed", "{v}");
    let r = ask(&mut c, "u-loading", 30);
    assert_eq!(
        (r.status, r.header("X-Atlas-Endpoint")),
        (200, Some("risk"))
    );
    let v = endpoint_view(&gw, "loading");
    let why = v["problem"].as_str().unwrap_or_default();
    assert!(
        why.contains("model `slow` not ready") && why.contains("the server is not ready either"),
        "{v}"
    );
    drop(loader);

    // The operator unloads the model: out of rotation within a check, the rest serves.
    assert_eq!(
        ml.http("POST", "/v2/repository/models/risk/unload", "")
            .unwrap()
            .0,
        200
    );
    let v = wait_view(&gw, "risk", "left rotation", |v| v["problem"].is_string());
    assert!(v["problem"].as_str().unwrap().contains("not"), "{v}");
    let before = ml.batch_sizes("risk").len();
    for i in 1..=5 {
        let r = ask(&mut c, &format!("u-{i}"), 30);
        assert_eq!(
            (r.status, r.header("X-Atlas-Endpoint")),
            (200, Some("embedded"))
        );
    }
    assert_eq!(
        ml.batch_sizes("risk").len(),
        before,
        "no call reached the unloaded model"
    );

    // Loaded again: back in rotation.
    assert_eq!(
        ml.http("POST", "/v2/repository/models/risk/load", "")
            .unwrap()
            .0,
        200
    );
    wait_view(&gw, "risk", "came back", ready);
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0.. {
        let r = ask(&mut c, &format!("back-{i}"), 30);
        assert_eq!(r.status, 200);
        if r.header("X-Atlas-Endpoint") == Some("risk") {
            break;
        }
        assert!(Instant::now() < deadline, "never routed to risk again");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn killing_mlserver_under_load_fails_over_and_a_restart_closes_the_breaker() {
    let mut ml = MlServer::start(&[("risk", json!({}))]);
    let other =
        Server::model_endpoint(&["--cores", "1", "--latency-ms", "5", "--concurrency", "8"]);
    let gw = gateway(
        &format!(
            "risk=v2+{}/risk;timeout_ms=500,other={};timeout_ms=500",
            ml.url(),
            other.url()
        ),
        false,
    );
    wait_view(&gw, "risk", "became ready", ready);
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let mut c = gw.connect();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut seen = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = ask(&mut c, &format!("k-{t}-{i}"), 30);
                    seen.push((r.status, r.header("X-Atlas-Endpoint").map(str::to_string)));
                    i += 1;
                }
                seen
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1000));
    ml.kill();
    thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    let all: Vec<(u16, Option<String>)> = loaders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let errors = all.iter().filter(|(s, _)| *s != 200).count();
    assert!(all.len() > 100, "load ran: {} requests", all.len());
    assert!(
        all.iter().any(|(_, e)| e.as_deref() == Some("risk")),
        "MLServer served before the kill"
    );
    assert!(errors <= 4, "{errors} client errors out of {}", all.len());
    let tail: Vec<&(u16, Option<String>)> = all.iter().rev().take(20).collect();
    assert!(
        tail.iter()
            .all(|(s, e)| *s == 200 && e.as_deref() == Some("other")),
        "{tail:?}"
    );
    // Out of rotation at once (its readiness check), and its breaker opens too: the failed
    // call and the checks that cannot reach the server count against it (5 in a row trip it).
    assert_eq!(endpoint_view(&gw, "risk")["state"], "open");
    wait_view(&gw, "risk", "tripped its breaker", |v| {
        v["state"] == "open" && v["trips"].as_u64().unwrap() >= 1
    });

    ml.restart();
    let mut c = gw.connect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        let r = ask(&mut c, &format!("back-{i}"), 31);
        assert_eq!(r.status, 200);
        let v = endpoint_view(&gw, "risk");
        if v["state"] == "closed" && ready(&v) {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never closed: {v}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_points_a_v2_endpoint_at_another_model_and_it_is_checked_at_once() {
    let ml = MlServer::start(&[("risk", json!({})), ("risk2", json!({}))]);
    let file = ConfigFile::new(
        "v2-reload",
        &format!(
            "embedded = false\nhealth_interval_s = 30\nendpoints = \"m=v2+{}/nope\"\n",
            ml.url()
        ),
    );
    let gw = Server::start(&["--cores", "2", "--config", file.path()], &[]);
    let v = wait_view(&gw, "m", "reported its problem", |v| {
        v["problem"]
            .as_str()
            .is_some_and(|p| p.contains("not found"))
    });
    assert_eq!(v["model"], "nope");
    let mut c = gw.connect();
    assert_eq!(ask(&mut c, "r-0", 30).status, 503, "no endpoint is ready");

    // The model changes: a new member, checked at once (the interval is 30 s).
    file.write(&format!(
        "embedded = false\nhealth_interval_s = 30\nendpoints = \"m=v2+{}/risk;max_batch=8\"\n",
        ml.url()
    ));
    gw.sighup();
    let v = wait_view(&gw, "m", "became ready after the reload", |v| {
        v["model"] == "risk" && ready(v)
    });
    assert_eq!(v["state"], "closed", "{v}");
    let r = ask(&mut c, "r-1", 30);
    assert_eq!((r.status, r.header("X-Atlas-Endpoint")), (200, Some("m")));
    assert_eq!(ml.batch_sizes("risk"), vec![1]);

    // A version pinned to one the server does not have: out of rotation, with the reason.
    file.write(&format!(
        "embedded = false\nhealth_interval_s = 30\nendpoints = \"m=v2+{}/risk;version=9\"\n",
        ml.url()
    ));
    gw.sighup();
    let v = wait_view(&gw, "m", "reported the missing version", |v| {
        v["model"] == "risk@9"
            && v["problem"]
                .as_str()
                .is_some_and(|p| p.contains("model `risk` version 9 not found"))
    });
    assert_eq!(v["state"], "open", "{v}");
}

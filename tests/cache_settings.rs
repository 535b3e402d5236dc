//! Per-operation cache settings (`ATLAS_CACHE_<OPERATION>_*`, `RESULT_CACHE_TTL`) on the real
//! binary: a TTL and stale windows of one operation leave the others alone, an operation that
//! is not batch-compatible sends each miss alone, `check-config` shows where each value came
//! from, and a SIGHUP applies new settings to the results stored from then on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, ConfigFile, Response, Server};
use serde_json::{json, Value};

fn post(c: &mut Client, op: &str, body: &Value) -> Response {
    c.post_json(&format!("/ai/{op}"), body)
}

fn risk(user: &str) -> Value {
    json!({"user_id": user, "input": {"age": 40, "horizon_years": 20,
        "income_stability": 4, "loss_tolerance": 3, "experience": 3}})
}

fn budget(user: &str) -> Value {
    json!({"user_id": user, "input": {"monthly_income": 5000,
        "expenses": [{"category": "rent", "amount": 1500, "essential": true}],
        "debts": [], "goals": []}})
}

fn cache(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.header("X-Atlas-Cache").unwrap().to_string()
}

#[test]
fn one_operations_ttl_and_stale_windows_leave_the_others_alone() {
    let gw = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_CACHE_RISK_ASSESSMENT_TTL_S", "1"),
            ("ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY", "ttl"),
            ("ATLAS_CACHE_RISK_ASSESSMENT_STALE_WHILE_REVALIDATE_S", "0"),
            ("ATLAS_CACHE_RISK_ASSESSMENT_STALE_IF_ERROR_S", "0"),
        ],
    );
    let mut c = gw.connect();
    assert_eq!(cache(&post(&mut c, "risk_assessment", &risk("u1"))), "miss");
    assert_eq!(cache(&post(&mut c, "risk_assessment", &risk("u1"))), "hit");
    assert_eq!(
        cache(&post(&mut c, "budget_optimization", &budget("u1"))),
        "miss"
    );
    thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        cache(&post(&mut c, "risk_assessment", &risk("u1"))),
        "miss",
        "past its 1 s TTL with no stale window: computed again"
    );
    assert_eq!(
        cache(&post(&mut c, "budget_optimization", &budget("u1"))),
        "hit",
        "budget_optimization keeps its 1800 s"
    );
}

#[test]
fn an_operation_that_is_not_batch_compatible_sends_each_miss_alone() {
    let model = Server::model_endpoint(&["--cores", "1", "--latency-ms", "40"]);
    let endpoints = format!("m={}", model.url());
    let gw = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_EMBEDDED", "false"),
            ("ATLAS_ENDPOINTS", endpoints.as_str()),
            ("ATLAS_CACHE_RISK_ASSESSMENT_BATCH_COMPATIBLE", "false"),
        ],
    );
    let burst = |op: &'static str, body: fn(&str) -> Value, tag: &str| -> Vec<usize> {
        let barrier = Arc::new(Barrier::new(12));
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let mut c = gw.connect();
                let barrier = Arc::clone(&barrier);
                let user = format!("{tag}-{i}");
                thread::spawn(move || {
                    barrier.wait();
                    let r = post(&mut c, op, &body(&user));
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    r.header("X-Atlas-Batch-Size")
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    let risk_sizes = burst("risk_assessment", risk, "r");
    assert!(risk_sizes.iter().all(|s| *s == 1), "{risk_sizes:?}");
    let budget_sizes = burst("budget_optimization", budget, "b");
    assert!(
        budget_sizes.iter().any(|s| *s > 1),
        "budget_optimization still batches: {budget_sizes:?}"
    );
}

#[test]
fn check_config_shows_each_cache_setting_with_its_source() {
    let file = ConfigFile::new(
        "cache-cc",
        "result_cache_ttl = 120\n[cache.portfolio_analysis]\nttl_s = 60\nwarmup = true\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atlas"))
        .args(["check-config", "--config", file.path()])
        .env("ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY", "adaptive")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .to_string()
    };
    assert!(line("RESULT_CACHE_TTL").contains("= 120"));
    let ttl = line("ATLAS_CACHE_PORTFOLIO_ANALYSIS_TTL_S");
    assert!(ttl.contains("= 60") && ttl.contains("# file"), "{ttl}");
    assert!(line("ATLAS_CACHE_PORTFOLIO_ANALYSIS_WARMUP").contains("= true"));
    let strategy = line("ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY");
    assert!(
        strategy.contains("= adaptive") && strategy.contains("# environment"),
        "{strategy}"
    );
    let default = line("ATLAS_CACHE_BUDGET_OPTIMIZATION_TTL_S");
    assert!(
        default.contains("= 1800") && default.contains("# default"),
        "{default}"
    );

    // A bad value, in a table or not, is an error by name; so is an unknown key in a table.
    file.write("[cache.risk_assessment]\nstrategy = \"lru\"\nttl = 5\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atlas"))
        .args(["check-config", "--config", file.path()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY"),
        "{err}"
    );
    assert!(
        err.contains("unknown key `cache.risk_assessment.ttl`"),
        "{err}"
    );
}

#[test]
fn sighup_applies_a_new_ttl_to_results_stored_from_then_on() {
    let file = ConfigFile::new("cache-reload", "");
    let gw = Server::start(&["--cores", "2", "--config", file.path()], &[]);
    let mut c = gw.connect();
    assert_eq!(
        cache(&post(&mut c, "risk_assessment", &risk("before"))),
        "miss"
    );

    file.write(
        "[cache.risk_assessment]\nttl_s = 1\nstrategy = \"ttl\"\n\
         stale_while_revalidate_s = 0\nstale_if_error_s = 0\n",
    );
    gw.sighup();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    loop {
        log.extend(gw.stderr());
        if log.iter().any(|l| l.contains("applied on all 2 shards")) {
            break;
        }
        assert!(Instant::now() < deadline, "no reload in the log: {log:?}");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        log.iter()
            .any(|l| l.contains("ATLAS_CACHE_RISK_ASSESSMENT_TTL_S: (unset) -> 1 (applied)")),
        "{log:?}"
    );
    assert_eq!(
        cache(&post(&mut c, "risk_assessment", &risk("after"))),
        "miss"
    );
    thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        cache(&post(&mut c, "risk_assessment", &risk("after"))),
        "miss",
        "stored under the new 1 s TTL"
    );
    assert_eq!(
        cache(&post(&mut c, "risk_assessment", &risk("before"))),
        "hit",
        "stored before the reload: keeps its TTL"
    );
}

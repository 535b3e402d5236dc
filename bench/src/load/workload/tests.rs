//! Unit tests of the parent module (the workload is a pure function of the seed).

use super::*;
use std::collections::HashSet;

fn workload(ops: &str, keyspace: u64, s: f64) -> Workload {
    Workload {
        seed: 7,
        operations: parse_operations(ops).unwrap(),
        priorities: parse_priorities("normal").unwrap(),
        keys: Zipf::new(keyspace, s),
        user_ids: 10,
        host: "127.0.0.1:1".into(),
        get_path: None,
        miss_share: 0.0,
        repeat: None,
    }
}

fn input(seed: u64, op: Operation, k: u64) -> Vec<u8> {
    let mut v = Vec::new();
    write_input(seed, op, k, &mut v);
    v
}

#[test]
fn bodies_are_deterministic_valid_json_and_distinct_per_input() {
    for op in Operation::ALL {
        let mut seen = HashSet::new();
        for k in 0..2000 {
            let a = input(1, op, k);
            assert_eq!(a, input(1, op, k), "{op:?} {k}");
            let v: serde_json::Value = serde_json::from_slice(&a)
                .unwrap_or_else(|e| panic!("{op:?} {k}: {e}: {}", String::from_utf8_lossy(&a)));
            assert!(v.is_object());
            assert!(seen.insert(v.to_string()), "{op:?}: input {k} repeats");
        }
        assert_ne!(input(1, op, 5), input(2, op, 5), "the seed changes {op:?}");
    }
}

#[test]
fn generated_inputs_respect_the_operation_ranges() {
    // 5000 inputs: about 0.4 % of portfolios drew a repeated symbol before it was fixed.
    for k in 0..5000 {
        let v: serde_json::Value =
            serde_json::from_slice(&input(3, Operation::RiskAssessment, k)).unwrap();
        let age = v["age"].as_u64().unwrap();
        assert!((18..=120).contains(&age));
        let h = v["horizon_years"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&h));
        for f in ["income_stability", "loss_tolerance", "experience"] {
            assert!((1..=5).contains(&v[f].as_u64().unwrap()), "{f}");
        }
        let p: serde_json::Value =
            serde_json::from_slice(&input(3, Operation::PortfolioAnalysis, k)).unwrap();
        let holdings = p["holdings"].as_array().unwrap();
        let len = holdings[0]["prices"].as_array().unwrap().len();
        assert!(len >= 3);
        for h in holdings {
            let prices = h["prices"].as_array().unwrap();
            assert_eq!(prices.len(), len, "all holdings have the same length");
            assert!(prices.iter().all(|x| x.as_f64().unwrap() > 0.0));
        }
        let mut symbols: Vec<&str> = holdings
            .iter()
            .map(|h| h["symbol"].as_str().unwrap())
            .collect();
        symbols.sort_unstable();
        symbols.dedup();
        assert_eq!(symbols.len(), holdings.len(), "k {k}: distinct symbols");
        let c: serde_json::Value =
            serde_json::from_slice(&input(3, Operation::CashflowForecast, k)).unwrap();
        assert!(c["history"].as_array().unwrap().len() >= 4);
        assert!((1..=36).contains(&c["horizon"].as_u64().unwrap()));
    }
}

#[test]
fn full_requests_carry_user_priority_and_exact_content_length() {
    let w = workload("risk_assessment", 10, 0.0);
    let spec = RequestSpec {
        op: Operation::RiskAssessment,
        input: 3,
        user: 42,
        priority: Priority::High,
        fresh: None,
    };
    let (mut out, mut body) = (Vec::new(), Vec::new());
    w.write_request(&spec, &mut out, &mut body);
    let text = String::from_utf8(out.clone()).unwrap();
    let (head, body_text) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /ai/risk_assessment HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
    assert!(head.contains(&format!("Content-Length: {}", body_text.len())));
    let v: serde_json::Value = serde_json::from_str(body_text).unwrap();
    assert_eq!(v["user_id"], "u-42");
    assert_eq!(v["priority"], "high");
    // Reusing the buffers gives the same bytes.
    let mut again = Vec::new();
    w.write_request(&spec, &mut again, &mut body);
    assert_eq!(out, again);
}

#[test]
fn miss_share_sends_that_share_with_never_repeated_users() {
    let w = Workload {
        miss_share: 0.2,
        ..workload("risk_assessment", 10, 0.0)
    };
    let (mut out, mut body) = (Vec::new(), Vec::new());
    let mut fresh = HashSet::new();
    for seq in 0..5000 {
        let spec = w.open_request(seq);
        w.write_request(&spec, &mut out, &mut body);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let user = v["user_id"].as_str().unwrap().to_string();
        if spec.fresh.is_some() {
            assert!(user.starts_with("m-") && fresh.insert(user));
        } else {
            assert!(user.starts_with("u-"));
        }
    }
    assert!((900..1100).contains(&fresh.len()), "{}", fresh.len());
    assert!(w.closed_request(1, 2).fresh != Some((1, 3)));
}

/// The share of requests whose (user, operation, input) was asked before: the hit rate a
/// cold cache shows for this closed-loop run (the cache key is operation, user and
/// input; distinct inputs have distinct bodies, see above).
fn repeat_share(w: &Workload, users: u64, requests: u64) -> f64 {
    let mut seen = HashSet::new();
    let mut repeats = 0;
    for vuser in 0..users {
        for seq in 0..requests {
            let spec = w.closed_request(vuser, seq);
            if !seen.insert((spec.user, spec.op, spec.input)) {
                repeats += 1;
            }
        }
    }
    repeats as f64 / (users * requests) as f64
}

#[test]
fn the_default_users_repeat_themselves_as_the_briefs_do() {
    let all = "portfolio_analysis=1,budget_optimization=1,risk_assessment=1,cashflow_forecast=1";
    // One user id per virtual user, as `--users` gives by default.
    let distinct = Workload {
        user_ids: 50,
        ..workload(all, 100, 0.0)
    };
    let users = Workload {
        repeat: Some(Repeat::new(3, 0.05)),
        ..distinct.clone()
    };
    // The brief's cold run, 50 users x 20 requests: at least 70 % of the requests ask
    // again (79.9 % with this seed; the brief's own load test reports 82 % hits), and
    // not all of them.
    let cold = repeat_share(&users, 50, 20);
    assert!((0.70..0.85).contains(&cold), "{cold}");
    // Every user's set is its own and spans the operations.
    let ops: HashSet<Operation> = (0..50).map(|u| users.user_input(u, 0).0).collect();
    assert_eq!(ops.len(), 4);
    assert_ne!(users.user_input(1, 0), users.user_input(1, 1));
    // The first of a set is asked most often.
    let mut counts = [0u64; 3];
    for seq in 0..6000 {
        let spec = users.closed_request(7, seq);
        if let Some(j) = (0..3).find(|&j| users.user_input(7, j) == (spec.op, spec.input)) {
            counts[j as usize] += 1;
        }
    }
    assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
    // `--distinct` keeps the old workload: almost nothing repeats in the same run.
    assert!(repeat_share(&distinct, 50, 20) < 0.1);
    assert!(distinct.describe().starts_with("distinct"));
    assert!(users.describe().contains("3 inputs"));
}

#[test]
fn get_mode_sends_the_path_without_a_body() {
    let w = Workload {
        get_path: Some("/health".into()),
        ..workload("risk_assessment", 10, 0.0)
    };
    let (mut out, mut body) = (Vec::new(), Vec::new());
    w.write_request(&w.closed_request(0, 0), &mut out, &mut body);
    assert_eq!(out, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n");
}

#[test]
fn request_sequences_depend_only_on_seed_and_coordinates() {
    let w = workload("portfolio_analysis,risk_assessment", 1000, 1.0);
    let a: Vec<_> = (0..100).map(|i| w.open_request(i)).collect();
    let b: Vec<_> = (0..100).map(|i| w.open_request(i)).collect();
    assert_eq!(a, b);
    assert_eq!(w.closed_request(3, 9), w.closed_request(3, 9));
    assert_eq!(
        w.closed_request(13, 0).user,
        3,
        "user ids wrap at --user-ids"
    );
    let mut other = w.clone();
    other.seed = 8;
    let c: Vec<_> = (0..100).map(|i| other.open_request(i)).collect();
    assert_ne!(a, c);
}

#[test]
fn zipf_zero_is_uniform_and_positive_skew_follows_the_power_law() {
    let n = 100_000;
    let mut rng = Rng::from_parts(&[1]);
    let uniform = Zipf::new(10, 0.0);
    let mut counts = [0u64; 10];
    for _ in 0..n {
        counts[uniform.sample(&mut rng) as usize] += 1;
    }
    for c in counts {
        assert!((9_000..11_000).contains(&c), "uniform bucket {c}");
    }

    let z = Zipf::new(1000, 1.0);
    let mut counts = vec![0u64; 1000];
    for _ in 0..n {
        counts[z.sample(&mut rng) as usize] += 1;
    }
    // P(k) = 1/((k+1) H_1000), H_1000 ≈ 7.485: rank 0 ≈ 13.4 %, rank 1 ≈ 6.7 %.
    let p0 = counts[0] as f64 / n as f64;
    let p1 = counts[1] as f64 / n as f64;
    assert!((0.125..0.143).contains(&p0), "p0 = {p0}");
    assert!((0.060..0.074).contains(&p1), "p1 = {p1}");
    assert!((1.8..2.2).contains(&(p0 / p1)), "ratio {}", p0 / p1);
    // The top 10 ranks hold H_10 / H_1000 ≈ 39 % of draws.
    let top10: u64 = counts[..10].iter().sum();
    let share = top10 as f64 / n as f64;
    assert!((0.37..0.41).contains(&share), "top-10 share {share}");
    assert!(counts.iter().all(|&c| c < n), "every draw is in range");
}

#[test]
fn mix_weights_are_honoured_and_bad_specs_are_named() {
    let mix = parse_operations("portfolio_analysis=3,risk_assessment=1").unwrap();
    let mut rng = Rng::from_parts(&[9]);
    let n = 40_000;
    let portfolio = (0..n)
        .filter(|_| mix.pick(rng.next_u64()) == Operation::PortfolioAnalysis)
        .count();
    let share = portfolio as f64 / n as f64;
    assert!((0.73..0.77).contains(&share), "share {share}");

    let all = parse_operations(
        "portfolio_analysis,budget_optimization,risk_assessment,cashflow_forecast",
    )
    .unwrap();
    assert_eq!(all.shares().len(), 4);
    assert!(all.shares().iter().all(|(_, s)| (s - 0.25).abs() < 1e-9));

    let p = parse_priorities("high=1,normal=8,low=1").unwrap();
    let shares = p.shares();
    assert_eq!(shares[1], (Priority::Normal, 0.8));

    let e = parse_operations("portfolio=1").unwrap_err();
    assert!(e.0.contains("unknown `portfolio`"), "{e}");
    assert!(parse_operations("risk_assessment=x").is_err());
    assert!(parse_operations("risk_assessment=0").is_err());
    assert!(parse_priorities("urgent=1").is_err());
}

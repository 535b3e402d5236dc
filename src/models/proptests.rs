//! Property tests: random valid-ish inputs never panic, never yield a non-finite number, and
//! every valid input computes (no `Numerical` error), with weights and allocations that add up.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{compute, parse_input, ModelError, Operation};

/// Numbers a client might plausibly (or adversarially) send.
fn number(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => lo..hi,
        1 => Just(lo),
        1 => Just(hi),
        1 => Just(0.0),
        1 => -1e6..1e6f64,
        1 => prop_oneof![Just(1e-300), Just(1e12), Just(1e13), Just(-0.0)],
    ]
}

/// Walks a result: every number finite (JSON cannot hold anything else, but `as_f64` checks
/// the representation), returns the count of numbers seen.
fn count_numbers(v: &Value) -> usize {
    match v {
        Value::Number(n) => {
            assert!(n.as_f64().is_some_and(f64::is_finite), "{n}");
            1
        }
        Value::Array(a) => a.iter().map(count_numbers).sum(),
        Value::Object(m) => m.values().map(count_numbers).sum(),
        _ => 0,
    }
}

fn check(op: Operation, input: &Value) {
    let parsed = match parse_input(op, input) {
        Ok(p) => p,
        Err(ModelError::Invalid { path, .. } | ModelError::Inconsistent { path, .. }) => {
            assert!(path.starts_with("input"), "{path}");
            return;
        }
        Err(e) => panic!("parse gave an error that is not a refusal of the input: {e:?}"),
    };
    match compute(&parsed) {
        Ok(out) => {
            assert!((0.0..=1.0).contains(&out.confidence), "{}", out.confidence);
            assert!(out.volatility.is_finite() && out.volatility >= 0.0);
            assert!(count_numbers(&out.result) > 0);
            for key in ["min_variance_weights", "max_sharpe_weights"] {
                if let Some(w) = out.result.get(key).and_then(Value::as_array) {
                    let w: Vec<f64> = w.iter().filter_map(Value::as_f64).collect();
                    assert!(w.iter().all(|x| *x >= 0.0), "{key} {w:?}");
                    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{key} {w:?}");
                }
            }
            if let Some(a) = out.result.get("recommended_allocation") {
                let s: f64 = ["stocks", "bonds", "cash"]
                    .iter()
                    .filter_map(|k| a[k].as_f64())
                    .sum();
                assert!((s - 1.0).abs() < 1e-12);
            }
        }
        Err(ModelError::Unprocessable { .. }) => {}
        Err(e) => panic!("valid input failed: {e:?} for {input}"),
    }
}

fn holdings() -> impl Strategy<Value = Value> {
    (1usize..5, 3usize..25).prop_flat_map(|(n, len)| {
        prop::collection::vec(
            (
                number(0.0, 10.0),
                prop::collection::vec(number(0.5, 500.0), len),
            ),
            n,
        )
        .prop_map(|hs| {
            Value::Array(
                hs.into_iter()
                    .enumerate()
                    .map(|(i, (w, p))| json!({"symbol": format!("S{i}"), "weight": w, "prices": p}))
                    .collect(),
            )
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn portfolio_never_non_finite(h in holdings(), rf in number(-0.1, 0.2), ppy in 1u32..400,
                                  bench in prop::option::of(prop::collection::vec(number(1.0, 100.0), 3..25))) {
        let mut v = json!({"holdings": h, "risk_free_rate": rf, "periods_per_year": ppy});
        if let Some(b) = bench { v["benchmark_prices"] = json!(b); }
        check(Operation::PortfolioAnalysis, &v);
    }

    #[test]
    fn budget_never_non_finite(income in number(1.0, 20_000.0),
                               expenses in prop::collection::vec((number(0.0, 3000.0), any::<bool>()), 0..6),
                               debts in prop::collection::vec((number(0.0, 50_000.0), number(0.0, 1.0), number(0.0, 1000.0)), 0..5),
                               goals in prop::collection::vec((number(0.0, 50_000.0), number(0.0, 10_000.0), 0u32..700), 0..4),
                               budget in prop::option::of(number(0.0, 10_000.0))) {
        let mut v = json!({
            "monthly_income": income,
            "expenses": expenses.iter().enumerate().map(|(i, (a, e))| json!({"category": format!("c{i}"), "amount": a, "essential": e})).collect::<Vec<_>>(),
            "debts": debts.iter().enumerate().map(|(i, (b, r, m))| json!({"name": format!("d{i}"), "balance": b, "apr": r, "min_payment": m})).collect::<Vec<_>>(),
            "goals": goals.iter().enumerate().map(|(i, (t, c, m))| json!({"name": format!("g{i}"), "target": t, "current": c, "months": m})).collect::<Vec<_>>(),
        });
        if let Some(b) = budget { v["debt_payment_budget"] = json!(b); }
        check(Operation::BudgetOptimization, &v);
    }

    #[test]
    fn risk_never_non_finite(age in 0u32..130, horizon in number(0.0, 60.0), a in 0u8..7, b in 0u8..7, c in 0u8..7,
                             h in prop::option::of(holdings())) {
        let mut v = json!({"age": age, "horizon_years": horizon, "income_stability": a, "loss_tolerance": b, "experience": c});
        if let Some(h) = h { v["holdings"] = h; }
        check(Operation::RiskAssessment, &v);
    }

    #[test]
    fn cashflow_never_non_finite(history in prop::collection::vec(number(-5000.0, 5000.0), 2..60),
                                 horizon in 0u32..40, season in prop::option::of(1u32..14)) {
        let mut v = json!({"history": history, "horizon": horizon});
        if let Some(m) = season { v["season_length"] = json!(m); }
        check(Operation::CashflowForecast, &v);
    }

    #[test]
    fn arbitrary_json_never_panics(s in "\\PC{0,40}", n in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        for op in Operation::ALL {
            for v in [json!(s), json!(n), json!({"holdings": s}), json!({"history": [n, n, n, n], "horizon": 1}), json!(null)] {
                let _ = parse_input(op, &v).map(|p| compute(&p));
            }
        }
    }
}

/// The largest accepted inputs compute to finite results (their cost is measured by the
/// `models` bench, not here).
#[test]
fn largest_inputs_compute() {
    let holdings: Vec<Value> = (0..super::portfolio::MAX_HOLDINGS)
        .map(|i| {
            let prices: Vec<f64> = (0..super::portfolio::MAX_PRICES)
                .map(|t| 100.0 + ((t * (i + 3)) % 17) as f64 + 0.01 * (t as f64) * (i as f64 % 5.0))
                .collect();
            json!({"symbol": format!("S{i}"), "weight": 1 + i % 3, "prices": prices})
        })
        .collect();
    let p = parse_input(Operation::PortfolioAnalysis, &json!({"holdings": holdings})).unwrap();
    compute(&p).unwrap();
    let debts: Vec<Value> = (0..super::budget::MAX_DEBTS)
        .map(|i| json!({"name": format!("d{i}"), "balance": 1e6, "apr": 1.0, "min_payment": 1}))
        .collect();
    let b = parse_input(
        Operation::BudgetOptimization,
        &json!({"monthly_income": 1e9, "debts": debts, "debt_payment_budget": 100}),
    )
    .unwrap();
    compute(&b).unwrap();
    let history: Vec<f64> = (0..super::cashflow::MAX_HISTORY)
        .map(|t| (t as f64 * 0.7).sin() * 1e3)
        .collect();
    let c = parse_input(
        Operation::CashflowForecast,
        &json!({"history": history, "horizon": 36, "season_length": 52}),
    )
    .unwrap();
    compute(&c).unwrap();
}

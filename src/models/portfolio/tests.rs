//! Reference cases for `portfolio_analysis`, with the arithmetic in the comments.

use serde_json::{json, Value};

use super::*;
use crate::models::{parse_input, ModelError, ModelInput, Operation};

fn parse(v: Value) -> Result<PortfolioInput, ModelError> {
    match parse_input(Operation::PortfolioAnalysis, &v)? {
        ModelInput::Portfolio(p) => Ok(p),
        other => panic!("wrong variant {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

fn path_of(e: ModelError) -> String {
    match e {
        ModelError::Invalid { path, .. } | ModelError::Inconsistent { path, .. } => path,
        other => panic!("expected Invalid or Inconsistent, got {other:?}"),
    }
}

/// A: 100, 110, 99, 108.9 → returns 0.1, −0.1, 0.1.
/// B: 50, 50, 55, 52.25 → returns 0, 0.1, −0.05.
fn two_assets() -> Value {
    json!({
        "holdings": [
            {"symbol": "A", "weight": 1, "prices": [100, 110, 99, 108.9]},
            {"symbol": "B", "weight": 1, "prices": [50, 50, 55, 52.25]}
        ],
        "benchmark_prices": [100, 110, 110, 115.5],
        "risk_free_rate": 0.12,
        "periods_per_year": 12
    })
}

#[test]
fn two_asset_reference_case() {
    let r = compute(&parse(two_assets()).unwrap()).unwrap();
    // Weights 1:1 → 0.5 each. Portfolio returns 0.5·(0.1, −0.1, 0.1) + 0.5·(0, 0.1, −0.05)
    //   = (0.05, 0.0, 0.025); mean 0.025; deviations (0.025, −0.025, 0):
    //   var = 0.00125 / 2 = 0.000625, std = 0.025.
    assert_eq!(r.weights, vec![0.5, 0.5]);
    for (got, want) in r.returns.iter().zip([0.05, 0.0, 0.025]) {
        assert!(close(*got, want), "{:?}", r.returns);
    }
    // expected_return = 0.025 · 12 = 0.3; volatility = 0.025 · √12 = 0.0866025.
    assert!(close(r.expected_return, 0.3));
    assert!(close(r.volatility, 0.025 * 12f64.sqrt()));
    // Sharpe = (0.3 − 0.12) / 0.0866025 = 2.0784610.
    assert!(close(r.sharpe_ratio, 0.18 / (0.025 * 12f64.sqrt())));
    // rf per period 0.01: r − 0.01 = (0.04, −0.01, 0.015); downside² = (0, 0.0001, 0);
    // DD = √(0.0001 / 3) = 0.0057735; × √12 = 0.02 → Sortino = 0.18 / 0.02 = 9.
    assert!(close(r.sortino_ratio, 9.0), "{}", r.sortino_ratio);
    // Wealth 1.05, 1.05, 1.07625 never falls: drawdown 0. Worst of 3 returns (k = ⌈0.15⌉ = 1)
    // is 0.0 → VaR = CVaR = 0.
    assert_eq!((r.max_drawdown, r.var_95, r.cvar_95), (0.0, 0.0, 0.0));
    // Benchmark returns (0.1, 0, 0.05) are exactly twice the portfolio's → beta = 0.5.
    assert!(close(r.beta.unwrap(), 0.5));
    // In units of 1/1200: var_A = 16, var_B = 7, cov = −10 (var_A = 1/75, var_B = 7/1200,
    // cov = −1/120) → ρ = −10 / √(16·7) = −2.5/√7 = −0.9449112.
    assert!(close(r.correlation[0][1], -2.5 / 7f64.sqrt()));
    assert_eq!(r.correlation[0][0], 1.0);
    assert!(close(r.concentration_hhi, 0.5));
    // Min variance: w_A = (var_B − cov) / (var_A + var_B − 2 cov) = (7 + 10) / (16 + 7 + 20) = 17/43.
    assert!(
        close(r.min_variance_weights[0], 17.0 / 43.0),
        "{:?}",
        r.min_variance_weights
    );
    // Tangency: excess means e = (1/30 − 0.01, 1/60 − 0.01) = (7, 2)/300;
    // Σ⁻¹ ∝ [[7, 10], [10, 16]] → y ∝ (7·7 + 10·2, 10·7 + 16·2) = (69, 102) → w = (69, 102)/171.
    assert_eq!(r.max_sharpe_method, "tangency");
    assert!(
        close(r.max_sharpe_weights[0], 69.0 / 171.0),
        "{:?}",
        r.max_sharpe_weights
    );
    assert!(close(r.max_sharpe_weights[1], 102.0 / 171.0));
    assert!(r.max_sharpe_ratio >= r.sharpe_ratio - 1e-9);
    // Rebalancing: A 0.5 → 0.403509 (sell 0.096491), B 0.5 → 0.596491 (buy).
    assert_eq!(r.rebalancing[0].action, "sell");
    assert!(close(r.rebalancing[0].trade, 69.0 / 171.0 - 0.5));
    assert_eq!(r.rebalancing[1].action, "buy");
}

#[test]
fn one_holding_drawdown_var_and_trivial_weights() {
    // 100, 110, 99, 108.9 → returns 0.1, −0.1, 0.1; wealth 1.1, 0.99, 1.089:
    // drawdown (1.1 − 0.99)/1.1 = 0.1. Worst return −0.1 → VaR = CVaR = 0.1.
    let r = compute(
        &parse(
            json!({"holdings": [{"symbol": "A", "weight": 3, "prices": [100, 110, 99, 108.9]}]}),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(close(r.max_drawdown, 0.1));
    assert!(close(r.var_95, 0.1) && close(r.cvar_95, 0.1));
    assert_eq!(r.weights, vec![1.0]);
    assert_eq!(r.min_variance_weights, vec![1.0]);
    assert_eq!(r.max_sharpe_weights, vec![1.0]);
    assert_eq!(r.correlation, vec![vec![1.0]]);
    assert_eq!(r.concentration_hhi, 1.0);
    assert!(r.beta.is_none());
    // periods_per_year defaults to 252: mean 1/30 · 252 = 8.4.
    assert!(close(r.expected_return, 8.4));
}

#[test]
fn zero_variance_series_gives_finite_documented_values() {
    let input = parse(json!({"holdings": [
        {"symbol": "CASH", "weight": 1, "prices": [1, 1, 1, 1]},
        {"symbol": "FLAT", "weight": 1, "prices": [5, 5, 5, 5]}
    ], "benchmark_prices": [10, 10, 10, 10]}))
    .unwrap();
    let r = compute(&input).unwrap();
    assert_eq!(
        (r.volatility, r.sharpe_ratio, r.sortino_ratio),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(r.correlation, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    assert!(r.beta.is_none(), "zero-variance benchmark has no beta");
    assert_eq!(r.min_variance_weights, vec![0.5, 0.5]);
    assert_eq!(r.max_sharpe_method, "min_variance_fallback");
    let out = crate::models::compute(&ModelInput::Portfolio(input)).unwrap();
    assert_eq!(out.volatility, 0.0);
}

#[test]
fn riskless_asset_with_positive_return_takes_everything() {
    // FLAT has zero variance and +1 % per period: an unbounded Sharpe ratio.
    let r = compute(
        &parse(json!({"holdings": [
            {"symbol": "FLAT", "weight": 1, "prices": [100, 101, 102.01, 103.0301]},
            {"symbol": "X", "weight": 1, "prices": [100, 120, 90, 130]}
        ]}))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(r.max_sharpe_method, "riskless_asset");
    assert_eq!(r.max_sharpe_weights, vec![1.0, 0.0]);
}

#[test]
fn shape_errors_name_the_field_path() {
    let missing = json!({"holdings": [{"symbol": "A", "weight": 1}]});
    assert_eq!(
        path_of(parse(missing).unwrap_err()),
        "input.holdings[0].prices"
    );
    let ill_typed = json!({"holdings": [{"symbol": "A", "weight": 1, "prices": [1, "x", 3]}]});
    assert_eq!(
        path_of(parse(ill_typed).unwrap_err()),
        "input.holdings[0].prices[1]"
    );
    let unknown = json!({"holdings": [], "leverage": 2});
    assert_eq!(path_of(parse(unknown).unwrap_err()), "input.leverage");
    let nested_unknown =
        json!({"holdings": [{"symbol": "A", "weight": 1, "prices": [1, 2, 3], "qty": 1}]});
    assert_eq!(
        path_of(parse(nested_unknown).unwrap_err()),
        "input.holdings[0].qty"
    );
    assert_eq!(path_of(parse(json!([1, 2])).unwrap_err()), "input");
    assert_eq!(path_of(parse(json!({})).unwrap_err()), "input.holdings");
}

#[test]
fn semantic_errors_name_the_field_path() {
    let h = |sym: &str, w: f64, p: Vec<f64>| json!({"symbol": sym, "weight": w, "prices": p});
    let cases = [
        (json!({"holdings": []}), "input.holdings"),
        (
            json!({"holdings": [h("A", 1.0, vec![1.0, 2.0])]}),
            "input.holdings[0].prices",
        ),
        (
            json!({"holdings": [h("A", 1.0, vec![1.0, 2.0, 3.0]), h("B", 1.0, vec![1.0, 2.0, 3.0]),
                h("C", 1.0, vec![1.0, 2.0, 3.0, 4.0])]}),
            "input.holdings[2].prices",
        ),
        (
            json!({"holdings": [h("A", 1.0, vec![1.0, 0.0, 3.0])]}),
            "input.holdings[0].prices[1]",
        ),
        (
            json!({"holdings": [h("A", -1.0, vec![1.0, 2.0, 3.0])]}),
            "input.holdings[0].weight",
        ),
        (
            json!({"holdings": [h("A", 0.0, vec![1.0, 2.0, 3.0])]}),
            "input.holdings",
        ),
        (
            json!({"holdings": [h("A", 1.0, vec![1.0, 2.0, 3.0]), h("A", 1.0, vec![1.0, 2.0, 3.0])]}),
            "input.holdings[1].symbol",
        ),
        (
            json!({"holdings": [h("", 1.0, vec![1.0, 2.0, 3.0])]}),
            "input.holdings[0].symbol",
        ),
        (
            json!({"holdings": [h("A", 1.0, vec![1.0, 2.0, 3.0])], "benchmark_prices": [1, 2]}),
            "input.benchmark_prices",
        ),
        (
            json!({"holdings": [h("A", 1.0, vec![1.0, 2.0, 3.0])], "risk_free_rate": 5}),
            "input.risk_free_rate",
        ),
        (
            json!({"holdings": [h("A", 1.0, vec![1.0, 2.0, 3.0])], "periods_per_year": 0}),
            "input.periods_per_year",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(path_of(parse(input.clone()).unwrap_err()), want, "{input}");
    }
    let many: Vec<Value> = (0..=MAX_HOLDINGS)
        .map(|i| h(&format!("S{i}"), 1.0, vec![1.0, 2.0, 3.0]))
        .collect();
    assert_eq!(
        path_of(parse(json!({"holdings": many})).unwrap_err()),
        "input.holdings"
    );
}

#[test]
fn max_sharpe_weights_beat_random_long_only_weights() {
    // Three assets with distinct means; no random long-only mix may beat the optimum's Sharpe.
    let input = parse(json!({"holdings": [
        {"symbol": "A", "weight": 1, "prices": [100, 103, 101, 106, 108, 107, 111]},
        {"symbol": "B", "weight": 1, "prices": [50, 50.5, 51, 50.8, 51.6, 52, 52.1]},
        {"symbol": "C", "weight": 1, "prices": [20, 19, 21, 20, 22, 21, 23]}
    ]}))
    .unwrap();
    let r = compute(&input).unwrap();
    let ret = returns(&input.holdings).unwrap();
    let cov = cov_matrix(&ret.asset);
    let mu: Vec<f64> = ret.asset.iter().map(|a| mean(a)).collect();
    let sharpe = |w: &[f64]| {
        let m: f64 = w.iter().zip(&mu).map(|(a, b)| a * b).sum();
        m / quad_form(&cov, w).sqrt()
    };
    let best = sharpe(&r.max_sharpe_weights);
    let best_var = quad_form(&cov, &r.min_variance_weights);
    for i in 0..=20 {
        for j in 0..=(20 - i) {
            let w = [i as f64 / 20.0, j as f64 / 20.0, (20 - i - j) as f64 / 20.0];
            assert!(sharpe(&w) <= best + 1e-9, "{w:?}");
            assert!(quad_form(&cov, &w) >= best_var - 1e-15, "{w:?}");
        }
    }
    assert!((r.max_sharpe_weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(r.max_sharpe_weights.iter().all(|w| *w >= 0.0));
}

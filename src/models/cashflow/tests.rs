//! Reference cases for `cashflow_forecast`.

use serde_json::{json, Value};

use super::*;
use crate::models::{parse_input, ModelInput, Operation};

fn parse(v: Value) -> Result<CashflowInput, ModelError> {
    match parse_input(Operation::CashflowForecast, &v)? {
        ModelInput::Cashflow(c) => Ok(c),
        other => panic!("wrong variant {other:?}"),
    }
}

fn assert_continues(r: &CashflowResult, want: impl Fn(usize) -> f64) {
    for (h, f) in r.forecast.iter().enumerate() {
        let w = want(h + 1);
        assert!(
            (f - w).abs() <= 1e-9 * w.abs().max(1.0),
            "h={} {f} vs {w}",
            h + 1
        );
    }
}

#[test]
fn constant_history_continues_with_no_interval() {
    let r = compute(&parse(json!({"history": [250, 250, 250, 250, 250], "horizon": 6})).unwrap())
        .unwrap();
    assert_eq!(r.method, "holt_linear");
    assert_continues(&r, |_| 250.0);
    assert_eq!(r.rmse, 0.0);
    assert_eq!(r.mape, 0.0);
    assert_eq!(r.lower_95, r.forecast);
    assert_eq!(r.confidence, 1.0);
    assert!(r.fitted_params.gamma.is_none());
}

#[test]
fn linear_history_continues_with_holt() {
    // y_t = 100 − 7t for t = 0..9 (fewer than two seasons of 12): forecast 100 − 7(9 + h).
    let y: Vec<f64> = (0..10).map(|t| 100.0 - 7.0 * t as f64).collect();
    let r = compute(&parse(json!({"history": y, "horizon": 12})).unwrap()).unwrap();
    assert_eq!(r.method, "holt_linear");
    assert_continues(&r, |h| 100.0 - 7.0 * (9 + h) as f64);
}

#[test]
fn linear_history_continues_with_holt_winters() {
    // 30 points ≥ 2 · 12: Holt–Winters; the trend-adjusted initial seasonals are all 0.
    let y: Vec<f64> = (0..30).map(|t| 1000.0 + 25.0 * t as f64).collect();
    let r = compute(&parse(json!({"history": y, "horizon": 36})).unwrap()).unwrap();
    assert_eq!(r.method, "holt_winters_additive");
    assert_eq!(r.fitted_params.season_length, Some(12));
    assert_continues(&r, |h| 1000.0 + 25.0 * (29 + h) as f64);
    assert!(r.rmse < 1e-9 && r.confidence > 0.999_999);
}

#[test]
fn repeating_season_continues() {
    // Pattern 10, 20, 5, 15 repeated three times with season_length 4: forecast repeats it.
    let pattern = [10.0, 20.0, 5.0, 15.0];
    let y: Vec<f64> = (0..12).map(|t| pattern[t % 4]).collect();
    let r =
        compute(&parse(json!({"history": y, "horizon": 8, "season_length": 4})).unwrap()).unwrap();
    assert_eq!(r.method, "holt_winters_additive");
    assert_continues(&r, |h| pattern[(11 + h) % 4]);
}

#[test]
fn intervals_widen_and_nest_on_a_noisy_series() {
    let y = [
        1200.0, 950.0, 1430.0, 1100.0, 1320.0, 990.0, 1510.0, 1250.0, 1180.0, 1600.0,
    ];
    let r = compute(&parse(json!({"history": y, "horizon": 24})).unwrap()).unwrap();
    assert!(r.rmse > 0.0);
    let width =
        |lo: &[f64], hi: &[f64]| -> Vec<f64> { lo.iter().zip(hi).map(|(l, u)| u - l).collect() };
    let w80 = width(&r.lower_80, &r.upper_80);
    let w95 = width(&r.lower_95, &r.upper_95);
    assert!(w95.windows(2).all(|w| w[1] >= w[0] - 1e-9));
    assert!(w80.iter().zip(&w95).all(|(a, b)| a < b));
    // 95 % half-width at h = 1 is z95 · rmse.
    assert!((w95[0] / 2.0 - Z95 * r.rmse).abs() < 1e-6);
    // mape matches the definition recomputed from the fitted parameters.
    let f = smoothing::run(
        &y,
        smoothing::Method::Holt,
        r.fitted_params.alpha,
        r.fitted_params.beta,
        0.0,
    );
    let mape = f.errors.iter().map(|(a, e)| (e / a).abs()).sum::<f64>() / f.errors.len() as f64;
    assert!((mape - r.mape).abs() < 1e-12);
    assert!(r.confidence > 0.0 && r.confidence < 1.0);
}

#[test]
fn validation_errors_name_the_path() {
    let cases = [
        (json!({"history": [1, 2, 3], "horizon": 1}), "input.history"),
        (
            json!({"history": [1, 2, 3, 4], "horizon": 0}),
            "input.horizon",
        ),
        (
            json!({"history": [1, 2, 3, 4], "horizon": 37}),
            "input.horizon",
        ),
        (
            json!({"history": [1, 2, "x", 4], "horizon": 3}),
            "input.history[2]",
        ),
        (
            json!({"history": [1, 2, 3, 4], "horizon": 3, "season_length": 1}),
            "input.season_length",
        ),
        (json!({"history": [1, 2, 3, 4]}), "input.horizon"),
        (
            json!({"history": [1, 2, 3, 4], "horizon": 2.5}),
            "input.horizon",
        ),
    ];
    for (input, want) in cases {
        match parse(input.clone()) {
            Err(ModelError::Invalid { path, .. }) => assert_eq!(path, want, "{input}"),
            other => panic!("{input}: {other:?}"),
        }
    }
}

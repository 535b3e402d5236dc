//! `cashflow_forecast`: monthly net cash flows forecast with exponential smoothing, with 80 %
//! and 95 % prediction intervals.
//!
//! # Method
//!
//! With `n` observations and season length `m` (default 12): additive Holt–Winters when
//! `n ≥ 2m`, Holt's linear trend otherwise; parameters fitted by minimising one-step squared
//! error ([`smoothing`] has the recursions, the fit and the variance formula).
//!
//! - `forecast[h−1] = l_n + h b_n (+ s)` for `h = 1..=horizon`;
//! - `lower/upper_p = forecast ∓ z_p σ √(σ²_h/σ²)` with `z_80 = 1.2816`, `z_95 = 1.9600` and
//!   `σ² = SSE / (number of one-step errors)`: widening (never narrowing) with `h`;
//! - `mape = mean |e_t / y_t|` over the one-step errors whose actual is non-zero, as a fraction
//!   (0.05 = 5 %); 0 when every actual is 0;
//! - `rmse = σ`; `relative_error = rmse / mean|y|` (0 when the history is all zeros).
//!
//! `confidence = 1 / (1 + relative_error)` (1 for a perfect fit); the volatility hint is
//! `relative_error`.
//!
//! # Limits
//!
//! `history` 4..=1000 values with |value| ≤ 1e12, `horizon` 1..=36, `season_length` 2..=52.

pub(crate) mod smoothing;

use serde::{Deserialize, Serialize};

use super::error::{all_finite, finite, ModelError};
use super::parse::{field, in_range_int, index, len_between, ROOT};
use smoothing::Method;

/// Most history points.
pub const MAX_HISTORY: usize = 1000;
/// z for a two-sided 80 % interval.
const Z80: f64 = 1.281_551_565_544_600_4;
/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Input of `cashflow_forecast`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CashflowInput {
    /// Monthly net cash flows, oldest first.
    pub history: Vec<f64>,
    /// Months to forecast.
    pub horizon: u32,
    /// Season length in periods; default 12.
    #[serde(default)]
    pub season_length: Option<u32>,
}

impl CashflowInput {
    /// Range and size checks; see the module's limits.
    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        let p = field(ROOT, "history");
        len_between(&p, self.history.len(), 4, MAX_HISTORY)?;
        for (i, x) in self.history.iter().enumerate() {
            if !(x.is_finite() && x.abs() <= 1e12) {
                return Err(ModelError::invalid(
                    index(&p, i),
                    format!("must be a number with |value| <= 1e12, got {x}"),
                ));
            }
        }
        in_range_int(&field(ROOT, "horizon"), u64::from(self.horizon), 1, 36)?;
        if let Some(m) = self.season_length {
            in_range_int(&field(ROOT, "season_length"), u64::from(m), 2, 52)?;
        }
        Ok(())
    }
}

/// The fitted parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FittedParams {
    /// Level smoothing.
    pub alpha: f64,
    /// Trend smoothing.
    pub beta: f64,
    /// Seasonal smoothing (Holt–Winters only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Season length (Holt–Winters only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub season_length: Option<u32>,
}

/// Result of `cashflow_forecast`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CashflowResult {
    /// Point forecasts, one per month ahead.
    pub forecast: Vec<f64>,
    /// 80 % interval, lower bounds.
    pub lower_80: Vec<f64>,
    /// 80 % interval, upper bounds.
    pub upper_80: Vec<f64>,
    /// 95 % interval, lower bounds.
    pub lower_95: Vec<f64>,
    /// 95 % interval, upper bounds.
    pub upper_95: Vec<f64>,
    /// `holt_winters_additive` or `holt_linear`.
    pub method: &'static str,
    /// The fitted smoothing parameters.
    pub fitted_params: FittedParams,
    /// Mean absolute percentage error of the one-step fit, as a fraction.
    pub mape: f64,
    /// Root mean squared one-step error.
    pub rmse: f64,
    /// `1 / (1 + rmse / mean|y|)`; sent as the response's top-level `confidence`.
    #[serde(skip)]
    pub confidence: f64,
    /// `rmse / mean|y|`; the volatility hint.
    #[serde(skip)]
    pub relative_error: f64,
}

/// Runs `cashflow_forecast` on a validated input.
pub(crate) fn compute(input: &CashflowInput) -> Result<CashflowResult, ModelError> {
    let y = &input.history;
    let n = y.len();
    let m = input.season_length.unwrap_or(12) as usize;
    let method = if m >= 2 && n >= 2 * m {
        Method::HoltWinters(m)
    } else {
        Method::Holt
    };
    let fitted = smoothing::fit(y, method);
    finite("sse", fitted.sse)?;

    let n_err = fitted.errors.len().max(1) as f64;
    let rmse = finite("rmse", (fitted.sse / n_err).sqrt())?;
    let ape: Vec<f64> = fitted
        .errors
        .iter()
        .filter(|(actual, _)| actual.abs() > 1e-9)
        .map(|(actual, err)| (err / actual).abs())
        .collect();
    let mape = if ape.is_empty() {
        0.0
    } else {
        finite("mape", ape.iter().sum::<f64>() / ape.len() as f64)?
    };
    let scale = y.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
    let relative_error = if scale > 1e-12 {
        finite("relative_error", rmse / scale)?
    } else {
        0.0
    };

    let h_max = input.horizon as usize;
    let mut r = CashflowResult {
        forecast: Vec::with_capacity(h_max),
        lower_80: Vec::with_capacity(h_max),
        upper_80: Vec::with_capacity(h_max),
        lower_95: Vec::with_capacity(h_max),
        upper_95: Vec::with_capacity(h_max),
        method: match method {
            Method::Holt => "holt_linear",
            Method::HoltWinters(_) => "holt_winters_additive",
        },
        fitted_params: FittedParams {
            alpha: fitted.alpha,
            beta: fitted.beta,
            gamma: matches!(method, Method::HoltWinters(_)).then_some(fitted.gamma),
            season_length: match method {
                Method::HoltWinters(m) => u32::try_from(m).ok(),
                Method::Holt => None,
            },
        },
        mape,
        rmse,
        confidence: 1.0 / (1.0 + relative_error),
        relative_error,
    };
    for h in 1..=h_max {
        let f = fitted.forecast(n, h);
        let sd = rmse * fitted.variance_factor(h).max(0.0).sqrt();
        r.forecast.push(f);
        r.lower_80.push(f - Z80 * sd);
        r.upper_80.push(f + Z80 * sd);
        r.lower_95.push(f - Z95 * sd);
        r.upper_95.push(f + Z95 * sd);
    }
    for (what, v) in [
        ("forecast", &r.forecast),
        ("lower_80", &r.lower_80),
        ("upper_80", &r.upper_80),
        ("lower_95", &r.lower_95),
        ("upper_95", &r.upper_95),
    ] {
        all_finite(what, v)?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests;

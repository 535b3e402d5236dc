//! `portfolio_analysis`: return and risk figures of a weighted set of price series, and the
//! long-only minimum-variance and maximum-Sharpe weights.
//!
//! # Formulas
//!
//! With `n` holdings, `T` closes each (oldest first) and `P = periods_per_year`:
//!
//! - weights are normalised, `wᵢ = weightᵢ / Σ weight`;
//! - asset returns `r_{i,t} = p_{i,t} / p_{i,t−1} − 1`, `t = 1..T−1` (`N = T − 1` returns);
//!   portfolio returns `r_t = Σᵢ wᵢ r_{i,t}` (weights held constant each period);
//! - `expected_return = mean(r) · P`; `volatility = s(r) · √P` with the sample standard
//!   deviation `s` (`N − 1` denominator);
//! - `sharpe_ratio = (expected_return − r_f) / volatility`, 0 when volatility is 0;
//! - `sortino_ratio = (expected_return − r_f) / (DD · √P)` with the downside deviation
//!   `DD = √(Σ_t min(0, r_t − r_f/P)² / N)`, 0 when `DD` is 0;
//! - `max_drawdown = max_t (peak_t − W_t) / peak_t` on the wealth path `W_0 = 1`,
//!   `W_t = W_{t−1}(1 + r_t)`, as a positive fraction;
//! - historical one-period `var_95`: with `k = ⌈0.05 N⌉` and `r_(1) ≤ … ≤ r_(N)` the sorted
//!   returns, `var_95 = max(0, −r_(k))`, `cvar_95 = max(0, −mean(r_(1..k)))`;
//! - `beta = cov(r, r_b) / var(r_b)` on the benchmark's returns (sample moments), `null`
//!   without a benchmark or when the benchmark has zero variance;
//! - `correlation[i][j] = Σᵢⱼ / (sᵢ sⱼ)`, 1 on the diagonal, 0 where a series has zero
//!   variance;
//! - `concentration_hhi = Σ wᵢ²` (1 for a single holding, 1/n for equal weights);
//! - optimal weights: see [`optimize`]; `rebalancing` lists `target − current` per symbol
//!   towards the maximum-Sharpe weights (`hold` when |trade| < 1e-6).
//!
//! `confidence = N / (N + 20)` (more history, more trust); the volatility hint is the
//! annualised portfolio volatility.
//!
//! # Limits
//!
//! 1 to [`MAX_HOLDINGS`] holdings, 3 to [`MAX_PRICES`] prices each, prices in [1e-6, 1e12],
//! weights in [0, 1e12] and not all zero, `risk_free_rate` in [−1, 1], `periods_per_year` in
//! 1..=1 000 000. Worst case cost is `O(n² T + MAX_ITERS · n²)`.

pub(crate) mod optimize;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use super::error::{all_finite, finite, ModelError};
use super::parse::{field, in_range, in_range_int, index, len_between, name, ROOT};
use super::stats::{
    cov_matrix, mean, quad_form, sample_cov, sample_std, sample_var, simple_returns,
};

/// Most holdings in one request.
pub const MAX_HOLDINGS: usize = 100;
/// Most prices per series.
pub const MAX_PRICES: usize = 10_000;
/// Largest accepted price or weight.
const MAX_VALUE: f64 = 1e12;
/// Smallest accepted price: with `MAX_VALUE` it bounds a period return by 1e18, so squared
/// returns and their sums stay far from overflow.
const MIN_PRICE: f64 = 1e-6;

/// One position: a symbol, its (unnormalised) weight and its closes, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holding {
    /// Ticker; becomes the dependency tag `symbol:<SYM>`.
    pub symbol: String,
    /// Relative weight, ≥ 0; weights are normalised to sum 1.
    pub weight: f64,
    /// Closing prices, oldest first, > 0.
    pub prices: Vec<f64>,
}

/// Input of `portfolio_analysis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioInput {
    /// The positions; every price series has the same length.
    pub holdings: Vec<Holding>,
    /// Benchmark closes on the same dates, for `beta`.
    #[serde(default)]
    pub benchmark_prices: Option<Vec<f64>>,
    /// Annual risk-free rate as a fraction (0.03 = 3 %).
    #[serde(default)]
    pub risk_free_rate: f64,
    /// Return periods per year used to annualise (252 for daily closes).
    #[serde(default = "default_periods_per_year")]
    pub periods_per_year: u32,
}

pub(crate) fn default_periods_per_year() -> u32 {
    252
}

/// Validates a holdings list at `path` (shared with `risk_assessment`).
pub(crate) fn validate_holdings(path: &str, holdings: &[Holding]) -> Result<(), ModelError> {
    len_between(path, holdings.len(), 1, MAX_HOLDINGS)?;
    let len = holdings[0].prices.len();
    for (i, h) in holdings.iter().enumerate() {
        let hp = index(path, i);
        name(&field(&hp, "symbol"), &h.symbol, 32)?;
        if h.symbol.chars().any(char::is_whitespace) {
            return Err(ModelError::invalid(
                field(&hp, "symbol"),
                "must not contain whitespace",
            ));
        }
        if holdings[..i].iter().any(|o| o.symbol == h.symbol) {
            return Err(ModelError::inconsistent(
                field(&hp, "symbol"),
                format!("duplicate symbol {:?}", h.symbol),
            ));
        }
        in_range(&field(&hp, "weight"), h.weight, 0.0, MAX_VALUE)?;
        validate_prices(&field(&hp, "prices"), &h.prices)?;
        if h.prices.len() != len {
            return Err(ModelError::inconsistent(
                field(&hp, "prices"),
                format!(
                    "must have the same length as {}[0].prices ({len}), got {}",
                    path,
                    h.prices.len()
                ),
            ));
        }
    }
    if holdings.iter().all(|h| h.weight == 0.0) {
        return Err(ModelError::inconsistent(
            path,
            "weights must not all be zero",
        ));
    }
    Ok(())
}

fn validate_prices(path: &str, prices: &[f64]) -> Result<(), ModelError> {
    len_between(path, prices.len(), 3, MAX_PRICES)?;
    for (j, p) in prices.iter().enumerate() {
        if !(p.is_finite() && *p >= MIN_PRICE && *p <= MAX_VALUE) {
            return Err(ModelError::invalid(
                index(path, j),
                format!("must be a price in [{MIN_PRICE}, {MAX_VALUE}], got {p}"),
            ));
        }
    }
    Ok(())
}

impl PortfolioInput {
    /// Semantic checks; see the module's limits.
    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        let holdings = field(ROOT, "holdings");
        validate_holdings(&holdings, &self.holdings)?;
        if let Some(b) = &self.benchmark_prices {
            let path = field(ROOT, "benchmark_prices");
            validate_prices(&path, b)?;
            let len = self.holdings[0].prices.len();
            if b.len() != len {
                return Err(ModelError::inconsistent(
                    path,
                    format!("must have the same length as the holdings' prices ({len})"),
                ));
            }
        }
        in_range(
            &field(ROOT, "risk_free_rate"),
            self.risk_free_rate,
            -1.0,
            1.0,
        )?;
        in_range_int(
            &field(ROOT, "periods_per_year"),
            u64::from(self.periods_per_year),
            1,
            1_000_000,
        )
    }
}

/// Per-asset returns and the normalised weights of validated holdings.
pub(crate) struct Returns {
    /// `asset[i]` are holding i's simple returns.
    pub asset: Vec<Vec<f64>>,
    /// Normalised weights.
    pub weights: Vec<f64>,
    /// Portfolio returns per period.
    pub portfolio: Vec<f64>,
}

/// Computes returns of validated holdings.
pub(crate) fn returns(holdings: &[Holding]) -> Result<Returns, ModelError> {
    let total: f64 = holdings.iter().map(|h| h.weight).sum();
    let weights: Vec<f64> = holdings.iter().map(|h| h.weight / total).collect();
    all_finite("weights", &weights)?;
    let asset: Vec<Vec<f64>> = holdings.iter().map(|h| simple_returns(&h.prices)).collect();
    let periods = asset.first().map_or(0, Vec::len);
    let portfolio: Vec<f64> = (0..periods)
        .map(|t| asset.iter().zip(&weights).map(|(r, w)| w * r[t]).sum())
        .collect();
    all_finite("returns", &portfolio)?;
    Ok(Returns {
        asset,
        weights,
        portfolio,
    })
}

/// Annualised sample volatility of validated holdings (used by `risk_assessment`).
pub(crate) fn annual_volatility(
    holdings: &[Holding],
    periods_per_year: u32,
) -> Result<f64, ModelError> {
    let r = returns(holdings)?;
    finite(
        "volatility",
        sample_std(&r.portfolio) * f64::from(periods_per_year).sqrt(),
    )
}

/// One line of the rebalancing plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trade {
    /// The holding.
    pub symbol: String,
    /// Its normalised current weight.
    pub current_weight: f64,
    /// Its maximum-Sharpe weight.
    pub target_weight: f64,
    /// `target_weight − current_weight`, as a fraction of the portfolio's value.
    pub trade: f64,
    /// `buy`, `sell` or `hold`.
    pub action: &'static str,
}

/// Result of `portfolio_analysis`. Arrays follow `symbols` order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioResult {
    /// The holdings' symbols, in input order.
    pub symbols: Vec<String>,
    /// The normalised input weights.
    pub weights: Vec<f64>,
    /// Portfolio simple returns per period, oldest first.
    pub returns: Vec<f64>,
    /// Mean period return × periods per year.
    pub expected_return: f64,
    /// Sample standard deviation × √(periods per year).
    pub volatility: f64,
    /// Annualised Sharpe ratio.
    pub sharpe_ratio: f64,
    /// Annualised Sortino ratio.
    pub sortino_ratio: f64,
    /// Largest peak-to-trough loss of the wealth path, positive fraction.
    pub max_drawdown: f64,
    /// Historical one-period 95 % value at risk, positive loss fraction.
    pub var_95: f64,
    /// Mean of the worst 5 % of period returns, as a positive loss fraction.
    pub cvar_95: f64,
    /// Beta against the benchmark; `null` without one.
    pub beta: Option<f64>,
    /// Correlation matrix of asset returns.
    pub correlation: Vec<Vec<f64>>,
    /// Herfindahl–Hirschman index of the normalised weights.
    pub concentration_hhi: f64,
    /// Long-only minimum-variance weights.
    pub min_variance_weights: Vec<f64>,
    /// Long-only maximum-Sharpe weights.
    pub max_sharpe_weights: Vec<f64>,
    /// How the maximum-Sharpe weights were found (`tangency`, `min_variance_fallback`,
    /// `riskless_asset`).
    pub max_sharpe_method: &'static str,
    /// Annualised Sharpe ratio of the maximum-Sharpe weights (0 when their volatility is 0).
    pub max_sharpe_ratio: f64,
    /// Trades from the current weights to the maximum-Sharpe weights.
    pub rebalancing: Vec<Trade>,
}

/// Runs `portfolio_analysis` on a validated input.
pub(crate) fn compute(input: &PortfolioInput) -> Result<PortfolioResult, ModelError> {
    let p = f64::from(input.periods_per_year);
    let rf = input.risk_free_rate;
    let Returns {
        asset,
        weights,
        portfolio,
    } = returns(&input.holdings)?;
    let n_ret = portfolio.len();

    let expected_return = finite("expected_return", mean(&portfolio) * p)?;
    let volatility = finite("volatility", sample_std(&portfolio) * p.sqrt())?;
    let sharpe_ratio = ratio(expected_return - rf, volatility, "sharpe_ratio")?;
    let rf_period = rf / p;
    let downside = (portfolio
        .iter()
        .map(|r| (r - rf_period).min(0.0).powi(2))
        .sum::<f64>()
        / n_ret as f64)
        .sqrt();
    let sortino_ratio = ratio(expected_return - rf, downside * p.sqrt(), "sortino_ratio")?;
    let max_drawdown = finite("max_drawdown", max_drawdown(&portfolio))?;
    let (var_95, cvar_95) = var_cvar(&portfolio, 0.95);
    let beta = match &input.benchmark_prices {
        Some(b) => {
            let rb = simple_returns(b);
            let vb = sample_var(&rb);
            if vb > 0.0 {
                Some(finite("beta", sample_cov(&portfolio, &rb) / vb)?)
            } else {
                None
            }
        }
        None => None,
    };

    let cov = cov_matrix(&asset);
    for row in &cov {
        all_finite("covariance", row)?;
    }
    let correlation = correlation(&cov);
    let concentration_hhi = weights.iter().map(|w| w * w).sum();

    let min_variance_weights = optimize::min_variance(&cov);
    let excess: Vec<f64> = asset.iter().map(|r| mean(r) - rf_period).collect();
    let (max_sharpe_weights, how) = optimize::max_sharpe(&cov, &excess);
    all_finite("min_variance_weights", &min_variance_weights)?;
    all_finite("max_sharpe_weights", &max_sharpe_weights)?;
    let ms_excess: f64 = max_sharpe_weights
        .iter()
        .zip(&excess)
        .map(|(w, e)| w * e)
        .sum();
    let ms_vol = quad_form(&cov, &max_sharpe_weights).sqrt();
    let max_sharpe_ratio = ratio(ms_excess * p, ms_vol * p.sqrt(), "max_sharpe_ratio")?;

    let symbols: Vec<String> = input.holdings.iter().map(|h| h.symbol.clone()).collect();
    let rebalancing = symbols
        .iter()
        .zip(weights.iter().zip(&max_sharpe_weights))
        .map(|(s, (&current, &target))| {
            let trade = target - current;
            Trade {
                symbol: s.clone(),
                current_weight: current,
                target_weight: target,
                trade,
                action: if trade > 1e-6 {
                    "buy"
                } else if trade < -1e-6 {
                    "sell"
                } else {
                    "hold"
                },
            }
        })
        .collect();

    Ok(PortfolioResult {
        symbols,
        weights,
        returns: portfolio,
        expected_return,
        volatility,
        sharpe_ratio,
        sortino_ratio,
        max_drawdown,
        var_95,
        cvar_95,
        beta,
        correlation,
        concentration_hhi,
        min_variance_weights,
        max_sharpe_weights,
        max_sharpe_method: how.as_str(),
        max_sharpe_ratio,
        rebalancing,
    })
}

/// `num / den`, 0 when `den` is (numerically) 0.
fn ratio(num: f64, den: f64, what: &str) -> Result<f64, ModelError> {
    if den <= 1e-15 {
        Ok(0.0)
    } else {
        finite(what, num / den)
    }
}

/// Largest peak-to-trough loss of the wealth path `W_0 = 1, W_t = W_{t−1}(1 + r_t)`.
pub(crate) fn max_drawdown(returns: &[f64]) -> f64 {
    let (mut wealth, mut peak, mut worst) = (1.0f64, 1.0f64, 0.0f64);
    for r in returns {
        wealth *= 1.0 + r;
        peak = peak.max(wealth);
        if peak > 0.0 {
            worst = worst.max((peak - wealth) / peak);
        }
    }
    worst
}

/// Historical VaR and CVaR at `level`, one period, as positive loss fractions (≥ 0).
pub(crate) fn var_cvar(returns: &[f64], level: f64) -> (f64, f64) {
    if returns.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted = returns.to_vec();
    sorted.sort_by(f64::total_cmp);
    let k = (((1.0 - level) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    let var = (-sorted[k - 1]).max(0.0);
    let cvar = (-mean(&sorted[..k])).max(0.0);
    (var, cvar)
}

/// Correlation matrix from a covariance matrix (see module docs for zero variance).
fn correlation(cov: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = cov.len();
    let sd: Vec<f64> = (0..n).map(|i| cov[i][i].max(0.0).sqrt()).collect();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        1.0
                    } else if sd[i] * sd[j] > 0.0 {
                        (cov[i][j] / (sd[i] * sd[j])).clamp(-1.0, 1.0)
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// `confidence = N / (N + 20)` for `N` returns.
pub(crate) fn confidence(n_returns: usize) -> f64 {
    let n = n_returns as f64;
    n / (n + 20.0)
}

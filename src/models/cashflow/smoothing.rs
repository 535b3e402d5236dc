//! Holt's linear trend and additive Holt–Winters exponential smoothing, their one-step
//! squared-error fit, and their h-step forecast variances.
//!
//! # Recursions (classic component form)
//!
//! Holt, initial `l₁ = y₁`, `b₁ = y₁ − y₀`; for `t ≥ 2`:
//! `ŷ_t = l_{t−1} + b_{t−1}`, `l_t = α y_t + (1 − α)(l_{t−1} + b_{t−1})`,
//! `b_t = β (l_t − l_{t−1}) + (1 − β) b_{t−1}`.
//!
//! Holt–Winters additive with season `m`, initialised from the first two seasons (means
//! `ȳ₁`, `ȳ₂`): `b = (ȳ₂ − ȳ₁) / m`, `l_{m−1} = ȳ₁ + b (m − 1) / 2`,
//! `s_i = y_i − (ȳ₁ + b (i − (m − 1)/2))` for `i < m` (trend-adjusted, so a straight line
//! has zero seasonals); for `t ≥ m`: `ŷ_t = l_{t−1} + b_{t−1} + s_{t−m}`,
//! `l_t = α (y_t − s_{t−m}) + (1 − α)(l_{t−1} + b_{t−1})`,
//! `b_t = β (l_t − l_{t−1}) + (1 − β) b_{t−1}`, `s_t = γ (y_t − l_t) + (1 − γ) s_{t−m}`.
//!
//! Both initialisations reproduce a constant or straight-line history exactly, so such a
//! history has zero error for every parameter and its forecast continues it.
//!
//! # Fit
//!
//! Parameters in [0, 1] minimise the sum of squared one-step errors `SSE = Σ (y_t − ŷ_t)²`
//! (errors from `t = 2` for Holt, `t = m` for Holt–Winters): a grid over
//! {0.1, 0.3, 0.5, 0.7, 0.9} per parameter, then coordinate search from the best grid point
//! with steps 0.1, 0.05, … (12 halvings). Ties keep the earlier point, so the fit is
//! deterministic. At most `125 + 12 · 20 · 6` runs of `O(n)` each.
//!
//! # Forecast variance
//!
//! With `σ² = SSE / (number of errors)` and the state-space parameters `β' = αβ`,
//! `γ' = γ(1 − α)` (Hyndman et al., *Forecasting with Exponential Smoothing*, table 6.1,
//! classes ETS(A,A,N) and ETS(A,A,A)), the h-step variance is
//! `σ²_h = σ² [1 + (h − 1)(α² + αβ' h + β'² h (2h − 1) / 6) + γ' k (2α + γ' + β' m (k + 1))]`
//! with `k = ⌊(h − 1)/m⌋` (the γ' term only for Holt–Winters). Every term is non-negative and
//! non-decreasing in `h`, so intervals widen with the horizon.

/// The model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Holt's linear trend.
    Holt,
    /// Additive Holt–Winters with this season length.
    HoltWinters(usize),
}

/// A fitted model: parameters, final state and one-step errors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fitted {
    pub method: Method,
    pub alpha: f64,
    pub beta: f64,
    /// 0 for Holt.
    pub gamma: f64,
    pub level: f64,
    pub trend: f64,
    /// Seasonals indexed by `t mod m` (empty for Holt).
    pub seasonals: Vec<f64>,
    /// `(actual, one-step error)` pairs.
    pub errors: Vec<(f64, f64)>,
    pub sse: f64,
}

/// Runs the recursions with fixed parameters over `y`.
pub(crate) fn run(y: &[f64], method: Method, alpha: f64, beta: f64, gamma: f64) -> Fitted {
    let mut errors = Vec::with_capacity(y.len());
    let (mut level, mut trend, mut seasonals, start) = match method {
        Method::Holt => (y[1], y[1] - y[0], Vec::new(), 2),
        Method::HoltWinters(m) => {
            let mean1 = y[..m].iter().sum::<f64>() / m as f64;
            let mean2 = y[m..2 * m].iter().sum::<f64>() / m as f64;
            let b = (mean2 - mean1) / m as f64;
            let mid = (m as f64 - 1.0) / 2.0;
            let s = (0..m)
                .map(|i| y[i] - (mean1 + b * (i as f64 - mid)))
                .collect();
            (mean1 + b * mid, b, s, m)
        }
    };
    let mut sse = 0.0;
    for (t, &actual) in y.iter().enumerate().skip(start) {
        let season = match method {
            Method::Holt => 0.0,
            Method::HoltWinters(m) => seasonals[t % m],
        };
        let err = actual - (level + trend + season);
        sse += err * err;
        errors.push((actual, err));
        let new_level = alpha * (actual - season) + (1.0 - alpha) * (level + trend);
        trend = beta * (new_level - level) + (1.0 - beta) * trend;
        level = new_level;
        if let Method::HoltWinters(m) = method {
            seasonals[t % m] = gamma * (actual - level) + (1.0 - gamma) * season;
        }
    }
    Fitted {
        method,
        alpha,
        beta,
        gamma,
        level,
        trend,
        seasonals,
        errors,
        sse,
    }
}

/// Fits the parameters by minimising one-step SSE (see the module docs).
pub(crate) fn fit(y: &[f64], method: Method) -> Fitted {
    let dims = match method {
        Method::Holt => 2,
        Method::HoltWinters(_) => 3,
    };
    let sse = |p: &[f64; 3]| {
        let s = run(y, method, p[0], p[1], p[2]).sse;
        if s.is_finite() {
            s
        } else {
            f64::INFINITY
        }
    };
    let grid = [0.1, 0.3, 0.5, 0.7, 0.9];
    let mut best = [0.1, 0.1, if dims == 3 { 0.1 } else { 0.0 }];
    let mut best_sse = sse(&best);
    for &a in &grid {
        for &b in &grid {
            for &g in if dims == 3 { &grid[..] } else { &grid[..1] } {
                let p = [a, b, if dims == 3 { g } else { 0.0 }];
                let s = sse(&p);
                if s < best_sse {
                    best = p;
                    best_sse = s;
                }
            }
        }
    }
    let mut step = 0.1;
    for _ in 0..12 {
        for _ in 0..20 {
            let mut improved = false;
            for d in 0..dims {
                for dir in [-1.0, 1.0] {
                    let mut p = best;
                    p[d] = (p[d] + dir * step).clamp(0.0, 1.0);
                    let s = sse(&p);
                    if s < best_sse {
                        best = p;
                        best_sse = s;
                        improved = true;
                    }
                }
            }
            if !improved {
                break;
            }
        }
        step /= 2.0;
    }
    run(y, method, best[0], best[1], best[2])
}

impl Fitted {
    /// Point forecast `h` steps past the last observation (`n` observations).
    pub(crate) fn forecast(&self, n: usize, h: usize) -> f64 {
        let season = match self.method {
            Method::Holt => 0.0,
            Method::HoltWinters(m) => self.seasonals[(n - 1 + h) % m],
        };
        self.level + h as f64 * self.trend + season
    }

    /// `σ²_h / σ²` per the module docs.
    pub(crate) fn variance_factor(&self, h: usize) -> f64 {
        let (a, hf) = (self.alpha, h as f64);
        let b = self.alpha * self.beta;
        let mut f = 1.0 + (hf - 1.0) * (a * a + a * b * hf + b * b * hf * (2.0 * hf - 1.0) / 6.0);
        if let Method::HoltWinters(m) = self.method {
            let g = self.gamma * (1.0 - self.alpha);
            let k = ((h - 1) / m) as f64;
            f += g * k * (2.0 * a + g + b * m as f64 * (k + 1.0));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holt_recursion_by_hand() {
        // y = 10, 12, 13, 15 with α = 0.5, β = 0.5.
        // l₁ = 12, b₁ = 2. t=2: ŷ = 14, e = −1; l₂ = 0.5·13 + 0.5·14 = 13.5;
        //   b₂ = 0.5·(13.5 − 12) + 0.5·2 = 1.75.
        // t=3: ŷ = 15.25, e = −0.25; l₃ = 0.5·15 + 0.5·15.25 = 15.125;
        //   b₃ = 0.5·(15.125 − 13.5) + 0.5·1.75 = 1.6875.
        // SSE = 1 + 0.0625 = 1.0625; forecast h=2: 15.125 + 2·1.6875 = 18.5.
        let f = run(&[10.0, 12.0, 13.0, 15.0], Method::Holt, 0.5, 0.5, 0.0);
        assert_eq!(f.errors, vec![(13.0, -1.0), (15.0, -0.25)]);
        assert!((f.sse - 1.0625).abs() < 1e-12);
        assert!((f.level - 15.125).abs() < 1e-12 && (f.trend - 1.6875).abs() < 1e-12);
        assert!((f.forecast(4, 2) - 18.5).abs() < 1e-12);
    }

    #[test]
    fn holt_winters_initialisation_by_hand() {
        // m = 2, y = 1, 3, 3, 5: ȳ₁ = 2, ȳ₂ = 4, b = (4 − 2)/2 = 1, l₁ = 2 + 1·0.5 = 2.5,
        // s₀ = 1 − (2 − 0.5) = −0.5, s₁ = 3 − (2 + 0.5) = 0.5.
        // t=2: ŷ = 2.5 + 1 − 0.5 = 3 → e = 0; t=3: l₂ = 3.5 (α any, as e = 0), ŷ = 3.5 + 1 + 0.5 = 5.
        let f = run(&[1.0, 3.0, 3.0, 5.0], Method::HoltWinters(2), 0.3, 0.3, 0.3);
        assert!(f.sse.abs() < 1e-24, "{f:?}");
        // Next: l₃ = 4.5, b = 1, s for t=4 is s₀ = −0.5 → 4.5 + 1 − 0.5 = 5, then 7, 7, 9.
        let next: Vec<f64> = (1..=4).map(|h| f.forecast(4, h)).collect();
        for (got, want) in next.iter().zip([5.0, 7.0, 7.0, 9.0]) {
            assert!((got - want).abs() < 1e-12, "{next:?}");
        }
    }

    #[test]
    fn variance_factor_grows_with_h() {
        // Holt with α = 0.5, β = 0.5 → β' = 0.25; h = 2: 1 + 1·(0.25 + 0.5·0.25·2 + 0.0625·2·3/6)
        //   = 1 + 0.25 + 0.25 + 0.0625 = 1.5625.
        let f = run(&[1.0, 2.0, 4.0, 3.0], Method::Holt, 0.5, 0.5, 0.0);
        assert!((f.variance_factor(1) - 1.0).abs() < 1e-12);
        assert!((f.variance_factor(2) - 1.5625).abs() < 1e-12);
        let y: Vec<f64> = (0..24).map(|t| (t as f64).sin()).collect();
        let hw = run(&y, Method::HoltWinters(12), 0.4, 0.2, 0.3);
        let v: Vec<f64> = (1..=36).map(|h| hw.variance_factor(h)).collect();
        assert!(v.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn fit_recovers_a_good_alpha_on_a_random_walk_like_series() {
        let y = [5.0, 7.0, 6.0, 8.0, 9.0, 8.5, 10.0, 11.0, 10.5, 12.0];
        let f = fit(&y, Method::Holt);
        let coarse = run(&y, Method::Holt, 0.5, 0.5, 0.0);
        assert!(f.sse <= coarse.sse);
        assert!((0.0..=1.0).contains(&f.alpha) && (0.0..=1.0).contains(&f.beta));
    }
}

//! Long-only portfolio optimisation: minimum-variance and maximum-Sharpe weights.
//!
//! Both reduce to one convex quadratic programme,
//!
//! ```text
//! minimise ½ yᵀ Q y   subject to   y ≥ 0,  aᵀ y = 1
//! ```
//!
//! - **minimum variance**: `Q = Σ` (sample covariance of per-period returns), `a = 1`; the
//!   solution is the weight vector itself;
//! - **maximum Sharpe** (tangency): `Q = Σ`, `a = μ − r_f` (per-period excess mean returns);
//!   weights are `w = y / Σ yᵢ`. This is the standard convex reformulation of the Sharpe
//!   ratio maximisation (Cornuéjols & Tütüncü, *Optimization Methods in Finance*, §8.2), valid
//!   when some asset has a positive excess return.
//!
//! Solver: accelerated projected gradient (FISTA with gradient restart), step `1/L`
//! with `L` the smaller of the Gershgorin and Frobenius bounds on `λ_max(Q)`, projecting onto
//! `{y ≥ 0, aᵀy = 1}` exactly by a breakpoint sweep. Every 25 iterations, when the support
//! has changed since the last try, an active-set step solves the KKT system on it; when that
//! point satisfies every optimality condition (feasible, `(Qy)ᵢ ≥ λaᵢ` off the support) it is
//! the exact optimum and the loop stops. Otherwise the loop runs to convergence or
//! [`MAX_ITERS`] and keeps the better of its point and the support solve, so a call costs at
//! most `O(MAX_ITERS · n² + n³)` plus one `O(k³)` support solve per change of support.
//!
//! Degenerate cases have documented answers instead of NaN: an all-zero covariance gives
//! equal weights (minimum variance); when no asset has a positive excess return, maximum-Sharpe
//! falls back to the minimum-variance weights; when an asset has zero variance and a positive
//! excess return (an unbounded Sharpe ratio), maximum-Sharpe holds the one with the largest
//! excess return.

use crate::models::stats::quad_form;

/// Iteration cap of the projected-gradient loop.
pub(crate) const MAX_ITERS: usize = 2_000;

/// Variances at or below this are treated as zero.
const ZERO_VAR: f64 = 1e-24;

/// How the maximum-Sharpe weights were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharpeMethod {
    /// The tangency programme above.
    Tangency,
    /// No asset beat the risk-free rate: the minimum-variance weights.
    MinVarianceFallback,
    /// A zero-variance asset beat the risk-free rate: all in it.
    RisklessAsset,
}

impl SharpeMethod {
    /// The name reported in results.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SharpeMethod::Tangency => "tangency",
            SharpeMethod::MinVarianceFallback => "min_variance_fallback",
            SharpeMethod::RisklessAsset => "riskless_asset",
        }
    }
}

/// Long-only minimum-variance weights (sum 1, each ≥ 0).
pub(crate) fn min_variance(cov: &[Vec<f64>]) -> Vec<f64> {
    let n = cov.len();
    let ones = vec![1.0; n];
    let y = solve_qp(cov, &ones);
    normalise(y, n)
}

/// Long-only maximum-Sharpe weights from per-period `excess` mean returns (sum 1, each ≥ 0).
pub(crate) fn max_sharpe(cov: &[Vec<f64>], excess: &[f64]) -> (Vec<f64>, SharpeMethod) {
    let n = cov.len();
    let riskless = (0..n)
        .filter(|&i| cov[i][i] <= ZERO_VAR && excess[i] > 0.0)
        .max_by(|&i, &j| excess[i].total_cmp(&excess[j]));
    if let Some(i) = riskless {
        let mut w = vec![0.0; n];
        w[i] = 1.0;
        return (w, SharpeMethod::RisklessAsset);
    }
    if !excess.iter().any(|&e| e > 0.0) {
        return (min_variance(cov), SharpeMethod::MinVarianceFallback);
    }
    let y = solve_qp(cov, excess);
    (normalise(y, n), SharpeMethod::Tangency)
}

/// Clears rounding dust and rescales to sum 1; equal weights if nothing is left.
fn normalise(mut w: Vec<f64>, n: usize) -> Vec<f64> {
    for x in w.iter_mut() {
        if !x.is_finite() || *x < 1e-12 {
            *x = 0.0;
        }
    }
    let s: f64 = w.iter().sum();
    if s > 0.0 && s.is_finite() {
        w.iter_mut().for_each(|x| *x /= s);
        w
    } else {
        vec![1.0 / n as f64; n]
    }
}

/// Minimises `½ yᵀQy` over `{y ≥ 0, aᵀy = 1}`; `a` has a positive entry.
fn solve_qp(q: &[Vec<f64>], a: &[f64]) -> Vec<f64> {
    let n = q.len();
    // Two upper bounds on λ_max(Q): Gershgorin (largest absolute row sum) and Frobenius.
    let gershgorin = q
        .iter()
        .map(|row| row.iter().map(|x| x.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let frobenius = q.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    let lipschitz = gershgorin.min(frobenius);
    let start = project(&vec![0.0; n], a);
    if lipschitz <= ZERO_VAR || !lipschitz.is_finite() {
        return start;
    }
    let step = 1.0 / lipschitz;
    let mut y = start.clone();
    let mut z = start;
    let mut t = 1.0f64;
    let mut grad = vec![0.0; n];
    let mut trial = vec![0.0; n];
    let mut checked: Vec<usize> = Vec::new();
    for iter in 0..MAX_ITERS {
        if iter % 25 == 24 {
            // Try the exact active-set solve whenever the support has changed since the last
            // try (a solve costs O(k³), so not every iteration).
            let support = support_of(&y);
            if support != checked {
                if let Some(exact) = kkt_point(q, a, &y) {
                    return exact;
                }
                checked = support;
            }
        }
        mat_vec(q, &z, &mut grad);
        for i in 0..n {
            trial[i] = z[i] - step * grad[i];
        }
        let y_new = project(&trial, a);
        let scale = y_new.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        let mut delta = 0.0f64;
        let mut restart = 0.0;
        for i in 0..n {
            delta = delta.max((y_new[i] - y[i]).abs());
            restart += (z[i] - y_new[i]) * (y_new[i] - y[i]);
        }
        if restart > 0.0 {
            // Gradient restart (O'Donoghue & Candès): momentum points uphill, drop it.
            t = 1.0;
            z.clone_from(&y_new);
        } else {
            let t_new = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
            let momentum = (t - 1.0) / t_new;
            for i in 0..n {
                z[i] = y_new[i] + momentum * (y_new[i] - y[i]);
            }
            t = t_new;
        }
        y = y_new;
        if delta <= 1e-13 * scale {
            break;
        }
    }
    kkt_point(q, a, &y).unwrap_or_else(|| polish(q, a, y))
}

/// Solves the KKT system on the support of `y` and returns the solution when it satisfies
/// every optimality condition (primal feasibility, and `(Qy)ᵢ ≥ λ aᵢ` off the support): then
/// it is the exact optimum of the convex programme.
fn kkt_point(q: &[Vec<f64>], a: &[f64], y: &[f64]) -> Option<Vec<f64>> {
    let n = y.len();
    let (cand, lambda) = solve_on_support(q, a, y)?;
    let mut g = vec![0.0; n];
    mat_vec(q, &cand, &mut g);
    let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()))
        + lambda.abs() * a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
        + 1e-300;
    let optimal = (0..n).all(|i| cand[i] > 0.0 || g[i] - lambda * a[i] >= -1e-9 * scale);
    optimal.then_some(cand)
}

/// `out = Q x`.
fn mat_vec(q: &[Vec<f64>], x: &[f64], out: &mut [f64]) {
    for (o, row) in out.iter_mut().zip(q) {
        *o = row.iter().zip(x).map(|(c, v)| c * v).sum();
    }
}

/// Euclidean projection of `x` onto `{y ≥ 0, aᵀy = 1}` (`a` has a positive entry):
/// `yᵢ = max(0, xᵢ + ν aᵢ)` with `ν` the root of `g(ν) = Σ aᵢ max(0, xᵢ + ν aᵢ) − 1`, which is
/// piecewise linear and non-decreasing. The root is found exactly by sweeping the sorted
/// breakpoints `−xᵢ/aᵢ` (`O(n log n)`).
fn project(x: &[f64], a: &[f64]) -> Vec<f64> {
    let mut breaks: Vec<(f64, usize)> = (0..x.len())
        .filter(|&i| a[i] != 0.0)
        .map(|i| (-x[i] / a[i], i))
        .collect();
    breaks.sort_by(|p, q| p.0.total_cmp(&q.0));
    // Below every breakpoint the active terms are those with aᵢ < 0.
    let (mut sum_ax, mut sum_aa) = (0.0, 0.0);
    for (xi, ai) in x.iter().zip(a) {
        if *ai < 0.0 {
            sum_ax += ai * xi;
            sum_aa += ai * ai;
        }
    }
    let mut nu = None;
    for &(b, i) in &breaks {
        // On the interval ending at b, g(ν) = sum_ax + ν sum_aa − 1.
        if sum_aa > 0.0 && sum_ax + b * sum_aa - 1.0 >= 0.0 {
            nu = Some((1.0 - sum_ax) / sum_aa);
            break;
        }
        let sign = if a[i] > 0.0 { 1.0 } else { -1.0 };
        sum_ax += sign * a[i] * x[i];
        sum_aa += sign * a[i] * a[i];
    }
    let nu = match nu {
        Some(v) => v,
        // Past the last breakpoint only aᵢ > 0 terms are active (sum_aa > 0 by assumption).
        None if sum_aa > 0.0 => (1.0 - sum_ax) / sum_aa,
        None => 0.0,
    };
    x.iter()
        .zip(a)
        .map(|(xi, ai)| (xi + nu * ai).max(0.0))
        .collect()
}

/// Indices where `y` is clearly positive.
fn support_of(y: &[f64]) -> Vec<usize> {
    let top = y.iter().fold(0.0f64, |m, v| m.max(*v));
    (0..y.len()).filter(|&i| y[i] > 1e-10 * top).collect()
}

/// Solves `min ½ yᵀQy` subject to `aᵀy = 1` on the support of `y` (the KKT linear system);
/// returns the point, zero off the support, and the multiplier `λ`, when the solve succeeds
/// and the point is feasible.
fn solve_on_support(q: &[Vec<f64>], a: &[f64], y: &[f64]) -> Option<(Vec<f64>, f64)> {
    let support = support_of(y);
    let k = support.len();
    if k == 0 {
        return None;
    }
    // [Q_SS a_S; a_Sᵀ 0] [y_S; −λ] = [0; 1]
    let mut m = vec![vec![0.0; k + 2]; k + 1];
    for (r, &i) in support.iter().enumerate() {
        for (c, &j) in support.iter().enumerate() {
            m[r][c] = q[i][j];
        }
        m[r][k] = a[i];
        m[k][r] = a[i];
    }
    m[k][k + 1] = 1.0;
    let sol = gauss(m)?;
    let mut cand = vec![0.0; y.len()];
    for (r, &i) in support.iter().enumerate() {
        if !sol[r].is_finite() || sol[r] < -1e-12 {
            return None;
        }
        cand[i] = sol[r].max(0.0);
    }
    let lhs: f64 = cand.iter().zip(a).map(|(c, ai)| c * ai).sum();
    let lambda = -sol[k];
    ((lhs - 1.0).abs() <= 1e-9 && lambda.is_finite()).then_some((cand, lambda))
}

/// The exact solution on the support of `y` when it is feasible and no worse than `y`;
/// otherwise `y`.
fn polish(q: &[Vec<f64>], a: &[f64], y: Vec<f64>) -> Vec<f64> {
    let Some((cand, _)) = solve_on_support(q, a, &y) else {
        return y;
    };
    let (f_c, f_y) = (quad_form(q, &cand), quad_form(q, &y));
    if f_c <= f_y * (1.0 + 1e-9) + 1e-30 {
        cand
    } else {
        y
    }
}

/// Gaussian elimination with partial pivoting on an augmented `k × (k+1)` matrix.
fn gauss(mut m: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let k = m.len();
    let scale = m
        .iter()
        .flat_map(|r| r[..k].iter())
        .fold(0.0f64, |s, v| s.max(v.abs()));
    if scale == 0.0 {
        return None;
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() <= 1e-13 * scale {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                if f != 0.0 {
                    for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= f * p;
                    }
                }
            }
        }
    }
    Some((0..k).map(|i| m[i][k] / m[i][i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn two_asset_min_variance_matches_closed_form() {
        // Σ = [[0.04, 0.006], [0.006, 0.01]]:
        // w1 = (σ2² − σ12) / (σ1² + σ2² − 2σ12) = (0.01 − 0.006) / (0.04 + 0.01 − 0.012)
        //    = 0.004 / 0.038 = 0.105263…
        let cov = vec![vec![0.04, 0.006], vec![0.006, 0.01]];
        let w = min_variance(&cov);
        assert!(close(w[0], 0.004 / 0.038, 1e-9), "{w:?}");
        assert!(close(w[0] + w[1], 1.0, 1e-12));
    }

    #[test]
    fn min_variance_hits_the_bound_when_unconstrained_optimum_is_short() {
        // σ12 = 0.018 > σ2² = 0.01 → the unconstrained w1 = (0.01 − 0.018)/(0.04+0.01−0.036) < 0,
        // so the long-only answer is all in asset 2.
        let cov = vec![vec![0.04, 0.018], vec![0.018, 0.01]];
        let w = min_variance(&cov);
        assert!(close(w[0], 0.0, 1e-12) && close(w[1], 1.0, 1e-12), "{w:?}");
    }

    #[test]
    fn uncorrelated_tangency_is_proportional_to_excess_over_variance() {
        // Diagonal Σ: y ∝ Σ⁻¹e = (0.02/0.04, 0.01/0.01) = (0.5, 1) → w = (1/3, 2/3).
        let cov = vec![vec![0.04, 0.0], vec![0.0, 0.01]];
        let (w, how) = max_sharpe(&cov, &[0.02, 0.01]);
        assert_eq!(how, SharpeMethod::Tangency);
        assert!(
            close(w[0], 1.0 / 3.0, 1e-9) && close(w[1], 2.0 / 3.0, 1e-9),
            "{w:?}"
        );
    }

    #[test]
    fn negative_excess_asset_is_excluded_when_uncorrelated() {
        let cov = vec![vec![0.04, 0.0], vec![0.0, 0.01]];
        let (w, _) = max_sharpe(&cov, &[0.02, -0.01]);
        assert!(close(w[0], 1.0, 1e-9) && close(w[1], 0.0, 1e-9), "{w:?}");
    }

    #[test]
    fn degenerate_cases_have_documented_answers() {
        let zero = vec![vec![0.0, 0.0], vec![0.0, 0.0]];
        assert_eq!(min_variance(&zero), vec![0.5, 0.5]);
        let (w, how) = max_sharpe(&zero, &[0.01, 0.02]);
        assert_eq!((w, how), (vec![0.0, 1.0], SharpeMethod::RisklessAsset));
        let cov = vec![vec![0.04, 0.0], vec![0.0, 0.01]];
        let (w, how) = max_sharpe(&cov, &[-0.01, -0.02]);
        assert_eq!(how, SharpeMethod::MinVarianceFallback);
        assert!(close(w[0], 0.2, 1e-9), "{w:?}"); // 1/0.04 : 1/0.01 = 1 : 4
    }

    #[test]
    fn projection_lands_on_the_simplex() {
        let y = project(&[0.3, 2.0, -1.0], &[1.0, 1.0, 1.0]);
        // ν solves (0.3+ν)+ + (2+ν)+ + (−1+ν)+ = 1 → only asset 2 active: ν = −1 → (0, 1, 0).
        assert!(close(y[0], 0.0, 1e-12) && close(y[1], 1.0, 1e-12) && y[2] == 0.0);
    }
}

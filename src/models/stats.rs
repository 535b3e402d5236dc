//! Small descriptive statistics shared by the models. Pure functions over slices.
//!
//! Conventions: sample (co)variances divide by `n - 1`; a slice too short for a statistic
//! yields 0 rather than NaN, and callers document what 0 means for them.

/// Simple returns `r_t = p_t / p_{t-1} - 1` of a price series (oldest first); length `n - 1`.
/// Callers guarantee prices are strictly positive.
pub(crate) fn simple_returns(prices: &[f64]) -> Vec<f64> {
    prices.windows(2).map(|w| w[1] / w[0] - 1.0).collect()
}

/// Arithmetic mean; 0 for an empty slice.
pub(crate) fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Sample covariance `Σ (x - x̄)(y - ȳ) / (n - 1)`; 0 when `n < 2`. Slices have equal length.
pub(crate) fn sample_cov(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return 0.0;
    }
    let (mx, my) = (mean(&xs[..n]), mean(&ys[..n]));
    let s: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    s / (n - 1) as f64
}

/// Sample variance (`n - 1` denominator), clamped at 0 against rounding.
pub(crate) fn sample_var(xs: &[f64]) -> f64 {
    sample_cov(xs, xs).max(0.0)
}

/// Sample standard deviation.
pub(crate) fn sample_std(xs: &[f64]) -> f64 {
    sample_var(xs).sqrt()
}

/// Sample covariance matrix of the columns `series[i]` (each the same length).
/// Each series is demeaned once, so the cost is `n (n + 1) / 2` dot products.
pub(crate) fn cov_matrix(series: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = series.len();
    let len = series.first().map_or(0, Vec::len);
    let mut cov = vec![vec![0.0; n]; n];
    if len < 2 {
        return cov;
    }
    let demeaned: Vec<Vec<f64>> = series
        .iter()
        .map(|s| {
            let m = mean(s);
            s.iter().map(|x| x - m).collect()
        })
        .collect();
    let denom = (len - 1) as f64;
    for i in 0..n {
        for j in i..n {
            let dot: f64 = demeaned[i]
                .iter()
                .zip(&demeaned[j])
                .map(|(a, b)| a * b)
                .sum();
            let c = if i == j {
                dot.max(0.0) / denom
            } else {
                dot / denom
            };
            cov[i][j] = c;
            cov[j][i] = c;
        }
    }
    cov
}

/// `w' Σ w`, clamped at 0 against rounding.
pub(crate) fn quad_form(cov: &[Vec<f64>], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for (i, row) in cov.iter().enumerate() {
        for (j, c) in row.iter().enumerate() {
            s += w[i] * c * w[j];
        }
    }
    s.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_mean_and_sample_std_by_hand() {
        // prices 100, 110, 99 → returns 0.1, -0.1; mean 0; var = (0.01 + 0.01) / 1 = 0.02.
        let r = simple_returns(&[100.0, 110.0, 99.0]);
        assert!((r[0] - 0.1).abs() < 1e-12 && (r[1] + 0.1).abs() < 1e-12);
        assert!(mean(&r).abs() < 1e-12);
        assert!((sample_var(&r) - 0.02).abs() < 1e-12);
        assert!((sample_std(&r) - 0.02f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn cov_matrix_matches_pairwise_covariances() {
        let s = vec![vec![0.1, -0.1, 0.1], vec![0.0, 0.1, -0.05]];
        let c = cov_matrix(&s);
        // var = (1/75, 7/1200), cov = −1/120 (see the portfolio reference case).
        assert!((c[0][0] - 1.0 / 75.0).abs() < 1e-15 && (c[1][1] - 7.0 / 1200.0).abs() < 1e-15);
        assert!((c[0][1] + 1.0 / 120.0).abs() < 1e-15 && c[0][1] == c[1][0]);
        assert!((c[0][1] - sample_cov(&s[0], &s[1])).abs() < 1e-15);
    }

    #[test]
    fn short_slices_give_zero_not_nan() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(sample_var(&[1.0]), 0.0);
        assert_eq!(sample_cov(&[], &[]), 0.0);
    }
}

//! Trends and learned baselines over the monitor's window history. Pure functions and plain
//! state: no clock, no I/O.
//!
//! Trend: the least-squares slope of a figure over the windows that have it, reported per
//! minute, with its change over the span (slope × span). A figure is *degrading* when, over at
//! least [`MIN_POINTS`] windows, p95 latency rises by more than 10 % of its mean, the error
//! rate rises by more than 1 percentage point, or the cache hit rate falls by more than 5
//! points. Throughput only has a direction.
//!
//! Baseline (`ATLAS_ADAPTIVE_THRESHOLDS`): per operation, an exponentially weighted mean
//! (α = 0.2) of the window p95, learned only from windows with enough answers that were not
//! deviating. Once [`BASELINE_WINDOWS`] windows are learned, a window deviates when its p95
//! exceeds `min(static warning, max(3 × baseline, 5 ms))`: never less sensitive than the
//! static thresholds, never noisier than a 5 ms floor.

/// Fewest windows with data before a trend can be degrading.
pub const MIN_POINTS: usize = 3;
/// Windows learned before a baseline is used.
pub const BASELINE_WINDOWS: u32 = 6;
/// A window deviates above this multiple of the baseline.
pub const DEVIATION_FACTOR: f64 = 3.0;
/// Deviation thresholds never go below this (seconds).
pub const DEVIATION_FLOOR_S: f64 = 0.005;
const ALPHA: f64 = 0.2;

/// Which figure a trend is about (decides what "degrading" means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Requests per second.
    Throughput,
    /// p95 latency.
    Latency,
    /// 5xx share.
    ErrorRate,
    /// Cache hit share.
    HitRate,
}

/// Direction of a figure over the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Changed by more than 5 % of its mean (or 1 point for rates) upwards.
    Rising,
    /// Likewise downwards.
    Falling,
    /// Neither.
    Flat,
}

impl Direction {
    /// The JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Rising => "rising",
            Direction::Falling => "falling",
            Direction::Flat => "flat",
        }
    }
}

/// A figure's trend over the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// Windows that had the figure.
    pub points: usize,
    /// Least-squares slope, per minute.
    pub slope_per_min: f64,
    /// Slope × span: the fitted change from the first to the last window.
    pub change: f64,
    /// Mean over the points.
    pub mean: f64,
    /// The last value.
    pub last: f64,
    /// Rising, falling or flat.
    pub direction: Direction,
    /// Whether the change is bad for the service (see the module docs).
    pub degrading: bool,
}

/// The trend of `(seconds, value)` points (times ascending); `None` without points.
pub fn trend(figure: Figure, points: &[(f64, f64)]) -> Option<Trend> {
    let (&(t0, _), &(t1, last)) = (points.first()?, points.last()?);
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for &(t, v) in points {
        cov += (t - mean_t) * (v - mean);
        var += (t - mean_t) * (t - mean_t);
    }
    let slope = if var > 0.0 { cov / var } else { 0.0 };
    let change = slope * (t1 - t0);
    let rate = matches!(figure, Figure::ErrorRate | Figure::HitRate);
    let flat_band = if rate { 0.01 } else { 0.05 * mean.abs() };
    let direction = if change > flat_band {
        Direction::Rising
    } else if change < -flat_band {
        Direction::Falling
    } else {
        Direction::Flat
    };
    let enough = points.len() >= MIN_POINTS;
    let degrading = enough
        && match figure {
            Figure::Throughput => false,
            Figure::Latency => change > 0.10 * mean.abs(),
            Figure::ErrorRate => change > 0.01,
            Figure::HitRate => change < -0.05,
        };
    Some(Trend {
        points: points.len(),
        slope_per_min: slope * 60.0,
        change,
        mean,
        last,
        direction,
        degrading,
    })
}

/// A learned p95 baseline of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    /// The weighted mean p95, seconds.
    pub p95: f64,
    /// Windows learned.
    pub windows: u32,
}

impl Baseline {
    /// The deviation threshold in seconds, once learned; `static_warning` bounds it.
    pub fn threshold(&self, static_warning: f64) -> Option<f64> {
        (self.windows >= BASELINE_WINDOWS).then(|| {
            (DEVIATION_FACTOR * self.p95)
                .max(DEVIATION_FLOOR_S)
                .min(static_warning)
        })
    }

    /// Looks at one window's p95: returns whether it deviates, and learns from it when not.
    pub fn observe(&mut self, p95: f64, static_warning: f64) -> bool {
        if self.threshold(static_warning).is_some_and(|t| p95 > t) {
            return true;
        }
        self.p95 = if self.windows == 0 {
            p95
        } else {
            ALPHA * p95 + (1.0 - ALPHA) * self.p95
        };
        self.windows = self.windows.saturating_add(1);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (5.0 * i as f64, *v))
            .collect()
    }

    #[test]
    fn rising_latency_degrades_and_steady_latency_does_not() {
        let t = trend(Figure::Latency, &series(&[0.10, 0.12, 0.14, 0.16])).unwrap();
        assert_eq!(t.direction, Direction::Rising);
        assert!(t.degrading);
        assert!((t.slope_per_min - 0.24).abs() < 1e-9, "{}", t.slope_per_min);
        assert!((t.change - 0.06).abs() < 1e-9);
        let flat = trend(Figure::Latency, &series(&[0.1, 0.101, 0.099, 0.1])).unwrap();
        assert_eq!(flat.direction, Direction::Flat);
        assert!(!flat.degrading);
        // Two points are a direction, not yet a verdict.
        assert!(
            !trend(Figure::Latency, &series(&[0.1, 0.3]))
                .unwrap()
                .degrading
        );
        assert!(trend(Figure::Latency, &[]).is_none());
    }

    #[test]
    fn rates_degrade_in_their_bad_direction_only() {
        let falling_hits = series(&[0.9, 0.85, 0.8, 0.75]);
        assert!(trend(Figure::HitRate, &falling_hits).unwrap().degrading);
        assert!(!trend(Figure::ErrorRate, &falling_hits).unwrap().degrading);
        let rising_errors = series(&[0.0, 0.01, 0.02, 0.03]);
        assert!(trend(Figure::ErrorRate, &rising_errors).unwrap().degrading);
        assert!(!trend(Figure::HitRate, &rising_errors).unwrap().degrading);
        let more_traffic = trend(Figure::Throughput, &series(&[10.0, 100.0, 1000.0])).unwrap();
        assert_eq!(more_traffic.direction, Direction::Rising);
        assert!(!more_traffic.degrading);
    }

    #[test]
    fn a_baseline_learns_then_flags_deviations_without_learning_them() {
        let warning = 0.3;
        let mut b = Baseline::default();
        for _ in 0..BASELINE_WINDOWS {
            assert!(!b.observe(0.010, warning));
        }
        assert!((b.p95 - 0.010).abs() < 1e-12);
        assert_eq!(b.threshold(warning), Some(0.030));
        assert!(b.observe(0.050, warning), "5 × the baseline deviates");
        assert!((b.p95 - 0.010).abs() < 1e-12, "a deviation is not learned");
        assert!(!b.observe(0.020, warning), "2 × is within bounds");
        // The static warning bounds the learned threshold; the floor bounds it from below.
        let mut slow = Baseline {
            p95: 0.2,
            windows: BASELINE_WINDOWS,
        };
        assert_eq!(slow.threshold(warning), Some(warning));
        assert!(slow.observe(0.31, warning));
        let fast = Baseline {
            p95: 0.0001,
            windows: BASELINE_WINDOWS,
        };
        assert_eq!(fast.threshold(warning), Some(DEVIATION_FLOOR_S));
    }
}

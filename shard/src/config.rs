//! Per-operation cache configuration: the closed set of [`Operation`]s, the cache
//! [`Strategy`], [`CacheConfig`], and the adaptive TTL function.
//!
//! Pure values and arithmetic: no clock, no cache state. The server parses environment and TOML
//! (the `ATLAS_CACHE_<OPERATION>_*` settings, with their defaults) into these types; the cache
//! itself only sees the TTLs computed here.

use std::fmt;
use std::time::Duration;

/// The operations Atlas serves. A closed set: adding one is a code change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Operation {
    /// Allocation of income, debt payoff schedules, goal feasibility.
    BudgetOptimization = 0,
    /// Returns, risk figures and optimal weights of a portfolio.
    PortfolioAnalysis = 1,
    /// Risk score and profile from a questionnaire and holdings.
    RiskAssessment = 2,
    /// Exponential-smoothing cash-flow forecast.
    CashflowForecast = 3,
}

impl Operation {
    /// Number of operations; arrays indexed by [`Operation::index`] have this length.
    pub const COUNT: usize = 4;

    /// Every operation, in index order.
    pub const ALL: [Operation; Operation::COUNT] = [
        Operation::BudgetOptimization,
        Operation::PortfolioAnalysis,
        Operation::RiskAssessment,
        Operation::CashflowForecast,
    ];

    /// The name used in URLs (`/ai/{operation}`), metrics and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::BudgetOptimization => "budget_optimization",
            Operation::PortfolioAnalysis => "portfolio_analysis",
            Operation::RiskAssessment => "risk_assessment",
            Operation::CashflowForecast => "cashflow_forecast",
        }
    }

    /// Parses the URL / configuration name.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Dense index in `0..COUNT`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Inverse of [`Operation::index`].
    pub fn from_index(i: usize) -> Option<Operation> {
        Operation::ALL.get(i).copied()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What, besides time, ends a cached result's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Time only, with the fixed configured TTL.
    Ttl,
    /// Dependency tags (`user:42:transactions`) invalidate it; adaptive TTL.
    Dependency,
    /// Events (`market_data_update` for symbols) invalidate it; adaptive TTL.
    Event,
    /// Time only, with the adaptive TTL.
    Adaptive,
}

impl Strategy {
    /// The configuration name (`ttl`, `dependency`, `event`, `adaptive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Ttl => "ttl",
            Strategy::Dependency => "dependency",
            Strategy::Event => "event",
            Strategy::Adaptive => "adaptive",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Strategy> {
        [
            Strategy::Ttl,
            Strategy::Dependency,
            Strategy::Event,
            Strategy::Adaptive,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// How one operation's results are cached.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Base lifetime of a result (the brief's `ttl_seconds`).
    pub ttl: Duration,
    /// What besides time invalidates a result.
    pub strategy: Strategy,
    /// Whether misses of this operation may share one model call (batching).
    pub batch_compatible: bool,
    /// Whether hot results are recomputed before they expire (refresh-ahead).
    pub warmup: bool,
    /// After expiry, how long a result is still served while a refresh runs.
    pub stale_while_revalidate: Duration,
    /// After expiry, how long a result may still be served if recomputing it fails.
    pub stale_if_error: Duration,
    /// Lower bound of the adaptive TTL.
    pub min_ttl: Duration,
    /// Upper bound of the adaptive TTL.
    pub max_ttl: Duration,
}

impl CacheConfig {
    /// A config with `ttl` and `strategy`, default windows (5 % of TTL for
    /// stale-while-revalidate, one TTL for stale-if-error) and adaptive bounds
    /// `[max(ttl/10, 1 s), ttl]`.
    pub fn new(ttl: Duration, strategy: Strategy) -> Self {
        CacheConfig {
            ttl,
            strategy,
            batch_compatible: true,
            warmup: false,
            stale_while_revalidate: ttl / 20,
            stale_if_error: ttl,
            min_ttl: (ttl / 10).max(Duration::from_secs(1)).min(ttl),
            max_ttl: ttl,
        }
    }

    /// The TTL of one result with this configuration. The `ttl` strategy uses the base TTL as
    /// is; the others use [`adaptive_ttl`] within `[min_ttl, max_ttl]`.
    pub fn ttl_for(&self, confidence: f32, volatility: f32) -> Duration {
        match self.strategy {
            Strategy::Ttl => self.ttl,
            Strategy::Dependency | Strategy::Event | Strategy::Adaptive => {
                adaptive_ttl(self.ttl, confidence, volatility, self.min_ttl, self.max_ttl)
            }
        }
    }
}

/// The adaptive TTL:
///
/// `ttl = clamp(base × (0.25 + 0.75·c) / (1 + 4·v), min, max)`
///
/// with confidence `c` and volatility `v` each clamped to `[0, 1]` (NaN counts as the worst
/// case: `c = 0`, `v = 1`). A fully confident, stable result keeps the base TTL; confidence
/// 0 keeps a quarter of it; volatility 1 divides it by five; both give `base / 20`. The result
/// is monotone: lower confidence or higher volatility never lengthens it. If `min > max`,
/// `max` wins.
pub fn adaptive_ttl(
    base: Duration,
    confidence: f32,
    volatility: f32,
    min: Duration,
    max: Duration,
) -> Duration {
    let c = if confidence.is_nan() {
        0.0
    } else {
        confidence.clamp(0.0, 1.0)
    };
    let v = if volatility.is_nan() {
        1.0
    } else {
        volatility.clamp(0.0, 1.0)
    };
    let factor = f64::from(0.25 + 0.75 * c) / f64::from(1.0 + 4.0 * v);
    let ttl = base.mul_f64(factor);
    ttl.max(min).min(max)
}

/// The cache configuration of every operation.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfigs {
    /// Indexed by [`Operation::index`].
    configs: [CacheConfig; Operation::COUNT],
}

impl CacheConfigs {
    /// The configuration `config(op)` for every operation.
    pub fn from_fn(config: impl FnMut(Operation) -> CacheConfig) -> Self {
        CacheConfigs {
            configs: Operation::ALL.map(config),
        }
    }

    /// The configuration of `op`.
    pub fn get(&self, op: Operation) -> &CacheConfig {
        &self.configs[op.index()]
    }

    /// Replaces the configuration of `op`.
    pub fn set(&mut self, op: Operation, config: CacheConfig) {
        self.configs[op.index()] = config;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_per_operation() {
        let mut c = CacheConfigs::from_fn(|op| match op {
            Operation::PortfolioAnalysis => {
                CacheConfig::new(Duration::from_secs(600), Strategy::Event)
            }
            _ => CacheConfig::new(Duration::from_secs(300), Strategy::Ttl),
        });
        let p = c.get(Operation::PortfolioAnalysis);
        assert_eq!((p.ttl.as_secs(), p.strategy), (600, Strategy::Event));
        assert_eq!(
            (
                p.stale_while_revalidate.as_secs(),
                p.stale_if_error.as_secs(),
                p.min_ttl.as_secs()
            ),
            (30, 600, 60)
        );
        assert!(p.batch_compatible && !p.warmup);
        let r = c.get(Operation::RiskAssessment);
        assert_eq!(
            r.ttl_for(0.0, 1.0).as_secs(),
            300,
            "the ttl strategy does not adapt"
        );
        c.set(
            Operation::RiskAssessment,
            CacheConfig::new(Duration::from_secs(60), Strategy::Adaptive),
        );
        assert_eq!(
            c.get(Operation::RiskAssessment).ttl_for(0.0, 1.0).as_secs(),
            6
        );
    }

    #[test]
    fn names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.as_str()), Some(op));
            assert_eq!(Operation::from_index(op.index()), Some(op));
        }
        assert_eq!(Operation::from_name("nope"), None);
        assert_eq!(Strategy::from_name("event"), Some(Strategy::Event));
    }

    #[test]
    fn adaptive_ttl_shortens_with_low_confidence_and_high_volatility() {
        let base = Duration::from_secs(1000);
        let (lo, hi) = (Duration::ZERO, Duration::from_secs(10_000));
        assert_eq!(adaptive_ttl(base, 1.0, 0.0, lo, hi), base);
        assert_eq!(
            adaptive_ttl(base, 0.0, 0.0, lo, hi),
            Duration::from_secs(250)
        );
        assert_eq!(
            adaptive_ttl(base, 1.0, 1.0, lo, hi),
            Duration::from_secs(200)
        );
        assert_eq!(
            adaptive_ttl(base, 0.0, 1.0, lo, hi),
            Duration::from_secs(50)
        );
        assert_eq!(
            adaptive_ttl(base, f32::NAN, f32::NAN, lo, hi),
            Duration::from_secs(50)
        );
        // clamped
        let min = Duration::from_secs(100);
        assert_eq!(adaptive_ttl(base, 0.0, 1.0, min, hi), min);
        assert_eq!(
            adaptive_ttl(base, 1.0, 0.0, lo, Duration::from_secs(10)).as_secs(),
            10
        );
        // config bounds apply
        let cfg = CacheConfig::new(Duration::from_secs(600), Strategy::Event);
        assert_eq!(cfg.ttl_for(1.0, 0.0), cfg.ttl);
        assert_eq!(cfg.ttl_for(0.0, 1.0), cfg.min_ttl);
    }

    proptest::proptest! {
        #[test]
        fn adaptive_ttl_is_monotone_and_bounded(
            c1 in 0f32..1.0, c2 in 0f32..1.0, v1 in 0f32..1.0, v2 in 0f32..1.0, base in 1u64..100_000
        ) {
            let base = Duration::from_secs(base);
            let (min, max) = (base / 10, base);
            let (clo, chi) = if c1 <= c2 { (c1, c2) } else { (c2, c1) };
            let (vlo, vhi) = if v1 <= v2 { (v1, v2) } else { (v2, v1) };
            let t = |c, v| adaptive_ttl(base, c, v, min, max);
            proptest::prop_assert!(t(clo, v1) <= t(chi, v1));
            proptest::prop_assert!(t(c1, vhi) <= t(c1, vlo));
            proptest::prop_assert!(t(c1, v1) >= min && t(c1, v1) <= max);
        }
    }
}

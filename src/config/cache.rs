//! Per-operation cache settings: for each operation `OP` (upper case),
//! `ATLAS_CACHE_<OP>_TTL_S`, `_STRATEGY`, `_STALE_WHILE_REVALIDATE_S`, `_STALE_IF_ERROR_S`,
//! `_BATCH_COMPATIBLE` and `_WARMUP` (TOML: `cache_<op>_ttl_s`, …, or the same keys in
//! `[cache.<op>]` tables). Their rows, with the defaults, are in the settings table; this
//! file turns them into the [`CacheConfigs`] the engines use. An empty TTL takes
//! `RESULT_CACHE_TTL`; empty stale windows follow the TTL (5 % of it while revalidating, one
//! TTL if recomputing fails); the adaptive TTL's bounds are a tenth of the TTL (at least 1 s)
//! and the TTL.

use std::time::Duration;

use atlas_shard::{CacheConfig, CacheConfigs, Operation, Strategy};

use super::{boolean, secs, settings, Parser};

/// Longest TTL or stale window a setting may give: one year.
const MAX_SECONDS: u64 = 31_536_000;

/// The environment name of setting `suffix` of `op` (`TTL_S`, `STRATEGY`, …).
pub fn env_name(op: Operation, suffix: &str) -> String {
    format!("ATLAS_CACHE_{}_{suffix}", op.as_str().to_ascii_uppercase())
}

/// The six setting suffixes of every operation.
pub const SUFFIXES: [&str; 6] = [
    "TTL_S",
    "STRATEGY",
    "STALE_WHILE_REVALIDATE_S",
    "STALE_IF_ERROR_S",
    "BATCH_COMPATIBLE",
    "WARMUP",
];

fn optional_secs(v: &str) -> Result<Option<Duration>, String> {
    if v.is_empty() {
        Ok(None)
    } else {
        secs(v, 0, MAX_SECONDS).map(Some)
    }
}

/// Parses every operation's cache settings, `result_ttl` filling empty TTLs. Problems are
/// reported by `p` under each setting's name.
pub(super) fn parse(p: &mut Parser<'_>, result_ttl: Duration) -> CacheConfigs {
    CacheConfigs::from_fn(|op| {
        let name = |suffix: &str| settings::by_env(&env_name(op, suffix)).map(|s| s.env);
        let mut ttl: Option<Duration> = None;
        let mut strategy = Strategy::Ttl;
        let (mut revalidate, mut if_error) = (None, None);
        let (mut batch_compatible, mut warmup) = (true, false);
        if let Some(n) = name("TTL_S") {
            p.set(&mut ttl, n, |v| {
                if v.is_empty() {
                    Ok(None)
                } else {
                    secs(v, 1, MAX_SECONDS).map(Some)
                }
            });
        }
        if let Some(n) = name("STRATEGY") {
            p.set(&mut strategy, n, |v| {
                Strategy::from_name(v)
                    .ok_or_else(|| "expected ttl, dependency, event or adaptive".to_string())
            });
        }
        if let Some(n) = name("STALE_WHILE_REVALIDATE_S") {
            p.set(&mut revalidate, n, optional_secs);
        }
        if let Some(n) = name("STALE_IF_ERROR_S") {
            p.set(&mut if_error, n, optional_secs);
        }
        if let Some(n) = name("BATCH_COMPATIBLE") {
            p.set(&mut batch_compatible, n, boolean);
        }
        if let Some(n) = name("WARMUP") {
            p.set(&mut warmup, n, boolean);
        }
        let mut config = CacheConfig::new(ttl.unwrap_or(result_ttl), strategy);
        config.batch_compatible = batch_compatible;
        config.warmup = warmup;
        if let Some(d) = revalidate {
            config.stale_while_revalidate = d;
        }
        if let Some(d) = if_error {
            config.stale_if_error = d;
        }
        config
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, gather, Flags};

    fn config(env: &[(&str, &str)]) -> Result<CacheConfigs, Vec<String>> {
        let map: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (raw, _) = gather(&Flags::default(), |k| map.get(k).cloned());
        build(&raw)
            .map(|c| c.cache)
            .map_err(|e| e.iter().map(|e| e.name.clone()).collect())
    }

    #[test]
    fn every_operation_has_its_six_settings() {
        for op in Operation::ALL {
            for suffix in SUFFIXES {
                let env = env_name(op, suffix);
                assert!(
                    settings::by_env(&env).is_some(),
                    "{env} is not in the table"
                );
            }
        }
        let ours = settings::SETTINGS
            .iter()
            .filter(|s| s.env.starts_with("ATLAS_CACHE_") && s.env != "ATLAS_CACHE_MAX_BYTES")
            .count();
        assert_eq!(ours, Operation::COUNT * SUFFIXES.len());
    }

    #[test]
    fn defaults_are_the_briefs_and_result_cache_ttl_fills_the_rest() {
        let c = config(&[]).unwrap();
        let b = c.get(Operation::BudgetOptimization);
        assert_eq!(
            (b.ttl.as_secs(), b.strategy, b.warmup),
            (1800, Strategy::Dependency, true)
        );
        let p = c.get(Operation::PortfolioAnalysis);
        assert_eq!(
            (p.ttl.as_secs(), p.strategy, p.warmup),
            (600, Strategy::Event, false)
        );
        let r = c.get(Operation::RiskAssessment);
        assert_eq!((r.ttl.as_secs(), r.strategy), (300, Strategy::Dependency));
        let f = c.get(Operation::CashflowForecast);
        assert_eq!(
            (f.ttl.as_secs(), f.strategy, f.warmup),
            (300, Strategy::Adaptive, true)
        );
        assert!(Operation::ALL.iter().all(|op| c.get(*op).batch_compatible));
        assert_eq!(c, crate::config::Config::default().cache);

        let c = config(&[("RESULT_CACHE_TTL", "120")]).unwrap();
        assert_eq!(c.get(Operation::RiskAssessment).ttl.as_secs(), 120);
        assert_eq!(c.get(Operation::CashflowForecast).ttl.as_secs(), 120);
        assert_eq!(
            c.get(Operation::PortfolioAnalysis).ttl.as_secs(),
            600,
            "has its own"
        );
    }

    #[test]
    fn each_setting_applies_to_its_operation_only() {
        let c = config(&[
            ("ATLAS_CACHE_PORTFOLIO_ANALYSIS_TTL_S", "120"),
            ("ATLAS_CACHE_PORTFOLIO_ANALYSIS_STRATEGY", "ttl"),
            (
                "ATLAS_CACHE_PORTFOLIO_ANALYSIS_STALE_WHILE_REVALIDATE_S",
                "0",
            ),
            ("ATLAS_CACHE_PORTFOLIO_ANALYSIS_STALE_IF_ERROR_S", "45"),
            ("ATLAS_CACHE_PORTFOLIO_ANALYSIS_BATCH_COMPATIBLE", "false"),
            ("ATLAS_CACHE_PORTFOLIO_ANALYSIS_WARMUP", "true"),
        ])
        .unwrap();
        let p = c.get(Operation::PortfolioAnalysis);
        assert_eq!(
            (
                p.ttl.as_secs(),
                p.strategy,
                p.stale_while_revalidate.as_secs(),
                p.stale_if_error.as_secs()
            ),
            (120, Strategy::Ttl, 0, 45)
        );
        assert!(!p.batch_compatible && p.warmup);
        assert_eq!(p.ttl_for(0.0, 1.0).as_secs(), 120, "a fixed TTL");
        let b = c.get(Operation::BudgetOptimization);
        assert_eq!((b.ttl.as_secs(), b.batch_compatible), (1800, true));
        // Windows left empty follow the TTL.
        let c = config(&[("ATLAS_CACHE_RISK_ASSESSMENT_TTL_S", "200")]).unwrap();
        let r = c.get(Operation::RiskAssessment);
        assert_eq!(
            (
                r.stale_while_revalidate.as_secs(),
                r.stale_if_error.as_secs()
            ),
            (10, 200)
        );
    }

    #[test]
    fn bad_values_are_reported_by_name_all_at_once() {
        let names = config(&[
            ("ATLAS_CACHE_RISK_ASSESSMENT_TTL_S", "0"),
            ("ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY", "lru"),
            ("ATLAS_CACHE_BUDGET_OPTIMIZATION_WARMUP", "sometimes"),
            ("ATLAS_CACHE_CASHFLOW_FORECAST_STALE_IF_ERROR_S", "-1"),
        ])
        .unwrap_err();
        for n in [
            "ATLAS_CACHE_RISK_ASSESSMENT_TTL_S",
            "ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY",
            "ATLAS_CACHE_BUDGET_OPTIMIZATION_WARMUP",
            "ATLAS_CACHE_CASHFLOW_FORECAST_STALE_IF_ERROR_S",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} not reported: {names:?}");
        }
    }
}

//! `risk_assessment`: a 0–100 risk score from a questionnaire, its profile, a recommended
//! stocks / bonds / cash allocation, and (with holdings) how the portfolio's volatility sits
//! against the profile's band.
//!
//! # Score
//!
//! Each answer maps to a component in [0, 1]:
//!
//! | component | mapping | weight |
//! | --- | --- | --- |
//! | loss tolerance (1–5) | `(x − 1) / 4` | 0.30 |
//! | horizon (years) | `min(horizon, 30) / 30` | 0.25 |
//! | age | `clamp((80 − age) / 60, 0, 1)` (20 → 1, 80 → 0) | 0.15 |
//! | income stability (1–5) | `(x − 1) / 4` | 0.15 |
//! | experience (1–5) | `(x − 1) / 4` | 0.15 |
//!
//! `risk_score = 100 · Σ weight · component`.
//!
//! # Profiles, allocation and volatility bands
//!
//! | score | profile | annual volatility band |
//! | --- | --- | --- |
//! | [0, 20) | conservative | [0, 0.06] |
//! | [20, 40) | moderate | [0.06, 0.10] |
//! | [40, 60) | balanced | [0.10, 0.14] |
//! | [60, 80) | growth | [0.14, 0.18] |
//! | [80, 100] | aggressive | [0.18, 0.30] |
//!
//! With `s = risk_score / 100`: `stocks = 0.10 + 0.80 s`, `cash = 0.10 − 0.08 s`,
//! `bonds = 1 − stocks − cash` (score 0: 10/80/10, score 100: 90/8/2); continuous in the score,
//! each part in [0, 1], summing to 1.
//!
//! With holdings, the portfolio's annualised sample volatility (as in `portfolio_analysis`) is
//! compared with the band: `distance` is 0 inside, `volatility − upper` above (positive) and
//! `volatility − lower` below (negative).
//!
//! `confidence = 0.8` for a self-reported questionnaire, plus `0.2 · N / (N + 20)` with `N`
//! returns when holdings are given; the volatility hint is the portfolio's volatility (0
//! without holdings).
//!
//! # Limits
//!
//! `age` 18..=120, `horizon_years` in [0, 100], answers 1..=5, holdings as in
//! `portfolio_analysis`, `periods_per_year` 1..=1 000 000.

use serde::{Deserialize, Serialize};

use super::error::{finite, ModelError};
use super::parse::{field, in_range, in_range_int, ROOT};
use super::portfolio::{self, default_periods_per_year, validate_holdings, Holding};

/// Input of `risk_assessment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskInput {
    /// Age in years.
    pub age: u32,
    /// Investment horizon in years.
    pub horizon_years: f64,
    /// 1 (unstable) to 5 (very stable).
    pub income_stability: u8,
    /// 1 (cannot bear losses) to 5 (comfortable with large swings).
    pub loss_tolerance: u8,
    /// 1 (none) to 5 (professional).
    pub experience: u8,
    /// Current holdings, as in `portfolio_analysis`.
    #[serde(default)]
    pub holdings: Option<Vec<Holding>>,
    /// Return periods per year of the holdings' prices.
    #[serde(default = "default_periods_per_year")]
    pub periods_per_year: u32,
}

impl RiskInput {
    /// Range checks; see the module's limits.
    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        in_range_int(&field(ROOT, "age"), u64::from(self.age), 18, 120)?;
        in_range(
            &field(ROOT, "horizon_years"),
            self.horizon_years,
            0.0,
            100.0,
        )?;
        for (name, x) in [
            ("income_stability", self.income_stability),
            ("loss_tolerance", self.loss_tolerance),
            ("experience", self.experience),
        ] {
            in_range_int(&field(ROOT, name), u64::from(x), 1, 5)?;
        }
        if let Some(h) = &self.holdings {
            validate_holdings(&field(ROOT, "holdings"), h)?;
        }
        in_range_int(
            &field(ROOT, "periods_per_year"),
            u64::from(self.periods_per_year),
            1,
            1_000_000,
        )
    }
}

/// Recommended asset mix; sums to 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    /// Equity share.
    pub stocks: f64,
    /// Fixed-income share.
    pub bonds: f64,
    /// Cash share.
    pub cash: f64,
}

/// A volatility band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Band {
    /// Lower bound, annualised.
    pub lower: f64,
    /// Upper bound, annualised.
    pub upper: f64,
}

/// The holdings' volatility against the profile's band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioFit {
    /// Annualised sample volatility of the holdings.
    pub volatility: f64,
    /// The profile's band.
    pub band: Band,
    /// 0 inside the band, signed distance to the nearest bound outside it.
    pub distance: f64,
    /// `below`, `within` or `above`.
    pub status: &'static str,
}

/// Result of `risk_assessment`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskResult {
    /// 0–100.
    pub risk_score: f64,
    /// `conservative | moderate | balanced | growth | aggressive`.
    pub profile: &'static str,
    /// Recommended stocks / bonds / cash.
    pub recommended_allocation: Allocation,
    /// The profile's volatility band.
    pub volatility_band: Band,
    /// Present when holdings are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portfolio: Option<PortfolioFit>,
}

/// `risk_score` per the module's table.
pub(crate) fn score(i: &RiskInput) -> f64 {
    let answer = |x: u8| (f64::from(x) - 1.0) / 4.0;
    let age = ((80.0 - f64::from(i.age)) / 60.0).clamp(0.0, 1.0);
    let horizon = i.horizon_years.clamp(0.0, 30.0) / 30.0;
    100.0
        * (0.30 * answer(i.loss_tolerance)
            + 0.25 * horizon
            + 0.15 * age
            + 0.15 * answer(i.income_stability)
            + 0.15 * answer(i.experience))
}

/// Profile name and volatility band of a score.
pub(crate) fn profile(score: f64) -> (&'static str, Band) {
    let (name, lower, upper) = if score < 20.0 {
        ("conservative", 0.0, 0.06)
    } else if score < 40.0 {
        ("moderate", 0.06, 0.10)
    } else if score < 60.0 {
        ("balanced", 0.10, 0.14)
    } else if score < 80.0 {
        ("growth", 0.14, 0.18)
    } else {
        ("aggressive", 0.18, 0.30)
    };
    (name, Band { lower, upper })
}

/// Runs `risk_assessment` on a validated input.
pub(crate) fn compute(i: &RiskInput) -> Result<RiskResult, ModelError> {
    let risk_score = finite("risk_score", score(i))?.clamp(0.0, 100.0);
    let (name, band) = profile(risk_score);
    let s = risk_score / 100.0;
    let stocks = 0.10 + 0.80 * s;
    let cash = 0.10 - 0.08 * s;
    let bonds = 1.0 - stocks - cash;
    let portfolio = match &i.holdings {
        Some(h) => {
            let volatility = portfolio::annual_volatility(h, i.periods_per_year)?;
            let (distance, status) = if volatility > band.upper {
                (volatility - band.upper, "above")
            } else if volatility < band.lower {
                (volatility - band.lower, "below")
            } else {
                (0.0, "within")
            };
            Some(PortfolioFit {
                volatility,
                band: band.clone(),
                distance,
                status,
            })
        }
        None => None,
    };
    Ok(RiskResult {
        risk_score,
        profile: name,
        recommended_allocation: Allocation {
            stocks,
            bonds,
            cash,
        },
        volatility_band: band,
        portfolio,
    })
}

/// `0.8`, plus `0.2 · N / (N + 20)` with holdings of `N` returns.
pub(crate) fn confidence(i: &RiskInput) -> f64 {
    match &i.holdings {
        Some(h) => {
            let n = h.first().map_or(0, |x| x.prices.len().saturating_sub(1));
            0.8 + 0.2 * portfolio::confidence(n)
        }
        None => 0.8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{compute as run, parse_input, ModelError, Operation};
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<RiskInput, ModelError> {
        match parse_input(Operation::RiskAssessment, &v)? {
            crate::models::ModelInput::Risk(r) => Ok(r),
            other => panic!("wrong variant {other:?}"),
        }
    }

    #[test]
    fn score_by_hand() {
        // age 35 → (80−35)/60 = 0.75; horizon 20 → 20/30 = 0.6667; stability 4 → 0.75;
        // loss 3 → 0.5; experience 2 → 0.25.
        // 100 × (0.30·0.5 + 0.25·0.6667 + 0.15·0.75 + 0.15·0.75 + 0.15·0.25)
        //   = 100 × (0.15 + 0.16667 + 0.1125 + 0.1125 + 0.0375) = 57.9167 → balanced.
        let i = parse(
            json!({"age": 35, "horizon_years": 20, "income_stability": 4,
            "loss_tolerance": 3, "experience": 2}),
        )
        .unwrap();
        let r = compute(&i).unwrap();
        assert!(
            (r.risk_score - 57.916_666_666_666_67).abs() < 1e-9,
            "{}",
            r.risk_score
        );
        assert_eq!(r.profile, "balanced");
        // s = 0.579167: stocks = 0.1 + 0.8 s = 0.563333, cash = 0.1 − 0.08 s = 0.053667.
        let a = &r.recommended_allocation;
        assert!((a.stocks - 0.563_333_333_333_333_3).abs() < 1e-9);
        assert!((a.cash - 0.053_666_666_666_666_67).abs() < 1e-9);
        assert!((a.stocks + a.bonds + a.cash - 1.0).abs() < 1e-12);
        assert!(r.portfolio.is_none());
        assert_eq!(confidence(&i), 0.8);
    }

    #[test]
    fn extremes_hit_both_ends_and_every_profile_exists() {
        let low = parse(json!({"age": 90, "horizon_years": 0, "income_stability": 1,
            "loss_tolerance": 1, "experience": 1}))
        .unwrap();
        let high = parse(
            json!({"age": 18, "horizon_years": 40, "income_stability": 5,
            "loss_tolerance": 5, "experience": 5}),
        )
        .unwrap();
        assert_eq!(compute(&low).unwrap().risk_score, 0.0);
        assert_eq!(compute(&low).unwrap().profile, "conservative");
        assert!((compute(&high).unwrap().risk_score - 100.0).abs() < 1e-9);
        assert_eq!(compute(&high).unwrap().profile, "aggressive");
        let names: Vec<_> = [10.0, 30.0, 50.0, 70.0, 90.0].map(|s| profile(s).0).into();
        assert_eq!(
            names,
            [
                "conservative",
                "moderate",
                "balanced",
                "growth",
                "aggressive"
            ]
        );
    }

    #[test]
    fn holdings_volatility_against_band() {
        // Returns +10 %, −10 % → sample std √0.02 = 0.141421 per period; × √12 = 0.489898,
        // far above the conservative band's 0.06 → distance 0.429898.
        let i = parse(json!({"age": 90, "horizon_years": 0, "income_stability": 1,
            "loss_tolerance": 1, "experience": 1, "periods_per_year": 12,
            "holdings": [{"symbol": "X", "weight": 1, "prices": [100, 110, 99]}]}))
        .unwrap();
        let r = compute(&i).unwrap();
        let p = r.portfolio.unwrap();
        assert!((p.volatility - (0.02f64 * 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(p.status, "above");
        assert!((p.distance - ((0.24f64).sqrt() - 0.06)).abs() < 1e-12);
        let out = run(&crate::models::ModelInput::Risk(i)).unwrap();
        assert_eq!(out.dependencies, vec!["symbol:X"]);
        // N = 2 returns: 0.8 + 0.2 · 2/22.
        assert!((out.confidence - (0.8 + 0.2 * 2.0 / 22.0)).abs() < 1e-12);
    }

    #[test]
    fn answers_out_of_range_name_their_path() {
        let e = parse(
            json!({"age": 30, "horizon_years": 10, "income_stability": 6,
            "loss_tolerance": 3, "experience": 2}),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::Invalid { path, .. } if path == "input.income_stability"),
            "{e}"
        );
        let e = parse(
            json!({"age": 30, "horizon_years": 10, "income_stability": 3,
            "loss_tolerance": 3}),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::Invalid { path, .. } if path == "input.experience"),
            "{e}"
        );
        let e = parse(
            json!({"age": 10, "horizon_years": 10, "income_stability": 3,
            "loss_tolerance": 3, "experience": 2}),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::Invalid { path, .. } if path == "input.age"),
            "{e}"
        );
    }
}

//! The precision results are published with: each number of a result is rounded to the
//! decimals of its field's kind when the response body is built (once, so a cached body and a
//! fresh one are the same bytes, on REST and GraphQL alike), so no binary floating-point noise
//! (`0.35600000000000004`) reaches a client.
//!
//! | kind | decimals | fields |
//! | --- | --- | --- |
//! | money | 2 | amounts, balances, payments, interest, shortfalls, forecasts and their intervals, `rmse` |
//! | score | 2 | `risk_score` |
//! | ratio | 4 | `sharpe_ratio`, `sortino_ratio`, `max_sharpe_ratio` |
//! | rate | 6 | everything else: shares, weights, trades, returns, volatilities, VaR/CVaR, drawdown, correlations, beta, allocations, bands, `mape`, smoothing parameters |
//!
//! Integers (months, counts) are left as they are. A response's top-level `confidence` has 4
//! decimals. Pure functions: no I/O.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// What a number measures, which sets its decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Currency amounts: cents.
    Money,
    /// The 0–100 risk score.
    Score,
    /// Risk-adjusted return ratios.
    Ratio,
    /// Shares, weights, rates and other dimensionless fractions.
    Rate,
}

impl Kind {
    /// Decimals published for this kind.
    pub fn decimals(self) -> u32 {
        match self {
            Kind::Money | Kind::Score => 2,
            Kind::Ratio => 4,
            Kind::Rate => 6,
        }
    }
}

/// Result fields that hold money.
const MONEY: &[&str] = &[
    "amount",
    "available_for_goals",
    "current",
    "cut",
    "difference",
    "forecast",
    "interest_paid",
    "interest_saved_by_avalanche",
    "lower_80",
    "lower_95",
    "minimum_payments",
    "monthly_allocated",
    "monthly_budget",
    "monthly_required",
    "new_amount",
    "remaining",
    "remaining_balance",
    "remaining_by_year",
    "rmse",
    "shortfall",
    "target_amount",
    "total_interest",
    "total_paid",
    "uncovered_shortfall",
    "upper_80",
    "upper_95",
];

/// The kind of the result field named `field` (an array's elements take its name).
pub fn kind_of(field: &str) -> Kind {
    match field {
        "risk_score" => Kind::Score,
        "sharpe_ratio" | "sortino_ratio" | "max_sharpe_ratio" => Kind::Ratio,
        f if MONEY.contains(&f) => Kind::Money,
        _ => Kind::Rate,
    }
}

/// `x` rounded half away from zero to `decimals`, without a negative zero. The quotient of
/// two exact values is the double nearest the decimal, which prints as that decimal.
pub fn round(x: f64, decimals: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(decimals as i32);
    let scaled = x * scale;
    if scaled.abs() >= 2f64.powi(52) {
        return x; // beyond the decimals a double can carry: already as exact as it gets
    }
    let r = scaled.round() / scale;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Serialises a result with every number rounded to its field's decimals (no copy of the
/// value is made).
pub struct Rounded<'a>(pub &'a Value);

impl Serialize for Rounded<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Field(self.0, Kind::Rate).serialize(s)
    }
}

/// A value inside a field of the given kind.
struct Field<'a>(&'a Value, Kind);

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(x) => s.serialize_f64(round(x, self.1.decimals())),
                None => n.serialize(s),
            },
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Field(item, self.1))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, &Field(v, kind_of(k)))?;
                }
                map.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Decimals of `x` as it prints in JSON (`0.356` → 3, `12.0` → 0, `1e-7` → 7).
pub fn printed_decimals(x: f64) -> u32 {
    let text = serde_json::Number::from_f64(x).map_or(String::new(), |n| n.to_string());
    match text.split_once(['e', 'E']) {
        Some((mantissa, exp)) => {
            let frac = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i64);
            let exp: i64 = exp.parse().unwrap_or(0);
            (frac - exp).max(0) as u32
        }
        None => text
            .split_once('.')
            .map_or(0, |(_, f)| f.trim_end_matches('0').len() as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn noise_is_rounded_away_per_kind() {
        let v = json!({
            "recommended_allocation": {"bonds": 0.35600000000000004, "cash": 0.05066666666666668},
            "risk_score": 61.66666666666666,
            "sharpe_ratio": 15.052522006931689,
            "returns": [0.008000000000000007, -0.0000001],
            "debts": [{"total_paid": 3083.3819444444443, "payoff_month": 3}],
            "months": 8,
            "label": "x",
            "paid_off": true,
        });
        let text = serde_json::to_string(&Rounded(&v)).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            json!({
                "recommended_allocation": {"bonds": 0.356, "cash": 0.050667},
                "risk_score": 61.67,
                "sharpe_ratio": 15.0525,
                "returns": [0.008, 0.0],
                "debts": [{"total_paid": 3083.38, "payoff_month": 3}],
                "months": 8,
                "label": "x",
                "paid_off": true,
            })
        );
        assert!(text.contains("\"bonds\":0.356,"), "{text}");
        assert!(!text.contains("-0.0"), "{text}");
    }

    #[test]
    fn rounding_prints_no_more_decimals_than_its_kind() {
        let mut x = 0.1f64;
        for i in 0..20_000 {
            x = (x * 1.618_033_988_7 + i as f64 * 0.000_123_456_7) % 12_345.678_9;
            for kind in [Kind::Money, Kind::Score, Kind::Ratio, Kind::Rate] {
                let r = round(x, kind.decimals());
                assert!(printed_decimals(r) <= kind.decimals(), "{x} {kind:?} {r}");
                assert!((r - x).abs() <= 0.5 / 10f64.powi(kind.decimals() as i32) + 1e-9);
            }
        }
        assert_eq!(printed_decimals(1e-7), 7);
        assert_eq!(printed_decimals(12.0), 0);
        assert!(round(f64::NAN, 2).is_nan());
        assert_eq!(round(1e300, 2), 1e300);
    }
}

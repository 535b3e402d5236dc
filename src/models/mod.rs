//! The embedded financial models behind `POST /ai/{operation}`: pure, synchronous,
//! deterministic functions from a validated input to a JSON result.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`error`] | [`ModelError`] and its HTTP status / code |
//! | `parse` | serde with field paths (`input.holdings[2].prices`), range helpers |
//! | `stats` | means, sample (co)variances, simple returns |
//! | [`portfolio`] | `portfolio_analysis`; `portfolio::optimize` the long-only optimisers |
//! | [`budget`] | `budget_optimization`; `budget::debt` the avalanche / snowball simulation |
//! | [`risk`] | `risk_assessment` |
//! | [`cashflow`] | `cashflow_forecast`; `cashflow::smoothing` Holt and Holt–Winters |
//!
//! # Contract
//!
//! The pipeline calls [`parse_input`] on the accepting shard (shape and range checks, cheap)
//! and [`compute`] on the owner shard. Nothing here does I/O, blocks, allocates without a
//! bound set by the documented input limits, or panics; every number in a result is finite
//! (checked once more, generically, before a result leaves [`compute`]). The only `null`
//! a result may hold is `portfolio_analysis`'s `beta` without a benchmark.
//!
//! Each [`ModelOutput`] carries a `confidence` in [0, 1] and a `volatility` hint (≥ 0) for the
//! adaptive TTL; each module documents its rule. Must not depend on the runtime, the HTTP
//! layer or the shard crate's data structures (only its [`Operation`] name set).

pub mod budget;
pub mod cashflow;
pub mod error;
mod parse;
pub mod portfolio;
pub mod precision;
pub mod risk;
mod stats;

#[cfg(test)]
mod proptests;

use serde::Serialize;
use serde_json::Value;

pub use atlas_shard::Operation;
pub use budget::BudgetInput;
pub use cashflow::CashflowInput;
pub use error::ModelError;
pub use portfolio::PortfolioInput;
pub use risk::RiskInput;

/// Version of the embedded models, reported as `model_version` in every response. Change it
/// whenever a formula changes so cached results of the old one are told apart.
pub const MODEL_VERSION: &str = "atlas-embedded-2026.11";

/// A typed, validated input of one operation.
///
/// Serialising it gives a canonical form of the input (fixed field order, defaults filled in,
/// numbers as parsed `f64`), usable in cache keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ModelInput {
    /// `portfolio_analysis`.
    Portfolio(PortfolioInput),
    /// `budget_optimization`.
    Budget(BudgetInput),
    /// `risk_assessment`.
    Risk(RiskInput),
    /// `cashflow_forecast`.
    Cashflow(CashflowInput),
}

impl ModelInput {
    /// The operation this input belongs to.
    pub fn operation(&self) -> Operation {
        match self {
            ModelInput::Portfolio(_) => Operation::PortfolioAnalysis,
            ModelInput::Budget(_) => Operation::BudgetOptimization,
            ModelInput::Risk(_) => Operation::RiskAssessment,
            ModelInput::Cashflow(_) => Operation::CashflowForecast,
        }
    }

    /// Bytes this input holds on the heap, beyond its own size (for memory budgets).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let floats = |v: &[f64]| std::mem::size_of_val(v);
        match self {
            ModelInput::Portfolio(p) => {
                let holdings: usize = p
                    .holdings
                    .iter()
                    .map(|h| size_of::<portfolio::Holding>() + h.symbol.len() + floats(&h.prices))
                    .sum();
                holdings + p.benchmark_prices.as_deref().map_or(0, floats)
            }
            ModelInput::Budget(b) => {
                let e: usize = b
                    .expenses
                    .iter()
                    .map(|x| size_of::<budget::Expense>() + x.category.len())
                    .sum();
                let d: usize = b
                    .debts
                    .iter()
                    .map(|x| size_of::<budget::Debt>() + x.name.len())
                    .sum();
                let g: usize = b
                    .goals
                    .iter()
                    .map(|x| size_of::<budget::Goal>() + x.name.len())
                    .sum();
                e + d + g
            }
            ModelInput::Risk(r) => r.holdings.as_deref().map_or(0, |hs| {
                hs.iter()
                    .map(|h| size_of::<portfolio::Holding>() + h.symbol.len() + floats(&h.prices))
                    .sum()
            }),
            ModelInput::Cashflow(c) => floats(&c.history),
        }
    }
}

/// What a model computed for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// The JSON object sent as the response's `result`.
    pub result: Value,
    /// How much the model trusts the result, in [0, 1].
    pub confidence: f64,
    /// How fast the result is expected to go stale (≥ 0; annualised volatility for market
    /// inputs, relative fit error for forecasts, 0 for pure arithmetic): the adaptive-TTL hint.
    pub volatility: f64,
    /// Dependency tags that invalidate the result (`symbol:AAPL`).
    pub dependencies: Vec<String>,
    /// Market symbols the result is computed from, in input order.
    pub symbols: Vec<String>,
}

/// Parses and validates the request's `input` for `op`: shape errors name the field path
/// (`input.holdings[2].prices`), unknown fields are refused, and every documented range and
/// size limit is checked, so [`compute`] only sees inputs it can finish quickly.
pub fn parse_input(op: Operation, input: &Value) -> Result<ModelInput, ModelError> {
    match op {
        Operation::PortfolioAnalysis => {
            let i: PortfolioInput = parse::from_value(input)?;
            i.validate()?;
            Ok(ModelInput::Portfolio(i))
        }
        Operation::BudgetOptimization => {
            let i: BudgetInput = parse::from_value(input)?;
            i.validate()?;
            Ok(ModelInput::Budget(i))
        }
        Operation::RiskAssessment => {
            let i: RiskInput = parse::from_value(input)?;
            i.validate()?;
            Ok(ModelInput::Risk(i))
        }
        Operation::CashflowForecast => {
            let i: CashflowInput = parse::from_value(input)?;
            i.validate()?;
            Ok(ModelInput::Cashflow(i))
        }
    }
}

/// The top-level fields of `op`'s `input`: the fields a stored user context may supply to a
/// request of that operation (see `ai::context::merge`). Kept equal to the input types'
/// fields by a test.
pub fn input_fields(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::PortfolioAnalysis => &[
            "holdings",
            "benchmark_prices",
            "risk_free_rate",
            "periods_per_year",
        ],
        Operation::BudgetOptimization => &[
            "monthly_income",
            "expenses",
            "debts",
            "goals",
            "debt_payment_budget",
        ],
        Operation::RiskAssessment => &[
            "age",
            "horizon_years",
            "income_stability",
            "loss_tolerance",
            "experience",
            "holdings",
            "periods_per_year",
        ],
        Operation::CashflowForecast => &["history", "horizon", "season_length"],
    }
}

/// Runs the model for a validated input. Deterministic: the same input gives the same
/// output, bit for bit.
pub fn compute(input: &ModelInput) -> Result<ModelOutput, ModelError> {
    match input {
        ModelInput::Portfolio(i) => {
            let r = portfolio::compute(i)?;
            let symbols = r.symbols.clone();
            Ok(ModelOutput {
                confidence: clamp01(portfolio::confidence(r.returns.len())),
                volatility: r.volatility.max(0.0),
                dependencies: symbols.iter().map(|s| format!("symbol:{s}")).collect(),
                symbols,
                result: to_result(&r)?,
            })
        }
        ModelInput::Budget(i) => {
            let r = budget::compute(i)?;
            Ok(ModelOutput {
                result: to_result(&r)?,
                confidence: 1.0,
                volatility: 0.0,
                dependencies: Vec::new(),
                symbols: Vec::new(),
            })
        }
        ModelInput::Risk(i) => {
            let r = risk::compute(i)?;
            let symbols: Vec<String> = i
                .holdings
                .iter()
                .flatten()
                .map(|h| h.symbol.clone())
                .collect();
            Ok(ModelOutput {
                confidence: clamp01(risk::confidence(i)),
                volatility: r.portfolio.as_ref().map_or(0.0, |p| p.volatility.max(0.0)),
                dependencies: symbols.iter().map(|s| format!("symbol:{s}")).collect(),
                symbols,
                result: to_result(&r)?,
            })
        }
        ModelInput::Cashflow(i) => {
            let r = cashflow::compute(i)?;
            Ok(ModelOutput {
                confidence: clamp01(r.confidence),
                volatility: r.relative_error.max(0.0),
                dependencies: Vec::new(),
                symbols: Vec::new(),
                result: to_result(&r)?,
            })
        }
    }
}

fn clamp01(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Serialises a result and checks that no number turned into `null` on the way (serde_json
/// writes NaN and ±inf as `null`); `beta` is the one field allowed to be `null`.
fn to_result<T: Serialize>(r: &T) -> Result<Value, ModelError> {
    let v = serde_json::to_value(r)
        .map_err(|e| ModelError::numerical(format!("result could not be serialised: {e}")))?;
    match first_null(&v, "result") {
        Some(path) => Err(ModelError::numerical(format!("{path} is not finite"))),
        None => Ok(v),
    }
}

/// Path of the first `null` in `v` outside a `beta` field.
fn first_null(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Null => Some(path.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| first_null(x, &format!("{path}[{i}]"))),
        Value::Object(map) => map
            .iter()
            .filter(|(k, x)| !(k.as_str() == "beta" && x.is_null()))
            .find_map(|(k, x)| first_null(x, &format!("{path}.{k}"))),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operation_names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.as_str()), Some(op));
        }
        assert_eq!(
            Operation::from_name("portfolio_analysis"),
            Some(Operation::PortfolioAnalysis)
        );
        assert_eq!(Operation::from_name("nope"), None);
    }

    #[test]
    fn nan_smuggled_through_serde_is_caught() {
        #[derive(Serialize)]
        struct R {
            x: f64,
            beta: Option<f64>,
        }
        let err = to_result(&R {
            x: f64::NAN,
            beta: None,
        })
        .unwrap_err();
        assert_eq!(err.code(), "numerical_failure");
        assert!(err.to_string().contains("result.x"), "{err}");
        assert!(to_result(&R { x: 1.0, beta: None }).is_ok());
    }

    #[test]
    fn outputs_carry_dependencies_and_bounded_hints() {
        let input = json!({"holdings": [
            {"symbol": "AAPL", "weight": 1, "prices": [100, 101, 102]},
            {"symbol": "MSFT", "weight": 1, "prices": [50, 49, 51]}
        ]});
        let parsed = parse_input(Operation::PortfolioAnalysis, &input).unwrap();
        assert_eq!(parsed.operation(), Operation::PortfolioAnalysis);
        let out = compute(&parsed).unwrap();
        assert_eq!(out.dependencies, vec!["symbol:AAPL", "symbol:MSFT"]);
        assert_eq!(out.symbols, vec!["AAPL", "MSFT"]);
        assert!((0.0..=1.0).contains(&out.confidence) && out.volatility >= 0.0);
        assert!(out.result["beta"].is_null());
    }

    /// The field names serde's derive gives a struct (it passes them to
    /// `deserialize_struct`).
    fn serde_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
        use serde::de::{Error as _, Visitor};
        use serde::forward_to_deserialize_any;
        type E = serde::de::value::Error;
        struct Introspect<'a>(&'a mut &'static [&'static str]);
        impl<'de> serde::Deserializer<'de> for Introspect<'_> {
            type Error = E;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, E> {
                Err(E::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, E> {
                *self.0 = fields;
                Err(E::custom("introspected"))
            }
            forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Introspect(&mut fields));
        fields
    }

    #[test]
    fn input_fields_are_the_input_types_fields() {
        let sorted = |f: &[&'static str]| {
            let mut v = f.to_vec();
            v.sort_unstable();
            v
        };
        let cases = [
            (
                Operation::PortfolioAnalysis,
                serde_fields::<PortfolioInput>(),
            ),
            (Operation::BudgetOptimization, serde_fields::<BudgetInput>()),
            (Operation::RiskAssessment, serde_fields::<RiskInput>()),
            (Operation::CashflowForecast, serde_fields::<CashflowInput>()),
        ];
        for (op, fields) in cases {
            assert!(!fields.is_empty(), "{op:?}");
            assert_eq!(sorted(input_fields(op)), sorted(fields), "{op:?}");
        }
    }

    #[test]
    fn error_statuses_and_codes() {
        assert_eq!(ModelError::invalid("input", "x").status(), 400);
        assert_eq!(ModelError::unprocessable("x").status(), 422);
        assert_eq!(ModelError::numerical("x").status(), 422);
        assert_eq!(
            ModelError::invalid("input.a", "bad").to_string(),
            "input.a: bad"
        );
    }
}

//! Typed GraphQL inputs of the four operations, mirroring the REST `input` objects of
//! `POST /ai/{operation}` (the models' input types in `crate::models`, the schemas in
//! `/openapi.json`). GraphQL sees camelCase fields; serialising one gives the REST body's
//! snake_case object with the absent fields left out, so the REST parser fills the same
//! defaults and the request gets the same canonical input, cache key and entry as REST.
//!
//! The top-level fields that REST requires are nullable here because with `useContext` the
//! user's stored context may supply them (REST accepts a partial `input` then too); a field
//! missing from both is refused by the REST validation with its path (`input.age: ...`).
//! Nested objects (holdings, expenses, debts, goals) are fully typed. Ranges are checked by
//! the REST validation, not here. No I/O, nothing runtime-specific.

use async_graphql::InputObject;
use serde::Serialize;

/// One position: a symbol, its (unnormalised) weight and its closes, oldest first.
#[derive(InputObject, Serialize)]
#[graphql(name = "HoldingInput")]
pub struct Holding {
    /// Ticker; becomes the dependency tag `symbol:<SYM>`.
    symbol: String,
    /// Relative weight, ≥ 0; weights are normalised to sum 1.
    weight: f64,
    /// Closing prices, oldest first, > 0; every holding has as many.
    prices: Vec<f64>,
}

/// Input of `portfolioAnalysis` (REST `portfolio_analysis`).
#[derive(InputObject, Serialize)]
#[graphql(name = "PortfolioAnalysisInput")]
pub struct Portfolio {
    /// The positions (required unless the stored context supplies them).
    #[serde(skip_serializing_if = "Option::is_none")]
    holdings: Option<Vec<Holding>>,
    /// Benchmark closes on the same dates, for `beta`.
    #[serde(skip_serializing_if = "Option::is_none")]
    benchmark_prices: Option<Vec<f64>>,
    /// Annual risk-free rate as a fraction (0.03 = 3 %); default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    risk_free_rate: Option<f64>,
    /// Return periods per year used to annualise; default 252 (daily closes).
    #[serde(skip_serializing_if = "Option::is_none")]
    periods_per_year: Option<u32>,
}

/// A monthly expense.
#[derive(InputObject, Serialize)]
#[graphql(name = "ExpenseInput")]
pub struct Expense {
    /// Category name (`rent`, `dining`).
    category: String,
    /// Monthly amount, ≥ 0.
    amount: f64,
    /// Whether it is a need (true) or a want (false); only wants are suggested for cuts.
    essential: bool,
}

/// A debt.
#[derive(InputObject, Serialize)]
#[graphql(name = "DebtInput")]
pub struct Debt {
    /// Unique name, used in the plans' `order`.
    name: String,
    /// Outstanding balance.
    balance: f64,
    /// Annual rate as a fraction; interest accrues monthly at `apr / 12`.
    apr: f64,
    /// Contractual monthly minimum.
    min_payment: f64,
}

/// A savings goal.
#[derive(InputObject, Serialize)]
#[graphql(name = "GoalInput")]
pub struct Goal {
    /// Name, echoed in the result.
    name: String,
    /// Amount to reach.
    target: f64,
    /// Amount already saved.
    current: f64,
    /// Months left to reach it.
    months: u32,
}

/// Input of `budgetOptimization` (REST `budget_optimization`).
#[derive(InputObject, Serialize)]
#[graphql(name = "BudgetOptimizationInput")]
pub struct Budget {
    /// Net monthly income (required unless the stored context supplies it).
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_income: Option<f64>,
    /// Monthly expenses; default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    expenses: Option<Vec<Expense>>,
    /// Debts; default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    debts: Option<Vec<Debt>>,
    /// Savings goals; default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    goals: Option<Vec<Goal>>,
    /// Monthly total for all debts; default: minimums plus half the surplus.
    #[serde(skip_serializing_if = "Option::is_none")]
    debt_payment_budget: Option<f64>,
}

/// Input of `riskAssessment` (REST `risk_assessment`). The questionnaire fields are required
/// unless the stored context supplies them.
#[derive(InputObject, Serialize)]
#[graphql(name = "RiskAssessmentInput")]
pub struct Risk {
    /// Age in years, 18 to 120.
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<u32>,
    /// Investment horizon in years, 0 to 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    horizon_years: Option<f64>,
    /// 1 (unstable) to 5 (very stable).
    #[serde(skip_serializing_if = "Option::is_none")]
    income_stability: Option<u8>,
    /// 1 (cannot bear losses) to 5 (comfortable with large swings).
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_tolerance: Option<u8>,
    /// 1 (none) to 5 (professional).
    #[serde(skip_serializing_if = "Option::is_none")]
    experience: Option<u8>,
    /// Current holdings, as in `portfolioAnalysis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    holdings: Option<Vec<Holding>>,
    /// Return periods per year of the holdings' prices; default 252.
    #[serde(skip_serializing_if = "Option::is_none")]
    periods_per_year: Option<u32>,
}

/// Input of `cashflowForecast` (REST `cashflow_forecast`).
#[derive(InputObject, Serialize)]
#[graphql(name = "CashflowForecastInput")]
pub struct Cashflow {
    /// Monthly net cash flows, oldest first (required unless the stored context supplies
    /// them).
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<f64>>,
    /// Months to forecast, 1 to 36 (required unless the stored context supplies it).
    #[serde(skip_serializing_if = "Option::is_none")]
    horizon: Option<u32>,
    /// Season length in periods, 2 to 52; default 12.
    #[serde(skip_serializing_if = "Option::is_none")]
    season_length: Option<u32>,
}

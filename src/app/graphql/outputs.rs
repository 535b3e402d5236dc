//! Typed GraphQL results of the four operations, mirroring the REST `result` objects (the
//! models' result types in `crate::models`, the schemas in `/openapi.json`): each type reads
//! the REST body's snake_case JSON straight from the cached bytes (serde, no intermediate
//! value) and GraphQL shows it in camelCase. Names that are a closed set in REST (`profile`,
//! `action`, `status`, `method`) are enums here.
//!
//! Nothing here runs a request; the envelopes that carry `meta` are in `schema`.

use async_graphql::{Enum, SimpleObject};
use serde::Deserialize;

/// A trade's direction.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum TradeAction {
    /// Raise the weight.
    Buy,
    /// Lower the weight.
    Sell,
    /// Keep it.
    Hold,
}

/// How the maximum-Sharpe weights were found.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum MaxSharpeMethod {
    /// The tangency portfolio.
    Tangency,
    /// No asset beats the risk-free rate: the minimum-variance weights.
    MinVarianceFallback,
    /// A zero-variance asset beat the risk-free rate: all in it.
    RisklessAsset,
}

/// One line of the rebalancing plan.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Trade {
    /// The holding.
    symbol: String,
    /// Its normalised current weight.
    current_weight: f64,
    /// Its maximum-Sharpe weight.
    target_weight: f64,
    /// `targetWeight − currentWeight`, as a fraction of the portfolio's value.
    trade: f64,
    /// Buy, sell or hold.
    action: TradeAction,
}

/// Result of `portfolioAnalysis`. Arrays follow `symbols` order.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct PortfolioAnalysisResult {
    /// The holdings' symbols, in input order.
    symbols: Vec<String>,
    /// The normalised input weights.
    weights: Vec<f64>,
    /// Portfolio simple returns per period, oldest first.
    returns: Vec<f64>,
    /// Mean period return × periods per year.
    expected_return: f64,
    /// Sample standard deviation × √(periods per year).
    volatility: f64,
    /// Annualised Sharpe ratio.
    sharpe_ratio: f64,
    /// Annualised Sortino ratio.
    sortino_ratio: f64,
    /// Largest peak-to-trough loss of the wealth path, positive fraction.
    max_drawdown: f64,
    /// Historical one-period 95 % value at risk, positive loss fraction.
    var_95: f64,
    /// Mean of the worst 5 % of period returns, as a positive loss fraction.
    cvar_95: f64,
    /// Beta against the benchmark; null without one.
    beta: Option<f64>,
    /// Correlation matrix of asset returns.
    correlation: Vec<Vec<f64>>,
    /// Herfindahl–Hirschman index of the normalised weights.
    concentration_hhi: f64,
    /// Long-only minimum-variance weights.
    min_variance_weights: Vec<f64>,
    /// Long-only maximum-Sharpe weights.
    max_sharpe_weights: Vec<f64>,
    /// How the maximum-Sharpe weights were found.
    max_sharpe_method: MaxSharpeMethod,
    /// Annualised Sharpe ratio of the maximum-Sharpe weights (0 when their volatility is 0).
    max_sharpe_ratio: f64,
    /// Trades from the current weights to the maximum-Sharpe weights.
    rebalancing: Vec<Trade>,
}

/// One bucket of the 50/30/20 comparison.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Bucket {
    /// Monthly amount.
    amount: f64,
    /// `amount / income`.
    share: f64,
    /// 0.5, 0.3 or 0.2.
    target_share: f64,
    /// `targetShare × income`.
    target_amount: f64,
    /// `amount − targetAmount` (positive: above the rule).
    difference: f64,
}

/// One debt's line in a plan's summary.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct DebtSummary {
    /// The debt's name.
    name: String,
    /// Month in which it was paid off (0 if it started at zero); null if never.
    payoff_month: Option<u32>,
    /// Interest accrued on it over the plan.
    interest_paid: f64,
    /// Everything paid towards it.
    total_paid: f64,
}

/// Payoff summary of a plan.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct ScheduleSummary {
    /// Per debt, in payoff order (unfinished debts last, in strategy order).
    debts: Vec<DebtSummary>,
    /// Total remaining balance at the end of each full year of the plan.
    remaining_by_year: Vec<f64>,
}

/// The outcome of one debt strategy.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct DebtStrategy {
    /// Months until every debt is paid, or 600 when the plan never ends.
    months: u32,
    /// Whether every debt is paid within 600 months.
    paid_off: bool,
    /// Interest accrued over the plan.
    total_interest: f64,
    /// Everything paid over the plan.
    total_paid: f64,
    /// Balance left after 600 months (0 when paid off).
    remaining_balance: f64,
    /// Debt names in the order the strategy targets them.
    order: Vec<String>,
    /// Per-debt payoff months and yearly balances.
    schedule_summary: ScheduleSummary,
}

/// The debt plans.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct DebtPlan {
    /// Monthly budget for all debts used by both plans.
    monthly_budget: f64,
    /// Sum of the minimum payments (capped at balances).
    minimum_payments: f64,
    /// Highest APR first.
    avalanche: DebtStrategy,
    /// Smallest balance first.
    snowball: DebtStrategy,
    /// `snowball.totalInterest − avalanche.totalInterest`.
    interest_saved_by_avalanche: f64,
}

/// Feasibility of one goal.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct GoalStatus {
    /// The goal's name.
    name: String,
    /// `max(0, target − current)`.
    remaining: f64,
    /// Months left.
    months: u32,
    /// `remaining / months`.
    monthly_required: f64,
    /// What the surplus can give it each month.
    monthly_allocated: f64,
    /// Whether `monthlyAllocated` covers `monthlyRequired`.
    feasible: bool,
    /// `monthlyRequired − monthlyAllocated`.
    shortfall: f64,
}

/// A suggested cut to a non-essential category.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Cut {
    /// The category.
    category: String,
    /// Its current monthly amount.
    current: f64,
    /// Suggested monthly reduction.
    cut: f64,
    /// `current − cut`.
    new_amount: f64,
}

/// Result of `budgetOptimization`.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct BudgetOptimizationResult {
    /// Essential expenses plus minimum debt payments (50 % rule).
    needs: Bucket,
    /// Non-essential expenses (30 % rule).
    wants: Bucket,
    /// The monthly surplus (20 % rule).
    savings: Bucket,
    /// `savings / income`.
    savings_rate: f64,
    /// Avalanche and snowball plans.
    debt_plan: DebtPlan,
    /// Surplus left for goals after extra debt payments.
    available_for_goals: f64,
    /// Goals in funding (deadline) order.
    goals: Vec<GoalStatus>,
    /// Cuts that would fund the infeasible goals.
    suggested_cuts: Vec<Cut>,
    /// Shortfall the non-essential expenses cannot cover.
    uncovered_shortfall: f64,
}

/// A risk profile.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum RiskProfile {
    /// Volatility band 0–6 %.
    Conservative,
    /// 6–10 %.
    Moderate,
    /// 10–14 %.
    Balanced,
    /// 14–18 %.
    Growth,
    /// 18–30 %.
    Aggressive,
}

/// Where the holdings' volatility lies against the profile's band.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum BandFit {
    /// Under the band's lower bound.
    Below,
    /// Inside the band.
    Within,
    /// Over the band's upper bound.
    Above,
}

/// Recommended asset mix; sums to 1.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Allocation {
    /// Equity share.
    stocks: f64,
    /// Fixed-income share.
    bonds: f64,
    /// Cash share.
    cash: f64,
}

/// A volatility band, annualised.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Band {
    /// Lower bound.
    lower: f64,
    /// Upper bound.
    upper: f64,
}

/// The holdings' volatility against the profile's band.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct PortfolioFit {
    /// Annualised sample volatility of the holdings.
    volatility: f64,
    /// The profile's band.
    band: Band,
    /// 0 inside the band, signed distance to the nearest bound outside it.
    distance: f64,
    /// Below, within or above the band.
    status: BandFit,
}

/// Result of `riskAssessment`.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct RiskAssessmentResult {
    /// 0–100.
    risk_score: f64,
    /// The profile the score falls in.
    profile: RiskProfile,
    /// Recommended stocks / bonds / cash.
    recommended_allocation: Allocation,
    /// The profile's volatility band.
    volatility_band: Band,
    /// Present when holdings are given.
    portfolio: Option<PortfolioFit>,
}

/// The forecasting method that was fitted.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMethod {
    /// Additive Holt–Winters (enough history for two seasons).
    HoltWintersAdditive,
    /// Holt's linear trend.
    HoltLinear,
}

/// The fitted smoothing parameters.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct FittedParams {
    /// Level smoothing.
    alpha: f64,
    /// Trend smoothing.
    beta: f64,
    /// Seasonal smoothing (Holt–Winters only).
    gamma: Option<f64>,
    /// Season length (Holt–Winters only).
    season_length: Option<u32>,
}

/// Result of `cashflowForecast`.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct CashflowForecastResult {
    /// Point forecasts, one per month ahead.
    forecast: Vec<f64>,
    /// 80 % interval, lower bounds.
    lower_80: Vec<f64>,
    /// 80 % interval, upper bounds.
    upper_80: Vec<f64>,
    /// 95 % interval, lower bounds.
    lower_95: Vec<f64>,
    /// 95 % interval, upper bounds.
    upper_95: Vec<f64>,
    /// The fitted method.
    method: ForecastMethod,
    /// The fitted smoothing parameters.
    fitted_params: FittedParams,
    /// Mean absolute percentage error of the one-step fit, as a fraction.
    mape: f64,
    /// Root mean squared one-step error.
    rmse: f64,
}

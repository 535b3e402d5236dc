//! `budget_optimization`: the 50/30/20 view of a monthly budget, avalanche and snowball debt
//! plans, goal feasibility and suggested cuts.
//!
//! # Formulas
//!
//! With income `I`, essential expenses `E`, non-essential expenses `W`, and minimum debt
//! payments `M = Σ min(min_paymentᵢ, balanceᵢ)`:
//!
//! - `needs = E + M`, `wants = W`, `savings = I − needs − wants` (the monthly surplus; may be
//!   negative). Each is reported as an amount, its share of income, the 50 / 30 / 20 target
//!   share and amount, and `difference = amount − target amount`;
//! - `savings_rate = savings / I`;
//! - debt budget `D` = `debt_payment_budget`, or by default `M + max(0, savings) / 2` (0 when
//!   there is no debt to pay);
//!   `D < M` is impossible (HTTP 422). Both plans are simulated by [`debt::simulate`];
//!   `interest_saved_by_avalanche = snowball.total_interest − avalanche.total_interest`;
//! - money for goals `G = max(0, savings − (D − M))`. Goals are funded in deadline order
//!   (fewest `months` first, then input order); goal `k` needs
//!   `max(0, target − current) / months` a month, gets `min(need, what is left of G)`, and is
//!   feasible when it gets all of it;
//! - suggested cuts cover the total shortfall `S` of infeasible goals from non-essential
//!   expenses proportionally: each is cut by `amount · min(1, S / W)`, largest first; any
//!   remainder is `uncovered_shortfall`.
//!
//! Pure arithmetic on the given figures: `confidence = 1`, volatility hint 0.
//!
//! # Limits
//!
//! Income in (0, 1e9]; at most [`MAX_EXPENSES`] expenses, [`MAX_DEBTS`] debts (unique names),
//! [`MAX_GOALS`] goals; amounts in [0, 1e9]; balances and goal amounts in [0, 1e12]; `apr` a
//! fraction in [0, 1] (0.199 = 19.9 %); goal `months` 1..=600.

pub mod debt;

use serde::{Deserialize, Serialize};

use super::error::{finite, ModelError};
use super::parse::{field, in_range, in_range_int, index, len_between, name, ROOT};
use debt::{Plan, Strategy};

/// Most expenses in one request.
pub const MAX_EXPENSES: usize = 200;
/// Most debts in one request.
pub const MAX_DEBTS: usize = 100;
/// Most goals in one request.
pub const MAX_GOALS: usize = 50;

/// A monthly expense.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expense {
    /// Category name (`rent`, `dining`).
    pub category: String,
    /// Monthly amount, ≥ 0.
    pub amount: f64,
    /// Whether it is a need (true) or a want (false); only wants are suggested for cuts.
    pub essential: bool,
}

/// A debt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debt {
    /// Unique name, used in the plans' `order`.
    pub name: String,
    /// Outstanding balance.
    pub balance: f64,
    /// Annual rate as a fraction; interest accrues monthly at `apr / 12`.
    pub apr: f64,
    /// Contractual monthly minimum.
    pub min_payment: f64,
}

/// A savings goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// Name, echoed in the result.
    pub name: String,
    /// Amount to reach.
    pub target: f64,
    /// Amount already saved.
    pub current: f64,
    /// Months left to reach it.
    pub months: u32,
}

/// Input of `budget_optimization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    /// Net monthly income.
    pub monthly_income: f64,
    /// Monthly expenses (default none).
    #[serde(default)]
    pub expenses: Vec<Expense>,
    /// Debts (default none).
    #[serde(default)]
    pub debts: Vec<Debt>,
    /// Savings goals (default none).
    #[serde(default)]
    pub goals: Vec<Goal>,
    /// Monthly total for all debts; default: minimums plus half the surplus.
    #[serde(default)]
    pub debt_payment_budget: Option<f64>,
}

impl BudgetInput {
    /// Range and size checks; see the module's limits.
    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        in_range(
            &field(ROOT, "monthly_income"),
            self.monthly_income,
            0.0,
            1e9,
        )?;
        if self.monthly_income <= 0.0 {
            return Err(ModelError::invalid(
                field(ROOT, "monthly_income"),
                "must be positive",
            ));
        }
        let p = field(ROOT, "expenses");
        len_between(&p, self.expenses.len(), 0, MAX_EXPENSES)?;
        for (i, e) in self.expenses.iter().enumerate() {
            let ep = index(&p, i);
            name(&field(&ep, "category"), &e.category, 100)?;
            in_range(&field(&ep, "amount"), e.amount, 0.0, 1e9)?;
        }
        let p = field(ROOT, "debts");
        len_between(&p, self.debts.len(), 0, MAX_DEBTS)?;
        for (i, d) in self.debts.iter().enumerate() {
            let dp = index(&p, i);
            name(&field(&dp, "name"), &d.name, 100)?;
            if self.debts[..i].iter().any(|o| o.name == d.name) {
                return Err(ModelError::inconsistent(
                    field(&dp, "name"),
                    format!("duplicate debt name {:?}", d.name),
                ));
            }
            in_range(&field(&dp, "balance"), d.balance, 0.0, 1e12)?;
            if !(0.0..=1.0).contains(&d.apr) {
                return Err(ModelError::invalid(
                    field(&dp, "apr"),
                    format!(
                        "must be an annual rate as a fraction in [0, 1] (0.199 = 19.9 %), got {}",
                        d.apr
                    ),
                ));
            }
            in_range(&field(&dp, "min_payment"), d.min_payment, 0.0, 1e9)?;
        }
        let p = field(ROOT, "goals");
        len_between(&p, self.goals.len(), 0, MAX_GOALS)?;
        for (i, g) in self.goals.iter().enumerate() {
            let gp = index(&p, i);
            name(&field(&gp, "name"), &g.name, 100)?;
            in_range(&field(&gp, "target"), g.target, 0.0, 1e12)?;
            in_range(&field(&gp, "current"), g.current, 0.0, 1e12)?;
            in_range_int(&field(&gp, "months"), u64::from(g.months), 1, 600)?;
        }
        if let Some(b) = self.debt_payment_budget {
            in_range(&field(ROOT, "debt_payment_budget"), b, 0.0, 1e12)?;
        }
        Ok(())
    }
}

/// One bucket of the 50/30/20 comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Monthly amount.
    pub amount: f64,
    /// `amount / income`.
    pub share: f64,
    /// 0.5, 0.3 or 0.2.
    pub target_share: f64,
    /// `target_share × income`.
    pub target_amount: f64,
    /// `amount − target_amount` (positive: above the rule).
    pub difference: f64,
}

/// The debt plans.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DebtPlan {
    /// Monthly budget for all debts used by both plans.
    pub monthly_budget: f64,
    /// Sum of the minimum payments (capped at balances).
    pub minimum_payments: f64,
    /// Highest APR first.
    pub avalanche: Plan,
    /// Smallest balance first.
    pub snowball: Plan,
    /// `snowball.total_interest − avalanche.total_interest`.
    pub interest_saved_by_avalanche: f64,
}

/// Feasibility of one goal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoalStatus {
    /// The goal's name.
    pub name: String,
    /// `max(0, target − current)`.
    pub remaining: f64,
    /// Months left.
    pub months: u32,
    /// `remaining / months`.
    pub monthly_required: f64,
    /// What the surplus can give it each month.
    pub monthly_allocated: f64,
    /// Whether `monthly_allocated` covers `monthly_required`.
    pub feasible: bool,
    /// `monthly_required − monthly_allocated`.
    pub shortfall: f64,
}

/// A suggested cut to a non-essential category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cut {
    /// The category.
    pub category: String,
    /// Its current monthly amount.
    pub current: f64,
    /// Suggested monthly reduction.
    pub cut: f64,
    /// `current − cut`.
    pub new_amount: f64,
}

/// Result of `budget_optimization`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetResult {
    /// Essential expenses plus minimum debt payments (50 % rule).
    pub needs: Bucket,
    /// Non-essential expenses (30 % rule).
    pub wants: Bucket,
    /// The monthly surplus (20 % rule).
    pub savings: Bucket,
    /// `savings / income`.
    pub savings_rate: f64,
    /// Avalanche and snowball plans.
    pub debt_plan: DebtPlan,
    /// Surplus left for goals after extra debt payments.
    pub available_for_goals: f64,
    /// Goals in funding (deadline) order.
    pub goals: Vec<GoalStatus>,
    /// Cuts that would fund the infeasible goals.
    pub suggested_cuts: Vec<Cut>,
    /// Shortfall the non-essential expenses cannot cover.
    pub uncovered_shortfall: f64,
}

fn bucket(amount: f64, income: f64, target_share: f64) -> Result<Bucket, ModelError> {
    let target_amount = target_share * income;
    Ok(Bucket {
        amount: finite("bucket amount", amount)?,
        share: finite("bucket share", amount / income)?,
        target_share,
        target_amount,
        difference: amount - target_amount,
    })
}

/// Runs `budget_optimization` on a validated input.
pub(crate) fn compute(input: &BudgetInput) -> Result<BudgetResult, ModelError> {
    let income = input.monthly_income;
    let essential: f64 = input
        .expenses
        .iter()
        .filter(|e| e.essential)
        .map(|e| e.amount)
        .sum();
    let wants_total: f64 = input
        .expenses
        .iter()
        .filter(|e| !e.essential)
        .map(|e| e.amount)
        .sum();
    let minimums: f64 = input
        .debts
        .iter()
        .map(|d| d.min_payment.min(d.balance))
        .sum();
    let needs = essential + minimums;
    let surplus = income - needs - wants_total;

    let has_debt = input.debts.iter().any(|d| d.balance > 0.0);
    let budget = match input.debt_payment_budget {
        Some(b) => b,
        None if has_debt => minimums + surplus.max(0.0) / 2.0,
        None => 0.0,
    };
    if budget + 1e-9 < minimums {
        return Err(ModelError::unprocessable(format!(
            "debt_payment_budget {budget:.2} is below the sum of the minimum payments {minimums:.2}"
        )));
    }
    let avalanche = debt::simulate(&input.debts, budget, Strategy::Avalanche)?;
    let snowball = debt::simulate(&input.debts, budget, Strategy::Snowball)?;
    let interest_saved_by_avalanche = snowball.total_interest - avalanche.total_interest;

    let available_for_goals = (surplus - (budget - minimums)).max(0.0);
    let mut goal_order: Vec<usize> = (0..input.goals.len()).collect();
    goal_order.sort_by_key(|&i| (input.goals[i].months, i));
    let mut left = available_for_goals;
    let mut goals = Vec::with_capacity(goal_order.len());
    for i in goal_order {
        let g = &input.goals[i];
        let remaining = (g.target - g.current).max(0.0);
        let monthly_required = remaining / f64::from(g.months);
        let monthly_allocated = monthly_required.min(left);
        left -= monthly_allocated;
        let shortfall = (monthly_required - monthly_allocated).max(0.0);
        goals.push(GoalStatus {
            name: g.name.clone(),
            remaining,
            months: g.months,
            monthly_required,
            monthly_allocated,
            feasible: shortfall <= 1e-9,
            shortfall,
        });
    }

    let total_shortfall: f64 = goals.iter().map(|g| g.shortfall).sum();
    let mut suggested_cuts = Vec::new();
    if total_shortfall > 1e-9 && wants_total > 0.0 {
        let fraction = (total_shortfall / wants_total).min(1.0);
        let mut wants: Vec<&Expense> = input
            .expenses
            .iter()
            .filter(|e| !e.essential && e.amount > 0.0)
            .collect();
        wants.sort_by(|a, b| b.amount.total_cmp(&a.amount));
        suggested_cuts = wants
            .into_iter()
            .map(|e| {
                let cut = e.amount * fraction;
                Cut {
                    category: e.category.clone(),
                    current: e.amount,
                    cut,
                    new_amount: e.amount - cut,
                }
            })
            .collect();
    }
    let uncovered_shortfall = (total_shortfall - wants_total).max(0.0);

    Ok(BudgetResult {
        needs: bucket(needs, income, 0.5)?,
        wants: bucket(wants_total, income, 0.3)?,
        savings: bucket(surplus, income, 0.2)?,
        savings_rate: finite("savings_rate", surplus / income)?,
        debt_plan: DebtPlan {
            monthly_budget: budget,
            minimum_payments: minimums,
            avalanche,
            snowball,
            interest_saved_by_avalanche,
        },
        available_for_goals,
        goals,
        suggested_cuts,
        uncovered_shortfall,
    })
}

#[cfg(test)]
mod tests;

//! Month-by-month debt payoff simulation for the avalanche and snowball strategies.
//!
//! Each month, in this order:
//!
//! 1. interest accrues on every open balance: `bᵢ ← bᵢ (1 + aprᵢ / 12)`;
//! 2. every open debt gets its minimum payment, capped at its balance;
//! 3. what is left of the monthly budget goes to the open debts in strategy order (highest
//!    APR first for avalanche, smallest starting balance first for snowball); when the target
//!    closes, the remainder rolls over to the next one within the same month;
//! 4. a balance at or below [`CLOSED`] is closed, recording its payoff month.
//!
//! The simulation stops when every debt is closed or after [`MAX_MONTHS`] months; a plan that
//! has not finished by then (interest at least as large as the payments) is reported with
//! `paid_off: false` and `months: 600`. Cost: `O(MAX_MONTHS · debts)`.

use serde::Serialize;

use super::Debt;
use crate::models::error::{finite, ModelError};

/// Simulation cap in months (50 years).
pub const MAX_MONTHS: u32 = 600;
/// A balance at or below this (a millionth of a currency unit) counts as paid.
const CLOSED: f64 = 1e-6;

/// Which debt receives the budget beyond the minimums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Highest APR first (ties: smaller balance, then input order). Minimises interest.
    Avalanche,
    /// Smallest starting balance first (ties: higher APR, then input order).
    Snowball,
}

/// One debt's line in a plan's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DebtSummary {
    /// The debt's name.
    pub name: String,
    /// Month in which it was paid off (0 if it started at zero); absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payoff_month: Option<u32>,
    /// Interest accrued on it over the plan.
    pub interest_paid: f64,
    /// Everything paid towards it.
    pub total_paid: f64,
}

/// Payoff summary of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleSummary {
    /// Per debt, in payoff order (unfinished debts last, in strategy order).
    pub debts: Vec<DebtSummary>,
    /// Total remaining balance at the end of each full year (month 12, 24, …) of the plan.
    pub remaining_by_year: Vec<f64>,
}

/// The outcome of one strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Months until every debt is paid, or 600 when the plan never ends.
    pub months: u32,
    /// Whether every debt is paid within 600 months.
    pub paid_off: bool,
    /// Interest accrued over the plan.
    pub total_interest: f64,
    /// Everything paid over the plan.
    pub total_paid: f64,
    /// Balance left after 600 months (0 when paid off).
    pub remaining_balance: f64,
    /// Debt names in the order the strategy targets them.
    pub order: Vec<String>,
    /// Per-debt payoff months and yearly balances.
    pub schedule_summary: ScheduleSummary,
}

/// Indices of `debts` in `strategy` order.
pub(crate) fn order(debts: &[Debt], strategy: Strategy) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..debts.len()).collect();
    idx.sort_by(|&i, &j| {
        let (a, b) = (&debts[i], &debts[j]);
        let key = match strategy {
            Strategy::Avalanche => b
                .apr
                .total_cmp(&a.apr)
                .then(a.balance.total_cmp(&b.balance)),
            Strategy::Snowball => a
                .balance
                .total_cmp(&b.balance)
                .then(b.apr.total_cmp(&a.apr)),
        };
        key.then(i.cmp(&j))
    });
    idx
}

/// Simulates paying `debts` with `budget` a month under `strategy`. The caller has checked
/// that the budget covers the minimum payments.
pub(crate) fn simulate(
    debts: &[Debt],
    budget: f64,
    strategy: Strategy,
) -> Result<Plan, ModelError> {
    let n = debts.len();
    let target_order = order(debts, strategy);
    let mut balance: Vec<f64> = debts.iter().map(|d| d.balance).collect();
    let mut open: Vec<bool> = balance.iter().map(|b| *b > CLOSED).collect();
    let mut payoff: Vec<Option<u32>> = open
        .iter()
        .map(|o| if *o { None } else { Some(0) })
        .collect();
    let mut interest = vec![0.0; n];
    let mut paid = vec![0.0; n];
    let mut closed_order: Vec<usize> = (0..n).filter(|&i| !open[i]).collect();
    let mut remaining_by_year = Vec::new();
    let mut months = 0;

    while open.iter().any(|o| *o) && months < MAX_MONTHS {
        months += 1;
        for i in (0..n).filter(|&i| open[i]) {
            let int = balance[i] * debts[i].apr / 12.0;
            balance[i] += int;
            interest[i] += int;
        }
        let mut left = budget;
        for i in (0..n).filter(|&i| open[i]) {
            let pay = debts[i].min_payment.min(balance[i]).min(left).max(0.0);
            balance[i] -= pay;
            paid[i] += pay;
            left -= pay;
        }
        for &i in &target_order {
            if left <= 0.0 {
                break;
            }
            if open[i] {
                let pay = left.min(balance[i]);
                balance[i] -= pay;
                paid[i] += pay;
                left -= pay;
            }
        }
        for &i in &target_order {
            if open[i] && balance[i] <= CLOSED {
                open[i] = false;
                balance[i] = 0.0;
                payoff[i] = Some(months);
                closed_order.push(i);
            }
        }
        let total: f64 = balance.iter().sum();
        finite("debt balance", total)?;
        if months % 12 == 0 {
            remaining_by_year.push(total);
        }
    }
    closed_order.extend(target_order.iter().copied().filter(|&i| open[i]));

    let total_interest = finite("total_interest", interest.iter().sum())?;
    let total_paid = finite("total_paid", paid.iter().sum())?;
    let remaining_balance: f64 = balance.iter().sum();
    Ok(Plan {
        months,
        paid_off: !open.iter().any(|o| *o),
        total_interest,
        total_paid,
        remaining_balance,
        order: target_order
            .iter()
            .map(|&i| debts[i].name.clone())
            .collect(),
        schedule_summary: ScheduleSummary {
            debts: closed_order
                .iter()
                .map(|&i| DebtSummary {
                    name: debts[i].name.clone(),
                    payoff_month: payoff[i],
                    interest_paid: interest[i],
                    total_paid: paid[i],
                })
                .collect(),
            remaining_by_year,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debt(name: &str, balance: f64, apr: f64, min_payment: f64) -> Debt {
        Debt {
            name: name.into(),
            balance,
            apr,
            min_payment,
        }
    }

    #[test]
    fn one_debt_two_months_by_hand() {
        // 1000 at 12 % APR (1 %/month), budget 600:
        // month 1: 1000 × 1.01 = 1010, pay 600 → 410 (interest 10)
        // month 2: 410 × 1.01 = 414.10, pay 414.10 → 0 (interest 4.10)
        let p = simulate(
            &[debt("card", 1000.0, 0.12, 50.0)],
            600.0,
            Strategy::Avalanche,
        )
        .unwrap();
        assert_eq!(p.months, 2);
        assert!(p.paid_off);
        assert!(
            (p.total_interest - 14.10).abs() < 1e-9,
            "{}",
            p.total_interest
        );
        assert!((p.total_paid - 1014.10).abs() < 1e-9);
        assert_eq!(p.schedule_summary.debts[0].payoff_month, Some(2));
    }

    #[test]
    fn avalanche_and_snowball_orders() {
        let d = [
            debt("big_high", 5000.0, 0.24, 100.0),
            debt("small_low", 500.0, 0.05, 25.0),
            debt("mid_mid", 2000.0, 0.15, 50.0),
        ];
        let names = |o: Vec<usize>| {
            o.into_iter()
                .map(|i| d[i].name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(order(&d, Strategy::Avalanche)),
            ["big_high", "mid_mid", "small_low"]
        );
        assert_eq!(
            names(order(&d, Strategy::Snowball)),
            ["small_low", "mid_mid", "big_high"]
        );
        let a = simulate(&d, 600.0, Strategy::Avalanche).unwrap();
        let s = simulate(&d, 600.0, Strategy::Snowball).unwrap();
        assert!(a.paid_off && s.paid_off);
        // Avalanche never pays more interest than snowball.
        assert!(a.total_interest <= s.total_interest + 1e-9);
        // Snowball closes the small debt first.
        assert_eq!(s.schedule_summary.debts[0].name, "small_low");
    }

    #[test]
    fn all_paid_in_month_one() {
        // 100 at 12 % → 101 after interest; 200 at 0 %; budget 1000 ≥ 301.
        let d = [debt("a", 100.0, 0.12, 10.0), debt("b", 200.0, 0.0, 10.0)];
        let p = simulate(&d, 1000.0, Strategy::Snowball).unwrap();
        assert_eq!(p.months, 1);
        assert!((p.total_interest - 1.0).abs() < 1e-12);
        assert!((p.total_paid - 301.0).abs() < 1e-9);
        assert!(p
            .schedule_summary
            .debts
            .iter()
            .all(|s| s.payoff_month == Some(1)));
    }

    #[test]
    fn interest_above_payment_never_ends() {
        // 10 000 at 24 % accrues 200 a month; paying 150 never ends.
        let p = simulate(
            &[debt("x", 10_000.0, 0.24, 150.0)],
            150.0,
            Strategy::Avalanche,
        )
        .unwrap();
        assert!(!p.paid_off);
        assert_eq!(p.months, MAX_MONTHS);
        assert!(p.remaining_balance > 10_000.0 && p.remaining_balance.is_finite());
        assert_eq!(p.schedule_summary.remaining_by_year.len(), 50);
        assert_eq!(p.schedule_summary.debts[0].payoff_month, None);
    }
}

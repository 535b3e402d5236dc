//! Reference cases for `budget_optimization`, with the arithmetic in the comments.

use serde_json::{json, Value};

use super::*;
use crate::models::{parse_input, ModelInput, Operation};

fn parse(v: Value) -> Result<BudgetInput, ModelError> {
    match parse_input(Operation::BudgetOptimization, &v)? {
        ModelInput::Budget(b) => Ok(b),
        other => panic!("wrong variant {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

fn household(debt_payment_budget: Option<f64>) -> Value {
    let mut v = json!({
        "monthly_income": 5000,
        "expenses": [
            {"category": "rent", "amount": 1500, "essential": true},
            {"category": "groceries", "amount": 400, "essential": true},
            {"category": "dining", "amount": 300, "essential": false},
            {"category": "streaming", "amount": 100, "essential": false}
        ],
        "debts": [
            {"name": "card", "balance": 2000, "apr": 0.24, "min_payment": 100},
            {"name": "car", "balance": 5000, "apr": 0.06, "min_payment": 200}
        ],
        "goals": [
            {"name": "emergency", "target": 3000, "current": 600, "months": 12},
            {"name": "vacation", "target": 2400, "current": 0, "months": 6}
        ]
    });
    if let Some(b) = debt_payment_budget {
        v["debt_payment_budget"] = json!(b);
    }
    v
}

#[test]
fn fifty_thirty_twenty_and_goals_by_hand() {
    let r = compute(&parse(household(None)).unwrap()).unwrap();
    // Minimums 100 + 200 = 300. needs = 1500 + 400 + 300 = 2200 (44 %, target 2500, −300);
    // wants = 300 + 100 = 400 (8 %, target 1500); savings = 5000 − 2200 − 400 = 2400 (48 %).
    assert!(close(r.needs.amount, 2200.0) && close(r.needs.share, 0.44));
    assert!(close(r.needs.target_amount, 2500.0) && close(r.needs.difference, -300.0));
    assert!(close(r.wants.amount, 400.0) && close(r.wants.share, 0.08));
    assert!(close(r.savings.amount, 2400.0) && close(r.savings_rate, 0.48));
    assert!(close(r.savings.difference, 1400.0));
    // Default debt budget 300 + 2400/2 = 1500; goals get 2400 − (1500 − 300) = 1200.
    assert!(close(r.debt_plan.monthly_budget, 1500.0));
    assert!(close(r.available_for_goals, 1200.0));
    // Deadline order: vacation (2400/6 = 400) then emergency ((3000 − 600)/12 = 200): both fit.
    assert_eq!(r.goals[0].name, "vacation");
    assert!(close(r.goals[0].monthly_required, 400.0) && r.goals[0].feasible);
    assert!(close(r.goals[1].monthly_required, 200.0) && r.goals[1].feasible);
    assert!(r.suggested_cuts.is_empty());
}

#[test]
fn avalanche_first_months_by_hand() {
    let r = compute(&parse(household(None)).unwrap()).unwrap();
    let a = &r.debt_plan.avalanche;
    // Month 1: card 2000·1.02 = 2040, car 5000·1.005 = 5025; minimums → 1940, 4825;
    //   the other 1200 → card: 740.
    // Month 2: card 740·1.02 = 754.8, car 4825·1.005 = 4849.125; minimums → 654.8, 4649.125;
    //   1200 → card closes (654.8), 545.2 rolls over → car 4103.925.
    assert_eq!(a.order, vec!["card", "car"]);
    let card = &a.schedule_summary.debts[0];
    assert_eq!((card.name.as_str(), card.payoff_month), ("card", Some(2)));
    assert!(close(card.interest_paid, 40.0 + 14.8));
    assert!(close(card.total_paid, 2054.8));
    assert!(a.paid_off && a.months > 2);
    // Both plans target the card first here (it has the highest APR and smallest balance).
    assert_eq!(r.debt_plan.snowball.order, a.order);
    assert!(close(r.debt_plan.interest_saved_by_avalanche, 0.0));
    // Total paid = starting balances + interest.
    assert!(close(a.total_paid, 7000.0 + a.total_interest));
}

#[test]
fn infeasible_goals_get_proportional_cuts() {
    // Budget 2600 → extra debt payments 2300 → goals get 2400 − 2300 = 100.
    // vacation needs 400: gets 100, short 300; emergency needs 200: short 200. Total 500 > wants
    // 400 → cut both wants entirely (fraction min(1, 500/400) = 1), 100 stays uncovered.
    let r = compute(&parse(household(Some(2600.0))).unwrap()).unwrap();
    assert!(close(r.available_for_goals, 100.0));
    assert!(!r.goals[0].feasible && close(r.goals[0].shortfall, 300.0));
    assert!(close(r.goals[1].shortfall, 200.0));
    let cuts: Vec<(&str, f64)> = r
        .suggested_cuts
        .iter()
        .map(|c| (c.category.as_str(), c.cut))
        .collect();
    assert_eq!(cuts, vec![("dining", 300.0), ("streaming", 100.0)]);
    assert!(close(r.uncovered_shortfall, 100.0));
}

#[test]
fn partial_cuts_are_proportional() {
    // Income 1000, needs 600, wants 200 + 100, no debts → surplus 100, default debt budget 0,
    // all 100 to goals. Goal 600 over 3 months = 200/month → shortfall 100 → fraction
    // 100/300: cuts 200/3 and 100/3, largest first.
    let r = compute(
        &parse(json!({"monthly_income": 1000, "expenses": [
            {"category": "essentials", "amount": 600, "essential": true},
            {"category": "fun", "amount": 200, "essential": false},
            {"category": "gym", "amount": 100, "essential": false}],
            "goals": [{"name": "g", "target": 600, "current": 0, "months": 3}]}))
        .unwrap(),
    )
    .unwrap();
    assert!(close(r.available_for_goals, 100.0));
    assert!(
        close(r.suggested_cuts[0].cut, 200.0 / 3.0) && close(r.suggested_cuts[1].cut, 100.0 / 3.0)
    );
    assert!(close(r.suggested_cuts[0].new_amount, 400.0 / 3.0));
    assert_eq!(r.debt_plan.avalanche.months, 0);
    assert!(r.debt_plan.avalanche.paid_off);
}

#[test]
fn all_debts_paid_in_month_one() {
    let r = compute(
        &parse(
            json!({"monthly_income": 10000, "debt_payment_budget": 5000, "debts": [
            {"name": "a", "balance": 100, "apr": 0.12, "min_payment": 25},
            {"name": "b", "balance": 200, "apr": 0, "min_payment": 25}]}),
        )
        .unwrap(),
    )
    .unwrap();
    for plan in [&r.debt_plan.avalanche, &r.debt_plan.snowball] {
        // a: 100 · 1.01 = 101; b: 200 → everything (301) paid in month 1, interest 1.
        assert_eq!(plan.months, 1);
        assert!(close(plan.total_interest, 1.0) && close(plan.total_paid, 301.0));
    }
}

#[test]
fn budget_below_minimums_is_unprocessable() {
    let e = compute(&parse(household(Some(250.0))).unwrap()).unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(
        e.to_string()
            .contains("below the sum of the minimum payments 300.00"),
        "{e}"
    );
}

#[test]
fn never_ending_plan_is_reported() {
    // 10 000 at 24 % accrues 200/month; the minimum 150 never catches up.
    let r = compute(
        &parse(
            json!({"monthly_income": 3000, "debt_payment_budget": 150, "debts": [
            {"name": "x", "balance": 10000, "apr": 0.24, "min_payment": 150}]}),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(!r.debt_plan.avalanche.paid_off);
    assert_eq!(r.debt_plan.avalanche.months, 600);
}

#[test]
fn validation_errors_name_the_path() {
    let cases = [
        (json!({}), "input.monthly_income"),
        (json!({"monthly_income": 0}), "input.monthly_income"),
        (json!({"monthly_income": "1000"}), "input.monthly_income"),
        (
            json!({"monthly_income": 1, "debts": [{"name": "a", "balance": 1, "apr": 19.9, "min_payment": 1}]}),
            "input.debts[0].apr",
        ),
        (
            json!({"monthly_income": 1, "debts": [{"name": "a", "balance": 1, "apr": 0.1, "min_payment": 1},
                {"name": "a", "balance": 1, "apr": 0.1, "min_payment": 1}]}),
            "input.debts[1].name",
        ),
        (
            json!({"monthly_income": 1, "goals": [{"name": "g", "target": 1, "current": 0, "months": 0}]}),
            "input.goals[0].months",
        ),
        (
            json!({"monthly_income": 1, "expenses": [{"category": "a", "amount": -1, "essential": true}]}),
            "input.expenses[0].amount",
        ),
        (
            json!({"monthly_income": 1, "expenses": [{"category": "a", "amount": 1}]}),
            "input.expenses[0].essential",
        ),
    ];
    for (input, want) in cases {
        match parse(input.clone()) {
            Err(ModelError::Invalid { path, .. } | ModelError::Inconsistent { path, .. }) => {
                assert_eq!(path, want, "{input}")
            }
            other => panic!("{input}: {other:?}"),
        }
    }
}

//! Miss-path cost of the embedded models: µs per computation for each operation, called
//! directly and through the `Embedded` endpoint at batch sizes 1 and 32 (the endpoint runs a
//! batch on the executor's blocking thread, so batching amortises that hand-off), plus the
//! largest accepted portfolio.
//!
//! `cargo bench -p atlas-bench --bench models` (RUNS=5 by default; medians are printed).

use std::time::Instant;

use atlas::endpoint::{Embedded, ModelEndpoint};
use atlas::models::{compute, parse_input, ModelInput, Operation};
use serde_json::{json, Value};

fn input(op: Operation, v: Value) -> Option<ModelInput> {
    parse_input(op, &v).ok()
}

fn portfolio(n: usize, len: usize) -> Value {
    let holdings: Vec<Value> = (0..n)
        .map(|i| {
            let prices: Vec<f64> = (0..len)
                .map(|t| {
                    let t = t as f64;
                    100.0 + 10.0 * (t * 0.05 + i as f64).sin() + t * 0.01 * (i % 5) as f64
                })
                .collect();
            json!({"symbol": format!("S{i}"), "weight": 1.0 + (i % 3) as f64, "prices": prices})
        })
        .collect();
    json!({"holdings": holdings})
}

fn samples() -> Vec<(&'static str, ModelInput)> {
    let mut out = Vec::new();
    let mut push = |name, op, v| {
        if let Some(i) = input(op, v) {
            out.push((name, i));
        } else {
            eprintln!("bench input for {name} is invalid");
        }
    };
    push(
        "portfolio_analysis (5 holdings x 252 prices)",
        Operation::PortfolioAnalysis,
        portfolio(5, 252),
    );
    push(
        "budget_optimization (8 expenses, 3 debts, 2 goals)",
        Operation::BudgetOptimization,
        json!({"monthly_income": 6000,
            "expenses": (0..8).map(|i| json!({"category": format!("c{i}"), "amount": 200 + 50 * i, "essential": i % 2 == 0})).collect::<Vec<_>>(),
            "debts": [{"name": "card", "balance": 4000, "apr": 0.22, "min_payment": 120},
                      {"name": "car", "balance": 12000, "apr": 0.07, "min_payment": 300},
                      {"name": "loan", "balance": 2500, "apr": 0.12, "min_payment": 80}],
            "goals": [{"name": "trip", "target": 3000, "current": 500, "months": 12},
                      {"name": "fund", "target": 10000, "current": 2000, "months": 36}]}),
    );
    push(
        "risk_assessment (questionnaire + 3 holdings)",
        Operation::RiskAssessment,
        json!({"age": 40, "horizon_years": 15, "income_stability": 4, "loss_tolerance": 3, "experience": 3,
               "holdings": portfolio(3, 120)["holdings"]}),
    );
    push(
        "cashflow_forecast (36 months, season 12, horizon 12)",
        Operation::CashflowForecast,
        json!({"history": (0..36).map(|t| 1000.0 + 50.0 * (t as f64 * std::f64::consts::FRAC_PI_6).sin() + 5.0 * t as f64).collect::<Vec<_>>(),
               "horizon": 12, "season_length": 12}),
    );
    out
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let samples = samples();
    println!(
        "{:<55} {:>12} {:>14} {:>14}",
        "operation", "direct µs", "batch=1 µs/it", "batch=32 µs/it"
    );
    let ex = glommio::LocalExecutorBuilder::default().make();
    let Ok(ex) = ex else {
        eprintln!("cannot start a glommio executor");
        return;
    };
    ex.run(async move {
        let endpoint = Embedded::new(None);
        for (name, sample) in &samples {
            let iters = 64;
            let direct = median(
                (0..runs)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..iters {
                            let _ = std::hint::black_box(compute(sample));
                        }
                        t.elapsed().as_secs_f64() * 1e6 / iters as f64
                    })
                    .collect(),
            );
            let mut one = Vec::new();
            let mut many = Vec::new();
            let batch32 = vec![sample.clone(); 32];
            for _ in 0..runs {
                let t = Instant::now();
                for _ in 0..iters {
                    let _ = endpoint.infer(std::slice::from_ref(sample)).await;
                }
                one.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
                let t = Instant::now();
                for _ in 0..iters / 32 {
                    let _ = endpoint.infer(&batch32).await;
                }
                many.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
            }
            println!(
                "{name:<55} {direct:>12.1} {:>14.1} {:>14.1}",
                median(one),
                median(many)
            );
        }
        if let Some(worst) = input(Operation::PortfolioAnalysis, portfolio(100, 10_000)) {
            let t = Instant::now();
            let _ = compute(&worst);
            println!(
                "largest accepted portfolio (100 holdings x 10 000 prices): {:.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
    });
}

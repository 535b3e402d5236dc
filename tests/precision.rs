//! Published precision against the real binary: no number of any operation's result carries
//! more decimals than its kind allows (`atlas::models::precision`), for inputs whose raw
//! figures are full of binary noise (prices with cents, odd rates, long series), on the miss
//! and on the hit alike, and the body's `confidence` has at most 4.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use atlas::models::precision::{kind_of, printed_decimals};
use serde_json::{json, Value};

use common::Server;

/// Every number under `v`, with the field it is in (an array's elements take its name).
fn numbers<'a>(v: &'a Value, field: &'a str, out: &mut Vec<(&'a str, f64, bool)>) {
    match v {
        Value::Number(n) => out.push((field, n.as_f64().unwrap(), n.is_f64())),
        Value::Array(items) => items.iter().for_each(|x| numbers(x, field, out)),
        Value::Object(map) => map.iter().for_each(|(k, x)| numbers(x, k, out)),
        _ => {}
    }
}

fn cases() -> Vec<(&'static str, Value)> {
    vec![
        (
            "portfolio_analysis",
            json!({"holdings": [
                {"symbol": "AAPL", "weight": 0.37, "prices": [101.13, 102.07, 100.91, 105.33, 107.19, 106.41, 108.77, 107.03]},
                {"symbol": "MSFT", "weight": 0.41, "prices": [201.7, 198.3, 202.9, 204.1, 203.3, 207.7, 209.1, 205.9]},
                {"symbol": "BND", "weight": 0.22, "prices": [72.11, 72.19, 72.07, 72.31, 72.29, 72.41, 72.38, 72.5]}],
                "benchmark_prices": [401.3, 403.7, 399.9, 407.1, 409.3, 408.2, 411.9, 410.1],
                "risk_free_rate": 0.0137}),
        ),
        (
            "budget_optimization",
            json!({"monthly_income": 5123.37,
                "expenses": [{"category": "rent", "amount": 1533.33, "essential": true},
                             {"category": "dining", "amount": 611.11, "essential": false},
                             {"category": "travel", "amount": 377.77, "essential": false}],
                "debts": [{"name": "card", "balance": 3011.13, "apr": 0.2137, "min_payment": 97.31},
                          {"name": "car", "balance": 9123.45, "apr": 0.0713, "min_payment": 251.17}],
                "goals": [{"name": "car", "target": 6000, "current": 1000, "months": 7}]}),
        ),
        (
            "risk_assessment",
            json!({"age": 37, "horizon_years": 13, "income_stability": 4, "loss_tolerance": 3,
                   "experience": 2}),
        ),
        (
            "cashflow_forecast",
            json!({"history": [1013.7, 1107.3, 1201.9, 1311.1, 1397.3, 1513.7, 1601.1, 1733.9,
                               1811.3, 1907.7, 2039.1, 2101.3], "horizon": 5}),
        ),
    ]
}

#[test]
fn no_result_carries_more_decimals_than_its_kind() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    for (op, input) in cases() {
        let body = json!({"user_id": "u-precision", "input": input}).to_string();
        for expected in ["miss", "hit"] {
            c.send(
                format!(
                    "POST /ai/{op} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let r = c.read_response(false);
            assert_eq!(r.status, 200, "{op}: {}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.header("X-Atlas-Cache"), Some(expected));
            let v = r.json();
            let mut found = Vec::new();
            numbers(&v["result"], "result", &mut found);
            assert!(found.len() > 5, "{op}: {v}");
            for (field, x, is_float) in found {
                let allowed = kind_of(field).decimals();
                assert!(
                    !is_float || printed_decimals(x) <= allowed,
                    "{op}: {field} = {x} has more than {allowed} decimals"
                );
            }
            let confidence = v["confidence"].as_f64().unwrap();
            assert!(printed_decimals(confidence) <= 4, "{op}: {confidence}");
        }
    }
}

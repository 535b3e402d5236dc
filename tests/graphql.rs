//! `/graphql` against the real binary: each operation answers what REST answers and shares
//! its cache entry, several fields in one document, per-field errors, the spec's request
//! errors and status codes, limits, introspection, auth per field, context and admin
//! mutations, GET, and the schema file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use serde_json::{json, Value};

use common::{Client, Response, Server};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ADMIN_TOKEN: &str = "operator-token-0123456789abcdefghij";

fn send(c: &mut Client, method: &str, path: &str, headers: &str, body: &str) -> Response {
    c.request(method, path, headers, body)
}

/// POSTs a GraphQL request (`application/json` answers).
fn gql(c: &mut Client, query: &str, variables: Value) -> Response {
    let body = json!({"query": query, "variables": variables}).to_string();
    send(
        c,
        "POST",
        "/graphql",
        "Content-Type: application/json\r\n",
        &body,
    )
}

/// (REST operation, GraphQL field, REST input).
fn cases() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "portfolio_analysis",
            "portfolioAnalysis",
            json!({"holdings": [
                {"symbol": "AAPL", "weight": 0.6, "prices": [100, 102, 101, 105, 107, 106]},
                {"symbol": "MSFT", "weight": 0.4, "prices": [200, 198, 202, 204, 203, 207]}]}),
        ),
        (
            "budget_optimization",
            "budgetOptimization",
            json!({"monthly_income": 5000,
                "expenses": [{"category": "rent", "amount": 1500, "essential": true},
                             {"category": "dining", "amount": 600, "essential": false}],
                "debts": [{"name": "card", "balance": 3000, "apr": 0.2, "min_payment": 100}],
                "goals": [{"name": "car", "target": 6000, "current": 1000, "months": 24}]}),
        ),
        (
            "risk_assessment",
            "riskAssessment",
            json!({"age": 35, "horizon_years": 20, "income_stability": 4,
                "loss_tolerance": 3, "experience": 3}),
        ),
        (
            "cashflow_forecast",
            "cashflowForecast",
            json!({"history": [100, 110, 120, 130, 140, 150, 160, 170], "horizon": 3}),
        ),
    ]
}

/// The GraphQL input type of a field.
fn input_type(field: &str) -> String {
    let mut t = field[..1].to_uppercase();
    t.push_str(&field[1..]);
    t + "Input"
}

/// The whole typed result of each field (every field of the result types).
fn result_selection(field: &str) -> &'static str {
    match field {
        "portfolioAnalysis" => "symbols weights returns expectedReturn volatility sharpeRatio sortinoRatio maxDrawdown var95 cvar95 beta correlation concentrationHhi minVarianceWeights maxSharpeWeights maxSharpeMethod maxSharpeRatio rebalancing { symbol currentWeight targetWeight trade action }",
        "budgetOptimization" => "needs { ...B } wants { ...B } savings { ...B } savingsRate debtPlan { monthlyBudget minimumPayments avalanche { ...P } snowball { ...P } interestSavedByAvalanche } availableForGoals goals { name remaining months monthlyRequired monthlyAllocated feasible shortfall } suggestedCuts { category current cut newAmount } uncoveredShortfall",
        "riskAssessment" => "riskScore profile recommendedAllocation { stocks bonds cash } volatilityBand { lower upper } portfolio { volatility band { lower upper } distance status }",
        "cashflowForecast" => "forecast lower80 upper80 lower95 upper95 method fittedParams { alpha beta gamma seasonLength } mape rmse",
        _ => unreachable!(),
    }
}

/// Fragments `result_selection` uses.
const FRAGMENTS: &str = "fragment B on Bucket { amount share targetShare targetAmount difference } fragment P on DebtStrategy { months paidOff totalInterest totalPaid remainingBalance order scheduleSummary { debts { name payoffMonth interestPaid totalPaid } remainingByYear } }";

/// `snake_case` → `camelCase` (`var_95` → `var95`).
fn camel(s: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A REST JSON value as GraphQL shows it: camelCase keys, enum names upper case, nulls
/// dropped (REST leaves some absent optional fields out, GraphQL answers them null).
fn as_graphql(v: &Value) -> Value {
    const ENUMS: [&str; 5] = ["action", "max_sharpe_method", "profile", "status", "method"];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) if ENUMS.contains(&k.as_str()) => {
                            Value::String(s.to_uppercase())
                        }
                        other => as_graphql(other),
                    };
                    (camel(k), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(as_graphql).collect()),
        other => other.clone(),
    }
}

/// Drops the nulls of a GraphQL answer (see `as_graphql`).
fn without_nulls(v: &Value) -> Value {
    as_graphql(&serde_json::from_str::<Value>(&v.to_string()).unwrap())
}

const FIELDS: &str =
    "operation confidence modelVersion meta { cache shard totalMs batchSize endpoint }";

#[test]
fn each_operation_answers_what_rest_answers_from_the_same_cache_entry() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    for (op, field, input) in cases() {
        let body = json!({"user_id": "u-1", "input": input}).to_string();
        let rest = send(&mut c, "POST", &format!("/ai/{op}"), "", &body);
        assert_eq!(rest.status, 200, "{op}");
        assert_eq!(rest.header("X-Atlas-Cache"), Some("miss"));
        let rest_body = rest.json();
        // Typed input (camelCase variables), typed result, and the REST JSON beside it.
        let query = format!(
            "query($i: {}) {{ {field}(userId: \"u-1\", input: $i) {{ {FIELDS} result {{ {} }} resultJson }} }} {}",
            input_type(field),
            result_selection(field),
            if field == "budgetOptimization" { FRAGMENTS } else { "" }
        );
        let r = gql(&mut c, &query, json!({"i": as_graphql(&input)}));
        assert_eq!(r.status, 200);
        let v = r.json();
        assert!(v.get("errors").is_none(), "{op}: {v}");
        let got = &v["data"][field];
        assert_eq!(
            got["meta"]["cache"], "hit",
            "{op}: REST then GraphQL shares the entry"
        );
        assert_eq!(got["meta"]["endpoint"], "cache");
        assert_eq!(got["meta"]["batchSize"], 0);
        assert_eq!(
            got["meta"]["shard"].as_u64().unwrap().to_string(),
            rest.header("X-Atlas-Owner").unwrap()
        );
        assert_eq!(got["operation"], op);
        assert_eq!(
            without_nulls(&got["result"]),
            as_graphql(&rest_body["result"]),
            "{op}: same numbers, typed"
        );
        assert_eq!(got["resultJson"], rest_body["result"], "{op}: same JSON");
        assert_eq!(got["confidence"], rest_body["confidence"]);
        assert_eq!(got["modelVersion"], rest_body["model_version"]);
        // The escape hatch: the REST input object as JSON reads the same entry.
        let query = format!(
            "query($i: JSON) {{ {field}(userId: \"u-1\", inputJson: $i) {{ meta {{ cache }} }} }}"
        );
        let v = gql(&mut c, &query, json!({"i": input})).json();
        assert_eq!(v["data"][field]["meta"]["cache"], "hit", "{op}: {v}");
    }
    // And the other way: GraphQL first (a miss, typed literal), then REST is a hit.
    let (op, field, input) = cases().remove(2);
    let query = format!(
        "{{ {field}(userId: \"u-2\", input: {}) {{ meta {{ cache batchSize }} }} }}",
        graphql_literal(&as_graphql(&input))
    );
    let v = gql(&mut c, &query, Value::Null).json();
    assert_eq!(v["data"][field]["meta"]["cache"], "miss", "{v}");
    assert!(v["data"][field]["meta"]["batchSize"].as_u64().unwrap() >= 1);
    let body = json!({"user_id": "u-2", "input": input}).to_string();
    let rest = send(&mut c, "POST", &format!("/ai/{op}"), "", &body);
    assert_eq!(rest.header("X-Atlas-Cache"), Some("hit"));
    // Typed input and inputJson together are refused for that field.
    let v = gql(
        &mut c,
        "{ riskAssessment(userId: \"u-2\", input: {age: 40}, inputJson: {age: 40}) { confidence } }",
        Value::Null,
    )
    .json();
    assert_eq!(v["data"]["riskAssessment"], Value::Null, "{v}");
    assert_eq!(v["errors"][0]["extensions"]["code"], "invalid_request");
    // A typed input of the wrong shape is a GraphQL validation error naming the field.
    let v = gql(
        &mut c,
        "{ riskAssessment(userId: \"u-2\", input: {age: \"old\"}) { confidence } }",
        Value::Null,
    )
    .json();
    assert!(v.get("data").is_none(), "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("age"),
        "{v}"
    );
}

/// A JSON object written as a GraphQL input literal (`{age: 35}`).
fn graphql_literal(v: &Value) -> String {
    match v {
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}: {}", graphql_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(graphql_literal).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[test]
fn four_fields_answer_together_and_a_failing_field_fails_alone() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let mut vars = serde_json::Map::new();
    let mut fields = Vec::new();
    let mut params = Vec::new();
    for (i, (_, field, input)) in cases().into_iter().enumerate() {
        params.push(format!("$i{i}: {}", input_type(field)));
        fields.push(format!(
            "{field}(userId: \"u-4\", input: $i{i}) {{ {FIELDS} }}"
        ));
        vars.insert(format!("i{i}"), as_graphql(&input));
    }
    let query = format!("query({}) {{ {} }}", params.join(", "), fields.join(" "));
    let v = gql(&mut c, &query, Value::Object(vars.clone())).json();
    assert!(v.get("errors").is_none(), "{v}");
    for (op, field, _) in cases() {
        assert_eq!(v["data"][field]["operation"], op);
        assert_eq!(v["data"][field]["meta"]["cache"], "miss");
    }
    // The same document again: four hits.
    let v = gql(&mut c, &query, Value::Object(vars)).json();
    for (_, field, _) in cases() {
        assert_eq!(v["data"][field]["meta"]["cache"], "hit", "{v}");
    }
    // One field with impossible input: its path errs with the REST code, the other answers.
    let query = r#"{ bad: riskAssessment(userId: "u-4", input: {age: 35}) { confidence }
        good: cashflowForecast(userId: "u-4", input: {history: [1, 2, 3, 4, 5], horizon: 2}) { meta { cache } } }"#;
    let r = gql(&mut c, query, Value::Null);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["data"]["bad"], Value::Null);
    assert!(v["data"].as_object().unwrap().contains_key("bad"), "{v}");
    assert_eq!(v["data"]["good"]["meta"]["cache"], "miss", "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["path"], json!(["bad"]));
    assert_eq!(errors[0]["extensions"]["code"], "invalid_request");
    assert_eq!(errors[0]["extensions"]["status"], 400);
    assert!(
        errors[0]["message"].as_str().unwrap().starts_with("input"),
        "{v}"
    );
}

#[test]
fn request_errors_are_spec_shaped() {
    let server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_GRAPHQL_MAX_DEPTH", "2"),
            ("ATLAS_GRAPHQL_MAX_COMPLEXITY", "12"),
            ("ATLAS_GRAPHQL_MAX_FIELDS", "3"),
        ],
    );
    let mut c = server.connect();
    let only_errors = |r: &Response, status: u16| {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert!(v.get("data").is_none(), "{v}");
        let message = v["errors"][0]["message"].as_str().unwrap().to_string();
        assert!(!message.is_empty());
        message
    };
    let spec = "Accept: application/graphql-response+json\r\nContent-Type: application/json\r\n";
    // Malformed document: 200 with application/json, 400 with graphql-response+json.
    let body = json!({"query": "{ riskAssessment(userId: "}).to_string();
    only_errors(&send(&mut c, "POST", "/graphql", "", &body), 200);
    let r = send(&mut c, "POST", "/graphql", spec, &body);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/graphql-response+json")
    );
    only_errors(&r, 400);
    // Unknown field.
    let body = json!({"query": "{ nope }"}).to_string();
    let m = only_errors(&send(&mut c, "POST", "/graphql", spec, &body), 400);
    assert!(m.contains("nope"), "{m}");
    // A variable of the wrong type.
    let body = json!({"query": "query($u: String!) { context(userId: $u) { version } }", "variables": {"u": 5}}).to_string();
    only_errors(&send(&mut c, "POST", "/graphql", spec, &body), 400);
    // Depth: 2 is allowed, `meta`'s fields are at depth 3.
    let body = json!({"query": "{ context(userId: \"u\") { version } }"}).to_string();
    let r = send(&mut c, "POST", "/graphql", spec, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = json!({"query": "{ riskAssessment(userId: \"u\", input: {}) { meta { cache } } }"})
        .to_string();
    let m = only_errors(&send(&mut c, "POST", "/graphql", spec, &body), 400);
    assert!(m.contains("deep"), "{m}");
    // Too complex: 3 fields of 1 + 4 each is 15 > 12.
    let body = json!({"query": "{ a: context(userId: \"u\") { context version userId expiresInS } b: context(userId: \"v\") { context version userId expiresInS } c: context(userId: \"w\") { context version userId expiresInS } }"}).to_string();
    let m = only_errors(&send(&mut c, "POST", "/graphql", spec, &body), 400);
    assert!(m.contains("complex"), "{m}");
    // Too many top-level fields (4 > 3).
    let body =
        json!({"query": "{ a: __typename b: __typename c: __typename d: __typename }"}).to_string();
    let m = only_errors(&send(&mut c, "POST", "/graphql", spec, &body), 400);
    assert!(m.contains("ATLAS_GRAPHQL_MAX_FIELDS"), "{m}");
    // Not a GraphQL request at all: 400 whatever the Accept.
    only_errors(&send(&mut c, "POST", "/graphql", "", "{not json"), 400);
    only_errors(
        &send(&mut c, "POST", "/graphql", "", "{\"variables\": {}}"),
        400,
    );
    // Introspection is off by default.
    let body = json!({"query": "{ __schema { queryType { name } } }"}).to_string();
    let m = only_errors(&send(&mut c, "POST", "/graphql", spec, &body), 400);
    assert!(m.contains("ATLAS_GRAPHQL_INTROSPECTION"), "{m}");
    // GET runs queries, refuses mutations (405), and PUT is not a GraphQL method.
    let r = c.get("/graphql?query=%7B+context(userId%3A+%22nobody%22)+%7B+version+%7D+%7D");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!({"data": {"context": null}}));
    let r = c.get("/graphql?query=mutation+%7B+deleteContext(userId%3A+%22x%22)+%7D");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));
    let r = send(&mut c, "PUT", "/graphql", "", "");
    assert_eq!(r.status, 405);
}

#[test]
fn introspection_can_be_turned_on() {
    let server = Server::start(
        &["--cores", "1"],
        &[("ATLAS_GRAPHQL_INTROSPECTION", "true")],
    );
    let mut c = server.connect();
    let v = gql(&mut c, "{ __schema { queryType { name } } }", Value::Null).json();
    assert_eq!(
        v,
        json!({"data": {"__schema": {"queryType": {"name": "Query"}}}})
    );
}

/// Runs `python3 tests/SCRIPT ARGS` (the Python tools of `tests/requirements.txt`, which
/// tests/run.sh installs and puts first on PATH) and fails with its output unless it exits 0.
fn python(script: &str, args: &[&str]) {
    let out = Command::new("python3")
        .arg(format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .output()
        .expect("python3 (with tests/requirements.txt installed: bash tests/run.sh does it)");
    assert!(
        out.status.success(),
        "tests/{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tests/graphql_client.py` (gql, a standard GraphQL client, and graphql-core's
/// standard introspection queries) against `server`; `args` after the URL.
fn graphql_client(server: &Server, args: &[&str]) {
    let url = server.url();
    python("graphql_client.py", &[&[url.as_str()], args].concat());
}

/// A standard client loads the schema by introspection (the standard queries nest deeper
/// than `ATLAS_GRAPHQL_MAX_DEPTH`, and are answered in full), then every operation through
/// it equals REST; with two shards, so the answers come from the owner shards.
#[test]
fn a_standard_client_loads_the_schema_and_every_operation_matches_rest() {
    let server = Server::start(
        &["--cores", "2"],
        &[("ATLAS_GRAPHQL_INTROSPECTION", "true")],
    );
    graphql_client(&server, &[]);
}

/// With introspection off, the standard introspection query (a named operation) gets the
/// one error that names the setting, not a depth error.
#[test]
fn the_standard_introspection_query_is_refused_by_name_when_off() {
    let server = Server::start(&["--cores", "1"], &[]);
    graphql_client(&server, &["off"]);
}

fn hs(sub: &str, admin: bool) -> String {
    common::hs256(SECRET, sub, admin)
}

#[test]
fn auth_rules_are_the_rest_rules_per_field_and_mutations_reach_the_same_handlers() {
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_JWT_SECRET", SECRET),
            ("ATLAS_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    let mut c = server.connect();
    let post = |c: &mut Client, token: Option<&str>, query: &str, vars: Value| {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let body = json!({"query": query, "variables": vars}).to_string();
        send(
            c,
            "POST",
            "/graphql",
            &format!("{auth}Content-Type: application/json\r\n"),
            &body,
        )
    };
    // No token: 401 before any GraphQL, as on REST.
    let r = post(&mut c, None, "{ __typename }", Value::Null);
    assert_eq!(r.status, 401);
    let alice = hs("alice", false);
    // Alice stores, reads and uses her context.
    let v = post(
        &mut c,
        Some(&alice),
        "mutation($c: JSON!) { setContext(userId: \"alice\", context: $c) }",
        json!({"c": {"age": 35, "horizon_years": 20, "income_stability": 4, "loss_tolerance": 3, "experience": 3}}),
    )
    .json();
    assert_eq!(v["data"]["setContext"]["version"], 1, "{v}");
    let v = post(&mut c, Some(&alice), "{ context(userId: \"alice\") { userId version context } r: riskAssessment(userId: \"alice\", useContext: true) { meta { cache } } }", Value::Null).json();
    assert_eq!(v["data"]["context"]["version"], 1, "{v}");
    assert_eq!(v["data"]["context"]["context"]["age"], 35);
    assert_eq!(v["data"]["r"]["meta"]["cache"], "miss", "{v}");
    // Bob's data and the admin fields are refused per field, with REST's codes.
    let v = post(&mut c, Some(&alice), "{ context(userId: \"bob\") { version } performance mine: context(userId: \"alice\") { version } }", Value::Null).json();
    assert_eq!(v["data"]["mine"]["version"], 1, "{v}");
    let codes: Vec<(&Value, &Value)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e["path"][0], &e["extensions"]["code"]))
        .collect();
    assert!(
        codes.contains(&(&json!("context"), &json!("user_mismatch"))),
        "{v}"
    );
    assert!(
        codes.contains(&(&json!("performance"), &json!("admin_required"))),
        "{v}"
    );
    let v = post(
        &mut c,
        Some(&alice),
        "mutation { invalidate(selectors: {all: true}) }",
        Value::Null,
    )
    .json();
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "admin_required",
        "{v}"
    );
    // The admin token invalidates alice's results and publishes an event.
    let v = post(
        &mut c,
        Some(ADMIN_TOKEN),
        "mutation { invalidate(selectors: {user_id: \"alice\"}) }",
        Value::Null,
    )
    .json();
    assert_eq!(v["data"]["invalidate"]["removed"], 1, "{v}");
    let v = post(
        &mut c,
        Some(ADMIN_TOKEN),
        "mutation { publishEvent(event: {type: \"market_data_update\", symbols: [\"AAPL\"]}) }",
        Value::Null,
    )
    .json();
    assert_eq!(
        v["data"]["publishEvent"]["event"], "market_data_update",
        "{v}"
    );
    let v = post(&mut c, Some(ADMIN_TOKEN), "{ performance }", Value::Null).json();
    assert!(v["data"]["performance"].is_object(), "{v}");
    // Alice deletes her context.
    let v = post(
        &mut c,
        Some(&alice),
        "mutation { deleteContext(userId: \"alice\") }",
        Value::Null,
    )
    .json();
    assert_eq!(v["data"]["deleteContext"]["deleted"], true, "{v}");
}

#[test]
fn the_printed_schema_is_the_one_in_the_repository() {
    let out = Command::new(env!("CARGO_BIN_EXE_atlas"))
        .arg("graphql-schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let kept = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/app/graphql/schema.graphql"
    ))
    .unwrap();
    assert_eq!(
        printed, kept,
        "run `atlas graphql-schema > src/app/graphql/schema.graphql`"
    );
}

#[test]
fn the_schema_validates_with_graphql_core() {
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/app/graphql/schema.graphql"
    );
    python("graphql_schema.py", &[schema]);
}

#[test]
fn a_rate_limited_field_errs_with_retry_after_and_a_fully_limited_document_carries_it() {
    // A burst of 2 for each user, then one token per 100 s.
    let server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_RATE_LIMIT_USER_RPS", "0.01"),
            ("ATLAS_RATE_LIMIT_USER_BURST", "2"),
        ],
    );
    let mut c = server.connect();
    let field = |alias: &str, age: u32| {
        format!(
            "{alias}: riskAssessment(userId: \"rl\", input: {{age: {age}, horizonYears: 10, incomeStability: 3, lossTolerance: 3, experience: 3}}) {{ meta {{ cache }} }}"
        )
    };
    // Three fields, two tokens: one field is refused, the others answer; no Retry-After on
    // the response, since it carries data.
    let query = format!(
        "{{ {} {} {} }}",
        field("a", 30),
        field("b", 31),
        field("c", 32)
    );
    let r = gql(&mut c, &query, Value::Null);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Retry-After"), None);
    let v = r.json();
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    let e = &errors[0];
    assert_eq!(e["extensions"]["code"], "RATE_LIMITED", "{v}");
    assert_eq!(e["extensions"]["restCode"], "rate_limited_user");
    assert_eq!(e["extensions"]["status"], 429);
    let retry = e["extensions"]["retryAfterS"].as_u64().unwrap();
    assert!((1..=100).contains(&retry), "{v}");
    let refused = e["path"][0].as_str().unwrap();
    assert_eq!(v["data"][refused], Value::Null);
    let answered = ["a", "b", "c"]
        .iter()
        .filter(|f| v["data"][**f]["meta"]["cache"] == "miss")
        .count();
    assert_eq!(answered, 2, "{v}");
    // Every field refused: the response carries Retry-After (the longest of theirs).
    let query = format!("{{ {} {} }}", field("d", 33), field("e", 34));
    let r = gql(&mut c, &query, Value::Null);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["data"], json!({"d": null, "e": null}), "{v}");
    let longest = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["extensions"]["code"], "RATE_LIMITED", "{v}");
            e["extensions"]["retryAfterS"].as_u64().unwrap()
        })
        .max()
        .unwrap();
    assert_eq!(r.header("Retry-After"), Some(longest.to_string().as_str()));
}

#[test]
fn misses_of_several_fields_share_one_batch() {
    // Certain, not probable: one shard and one remote endpoint that runs one batch at a time
    // (`concurrency` 1). A plug request occupies it for 3 s; while it is busy a request
    // waits for a free slot, a full batch (BATCH_SIZE 4) or the 60 s window, so the four
    // fields, queued well within the 3 s, leave together when the fourth arrives.
    let model =
        Server::model_endpoint(&["--cores", "1", "--latency-ms", "3000", "--concurrency", "2"]);
    let spec = format!("m={};timeout_ms=30000", model.url());
    let server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_EMBEDDED", "false"),
            ("ATLAS_ENDPOINTS", spec.as_str()),
            ("BATCH_SIZE", "4"),
            ("BATCH_TIMEOUT_MS", "60000"),
            ("REQUEST_TIMEOUT_MS", "60000"),
        ],
    );
    let risk = |user: &str, age: u32| {
        json!({"user_id": user, "input": {"age": age, "horizon_years": 10,
            "income_stability": 3, "loss_tolerance": 3, "experience": 3}})
        .to_string()
    };
    let plug = {
        let mut c = server.connect();
        let body = risk("plug", 50);
        std::thread::spawn(move || send(&mut c, "POST", "/ai/risk_assessment", "", &body))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let d = server.connect().get("/health/detailed").json();
        if d["shards"][0]["endpoints"][0]["in_flight"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plug never reached the endpoint: {d}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let fields: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "f{i}: riskAssessment(userId: \"u-batch\", input: {{age: {}, horizonYears: 10, incomeStability: 3, lossTolerance: 3, experience: 3}}) {{ meta {{ cache batchSize endpoint }} }}",
                30 + i
            )
        })
        .collect();
    let mut c = server.connect();
    let v = gql(&mut c, &format!("{{ {} }}", fields.join(" ")), Value::Null).json();
    assert!(v.get("errors").is_none(), "{v}");
    for i in 0..4 {
        let meta = &v["data"][format!("f{i}")]["meta"];
        assert_eq!(meta["cache"], "miss", "{v}");
        assert_eq!(meta["endpoint"], "m", "{v}");
        assert_eq!(meta["batchSize"], 4, "the four misses share one batch: {v}");
    }
    let plug = plug.join().unwrap();
    assert_eq!(plug.status, 200);
    assert_eq!(plug.header("X-Atlas-Batch-Size"), Some("1"));
}

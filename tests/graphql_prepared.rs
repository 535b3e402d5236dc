//! `/graphql`'s prepared path against the real binary: a planned document answers exactly
//! what async-graphql answers for the same selection (every field of every operation, through
//! aliases, fragments and literal directives), over POST and GET, from the first request and
//! from the memo; values that do not fit their types get async-graphql's answer; the user
//! check applies per request; a result that does not fit its type is null where the spec puts
//! it; and a kept projection is never served for another cache entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use serde_json::{json, Value};

use common::{Client, Server};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ADMIN_TOKEN: &str = "operator-token-0123456789abcdefghij";

fn gql_as(c: &mut Client, token: Option<&str>, query: &str, variables: &Value) -> Value {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = json!({"query": query, "variables": variables}).to_string();
    let r = c.request(
        "POST",
        "/graphql",
        &format!("{auth}Content-Type: application/json\r\n"),
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn gql(c: &mut Client, query: &str, variables: &Value) -> Value {
    gql_as(c, None, query, variables)
}

/// `ai_graphql_requests_total{path=...}`.
fn served(server: &Server, path: &str) -> u64 {
    let text = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    let series = format!("ai_graphql_requests_total{{path=\"{path}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().unwrap())
}

/// The schema's object types, from the repository's SDL.
fn object_types() -> Vec<(String, Vec<(String, Type)>)> {
    let sdl = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/app/graphql/schema.graphql"
    ))
    .unwrap();
    let doc = async_graphql::parser::parse_schema(&sdl).unwrap();
    doc.definitions
        .into_iter()
        .filter_map(|d| match d {
            TypeSystemDefinition::Type(t) => match t.node.kind {
                TypeKind::Object(o) => Some((
                    t.node.name.node.to_string(),
                    o.fields
                        .into_iter()
                        .map(|f| (f.node.name.node.to_string(), f.node.ty.node))
                        .collect(),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn base(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => base(inner),
    }
}

/// Every field of object type `name`, nested objects included, with `__typename` at each
/// level and each scalar once more under an alias.
fn everything(types: &[(String, Vec<(String, Type)>)], name: &str) -> String {
    let (_, fields) = types.iter().find(|(n, _)| n == name).unwrap();
    let mut out = String::from("__typename");
    for (field, ty) in fields {
        out.push(' ');
        if types.iter().any(|(n, _)| n == base(ty)) {
            out.push_str(&format!("{field} {{ {} }}", everything(types, base(ty))));
        } else {
            out.push_str(&format!("{field} again_{field}: {field}"));
        }
    }
    out
}

/// (GraphQL field, its input type, a GraphQL input whose result has every optional part).
fn cases() -> Vec<(&'static str, &'static str, Value)> {
    let holdings = json!([
        {"symbol": "AAPL", "weight": 0.6, "prices": [100, 102, 101, 105, 107, 106, 108, 110]},
        {"symbol": "MSFT", "weight": 0.4, "prices": [200, 198, 202, 204, 203, 207, 209, 208]}]);
    let history: Vec<f64> = (0..30)
        .map(|i| 100.0 + f64::from(i % 12) * 3.0 + f64::from(i))
        .collect();
    vec![
        (
            "portfolioAnalysis",
            "PortfolioAnalysisInput",
            json!({"holdings": holdings, "benchmarkPrices": [50, 51, 50, 52, 53, 53, 54, 55]}),
        ),
        (
            "budgetOptimization",
            "BudgetOptimizationInput",
            json!({"monthlyIncome": 5000,
                "expenses": [{"category": "rent", "amount": 1500, "essential": true},
                             {"category": "dining", "amount": 600, "essential": false}],
                "debts": [{"name": "card", "balance": 3000, "apr": 0.2, "minPayment": 100}],
                "goals": [{"name": "car", "target": 60000, "current": 1000, "months": 24}]}),
        ),
        (
            "riskAssessment",
            "RiskAssessmentInput",
            json!({"age": 35, "horizonYears": 20, "incomeStability": 4, "lossTolerance": 3,
                "experience": 3, "holdings": holdings}),
        ),
        (
            "cashflowForecast",
            "CashflowForecastInput",
            json!({"history": history, "horizon": 3}),
        ),
    ]
}

/// `v` without the per-request `totalMs` values.
fn without_time(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("totalMs");
                m.remove("again_totalMs");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn a_planned_document_answers_what_async_graphql_answers() {
    let server = Server::start(&["--cores", "2"], &[]);
    let mut c = server.connect();
    let types = object_types();
    for (field, input_type, input) in cases() {
        let answer_type = {
            let mut t = field[..1].to_uppercase();
            t.push_str(&field[1..]);
            t
        };
        let selection = everything(&types, &answer_type);
        // Planned: fragments, an inline fragment, aliases, literal directives.
        let planned = format!(
            "query Q($i: {input_type}) {{ __typename a: {field}(userId: \"u-1\", input: $i) {{ ...F ... on {answer_type} {{ meta {{ cache }} }} skipped: operation @skip(if: true) }} }}
             fragment F on {answer_type} {{ {selection} }}"
        );
        // Not planned (a directive on a variable): async-graphql runs it.
        let general = format!(
            "query Q($i: {input_type}, $yes: Boolean!) {{ __typename a: {field}(userId: \"u-1\", input: $i) {{ ...F ... on {answer_type} {{ meta {{ cache }} }} skipped: operation @skip(if: true) x: operation @include(if: $yes) }} }}
             fragment F on {answer_type} {{ {selection} }}"
        );
        let vars = json!({"i": input, "yes": false});
        // The first request (a miss) fills the entry; then each path reads it.
        let first = gql(&mut c, &planned, &vars);
        assert!(first.get("errors").is_none(), "{field}: {first}");
        assert_eq!(first["data"]["a"]["meta"]["cache"], "miss");
        let (memo, prepared, slow) = (
            served(&server, "memo"),
            served(&server, "prepared"),
            served(&server, "general"),
        );
        let by_general = gql(&mut c, &general, &vars);
        assert_eq!(served(&server, "general"), slow + 1);
        let by_plan = gql(&mut c, &planned, &vars);
        assert_eq!(served(&server, "memo"), memo + 1, "the same bytes: memo");
        assert!(by_general.get("errors").is_none(), "{field}: {by_general}");
        assert_eq!(by_plan["data"]["a"]["meta"]["cache"], "hit");
        assert_eq!(
            without_time(by_plan.clone()),
            without_time(by_general),
            "{field}: the prepared path answers what async-graphql answers"
        );
        // Other bytes of the same document (variables reordered, GET): bound again, the same.
        let mut spaced = vars.clone();
        spaced["pad"] = json!(null);
        let again = gql(&mut c, &planned, &spaced);
        assert_eq!(served(&server, "prepared"), prepared + 1);
        assert_eq!(without_time(again), without_time(by_plan.clone()));
        let url = format!(
            "/graphql?query={}&variables={}",
            encode_component(&planned),
            encode_component(&vars.to_string())
        );
        for _ in 0..2 {
            let r = c.get(&url);
            assert_eq!(r.status, 200);
            assert_eq!(
                without_time(r.json()),
                without_time(by_plan.clone()),
                "{field}: GET"
            );
        }
    }
}

fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn values_that_do_not_fit_get_async_graphqls_answer() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let q = "query($i: RiskAssessmentInput) { riskAssessment(userId: \"u\", input: $i) { result { riskScore } } }";
    let good = json!({"i": {"age": 35, "horizonYears": 20, "incomeStability": 4, "lossTolerance": 3, "experience": 3}});
    let v = gql(&mut c, q, &good);
    assert!(
        v["data"]["riskAssessment"]["result"]["riskScore"].is_number(),
        "{v}"
    );
    // The same document text is planned now; the other text (a trailing space) is not.
    let unplanned = format!("{q} ");
    for bad in [
        json!({"i": {"age": "old"}}),
        json!({"i": {"age": 35, "incomeStability": 256}}),
        json!({"i": {"holdings": {"symbol": "A"}}}),
        json!({"i": []}),
    ] {
        let planned = gql(&mut c, q, &bad);
        let fresh = gql(&mut c, &unplanned, &bad);
        assert_eq!(planned, fresh, "{bad}");
        assert!(planned.get("errors").is_some(), "{bad}: {planned}");
    }
}

/// Documents that async-graphql runs differently from a merge of their fields stay on it:
/// their answers are the same whether or not the document was seen before.
#[test]
fn what_async_graphql_reads_its_own_way_stays_with_it() {
    let server = Server::start(&["--cores", "1"], &[]);
    let mut c = server.connect();
    let input = |age: u32| {
        format!("{{age: {age}, horizon_years: 10, income_stability: 3, loss_tolerance: 3, experience: 3}}")
    };
    let docs = [
        // One response key, two fields with different arguments (async-graphql runs both and
        // merges their objects); the same field twice (each charged).
        format!(
            "{{ r: riskAssessment(userId: \"u\", inputJson: {}) {{ result {{ riskScore }} }} ... on Query {{ r: riskAssessment(userId: \"u\", inputJson: {}) {{ confidence result {{ profile }} }} }} }}",
            input(30),
            input(70)
        ),
        format!(
            "{{ r: riskAssessment(userId: \"u\", inputJson: {}) {{ confidence }} r: riskAssessment(userId: \"u\", inputJson: {}) {{ operation }} }}",
            input(30),
            input(30)
        ),
        // Selections that a directive empties.
        "{ riskAssessment(userId: \"u\") @skip(if: true) { confidence } }".to_string(),
        format!("{{ riskAssessment(userId: \"u\", inputJson: {}) {{ confidence @skip(if: true) }} }}", input(30)),
    ];
    for doc in &docs {
        let first = gql(&mut c, doc, &Value::Null);
        let again = gql(&mut c, doc, &Value::Null);
        assert_eq!(without_time(first), without_time(again), "{doc}");
    }
    assert_eq!(served(&server, "prepared") + served(&server, "memo"), 0);
    // An empty POST operationName names no operation, before and after the document is known.
    let q = format!(
        "{{ riskAssessment(userId: \"u\", inputJson: {}) {{ confidence }} }}",
        input(30)
    );
    let named = |c: &mut Client| {
        let body = json!({"query": q, "operationName": ""}).to_string();
        c.request(
            "POST",
            "/graphql",
            "Content-Type: application/json\r\n",
            &body,
        )
        .json()
    };
    let before = named(&mut c);
    assert!(gql(&mut c, &q, &Value::Null).get("errors").is_none());
    assert_eq!(named(&mut c), before);
    assert!(before.get("data").is_none(), "{before}");
}

#[test]
fn the_user_check_and_admin_fields_apply_to_every_request_of_a_plan() {
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_JWT_SECRET", SECRET),
            ("ATLAS_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    let mut c = server.connect();
    let q = "{ cashflowForecast(userId: \"alice\", input: {history: [1, 2, 3, 4, 5, 6], horizon: 2}) { result { forecast } } }";
    let alice = common::hs256(SECRET, "alice", false);
    let bob = common::hs256(SECRET, "bob", false);
    for _ in 0..2 {
        let v = gql_as(&mut c, Some(&alice), q, &Value::Null);
        assert!(
            v["data"]["cashflowForecast"]["result"]["forecast"].is_array(),
            "{v}"
        );
    }
    // The same bytes from Bob: his own request, refused for alice's data.
    for _ in 0..2 {
        let v = gql_as(&mut c, Some(&bob), q, &Value::Null);
        assert_eq!(v["data"]["cashflowForecast"], Value::Null, "{v}");
        assert_eq!(v["errors"][0]["extensions"]["code"], "user_mismatch", "{v}");
        assert_eq!(v["errors"][0]["path"], json!(["cashflowForecast"]));
    }
    // The operator token acts for anyone.
    let v = gql_as(&mut c, Some(ADMIN_TOKEN), q, &Value::Null);
    assert!(v.get("errors").is_none(), "{v}");
    assert!(served(&server, "memo") >= 1);
}

/// A model endpoint that answers `risk_assessment` by the input's age: 41, an unknown
/// `profile`; 42, a `portfolio` whose `status` is unknown; any other, a valid result whose
/// `risk_score` counts the batches answered so far.
struct Endpoint {
    addr: SocketAddr,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let batches = Arc::new(AtomicU64::new(0));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let batches = Arc::clone(&batches);
                thread::spawn(move || serve(stream, &batches));
            }
        });
        Endpoint { addr }
    }
}

fn serve(stream: TcpStream, batches: &AtomicU64) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let Some(body) = common::read_request_body(&mut reader) else {
            return;
        };
        let answer = if line.starts_with("GET") {
            "{}".to_string()
        } else {
            let n = batches.fetch_add(1, Ordering::SeqCst) + 1;
            let request: Value = serde_json::from_slice(&body).unwrap();
            let outputs: Vec<Value> = request["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|input| {
                    let mut result = json!({"risk_score": n, "profile": "moderate",
                        "recommended_allocation": {"stocks": 0.5, "bonds": 0.4, "cash": 0.1},
                        "volatility_band": {"lower": 0.06, "upper": 0.1}});
                    match input["age"].as_u64() {
                        Some(41) => result["profile"] = json!("reckless"),
                        Some(42) => {
                            result["portfolio"] = json!({"volatility": 0.2,
                                "band": {"lower": 0.06, "upper": 0.1}, "distance": 0.1,
                                "status": "sideways"})
                        }
                        _ => {}
                    }
                    json!({"result": result, "confidence": 0.9, "volatility": 0.1})
                })
                .collect();
            json!({"outputs": outputs, "endpoint_id": "fake", "model_version": "f"}).to_string()
        };
        let out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if reader.get_mut().write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

fn risk(age: u64) -> String {
    format!(
        "{{ riskAssessment(userId: \"u\", input: {{age: {age}, horizonYears: 10, incomeStability: 3, lossTolerance: 3, experience: 3}}) {{ confidence result {{ riskScore profile portfolio {{ distance status }} }} }} }}"
    )
}

fn with_endpoint(endpoint: &Endpoint) -> Server {
    let spec = format!("fake=http://{}", endpoint.addr);
    Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_EMBEDDED", "false"),
            ("ATLAS_ENDPOINTS", spec.as_str()),
            ("ATLAS_HEALTH_INTERVAL_S", "60"),
            ("ATLAS_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
}

#[test]
fn a_result_that_does_not_fit_its_type_is_null_where_the_spec_puts_it() {
    let endpoint = Endpoint::start();
    let server = with_endpoint(&endpoint);
    let mut c = server.connect();
    for _ in 0..2 {
        // `profile` is non-null, and so is `result`: the operation field is null, and the
        // error names the field that failed.
        let v = gql(&mut c, &risk(41), &Value::Null);
        assert_eq!(v["data"]["riskAssessment"], Value::Null, "{v}");
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{v}");
        assert_eq!(
            errors[0]["path"],
            json!(["riskAssessment", "result", "profile"])
        );
        assert_eq!(errors[0]["extensions"]["code"], "internal");
        assert!(
            errors[0]["message"].as_str().unwrap().contains("reckless"),
            "{v}"
        );
        assert!(errors[0]["locations"][0]["line"].is_number(), "{v}");
        // `portfolio` is nullable: it alone is null.
        let v = gql(&mut c, &risk(42), &Value::Null);
        let answer = &v["data"]["riskAssessment"];
        assert_eq!(answer["confidence"], 0.9, "{v}");
        assert_eq!(answer["result"]["profile"], "MODERATE", "{v}");
        assert_eq!(answer["result"]["portfolio"], Value::Null, "{v}");
        assert_eq!(
            v["errors"][0]["path"],
            json!(["riskAssessment", "result", "portfolio", "status"])
        );
    }
}

#[test]
fn a_kept_projection_is_never_served_for_a_new_entry() {
    let endpoint = Endpoint::start();
    let server = with_endpoint(&endpoint);
    let mut c = server.connect();
    let q = risk(50);
    let score = |v: &Value| v["data"]["riskAssessment"]["result"]["riskScore"].clone();
    let first = gql(&mut c, &q, &Value::Null);
    for _ in 0..3 {
        assert_eq!(score(&gql(&mut c, &q, &Value::Null)), score(&first));
    }
    // A new computation (another batch number) after the entry is invalidated.
    let body = json!({"user_id": "u"}).to_string();
    let r = c.request(
        "POST",
        "/ai/cache/invalidate",
        &format!("Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"),
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let fresh = gql(&mut c, &q, &Value::Null);
    assert_ne!(score(&fresh), score(&first), "{fresh} after {first}");
    for _ in 0..3 {
        assert_eq!(score(&gql(&mut c, &q, &Value::Null)), score(&fresh));
    }
}

//! Unit tests of the parent module.

use super::*;
use crate::http::Status;
use atlas_shard::{CacheOptions, EntryMeta, Lookup, ManualClock};
use bytes::Bytes;
use std::time::Duration;

fn body(v: Value) -> Result<Invalidation, ApiError> {
    serde_json::from_value::<Body>(v)
        .map_err(|e| invalid(e.to_string()))
        .and_then(from_body)
}

#[test]
fn bodies_become_invalidations() {
    let inv = body(json!({
        "dependencies": ["user:42:transactions"], "symbols": ["AAPL"], "user_id": "u-1",
        "operation": "risk_assessment",
        "keys": [{"operation": "cashflow_forecast", "user_id": "u-2",
                  "input": {"horizon": 2, "history": [1e2, 110.0]}}]
    }))
    .unwrap();
    assert_eq!(inv.tags, ["user:42:transactions"]);
    assert_eq!(inv.symbols, ["AAPL"]);
    assert_eq!(inv.users, ["u-1"]);
    assert_eq!(inv.operations, [Operation::RiskAssessment]);
    assert_eq!(
        inv.keys,
        [KeyRef {
            operation: Operation::CashflowForecast,
            user_id: "u-2".into(),
            // Canonicalised exactly like an AI request's input.
            canonical_input: r#"{"history":[100,110],"horizon":2}"#.into(),
        }]
    );
    let kinds: Vec<&str> = inv.kinds().map(Kind::as_str).collect();
    assert_eq!(kinds, ["key", "tag", "symbol", "user", "operation"]);
    assert!(body(json!({"all": true})).unwrap().all);
}

#[test]
fn bad_bodies_are_refused_with_a_clear_code() {
    let cases = [
        (json!({}), "empty_invalidation", ""),
        (
            json!({"all": false, "dependencies": []}),
            "empty_invalidation",
            "",
        ),
        (
            json!({"all": true, "user_id": "u"}),
            "invalid_request",
            "all",
        ),
        (json!({"user_id": ""}), "invalid_request", "user_id"),
        (
            json!({"operation": "astrology"}),
            "invalid_request",
            "operation",
        ),
        (
            json!({"dependencies": ["ok", ""]}),
            "invalid_request",
            "dependencies[1]",
        ),
        (
            json!({"keys": [{"operation": "risk_assessment", "user_id": "u", "input": []}]}),
            "invalid_request",
            "keys[0].input",
        ),
        (
            json!({"keys": [{"operation": "nope", "user_id": "u", "input": {}}]}),
            "invalid_request",
            "keys[0].operation",
        ),
        (json!({"tags": ["x"]}), "invalid_request", "tags"),
        (json!({"symbols": "AAPL"}), "invalid_request", ""),
    ];
    for (v, code, mention) in cases {
        let e = body(v.clone()).unwrap_err();
        assert_eq!((e.status, e.code), (Status::BadRequest, code), "{v}");
        assert!(e.message.contains(mention), "{v}: {}", e.message);
    }
}

#[test]
fn invalidations_round_trip_through_json() {
    let inv = Invalidation {
        all: false,
        keys: vec![KeyRef {
            operation: Operation::PortfolioAnalysis,
            user_id: "u".into(),
            canonical_input: "{}".into(),
        }],
        tags: vec!["context:u".into()],
        symbols: vec!["AAPL".into()],
        users: vec!["u".into()],
        operations: vec![Operation::BudgetOptimization],
    };
    let text = serde_json::to_string(&inv).unwrap();
    assert!(
        text.contains(r#""operations":["budget_optimization"]"#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Invalidation>(&text).unwrap(), inv);
    assert_eq!(
        serde_json::to_string(&Invalidation::of_tags(vec!["t".into()])).unwrap(),
        r#"{"tags":["t"]}"#
    );
    assert!(serde_json::from_str::<Invalidation>(r#"{"operations":["nope"]}"#).is_err());
    fn is_send<T: Send>() {}
    is_send::<Invalidation>();
}

#[test]
fn a_result_computed_across_an_invalidation_that_names_it_is_not_stored() {
    let key = CacheKey::new(Operation::RiskAssessment, Some("u1"), b"{}").unwrap();
    let (tags, symbols) = (vec!["t".to_string()], vec!["AAPL".to_string()]);
    let mut recent = Recent::default();
    let mark = recent.mark();
    assert!(!recent.selects_since(mark, &key, &tags, &symbols));
    recent.record(&Invalidation::of_tags(vec!["other".into()]));
    assert!(!recent.selects_since(mark, &key, &tags, &symbols));
    recent.record(&Invalidation {
        users: vec!["u1".into()],
        ..Invalidation::default()
    });
    assert!(recent.selects_since(mark, &key, &tags, &symbols));
    let later = recent.mark();
    assert!(!recent.selects_since(later, &key, &tags, &symbols));
    for selector in [
        Invalidation::of_tags(tags.clone()),
        Invalidation {
            symbols: symbols.clone(),
            ..Invalidation::default()
        },
        Invalidation {
            operations: vec![Operation::RiskAssessment],
            ..Invalidation::default()
        },
        Invalidation {
            keys: vec![KeyRef {
                operation: Operation::RiskAssessment,
                user_id: "u1".into(),
                canonical_input: "{}".into(),
            }],
            ..Invalidation::default()
        },
        Invalidation {
            all: true,
            ..Invalidation::default()
        },
    ] {
        assert!(selector.selects(&key, &tags, &symbols), "{selector:?}");
    }
    // The last RECENT are remembered; past that, the answer is "maybe": do not store.
    for _ in 0..RECENT {
        recent.record(&Invalidation::of_tags(vec!["other".into()]));
    }
    assert!(!recent.selects_since(later, &key, &tags, &symbols));
    recent.record(&Invalidation::of_tags(vec!["other".into()]));
    assert!(recent.selects_since(later, &key, &tags, &symbols));
    assert!(!recent.selects_since(recent.mark(), &key, &tags, &symbols));
}

#[test]
fn apply_removes_exactly_the_selected_entries_once() {
    let mut cache =
        atlas_shard::Cache::new(CacheOptions::with_max_bytes(1 << 20), ManualClock::new());
    let meta = EntryMeta {
        ttl: Duration::from_secs(60),
        ..EntryMeta::default()
    };
    let key = |op, user: &str, input: &str| CacheKey::new(op, Some(user), input.as_bytes());
    let a = key(Operation::RiskAssessment, "u1", "{\"a\":1}").unwrap();
    let b = key(Operation::RiskAssessment, "u2", "{}").unwrap();
    let c = key(Operation::CashflowForecast, "u2", "{}").unwrap();
    let d = key(Operation::PortfolioAnalysis, "u3", "{}").unwrap();
    let insert = |cache: &mut atlas_shard::Cache<ManualClock>, k: &CacheKey, m: &EntryMeta| {
        cache.insert(k, Bytes::from_static(b"x"), m).unwrap();
    };
    insert(&mut cache, &a, &meta.clone().with_tags(["t"]));
    insert(&mut cache, &b, &meta.clone().with_tags(["t"]));
    insert(&mut cache, &c, &meta);
    insert(&mut cache, &d, &meta.clone().with_symbols(["AAPL"]));
    let inv = Invalidation {
        keys: vec![KeyRef {
            operation: Operation::RiskAssessment,
            user_id: "u1".into(),
            canonical_input: "{\"a\":1}".into(),
        }],
        tags: vec!["t".into()],
        users: vec!["u2".into()],
        ..Invalidation::default()
    };
    let removed = apply(&mut cache, &inv);
    // a by key (not again by tag), b by tag (not again by user), c by user.
    assert_eq!(removed.0, [0, 1, 1, 0, 1, 0]);
    assert_eq!(removed.total(), 3);
    assert!(matches!(cache.get(&d), Lookup::Fresh(_)));
    let removed = apply(
        &mut cache,
        &Invalidation {
            symbols: vec!["AAPL".into()],
            ..Invalidation::default()
        },
    );
    assert_eq!(removed.0[Kind::Symbol.index()], 1);
    insert(&mut cache, &a, &meta);
    insert(&mut cache, &b, &meta);
    let ops = Invalidation {
        operations: vec![Operation::RiskAssessment],
        ..Invalidation::default()
    };
    assert_eq!(apply(&mut cache, &ops).0[Kind::Operation.index()], 2);
    insert(&mut cache, &c, &meta);
    let all = Invalidation {
        all: true,
        ..Invalidation::default()
    };
    assert_eq!(apply(&mut cache, &all).0, [1, 0, 0, 0, 0, 0]);
    assert!(cache.is_empty());
}

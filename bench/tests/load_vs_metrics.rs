//! `atlas-bench load` against the real `atlas serve`: what the generator counted (requests,
//! statuses, cache hits, per operation) must equal what the server's `GET /metrics` counted,
//! and the hop share must match the shard count. Builds nothing itself: `atlas` is taken
//! from the target directory `atlas-bench` was built into.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{bench_bin, get, Running};
use serde_json::Value;

/// One sample of the exposition: metric name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format's sample lines (label values here hold no commas).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect(l);
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect(p);
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect(l),
            }
        })
        .collect()
}

/// Sums `name` over the samples whose labels match every `(key, value)` of `filter`,
/// grouped by the value of label `by` (or all under "" when `by` is empty).
fn sum_by(all: &[Sample], name: &str, filter: &[(&str, &str)], by: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in all.iter().filter(|s| s.name == name) {
        if filter
            .iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        {
            let key = s.labels.get(by).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0) += s.value as u64;
        }
    }
    out.retain(|_, n| *n > 0);
    out
}

#[test]
fn generator_counts_equal_the_servers_metrics() {
    let shards = common::allowed_cpus().len().min(2);
    let atlas = Running::atlas(shards);
    assert_eq!(atlas.shards, shards);
    let dir = std::env::temp_dir().join(format!("atlas-bench-lvm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report_path = dir.join("load.json");
    // 8 users × 25 requests over 3 inputs × 4 operations × 2 user ids: mostly hits, some
    // misses, every operation used.
    let out = Command::new(bench_bin())
        .args([
            "load",
            "--url",
            &atlas.url(),
            "--users",
            "8",
            "--requests",
            "25",
        ])
        .args([
            "--keyspace",
            "3",
            "--user-ids",
            "2",
            "--threads",
            "2",
            "--duration",
            "30",
        ])
        .arg("--json")
        .arg(&report_path)
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "atlas-bench load failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let overall = &report["overall"];
    assert_eq!(overall["attempted"], 200, "{stdout}");
    assert_eq!(overall["errors_total"], 0, "{stdout}");

    let (status, body) = get(atlas.addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let m = samples(&body);

    // Every request, by status.
    let by_status = sum_by(&m, "ai_optimized_requests_total", &[], "status");
    let reported: BTreeMap<String, u64> = overall["statuses"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(by_status, reported, "statuses: server vs generator");
    assert_eq!(by_status.values().sum::<u64>(), 200);

    // Every request and every hit, by operation.
    let by_op = sum_by(&m, "ai_optimized_requests_total", &[], "operation");
    let hits_by_op = sum_by(
        &m,
        "ai_cache_operations_total",
        &[("result", "hit")],
        "operation",
    );
    assert!(
        !hits_by_op.contains_key("all"),
        "lookups are counted per operation"
    );
    let ops = report["operations"].as_object().unwrap();
    assert_eq!(ops.len(), 4, "every operation was used");
    for (op, figures) in ops {
        assert_eq!(
            by_op.get(op).copied(),
            figures["responses"].as_u64(),
            "{op} requests"
        );
        assert_eq!(
            hits_by_op.get(op).copied().unwrap_or(0),
            figures["cache"]["hit"].as_u64().unwrap(),
            "{op} hits"
        );
    }
    let hits = overall["cache"]["hit"].as_u64().unwrap();
    assert_eq!(hits_by_op.values().sum::<u64>(), hits);
    // Every lookup has one outcome, and the run mixed hits with misses (concurrent first
    // requests for a key all miss), so the equalities above compared something.
    let lookups = sum_by(&m, "ai_cache_operations_total", &[], "result");
    let looked_up: u64 = ["hit", "miss", "stale", "bypass"]
        .iter()
        .map(|r| lookups.get(*r).copied().unwrap_or(0))
        .sum();
    assert_eq!(looked_up, 200, "{lookups:?}");
    assert!(
        hits > 0 && overall["cache"]["miss"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert_eq!(
        lookups.get("miss").copied(),
        overall["cache"]["miss"].as_u64(),
        "misses: server vs generator"
    );

    // Every AI response names both shards; with one shard nothing hops, with two some do.
    assert_eq!(overall["routed"], 200);
    let hops = overall["hops"].as_u64().unwrap();
    if shards == 1 {
        assert_eq!(hops, 0);
    } else {
        assert!(
            hops > 0 && hops < 200,
            "hops {hops} of 200 on {shards} shards"
        );
    }
    assert!(stdout.contains("hop share: "), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

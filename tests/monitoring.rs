//! The monitoring files against the real binary: `promtool check rules` accepts the alert
//! rules, and every metric the rules and the Grafana dashboard query is one Atlas exports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::Server;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/monitoring/prometheus/alerts/ai-engine-alerts.yml"
);
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/monitoring/grafana/atlas.json");

/// Names starting with `ai_` or `atlas_` in a query text, histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = text[i..].starts_with("ai_") || text[i..].starts_with("atlas_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |e| i + e);
            let mut name = &text[i..end];
            for suffix in ["_bucket", "_sum", "_count"] {
                name = name.strip_suffix(suffix).unwrap_or(name);
            }
            names.insert(name.to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

fn exported(server: &Server) -> BTreeSet<String> {
    let text = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .args(["check", "rules", RULES])
        .output()
        .expect("promtool (Debian package `prometheus`; tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rules_and_dashboard_only_query_exported_metrics() {
    let server = Server::start(&["--cores", "1"], &[]);
    let exported = exported(&server);
    let rules = std::fs::read_to_string(RULES).unwrap();
    let dashboard = std::fs::read_to_string(DASHBOARD).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let queries: Vec<String> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.len() >= 10, "the dashboard has its panels");
    for (what, text) in [("rules", rules), ("dashboard", queries.join("\n"))] {
        let used = metric_names(&text);
        assert!(!used.is_empty());
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{what} query metrics Atlas does not export: {missing:?}"
        );
    }
}

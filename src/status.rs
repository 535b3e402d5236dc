//! `atlas status [--url URL]`: a terminal summary of a running Atlas's `/health/detailed`
//! (the brief's `deploy-optimized.sh --status`), exiting non-zero when it is unhealthy.
//!
//! A plain blocking HTTP/1.1 GET on the calling thread (this runs in the CLI, never on a
//! shard). Exit status: 0 healthy, 1 unhealthy (status not `ok`, a critical or emergency
//! alert firing, or a health score under 50), 2 unreachable or not Atlas.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Fetches and prints the summary; returns the exit status.
pub fn run(url: &str) -> ExitCode {
    match fetch(url) {
        Ok(doc) => {
            let (text, healthy) = summarise(&doc);
            print!("{text}");
            if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("atlas status: {url}: {e}");
            ExitCode::from(2)
        }
    }
}

fn fetch(url: &str) -> Result<Value, String> {
    let authority = url
        .strip_prefix("http://")
        .ok_or("the URL must start with http://")?
        .trim_end_matches('/');
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or("cannot resolve")?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    write!(
        stream,
        "GET /health/detailed HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("cannot read: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("not an HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "answered `{}`",
            head.lines().next().unwrap_or_default()
        ));
    }
    serde_json::from_slice(&response[split + 4..]).map_err(|e| format!("not Atlas: {e}"))
}

/// The summary text and whether the instance is healthy.
pub fn summarise(doc: &Value) -> (String, bool) {
    let status = doc["status"].as_str().unwrap_or("unknown");
    let score = doc["monitor"]["health_score"].as_f64();
    let alerts: Vec<(String, String)> = doc["monitor"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["alert"].as_str().unwrap_or("?").to_string(),
                        x["severity"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let severe = alerts
        .iter()
        .any(|(_, s)| s == "critical" || s == "emergency");
    let healthy = status == "ok" && !severe && score.is_none_or(|s| s >= 50.0);
    let mut out = String::new();
    out.push_str(&format!(
        "Atlas {}  status: {status}  health score: {}\n",
        doc["version"].as_str().unwrap_or("?"),
        score.map_or("n/a".to_string(), |s| format!("{s:.1}"))
    ));
    if alerts.is_empty() {
        out.push_str("alerts: none\n");
    } else {
        for (a, s) in &alerts {
            out.push_str(&format!("alert: {a} ({s})\n"));
        }
    }
    out.push_str(
        "shard  cpu  conns  requests  in-flight  computations  cache-entries  hits  misses\n",
    );
    let mut endpoints: Vec<String> = Vec::new();
    for s in doc["shards"].as_array().into_iter().flatten() {
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "{:>5}  {:>3}  {:>5}  {:>8}  {:>9}  {:>12}  {:>13}  {:>4}  {:>6}\n",
            n("shard"),
            s["cpu"].as_u64().map_or("-".to_string(), |c| c.to_string()),
            n("connections_open"),
            n("requests_total"),
            n("in_flight"),
            n("model_computations"),
            s["cache"]["entries"].as_u64().unwrap_or(0),
            s["cache"]["hits"].as_u64().unwrap_or(0),
            s["cache"]["misses"].as_u64().unwrap_or(0),
        ));
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let problem = e["problem"]
                .as_str()
                .map(|p| format!(": {p}"))
                .unwrap_or_default();
            endpoints.push(format!(
                "endpoint {} on shard {}: {} (calls {}, errors {}, ewma {:.1} ms){problem}",
                e["name"].as_str().unwrap_or("?"),
                n("shard"),
                e["state"].as_str().unwrap_or("?"),
                e["calls"].as_u64().unwrap_or(0),
                e["errors"].as_u64().unwrap_or(0),
                e["ewma_ms"].as_f64().unwrap_or(0.0),
            ));
        }
    }
    for e in endpoints {
        out.push_str(&e);
        out.push('\n');
    }
    out.push_str(if healthy { "healthy\n" } else { "UNHEALTHY\n" });
    (out, healthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn severe_alerts_or_a_low_score_are_unhealthy() {
        let ok = json!({"status": "ok", "version": "0.1.0", "monitor": {"health_score": 97.0, "alerts": []}, "shards": []});
        assert!(summarise(&ok).1);
        let warn = json!({"status": "ok", "monitor": {"health_score": 90.0, "alerts": [{"alert": "cache_hit_rate", "severity": "warning"}]}});
        assert!(summarise(&warn).1);
        let crit = json!({"status": "ok", "monitor": {"health_score": 90.0, "alerts": [{"alert": "error_rate", "severity": "critical"}]}});
        assert!(!summarise(&crit).1);
        let low = json!({"status": "ok", "monitor": {"health_score": 40.0, "alerts": []}});
        assert!(!summarise(&low).1);
        let degraded = json!({"status": "degraded"});
        assert!(!summarise(&degraded).1);
    }

    #[test]
    fn an_endpoint_out_of_rotation_shows_why() {
        let doc = json!({"status": "ok", "monitor": {"health_score": 97.0, "alerts": []},
            "shards": [{"shard": 0, "endpoints": [
                {"name": "risk", "state": "open", "calls": 0, "errors": 0, "ewma_ms": 50.0,
                 "problem": "model `risk` not ready: HTTP 400"},
                {"name": "embedded", "state": "closed", "calls": 3, "errors": 0, "ewma_ms": 1.0,
                 "problem": null}]}]});
        let (text, _) = summarise(&doc);
        assert!(
            text.contains("endpoint risk on shard 0: open (calls 0, errors 0, ewma 50.0 ms): model `risk` not ready: HTTP 400\n"),
            "{text}"
        );
        assert!(text
            .contains("endpoint embedded on shard 0: closed (calls 3, errors 0, ewma 1.0 ms)\n"));
    }
}

//! `ATLAS_ENDPOINTS`: the remote model endpoints, as
//! `name=http://host:port[;weight=W][;timeout_ms=T][;max_batch=B][;concurrency=N][;ops=a|b],
//! name2=...`.
//!
//! Parsed and validated with the rest of the configuration; addresses are resolved later, on
//! the main thread before the executors start (never DNS on a shard).

use std::time::Duration;

use atlas_shard::Operation;

/// One configured remote endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    /// Name, sent as `X-Atlas-Endpoint` and shown in `/health/detailed`.
    pub name: String,
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Routing weight (> 0): traffic share with equal latencies.
    pub weight: f64,
    /// Deadline of one batch call.
    pub timeout: Duration,
    /// Largest batch sent to it.
    pub max_batch: usize,
    /// Operations it serves (`None`: all).
    pub ops: Option<Vec<Operation>>,
    /// Batch calls it runs at once (its accelerators); the gateway keeps at most this many
    /// of its shard's batches waiting on it before it holds new requests back to batch them.
    pub concurrency: usize,
}

/// Default per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses the `ATLAS_ENDPOINTS` value (empty: no remote endpoints).
pub fn parse(value: &str) -> Result<Vec<EndpointSpec>, String> {
    let mut out: Vec<EndpointSpec> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.split(';').map(str::trim);
        let first = parts.next().unwrap_or("");
        let (name, url) = first
            .split_once('=')
            .ok_or_else(|| format!("`{first}`: expected name=http://host:port"))?;
        let name = name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "`{name}`: endpoint names are 1-64 of [A-Za-z0-9._-]"
            ));
        }
        if name == "embedded" || out.iter().any(|e| e.name == name) {
            return Err(format!("`{name}`: duplicate or reserved endpoint name"));
        }
        let super::url::HttpUrl { host, port, .. } =
            super::url::parse(url.trim(), false).map_err(|e| format!("{name}: {e}"))?;
        let mut spec = EndpointSpec {
            name: name.to_string(),
            host,
            port,
            weight: 1.0,
            timeout: DEFAULT_TIMEOUT,
            max_batch: 32,
            ops: None,
            concurrency: 1,
        };
        for option in parts {
            let (k, v) = option
                .split_once('=')
                .ok_or_else(|| format!("{name}: `{option}` is not key=value"))?;
            let v = v.trim();
            match k.trim() {
                "weight" => {
                    spec.weight = v
                        .parse::<f64>()
                        .ok()
                        .filter(|w| w.is_finite() && *w > 0.0 && *w <= 1000.0)
                        .ok_or_else(|| format!("{name}: weight must be in (0, 1000]"))?;
                }
                "timeout_ms" => {
                    let ms = v
                        .parse::<u64>()
                        .ok()
                        .filter(|ms| (1..=600_000).contains(ms))
                        .ok_or_else(|| format!("{name}: timeout_ms must be 1 to 600000"))?;
                    spec.timeout = Duration::from_millis(ms);
                }
                "max_batch" => {
                    spec.max_batch = v
                        .parse::<usize>()
                        .ok()
                        .filter(|b| (1..=1024).contains(b))
                        .ok_or_else(|| format!("{name}: max_batch must be 1 to 1024"))?;
                }
                "concurrency" => {
                    spec.concurrency =
                        v.parse::<usize>()
                            .ok()
                            .filter(|c| (1..=1024).contains(c))
                            .ok_or_else(|| format!("{name}: concurrency must be 1 to 1024"))?;
                }
                "ops" => {
                    let ops: Result<Vec<Operation>, String> = v
                        .split('|')
                        .map(|o| {
                            Operation::from_name(o.trim())
                                .ok_or_else(|| format!("{name}: unknown operation `{o}`"))
                        })
                        .collect();
                    spec.ops = Some(ops?);
                }
                other => return Err(format!("{name}: unknown option `{other}`")),
            }
        }
        out.push(spec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints_with_options() {
        let e = parse("supervisor=http://10.0.0.5:9000;weight=2;timeout_ms=800;concurrency=4;ops=portfolio_analysis|risk_assessment, monolithic=http://[::1]:9001/").unwrap();
        assert_eq!((e[0].concurrency, e[1].concurrency), (4, 1));
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].name.as_str(), e[0].host.as_str(), e[0].port),
            ("supervisor", "10.0.0.5", 9000)
        );
        assert_eq!(e[0].weight, 2.0);
        assert_eq!(e[0].timeout, Duration::from_millis(800));
        assert_eq!(e[0].ops.as_ref().unwrap().len(), 2);
        assert_eq!(
            (e[1].host.as_str(), e[1].port, e[1].weight),
            ("::1", 9001, 1.0)
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "x",
            "a=https://h:1",
            "a=http://h",
            "a=http://h:0",
            "a=http://h:1/path",
            "a=http://h:1;weight=0",
            "a=http://h:1;ops=astrology",
            "a=http://h:1;colour=red",
            "a=http://h:1,a=http://h:2",
            "embedded=http://h:1",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}

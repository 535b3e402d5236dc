//! `ATLAS_ENDPOINTS`: the remote model endpoints, as
//! `name=http://host:port[;weight=W][;timeout_ms=T][;max_batch=B][;concurrency=N][;ops=a|b],
//! name2=...`. An endpoint speaks Atlas's batch protocol (`http://host:port`) or the Open
//! Inference Protocol, KServe V2 (`v2+http://host:port/model`, optionally `;version=V`).
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
    /// The protocol it speaks.
    pub protocol: Protocol,
}

/// The protocol an endpoint speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// Atlas's batch protocol (`POST /v1/batch`), as `atlas model-endpoint` serves it.
    Batch,
    /// The Open Inference Protocol (KServe V2 REST), one model of an inference server
    /// (Triton, KServe, MLServer, Seldon, OpenVINO Model Server).
    V2 {
        /// The model's name on the server.
        model: String,
        /// The model's version (`None`: the server's choice).
        version: Option<String>,
    },
}

impl EndpointSpec {
    /// `host:port` as the `Host` header and messages give it (IPv6 literals in brackets).
    pub fn authority(&self) -> String {
        super::url::HttpUrl {
            host: self.host.clone(),
            port: self.port,
            path: String::new(),
        }
        .authority()
    }

    /// One line for `atlas check-config`: the protocol, model, address and options.
    pub fn describe(&self) -> String {
        let protocol = match &self.protocol {
            Protocol::Batch => "atlas batch protocol (POST /v1/batch)".to_string(),
            Protocol::V2 { model, version } => format!(
                "open inference protocol v2, model {model}{}",
                version
                    .as_ref()
                    .map(|v| format!(" version {v}"))
                    .unwrap_or_default()
            ),
        };
        let ops = match &self.ops {
            None => "all".to_string(),
            Some(ops) => ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join("|"),
        };
        format!(
            "{}: {protocol} at {}, weight {}, timeout {} ms, max_batch {}, concurrency {}, ops {ops}",
            self.name,
            self.authority(),
            self.weight,
            self.timeout.as_millis(),
            self.max_batch,
            self.concurrency,
        )
    }
}

/// Whether `s` is a model name or version a V2 server accepts in a path segment: 1 to 128 of
/// `[A-Za-z0-9._-]`, not `.` or `..`.
fn is_v2_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
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
        let url = url.trim();
        let (url, v2) = match url.strip_prefix("v2+") {
            Some(rest) => (rest, true),
            None => (url, false),
        };
        let super::url::HttpUrl { host, port, path } =
            super::url::parse(url, v2).map_err(|e| format!("{name}: {e}"))?;
        let protocol = if v2 {
            let model = path.trim_start_matches('/');
            if !is_v2_segment(model) {
                return Err(format!(
                    "{name}: a v2 endpoint is v2+http://host:port/MODEL, the model's name being \
                     1-128 of [A-Za-z0-9._-] (got path `{path}`)"
                ));
            }
            Protocol::V2 {
                model: model.to_string(),
                version: None,
            }
        } else {
            Protocol::Batch
        };
        let mut spec = EndpointSpec {
            name: name.to_string(),
            host,
            port,
            weight: 1.0,
            timeout: DEFAULT_TIMEOUT,
            max_batch: 32,
            ops: None,
            concurrency: 1,
            protocol,
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
                "version" => match &mut spec.protocol {
                    Protocol::V2 { version, .. } if is_v2_segment(v) => *version = Some(v.into()),
                    Protocol::V2 { .. } => {
                        return Err(format!("{name}: version must be 1-128 of [A-Za-z0-9._-]"))
                    }
                    Protocol::Batch => {
                        return Err(format!(
                        "{name}: version applies to v2 endpoints only (v2+http://host:port/MODEL)"
                    ))
                    }
                },
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
        assert_eq!(e[0].protocol, Protocol::Batch);
    }

    #[test]
    fn parses_v2_endpoints() {
        let e = parse(
            "risk=v2+http://10.0.0.7:8080/risk;ops=risk_assessment, r3=v2+http://h:1/risk-model.v2;version=3;max_batch=8",
        )
        .unwrap();
        assert_eq!(
            e[0].protocol,
            Protocol::V2 {
                model: "risk".into(),
                version: None
            }
        );
        assert_eq!((e[0].host.as_str(), e[0].port), ("10.0.0.7", 8080));
        assert_eq!(
            e[1].protocol,
            Protocol::V2 {
                model: "risk-model.v2".into(),
                version: Some("3".into())
            }
        );
        assert_eq!(e[1].max_batch, 8);
        let line = e[1].describe();
        assert!(
            line.contains("open inference protocol v2, model risk-model.v2 version 3"),
            "{line}"
        );
        assert!(line.contains("at h:1"), "{line}");
    }

    #[test]
    fn rejects_bad_v2_specs() {
        for (bad, says) in [
            ("a=v2+http://h:1", "v2+http://host:port/MODEL"),
            ("a=v2+http://h:1/", "v2+http://host:port/MODEL"),
            ("a=v2+http://h:1/m/versions/2", "v2+http://host:port/MODEL"),
            ("a=v2+http://h:1/..", "v2+http://host:port/MODEL"),
            ("a=v2+https://h:1/m", "http://"),
            ("a=v3+http://h:1/m", "http://"),
            ("a=http://h:1;version=2", "v2 endpoints only"),
            ("a=v2+http://h:1/m;version=", "version must be"),
            ("a=v2+http://h:1/m;version=a/b", "version must be"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(
                e.starts_with("a:") || e.contains("`a"),
                "{bad}: {e} names the endpoint"
            );
        }
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

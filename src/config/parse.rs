//! Parsing and validating the gathered values into a [`Config`]: one parser per setting, every
//! bad value reported by its variable name, all at once.

use super::*;

/// Parses and validates every raw value, reporting all problems at once.
pub fn build(raw: &Raw) -> Result<Config, Vec<ConfigError>> {
    let mut p = Parser {
        raw,
        errors: Vec::new(),
    };
    let mut c = Config::default();
    p.set(&mut c.listen, "ATLAS_LISTEN", |v| {
        v.parse::<SocketAddr>()
            .map_err(|_| "expected IP:PORT, for example 127.0.0.1:8083 or [::1]:0".to_string())
    });
    p.set(&mut c.cores, "ATLAS_CORES", |v| {
        if v.is_empty() {
            Ok(None)
        } else {
            int_in(v, 1, 1024).map(|n| Some(n as usize))
        }
    });
    p.set(&mut c.pin_shards, "ATLAS_PIN_SHARDS", boolean);
    p.set(&mut c.log, "ATLAS_LOG", |v| Ok(v.to_string()));
    p.set(&mut c.max_connections, "ATLAS_MAX_CONNECTIONS", |v| {
        usize_in(v, 1, 10_000_000)
    });
    p.set(&mut c.max_body_bytes, "ATLAS_MAX_BODY_BYTES", |v| {
        int_in(v, 1, 1 << 30)
    });
    p.set(&mut c.header_timeout, "ATLAS_HEADER_TIMEOUT_MS", |v| {
        millis(v, 1, 3_600_000)
    });
    p.set(&mut c.keepalive_timeout, "ATLAS_KEEPALIVE_TIMEOUT_S", |v| {
        secs(v, 1, 86_400)
    });
    p.set(&mut c.shutdown_grace, "ATLAS_SHUTDOWN_GRACE_S", |v| {
        secs(v, 0, 3600)
    });
    p.set(&mut c.listen_backlog, "ATLAS_LISTEN_BACKLOG", |v| {
        if v.is_empty() {
            Ok(None)
        } else {
            int_in(v, 1, i32::MAX as u64).map(|n| Some(n as u32))
        }
    });
    p.set(&mut c.io_memory_bytes, "ATLAS_IO_MEMORY_BYTES", |v| {
        usize_in(v, 64 * 1024, 1 << 30)
    });
    p.set(&mut c.mesh_capacity, "ATLAS_MESH_CAPACITY", |v| {
        usize_in(v, 1, 1 << 20)
    });
    p.set(&mut c.cache_max_bytes, "ATLAS_CACHE_MAX_BYTES", |v| {
        usize_in(v, 1 << 20, 1 << 40)
    });
    p.set(&mut c.endpoints, "ATLAS_ENDPOINTS", endpoints::parse);
    p.set(&mut c.embedded, "ATLAS_EMBEDDED", boolean);
    p.set(&mut c.health_interval, "ATLAS_HEALTH_INTERVAL_S", |v| {
        secs(v, 1, 3600)
    });
    p.set(&mut c.monitor_interval, "ATLAS_MONITOR_INTERVAL_S", |v| {
        secs(v, 1, 3600)
    });
    p.set(&mut c.alert_for_windows, "ATLAS_ALERT_FOR_WINDOWS", |v| {
        int_in(v, 1, 100).map(|n| n as u32)
    });
    p.set(&mut c.monitor_history, "ATLAS_MONITOR_HISTORY", |v| {
        usize_in(v, 3, 10_000)
    });
    p.set(
        &mut c.adaptive_thresholds,
        "ATLAS_ADAPTIVE_THRESHOLDS",
        boolean,
    );
    p.set(&mut c.auth, "ATLAS_AUTH", |v| match v {
        "" => Ok(AuthMode::Auto),
        "required" => Ok(AuthMode::Required),
        "off" => Ok(AuthMode::Off),
        _ => Err("expected required or off".to_string()),
    });
    p.set(&mut c.jwt_secret, "ATLAS_JWT_SECRET", |v| match v.len() {
        0 => Ok(None),
        1..=31 => Err("at least 32 bytes (HS256 needs a 256-bit key)".to_string()),
        _ => Ok(Some(v.to_string())),
    });
    p.set(&mut c.jwt_public_key, "ATLAS_JWT_PUBLIC_KEY", |v| {
        if v.is_empty() {
            Ok(None)
        } else if v.starts_with("-----BEGIN") || v.starts_with('/') {
            Ok(Some(v.to_string()))
        } else {
            Err("expected PEM text or an absolute path to a PEM file".to_string())
        }
    });
    p.set(&mut c.jwks_file, "ATLAS_JWKS_FILE", |v| {
        if v.is_empty() {
            Ok(None)
        } else if v.starts_with('/') {
            Ok(Some(PathBuf::from(v)))
        } else {
            Err("expected an absolute path".to_string())
        }
    });
    p.set(&mut c.jwt_issuer, "ATLAS_JWT_ISSUER", optional);
    p.set(&mut c.jwt_audience, "ATLAS_JWT_AUDIENCE", optional);
    p.set(&mut c.jwt_leeway, "ATLAS_JWT_LEEWAY_S", |v| {
        secs(v, 0, 3600)
    });
    p.set(&mut c.admin_token, "ATLAS_ADMIN_TOKEN", |v| match v.len() {
        0 => Ok(None),
        1..=31 => Err("at least 32 characters".to_string()),
        _ if v.bytes().any(|b| !b.is_ascii_graphic()) => {
            Err("printable characters without spaces".to_string())
        }
        _ => Ok(Some(v.to_string())),
    });
    p.set(&mut c.jwt_cache_entries, "ATLAS_JWT_CACHE_ENTRIES", |v| {
        usize_in(v, 0, 10_000_000)
    });
    p.set(
        &mut c.alert_auth_failures,
        "ATLAS_ALERT_AUTH_FAILURES",
        |v| int_in(v, 1, 1_000_000),
    );
    p.set(&mut c.redis_urls, "ATLAS_REDIS_URL", redis_urls);
    p.set(&mut c.redis_cluster, "ATLAS_REDIS_CLUSTER", boolean);
    p.set(&mut c.redis_timeout, "ATLAS_REDIS_TIMEOUT_MS", |v| {
        millis(v, 1, 10_000)
    });
    p.set(&mut c.redis_prefix, "ATLAS_REDIS_PREFIX", |v| {
        if v.len() > 64 || !v.ends_with(':') || v.bytes().any(|b| !b.is_ascii_graphic()) {
            Err("expected up to 64 printable characters without spaces, ending in `:`".to_string())
        } else {
            Ok(v.to_string())
        }
    });
    p.set(&mut c.state_dir, "ATLAS_STATE_DIR", |v| {
        if v.is_empty() {
            Ok(None)
        } else if !v.starts_with('/') {
            Err("expected an absolute directory path".to_string())
        } else {
            Ok(Some(PathBuf::from(v)))
        }
    });
    p.set(&mut c.alert_webhook, "ATLAS_ALERT_WEBHOOK", |v| {
        if v.is_empty() {
            Ok(None)
        } else {
            url::parse(v, true).map(Some)
        }
    });
    p.set(
        &mut c.max_concurrent_requests,
        "MAX_CONCURRENT_REQUESTS",
        |v| usize_in(v, 1, 10_000_000),
    );
    p.set(&mut c.request_timeout, "REQUEST_TIMEOUT_MS", |v| {
        millis(v, 1, 3_600_000)
    });
    p.set(&mut c.batch_size, "BATCH_SIZE", |v| usize_in(v, 1, 1024));
    p.set(&mut c.batch_timeout, "BATCH_TIMEOUT_MS", |v| {
        millis(v, 0, 60_000)
    });
    p.set(&mut c.context_cache_ttl, "CONTEXT_CACHE_TTL", |v| {
        secs(v, 1, 31_536_000)
    });
    p.set(&mut c.context_max_bytes, "ATLAS_CONTEXT_MAX_BYTES", |v| {
        usize_in(v, 2, 1 << 24)
    });
    p.set(
        &mut c.context_store_bytes,
        "ATLAS_CONTEXT_STORE_BYTES",
        |v| usize_in(v, 1 << 16, 1 << 40),
    );
    p.set(
        &mut c.request_memo_bytes,
        "ATLAS_REQUEST_MEMO_BYTES",
        memo_budget,
    );
    p.set(&mut c.event_tags, "ATLAS_EVENT_TAGS", events::parse);
    p.set(
        &mut c.graphql_introspection,
        "ATLAS_GRAPHQL_INTROSPECTION",
        boolean,
    );
    p.set(&mut c.graphql_max_depth, "ATLAS_GRAPHQL_MAX_DEPTH", |v| {
        usize_in(v, 1, 1000)
    });
    p.set(
        &mut c.graphql_max_complexity,
        "ATLAS_GRAPHQL_MAX_COMPLEXITY",
        |v| usize_in(v, 1, 1_000_000),
    );
    p.set(&mut c.graphql_max_fields, "ATLAS_GRAPHQL_MAX_FIELDS", |v| {
        usize_in(v, 1, 1000)
    });
    p.set(&mut c.result_cache_ttl, "RESULT_CACHE_TTL", |v| {
        secs(v, 1, 31_536_000)
    });
    c.cache = cache::parse(&mut p, c.result_cache_ttl);
    p.set(&mut c.enable_cache_warming, "ENABLE_CACHE_WARMING", boolean);
    p.set(
        &mut c.enable_connection_pooling,
        "ENABLE_CONNECTION_POOLING",
        boolean,
    );
    p.set(&mut c.connection_pool_size, "CONNECTION_POOL_SIZE", |v| {
        usize_in(v, 1, 10_000)
    });
    p.set(&mut c.enable_prometheus, "ENABLE_PROMETHEUS", boolean);
    p.set(&mut c.alert_response_time, "ALERT_RESPONSE_TIME_MS", |v| {
        millis(v, 1, 3_600_000)
    });
    p.set(&mut c.alert_error_rate, "ALERT_ERROR_RATE", |v| {
        match v.trim().parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
            _ => Err("expected a fraction from 0 to 1, for example 0.05".to_string()),
        }
    });
    ratelimit::parse(&mut p, &mut c.rate_limits);
    if !c.embedded && c.endpoints.is_empty() && p.errors.is_empty() {
        p.errors.push(ConfigError {
            name: "ATLAS_EMBEDDED".to_string(),
            value: Some("false".to_string()),
            source: raw
                .get(settings::by_env("ATLAS_EMBEDDED").unwrap_or(&SETTINGS[0]))
                .1,
            problem:
                "with the embedded models off, ATLAS_ENDPOINTS must name at least one endpoint"
                    .to_string(),
        });
    }
    if p.errors.is_empty() {
        Ok(c)
    } else {
        Err(p.errors)
    }
}

pub(super) struct Parser<'a> {
    pub(super) raw: &'a Raw,
    pub(super) errors: Vec<ConfigError>,
}

impl Parser<'_> {
    pub(super) fn set<T>(
        &mut self,
        field: &mut T,
        env: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) {
        let Some(setting) = settings::by_env(env) else {
            return;
        };
        let (value, source) = self.raw.get(setting);
        match parse(value.trim()) {
            Ok(v) => *field = v,
            Err(problem) => self.errors.push(ConfigError {
                name: env.to_string(),
                value: Some(if setting.secret {
                    "<redacted>".into()
                } else {
                    value
                }),
                source,
                problem,
            }),
        }
    }
}

pub(super) fn int_in(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected an integer from {min} to {max}")),
    }
}

pub(super) fn usize_in(v: &str, min: u64, max: u64) -> Result<usize, String> {
    int_in(v, min, max).map(|n| n as usize)
}

/// Smallest request memo budget: an entry may take a sixteenth of it, and the smallest parsed
/// request takes ~400 bytes, so a smaller memo would store nothing and only cost lookups.
pub const MIN_REQUEST_MEMO_BYTES: u64 = 64 * 1024;

/// `ATLAS_REQUEST_MEMO_BYTES`: 0 (off) or a budget of at least [`MIN_REQUEST_MEMO_BYTES`].
pub(super) fn memo_budget(v: &str) -> Result<usize, String> {
    const MAX: u64 = 1 << 40;
    match int_in(v, 0, MAX) {
        Ok(n) if n == 0 || n >= MIN_REQUEST_MEMO_BYTES => Ok(n as usize),
        _ => Err(format!(
            "expected 0 (off) or an integer from {MIN_REQUEST_MEMO_BYTES} to {MAX}"
        )),
    }
}

pub(super) fn millis(v: &str, min: u64, max: u64) -> Result<Duration, String> {
    int_in(v, min, max)
        .map(Duration::from_millis)
        .map_err(|e| format!("{e} (milliseconds)"))
}

pub(super) fn secs(v: &str, min: u64, max: u64) -> Result<Duration, String> {
    int_in(v, min, max)
        .map(Duration::from_secs)
        .map_err(|e| format!("{e} (seconds)"))
}

/// An optional text value (empty: `None`).
pub(super) fn optional(v: &str) -> Result<Option<String>, String> {
    Ok((!v.is_empty()).then(|| v.to_string()))
}

/// `redis://host:port[/db]`, comma-separated (several: cluster seeds).
pub(super) fn redis_urls(v: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    for u in &urls {
        let rest = u
            .strip_prefix("redis://")
            .ok_or_else(|| format!("`{u}`: expected redis://host:port (TLS is not built in)"))?;
        let authority = rest.split('/').next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("`{u}`: missing host"));
        }
    }
    Ok(urls)
}

pub(super) fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

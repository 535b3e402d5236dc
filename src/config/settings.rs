//! The table of every setting Atlas reads: its environment variable, its TOML key, its default
//! and what it means. One row per setting; `check-config` and the README are generated from the
//! same facts, so they cannot drift apart.

/// One configurable setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Environment variable name; also how errors name the setting.
    pub env: &'static str,
    /// Key in the TOML file (`--config`).
    pub key: &'static str,
    /// Command-line flag that sets it, if any.
    pub flag: Option<&'static str>,
    /// Default value as text; empty means "unset" (computed at start, e.g. all cores).
    pub default: &'static str,
    /// Whether `check-config` must redact the value.
    pub secret: bool,
    /// One-line description.
    pub help: &'static str,
}

const fn s(
    env: &'static str,
    key: &'static str,
    default: &'static str,
    help: &'static str,
) -> Setting {
    Setting {
        env,
        key,
        flag: None,
        default,
        secret: false,
        help,
    }
}

const fn flagged(
    env: &'static str,
    key: &'static str,
    flag: &'static str,
    default: &'static str,
    help: &'static str,
) -> Setting {
    Setting {
        env,
        key,
        flag: Some(flag),
        default,
        secret: false,
        help,
    }
}

/// A setting whose value is never printed (`check-config` shows `<redacted>`).
const fn secret(env: &'static str, key: &'static str, help: &'static str) -> Setting {
    Setting {
        env,
        key,
        flag: None,
        default: "",
        secret: true,
        help,
    }
}

/// Every setting, in the order `check-config` prints them.
pub const SETTINGS: &[Setting] = &[
    flagged("ATLAS_LISTEN", "listen", "--listen", "127.0.0.1:8083", "address to listen on (IP:PORT; port 0 picks a free port)"),
    flagged("ATLAS_CORES", "cores", "--cores", "", "number of shards, one pinned executor per core (default: every CPU this process may run on)"),
    s("ATLAS_PIN_SHARDS", "pin_shards", "true", "pin each shard's thread to its own CPU; false lets the kernel place the shards on any allowed CPU (for hosts whose CPUs are shared or overcommitted)"),
    s("ATLAS_LOG", "log", "info", "log filter for stderr (error, warn, info, debug, trace, or module=level lists)"),
    s("ATLAS_MAX_CONNECTIONS", "max_connections", "20000", "open client connections allowed across all shards; past it a new connection gets 503 and is closed"),
    s("ATLAS_MAX_BODY_BYTES", "max_body_bytes", "1048576", "largest accepted request body in bytes (413 past it)"),
    s("ATLAS_HEADER_TIMEOUT_MS", "header_timeout_ms", "10000", "time allowed to receive a complete request head (408 past it); also the longest pause allowed while a body is arriving"),
    s("ATLAS_KEEPALIVE_TIMEOUT_S", "keepalive_timeout_s", "30", "idle keep-alive connections are closed after this many seconds"),
    s("ATLAS_SHUTDOWN_GRACE_S", "shutdown_grace_s", "10", "on SIGTERM/SIGINT, how long in-flight requests may take to finish before exit"),
    s("ATLAS_LISTEN_BACKLOG", "listen_backlog", "", "listen(2) backlog per shard socket (default: net.core.somaxconn)"),
    s("ATLAS_IO_MEMORY_BYTES", "io_memory_bytes", "1048576", "io_uring buffer memory registered per shard (locked memory: see tuning/README.md)"),
    s("ATLAS_CACHE_MAX_BYTES", "cache_max_bytes", "536870912", "L1 result cache budget in bytes, split evenly across shards"),
    s("ATLAS_ENDPOINTS", "endpoints", "", "remote model endpoints, comma-separated: name=http://host:port (Atlas's batch protocol) or name=v2+http://host:port/MODEL[;version=V] (Open Inference Protocol, KServe V2), each with [;weight=W][;timeout_ms=T][;max_batch=B][;concurrency=N][;ops=a|b]"),
    s("ATLAS_EMBEDDED", "embedded", "true", "serve requests with the built-in models too (false: remote endpoints only)"),
    s("ATLAS_HEALTH_INTERVAL_S", "health_interval_s", "5", "seconds between active health checks of each remote endpoint (GET /health; V2: the model's readiness)"),
    s("ATLAS_MESH_CAPACITY", "mesh_capacity", "1024", "slots in each shard-to-shard channel"),
    s("MAX_CONCURRENT_REQUESTS", "max_concurrent_requests", "10000", "requests in progress allowed across all shards; past it requests are shed with 503"),
    s("REQUEST_TIMEOUT_MS", "request_timeout_ms", "10000", "deadline for one request end to end (504 past it)"),
    s("BATCH_SIZE", "batch_size", "32", "most requests in one model batch"),
    s("BATCH_TIMEOUT_MS", "batch_timeout_ms", "50", "longest a request waits for its batch to fill"),
    s("CONTEXT_CACHE_TTL", "context_cache_ttl", "3600", "seconds a stored user context is kept"),
    s("ATLAS_CONTEXT_MAX_BYTES", "context_max_bytes", "65536", "largest stored user context (PUT /ai/context/{user_id} body) in bytes (413 past it)"),
    s("ATLAS_CONTEXT_STORE_BYTES", "context_store_bytes", "67108864", "budget of the stored user contexts in bytes, split evenly across shards; the oldest-written contexts leave first"),
    s("ATLAS_REQUEST_MEMO_BYTES", "request_memo_bytes", "8388608", "budget in bytes of each shard's memo of parsed AI requests (exact request bytes to their validated cache key and input), and of its GraphQL memo and kept projections; 0: parse every request, otherwise at least 65536"),
    s("ATLAS_EVENT_TAGS", "event_tags", "", "event types for POST /ai/events mapped to the dependency tags they invalidate: type=tag|tag, comma-separated"),
    s("ATLAS_GRAPHQL_INTROSPECTION", "graphql_introspection", "false", "answer GraphQL introspection (__schema, __type) on /graphql"),
    s("ATLAS_GRAPHQL_MAX_DEPTH", "graphql_max_depth", "10", "deepest selection nesting a /graphql document may have"),
    s("ATLAS_GRAPHQL_MAX_COMPLEXITY", "graphql_max_complexity", "500", "largest complexity (fields selected, counted by async-graphql) of a /graphql document"),
    s("ATLAS_GRAPHQL_MAX_FIELDS", "graphql_max_fields", "16", "most top-level fields in one /graphql operation (each is one pipeline request)"),
    s("RESULT_CACHE_TTL", "result_cache_ttl", "300", "result TTL in seconds of every operation whose ATLAS_CACHE_<OPERATION>_TTL_S is empty"),
    s("ATLAS_CACHE_BUDGET_OPTIMIZATION_TTL_S", "cache_budget_optimization_ttl_s", "1800", "budget_optimization: base result TTL in seconds, the brief's"),
    s("ATLAS_CACHE_BUDGET_OPTIMIZATION_STRATEGY", "cache_budget_optimization_strategy", "dependency", "budget_optimization: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive"),
    s("ATLAS_CACHE_BUDGET_OPTIMIZATION_STALE_WHILE_REVALIDATE_S", "cache_budget_optimization_stale_while_revalidate_s", "", "budget_optimization: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)"),
    s("ATLAS_CACHE_BUDGET_OPTIMIZATION_STALE_IF_ERROR_S", "cache_budget_optimization_stale_if_error_s", "", "budget_optimization: seconds an expired result may be served when recomputing it fails (empty: one TTL)"),
    s("ATLAS_CACHE_BUDGET_OPTIMIZATION_BATCH_COMPATIBLE", "cache_budget_optimization_batch_compatible", "true", "budget_optimization: misses may share one model call (false: each miss is its own call)"),
    s("ATLAS_CACHE_BUDGET_OPTIMIZATION_WARMUP", "cache_budget_optimization_warmup", "true", "budget_optimization: refresh hot results before they expire (with ENABLE_CACHE_WARMING)"),
    s("ATLAS_CACHE_PORTFOLIO_ANALYSIS_TTL_S", "cache_portfolio_analysis_ttl_s", "600", "portfolio_analysis: base result TTL in seconds, the brief's"),
    s("ATLAS_CACHE_PORTFOLIO_ANALYSIS_STRATEGY", "cache_portfolio_analysis_strategy", "event", "portfolio_analysis: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive"),
    s("ATLAS_CACHE_PORTFOLIO_ANALYSIS_STALE_WHILE_REVALIDATE_S", "cache_portfolio_analysis_stale_while_revalidate_s", "", "portfolio_analysis: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)"),
    s("ATLAS_CACHE_PORTFOLIO_ANALYSIS_STALE_IF_ERROR_S", "cache_portfolio_analysis_stale_if_error_s", "", "portfolio_analysis: seconds an expired result may be served when recomputing it fails (empty: one TTL)"),
    s("ATLAS_CACHE_PORTFOLIO_ANALYSIS_BATCH_COMPATIBLE", "cache_portfolio_analysis_batch_compatible", "true", "portfolio_analysis: misses may share one model call (false: each miss is its own call)"),
    s("ATLAS_CACHE_PORTFOLIO_ANALYSIS_WARMUP", "cache_portfolio_analysis_warmup", "false", "portfolio_analysis: refresh hot results before they expire (with ENABLE_CACHE_WARMING)"),
    s("ATLAS_CACHE_RISK_ASSESSMENT_TTL_S", "cache_risk_assessment_ttl_s", "", "risk_assessment: base result TTL in seconds (empty: RESULT_CACHE_TTL)"),
    s("ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY", "cache_risk_assessment_strategy", "dependency", "risk_assessment: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive"),
    s("ATLAS_CACHE_RISK_ASSESSMENT_STALE_WHILE_REVALIDATE_S", "cache_risk_assessment_stale_while_revalidate_s", "", "risk_assessment: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)"),
    s("ATLAS_CACHE_RISK_ASSESSMENT_STALE_IF_ERROR_S", "cache_risk_assessment_stale_if_error_s", "", "risk_assessment: seconds an expired result may be served when recomputing it fails (empty: one TTL)"),
    s("ATLAS_CACHE_RISK_ASSESSMENT_BATCH_COMPATIBLE", "cache_risk_assessment_batch_compatible", "true", "risk_assessment: misses may share one model call (false: each miss is its own call)"),
    s("ATLAS_CACHE_RISK_ASSESSMENT_WARMUP", "cache_risk_assessment_warmup", "false", "risk_assessment: refresh hot results before they expire (with ENABLE_CACHE_WARMING)"),
    s("ATLAS_CACHE_CASHFLOW_FORECAST_TTL_S", "cache_cashflow_forecast_ttl_s", "", "cashflow_forecast: base result TTL in seconds (empty: RESULT_CACHE_TTL)"),
    s("ATLAS_CACHE_CASHFLOW_FORECAST_STRATEGY", "cache_cashflow_forecast_strategy", "adaptive", "cashflow_forecast: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive"),
    s("ATLAS_CACHE_CASHFLOW_FORECAST_STALE_WHILE_REVALIDATE_S", "cache_cashflow_forecast_stale_while_revalidate_s", "", "cashflow_forecast: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)"),
    s("ATLAS_CACHE_CASHFLOW_FORECAST_STALE_IF_ERROR_S", "cache_cashflow_forecast_stale_if_error_s", "", "cashflow_forecast: seconds an expired result may be served when recomputing it fails (empty: one TTL)"),
    s("ATLAS_CACHE_CASHFLOW_FORECAST_BATCH_COMPATIBLE", "cache_cashflow_forecast_batch_compatible", "true", "cashflow_forecast: misses may share one model call (false: each miss is its own call)"),
    s("ATLAS_CACHE_CASHFLOW_FORECAST_WARMUP", "cache_cashflow_forecast_warmup", "true", "cashflow_forecast: refresh hot results before they expire (with ENABLE_CACHE_WARMING)"),
    s("ENABLE_CACHE_WARMING", "enable_cache_warming", "true", "refresh hot cache entries before they expire"),
    s("ENABLE_CONNECTION_POOLING", "enable_connection_pooling", "true", "keep-alive connection pools to model endpoints and Redis"),
    s("CONNECTION_POOL_SIZE", "connection_pool_size", "50", "connections per pool"),
    s("ENABLE_PROMETHEUS", "enable_prometheus", "true", "serve GET /metrics"),
    s("ATLAS_MONITOR_INTERVAL_S", "monitor_interval_s", "5", "seconds between monitor collections (alert windows)"),
    s("ATLAS_ALERT_FOR_WINDOWS", "alert_for_windows", "2", "consecutive windows a condition must hold before an alert fires, and clear before it resolves"),
    s("ATLAS_AUTH", "auth", "", "required | off; empty: required when a key is configured, off on a loopback listen address, and a refusal to start otherwise"),
    secret("ATLAS_JWT_SECRET", "jwt_secret", "HS256/384/512 shared secret (at least 32 bytes)"),
    s("ATLAS_JWT_PUBLIC_KEY", "jwt_public_key", "", "RSA or EC public key for RS*/PS*/ES* tokens: a PEM file path, or the PEM text itself"),
    s("ATLAS_JWKS_FILE", "jwks_file", "", "a JWK Set file (keys chosen by the token's kid)"),
    s("ATLAS_JWT_ISSUER", "jwt_issuer", "", "required iss claim (empty: not checked)"),
    s("ATLAS_JWT_AUDIENCE", "jwt_audience", "", "required aud claim (empty: not checked)"),
    s("ATLAS_JWT_LEEWAY_S", "jwt_leeway_s", "30", "clock leeway in seconds for exp and nbf"),
    secret("ATLAS_ADMIN_TOKEN", "admin_token", "a static bearer token (at least 32 characters) with the admin role, for operators and scripts"),
    s("ATLAS_JWT_CACHE_ENTRIES", "jwt_cache_entries", "10000", "verified tokens kept per shard, each until its exp or 60 s (0: verify every request)"),
    s("ATLAS_ALERT_AUTH_FAILURES", "alert_auth_failures", "20", "authentication failures from one address within one monitor window that raise the auth_failures alert"),
    s("ATLAS_REDIS_URL", "redis_url", "", "Redis L2: redis://host:port[/db] for one node, or several comma-separated seed URLs of a Redis Cluster (empty: no L2)"),
    s("ATLAS_REDIS_CLUSTER", "redis_cluster", "false", "treat a single ATLAS_REDIS_URL as a Redis Cluster seed"),
    s("ATLAS_REDIS_TIMEOUT_MS", "redis_timeout_ms", "5", "longest a lookup waits for Redis before it counts as a miss"),
    s("ATLAS_REDIS_PREFIX", "redis_prefix", "atlas:v1:", "prefix of every Redis key Atlas writes, ending in `:` (separates deployments sharing a Redis)"),
    s("ATLAS_STATE_DIR", "state_dir", "", "absolute directory for warm-restart snapshots (shard-N.snap written on shutdown, read and removed on start; empty: off)"),
    s("ATLAS_MONITOR_HISTORY", "monitor_history", "60", "monitor windows kept for trends and GET /ai/admin/performance (60 × 5 s = 5 minutes)"),
    s("ATLAS_ADAPTIVE_THRESHOLDS", "adaptive_thresholds", "false", "learn a p95 baseline per operation and raise latency_deviation when a window exceeds 3 × it (never less sensitive than the static thresholds)"),
    s("ATLAS_ALERT_WEBHOOK", "alert_webhook", "", "http://host:port/path that receives every alert change as a JSON POST (3 tries, never blocking a shard)"),
    s("ALERT_RESPONSE_TIME_MS", "alert_response_time_ms", "400", "p95 response time that raises an alert"),
    s("ALERT_ERROR_RATE", "alert_error_rate", "0.05", "error-rate fraction that raises an alert"),
    s("ATLAS_RATE_LIMIT_USER_RPS", "rate_limit_user_rps", "0", "requests per second each user may make on average (token bucket on the shard owning the user; 0: no per-user limit)"),
    s("ATLAS_RATE_LIMIT_USER_BURST", "rate_limit_user_burst", "0", "requests a user may make at once from a full bucket (0: the per-user rate rounded up)"),
    s("ATLAS_RATE_LIMIT_GLOBAL_RPS", "rate_limit_global_rps", "0", "requests per second for the whole instance, or every instance sharing ATLAS_REDIS_URL (0: no global limit)"),
    s("ATLAS_RATE_LIMIT_GLOBAL_BURST", "rate_limit_global_burst", "0", "requests accepted at once from a full global bucket (0: the global rate rounded up)"),
    s("ATLAS_RATE_LIMIT_HITS", "rate_limit_hits", "true", "answers served from the cache cost a token too (false: their token is given back)"),
    s("ATLAS_RATE_LIMIT_MAX_USERS", "rate_limit_max_users", "100000", "users tracked at once across all shards (idle users with a full bucket are dropped; past it a new user is not limited)"),
    s("ATLAS_RATE_LIMIT_REDIS_FAILURE", "rate_limit_redis_failure", "local", "with Redis unreachable: local (each instance enforces the limits alone), open (no limits) or closed (503)"),
];

/// The setting with this environment variable name.
pub fn by_env(env: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.env == env)
}

/// The setting with this TOML key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_documents_every_setting() {
        let readme = include_str!("../../README.md");
        for setting in SETTINGS {
            assert!(
                readme.contains(&format!("`{}`", setting.env)),
                "README.md does not document {}",
                setting.env
            );
        }
    }

    #[test]
    fn names_and_keys_are_unique_and_consistent() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.env, b.env);
                assert_ne!(a.key, b.key);
            }
            let expected = a
                .env
                .strip_prefix("ATLAS_")
                .unwrap_or(a.env)
                .to_ascii_lowercase();
            assert_eq!(
                a.key, expected,
                "TOML key of {} must be its env name lowercased",
                a.env
            );
        }
    }
}

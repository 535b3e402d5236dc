//! Every setting Atlas reads, declared once: its environment variable (also how errors name
//! it; the TOML key is the name lowercased without `ATLAS_`), its command-line flag, its
//! default as text, whether it is a secret, whether a SIGHUP reload applies it, its meaning,
//! and its field of [`Config`] with the parser that fills it. From this one table come the
//! `Config` struct, its parsing (`build`), its defaults (the text defaults, parsed),
//! `check-config`, `systemd/atlas.env`, the README table check and what a reload takes.
//!
//! A row without a field belongs to a group its module parses as a whole: the per-operation
//! cache settings (`cache`, read by their names, `ATLAS_CACHE_<OP>_<SUFFIX>`), which fill the
//! derived `Config::cache`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::{
    absolute_path, admin_token, auth_mode, boolean, fraction, int_in, jwt_secret, memo_budget,
    millis, optional, optional_int, optional_url, public_key, redis_prefix, redis_urls, secs,
    socket_addr, usize_in, Parser,
};
use super::ratelimit::{self, RedisFailure};
use super::{cache, endpoints, events, url, AuthMode};

/// One configurable setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Environment variable name; also how errors name the setting.
    pub env: &'static str,
    /// Command-line flag that sets it, if any.
    pub flag: Option<&'static str>,
    /// Default value as text; empty means "unset" (computed at start, e.g. all cores).
    pub default: &'static str,
    /// Whether `check-config` must redact the value.
    pub secret: bool,
    /// Whether a SIGHUP reload applies it (otherwise a change waits for a restart).
    pub reload: bool,
    /// One-line description (also the doc of its `Config` field).
    pub help: &'static str,
    /// Copies its field from a freshly read configuration (what a reload applies); `None`
    /// for a row of a group, which its group's field carries.
    pub take: Option<fn(&mut Config, &Config)>,
}

impl Setting {
    /// Its key in the TOML file (`--config`): the environment name without `ATLAS_`, lower
    /// case (`ATLAS_CACHE_MAX_BYTES` is `cache_max_bytes`, `BATCH_SIZE` is `batch_size`).
    pub fn key(&self) -> String {
        self.env
            .strip_prefix("ATLAS_")
            .unwrap_or(self.env)
            .to_ascii_lowercase()
    }
}

/// Declares the settings: the table, the `Config` struct and its parsing. Each row:
/// `"ENV" [reload secret] flag "--flag" default "text" help "meaning" => field: Type = parser;`
/// (`flag`, the options and the field are optional). `derived` fields are computed from the
/// rows after they are parsed.
macro_rules! settings {
    (
        derived ($p:ident) {
            $( $(#[doc = $ddoc:literal])* $dfield:ident : $dty:ty = $dinit:expr, )*
        }
        $(
            $env:literal [$($opt:ident)*] $(flag $flag:literal)? default $default:literal
                help $help:literal
                $(=> $field:ident : $ty:ty = $parse:expr)? ;
        )*
    ) => {
        /// Every setting, in the order `check-config` prints them.
        pub const SETTINGS: &[Setting] = &[
            $( Setting {
                env: $env,
                flag: settings!(@flag $($flag)?),
                default: $default,
                secret: settings!(@secret $($opt)*),
                reload: settings!(@reload $($opt)*),
                help: $help,
                take: settings!(@take $($field)?),
            }, )*
        ];

        /// The effective configuration: one field per setting (its doc is the setting's
        /// meaning; see [`SETTINGS`]) and the values derived from groups of them.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $( #[doc = $help] pub $field: $ty, )? )*
            $( $(#[doc = $ddoc])* pub $dfield: $dty, )*
        }

        impl Config {
            /// Parses every row into its field and computes the derived values; every problem
            /// goes to the parser, by variable name. `None` when a row's own default does not
            /// parse (a test keeps every default valid).
            pub(super) fn from_rows($p: &mut Parser<'_>) -> Option<Config> {
                $( $( let $field = $p.take($env, $default, $parse); )? )*
                $( $( let $field = $field?; )? )*
                $( let $dfield: $dty = $dinit; )*
                Some(Config {
                    $( $( $field, )? )*
                    $( $dfield, )*
                })
            }
        }
    };
    (@flag) => { None };
    (@flag $flag:literal) => { Some($flag) };
    (@reload) => { false };
    (@reload reload $($rest:ident)*) => { true };
    (@reload $other:ident $($rest:ident)*) => { settings!(@reload $($rest)*) };
    (@secret) => { false };
    (@secret secret $($rest:ident)*) => { true };
    (@secret $other:ident $($rest:ident)*) => { settings!(@secret $($rest)*) };
    (@take) => { None };
    (@take $field:ident) => {
        Some(|config: &mut Config, fresh: &Config| config.$field = fresh.$field.clone())
    };
}

settings! {
    derived (p) {
        /// How each operation's results are cached: the `ATLAS_CACHE_<OPERATION>_*` rows,
        /// parsed together (`config::cache`), an empty TTL taking `RESULT_CACHE_TTL`.
        cache: atlas_shard::CacheConfigs = cache::parse(p, result_cache_ttl),
    }
    "ATLAS_LISTEN" [] flag "--listen" default "127.0.0.1:8083"
        help "address to listen on (IP:PORT; port 0 picks a free port)"
        => listen: SocketAddr = socket_addr;
    "ATLAS_CORES" [] flag "--cores" default ""
        help "number of shards, one pinned executor per core (default: every CPU this process may run on)"
        => cores: Option<usize> = |v| optional_int(v, 1, 1024).map(|n| n.map(|n| n as usize));
    "ATLAS_PIN_SHARDS" [] default "true"
        help "pin each shard's thread to its own CPU; false lets the kernel place the shards on any allowed CPU (for hosts whose CPUs are shared or overcommitted)"
        => pin_shards: bool = boolean;
    "ATLAS_LOG" [reload] default "info"
        help "log filter for stderr (error, warn, info, debug, trace, or module=level lists)"
        => log: String = |v| Ok(v.to_string());
    "ATLAS_MAX_CONNECTIONS" [] default "20000"
        help "open client connections allowed across all shards; past it a new connection gets 503 and is closed"
        => max_connections: usize = |v| usize_in(v, 1, 10_000_000);
    "ATLAS_MAX_BODY_BYTES" [] default "1048576"
        help "largest accepted request body in bytes (413 past it)"
        => max_body_bytes: u64 = |v| int_in(v, 1, 1 << 30);
    "ATLAS_HEADER_TIMEOUT_MS" [] default "10000"
        help "time allowed to receive a complete request head (408 past it); also the longest pause allowed while a body is arriving"
        => header_timeout: Duration = |v| millis(v, 1, 3_600_000);
    "ATLAS_KEEPALIVE_TIMEOUT_S" [] default "30"
        help "idle keep-alive connections are closed after this many seconds"
        => keepalive_timeout: Duration = |v| secs(v, 1, 86_400);
    "ATLAS_SHUTDOWN_GRACE_S" [reload] default "10"
        help "on SIGTERM/SIGINT, how long in-flight requests may take to finish before exit"
        => shutdown_grace: Duration = |v| secs(v, 0, 3600);
    "ATLAS_LISTEN_BACKLOG" [] default ""
        help "listen(2) backlog per shard socket (default: net.core.somaxconn)"
        => listen_backlog: Option<u32> = |v| optional_int(v, 1, i32::MAX as u64).map(|n| n.map(|n| n as u32));
    "ATLAS_IO_MEMORY_BYTES" [] default "1048576"
        help "io_uring buffer memory registered per shard (locked memory: see tuning/README.md)"
        => io_memory_bytes: usize = |v| usize_in(v, 64 * 1024, 1 << 30);
    "ATLAS_CACHE_MAX_BYTES" [] default "536870912"
        help "L1 result cache budget in bytes, split evenly across shards"
        => cache_max_bytes: usize = |v| usize_in(v, 1 << 20, 1 << 40);
    "ATLAS_ENDPOINTS" [reload] default ""
        help "remote model endpoints, comma-separated: name=http://host:port (Atlas's batch protocol) or name=v2+http://host:port/MODEL[;version=V] (Open Inference Protocol, KServe V2), each with [;weight=W][;timeout_ms=T][;max_batch=B][;concurrency=N][;ops=a|b]"
        => endpoints: Vec<endpoints::EndpointSpec> = endpoints::parse;
    "ATLAS_EMBEDDED" [] default "true"
        help "serve requests with the built-in models too (false: remote endpoints only)"
        => embedded: bool = boolean;
    "ATLAS_HEALTH_INTERVAL_S" [] default "5"
        help "seconds between active health checks of each remote endpoint (GET /health; V2: the model's readiness)"
        => health_interval: Duration = |v| secs(v, 1, 3600);
    "ATLAS_MESH_CAPACITY" [] default "1024"
        help "slots in each shard-to-shard channel"
        => mesh_capacity: usize = |v| usize_in(v, 1, 1 << 20);
    "MAX_CONCURRENT_REQUESTS" [] default "10000"
        help "requests in progress allowed across all shards; past it requests are shed with 503"
        => max_concurrent_requests: usize = |v| usize_in(v, 1, 10_000_000);
    "REQUEST_TIMEOUT_MS" [] default "10000"
        help "deadline for one request end to end (504 past it)"
        => request_timeout: Duration = |v| millis(v, 1, 3_600_000);
    "BATCH_SIZE" [reload] default "32"
        help "most requests in one model batch"
        => batch_size: usize = |v| usize_in(v, 1, 1024);
    "BATCH_TIMEOUT_MS" [reload] default "50"
        help "longest a request waits for its batch to fill"
        => batch_timeout: Duration = |v| millis(v, 0, 60_000);
    "CONTEXT_CACHE_TTL" [] default "3600"
        help "seconds a stored user context is kept"
        => context_cache_ttl: Duration = |v| secs(v, 1, 31_536_000);
    "ATLAS_CONTEXT_MAX_BYTES" [] default "65536"
        help "largest stored user context (PUT /ai/context/{user_id} body) in bytes (413 past it)"
        => context_max_bytes: usize = |v| usize_in(v, 2, 1 << 24);
    "ATLAS_CONTEXT_STORE_BYTES" [] default "67108864"
        help "budget of the stored user contexts in bytes, split evenly across shards; the oldest-written contexts leave first"
        => context_store_bytes: usize = |v| usize_in(v, 1 << 16, 1 << 40);
    "ATLAS_REQUEST_MEMO_BYTES" [] default "8388608"
        help "budget in bytes of each shard's memo of parsed AI requests (exact request bytes to their validated cache key and input), and of its GraphQL memo and kept projections; 0: parse every request, otherwise at least 65536"
        => request_memo_bytes: usize = memo_budget;
    "ATLAS_EVENT_TAGS" [] default ""
        help "event types for POST /ai/events mapped to the dependency tags they invalidate: type=tag|tag, comma-separated"
        => event_tags: Vec<events::EventTags> = events::parse;
    "ATLAS_GRAPHQL_INTROSPECTION" [] default "false"
        help "answer GraphQL introspection (__schema, __type) on /graphql"
        => graphql_introspection: bool = boolean;
    "ATLAS_GRAPHQL_MAX_DEPTH" [] default "10"
        help "deepest selection nesting a /graphql document may have"
        => graphql_max_depth: usize = |v| usize_in(v, 1, 1000);
    "ATLAS_GRAPHQL_MAX_COMPLEXITY" [] default "500"
        help "largest complexity (fields selected, counted by async-graphql) of a /graphql document"
        => graphql_max_complexity: usize = |v| usize_in(v, 1, 1_000_000);
    "ATLAS_GRAPHQL_MAX_FIELDS" [] default "16"
        help "most top-level fields in one /graphql operation (each is one pipeline request)"
        => graphql_max_fields: usize = |v| usize_in(v, 1, 1000);
    "RESULT_CACHE_TTL" [reload] default "300"
        help "result TTL in seconds of every operation whose ATLAS_CACHE_<OPERATION>_TTL_S is empty"
        => result_cache_ttl: Duration = |v| secs(v, 1, 31_536_000);
    "ATLAS_CACHE_BUDGET_OPTIMIZATION_TTL_S" [reload] default "1800"
        help "budget_optimization: base result TTL in seconds, the brief's";
    "ATLAS_CACHE_BUDGET_OPTIMIZATION_STRATEGY" [reload] default "dependency"
        help "budget_optimization: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive";
    "ATLAS_CACHE_BUDGET_OPTIMIZATION_STALE_WHILE_REVALIDATE_S" [reload] default ""
        help "budget_optimization: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)";
    "ATLAS_CACHE_BUDGET_OPTIMIZATION_STALE_IF_ERROR_S" [reload] default ""
        help "budget_optimization: seconds an expired result may be served when recomputing it fails (empty: one TTL)";
    "ATLAS_CACHE_BUDGET_OPTIMIZATION_BATCH_COMPATIBLE" [reload] default "true"
        help "budget_optimization: misses may share one model call (false: each miss is its own call)";
    "ATLAS_CACHE_BUDGET_OPTIMIZATION_WARMUP" [reload] default "true"
        help "budget_optimization: refresh hot results before they expire (with ENABLE_CACHE_WARMING)";
    "ATLAS_CACHE_PORTFOLIO_ANALYSIS_TTL_S" [reload] default "600"
        help "portfolio_analysis: base result TTL in seconds, the brief's";
    "ATLAS_CACHE_PORTFOLIO_ANALYSIS_STRATEGY" [reload] default "event"
        help "portfolio_analysis: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive";
    "ATLAS_CACHE_PORTFOLIO_ANALYSIS_STALE_WHILE_REVALIDATE_S" [reload] default ""
        help "portfolio_analysis: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)";
    "ATLAS_CACHE_PORTFOLIO_ANALYSIS_STALE_IF_ERROR_S" [reload] default ""
        help "portfolio_analysis: seconds an expired result may be served when recomputing it fails (empty: one TTL)";
    "ATLAS_CACHE_PORTFOLIO_ANALYSIS_BATCH_COMPATIBLE" [reload] default "true"
        help "portfolio_analysis: misses may share one model call (false: each miss is its own call)";
    "ATLAS_CACHE_PORTFOLIO_ANALYSIS_WARMUP" [reload] default "false"
        help "portfolio_analysis: refresh hot results before they expire (with ENABLE_CACHE_WARMING)";
    "ATLAS_CACHE_RISK_ASSESSMENT_TTL_S" [reload] default ""
        help "risk_assessment: base result TTL in seconds (empty: RESULT_CACHE_TTL)";
    "ATLAS_CACHE_RISK_ASSESSMENT_STRATEGY" [reload] default "dependency"
        help "risk_assessment: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive";
    "ATLAS_CACHE_RISK_ASSESSMENT_STALE_WHILE_REVALIDATE_S" [reload] default ""
        help "risk_assessment: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)";
    "ATLAS_CACHE_RISK_ASSESSMENT_STALE_IF_ERROR_S" [reload] default ""
        help "risk_assessment: seconds an expired result may be served when recomputing it fails (empty: one TTL)";
    "ATLAS_CACHE_RISK_ASSESSMENT_BATCH_COMPATIBLE" [reload] default "true"
        help "risk_assessment: misses may share one model call (false: each miss is its own call)";
    "ATLAS_CACHE_RISK_ASSESSMENT_WARMUP" [reload] default "false"
        help "risk_assessment: refresh hot results before they expire (with ENABLE_CACHE_WARMING)";
    "ATLAS_CACHE_CASHFLOW_FORECAST_TTL_S" [reload] default ""
        help "cashflow_forecast: base result TTL in seconds (empty: RESULT_CACHE_TTL)";
    "ATLAS_CACHE_CASHFLOW_FORECAST_STRATEGY" [reload] default "adaptive"
        help "cashflow_forecast: ttl (fixed TTL), dependency or event (adaptive TTL; tags and events invalidate, as always) or adaptive";
    "ATLAS_CACHE_CASHFLOW_FORECAST_STALE_WHILE_REVALIDATE_S" [reload] default ""
        help "cashflow_forecast: seconds an expired result is still served while one refresh runs (empty: 5 % of the TTL)";
    "ATLAS_CACHE_CASHFLOW_FORECAST_STALE_IF_ERROR_S" [reload] default ""
        help "cashflow_forecast: seconds an expired result may be served when recomputing it fails (empty: one TTL)";
    "ATLAS_CACHE_CASHFLOW_FORECAST_BATCH_COMPATIBLE" [reload] default "true"
        help "cashflow_forecast: misses may share one model call (false: each miss is its own call)";
    "ATLAS_CACHE_CASHFLOW_FORECAST_WARMUP" [reload] default "true"
        help "cashflow_forecast: refresh hot results before they expire (with ENABLE_CACHE_WARMING)";
    "ENABLE_CACHE_WARMING" [reload] default "true"
        help "refresh hot cache entries before they expire"
        => enable_cache_warming: bool = boolean;
    "ENABLE_CONNECTION_POOLING" [] default "true"
        help "keep-alive connection pools to model endpoints and Redis"
        => enable_connection_pooling: bool = boolean;
    "CONNECTION_POOL_SIZE" [] default "50"
        help "connections per pool"
        => connection_pool_size: usize = |v| usize_in(v, 1, 10_000);
    "ENABLE_PROMETHEUS" [] default "true"
        help "serve GET /metrics"
        => enable_prometheus: bool = boolean;
    "ATLAS_MONITOR_INTERVAL_S" [reload] default "5"
        help "seconds between monitor collections (alert windows)"
        => monitor_interval: Duration = |v| secs(v, 1, 3600);
    "ATLAS_ALERT_FOR_WINDOWS" [reload] default "2"
        help "consecutive windows a condition must hold before an alert fires, and clear before it resolves"
        => alert_for_windows: u32 = |v| int_in(v, 1, 100).map(|n| n as u32);
    "ATLAS_AUTH" [] default ""
        help "required | off; empty: required when a key is configured, off on a loopback listen address, and a refusal to start otherwise"
        => auth: AuthMode = auth_mode;
    "ATLAS_JWT_SECRET" [secret] default ""
        help "HS256/384/512 shared secret (at least 32 bytes)"
        => jwt_secret: Option<String> = jwt_secret;
    "ATLAS_JWT_PUBLIC_KEY" [] default ""
        help "RSA or EC public key for RS*/PS*/ES* tokens: a PEM file path, or the PEM text itself"
        => jwt_public_key: Option<String> = public_key;
    "ATLAS_JWKS_FILE" [] default ""
        help "a JWK Set file (keys chosen by the token's kid)"
        => jwks_file: Option<PathBuf> = |v| absolute_path(v, "path");
    "ATLAS_JWT_ISSUER" [] default ""
        help "required iss claim (empty: not checked)"
        => jwt_issuer: Option<String> = optional;
    "ATLAS_JWT_AUDIENCE" [] default ""
        help "required aud claim (empty: not checked)"
        => jwt_audience: Option<String> = optional;
    "ATLAS_JWT_LEEWAY_S" [] default "30"
        help "clock leeway in seconds for exp and nbf"
        => jwt_leeway: Duration = |v| secs(v, 0, 3600);
    "ATLAS_ADMIN_TOKEN" [secret] default ""
        help "a static bearer token (at least 32 characters) with the admin role, for operators and scripts"
        => admin_token: Option<String> = admin_token;
    "ATLAS_JWT_CACHE_ENTRIES" [] default "10000"
        help "verified tokens kept per shard, each until its exp or 60 s (0: verify every request)"
        => jwt_cache_entries: usize = |v| usize_in(v, 0, 10_000_000);
    "ATLAS_ALERT_AUTH_FAILURES" [] default "20"
        help "authentication failures from one address within one monitor window that raise the auth_failures alert"
        => alert_auth_failures: u64 = |v| int_in(v, 1, 1_000_000);
    "ATLAS_REDIS_URL" [] default ""
        help "Redis L2: redis://host:port[/db] for one node, or several comma-separated seed URLs of a Redis Cluster (empty: no L2)"
        => redis_urls: Vec<String> = redis_urls;
    "ATLAS_REDIS_CLUSTER" [] default "false"
        help "treat a single ATLAS_REDIS_URL as a Redis Cluster seed"
        => redis_cluster: bool = boolean;
    "ATLAS_REDIS_TIMEOUT_MS" [] default "5"
        help "longest a lookup waits for Redis before it counts as a miss"
        => redis_timeout: Duration = |v| millis(v, 1, 10_000);
    "ATLAS_REDIS_PREFIX" [] default "atlas:v1:"
        help "prefix of every Redis key Atlas writes, ending in `:` (separates deployments sharing a Redis)"
        => redis_prefix: String = redis_prefix;
    "ATLAS_STATE_DIR" [] default ""
        help "absolute directory for warm-restart snapshots (shard-N.snap written on shutdown, read and removed on start; empty: off)"
        => state_dir: Option<PathBuf> = |v| absolute_path(v, "directory path");
    "ATLAS_MONITOR_HISTORY" [reload] default "60"
        help "monitor windows kept for trends and GET /ai/admin/performance (60 × 5 s = 5 minutes)"
        => monitor_history: usize = |v| usize_in(v, 3, 10_000);
    "ATLAS_ADAPTIVE_THRESHOLDS" [reload] default "false"
        help "learn a p95 baseline per operation and raise latency_deviation when a window exceeds 3 × it (never less sensitive than the static thresholds)"
        => adaptive_thresholds: bool = boolean;
    "ATLAS_ALERT_WEBHOOK" [] default ""
        help "http://host:port/path that receives every alert change as a JSON POST (3 tries, never blocking a shard)"
        => alert_webhook: Option<url::HttpUrl> = optional_url;
    "ALERT_RESPONSE_TIME_MS" [reload] default "400"
        help "p95 response time that raises an alert"
        => alert_response_time: Duration = |v| millis(v, 1, 3_600_000);
    "ALERT_ERROR_RATE" [reload] default "0.05"
        help "error-rate fraction that raises an alert"
        => alert_error_rate: f64 = fraction;
    "ATLAS_RATE_LIMIT_USER_RPS" [reload] default "0"
        help "requests per second each user may make on average (token bucket on the shard owning the user; 0: no per-user limit)"
        => rate_limit_user_rps: f64 = ratelimit::per_second;
    "ATLAS_RATE_LIMIT_USER_BURST" [reload] default "0"
        help "requests a user may make at once from a full bucket (0: the per-user rate rounded up)"
        => rate_limit_user_burst: u32 = ratelimit::burst;
    "ATLAS_RATE_LIMIT_GLOBAL_RPS" [reload] default "0"
        help "requests per second for the whole instance, or every instance sharing ATLAS_REDIS_URL (0: no global limit)"
        => rate_limit_global_rps: f64 = ratelimit::per_second;
    "ATLAS_RATE_LIMIT_GLOBAL_BURST" [reload] default "0"
        help "requests accepted at once from a full global bucket (0: the global rate rounded up)"
        => rate_limit_global_burst: u32 = ratelimit::burst;
    "ATLAS_RATE_LIMIT_HITS" [reload] default "true"
        help "answers served from the cache cost a token too (false: their token is given back)"
        => rate_limit_hits: bool = boolean;
    "ATLAS_RATE_LIMIT_MAX_USERS" [reload] default "100000"
        help "users tracked at once across all shards (idle users with a full bucket are dropped; past it a new user is not limited)"
        => rate_limit_max_users: usize = |v| usize_in(v, 1, 100_000_000);
    "ATLAS_RATE_LIMIT_REDIS_FAILURE" [reload] default "local"
        help "with Redis unreachable: local (each instance enforces the limits alone), open (no limits) or closed (503)"
        => rate_limit_redis_failure: RedisFailure = ratelimit::redis_failure;
}

/// The setting with this environment variable name.
pub fn by_env(env: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.env == env)
}

/// The setting with this TOML key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key() == key)
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
    fn names_and_keys_are_unique() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.env, b.env);
                assert_ne!(a.key(), b.key());
            }
        }
        assert_eq!(
            by_key("cache_max_bytes").map(|s| s.env),
            Some("ATLAS_CACHE_MAX_BYTES")
        );
        assert_eq!(by_key("batch_size").map(|s| s.env), Some("BATCH_SIZE"));
    }

    #[test]
    fn every_default_parses() {
        let built = crate::config::build(&crate::config::Raw::default());
        assert!(built.is_ok(), "{:?}", built.err());
    }

    #[test]
    fn rows_without_a_field_are_the_cache_group_and_reload_together() {
        for s in SETTINGS.iter().filter(|s| s.take.is_none()) {
            assert!(
                s.env.starts_with("ATLAS_CACHE_") && s.env != "ATLAS_CACHE_MAX_BYTES",
                "{} has no field and is not a cache row",
                s.env
            );
            // A reload takes the whole derived `cache`, so every row of it must reload.
            assert!(s.reload, "{} is a cache row that does not reload", s.env);
        }
    }
}

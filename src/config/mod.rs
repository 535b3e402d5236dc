//! Configuration: one typed [`Config`] built from, in rising precedence, the defaults, an
//! optional TOML file (`--config FILE`), the environment, and command-line flags.
//!
//! Values are gathered raw (as text, with where each came from), then parsed and validated all
//! at once: every bad value is reported by its variable name in one go, never only the first.
//! Must not depend on the runtime or on sockets.

pub mod cache;
pub mod endpoints;
pub mod events;
pub mod ratelimit;
pub mod settings;
pub mod url;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use settings::{Setting, SETTINGS};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The TOML file given with `--config`.
    File(PathBuf),
    /// The process environment.
    Env,
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env => f.write_str("environment"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable name (or file path for file-level problems).
    pub name: String,
    /// The offending value as given (redacted for secrets).
    pub value: Option<String>,
    /// Where it came from.
    pub source: Source,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(
                f,
                "{}={:?} (from {}): {}",
                self.name, v, self.source, self.problem
            ),
            None => write!(f, "{} (from {}): {}", self.name, self.source, self.problem),
        }
    }
}

/// Values given by command-line flags (they beat everything else).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--cores`.
    pub cores: Option<String>,
    /// `--config`.
    pub config_file: Option<PathBuf>,
}

/// The raw settings that were given somewhere other than the defaults, keyed by env name.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    values: HashMap<&'static str, (String, Source)>,
}

impl Raw {
    /// The value and source of a setting, falling back to its default.
    pub fn get(&self, setting: &Setting) -> (String, Source) {
        match self.values.get(setting.env) {
            Some((v, s)) => (v.clone(), s.clone()),
            None => (setting.default.to_string(), Source::Default),
        }
    }

    fn set(&mut self, env: &'static str, value: String, source: Source) {
        self.values.insert(env, (value, source));
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address every shard listens on.
    pub listen: SocketAddr,
    /// Requested shard count; `None` means every CPU this process may use.
    pub cores: Option<usize>,
    /// Pin each shard's thread to one CPU (`false`: any allowed CPU, placed by the kernel).
    pub pin_shards: bool,
    /// Log filter.
    pub log: String,
    /// Open client connections allowed across all shards.
    pub max_connections: usize,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// Time allowed for a complete request head.
    pub header_timeout: Duration,
    /// Idle time after which a keep-alive connection is closed.
    pub keepalive_timeout: Duration,
    /// Drain time allowed on shutdown.
    pub shutdown_grace: Duration,
    /// listen(2) backlog; `None` means `net.core.somaxconn`.
    pub listen_backlog: Option<u32>,
    /// io_uring buffer memory per shard.
    pub io_memory_bytes: usize,
    /// Slots per shard-to-shard channel.
    pub mesh_capacity: usize,
    /// L1 cache budget across all shards.
    pub cache_max_bytes: usize,
    /// Remote model endpoints.
    pub endpoints: Vec<endpoints::EndpointSpec>,
    /// Whether the built-in models serve requests too.
    pub embedded: bool,
    /// Interval of active health checks of remote endpoints.
    pub health_interval: Duration,
    /// Monitor collection interval (alert window).
    pub monitor_interval: Duration,
    /// Windows a condition holds before an alert fires (and clears before it resolves).
    pub alert_for_windows: u32,
    /// Monitor windows kept for trends and `/ai/admin/performance`.
    pub monitor_history: usize,
    /// Learn a latency baseline per operation and alert on deviations from it.
    pub adaptive_thresholds: bool,
    /// Where alert changes are POSTed as JSON.
    pub alert_webhook: Option<url::HttpUrl>,
    /// Authentication mode.
    pub auth: AuthMode,
    /// HS* shared secret.
    pub jwt_secret: Option<String>,
    /// RS*/PS*/ES* public key: a PEM path or the PEM text.
    pub jwt_public_key: Option<String>,
    /// JWK Set file.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`.
    pub jwt_issuer: Option<String>,
    /// Required `aud`.
    pub jwt_audience: Option<String>,
    /// Clock leeway for `exp`/`nbf`.
    pub jwt_leeway: Duration,
    /// Static admin bearer token.
    pub admin_token: Option<String>,
    /// Verified tokens kept per shard (0: no cache).
    pub jwt_cache_entries: usize,
    /// Auth failures from one address per window that raise an alert.
    pub alert_auth_failures: u64,
    /// Redis L2: one node URL, or the seed URLs of a cluster (empty: no L2).
    pub redis_urls: Vec<String>,
    /// Treat `redis_urls` as Redis Cluster seeds (also implied by several URLs).
    pub redis_cluster: bool,
    /// Longest wait for an L2 lookup.
    pub redis_timeout: Duration,
    /// Prefix of every Redis key Atlas writes.
    pub redis_prefix: String,
    /// Where shards write their L1 snapshots on shutdown and read them on start (`None`:
    /// no warm restart).
    pub state_dir: Option<PathBuf>,
    /// Requests in progress allowed across all shards.
    pub max_concurrent_requests: usize,
    /// End-to-end request deadline.
    pub request_timeout: Duration,
    /// Most requests in one model batch.
    pub batch_size: usize,
    /// Longest batching window.
    pub batch_timeout: Duration,
    /// Stored user context lifetime.
    pub context_cache_ttl: Duration,
    /// Largest stored user context, in bytes.
    pub context_max_bytes: usize,
    /// Budget of the stored user contexts across all shards, in bytes.
    pub context_store_bytes: usize,
    /// Budget of each shard's request memo (`ATLAS_REQUEST_MEMO_BYTES`; 0: off).
    pub request_memo_bytes: usize,
    /// Event types `POST /ai/events` maps to dependency tags.
    pub event_tags: Vec<events::EventTags>,
    /// Whether `/graphql` answers introspection queries.
    pub graphql_introspection: bool,
    /// Deepest selection nesting of a `/graphql` document.
    pub graphql_max_depth: usize,
    /// Largest complexity of a `/graphql` document.
    pub graphql_max_complexity: usize,
    /// Most top-level fields (pipeline requests) in one `/graphql` operation.
    pub graphql_max_fields: usize,
    /// Result TTL of the operations without their own (`RESULT_CACHE_TTL`).
    pub result_cache_ttl: Duration,
    /// How each operation's results are cached (`ATLAS_CACHE_<OPERATION>_*`).
    pub cache: atlas_shard::CacheConfigs,
    /// Refresh hot entries before expiry.
    pub enable_cache_warming: bool,
    /// Pool connections to model endpoints and Redis.
    pub enable_connection_pooling: bool,
    /// Connections per pool.
    pub connection_pool_size: usize,
    /// Serve `/metrics`.
    pub enable_prometheus: bool,
    /// Response-time alert threshold.
    pub alert_response_time: Duration,
    /// Error-rate alert threshold, a fraction.
    pub alert_error_rate: f64,
    /// Per-user and global rate limits (`ATLAS_RATE_LIMIT_*`).
    pub rate_limits: ratelimit::RateLimitConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            cores: None,
            pin_shards: true,
            log: "info".to_string(),
            max_connections: 20_000,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_millis(10_000),
            keepalive_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            listen_backlog: None,
            io_memory_bytes: 1024 * 1024,
            mesh_capacity: 1024,
            cache_max_bytes: 512 * 1024 * 1024,
            endpoints: Vec::new(),
            embedded: true,
            health_interval: Duration::from_secs(5),
            monitor_interval: Duration::from_secs(5),
            alert_for_windows: 2,
            monitor_history: 60,
            adaptive_thresholds: false,
            alert_webhook: None,
            auth: AuthMode::Auto,
            jwt_secret: None,
            jwt_public_key: None,
            jwks_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
            admin_token: None,
            jwt_cache_entries: 10_000,
            alert_auth_failures: 20,
            redis_urls: Vec::new(),
            redis_cluster: false,
            redis_timeout: Duration::from_millis(5),
            redis_prefix: "atlas:v1:".to_string(),
            state_dir: None,
            max_concurrent_requests: 10_000,
            request_timeout: Duration::from_millis(10_000),
            batch_size: 32,
            batch_timeout: Duration::from_millis(50),
            context_cache_ttl: Duration::from_secs(3600),
            context_max_bytes: 64 * 1024,
            graphql_introspection: false,
            graphql_max_depth: 10,
            graphql_max_complexity: 500,
            graphql_max_fields: 16,
            context_store_bytes: 64 * 1024 * 1024,
            request_memo_bytes: 8 * 1024 * 1024,
            event_tags: Vec::new(),
            result_cache_ttl: Duration::from_secs(300),
            cache: cache::defaults(Duration::from_secs(300)),
            enable_cache_warming: true,
            enable_connection_pooling: true,
            connection_pool_size: 50,
            enable_prometheus: true,
            alert_response_time: Duration::from_millis(400),
            alert_error_rate: 0.05,
            rate_limits: ratelimit::RateLimitConfig::default(),
        }
    }
}

/// Gathers raw values from the file (if any), the environment (through `env`) and the flags.
/// File-level problems (unreadable, not TOML, unknown keys) are returned as errors.
pub fn gather(flags: &Flags, env: impl Fn(&str) -> Option<String>) -> (Raw, Vec<ConfigError>) {
    gather_with(flags, env, |path| std::fs::read_to_string(path))
}

/// [`gather`] with the file read through `read` (the fuzz target and tests supply the text).
pub fn gather_with(
    flags: &Flags,
    env: impl Fn(&str) -> Option<String>,
    read: impl FnOnce(&Path) -> std::io::Result<String>,
) -> (Raw, Vec<ConfigError>) {
    let mut raw = Raw::default();
    let mut errors = Vec::new();
    if let Some(path) = &flags.config_file {
        read_file(path, read(path), &mut raw, &mut errors);
    }
    for setting in SETTINGS {
        if let Some(v) = env(setting.env) {
            raw.set(setting.env, v, Source::Env);
        }
    }
    if let Some(v) = &flags.listen {
        raw.set("ATLAS_LISTEN", v.clone(), Source::Flag);
    }
    if let Some(v) = &flags.cores {
        raw.set("ATLAS_CORES", v.clone(), Source::Flag);
    }
    (raw, errors)
}

fn read_file(
    path: &Path,
    text: std::io::Result<String>,
    raw: &mut Raw,
    errors: &mut Vec<ConfigError>,
) {
    let file_error = |problem: String| ConfigError {
        name: path.display().to_string(),
        value: None,
        source: Source::File(path.to_path_buf()),
        problem,
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => return errors.push(file_error(format!("cannot read the file: {e}"))),
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return errors.push(file_error(format!("not valid TOML: {}", e.message()))),
    };
    let mut flat = Vec::new();
    flatten(table, "", "", &mut flat);
    for (key, dotted, value) in flat {
        let Some(setting) = settings::by_key(&key) else {
            errors.push(file_error(format!("unknown key `{dotted}`")));
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                errors.push(file_error(format!(
                    "key `{dotted}` must be a string, number or boolean, not a {}",
                    other.type_str()
                )));
                continue;
            }
        };
        raw.set(setting.env, text, Source::File(path.to_path_buf()));
    }
}

/// The keys of a TOML table with nested tables joined by `_`, as the settings name them
/// (`[cache.portfolio_analysis]` `ttl_s` is `cache_portfolio_analysis_ttl_s`), each with its
/// dotted path for messages.
fn flatten(
    table: toml::Table,
    prefix: &str,
    dotted_prefix: &str,
    out: &mut Vec<(String, String, toml::Value)>,
) {
    for (key, value) in table {
        let (flat, dotted) = (format!("{prefix}{key}"), format!("{dotted_prefix}{key}"));
        match value {
            toml::Value::Table(inner) => {
                flatten(inner, &format!("{flat}_"), &format!("{dotted}."), out)
            }
            other => out.push((flat, dotted, other)),
        }
    }
}

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

struct Parser<'a> {
    raw: &'a Raw,
    errors: Vec<ConfigError>,
}

impl Parser<'_> {
    fn set<T>(
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

fn int_in(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected an integer from {min} to {max}")),
    }
}

fn usize_in(v: &str, min: u64, max: u64) -> Result<usize, String> {
    int_in(v, min, max).map(|n| n as usize)
}

/// Smallest request memo budget: an entry may take a sixteenth of it, and the smallest parsed
/// request takes ~400 bytes, so a smaller memo would store nothing and only cost lookups.
pub const MIN_REQUEST_MEMO_BYTES: u64 = 64 * 1024;

/// `ATLAS_REQUEST_MEMO_BYTES`: 0 (off) or a budget of at least [`MIN_REQUEST_MEMO_BYTES`].
fn memo_budget(v: &str) -> Result<usize, String> {
    const MAX: u64 = 1 << 40;
    match int_in(v, 0, MAX) {
        Ok(n) if n == 0 || n >= MIN_REQUEST_MEMO_BYTES => Ok(n as usize),
        _ => Err(format!(
            "expected 0 (off) or an integer from {MIN_REQUEST_MEMO_BYTES} to {MAX}"
        )),
    }
}

fn millis(v: &str, min: u64, max: u64) -> Result<Duration, String> {
    int_in(v, min, max)
        .map(Duration::from_millis)
        .map_err(|e| format!("{e} (milliseconds)"))
}

fn secs(v: &str, min: u64, max: u64) -> Result<Duration, String> {
    int_in(v, min, max)
        .map(Duration::from_secs)
        .map_err(|e| format!("{e} (seconds)"))
}

/// An optional text value (empty: `None`).
fn optional(v: &str) -> Result<Option<String>, String> {
    Ok((!v.is_empty()).then(|| v.to_string()))
}

/// `ATLAS_AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Not set: required when a key is configured, off on a loopback address, refused
    /// otherwise.
    Auto,
    /// Every user and admin route needs a valid token.
    Required,
    /// No authentication (explicit).
    Off,
}

/// `redis://host:port[/db]`, comma-separated (several: cluster seeds).
fn redis_urls(v: &str) -> Result<Vec<String>, String> {
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

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// Renders the effective configuration, one `NAME = value  # source` line per setting, secrets
/// redacted.
pub fn render(raw: &Raw) -> String {
    let mut out = String::new();
    for setting in SETTINGS {
        let (value, source) = raw.get(setting);
        let shown = if setting.secret && !value.is_empty() {
            "<redacted>".to_string()
        } else if value.is_empty() {
            "(auto)".to_string()
        } else {
            value
        };
        out.push_str(&format!(
            "{:<28} = {:<24} # {}\n",
            setting.env, shown, source
        ));
    }
    out
}

/// Renders the effective configuration as a systemd `EnvironmentFile=` (also a shell file of
/// `NAME=value` lines): per setting, its meaning and default in a comment, then the
/// assignment, commented out when the value is the default. With every value at its default
/// this is `systemd/atlas.env`, the file the installer ships (a test keeps them equal).
pub fn render_env(raw: &Raw) -> String {
    let mut out = String::from(ENV_FILE_HEADER);
    for setting in SETTINGS {
        let (value, source) = raw.get(setting);
        let default = if setting.default.is_empty() {
            "(unset)".to_string()
        } else {
            setting.default.to_string()
        };
        out.push_str(&format!("\n# {}\n", setting.help));
        let flag = setting
            .flag
            .map(|f| format!("; flag {f}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "# default: {default}; file key: {}{flag}\n",
            setting.key
        ));
        let shown = if setting.secret && !value.is_empty() {
            "<redacted>".to_string()
        } else {
            value
        };
        if source == Source::Default {
            out.push_str(&format!("#{}={}\n", setting.env, shown));
        } else {
            out.push_str(&format!("{}={}\n", setting.env, shown));
        }
    }
    out
}

const ENV_FILE_HEADER: &str = "\
# Atlas environment file: every setting Atlas reads, with its default and meaning.
# systemd reads it through EnvironmentFile=-/etc/atlas/atlas.env (atlas.service); uncomment a
# line to set it. Precedence: command-line flags > this environment > the TOML file given with
# --config (/etc/atlas/atlas.toml in the unit) > defaults. Environment values are fixed for the
# life of the process: a SIGHUP reload re-reads the TOML file only, so put settings you want
# to change at run time there (README: Reload). atlas.service also sets
# ATLAS_STATE_DIR=/var/lib/atlas; a value here overrides it.
# Generated by `atlas check-config --format env` (run with a clean environment to regenerate).
";

#[cfg(test)]
mod tests {
    use super::*;

    /// `systemd/atlas.env` lists every setting with its default: it is exactly what
    /// `render_env` prints with nothing set.
    #[test]
    fn shipped_env_file_lists_every_setting() {
        let shipped = include_str!("../../systemd/atlas.env");
        let expected = render_env(&Raw::default());
        assert!(
            shipped == expected,
            "systemd/atlas.env is out of date; regenerate it with\n  \
             env -i cargo run -q -- check-config --format env > systemd/atlas.env"
        );
        for setting in SETTINGS {
            assert!(
                shipped.contains(&format!("\n#{}=", setting.env)),
                "{}",
                setting.env
            );
        }
    }

    #[test]
    fn env_format_uncomments_what_is_set() {
        let env = env_from(&[("BATCH_SIZE", "8")]);
        let (raw, _) = gather(&Flags::default(), env);
        let text = render_env(&raw);
        assert!(text.contains("\nBATCH_SIZE=8\n"));
        assert!(text.contains("\n#BATCH_TIMEOUT_MS=50\n"));
    }

    fn env_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_request_memo_is_off_or_large_enough_to_hold_entries() {
        for (value, ok) in [
            ("0", true),
            ("65536", true),
            ("8388608", true),
            ("4096", false),
            ("65535", false),
        ] {
            let (raw, _) = gather(
                &Flags::default(),
                env_from(&[("ATLAS_REQUEST_MEMO_BYTES", value)]),
            );
            match build(&raw) {
                Ok(c) => assert!(ok && c.request_memo_bytes == value.parse::<usize>().unwrap()),
                Err(errors) => assert!(
                    !ok && errors.iter().any(|e| e.name == "ATLAS_REQUEST_MEMO_BYTES"),
                    "{value}: {errors:?}"
                ),
            }
        }
    }

    #[test]
    fn table_defaults_parse_to_config_default() {
        let (raw, errors) = gather(&Flags::default(), |_| None);
        assert!(errors.is_empty());
        assert_eq!(build(&raw).unwrap(), Config::default());
    }

    /// Every setting in the table is actually parsed: an invalid value for it is reported
    /// under its name (ATLAS_LOG takes any text).
    #[test]
    fn every_setting_is_parsed() {
        // Any text is a valid log filter, issuer or audience: those are checked below.
        let free_text = ["ATLAS_LOG", "ATLAS_JWT_ISSUER", "ATLAS_JWT_AUDIENCE"];
        for setting in SETTINGS.iter().filter(|s| !free_text.contains(&s.env)) {
            let env = env_from(&[(setting.env, "not-a-valid-value")]);
            let (raw, _) = gather(&Flags::default(), env);
            let errors = build(&raw).expect_err(setting.env);
            assert!(
                errors.iter().any(|e| e.name == setting.env),
                "{} is in the table but never parsed",
                setting.env
            );
        }
    }

    #[test]
    fn free_text_settings_are_parsed() {
        let env = env_from(&[
            ("ATLAS_JWT_ISSUER", "https://id.example"),
            ("ATLAS_JWT_AUDIENCE", "atlas"),
        ]);
        let (raw, _) = gather(&Flags::default(), env);
        let c = build(&raw).unwrap();
        assert_eq!(c.jwt_issuer.as_deref(), Some("https://id.example"));
        assert_eq!(c.jwt_audience.as_deref(), Some("atlas"));
    }

    #[test]
    fn every_bad_value_is_reported_by_name() {
        let env = env_from(&[
            ("ATLAS_CORES", "zero"),
            ("BATCH_SIZE", "0"),
            ("ALERT_ERROR_RATE", "2"),
            ("ENABLE_PROMETHEUS", "maybe"),
        ]);
        let (raw, _) = gather(&Flags::default(), env);
        let errors = build(&raw).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ATLAS_CORES",
                "BATCH_SIZE",
                "ENABLE_PROMETHEUS",
                "ALERT_ERROR_RATE"
            ]
        );
        assert!(errors[0]
            .to_string()
            .contains("ATLAS_CORES=\"zero\" (from environment)"));
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let dir = std::env::temp_dir().join(format!("atlas-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("atlas.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\ncores = 1\nbatch_size = 8\nmax_connections = 7\n",
        )
        .unwrap();
        let flags = Flags {
            listen: Some("127.0.0.1:3".into()),
            cores: None,
            config_file: Some(file.clone()),
        };
        let env = env_from(&[("ATLAS_LISTEN", "127.0.0.1:2"), ("BATCH_SIZE", "16")]);
        let (raw, errors) = gather(&flags, env);
        assert!(errors.is_empty(), "{errors:?}");
        let c = build(&raw).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.batch_size, 16);
        assert_eq!(c.cores, Some(1));
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.batch_timeout, Duration::from_millis(50));
        let rendered = render(&raw);
        assert!(rendered.contains("# flag"));
        assert!(rendered.contains(&format!("# file {}", file.display())));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("atlas-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("atlas.toml");
        std::fs::write(&file, "lisen = \"x\"\n[table]\na = 1\n").unwrap();
        let flags = Flags {
            config_file: Some(file),
            ..Flags::default()
        };
        let (_, errors) = gather(&flags, |_| None);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].problem.contains("unknown key `lisen`"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

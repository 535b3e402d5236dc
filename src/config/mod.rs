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

mod parse;
mod render;

pub use parse::build;
use parse::{boolean, int_in, secs, Parser};
pub use render::{render, render_env};

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use settings::{Setting, SETTINGS};

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

#[cfg(test)]
mod tests;

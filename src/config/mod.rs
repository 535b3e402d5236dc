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
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use settings::{Config, Setting, SETTINGS};

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

impl Config {
    /// The rate limits, from the `ATLAS_RATE_LIMIT_*` settings.
    pub fn rate_limits(&self) -> ratelimit::RateLimitConfig {
        ratelimit::RateLimitConfig {
            user_rps: self.rate_limit_user_rps,
            user_burst: self.rate_limit_user_burst,
            global_rps: self.rate_limit_global_rps,
            global_burst: self.rate_limit_global_burst,
            count_hits: self.rate_limit_hits,
            max_users: self.rate_limit_max_users,
            redis_failure: self.rate_limit_redis_failure,
        }
    }
}

/// Every setting at its default (the table's text defaults, parsed).
#[cfg(test)]
impl Default for Config {
    fn default() -> Self {
        build(&Raw::default()).expect("every default parses (settings::tests)")
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

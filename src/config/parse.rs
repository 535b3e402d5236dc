//! Parsing and validating the gathered values into a [`Config`]: one parser per setting, every
//! bad value reported by its variable name, all at once.

use std::net::SocketAddr;

use super::*;

/// Parses and validates every raw value, reporting all problems at once.
pub fn build(raw: &Raw) -> Result<Config, Vec<ConfigError>> {
    let mut p = Parser {
        raw,
        errors: Vec::new(),
    };
    let config = Config::from_rows(&mut p);
    if let Some(c) = &config {
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
    }
    match config {
        Some(c) if p.errors.is_empty() => Ok(c),
        _ => {
            // In the table's order (the grouped cache rows are parsed after the others).
            p.errors
                .sort_by_key(|e| SETTINGS.iter().position(|s| s.env == e.name));
            Err(p.errors)
        }
    }
}

pub(super) struct Parser<'a> {
    pub(super) raw: &'a Raw,
    pub(super) errors: Vec<ConfigError>,
}

impl Parser<'_> {
    /// The value of setting `env` parsed by `parse`. A bad value is reported (by `env`) and
    /// its `default` taken instead, so that every other problem is still found; `None` only
    /// when the default does not parse either (reported too).
    pub(super) fn take<T>(
        &mut self,
        env: &'static str,
        default: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let mut value = None;
        self.set(&mut value, env, |v| parse(v).map(Some));
        value.or_else(|| match parse(default) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.errors.push(ConfigError {
                    name: env.to_string(),
                    value: Some(default.to_string()),
                    source: Source::Default,
                    problem: format!("the built-in default does not parse: {problem}"),
                });
                None
            }
        })
    }

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

/// `IP:PORT`.
pub(super) fn socket_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse::<SocketAddr>()
        .map_err(|_| "expected IP:PORT, for example 127.0.0.1:8083 or [::1]:0".to_string())
}

/// Empty (`None`: computed at start) or an integer from `min` to `max`.
pub(super) fn optional_int(v: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
    if v.is_empty() {
        Ok(None)
    } else {
        int_in(v, min, max).map(Some)
    }
}

/// `ATLAS_AUTH`: empty, `required` or `off`.
pub(super) fn auth_mode(v: &str) -> Result<AuthMode, String> {
    match v {
        "" => Ok(AuthMode::Auto),
        "required" => Ok(AuthMode::Required),
        "off" => Ok(AuthMode::Off),
        _ => Err("expected required or off".to_string()),
    }
}

/// `ATLAS_JWT_SECRET`: empty or at least 32 bytes.
pub(super) fn jwt_secret(v: &str) -> Result<Option<String>, String> {
    match v.len() {
        0 => Ok(None),
        1..=31 => Err("at least 32 bytes (HS256 needs a 256-bit key)".to_string()),
        _ => Ok(Some(v.to_string())),
    }
}

/// `ATLAS_JWT_PUBLIC_KEY`: empty, PEM text, or an absolute path to a PEM file.
pub(super) fn public_key(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        Ok(None)
    } else if v.starts_with("-----BEGIN") || v.starts_with('/') {
        Ok(Some(v.to_string()))
    } else {
        Err("expected PEM text or an absolute path to a PEM file".to_string())
    }
}

/// Empty or an absolute path (`what` names it in the error: "path", "directory path").
pub(super) fn absolute_path(v: &str, what: &str) -> Result<Option<PathBuf>, String> {
    if v.is_empty() {
        Ok(None)
    } else if v.starts_with('/') {
        Ok(Some(PathBuf::from(v)))
    } else {
        Err(format!("expected an absolute {what}"))
    }
}

/// `ATLAS_ADMIN_TOKEN`: empty, or at least 32 printable characters without spaces.
pub(super) fn admin_token(v: &str) -> Result<Option<String>, String> {
    match v.len() {
        0 => Ok(None),
        1..=31 => Err("at least 32 characters".to_string()),
        _ if v.bytes().any(|b| !b.is_ascii_graphic()) => {
            Err("printable characters without spaces".to_string())
        }
        _ => Ok(Some(v.to_string())),
    }
}

/// `ATLAS_REDIS_PREFIX`: up to 64 printable characters, ending in `:`.
pub(super) fn redis_prefix(v: &str) -> Result<String, String> {
    if v.len() > 64 || !v.ends_with(':') || v.bytes().any(|b| !b.is_ascii_graphic()) {
        Err("expected up to 64 printable characters without spaces, ending in `:`".to_string())
    } else {
        Ok(v.to_string())
    }
}

/// Empty or an `http://host:port/path` URL.
pub(super) fn optional_url(v: &str) -> Result<Option<url::HttpUrl>, String> {
    if v.is_empty() {
        Ok(None)
    } else {
        url::parse(v, true).map(Some)
    }
}

/// A fraction from 0 to 1.
pub(super) fn fraction(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a fraction from 0 to 1, for example 0.05".to_string()),
    }
}

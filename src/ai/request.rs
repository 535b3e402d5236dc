//! The `/ai/{operation}` request: the JSON envelope, its cache controls and priority (from the
//! body or the `Cache-Control` / `X-Priority` headers), validated on the accepting shard.
//!
//! Parsing is two steps because a request with `use_context` only has its input once the
//! user's stored context is merged in: [`parse`] reads the envelope into a [`Draft`], and
//! [`Draft::finish`] merges the context (if any) and validates the input.
//!
//! Every problem becomes a 400 naming the field path (`input.holdings[2].prices`), a 415 for
//! a non-JSON body, or a 422 for input that is well-formed but impossible. Also home of the
//! body and name checks the other `/ai/*` routes share ([`parse_body`], [`check_user`],
//! [`check_name`]). No I/O here.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use atlas_shard::{CacheKey, Operation, Priority};

use super::engine::JobSpec;
use crate::error::{truncate, ApiError};
use crate::http::{Request, Status};
use crate::models::{self, ModelError, ModelInput};

/// Longest accepted `user_id`.
pub const MAX_USER_LEN: usize = 256;
/// Most `dependencies` tags on one request, and the longest tag.
const MAX_TAGS: usize = 64;
const MAX_TAG_LEN: usize = 256;

/// How a request uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheMode {
    /// Look up; on a miss compute (sharing identical computations in flight) and store.
    Default,
    /// Recompute and replace the stored result (same as `no_cache`, named for intent).
    Refresh,
    /// Skip the lookup, compute, store the fresh result.
    NoCache,
    /// Skip the lookup and do not store.
    NoStore,
}

impl CacheMode {
    fn from_name(s: &str) -> Option<CacheMode> {
        match s {
            "default" => Some(CacheMode::Default),
            "refresh" => Some(CacheMode::Refresh),
            "no_cache" => Some(CacheMode::NoCache),
            "no_store" => Some(CacheMode::NoStore),
            _ => None,
        }
    }

    /// Whether a fresh result is written to the cache.
    pub fn stores(self) -> bool {
        self != CacheMode::NoStore
    }
}

/// A validated `/ai/{operation}` request, ready to be routed to its owner shard.
#[derive(Debug, Clone)]
pub struct AiRequest {
    /// The operation.
    pub op: Operation,
    /// The user the result belongs to (part of the cache key).
    pub user: String,
    /// The typed, validated model input.
    pub input: ModelInput,
    /// Canonical bytes of `input` (see `canonical`).
    pub canonical: Vec<u8>,
    /// Scheduling priority.
    pub priority: Priority,
    /// Cache use.
    pub mode: CacheMode,
    /// Oldest cached result the client accepts, and the longest TTL a fresh result may get
    /// (`cache.ttl_s` or `Cache-Control: max-age`). Only ever shortens the configured TTL.
    pub max_age: Option<Duration>,
    /// Dependency tags the result declares (`user:u-42:transactions`; `context:<user>` when
    /// the user's context was merged in).
    pub dependencies: Vec<String>,
}

/// A request whose envelope is valid but whose input is not checked yet: with `use_context`
/// the input is only complete once the user's context is merged in.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The operation.
    pub op: Operation,
    /// The user the result belongs to.
    pub user: String,
    /// `input` as sent (absent is allowed only with `use_context`).
    input: Option<Value>,
    /// Whether the user's stored context is merged into `input`.
    pub use_context: bool,
    /// Scheduling priority.
    pub priority: Priority,
    mode: CacheMode,
    max_age: Option<Duration>,
    dependencies: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    user_id: String,
    /// `null` is kept as a value (and refused as not an object), not taken as absent.
    #[serde(default, deserialize_with = "present")]
    input: Option<Value>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default, deserialize_with = "cache_object")]
    cache: Option<CacheOptions>,
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    use_context: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheOptions {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default, deserialize_with = "whole_seconds")]
    ttl_s: Option<u64>,
}

/// Longest `cache.ttl_s`: a year (no TTL is longer, and the field only shortens one).
const MAX_TTL_S: u64 = 31_536_000;

/// `cache.ttl_s`: a whole number of seconds from 0 to a year, also when written as a float
/// (`60.0`), as JSON Schema counts integers; `null` is none.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Some(u),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= MAX_TTL_S as f64 => Some(f as u64),
        _ => None,
    };
    whole.filter(|s| *s <= MAX_TTL_S).map(Some).ok_or_else(|| {
        D::Error::custom(format!(
            "expected a whole number of seconds from 0 to {MAX_TTL_S}, got {n}"
        ))
    })
}

/// `cache`: an object (or `null`, none); serde alone would read the struct from an array.
fn cache_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<CacheOptions>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(v @ Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom("expected a JSON object")),
    }
}

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(Status::BadRequest, "invalid_request", message)
}

/// Turns a model validation error into its HTTP error.
pub fn model_error(e: ModelError) -> ApiError {
    match e {
        ModelError::Invalid { path, message } => invalid(format!("{path}: {message}")),
        ModelError::Inconsistent { path, message } => ApiError::new(
            Status::UnprocessableEntity,
            "inconsistent_input",
            format!("{path}: {message}"),
        ),
        ModelError::Unprocessable { message } => {
            ApiError::new(Status::UnprocessableEntity, "unprocessable_input", message)
        }
        ModelError::Numerical { message } => ApiError::new(
            Status::UnprocessableEntity,
            "numerical_failure",
            format!("the model could not compute a finite result: {message}"),
        ),
    }
}

/// Whether `body` starts (after whitespace) with `{`, as every JSON body of the API must.
pub fn starts_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Reads a JSON body into `T`: 415 for a non-JSON media type, 400 `invalid_json` for bad
/// syntax or trailing bytes, 400 `invalid_request` naming the field path for a missing,
/// unknown or ill-typed field.
pub fn parse_body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    if let Some(ct) = request.header("content-type") {
        let ct = std::str::from_utf8(ct).unwrap_or("");
        if !json_compatible(ct) {
            return Err(ApiError::new(
                Status::UnsupportedMediaType,
                "unsupported_media_type",
                format!(
                    "body must be JSON (application/json), not `{}`",
                    truncate(ct, 64)
                ),
            ));
        }
    }
    // Every body is a JSON object; serde would read a struct from an array too.
    let first = request.body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some() && !starts_object(&request.body) {
        return Err(if first == Some(&b'[') {
            invalid("the body must be a JSON object, not an array")
        } else if serde_json::from_slice::<serde::de::IgnoredAny>(&request.body).is_ok() {
            invalid("the body must be a JSON object")
        } else {
            ApiError::new(
                Status::BadRequest,
                "invalid_json",
                "body is not valid JSON (expected a JSON object)",
            )
        });
    }
    let mut de = serde_json::Deserializer::from_slice(&request.body);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(e) => e,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(if inner.is_syntax() || inner.is_eof() {
                ApiError::new(
                    Status::BadRequest,
                    "invalid_json",
                    format!("body is not valid JSON: {inner}"),
                )
            } else if path == "." {
                invalid(inner.to_string())
            } else {
                invalid(format!("{path}: {inner}"))
            });
        }
    };
    if de.end().is_err() {
        return Err(ApiError::new(
            Status::BadRequest,
            "invalid_json",
            "body has trailing characters after the JSON value",
        ));
    }
    Ok(value)
}

/// Checks a user id the way every route does: 1 to 256 characters (code points, as the
/// OpenAPI document's `maxLength` counts them), no control characters. `path` names the
/// field in the error (`user_id`, `keys[2].user_id`).
pub fn check_user(user: &str, path: &str) -> Result<(), ApiError> {
    if !printable_within(user, MAX_USER_LEN) {
        return Err(invalid(format!(
            "{path}: must be 1 to {MAX_USER_LEN} characters without control characters"
        )));
    }
    Ok(())
}

/// Whether `s` is 1 to `max` characters (code points), none a control character; one pass.
fn printable_within(s: &str, max: usize) -> bool {
    let mut n = 0;
    for c in s.chars() {
        n += 1;
        if n > max || c.is_control() {
            return false;
        }
    }
    n > 0
}

/// Checks a tag or symbol name: 1 to `max` characters, no control characters.
pub fn check_name(name: &str, max: usize, path: &str) -> Result<(), ApiError> {
    if !printable_within(name, max) {
        return Err(invalid(format!(
            "{path}: must be 1 to {max} characters without control characters"
        )));
    }
    Ok(())
}

/// Parses and validates the envelope of a request for `op` (not yet its input).
pub fn parse(op: Operation, request: &Request) -> Result<Draft, ApiError> {
    let envelope: Envelope = parse_body(request)?;
    let user = envelope.user_id;
    check_user(&user, "user_id")?;
    if envelope.dependencies.len() > MAX_TAGS {
        return Err(invalid(format!("dependencies: at most {MAX_TAGS} tags")));
    }
    for (i, tag) in envelope.dependencies.iter().enumerate() {
        check_name(tag, MAX_TAG_LEN, &format!("dependencies[{i}]"))?;
    }
    if envelope.input.is_none() && !envelope.use_context {
        return Err(invalid("missing field `input`"));
    }

    let priority = priority(envelope.priority.as_deref(), request)?;
    let (mut mode, mut max_age) = (CacheMode::Default, None);
    if let Some(c) = &envelope.cache {
        if let Some(m) = &c.mode {
            mode = CacheMode::from_name(m).ok_or_else(|| {
                invalid("cache.mode: expected one of default, no_cache, no_store, refresh")
            })?;
        }
        max_age = c.ttl_s.map(Duration::from_secs);
    }
    let (header_mode, header_max_age) = cache_control(request)?;
    mode = mode.max(header_mode);
    max_age = match (max_age, header_max_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if max_age == Some(Duration::ZERO) {
        // Nothing cached is young enough: recompute, and keep nothing.
        mode = mode.max(CacheMode::NoStore);
    }

    Ok(Draft {
        op,
        user,
        input: envelope.input,
        use_context: envelope.use_context,
        priority,
        mode,
        max_age,
        dependencies: envelope.dependencies,
    })
}

impl Draft {
    /// Merges the user's stored context into the input (when the request asked for it; see
    /// [`super::context::merge`]), then validates the input and builds the request. A result
    /// computed from a context depends on it: it carries the tag `context:<user_id>`.
    pub fn finish(self, context: Option<&Map<String, Value>>) -> Result<AiRequest, ApiError> {
        let mut dependencies = self.dependencies;
        let merged = context.is_some();
        let input = match (self.input, context) {
            (input, Some(context)) => {
                let mut fields = match input {
                    None => Map::new(),
                    Some(Value::Object(fields)) => fields,
                    Some(_) => return Err(invalid("input: must be a JSON object")),
                };
                super::context::merge(self.op, &mut fields, context);
                dependencies.push(super::context::tag(&self.user));
                Value::Object(fields)
            }
            (Some(input), None) => input,
            (None, None) => return Err(invalid("missing field `input`")),
        };
        let typed = models::parse_input(self.op, &input)
            .map_err(|e| match e {
                // The request and the stored context each passed their own checks; together
                // they do not make a valid input: 422, saying where the input came from.
                ModelError::Invalid { path, message } if merged => ModelError::Inconsistent {
                    path: format!("{path} (input with the stored context merged in)"),
                    message,
                },
                other => other,
            })
            .map_err(model_error)?;
        Ok(AiRequest {
            op: self.op,
            user: self.user,
            canonical: super::canonical::to_vec(&input),
            input: typed,
            priority: self.priority,
            mode: self.mode,
            max_age: self.max_age,
            dependencies,
        })
    }
}

impl AiRequest {
    /// The owner shard's view of this request: its cache key built, the rest moved in.
    pub fn into_spec(self) -> Result<JobSpec, ApiError> {
        let key = CacheKey::new(self.op, Some(&self.user), &self.canonical)
            .map_err(|e| invalid(format!("user_id: {e}")))?;
        Ok(JobSpec {
            key,
            input: self.input,
            priority: self.priority,
            mode: self.mode,
            max_age: self.max_age,
            tags: self.dependencies,
        })
    }
}

/// Media types whose body is read as JSON: `application/json` and `*/*+json`, plus
/// `text/plain` and `application/x-www-form-urlencoded`, which plain `curl -d` sends. Anything
/// else (multipart, XML, ...) is refused with 415.
pub fn json_compatible(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json"
        || media.ends_with("+json")
        || media == "text/plain"
        || media == "application/x-www-form-urlencoded"
}

fn priority_from(name: &str) -> Option<Priority> {
    match name.trim().to_ascii_lowercase().as_str() {
        "high" => Some(Priority::High),
        "normal" => Some(Priority::Normal),
        "low" => Some(Priority::Low),
        _ => None,
    }
}

/// The body's `priority`, else the `X-Priority` header, else normal. A header that is not a
/// priority is refused even when the body gives one.
fn priority(body: Option<&str>, request: &Request) -> Result<Priority, ApiError> {
    let header = match request.header("x-priority") {
        None => None,
        Some(h) => Some(
            std::str::from_utf8(h)
                .ok()
                .and_then(priority_from)
                .ok_or_else(|| invalid("X-Priority header: expected high, normal or low"))?,
        ),
    };
    match body {
        Some(p) => {
            priority_from(p).ok_or_else(|| invalid("priority: expected high, normal or low"))
        }
        None => Ok(header.unwrap_or(Priority::Normal)),
    }
}

/// `Cache-Control` on the request: `no-cache`, `no-store`, `max-age=N`.
fn cache_control(request: &Request) -> Result<(CacheMode, Option<Duration>), ApiError> {
    let Some(value) = request.header("cache-control") else {
        return Ok((CacheMode::Default, None));
    };
    let value = std::str::from_utf8(value).unwrap_or("");
    let mut mode = CacheMode::Default;
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" {
            mode = mode.max(CacheMode::NoCache);
        } else if lower == "no-store" {
            mode = mode.max(CacheMode::NoStore);
        } else if let Some(n) = lower.strip_prefix("max-age=") {
            let secs: u64 = n
                .trim_matches('"')
                .parse()
                .map_err(|_| invalid("Cache-Control: max-age must be a non-negative integer"))?;
            max_age = Some(Duration::from_secs(secs));
        }
    }
    Ok((mode, max_age))
}

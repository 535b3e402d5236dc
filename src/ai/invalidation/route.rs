//! The body of `POST /ai/cache/invalidate` (selectors, each list bounded, each name checked as
//! requests' names are), turned into an [`Invalidation`] ([`read`]); the app's handler applies
//! it everywhere.

use serde::Deserialize;
use serde_json::Value;

use atlas_shard::Operation;

use super::{Invalidation, KeyRef, MAX_LIST, MAX_NAME_LEN};
use crate::ai::request::{check_name, check_user, parse_body};
use crate::error::ApiError;
use crate::http::{Request, Status};

/// The body of `POST /ai/cache/invalidate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Body {
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    symbols: Vec<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    keys: Vec<KeyBody>,
    #[serde(default)]
    all: bool,
}

/// One key of the body, named the way an AI request names it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyBody {
    operation: String,
    user_id: String,
    input: Value,
}

pub(super) fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(Status::BadRequest, "invalid_request", message)
}

/// The operation named `name` at `path`, or a 400 listing the known ones.
pub fn operation(name: &str, path: &str) -> Result<Operation, ApiError> {
    Operation::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        invalid(format!(
            "{path}: unknown operation `{}`; known: {}",
            crate::error::truncate(name, 64),
            known.join(", ")
        ))
    })
}

/// Checks a list of tags or symbols at `path`.
pub fn check_names(names: &[String], path: &str) -> Result<(), ApiError> {
    if names.len() > MAX_LIST {
        return Err(invalid(format!("{path}: at most {MAX_LIST} names")));
    }
    for (i, name) in names.iter().enumerate() {
        check_name(name, MAX_NAME_LEN, &format!("{path}[{i}]"))?;
    }
    Ok(())
}

/// Validates the body and turns it into an invalidation.
pub(super) fn from_body(body: Body) -> Result<Invalidation, ApiError> {
    check_names(&body.dependencies, "dependencies")?;
    check_names(&body.symbols, "symbols")?;
    if let Some(user) = &body.user_id {
        check_user(user, "user_id")?;
    }
    let operations = match &body.operation {
        Some(name) => vec![operation(name, "operation")?],
        None => Vec::new(),
    };
    if body.keys.len() > MAX_LIST {
        return Err(invalid(format!("keys: at most {MAX_LIST} keys")));
    }
    let mut keys = Vec::with_capacity(body.keys.len());
    for (i, key) in body.keys.into_iter().enumerate() {
        let op = operation(&key.operation, &format!("keys[{i}].operation"))?;
        check_user(&key.user_id, &format!("keys[{i}].user_id"))?;
        if !key.input.is_object() {
            return Err(invalid(format!("keys[{i}].input: must be a JSON object")));
        }
        keys.push(KeyRef {
            operation: op,
            user_id: key.user_id,
            canonical_input: String::from_utf8_lossy(&crate::ai::canonical::to_vec(&key.input))
                .into_owned(),
        });
    }
    let inv = Invalidation {
        all: body.all,
        keys,
        tags: body.dependencies,
        symbols: body.symbols,
        users: body.user_id.into_iter().collect(),
        operations,
    };
    if inv.all && inv.kinds().count() > 1 {
        return Err(invalid(
            "all: `all: true` removes everything and cannot be combined with other selectors",
        ));
    }
    if inv.is_empty() {
        return Err(ApiError::new(
            Status::BadRequest,
            "empty_invalidation",
            "name at least one of dependencies, symbols, user_id, operation, keys, or all: true",
        ));
    }
    Ok(inv)
}

/// Reads the body of `POST /ai/cache/invalidate` into the invalidation it asks for.
pub fn read(request: &Request) -> Result<Invalidation, ApiError> {
    parse_body::<Body>(request).and_then(from_body)
}

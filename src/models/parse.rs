//! Turning the request's `input` JSON into typed inputs, with field paths in every error.
//!
//! Shape errors (missing, ill-typed or unknown fields) come from serde through
//! `serde_path_to_error`; semantic checks use the small helpers here so that every message
//! names its path from the request root (`input.holdings[2].prices`).

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::error::ModelError;

/// Root of every path: the request body's `input` field.
pub(crate) const ROOT: &str = "input";

/// Deserialises `input` into `T`, mapping serde errors to [`ModelError::Invalid`] with the
/// path of the offending field. For a missing or unknown field the field's own name ends the
/// path (`input.holdings[0].symbol`). `input` itself must be an object.
pub(crate) fn from_value<T: DeserializeOwned>(input: &Value) -> Result<T, ModelError> {
    if !input.is_object() {
        // serde would also accept a struct written as an array; the API does not.
        return Err(ModelError::invalid(ROOT, "must be a JSON object"));
    }
    serde_path_to_error::deserialize(input).map_err(|err| {
        let mut path = String::from(ROOT);
        for segment in err.path().iter() {
            match segment {
                Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                Segment::Map { key } => {
                    path.push('.');
                    path.push_str(key);
                }
                Segment::Enum { variant } => {
                    path.push('.');
                    path.push_str(variant);
                }
                Segment::Unknown => path.push_str(".?"),
            }
        }
        let message = err.into_inner().to_string();
        if let Some(field) = quoted_field(&message, "missing field `")
            .or_else(|| quoted_field(&message, "unknown field `"))
        {
            if !path.ends_with(&format!(".{field}")) {
                path.push('.');
                path.push_str(field);
            }
        }
        ModelError::invalid(path, message)
    })
}

/// The name between backticks after `prefix` when `message` starts with `prefix`.
fn quoted_field<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// Child path `parent.field`.
pub(crate) fn field(parent: &str, name: &str) -> String {
    format!("{parent}.{name}")
}

/// Child path `parent[index]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Checks `lo <= x <= hi` (and finiteness), naming `path` on failure.
pub(crate) fn in_range(path: &str, x: f64, lo: f64, hi: f64) -> Result<(), ModelError> {
    if x.is_finite() && x >= lo && x <= hi {
        Ok(())
    } else {
        Err(ModelError::invalid(
            path,
            format!("must be between {lo} and {hi}, got {x}"),
        ))
    }
}

/// Checks an integer `lo <= x <= hi`, naming `path` on failure.
pub(crate) fn in_range_int(path: &str, x: u64, lo: u64, hi: u64) -> Result<(), ModelError> {
    if (lo..=hi).contains(&x) {
        Ok(())
    } else {
        Err(ModelError::invalid(
            path,
            format!("must be between {lo} and {hi}, got {x}"),
        ))
    }
}

/// Checks `lo <= len <= hi` for a list at `path`.
pub(crate) fn len_between(path: &str, len: usize, lo: usize, hi: usize) -> Result<(), ModelError> {
    if len < lo {
        Err(ModelError::invalid(
            path,
            format!("must have at least {lo} elements, got {len}"),
        ))
    } else if len > hi {
        Err(ModelError::invalid(
            path,
            format!("must have at most {hi} elements, got {len}"),
        ))
    } else {
        Ok(())
    }
}

/// Checks a name: 1 to `max` characters, no control characters or whitespace at either end.
pub(crate) fn name(path: &str, s: &str, max: usize) -> Result<(), ModelError> {
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(ModelError::invalid(
            path,
            format!("must be 1 to {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) || s.trim() != s {
        return Err(ModelError::invalid(
            path,
            "must not contain control characters or surrounding whitespace",
        ));
    }
    Ok(())
}

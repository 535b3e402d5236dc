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
///
/// A whole number written as a float (`2.0`) is an integer, as JSON Schema (and so the
/// OpenAPI document) counts it: when serde refuses a float for an integer field, the input is
/// read again with every whole-number float as an integer (integers read into float fields
/// unchanged, so only the integer fields see a difference).
pub(crate) fn from_value<T: DeserializeOwned>(input: &Value) -> Result<T, ModelError> {
    if !input.is_object() {
        // serde would also accept a struct written as an array; the API does not.
        return Err(ModelError::invalid(ROOT, "must be a JSON object"));
    }
    match serde_path_to_error::deserialize(input) {
        Ok(v) => Ok(v),
        Err(err)
            if err
                .inner()
                .to_string()
                .starts_with("invalid type: floating point") =>
        {
            let mut whole = input.clone();
            integral(&mut whole);
            serde_path_to_error::deserialize(&whole).map_err(path_error)
        }
        Err(err) => Err(path_error(err)),
    }
}

/// Largest magnitude below which every whole-number float is an exact integer (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Rewrites every whole-number float in `v` (within ±2^53) as an integer.
fn integral(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n
                .as_f64()
                .filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < EXACT)
            {
                *v = if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral),
        Value::Object(fields) => fields.values_mut().for_each(integral),
        _ => {}
    }
}

fn path_error(err: serde_path_to_error::Error<serde_json::Error>) -> ModelError {
    {
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
    }
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

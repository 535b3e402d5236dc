//! One output of a remote batch, as both wire protocols carry it: `{"result": {...},
//! "confidence": c, "volatility": v, "dependencies": [...], "symbols": [...]}`, or an
//! `{"error": ...}` that fails its input alone. The batch protocol carries these objects in
//! `outputs`; the Open Inference Protocol carries each as the JSON text of one element of a
//! `BYTES` tensor.

use serde::Deserialize;
use serde_json::Value;

use super::EndpointError;
use crate::models::{ModelError, ModelInput, ModelOutput};

/// Most `dependencies` or `symbols` one output may declare, and the longest of each.
pub(crate) const MAX_OUTPUT_TAGS: usize = 256;
const MAX_OUTPUT_TAG_LEN: usize = 256;

/// One output as sent.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum WireOutput {
    Err {
        error: WireError,
    },
    Ok {
        result: Value,
        confidence: f64,
        #[serde(default)]
        volatility: f64,
        #[serde(default)]
        dependencies: Vec<String>,
        #[serde(default)]
        symbols: Vec<String>,
    },
}

/// An item's failure: `{"code": ..., "message": ...}` (the batch protocol) or a bare message
/// (the form the Open Inference Protocol's contract documents).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum WireError {
    Coded { code: String, message: String },
    Message(String),
}

/// The JSON value of one input, as both protocols send it (the typed input's fields in
/// declaration order: the same input gives the same bytes).
pub(crate) fn input_value(input: &ModelInput) -> Result<Value, EndpointError> {
    match input {
        ModelInput::Portfolio(x) => serde_json::to_value(x),
        ModelInput::Budget(x) => serde_json::to_value(x),
        ModelInput::Risk(x) => serde_json::to_value(x),
        ModelInput::Cashflow(x) => serde_json::to_value(x),
    }
    .map_err(|e| EndpointError::Protocol(format!("cannot encode an input: {e}")))
}

fn item_error(e: WireError) -> ModelError {
    let (code, message) = match e {
        WireError::Coded { code, message } => (code, message),
        WireError::Message(message) => (String::new(), message),
    };
    match code.as_str() {
        "invalid_request" | "invalid_input" => ModelError::Invalid {
            path: "input".to_string(),
            message,
        },
        "inconsistent_input" => ModelError::Inconsistent {
            path: "input".to_string(),
            message,
        },
        "numerical_failure" => ModelError::Numerical { message },
        "" => ModelError::Unprocessable {
            message: format!("endpoint error: {message}"),
        },
        _ => ModelError::Unprocessable {
            message: format!("endpoint error {code}: {message}"),
        },
    }
}

/// Checks output `i` and turns it into the item's result. `Err` is a malformed output, which
/// fails the whole call: a `result` that is not an object, or too many or malformed tags
/// (at most 256 each, 1 to 256 bytes without control characters, so that an endpoint cannot
/// bloat the cache's dependency index). A non-finite confidence or volatility fails the item
/// alone, as a numerical failure.
pub(crate) fn decode(
    i: usize,
    output: WireOutput,
) -> Result<Result<ModelOutput, ModelError>, EndpointError> {
    match output {
        WireOutput::Err { error } => Ok(Err(item_error(error))),
        WireOutput::Ok {
            result,
            confidence,
            volatility,
            dependencies,
            symbols,
        } => {
            let bad = |what: &str| EndpointError::Protocol(format!("outputs[{i}]: {what}"));
            if !result.is_object() {
                return Err(bad("`result` is not an object"));
            }
            for list in [&dependencies, &symbols] {
                if list.len() > MAX_OUTPUT_TAGS
                    || list.iter().any(|t| {
                        t.is_empty()
                            || t.len() > MAX_OUTPUT_TAG_LEN
                            || t.chars().any(char::is_control)
                    })
                {
                    return Err(bad("too many or malformed dependencies or symbols"));
                }
            }
            if !(confidence.is_finite() && volatility.is_finite()) {
                return Ok(Err(ModelError::Numerical {
                    message: "the endpoint returned a non-finite confidence or volatility"
                        .to_string(),
                }));
            }
            Ok(Ok(ModelOutput {
                result,
                confidence: confidence.clamp(0.0, 1.0),
                volatility: volatility.max(0.0),
                dependencies,
                symbols,
            }))
        }
    }
}

/// The message of an error answer's body, for the log and the call's error: `{"error":
/// "..."}` (the Open Inference Protocol), `{"error": {"message": "..."}}` (Atlas's errors),
/// else the body's start; at most 200 characters, control characters replaced.
pub(crate) fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(Value::String(s)) => s.clone(),
        Some(e) => e
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| e.to_string(), str::to_string),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<Result<ModelOutput, ModelError>, EndpointError> {
        decode(0, serde_json::from_str(json).unwrap())
    }

    #[test]
    fn errors_in_both_forms_fail_the_item_alone() {
        let coded = one(r#"{"error":{"code":"numerical_failure","message":"m"}}"#).unwrap();
        assert!(matches!(coded, Err(ModelError::Numerical { .. })));
        let bare = one(r#"{"error":"no such operation"}"#).unwrap();
        assert!(
            matches!(&bare, Err(ModelError::Unprocessable { message }) if message == "endpoint error: no such operation"),
            "{bare:?}"
        );
    }

    #[test]
    fn error_messages_are_short_and_printable() {
        assert_eq!(
            error_message(br#"{"error":"Model x not found"}"#),
            "Model x not found"
        );
        assert_eq!(
            error_message(br#"{"error":{"code":"c","message":"m"}}"#),
            "m"
        );
        assert_eq!(error_message(b"oops\n"), "oops ");
        assert_eq!(error_message(&[b'a'; 500]).len(), 200);
    }
}

//! What Atlas reads from an Open Inference Protocol model's metadata
//! (`GET /v2/models/{model}[/versions/{v}]`) and from a Triton model configuration
//! (`GET /v2/models/{model}/config`): whether the model allows the contract, and its batch
//! limit. Pure; fuzzed (`v2_response`).

use serde::Deserialize;
use serde_json::Value;

use super::short;

/// Largest `max_batch_size` taken from a model's metadata (as `max_batch` in
/// `ATLAS_ENDPOINTS`).
const MAX_SERVER_BATCH: u64 = 1024;

/// What Atlas takes from a model's metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The model's `max_batch_size`, when the server reports one.
    pub max_batch_size: Option<usize>,
    /// Whether the model declares its input as 2-D (`[-1, 1]`): requests then send `[n, 1]`.
    pub input_2d: bool,
}

/// The `max_batch_size` of a Triton model configuration (`GET /v2/models/M/config`) when it
/// is a positive integer (0 means the model does not batch: no limit from it), at most 1024.
pub fn config_max_batch(body: &[u8]) -> Option<usize> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("max_batch_size")?
        .as_u64()
        .filter(|b| *b > 0)
        .map(|b| b.min(MAX_SERVER_BATCH) as usize)
}

#[derive(Deserialize)]
struct ModelMetadata {
    #[serde(default)]
    inputs: Vec<TensorMetadata>,
    #[serde(default)]
    outputs: Vec<TensorMetadata>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    max_batch_size: Option<Value>,
}

#[derive(Deserialize)]
struct TensorMetadata {
    name: String,
    datatype: String,
    #[serde(default)]
    shape: Vec<i64>,
}

/// Checks a model's metadata against the contract: when it declares inputs, one is `input`
/// of datatype `BYTES` with a variable first dimension (`[-1]` or `[-1, 1]`); when it
/// declares outputs, one is `output` of datatype `BYTES`. Takes `max_batch_size` (top level,
/// as Triton's configuration names it, or in `parameters`) when it is a positive integer.
/// Pure; fuzzed (`v2_response`).
pub fn check_metadata(body: &[u8]) -> Result<Metadata, String> {
    let m: ModelMetadata = serde_json::from_slice(body)
        .map_err(|e| format!("its metadata is not valid: {}", short(&e)))?;
    let names = |ts: &[TensorMetadata]| {
        ts.iter()
            .take(8)
            .map(|t| t.name.chars().take(32).collect::<String>())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut input_2d = false;
    if !m.inputs.is_empty() {
        let input = m.inputs.iter().find(|t| t.name == "input").ok_or_else(|| {
            format!(
                "it declares no input tensor named `input` (it declares {})",
                names(&m.inputs)
            )
        })?;
        if input.datatype != "BYTES" {
            return Err(format!(
                "its input `input` is {}, not BYTES",
                input.datatype.chars().take(32).collect::<String>()
            ));
        }
        match input.shape.as_slice() {
            [] | [-1] => {}
            [-1, 1] | [-1, -1] => input_2d = true,
            other => {
                return Err(format!(
                    "its input `input` has shape {:?}; Atlas sends [n] or [n, 1], so it must be [-1] or [-1, 1]",
                    &other[..other.len().min(4)]
                ))
            }
        }
    }
    if !m.outputs.is_empty() {
        let output = m
            .outputs
            .iter()
            .find(|t| t.name == "output")
            .ok_or_else(|| {
                format!(
                    "it declares no output tensor named `output` (it declares {})",
                    names(&m.outputs)
                )
            })?;
        if output.datatype != "BYTES" {
            return Err(format!(
                "its output `output` is {}, not BYTES",
                output.datatype.chars().take(32).collect::<String>()
            ));
        }
    }
    let max_batch_size = m
        .max_batch_size
        .as_ref()
        .or_else(|| m.parameters.as_ref().and_then(|p| p.get("max_batch_size")))
        .and_then(Value::as_u64)
        .filter(|b| *b > 0)
        .map(|b| b.min(MAX_SERVER_BATCH) as usize);
    Ok(Metadata {
        max_batch_size,
        input_2d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tritons_model_configuration_gives_the_batch_limit() {
        let config = br#"{"name":"risk","platform":"python","max_batch_size":16,
            "input":[{"name":"input","data_type":"TYPE_STRING","dims":[1]}],
            "dynamic_batching":{"max_queue_delay_microseconds":0}}"#;
        assert_eq!(config_max_batch(config), Some(16));
        assert_eq!(
            config_max_batch(br#"{"max_batch_size":0}"#),
            None,
            "0: no batching limit"
        );
        assert_eq!(
            config_max_batch(br#"{"max_batch_size":100000}"#),
            Some(1024)
        );
        assert_eq!(config_max_batch(br#"{"error":"not found"}"#), None);
        assert_eq!(config_max_batch(b"not json"), None);
    }

    #[test]
    fn metadata_is_checked_against_the_contract() {
        let ok = |v: Value| check_metadata(v.to_string().as_bytes());
        // MLServer without declared tensors: anything goes.
        assert_eq!(
            ok(
                json!({"name": "risk", "versions": [], "platform": "", "inputs": [], "outputs": [], "parameters": {}})
            ),
            Ok(Metadata::default())
        );
        let declared = ok(json!({"name": "risk", "platform": "python",
            "inputs": [{"name": "input", "datatype": "BYTES", "shape": [-1, 1]}],
            "outputs": [{"name": "output", "datatype": "BYTES", "shape": [-1, 1]}],
            "max_batch_size": 8}))
        .unwrap();
        assert_eq!(
            declared,
            Metadata {
                max_batch_size: Some(8),
                input_2d: true
            }
        );
        assert_eq!(
            ok(json!({"parameters": {"max_batch_size": 5000}}))
                .unwrap()
                .max_batch_size,
            Some(1024)
        );
        for (bad, says) in [
            (
                json!({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1]}]}),
                "no input tensor named `input` (it declares x)",
            ),
            (
                json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1]}]}),
                "is FP32, not BYTES",
            ),
            (
                json!({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [4]}]}),
                "must be [-1] or [-1, 1]",
            ),
            (
                json!({"outputs": [{"name": "y", "datatype": "BYTES", "shape": [-1]}]}),
                "no output tensor named `output`",
            ),
            (
                json!({"outputs": [{"name": "output", "datatype": "INT64", "shape": [-1]}]}),
                "not BYTES",
            ),
            (json!([1, 2]), "not valid"),
        ] {
            let e = ok(bad.clone()).unwrap_err();
            assert!(e.contains(says), "{bad} → {e}");
        }
    }
}

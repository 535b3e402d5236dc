//! `V2Endpoint`: one model of an inference server speaking the Open Inference Protocol
//! (KServe V2 REST: Triton, KServe, MLServer, Seldon, OpenVINO Model Server), JSON form.
//!
//! The contract (the README's "Model endpoints on the Open Inference Protocol"):
//!
//! - One Atlas batch of `n` inputs is one `POST /v2/models/{model}[/versions/{v}]/infer`:
//!   an `id`, `parameters.operation` (the operation's name), one input tensor `input` of
//!   datatype `BYTES` and shape `[n]` (or `[n, 1]` when the model declares a 2-D input) whose
//!   elements are the inputs' canonical JSON, and the requested output `output`.
//! - The answer's output tensor `output`, datatype `BYTES`, shape `[n]` or `[n, 1]`, holds one
//!   JSON element per input, in order: a result as the batch protocol gives it, or
//!   `{"error": "..."}`, which fails that input alone.
//! - Anything else (a missing tensor, another datatype or shape, a wrong count, an element
//!   that is not JSON, an `id` that is not the request's, a non-200 with a V2 error body) is
//!   a malformed answer: the whole call fails and may fail over; nothing is cached.
//!
//! Readiness ([`V2Endpoint::check`]): when the model is not verified yet (at start, after a
//! reload, after a failed check or a malformed or 404 answer), its metadata
//! (`GET /v2/models/{model}[/versions/{v}]`, which must declare nothing that rules out the
//! contract), then `GET /v2/models/{model}[/versions/{v}]/ready`, which decides; when it says
//! no, `GET /v2/health/ready` tells whether the whole server is not ready.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

mod metadata;

pub use metadata::{check_metadata, config_max_batch, Metadata};

use super::item::{self, WireOutput};
use super::{EndpointError, ModelEndpoint, Outputs};
use crate::client::HttpClient;
use crate::models::ModelInput;

/// A model on an Open Inference Protocol server.
pub struct V2Endpoint {
    name: String,
    client: HttpClient,
    /// Deadline of one batch call (a reload may change it).
    timeout: Cell<Duration>,
    /// `model` or `model version V`, for messages.
    label: String,
    /// `/v2/models/{model}[/versions/{v}]`.
    model_path: String,
    /// `{model_path}/infer`.
    infer_path: String,
    /// `{model_path}/ready`.
    ready_path: String,
    /// The next request's `id`.
    next_id: Cell<u64>,
    /// Whether the metadata was read and accepted since the start, the last reload or the
    /// last failed check.
    verified: Cell<bool>,
    /// What the metadata said (kept while `verified`).
    metadata: Cell<Metadata>,
}

/// Why a readiness check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// What happened, for `/health/detailed` and the log.
    pub why: String,
    /// Whether the server could not be reached at all (a transport failure or a timeout), as
    /// opposed to a server that answered that the model is missing, unusable or not ready.
    pub unreachable: bool,
}

impl NotReady {
    fn unreachable(why: String) -> Self {
        NotReady {
            why,
            unreachable: true,
        }
    }

    fn answered(why: String) -> Self {
        NotReady {
            why,
            unreachable: false,
        }
    }
}

impl V2Endpoint {
    /// The endpoint `name` for `model` (and `version`) on the server at `addr` (`host` for the
    /// `Host` header).
    pub fn new(
        name: String,
        addr: SocketAddr,
        host: String,
        pool_size: usize,
        timeout: Duration,
        model: &str,
        version: Option<&str>,
    ) -> Self {
        let (model_path, label) = match version {
            Some(v) => (
                format!("/v2/models/{model}/versions/{v}"),
                format!("`{model}` version {v}"),
            ),
            None => (format!("/v2/models/{model}"), format!("`{model}`")),
        };
        V2Endpoint {
            name,
            client: HttpClient::new(addr, host, pool_size, timeout.min(Duration::from_secs(2))),
            timeout: Cell::new(timeout),
            label,
            infer_path: format!("{model_path}/infer"),
            ready_path: format!("{model_path}/ready"),
            model_path,
            next_id: Cell::new(1),
            verified: Cell::new(false),
            metadata: Cell::new(Metadata::default()),
        }
    }

    /// Changes the deadline of the next batch calls (a reload of `ATLAS_ENDPOINTS`).
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }

    /// Makes the next check read the model's metadata again (a reload).
    pub fn forget_metadata(&self) {
        self.verified.set(false);
    }

    /// The model's `max_batch_size` as its metadata last reported it.
    pub fn server_max_batch(&self) -> Option<usize> {
        self.metadata.get().max_batch_size
    }

    /// Whether the server and the model are ready within `timeout`, reading and checking the
    /// model's metadata first when it is not verified; `Err` says why not, for
    /// `/health/detailed` and the log.
    pub async fn check(&self, timeout: Duration) -> Result<(), NotReady> {
        let result = self.check_once(timeout).await;
        if result.is_err() {
            self.verified.set(false);
        }
        result
    }

    async fn check_once(&self, timeout: Duration) -> Result<(), NotReady> {
        if !self.verified.get() {
            let r = self
                .client
                .get(&self.model_path, timeout)
                .await
                .map_err(|e| NotReady::unreachable(format!("GET {}: {e}", self.model_path)))?;
            match r.status {
                200 => {}
                404 => {
                    return Err(NotReady::answered(format!(
                        "model {} not found on the server: {}",
                        self.label,
                        item::error_message(&r.body)
                    )))
                }
                s => {
                    return Err(NotReady::answered(format!(
                        "metadata of model {}: GET {} answered HTTP {s}: {}",
                        self.label,
                        self.model_path,
                        item::error_message(&r.body)
                    )))
                }
            }
            let mut metadata = check_metadata(&r.body).map_err(|e| {
                NotReady::answered(format!(
                    "model {} cannot take Atlas's requests: {e}",
                    self.label
                ))
            })?;
            if metadata.max_batch_size.is_none() {
                // Triton reports `max_batch_size` in its model configuration, not in the
                // metadata; other servers have no such route (a 404, ignored).
                let config = format!("{}/config", self.model_path);
                if let Ok(r) = self.client.get(&config, timeout).await {
                    if r.status == 200 {
                        metadata.max_batch_size = config_max_batch(&r.body);
                    }
                }
            }
            self.metadata.set(metadata);
            self.verified.set(true);
        }
        let r = self
            .client
            .get(&self.ready_path, timeout)
            .await
            .map_err(|e| NotReady::unreachable(format!("GET {}: {e}", self.ready_path)))?;
        if r.status == 200 && !says_not_ready(&r.body) {
            return Ok(());
        }
        // Why not: the server's own readiness, asked only now. It is the conjunction of all
        // its models' (MLServer; Triton's strict readiness), so it does not decide alone: one
        // model still loading must not take the server's other models out of rotation.
        let server = match self.client.get("/v2/health/ready", timeout).await {
            Ok(s) if s.status == 200 => String::new(),
            Ok(s) => format!(
                "; the server is not ready either (GET /v2/health/ready answered HTTP {})",
                s.status
            ),
            Err(e) => format!("; GET /v2/health/ready: {e}"),
        };
        Err(NotReady::answered(format!(
            "model {} not ready: GET {} answered HTTP {}: {}{server}",
            self.label,
            self.ready_path,
            r.status,
            item::error_message(&r.body)
        )))
    }
}

impl ModelEndpoint for V2Endpoint {
    fn id(&self) -> &str {
        &self.name
    }

    async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let id = id.to_string();
        let body = request_body(inputs, &id, self.metadata.get().input_2d)?;
        let response = self
            .client
            .post_json(&self.infer_path, &body, self.timeout.get())
            .await?;
        if response.status != 200 {
            if response.status == 404 {
                // The model went away (a restart, an unload): read its metadata again.
                self.forget_metadata();
            }
            return Err(EndpointError::Status {
                status: response.status,
                message: item::error_message(&response.body),
            });
        }
        let decoded = decode(&response.body, inputs.len(), &id);
        if decoded.is_err() {
            // Perhaps another model now answers under this name: check it again.
            self.forget_metadata();
        }
        decoded
    }
}

/// The inference request for `inputs` (all of one operation), with `id`; the input tensor
/// is `[n, 1]` when `input_2d`, else `[n]`.
pub fn request_body(
    inputs: &[ModelInput],
    id: &str,
    input_2d: bool,
) -> Result<Vec<u8>, EndpointError> {
    let op = inputs.first().map(|i| i.operation().as_str()).unwrap_or("");
    let data = inputs
        .iter()
        .map(|i| item::input_value(i).map(|v| Value::String(v.to_string())))
        .collect::<Result<Vec<Value>, _>>()?;
    let n = data.len();
    let shape = if input_2d {
        serde_json::json!([n, 1])
    } else {
        serde_json::json!([n])
    };
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "parameters": {"operation": op},
        "inputs": [{"name": "input", "datatype": "BYTES", "shape": shape, "data": data}],
        "outputs": [{"name": "output"}],
    }))
    .map_err(|e| EndpointError::Protocol(format!("cannot encode the request: {e}")))
}

#[derive(Deserialize)]
struct InferResponse {
    #[serde(default)]
    id: Option<String>,
    outputs: Vec<Tensor>,
}

/// An output tensor. Only `output` must be complete: other outputs (binary ones without
/// `data`, say) are ignored.
#[derive(Deserialize)]
struct Tensor {
    name: String,
    #[serde(default)]
    datatype: String,
    #[serde(default)]
    shape: Vec<i64>,
    #[serde(default)]
    data: Value,
}

/// Whether a model-ready answer's body says `{"ready": false}` (some servers answer 200 with
/// it; an empty or other body is the status's word).
fn says_not_ready(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("ready").and_then(Value::as_bool))
        == Some(false)
}

/// serde's message about a body, at most 200 characters (it may quote the body).
fn short(e: &serde_json::Error) -> String {
    e.to_string().chars().take(200).collect()
}

/// Turns a `200` inference response into one result per input; see the module's contract.
/// Pure; fuzzed (`v2_response`).
pub fn decode(body: &[u8], inputs: usize, id: &str) -> Result<Outputs, EndpointError> {
    let bad = |what: String| EndpointError::Protocol(what);
    let parsed: InferResponse =
        serde_json::from_slice(body).map_err(|e| bad(format!("not an inference response: {e}")))?;
    if let Some(got) = &parsed.id {
        if got != id {
            return Err(bad(format!(
                "the answer's id `{}` is not the request's `{id}`",
                got.chars().take(64).collect::<String>()
            )));
        }
    }
    let Some(tensor) = parsed.outputs.into_iter().find(|t| t.name == "output") else {
        return Err(bad("no output tensor named `output`".to_string()));
    };
    if tensor.datatype != "BYTES" {
        return Err(bad(format!(
            "output tensor `output` is {}, not BYTES",
            tensor.datatype.chars().take(32).collect::<String>()
        )));
    }
    let n = inputs as i64;
    if tensor.shape != [n] && tensor.shape != [n, 1] {
        return Err(bad(format!(
            "output tensor `output` has shape {:?} for {inputs} inputs (expected [{inputs}] or [{inputs}, 1])",
            &tensor.shape[..tensor.shape.len().min(4)]
        )));
    }
    let elements = flatten(tensor.data)
        .ok_or_else(|| bad("output tensor `output`: data is not an array of strings".into()))?;
    if elements.len() != inputs {
        return Err(bad(format!(
            "{} output elements for {inputs} inputs",
            elements.len()
        )));
    }
    elements
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let output: WireOutput = serde_json::from_str(text).map_err(|e| {
                bad(format!(
                    "outputs[{i}] is not a result or an error in JSON: {}",
                    short(&e)
                ))
            })?;
            item::decode(i, output)
        })
        .collect()
}

/// The strings of a tensor's `data`: flat, or nested one level (`[[s], [s]]`, the row-major
/// form of `[n, 1]`). `None` for anything else.
fn flatten(data: Value) -> Option<Vec<String>> {
    let Value::Array(rows) = data else {
        return None;
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            Value::String(s) => out.push(s),
            Value::Array(inner) => {
                for v in inner {
                    let Value::String(s) = v else { return None };
                    out.push(s);
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{parse_input, ModelError, Operation};
    use serde_json::json;

    fn risk(age: u32) -> ModelInput {
        parse_input(
            Operation::RiskAssessment,
            &json!({"age": age, "horizon_years": 20, "income_stability": 4,
                "loss_tolerance": 3, "experience": 2}),
        )
        .unwrap()
    }

    fn answer(shape: Value, data: Value) -> Vec<u8> {
        json!({"model_name": "risk", "id": "7", "outputs": [
            {"name": "output", "datatype": "BYTES", "shape": shape, "data": data}]})
        .to_string()
        .into_bytes()
    }

    const OK: &str = r#"{"result":{"risk_score":1.5},"confidence":0.8,"symbols":["X"],"dependencies":["symbol:X"]}"#;

    #[test]
    fn the_request_follows_the_contract() {
        let body = request_body(&[risk(30), risk(40)], "9", false).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "9");
        assert_eq!(v["parameters"]["operation"], "risk_assessment");
        let t = &v["inputs"][0];
        assert_eq!(
            (t["name"].as_str(), t["datatype"].as_str()),
            (Some("input"), Some("BYTES"))
        );
        assert_eq!(t["shape"], json!([2]));
        let first: Value = serde_json::from_str(t["data"][0].as_str().unwrap()).unwrap();
        assert_eq!(first["age"], 30);
        assert_eq!(v["outputs"], json!([{"name": "output"}]));
        let body = request_body(&[risk(30)], "1", true).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["inputs"][0]["shape"], json!([1, 1]));
    }

    #[test]
    fn decodes_both_shapes_and_nested_data() {
        for (shape, data) in [
            (json!([2]), json!([OK, r#"{"error":"no"}"#])),
            (json!([2, 1]), json!([OK, r#"{"error":"no"}"#])),
            (json!([2, 1]), json!([[OK], [r#"{"error":"no"}"#]])),
        ] {
            let out = decode(&answer(shape.clone(), data), 2, "7").unwrap();
            let first = out[0].as_ref().unwrap();
            assert_eq!(first.result["risk_score"], 1.5);
            assert_eq!(first.symbols, vec!["X".to_string()]);
            assert!(
                matches!(&out[1], Err(ModelError::Unprocessable { .. })),
                "{shape}"
            );
        }
        // No id in the answer is accepted; a different one is not.
        let no_id = json!({"outputs": [{"name": "output", "datatype": "BYTES", "shape": [1], "data": [OK]}]});
        assert!(decode(no_id.to_string().as_bytes(), 1, "3").is_ok());
        let e = decode(&answer(json!([1]), json!([OK])), 1, "8").unwrap_err();
        assert!(e.to_string().contains("id"), "{e}");
    }

    #[test]
    fn malformed_answers_fail_the_whole_call() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (answer(json!([1]), json!([OK])), "shape"),
            (answer(json!([2]), json!([OK])), "1 output elements for 2 inputs"),
            (answer(json!([2, 2]), json!([OK, OK])), "shape"),
            (answer(json!([2]), json!([OK, "not json"])), "outputs[1]"),
            (answer(json!([2]), json!([OK, 3])), "not an array of strings"),
            (answer(json!([2]), json!([OK, r#"{"result":1,"confidence":1}"#])), "outputs[1]"),
            (answer(json!([2]), json!([OK, r#"{"confidence":1}"#])), "outputs[1]"),
            (
                json!({"id": "7", "outputs": [{"name": "output", "datatype": "FP64", "shape": [2], "data": [0.0, 1.0]}]}).to_string().into_bytes(),
                "not BYTES",
            ),
            (
                json!({"id": "7", "outputs": [{"name": "other", "datatype": "BYTES", "shape": [2], "data": [OK, OK]}]}).to_string().into_bytes(),
                "no output tensor",
            ),
            (br#"{"error":"Model risk not found"}"#.to_vec(), "not an inference response"),
            (b"garbage".to_vec(), "not an inference response"),
        ];
        for (body, says) in cases {
            let e = decode(&body, 2, "7").unwrap_err();
            assert!(matches!(e, EndpointError::Protocol(_)));
            assert!(
                e.to_string().contains(says),
                "{} → {e}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

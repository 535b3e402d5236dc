//! `Http`: a remote model endpoint speaking Atlas's batch protocol (`POST /v1/batch`, see
//! `crate::modelserver`) through a per-shard keep-alive client.
//!
//! Maps the wire format to model outputs: an item's `{"error": ...}` fails that item alone; a
//! transport failure, a timeout, a non-200 answer or a malformed body fails the whole call,
//! which the engine may retry on another endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::item::{self, WireOutput};
use super::{EndpointError, ModelEndpoint, Outputs};
use crate::client::HttpClient;
use crate::models::ModelInput;

/// A remote endpoint.
pub struct HttpEndpoint {
    name: String,
    client: HttpClient,
    /// Deadline of one batch call (a reload may change it).
    timeout: std::cell::Cell<Duration>,
}

#[derive(Deserialize)]
struct BatchResponse {
    outputs: Vec<WireOutput>,
}

impl HttpEndpoint {
    /// An endpoint named `name` at `addr` (`host` for the `Host` header).
    pub fn new(
        name: String,
        addr: SocketAddr,
        host: String,
        pool_size: usize,
        timeout: Duration,
    ) -> Self {
        HttpEndpoint {
            name,
            client: HttpClient::new(addr, host, pool_size, timeout.min(Duration::from_secs(2))),
            timeout: std::cell::Cell::new(timeout),
        }
    }

    /// Changes the deadline of the next batch calls (a reload of `ATLAS_ENDPOINTS`).
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }

    /// `GET /health` within `timeout`: true on a 200.
    pub async fn health(&self, timeout: Duration) -> bool {
        matches!(self.client.get("/health", timeout).await, Ok(r) if r.status == 200)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn request_body(inputs: &[ModelInput]) -> Result<Vec<u8>, EndpointError> {
    let op = inputs.first().map(|i| i.operation().as_str()).unwrap_or("");
    let items = inputs
        .iter()
        .map(item::input_value)
        .collect::<Result<Vec<Value>, _>>()?;
    serde_json::to_vec(&serde_json::json!({"operation": op, "inputs": items}))
        .map_err(|e| EndpointError::Protocol(format!("cannot encode the request: {e}")))
}

impl ModelEndpoint for HttpEndpoint {
    fn id(&self) -> &str {
        &self.name
    }

    async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError> {
        let body = request_body(inputs)?;
        let response = self
            .client
            .post_json("/v1/batch", &body, self.timeout.get())
            .await?;
        if response.status != 200 {
            return Err(EndpointError::Status {
                status: response.status,
                message: item::error_message(&response.body),
            });
        }
        decode(&response.body, inputs.len())
    }
}

/// Turns a `200` batch response body into one result per input. The whole call fails (and
/// may be retried elsewhere) unless the body is a batch response with exactly `inputs`
/// outputs, each valid as [`item::decode`] checks it: nothing from an answer that fails this
/// check reaches the cache. Pure; fuzzed (`batch_response`).
pub fn decode(body: &[u8], inputs: usize) -> Result<Outputs, EndpointError> {
    let parsed: BatchResponse = serde_json::from_slice(body)
        .map_err(|e| EndpointError::Protocol(format!("not a batch response: {e}")))?;
    if parsed.outputs.len() != inputs {
        return Err(EndpointError::Protocol(format!(
            "{} outputs for {inputs} inputs",
            parsed.outputs.len(),
        )));
    }
    parsed
        .outputs
        .into_iter()
        .enumerate()
        .map(|(i, o)| item::decode(i, o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::item::MAX_OUTPUT_TAGS;
    use crate::models::ModelError;

    #[test]
    fn decodes_results_and_item_errors() {
        let body = br#"{"outputs":[{"result":{"a":1},"confidence":1.5,"volatility":-1,"dependencies":["symbol:X"],"symbols":["X"]},{"error":{"code":"numerical_failure","message":"m"}}],"endpoint_id":"e"}"#;
        let out = decode(body, 2).unwrap();
        let first = out[0].as_ref().unwrap();
        assert_eq!((first.confidence, first.volatility), (1.0, 0.0));
        assert_eq!(first.symbols, vec!["X".to_string()]);
        assert!(matches!(out[1], Err(ModelError::Numerical { .. })));
    }

    #[test]
    fn a_wrong_count_or_garbage_fails_the_whole_call() {
        let one = br#"{"outputs":[{"result":{},"confidence":0.5}]}"#;
        assert!(decode(one, 1).is_ok());
        assert!(matches!(decode(one, 2), Err(EndpointError::Protocol(_))));
        assert!(matches!(decode(one, 0), Err(EndpointError::Protocol(_))));
        assert!(decode(b"not json", 1).is_err());
        assert!(decode(b"{}", 1).is_err());
    }

    /// Regression: a `result` that is not an object (a number, a string, null) was accepted,
    /// cached and served inside `{"result": ...}` as if the model had computed it.
    #[test]
    fn a_result_that_is_not_an_object_fails_the_call() {
        for result in ["1", "\"x\"", "null", "[]", "true"] {
            let body = format!(r#"{{"outputs":[{{"result":{result},"confidence":0.5}}]}}"#);
            assert!(
                matches!(decode(body.as_bytes(), 1), Err(EndpointError::Protocol(_))),
                "{result}"
            );
        }
    }

    #[test]
    fn tags_are_bounded() {
        let many: Vec<String> = (0..=MAX_OUTPUT_TAGS).map(|i| format!("t{i}")).collect();
        let body = serde_json::json!({"outputs": [{"result": {}, "confidence": 0.5,
            "dependencies": many}]})
        .to_string();
        assert!(decode(body.as_bytes(), 1).is_err());
        let body = br#"{"outputs":[{"result":{},"confidence":0.5,"symbols":["a\u0000b"]}]}"#;
        assert!(decode(body, 1).is_err());
        let body = br#"{"outputs":[{"result":{},"confidence":0.5,"symbols":[""]}]}"#;
        assert!(decode(body, 1).is_err());
    }
}

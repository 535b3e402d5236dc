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

use super::{EndpointError, ModelEndpoint, Outputs};
use crate::client::HttpClient;
use crate::models::{ModelError, ModelInput, ModelOutput};

/// A remote endpoint.
pub struct HttpEndpoint {
    name: String,
    client: HttpClient,
    timeout: Duration,
}

#[derive(Deserialize)]
struct BatchResponse {
    outputs: Vec<WireOutput>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireOutput {
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

#[derive(Deserialize)]
struct WireError {
    code: String,
    message: String,
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
            timeout,
        }
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
    let items: Result<Vec<Value>, serde_json::Error> = inputs
        .iter()
        .map(|i| match i {
            ModelInput::Portfolio(x) => serde_json::to_value(x),
            ModelInput::Budget(x) => serde_json::to_value(x),
            ModelInput::Risk(x) => serde_json::to_value(x),
            ModelInput::Cashflow(x) => serde_json::to_value(x),
        })
        .collect();
    let items = items.map_err(|e| EndpointError::Protocol(format!("cannot encode inputs: {e}")))?;
    serde_json::to_vec(&serde_json::json!({"operation": op, "inputs": items}))
        .map_err(|e| EndpointError::Protocol(format!("cannot encode the request: {e}")))
}

fn item_error(e: WireError) -> ModelError {
    match e.code.as_str() {
        "invalid_request" | "invalid_input" => ModelError::Invalid {
            path: "input".to_string(),
            message: e.message,
        },
        "numerical_failure" => ModelError::Numerical { message: e.message },
        _ => ModelError::Unprocessable {
            message: format!("endpoint error {}: {}", e.code, e.message),
        },
    }
}

impl ModelEndpoint for HttpEndpoint {
    fn id(&self) -> &str {
        &self.name
    }

    async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError> {
        let body = request_body(inputs)?;
        let response = self
            .client
            .post_json("/v1/batch", &body, self.timeout)
            .await?;
        if response.status != 200 {
            return Err(EndpointError::Status(response.status));
        }
        let parsed: BatchResponse = serde_json::from_slice(&response.body)
            .map_err(|e| EndpointError::Protocol(format!("not a batch response: {e}")))?;
        if parsed.outputs.len() != inputs.len() {
            return Err(EndpointError::Protocol(format!(
                "{} outputs for {} inputs",
                parsed.outputs.len(),
                inputs.len()
            )));
        }
        Ok(parsed
            .outputs
            .into_iter()
            .map(|o| match o {
                WireOutput::Err { error } => Err(item_error(error)),
                WireOutput::Ok {
                    result,
                    confidence,
                    volatility,
                    dependencies,
                    symbols,
                } if confidence.is_finite() && volatility.is_finite() => Ok(ModelOutput {
                    result,
                    confidence: confidence.clamp(0.0, 1.0),
                    volatility: volatility.max(0.0),
                    dependencies,
                    symbols,
                }),
                WireOutput::Ok { .. } => Err(ModelError::Numerical {
                    message: "the endpoint returned a non-finite confidence or volatility"
                        .to_string(),
                }),
            })
            .collect())
    }
}

//! `atlas model-endpoint`: the built-in models served over Atlas's batch protocol, so the model
//! tier can run on other machines (and so load tests have a real model tier to call).
//!
//! Protocol: `POST /v1/batch` with `{"operation": "...", "inputs": [{...}, ...]}` answers
//! `{"outputs": [...], "endpoint_id": "...", "model_version": "..."}`, one output per input in
//! order, each `{"result", "confidence", "volatility", "dependencies", "symbols"}` or
//! `{"error": {"code", "message"}}` (a bad item fails alone). `GET /v1/info` lists the
//! operations and the largest batch.
//!
//! Inference-latency emulation (off by default, for load tests): a fixed latency per call, a
//! latency per input, jitter, a concurrency limit (the emulated accelerator runs that many
//! calls at once; others wait their turn, as on a GPU), and injected failures and hangs. The
//! real computation still runs underneath. Never touches the gateway's cache or queues.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::Semaphore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ai::request::model_error;
use crate::endpoint::{Embedded, ModelEndpoint};
use crate::error::ApiError;
use crate::http::{Request, Response, Status};
use crate::models::{self, ModelInput, Operation, MODEL_VERSION};

/// Default and largest `--max-batch`.
pub const MAX_BATCH: usize = 256;

/// Settings of `atlas model-endpoint` (from its flags).
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Reported as `endpoint_id`.
    pub id: String,
    /// Emulated latency per call.
    pub latency: Duration,
    /// Emulated latency per input.
    pub per_item: Duration,
    /// Up to this much extra latency, uniformly random, per call.
    pub jitter: Duration,
    /// Calls the emulated accelerator runs at once (per shard).
    pub concurrency: usize,
    /// Fraction of calls answered 500.
    pub fail_rate: f64,
    /// Fraction of calls never answered.
    pub hang_rate: f64,
    /// Most inputs accepted in one call (413 past it).
    pub max_batch: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            id: "model-endpoint".to_string(),
            latency: Duration::ZERO,
            per_item: Duration::ZERO,
            jitter: Duration::ZERO,
            concurrency: 1,
            fail_rate: 0.0,
            hang_rate: 0.0,
            max_batch: MAX_BATCH,
        }
    }
}

/// One shard's model server.
pub struct ModelServer {
    opts: ModelOptions,
    /// Permits of the emulated accelerator.
    accelerator: Semaphore,
    rng: Cell<u64>,
    endpoint: Embedded,
    info: Bytes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    operation: String,
    inputs: Vec<Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Ok {
        result: Value,
        confidence: f64,
        volatility: f64,
        dependencies: Vec<String>,
        symbols: Vec<String>,
    },
    Err {
        error: ErrorBody,
    },
}

#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct BatchResponse<'a> {
    outputs: Vec<Output>,
    endpoint_id: &'a str,
    model_version: &'static str,
}

impl ModelServer {
    /// A model server for the current shard.
    pub fn new(opts: ModelOptions, shard_id: usize, cpu: Option<usize>) -> Rc<Self> {
        let info = serde_json::json!({
            "endpoint_id": opts.id,
            "model_version": MODEL_VERSION,
            "operations": Operation::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
            "max_batch": opts.max_batch,
            "emulation": {
                "latency_ms": opts.latency.as_secs_f64() * 1e3,
                "per_item_ms": opts.per_item.as_secs_f64() * 1e3,
                "jitter_ms": opts.jitter.as_secs_f64() * 1e3,
                "concurrency": opts.concurrency,
                "fail_rate": opts.fail_rate,
                "hang_rate": opts.hang_rate,
            },
        });
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ ((shard_id as u64 + 1) << 32);
        Rc::new(ModelServer {
            accelerator: Semaphore::new(opts.concurrency.max(1) as u64),
            opts,
            rng: Cell::new(seed | 1),
            endpoint: Embedded::new(cpu),
            info: Bytes::from(info.to_string()),
        })
    }

    /// `GET /v1/info`.
    pub fn info(&self) -> Response {
        Response::json(Status::Ok, self.info.clone())
    }

    /// A uniform draw in [0, 1) (xorshift64*).
    fn uniform(&self) -> f64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `POST /v1/batch`. `shutdown` resolves when the shard starts shutting down (an
    /// emulated hang waits for it).
    pub async fn batch(
        &self,
        request: &Request,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Response {
        let parsed: BatchRequest = match serde_json::from_slice(&request.body) {
            Ok(b) => b,
            Err(e) => {
                let code = if e.is_syntax() || e.is_eof() {
                    "invalid_json"
                } else {
                    "invalid_request"
                };
                return ApiError::new(Status::BadRequest, code, e.to_string()).to_response();
            }
        };
        let Some(op) = Operation::from_name(&parsed.operation) else {
            return ApiError::new(
                Status::BadRequest,
                "unknown_operation",
                format!(
                    "unknown operation `{}`",
                    crate::error::truncate(&parsed.operation, 64)
                ),
            )
            .to_response();
        };
        if parsed.inputs.len() > self.opts.max_batch {
            return ApiError::new(
                Status::PayloadTooLarge,
                "batch_too_large",
                format!("at most {} inputs per call", self.opts.max_batch),
            )
            .to_response();
        }
        if self.opts.hang_rate > 0.0 && self.uniform() < self.opts.hang_rate {
            // Emulated hang: no answer until shutdown (the caller's timeout decides).
            shutdown.await;
            return ApiError::new(Status::ServiceUnavailable, "shutting_down", "shutting down")
                .to_response();
        }
        if self.opts.fail_rate > 0.0 && self.uniform() < self.opts.fail_rate {
            return ApiError::new(
                Status::InternalServerError,
                "injected_failure",
                "failure injected by --fail-rate",
            )
            .to_response();
        }

        let parsed_inputs: Vec<Result<ModelInput, ApiError>> = parsed
            .inputs
            .iter()
            .map(|v| models::parse_input(op, v).map_err(model_error))
            .collect();
        let valid: Vec<ModelInput> = parsed_inputs
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();

        let _permit = self.accelerator.acquire_permit(1).await;
        let emulated = self.opts.latency
            + self.opts.per_item * parsed_inputs.len() as u32
            + self.opts.jitter.mul_f64(self.uniform());
        if !emulated.is_zero() {
            glommio::timer::sleep(emulated).await;
        }
        let mut computed = match self.endpoint.infer(&valid).await {
            Ok(outputs) => outputs.into_iter(),
            Err(e) => {
                return ApiError::new(Status::InternalServerError, "model_failure", e.to_string())
                    .to_response()
            }
        };
        let outputs = parsed_inputs
            .into_iter()
            .map(|p| match p {
                Err(e) => error_output(&e),
                Ok(_) => match computed.next() {
                    Some(Ok(o)) => Output::Ok {
                        result: o.result,
                        confidence: o.confidence,
                        volatility: o.volatility,
                        dependencies: o.dependencies,
                        symbols: o.symbols,
                    },
                    Some(Err(e)) => error_output(&model_error(e)),
                    None => Output::Err {
                        error: ErrorBody {
                            code: "internal",
                            message: "no result".to_string(),
                        },
                    },
                },
            })
            .collect();
        let body = BatchResponse {
            outputs,
            endpoint_id: &self.opts.id,
            model_version: MODEL_VERSION,
        };
        match serde_json::to_vec(&body) {
            Ok(b) => Response::json(Status::Ok, b),
            Err(e) => {
                ApiError::new(Status::InternalServerError, "internal", e.to_string()).to_response()
            }
        }
    }
}

fn error_output(e: &ApiError) -> Output {
    Output::Err {
        error: ErrorBody {
            code: e.code,
            message: e.message.to_string(),
        },
    }
}

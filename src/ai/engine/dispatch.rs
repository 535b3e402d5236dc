//! The dispatcher: polls the batch queues, runs each batch on an endpoint in its own task and
//! answers every request in it.

use std::rc::Rc;

use bytes::Bytes;
use serde::Serialize;

use atlas_shard::{Batch, Clock, DropReason, Operation, Poll};

use super::{bump, internal, ms, overloaded, timeout, Computed, Engine, Pending};
use crate::ai::pool::PoolError;
use crate::ai::request::model_error;
use crate::error::ApiError;
use crate::http::Status;
use crate::models::precision::{self, Rounded};
use crate::models::{ModelOutput, MODEL_VERSION};

impl Engine {
    /// Polls the queues whenever something changed and dispatches what is ready.
    ///
    /// The endpoints count as idle while fewer batches are in flight than they can run at
    /// once (`EndpointPool::capacity`, the sum of the endpoints' `concurrency`; 1 for the
    /// embedded models): then a request leaves at once. Once they are all busy, requests wait
    /// for a slot, the window, or a full batch, so batches grow with load. At most one batch
    /// more than the capacity is in flight: the backlog stays in the batch queues, where
    /// deadlines, priorities and shedding apply, instead of piling up at an endpoint.
    pub(super) async fn dispatch_loop(self: Rc<Self>) {
        let mut poll: Poll<Pending> = Poll::default();
        loop {
            // Read each time: a reload of the endpoints changes it.
            let capacity = self.pool.capacity();
            if self.busy.get() > capacity {
                self.wake.wait().await;
                continue;
            }
            let idle = self.busy.get() < capacity;
            self.queues.borrow_mut().poll(|_| idle, &mut poll);
            for dropped in poll.dropped.drain(..) {
                let err = match dropped.reason {
                    DropReason::Timeout => timeout(),
                    DropReason::Shed => overloaded("shed under overload"),
                };
                dropped.request.payload.reply.send(Err(err));
            }
            for batch in poll.batches.drain(..) {
                self.busy.set(self.busy.get() + 1);
                glommio::spawn_local(Rc::clone(&self).run_batch(batch)).detach();
            }
            let next = self.queues.borrow().next_deadline();
            match next {
                None => self.wake.wait().await,
                Some(at) => {
                    let now = self.clock.now();
                    if at > now {
                        let sleep = glommio::timer::sleep(at.since(now));
                        futures_lite::future::or(sleep, self.wake.wait()).await;
                    } else {
                        futures_lite::future::yield_now().await;
                    }
                }
            }
        }
    }

    /// Runs one batch on the endpoint and answers each request in it.
    async fn run_batch(self: Rc<Self>, batch: Batch<Pending>) {
        let started = self.clock.now();
        let size = batch.requests.len();
        let op = batch.key.op;
        let mut inputs = Vec::with_capacity(size);
        let mut deadline = started;
        let mut replies = Vec::with_capacity(size);
        for request in batch.requests {
            // A request whose deadline passed since it was flushed is answered, not computed.
            if request.deadline <= started {
                request.payload.reply.send(Err(timeout()));
                continue;
            }
            inputs.push(request.payload.input);
            deadline = deadline.max(request.deadline);
            replies.push((request.enqueued_at, request.payload.reply));
        }
        let size = inputs.len();
        if size == 0 {
            self.busy.set(self.busy.get().saturating_sub(1));
            self.wake.notify();
            return;
        }
        let (outputs, endpoint) = match self.pool.run(op, inputs, deadline).await {
            Ok(done) => done,
            Err(e) => {
                let err = match e {
                    PoolError::NoEndpoint { retry_after } => ApiError::new(
                        Status::ServiceUnavailable,
                        "no_endpoint",
                        format!(
                            "no model endpoint for {} is available (circuit open or model not ready); retry in {} s",
                            op.as_str(),
                            retry_after.as_secs().max(1)
                        ),
                    ),
                    PoolError::Failed { endpoint, error } => ApiError::new(
                        if error == crate::endpoint::EndpointError::Timeout {
                            Status::GatewayTimeout
                        } else {
                            Status::BadGateway
                        },
                        "endpoint_failed",
                        format!("model endpoint {endpoint}: {error}"),
                    ),
                };
                for (_, reply) in replies {
                    reply.send(Err(err.clone()));
                }
                self.busy.set(self.busy.get().saturating_sub(1));
                self.wake.notify();
                return;
            }
        };
        let processing_ms = ms(self.clock.now().since(started));
        bump(&self.counters.batches, 1);
        bump(&self.counters.computations, size as u64);
        let mut outputs = outputs.into_iter();
        for (enqueued_at, reply) in replies {
            let result = match outputs.next() {
                Some(Ok(output)) => body_of(op, &output).map(|body| Computed {
                    body,
                    endpoint: endpoint.clone(),
                    output,
                    queue_ms: ms(started.since(enqueued_at)),
                    processing_ms,
                    batch_size: size,
                }),
                Some(Err(e)) => Err(model_error(e)),
                None => Err(internal("the endpoint returned fewer results than inputs")),
            };
            reply.send(result);
        }
        self.busy.set(self.busy.get().saturating_sub(1));
        self.wake.notify();
    }
}

#[derive(Serialize)]
struct Body<'a> {
    operation: &'static str,
    result: Rounded<'a>,
    confidence: f64,
    model_version: &'static str,
}

/// The response body for a computed result: built once, then stored and served as is. Its
/// numbers are rounded to their published precision here (`models::precision`), whichever
/// endpoint computed them.
fn body_of(op: Operation, output: &ModelOutput) -> Result<Bytes, ApiError> {
    let body = Body {
        operation: op.as_str(),
        result: Rounded(&output.result),
        confidence: if output.confidence.is_finite() {
            precision::round(output.confidence.clamp(0.0, 1.0), 4)
        } else {
            0.0
        },
        model_version: MODEL_VERSION,
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| internal(format!("cannot encode the result: {e}")))
}

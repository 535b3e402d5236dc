//! One endpoint of a shard's pool, with what the pool keeps of it: its breaker, its options
//! (a reload changes them in place), its errors by reason, and for an Open Inference Protocol
//! endpoint the reason it is out of rotation. The health and readiness check of one endpoint
//! ([`Member::check`]) lives here; the pool decides when to run it.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Duration;

use atlas_shard::{BreakerOptions, CircuitBreaker, MonotonicClock, Operation};

use super::ResolvedEndpoint;
use crate::config::endpoints::Protocol;
use crate::endpoint::{
    Embedded, Endpoint, EndpointError, HttpEndpoint, ModelEndpoint, Outputs, V2Endpoint,
};
use crate::models::ModelInput;

pub(super) struct Member {
    pub(super) endpoint: Endpoint,
    /// Where a remote endpoint is (resolved address and `Host` header; `None`: embedded). A
    /// reload keeps a member whose name, address and protocol are unchanged.
    pub(super) address: Option<(SocketAddr, String)>,
    /// The protocol it speaks (the embedded models: `Batch`, unused).
    pub(super) protocol: Protocol,
    /// Why it is out of rotation, from its last readiness check (V2 endpoints only; `None`:
    /// ready).
    pub(super) problem: RefCell<Option<String>>,
    /// Failed calls per [`EndpointError::reason`].
    pub(super) errors_by_reason: [Cell<u64>; 4],
    /// The last failed call's error.
    pub(super) last_error: RefCell<Option<String>>,
    /// Whether a health or readiness check is running on it.
    pub(super) checking: Cell<bool>,
    /// Operations it serves (`None`: all). A reload may change it.
    pub(super) ops: RefCell<Option<Vec<Operation>>>,
    /// Deadline of one call (the latency charged for a timeout). A reload may change it.
    pub(super) timeout: Cell<Duration>,
    /// Largest batch one call to it may carry; larger batches go in several calls.
    pub(super) max_batch: Cell<usize>,
    /// Batch calls it runs at once (its share of the pool's capacity).
    pub(super) concurrency: Cell<usize>,
    pub(super) breaker: RefCell<CircuitBreaker<MonotonicClock>>,
}

impl Member {
    pub(super) fn embedded(cpu: Option<usize>, clock: MonotonicClock) -> Member {
        Member {
            endpoint: Endpoint::Embedded(Embedded::new(cpu)),
            address: None,
            protocol: Protocol::Batch,
            problem: RefCell::new(None),
            errors_by_reason: Default::default(),
            last_error: RefCell::new(None),
            checking: Cell::new(false),
            ops: RefCell::new(None),
            timeout: Cell::new(Duration::MAX),
            max_batch: Cell::new(usize::MAX),
            concurrency: Cell::new(1),
            breaker: RefCell::new(CircuitBreaker::new(BreakerOptions::default(), clock)),
        }
    }

    pub(super) fn remote(r: &ResolvedEndpoint, pool_size: usize, clock: MonotonicClock) -> Member {
        let host = r.spec.authority();
        let (endpoint, problem) = match &r.spec.protocol {
            Protocol::Batch => (
                Endpoint::Http(HttpEndpoint::new(
                    r.spec.name.clone(),
                    r.addr,
                    host.clone(),
                    pool_size,
                    r.spec.timeout,
                )),
                None,
            ),
            Protocol::V2 { model, version } => (
                Endpoint::V2(V2Endpoint::new(
                    r.spec.name.clone(),
                    r.addr,
                    host.clone(),
                    pool_size,
                    r.spec.timeout,
                    model,
                    version.as_deref(),
                )),
                Some("waiting for the first readiness check".to_string()),
            ),
        };
        let member = Member {
            endpoint,
            address: Some((r.addr, host)),
            protocol: r.spec.protocol.clone(),
            problem: RefCell::new(problem),
            errors_by_reason: Default::default(),
            last_error: RefCell::new(None),
            checking: Cell::new(false),
            ops: RefCell::new(None),
            timeout: Cell::new(r.spec.timeout),
            max_batch: Cell::new(1),
            concurrency: Cell::new(1),
            breaker: RefCell::new(CircuitBreaker::new(BreakerOptions::default(), clock)),
        };
        member.configure(r);
        member
    }

    /// Whether `r` names this member: same name, address and protocol (model and version).
    pub(super) fn is(&self, r: &ResolvedEndpoint) -> bool {
        self.endpoint.id() == r.spec.name
            && self.protocol == r.spec.protocol
            && self
                .address
                .as_ref()
                .is_some_and(|(addr, host)| *addr == r.addr && *host == r.spec.authority())
    }

    /// Takes `r`'s options (all but name and address, which identify the member).
    pub(super) fn configure(&self, r: &ResolvedEndpoint) {
        *self.ops.borrow_mut() = r.spec.ops.clone();
        self.timeout.set(r.spec.timeout);
        self.max_batch.set(r.spec.max_batch.max(1));
        self.concurrency.set(r.spec.concurrency.max(1));
        match &self.endpoint {
            Endpoint::Http(http) => http.set_timeout(r.spec.timeout),
            Endpoint::V2(v2) => v2.set_timeout(r.spec.timeout),
            Endpoint::Embedded(_) => {}
        }
    }

    /// The largest batch one call may carry: `max_batch`, and no more than the model's
    /// `max_batch_size` when a V2 server reports one.
    pub(super) fn batch_limit(&self) -> usize {
        let configured = self.max_batch.get();
        match &self.endpoint {
            Endpoint::V2(v2) => v2
                .server_max_batch()
                .map_or(configured, |m| configured.min(m)),
            _ => configured,
        }
    }

    /// Counts a failed call by its reason.
    pub(super) fn count_error(&self, error: &EndpointError) {
        let n = &self.errors_by_reason[error.reason_index()];
        n.set(n.get() + 1);
        *self.last_error.borrow_mut() = Some(error.to_string());
    }

    /// Runs the endpoint's health or readiness check, unless one is running on it already
    /// (the checks at start, after a reload and each interval may overlap: the first one's
    /// answer stands). A batch endpoint's check feeds its breaker. A V2 endpoint's sets or
    /// clears its `problem` (logged when it changes), which keeps it out of rotation on its
    /// own. Its breaker hears of the server as of a batch endpoint: a passing check, or a
    /// server that cannot be reached; a server that answers that the model is missing or not
    /// ready is a readiness matter only (counting it against the breaker would keep the
    /// endpoint out for the breaker's wait after the model is ready).
    pub(super) async fn check(&self, timeout: Duration) {
        if self.checking.replace(true) {
            return;
        }
        match &self.endpoint {
            Endpoint::Http(http) => {
                let ok = http.health(timeout).await;
                self.breaker.borrow_mut().on_health_check(ok);
            }
            Endpoint::V2(v2) => {
                let result = v2.check(timeout).await;
                let health = match &result {
                    Ok(()) => Some(true),
                    Err(e) if e.unreachable => Some(false),
                    Err(_) => None,
                };
                let outcome = result.err().map(|e| e.why);
                let mut problem = self.problem.borrow_mut();
                if *problem != outcome {
                    match &outcome {
                        Some(why) => log::warn!("endpoint {} out of rotation: {why}", v2.id()),
                        None => log::info!("endpoint {} ready", v2.id()),
                    }
                    if let (None, Some(limit)) = (&outcome, v2.server_max_batch()) {
                        if limit < self.max_batch.get() {
                            log::info!(
                                "endpoint {}: batches of at most {limit} (the model's max_batch_size; max_batch is {})",
                                v2.id(),
                                self.max_batch.get()
                            );
                        }
                    }
                    *problem = outcome;
                }
                drop(problem);
                if let Some(ok) = health {
                    self.breaker.borrow_mut().on_health_check(ok);
                }
            }
            Endpoint::Embedded(_) => {}
        }
        self.checking.set(false);
    }

    pub(super) fn serves(&self, op: Operation) -> bool {
        self.ops
            .borrow()
            .as_ref()
            .is_none_or(|ops| ops.contains(&op))
    }

    /// Runs `inputs` on this endpoint in calls of at most `max_batch` inputs, one after
    /// another; any failed call fails the whole batch (so it can fail over as one).
    pub(super) async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError> {
        let max_batch = self.batch_limit();
        if inputs.len() <= max_batch {
            return self.endpoint.infer(inputs).await;
        }
        let mut outputs = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(max_batch) {
            outputs.extend(self.endpoint.infer(chunk).await?);
        }
        Ok(outputs)
    }
}

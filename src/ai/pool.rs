//! The endpoint pool of one shard: which model endpoint runs a batch, and what happens when
//! it fails.
//!
//! - Routing: power of two choices over weighted response time (`atlas_shard::Balancer`:
//!   cost = peak-EWMA latency × (outstanding + 1) / weight), among endpoints that serve the
//!   operation and whose breaker lets calls through.
//! - Circuit breaker per endpoint (`atlas_shard::CircuitBreaker`): failure-rate, slow-call
//!   and consecutive-failure trips, backed-off open waits, half-open probes.
//! - Failover: a batch that fails as a whole (transport, timeout, non-200) is retried on
//!   another endpoint while its deadline allows, within a retry budget (retries stay under
//!   20 % of calls, plus 3 so that low traffic can still fail over). An item that fails alone
//!   is an answer, not a batch failure.
//! - Active health checks: every `ATLAS_HEALTH_INTERVAL_S`, `GET /health` on each remote
//!   endpoint feeds its breaker (never an inference call).
//!
//! Breakers and latency estimates are per shard: each shard decides from its own calls and
//! its own health checks, without cross-core traffic; `/health/detailed` shows every shard's
//! view. No I/O besides the endpoints' own.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use atlas_shard::{
    Balancer, BalancerOptions, BreakerOptions, BreakerState, CircuitBreaker, Clock, MonotonicClock,
    Operation, Timestamp, XorShift64,
};

use crate::config::endpoints::EndpointSpec;
use crate::endpoint::{Embedded, Endpoint, EndpointError, HttpEndpoint, ModelEndpoint, Outputs};
use crate::models::ModelInput;

/// A remote endpoint with its address resolved (on the main thread, before the shards start).
#[derive(Debug, Clone)]
pub struct ResolvedEndpoint {
    /// The configuration.
    pub spec: EndpointSpec,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// How the pool is built.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Serve with the built-in models too.
    pub embedded: bool,
    /// Remote endpoints.
    pub remote: Vec<ResolvedEndpoint>,
    /// Idle keep-alive connections kept per endpoint (0: no pooling).
    pub connection_pool_size: usize,
    /// Interval of the active health checks.
    pub health_interval: Duration,
    /// The shard's CPU (the embedded models' blocking thread is pinned to it).
    pub cpu: Option<usize>,
}

struct Member {
    endpoint: Endpoint,
    ops: Option<Vec<Operation>>,
    timeout: Duration,
    /// Largest batch one call to it may carry; larger batches go in several calls.
    max_batch: usize,
    breaker: RefCell<CircuitBreaker<MonotonicClock>>,
}

impl Member {
    fn serves(&self, op: Operation) -> bool {
        self.ops.as_ref().is_none_or(|ops| ops.contains(&op))
    }

    /// Runs `inputs` on this endpoint in calls of at most `max_batch` inputs, one after
    /// another; any failed call fails the whole batch (so it can fail over as one).
    async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError> {
        if inputs.len() <= self.max_batch {
            return self.endpoint.infer(inputs).await;
        }
        let mut outputs = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.max_batch) {
            outputs.extend(self.endpoint.infer(chunk).await?);
        }
        Ok(outputs)
    }
}

/// Why no endpoint produced outputs for a batch.
#[derive(Debug, Clone)]
pub enum PoolError {
    /// No endpoint serves the operation or every one is open: retry after this long.
    NoEndpoint {
        /// When the first breaker may let a call through again.
        retry_after: Duration,
    },
    /// The last endpoint tried failed (after any failover).
    Failed {
        /// The endpoint's name.
        endpoint: String,
        /// What went wrong.
        error: EndpointError,
    },
}

/// One endpoint's figures, as this shard sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    /// Name.
    pub name: String,
    /// Breaker state.
    pub state: BreakerState,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Breaker trips.
    pub trips: u64,
    /// Peak-EWMA latency estimate, ms.
    pub ewma_ms: f64,
    /// Calls in flight.
    pub in_flight: usize,
    /// Routing weight.
    pub weight: f64,
}

/// The endpoints of one shard.
pub struct EndpointPool {
    clock: MonotonicClock,
    /// Batch calls the endpoints run at once, summed (embedded counts 1).
    capacity: usize,
    members: Vec<Member>,
    balancer: RefCell<Balancer<MonotonicClock>>,
    rng: RefCell<XorShift64>,
    calls: Cell<u64>,
    retries: Cell<u64>,
}

impl EndpointPool {
    /// Builds the pool and starts its health checks on the current executor.
    pub fn start(opts: &PoolOptions, clock: MonotonicClock, seed: u64) -> Rc<Self> {
        let mut members = Vec::new();
        let mut balancer = Balancer::new(BalancerOptions::default(), clock);
        let breaker = || RefCell::new(CircuitBreaker::new(BreakerOptions::default(), clock));
        if opts.embedded {
            let _ = balancer.add("embedded", 1.0);
            members.push(Member {
                endpoint: Endpoint::Embedded(Embedded::new(opts.cpu)),
                ops: None,
                timeout: Duration::MAX,
                max_batch: usize::MAX,
                breaker: breaker(),
            });
        }
        for r in &opts.remote {
            // Weights were validated with the configuration.
            let _ = balancer.add(&r.spec.name, r.spec.weight);
            members.push(Member {
                endpoint: Endpoint::Http(HttpEndpoint::new(
                    r.spec.name.clone(),
                    r.addr,
                    format!("{}:{}", r.spec.host, r.spec.port),
                    opts.connection_pool_size,
                    r.spec.timeout,
                )),
                ops: r.spec.ops.clone(),
                timeout: r.spec.timeout,
                max_batch: r.spec.max_batch.max(1),
                breaker: breaker(),
            });
        }
        let capacity = usize::from(opts.embedded)
            + opts
                .remote
                .iter()
                .map(|r| r.spec.concurrency)
                .sum::<usize>();
        let pool = Rc::new(EndpointPool {
            capacity: capacity.max(1),
            clock,
            members,
            balancer: RefCell::new(balancer),
            rng: RefCell::new(XorShift64::new(seed)),
            calls: Cell::new(0),
            retries: Cell::new(0),
        });
        if !opts.remote.is_empty() {
            glommio::spawn_local(Rc::clone(&pool).health_loop(opts.health_interval)).detach();
        }
        pool
    }

    /// Batch calls the endpoints can run at once, summed over endpoints.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a call may be routed to member `i` for `op` now.
    fn eligible(&self, i: usize, op: Operation, now: Timestamp, excluded: &[usize]) -> bool {
        let Some(m) = self.members.get(i) else {
            return false;
        };
        if excluded.contains(&i) || !m.serves(op) {
            return false;
        }
        let breaker = m.breaker.borrow();
        match breaker.state() {
            BreakerState::Open => breaker.open_until().is_some_and(|t| t <= now),
            BreakerState::Closed | BreakerState::HalfOpen => true,
        }
    }

    fn retry_allowed(&self) -> bool {
        self.retries.get() < self.calls.get() / 5 + 3
    }

    /// Runs a batch of `op` on the best endpoint, failing over while `deadline` allows.
    /// Returns the outputs and the name of the endpoint that produced them.
    pub async fn run(
        &self,
        op: Operation,
        inputs: Vec<ModelInput>,
        deadline: Timestamp,
    ) -> Result<(Outputs, String), PoolError> {
        let mut excluded: Vec<usize> = Vec::new();
        let mut last: Option<PoolError> = None;
        for attempt in 0..self.members.len() * 2 {
            let now = self.clock.now();
            if attempt > 0 && (now >= deadline || (last.is_some() && !self.retry_allowed())) {
                break;
            }
            let pick = {
                let mut rng = self.rng.borrow_mut();
                self.balancer
                    .borrow()
                    .pick(|i| self.eligible(i, op, now, &excluded), &mut || {
                        rng.next_u64()
                    })
            };
            let Some(i) = pick else { break };
            let member = &self.members[i];
            let permit = member.breaker.borrow_mut().try_acquire();
            if !permit.is_allowed() {
                excluded.push(i);
                continue;
            }
            let probe = permit.is_probe();
            if last.is_some() {
                self.retries.set(self.retries.get() + 1);
            }
            self.calls.set(self.calls.get() + 1);
            self.balancer.borrow_mut().start(i);
            let started = self.clock.now();
            let result = member.infer(&inputs).await;
            let rtt = self.clock.now().since(started);
            match result {
                Ok(outputs) => {
                    member.breaker.borrow_mut().on_success(rtt, probe);
                    self.balancer.borrow_mut().finish(i, rtt);
                    return Ok((outputs, member.endpoint.id().to_string()));
                }
                Err(error) => {
                    member.breaker.borrow_mut().on_failure(probe);
                    let penalty = if error == EndpointError::Timeout {
                        member.timeout
                    } else {
                        Duration::ZERO
                    };
                    self.balancer.borrow_mut().fail(i, penalty);
                    log::debug!("endpoint {} failed: {error}", member.endpoint.id());
                    excluded.push(i);
                    last = Some(PoolError::Failed {
                        endpoint: member.endpoint.id().to_string(),
                        error,
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| PoolError::NoEndpoint {
            retry_after: self.retry_after(op),
        }))
    }

    /// How long until some endpoint serving `op` may take calls again (at least 1 s).
    fn retry_after(&self, op: Operation) -> Duration {
        self.members
            .iter()
            .filter(|m| m.serves(op))
            .filter_map(|m| m.breaker.borrow().retry_after())
            .min()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    }

    /// Probes every remote endpoint's `/health` each interval and feeds the breakers.
    async fn health_loop(self: Rc<Self>, interval: Duration) {
        loop {
            glommio::timer::sleep(interval).await;
            for m in &self.members {
                if let Endpoint::Http(http) = &m.endpoint {
                    let ok = http.health(interval.min(Duration::from_secs(2))).await;
                    m.breaker.borrow_mut().on_health_check(ok);
                }
            }
        }
    }

    /// Every endpoint's figures on this shard.
    pub fn snapshot(&self) -> Vec<EndpointInfo> {
        let balancer = self.balancer.borrow();
        let figures = balancer.snapshot();
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let breaker = m.breaker.borrow();
                let f = figures.get(i);
                EndpointInfo {
                    name: m.endpoint.id().to_string(),
                    state: breaker.state(),
                    calls: breaker.counters().calls,
                    errors: breaker.counters().failures,
                    trips: breaker.counters().trips,
                    ewma_ms: f.map_or(0.0, |f| f.ewma_ms),
                    in_flight: f.map_or(0, |f| f.outstanding),
                    weight: f.map_or(1.0, |f| f.weight),
                }
            })
            .collect()
    }
}

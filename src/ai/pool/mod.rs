//! The endpoint pool of one shard: which model endpoint runs a batch, and what happens when
//! it fails.
//!
//! - Routing: power of two choices over weighted response time (`atlas_shard::Balancer`:
//!   cost = peak-EWMA latency × (outstanding + 1) / weight), among endpoints that serve the
//!   operation and whose breaker lets calls through.
//! - Circuit breaker per endpoint (`atlas_shard::CircuitBreaker`): failure-rate, slow-call
//!   and consecutive-failure trips, backed-off open waits, half-open probes. An endpoint due
//!   for probes gets batches ahead of the balancer, which would route around it while its
//!   latency estimate still holds the failures that opened it.
//! - Failover: a batch that fails as a whole (transport, timeout, non-200) is retried on
//!   another endpoint while its deadline allows, within a retry budget (retries stay under
//!   20 % of calls, plus 3 so that low traffic can still fail over). An item that fails alone
//!   is an answer, not a batch failure.
//! - Active health checks: every `ATLAS_HEALTH_INTERVAL_S`, `GET /health` on each remote
//!   endpoint feeds its breaker (never an inference call). An Open Inference Protocol (V2)
//!   endpoint is checked by its model's readiness, its metadata read first when not yet
//!   verified (`member::Member::check`, at once at start and after a reload): until a check
//!   passes, or after one fails, it is out of rotation and reported as open, with the reason
//!   (`EndpointInfo::problem`).
//!
//! Breakers and latency estimates are per shard: each shard decides from its own calls and
//! its own health checks, without cross-core traffic; `/health/detailed` shows every shard's
//! view. No I/O besides the endpoints' own.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use atlas_shard::{
    Balancer, BalancerOptions, BreakerState, Clock, MonotonicClock, Operation, Timestamp,
    XorShift64,
};

use crate::config::endpoints::{EndpointSpec, Protocol};
use crate::endpoint::{Endpoint, EndpointError, ModelEndpoint, Outputs};
use crate::models::ModelInput;

mod member;

use member::Member;

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
    /// `batch` (Atlas's batch protocol, and the embedded models) or `v2`.
    pub protocol: &'static str,
    /// The V2 model (`model` or `model@version`).
    pub model: Option<String>,
    /// Why a V2 endpoint is out of rotation (its last readiness check).
    pub problem: Option<String>,
    /// Failed calls per reason, in the order of [`EndpointError::REASONS`].
    pub errors_by_reason: [u64; 4],
    /// The last failed call's error.
    pub last_error: Option<String>,
}

/// What a reload of the endpoint list did on one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolChange {
    /// Endpoints kept with their state (name and address unchanged).
    pub kept: Vec<String>,
    /// Endpoints started.
    pub added: Vec<String>,
    /// Endpoints removed, with the calls (or a health check) still running on each (they
    /// finish there).
    pub removed: Vec<(String, usize)>,
}

/// The endpoints of one shard.
///
/// The member list can change while the shard serves ([`EndpointPool::update`], a SIGHUP):
/// `members[i]` is always the balancer's endpoint `i`, both changed together without an
/// `await`. A call holds its member (`Rc`) until it finishes, so a removed endpoint finishes
/// the calls it has, then is dropped with its connections; a call that finishes looks its
/// member up again to report to the balancer.
pub struct EndpointPool {
    clock: MonotonicClock,
    /// Batch calls the endpoints run at once, summed (embedded counts 1).
    capacity: Cell<usize>,
    members: RefCell<Vec<Rc<Member>>>,
    balancer: RefCell<Balancer<MonotonicClock>>,
    rng: RefCell<XorShift64>,
    calls: Cell<u64>,
    retries: Cell<u64>,
    /// Idle keep-alive connections kept per remote endpoint.
    connection_pool_size: usize,
    /// Interval of the active health checks.
    health_interval: Duration,
    /// Whether the health-check task runs (it ends when no remote endpoint is left).
    checking: Cell<bool>,
}

impl EndpointPool {
    /// Builds the pool and starts its health checks on the current executor.
    pub fn start(opts: &PoolOptions, clock: MonotonicClock, seed: u64) -> Rc<Self> {
        let mut members = Vec::new();
        let mut balancer = Balancer::new(BalancerOptions::default(), clock);
        if opts.embedded {
            let _ = balancer.add("embedded", 1.0);
            members.push(Rc::new(Member::embedded(opts.cpu, clock)));
        }
        for r in &opts.remote {
            // Weights were validated with the configuration.
            let _ = balancer.add(&r.spec.name, r.spec.weight);
            members.push(Rc::new(Member::remote(r, opts.connection_pool_size, clock)));
        }
        let pool = Rc::new(EndpointPool {
            capacity: Cell::new(capacity(&members)),
            clock,
            members: RefCell::new(members),
            balancer: RefCell::new(balancer),
            rng: RefCell::new(XorShift64::new(seed)),
            calls: Cell::new(0),
            retries: Cell::new(0),
            connection_pool_size: opts.connection_pool_size,
            health_interval: opts.health_interval,
            checking: Cell::new(false),
        });
        pool.check_health();
        pool.check_v2_now();
        pool
    }

    /// Replaces the remote endpoints with `remote` (a reload; the embedded models stay as
    /// they are). An endpoint whose name and address are unchanged keeps its breaker, latency
    /// estimate, calls in flight and connections, and takes the new weight and options in
    /// place; a new one starts with a closed breaker and the prior estimate; a removed one
    /// gets no new call, finishes those it has, and is no longer health-checked.
    pub fn update(self: &Rc<Self>, remote: &[ResolvedEndpoint]) -> PoolChange {
        let mut change = PoolChange::default();
        {
            let mut members = self.members.borrow_mut();
            let mut balancer = self.balancer.borrow_mut();
            let keep: Vec<bool> = members
                .iter()
                .map(|m| m.address.is_none() || remote.iter().any(|r| m.is(r)))
                .collect();
            balancer.retain(|i| keep.get(i).copied().unwrap_or(false));
            let mut kept = Vec::with_capacity(members.len());
            for (m, k) in members.drain(..).zip(&keep) {
                if *k {
                    kept.push(m);
                } else {
                    // Every clone besides this one is a call (or a health check) still running on it.
                    let running = Rc::strong_count(&m) - 1;
                    change.removed.push((m.endpoint.id().to_string(), running));
                }
            }
            *members = kept;
            for r in remote {
                match members.iter().position(|m| m.is(r)) {
                    Some(i) => {
                        // Weights were validated with the configuration.
                        let _ = balancer.set_weight(i, r.spec.weight);
                        members[i].configure(r);
                        if let Endpoint::V2(v2) = &members[i].endpoint {
                            v2.forget_metadata();
                        }
                        change.kept.push(r.spec.name.clone());
                    }
                    None => {
                        let _ = balancer.add(&r.spec.name, r.spec.weight);
                        members.push(Rc::new(Member::remote(
                            r,
                            self.connection_pool_size,
                            self.clock,
                        )));
                        change.added.push(r.spec.name.clone());
                    }
                }
            }
            self.capacity.set(capacity(&members));
        }
        self.check_health();
        self.check_v2_now();
        change
    }

    /// Checks every V2 endpoint at once, without waiting for the interval (at start and after
    /// a reload: a V2 endpoint takes no call before its model's metadata and readiness are
    /// confirmed).
    fn check_v2_now(self: &Rc<Self>) {
        let timeout = self.health_interval.min(Duration::from_secs(2));
        let v2: Vec<Rc<Member>> = self
            .members
            .borrow()
            .iter()
            .filter(|m| matches!(m.endpoint, Endpoint::V2(_)))
            .cloned()
            .collect();
        // One task each: an unreachable server does not hold up the others' first check.
        for m in v2 {
            let pool = Rc::clone(self);
            glommio::spawn_local(async move {
                if pool.index_of(&m).is_some() {
                    m.check(timeout).await;
                }
            })
            .detach();
        }
    }

    /// Starts the health-check task if there is a remote endpoint and it is not running.
    fn check_health(self: &Rc<Self>) {
        let any_remote = self.members.borrow().iter().any(|m| m.address.is_some());
        if any_remote && !self.checking.replace(true) {
            glommio::spawn_local(Rc::clone(self).health_loop()).detach();
        }
    }

    /// Batch calls the endpoints can run at once, summed over endpoints.
    pub fn capacity(&self) -> usize {
        self.capacity.get()
    }

    /// Where `member` is in the list now (`None`: a reload removed it).
    fn index_of(&self, member: &Rc<Member>) -> Option<usize> {
        self.members
            .borrow()
            .iter()
            .position(|m| Rc::ptr_eq(m, member))
    }

    /// Whether a call may be routed to `m` for `op` now.
    fn eligible(m: &Rc<Member>, op: Operation, now: Timestamp, excluded: &[Rc<Member>]) -> bool {
        if excluded.iter().any(|e| Rc::ptr_eq(e, m))
            || !m.serves(op)
            || m.problem.borrow().is_some()
        {
            return false;
        }
        let breaker = m.breaker.borrow();
        match breaker.state() {
            BreakerState::Open => breaker.open_until().is_some_and(|t| t <= now),
            BreakerState::Closed | BreakerState::HalfOpen => true,
        }
    }

    /// Whether `m`'s breaker wants probe calls now: half-open, or open with its wait over.
    fn probe_due(m: &Rc<Member>, now: Timestamp) -> bool {
        let breaker = m.breaker.borrow();
        match breaker.state() {
            BreakerState::HalfOpen => true,
            BreakerState::Open => breaker.open_until().is_some_and(|t| t <= now),
            BreakerState::Closed => false,
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
        let mut excluded: Vec<Rc<Member>> = Vec::new();
        let mut last: Option<PoolError> = None;
        let attempts = self.members.borrow().len() * 2;
        for attempt in 0..attempts {
            let now = self.clock.now();
            if attempt > 0 && (now >= deadline || (last.is_some() && !self.retry_allowed())) {
                break;
            }
            let member = {
                let members = self.members.borrow();
                // An endpoint due for probes gets the batch first: the balancer alone would
                // keep routing around it while its latency estimate still holds the failures
                // that opened its breaker, and it would never be probed back in.
                let probe = members
                    .iter()
                    .position(|m| Self::eligible(m, op, now, &excluded) && Self::probe_due(m, now));
                let pick = probe.or_else(|| {
                    let mut rng = self.rng.borrow_mut();
                    self.balancer.borrow().pick(
                        |i| {
                            members
                                .get(i)
                                .is_some_and(|m| Self::eligible(m, op, now, &excluded))
                        },
                        &mut || rng.next_u64(),
                    )
                });
                pick.and_then(|i| members.get(i).map(|m| (i, Rc::clone(m))))
            };
            let Some((i, member)) = member else { break };
            let permit = member.breaker.borrow_mut().try_acquire();
            if !permit.is_allowed() {
                excluded.push(member);
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
            // A reload during the call may have moved the member or removed it.
            let index = self.index_of(&member);
            match result {
                Ok(outputs) => {
                    member.breaker.borrow_mut().on_success(rtt, probe);
                    if let Some(i) = index {
                        self.balancer.borrow_mut().finish(i, rtt);
                    }
                    return Ok((outputs, member.endpoint.id().to_string()));
                }
                Err(error) => {
                    member.breaker.borrow_mut().on_failure(probe);
                    member.count_error(&error);
                    let penalty = if error == EndpointError::Timeout {
                        member.timeout.get()
                    } else {
                        Duration::ZERO
                    };
                    if let Some(i) = index {
                        self.balancer.borrow_mut().fail(i, penalty);
                    }
                    match error {
                        // A malformed or refused answer is the endpoint's fault, not the
                        // network's: say what it sent.
                        EndpointError::Status { .. } | EndpointError::Protocol(_) => {
                            log::warn!("endpoint {} failed: {error}", member.endpoint.id())
                        }
                        EndpointError::Timeout | EndpointError::Connect(_) => {
                            log::debug!("endpoint {} failed: {error}", member.endpoint.id())
                        }
                    }
                    last = Some(PoolError::Failed {
                        endpoint: member.endpoint.id().to_string(),
                        error,
                    });
                    excluded.push(member);
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
            .borrow()
            .iter()
            .filter(|m| m.serves(op))
            .filter_map(|m| m.breaker.borrow().retry_after())
            .min()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    }

    /// Probes every remote endpoint's `/health` each interval and feeds the breakers; ends
    /// when no remote endpoint is left (a reload that adds one starts it again). An endpoint
    /// a reload removed is not checked again.
    async fn health_loop(self: Rc<Self>) {
        let interval = self.health_interval;
        loop {
            glommio::timer::sleep(interval).await;
            let remote: Vec<Rc<Member>> = self
                .members
                .borrow()
                .iter()
                .filter(|m| m.address.is_some())
                .cloned()
                .collect();
            if remote.is_empty() {
                self.checking.set(false);
                return;
            }
            for m in remote {
                if self.index_of(&m).is_some() {
                    m.check(interval.min(Duration::from_secs(2))).await;
                }
            }
        }
    }

    /// Every endpoint's figures on this shard.
    pub fn snapshot(&self) -> Vec<EndpointInfo> {
        let balancer = self.balancer.borrow();
        let figures = balancer.snapshot();
        self.members
            .borrow()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let breaker = m.breaker.borrow();
                let f = figures.get(i);
                let problem = m.problem.borrow().clone();
                let (protocol, model) = match &m.protocol {
                    Protocol::Batch => ("batch", None),
                    Protocol::V2 { model, version } => (
                        "v2",
                        Some(match version {
                            Some(v) => format!("{model}@{v}"),
                            None => model.clone(),
                        }),
                    ),
                };
                EndpointInfo {
                    name: m.endpoint.id().to_string(),
                    // Out of rotation for its readiness: shown as open, as it takes no call.
                    state: if problem.is_some() {
                        BreakerState::Open
                    } else {
                        breaker.state()
                    },
                    calls: breaker.counters().calls,
                    errors: breaker.counters().failures,
                    trips: breaker.counters().trips,
                    ewma_ms: f.map_or(0.0, |f| f.ewma_ms),
                    in_flight: f.map_or(0, |f| f.outstanding),
                    weight: f.map_or(1.0, |f| f.weight),
                    protocol,
                    model,
                    problem,
                    errors_by_reason: std::array::from_fn(|k| m.errors_by_reason[k].get()),
                    last_error: m.last_error.borrow().clone(),
                }
            })
            .collect()
    }
}

/// Batch calls `members` run at once (at least 1).
fn capacity(members: &[Rc<Member>]) -> usize {
    members
        .iter()
        .map(|m| m.concurrency.get())
        .sum::<usize>()
        .max(1)
}

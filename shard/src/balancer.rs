//! Weighted response-time routing over one operation's model endpoints: which endpoint gets the
//! next batch. Synchronous, with an injected clock and an injected random source; no I/O, no
//! timers, no knowledge of breakers or HTTP. The caller says which endpoints are eligible
//! (breaker not open, serves the operation, not the one that just failed) and reports each
//! call's start and outcome.
//!
//! # The method (Finagle's and tower's P2C peak-EWMA, with weights)
//!
//! Each endpoint keeps a **peak-EWMA** latency estimate `E`, stamped with the time `s` of its
//! last observation. Observing a round-trip `rtt` at time `t`:
//!
//! ```text
//! if rtt > E:  E = rtt                                  (peak: a slowdown counts at once)
//! else:        E = E·w + rtt·(1 − w),  w = exp(−(t − s)/τ)  (decay toward rtt)
//! ```
//!
//! so the weight of the past fades with elapsed time, not with call count (τ defaults to 10 s).
//! A failed or timed-out call is observed as a **penalty** latency
//! `min(max(penalty, 5 × estimate), penalty_max)` (the caller passes the timeout for a timeout,
//! zero for a fast error), which is a peak: errors push traffic away at once.
//!
//! Read at time `now` without an observation, the estimate relaxes toward the prior
//! (`initial_rtt`, 50 ms by default), never below it by decay alone:
//!
//! ```text
//! estimate(now) = E                                          if E ≤ prior
//!               = prior + (E − prior) · exp(−(now − s)/τ)    otherwise
//! ```
//!
//! Without this an endpoint that was penalised and then starved of traffic would never be tried
//! again (Finagle and tower decay toward zero; decaying toward the prior instead bounds the
//! burst a long-idle endpoint receives before its first answer comes back).
//!
//! The **cost** of an endpoint is the estimate scaled by the calls already waiting on it and
//! divided by its capacity:
//!
//! ```text
//! cost(e) = estimate(e) × (outstanding(e) + 1) / weight(e)
//! ```
//!
//! [`Balancer::pick`] samples two distinct eligible endpoints at random with probability
//! proportional to weight (weighted sampling without replacement, Efraimidis–Spirakis keys
//! `ln(u)/weight`), and returns the one with the lower cost (the first drawn on a tie). One
//! eligible endpoint is returned as is; none gives `None`.
//!
//! Weight is capacity. Under load, with equal latencies, the balancer keeps
//! `(outstanding + 1) / weight` level, so traffic splits by weight (within about `1/in-flight`).
//! With nothing in flight the cheapest idle endpoint wins, which between two endpoints means the
//! heavier one takes every call until calls overlap: the choice that minimises latency.

use std::time::Duration;

use crate::clock::{duration_nanos, Clock, Timestamp};

/// Tuning of a [`Balancer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalancerOptions {
    /// Decay time constant τ of the peak-EWMA: an observation's weight falls to 1/e after τ.
    pub tau: Duration,
    /// Estimate of an endpoint before its first answer, and the floor an idle estimate relaxes
    /// toward.
    pub initial_rtt: Duration,
    /// A failure is observed as at least this many times the current estimate.
    pub failure_penalty_factor: f64,
    /// Cap on a failure's penalty latency, so a run of failures cannot push an estimate so high
    /// that the endpoint takes minutes to be tried again.
    pub penalty_max: Duration,
}

impl Default for BalancerOptions {
    /// τ 10 s, initial 50 ms, penalty 5 × estimate capped at 10 s.
    fn default() -> Self {
        BalancerOptions {
            tau: Duration::from_secs(10),
            initial_rtt: Duration::from_millis(50),
            failure_penalty_factor: 5.0,
            penalty_max: Duration::from_secs(10),
        }
    }
}

/// A weight that is not a finite number above zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidWeight(pub f64);

impl std::fmt::Display for InvalidWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "endpoint weight {} is not a finite number above 0",
            self.0
        )
    }
}

impl std::error::Error for InvalidWeight {}

/// One endpoint's figures, for `/health/detailed` and metrics; `Copy` so shards can send it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointSnapshot {
    /// The peak-EWMA latency as of its last observation, in milliseconds.
    pub ewma_ms: f64,
    /// Calls started and not yet finished.
    pub outstanding: usize,
    /// Configured weight.
    pub weight: f64,
    /// Calls finished (successes and failures).
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
}

/// What the balancer knows of one endpoint.
#[derive(Debug, Clone)]
struct Endpoint {
    /// Configured name, for lookups and reports.
    name: Box<str>,
    /// Capacity relative to the others; finite and above zero.
    weight: f64,
    /// Peak-EWMA estimate `E`, nanoseconds.
    ewma_ns: f64,
    /// Time of the last observation (or of `add`).
    stamp: Timestamp,
    /// Calls started and not finished: the load factor of the cost.
    outstanding: usize,
    /// Calls finished, for reports.
    calls: u64,
    /// Calls failed, for reports.
    errors: u64,
}

/// Chooses among endpoints by weighted response time. See the module docs for the formula.
#[derive(Debug, Clone)]
pub struct Balancer<C: Clock> {
    /// Decay and penalty tuning.
    options: BalancerOptions,
    /// Source of time for the EWMA decay.
    clock: C,
    /// Endpoints by index.
    endpoints: Vec<Endpoint>,
}

impl<C: Clock> Balancer<C> {
    /// A balancer with no endpoints.
    pub fn new(options: BalancerOptions, clock: C) -> Self {
        Balancer {
            options,
            clock,
            endpoints: Vec::new(),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &BalancerOptions {
        &self.options
    }

    /// Adds an endpoint with the prior estimate; returns its index (indexes are dense, in order
    /// of addition, and change only when [`Balancer::retain`] removes endpoints before them).
    pub fn add(&mut self, name: &str, weight: f64) -> Result<usize, InvalidWeight> {
        let weight = check_weight(weight)?;
        self.endpoints.push(Endpoint {
            name: name.into(),
            weight,
            ewma_ns: self.prior_ns(),
            stamp: self.clock.now(),
            outstanding: 0,
            calls: 0,
            errors: 0,
        });
        Ok(self.endpoints.len() - 1)
    }

    /// Changes an endpoint's weight. Unknown indexes are ignored.
    pub fn set_weight(&mut self, i: usize, weight: f64) -> Result<(), InvalidWeight> {
        let weight = check_weight(weight)?;
        if let Some(e) = self.endpoints.get_mut(i) {
            e.weight = weight;
        }
        Ok(())
    }

    /// Keeps the endpoints for which `keep(index)` holds, with everything learned of them
    /// (estimate, calls in flight, counts), in their order: the ones after a removed endpoint
    /// move down. `keep` is called once per endpoint, in index order.
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut i = 0;
        self.endpoints.retain(|_| {
            let kept = keep(i);
            i += 1;
            kept
        });
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// An endpoint's name.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.endpoints.get(i).map(|e| &*e.name)
    }

    /// The index of the endpoint with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| &*e.name == name)
    }

    /// The peak-EWMA `E` as of the endpoint's last observation.
    pub fn ewma(&self, i: usize) -> Option<Duration> {
        self.endpoints
            .get(i)
            .map(|e| Duration::from_nanos(e.ewma_ns as u64))
    }

    /// The estimate now: `E` relaxed toward the prior for the time since the last observation.
    pub fn estimate(&self, i: usize) -> Option<Duration> {
        let now = self.clock.now();
        self.endpoints
            .get(i)
            .map(|e| Duration::from_nanos(self.estimate_ns(e, now) as u64))
    }

    /// The cost now, in milliseconds per unit of weight: `estimate × (outstanding + 1) / weight`.
    pub fn cost_ms(&self, i: usize) -> Option<f64> {
        let now = self.clock.now();
        self.endpoints.get(i).map(|e| self.cost(e, now) / 1e6)
    }

    /// Calls started on the endpoint and not yet finished.
    pub fn outstanding(&self, i: usize) -> Option<usize> {
        self.endpoints.get(i).map(|e| e.outstanding)
    }

    /// Picks an endpoint among those for which `eligible(index)` holds: power of two choices,
    /// sampled by weight, lower cost wins. `eligible` is called once per endpoint; `rng` once
    /// per eligible endpoint. `None` when no endpoint is eligible.
    pub fn pick(
        &self,
        eligible: impl Fn(usize) -> bool,
        rng: &mut impl FnMut() -> u64,
    ) -> Option<usize> {
        // The two largest keys ln(u)/weight are a weighted sample of two without replacement.
        let mut first: Option<(f64, usize)> = None;
        let mut second: Option<(f64, usize)> = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            let key = unit_open0(rng()).ln() / e.weight;
            match first {
                Some((k1, _)) if key <= k1 => {
                    if second.is_none_or(|(k2, _)| key > k2) {
                        second = Some((key, i));
                    }
                }
                _ => {
                    second = first;
                    first = Some((key, i));
                }
            }
        }
        let (_, a) = first?;
        let Some((_, b)) = second else {
            return Some(a);
        };
        let now = self.clock.now();
        let cost = |i: usize| {
            self.endpoints
                .get(i)
                .map_or(f64::INFINITY, |e| self.cost(e, now))
        };
        Some(if cost(a) <= cost(b) { a } else { b })
    }

    /// A call to endpoint `i` starts. Unknown indexes are ignored.
    pub fn start(&mut self, i: usize) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.outstanding += 1;
        }
    }

    /// A call to endpoint `i` succeeded after `rtt`.
    pub fn finish(&mut self, i: usize, rtt: Duration) {
        let now = self.clock.now();
        let tau = self.tau_ns();
        if let Some(e) = self.endpoints.get_mut(i) {
            e.outstanding = e.outstanding.saturating_sub(1);
            e.calls += 1;
            observe(e, duration_nanos(rtt) as f64, now, tau);
        }
    }

    /// A call to endpoint `i` failed or timed out; `penalty` is the latency to charge (the
    /// timeout for a timeout, zero for a fast error: at least `failure_penalty_factor` × the
    /// estimate is charged, at most `penalty_max`).
    pub fn fail(&mut self, i: usize, penalty: Duration) {
        let now = self.clock.now();
        let tau = self.tau_ns();
        let floor = self.options.failure_penalty_factor.max(0.0);
        let cap = duration_nanos(self.options.penalty_max) as f64;
        let Some(estimate) = self.endpoints.get(i).map(|e| self.estimate_ns(e, now)) else {
            return;
        };
        let charged = (duration_nanos(penalty) as f64)
            .max(floor * estimate)
            .min(cap);
        if let Some(e) = self.endpoints.get_mut(i) {
            e.outstanding = e.outstanding.saturating_sub(1);
            e.calls += 1;
            e.errors += 1;
            observe(e, charged, now, tau);
        }
    }

    /// A call to endpoint `i` was abandoned before any outcome (cancelled by the caller): it
    /// no longer counts as outstanding and teaches nothing about latency.
    pub fn abandon(&mut self, i: usize) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.outstanding = e.outstanding.saturating_sub(1);
        }
    }

    /// Every endpoint's figures, by index.
    pub fn snapshot(&self) -> Vec<EndpointSnapshot> {
        self.endpoints
            .iter()
            .map(|e| EndpointSnapshot {
                ewma_ms: e.ewma_ns / 1e6,
                outstanding: e.outstanding,
                weight: e.weight,
                calls: e.calls,
                errors: e.errors,
            })
            .collect()
    }

    fn prior_ns(&self) -> f64 {
        duration_nanos(self.options.initial_rtt) as f64
    }

    fn tau_ns(&self) -> f64 {
        (duration_nanos(self.options.tau) as f64).max(1.0)
    }

    fn estimate_ns(&self, e: &Endpoint, now: Timestamp) -> f64 {
        let prior = self.prior_ns();
        if e.ewma_ns <= prior {
            return e.ewma_ns;
        }
        let idle = duration_nanos(now.since(e.stamp)) as f64;
        prior + (e.ewma_ns - prior) * (-idle / self.tau_ns()).exp()
    }

    fn cost(&self, e: &Endpoint, now: Timestamp) -> f64 {
        self.estimate_ns(e, now) * (e.outstanding as f64 + 1.0) / e.weight
    }
}

/// Applies one peak-EWMA observation of `rtt_ns` at `now`.
fn observe(e: &mut Endpoint, rtt_ns: f64, now: Timestamp, tau_ns: f64) {
    if rtt_ns > e.ewma_ns {
        e.ewma_ns = rtt_ns;
    } else {
        let elapsed = duration_nanos(now.since(e.stamp)) as f64;
        let w = (-elapsed / tau_ns).exp();
        e.ewma_ns = e.ewma_ns * w + rtt_ns * (1.0 - w);
    }
    e.stamp = now;
}

fn check_weight(weight: f64) -> Result<f64, InvalidWeight> {
    if weight.is_finite() && weight > 0.0 {
        Ok(weight)
    } else {
        Err(InvalidWeight(weight))
    }
}

/// Maps 64 random bits to a uniform float in (0, 1], so its logarithm is finite.
fn unit_open0(bits: u64) -> f64 {
    ((bits >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A tiny xorshift64 generator for [`Balancer::pick`]: fast, deterministic from its seed, not
/// cryptographic. Each shard owns one (`let mut r = || rng.next_u64();`).
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator from `seed`; a zero seed (which xorshift cannot use) is replaced by a fixed
    /// odd constant.
    pub fn new(seed: u64) -> Self {
        XorShift64 {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

#[cfg(test)]
mod tests;

//! The circuit breaker of one model endpoint: a synchronous state machine with an injected
//! clock. No I/O, no timers, no async: the caller asks it before each call, reports each outcome
//! and each active health check, and reads its state for routing and `/health/detailed`.
//!
//! Modelled on resilience4j's count-based sliding window and Envoy's outlier detection.
//!
//! # States
//!
//! - **Closed**: every call is allowed ([`Permit::Allowed`]). Outcomes go into a window of the
//!   last [`BreakerOptions::window`] calls. The breaker trips to open when
//!   - the window holds at least `min_calls` outcomes and the failure rate or the slow-call rate
//!     reaches its threshold (resilience4j), or
//!   - `consecutive_failures` failures arrive in a row, whatever the window says (Envoy's
//!     `consecutive_5xx`).
//! - **Open** until a deadline: calls are [`Permit::Rejected`]. The wait is `open_base` on the
//!   first trip and doubles on each further trip without a successful close in between, capped at
//!   `open_max`. The first [`CircuitBreaker::try_acquire`] (or passing health check) after the
//!   deadline moves it to half-open.
//! - **Half-open**: up to `half_open_probes` probe calls are let through ([`Permit::Probe`]);
//!   further calls are rejected until a probe finishes or is released. When `half_open_probes`
//!   probes have succeeded the breaker closes with an empty window and the backoff reset. Any
//!   probe failure trips it open again with the doubled wait. At most `half_open_probes` probes
//!   are granted per period (not merely at a time), less those released; probes neither reported
//!   nor released for `open_max` are presumed lost, so a dropped call cannot wedge the breaker.
//!
//! Report each permit exactly once: `on_success`/`on_failure` with `was_probe` matching the
//! permit, or `release_probe` for a probe whose call was not made. A probe from an earlier
//! half-open period that finishes in a later one cannot be told apart and counts in the later
//! one: its outcome is still fresh news of the endpoint.
//!
//! A call is *slow* when it succeeds after at least `slow_call`; failures (timeouts included)
//! count as failures only. A slow probe still counts as a successful probe (the slow-call rate
//! is judged again over the window once closed). Outcomes of calls let through earlier that finish while the breaker is
//! open, and of non-probe calls finishing while half-open, are counted but move no state: they
//! describe the endpoint before the trip.
//!
//! # Active health checks ([`CircuitBreaker::on_health_check`])
//!
//! A health check is `GET /health`, not an inference call, so it is weaker evidence of health
//! than of sickness:
//!
//! | state | check fails | check passes |
//! | --- | --- | --- |
//! | closed | recorded as a failed call in the window and the consecutive-failure streak (may trip) | resets the consecutive-failure streak; the window is untouched |
//! | open | the deadline moves to at least now + the wait the next trip would get (no probes while it is down; not counted as a trip) | past the deadline: goes half-open; before it: nothing |
//! | half-open | like a failed probe: trips open with the doubled wait | nothing (probes decide) |

use std::time::Duration;

use crate::clock::{Clock, Timestamp};

/// Thresholds and waits of a [`CircuitBreaker`]. Defaults follow resilience4j and Envoy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerOptions {
    /// Size of the sliding window: the last `window` call outcomes. At least 1 is used.
    pub window: usize,
    /// Fewest outcomes in the window before the rates can trip the breaker, so a single early
    /// failure does not eject an endpoint. Values above `window` act as `window`.
    pub min_calls: usize,
    /// Failure rate (failed / outcomes in the window, 0..=1) at or above which the breaker trips.
    /// Above 1 disables the rule.
    pub failure_rate: f64,
    /// Slow-call rate (slow / outcomes in the window) at or above which the breaker trips: an
    /// endpoint that answers but too slowly is as bad as one that fails. Above 1 disables it.
    pub slow_call_rate: f64,
    /// A successful call taking at least this long is slow.
    pub slow_call: Duration,
    /// Open wait after the first trip.
    pub open_base: Duration,
    /// Cap on the open wait, which doubles on each consecutive trip.
    pub open_max: Duration,
    /// Probe calls let through while half-open, and successes needed to close. At least 1.
    pub half_open_probes: usize,
    /// Failures in a row that trip the breaker at once, whatever the window holds (Envoy's
    /// `consecutive_5xx`): a dead endpoint is ejected after a handful of calls. 0 disables it.
    pub consecutive_failures: usize,
}

impl Default for BreakerOptions {
    /// Window 20, min calls 10, failure rate 50 %, slow-call rate 80 % over 2 s, open 5 s
    /// doubling to 60 s, 3 probes, 5 consecutive failures.
    fn default() -> Self {
        BreakerOptions {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call_rate: 0.8,
            slow_call: Duration::from_secs(2),
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            half_open_probes: 3,
            consecutive_failures: 5,
        }
    }
}

/// The public view of a breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are rejected until the wait ends.
    Open,
    /// A few probe calls test the endpoint.
    HalfOpen,
}

impl BreakerState {
    /// The value of the breaker-state gauge: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    /// The state's name in JSON and logs: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// The answer to [`CircuitBreaker::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permit {
    /// Closed: make the call and report it with `was_probe = false`.
    Allowed,
    /// Half-open: make the call as a probe and report it with `was_probe = true`, or hand the
    /// slot back with [`CircuitBreaker::release_probe`] if the call is not made.
    Probe,
    /// Open, or half-open with every probe slot taken: do not call this endpoint.
    Rejected,
}

impl Permit {
    /// Whether the call may be made.
    pub fn is_allowed(self) -> bool {
        !matches!(self, Permit::Rejected)
    }

    /// Whether the call is a half-open probe.
    pub fn is_probe(self) -> bool {
        matches!(self, Permit::Probe)
    }
}

/// Lifetime counters of one breaker, for metrics and `/health/detailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerCounters {
    /// Transitions to open (from closed or half-open).
    pub trips: u64,
    /// Call outcomes reported (successes and failures, probes included; not health checks).
    pub calls: u64,
    /// Failed calls reported (timeouts included; not health checks).
    pub failures: u64,
    /// Successful calls that took at least `slow_call`.
    pub slow_calls: u64,
    /// Permits refused.
    pub rejected: u64,
    /// Probe permits granted.
    pub probes: u64,
    /// Active health checks reported.
    pub health_checks: u64,
    /// Active health checks that failed.
    pub health_failures: u64,
}

/// Internal state, with what each state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed,
    Open {
        /// When the wait ends and the next permit request goes half-open.
        until: Timestamp,
    },
    HalfOpen {
        /// Probe permits granted and not yet reported or released.
        in_flight: usize,
        /// Probes that succeeded in this half-open period.
        succeeded: usize,
        /// When the period began, or its outstanding probes were last presumed lost.
        since: Timestamp,
    },
}

/// One call outcome in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// The call failed (or a health check did).
    failed: bool,
    /// The call succeeded but took at least `slow_call`.
    slow: bool,
}

/// The count-based sliding window: a ring of the last `cap` outcomes with running totals.
#[derive(Debug, Clone)]
struct Window {
    /// Outcomes, in ring order once full; allocated once at its capacity.
    ring: Vec<Outcome>,
    /// Next slot to overwrite once the ring is full.
    next: usize,
    /// Window size, at least 1.
    cap: usize,
    /// Failed outcomes in `ring`, kept so the rates cost nothing to read.
    failed: usize,
    /// Slow outcomes in `ring`.
    slow: usize,
}

impl Window {
    fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Window {
            ring: Vec::with_capacity(cap),
            next: 0,
            cap,
            failed: 0,
            slow: 0,
        }
    }

    fn push(&mut self, o: Outcome) {
        if self.ring.len() < self.cap {
            self.ring.push(o);
        } else if let Some(old) = self.ring.get_mut(self.next) {
            self.failed -= usize::from(old.failed);
            self.slow -= usize::from(old.slow);
            *old = o;
            self.next = (self.next + 1) % self.cap;
        }
        self.failed += usize::from(o.failed);
        self.slow += usize::from(o.slow);
    }

    fn clear(&mut self) {
        self.ring.clear();
        self.next = 0;
        self.failed = 0;
        self.slow = 0;
    }

    fn len(&self) -> usize {
        self.ring.len()
    }

    /// (failure rate, slow-call rate); zeros when empty.
    fn rates(&self) -> (f64, f64) {
        let n = self.ring.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        (self.failed as f64 / n as f64, self.slow as f64 / n as f64)
    }
}

/// The circuit breaker of one endpoint. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<C: Clock> {
    /// Thresholds and waits.
    options: BreakerOptions,
    /// Source of time for open deadlines.
    clock: C,
    /// The state machine.
    inner: Inner,
    /// Outcomes while closed; cleared on every transition.
    window: Window,
    /// Failures in a row (calls and failed health checks) while closed.
    streak: usize,
    /// Trips since the last successful close: the exponent of the open-wait backoff.
    trips_in_a_row: u32,
    counters: BreakerCounters,
}

impl<C: Clock> CircuitBreaker<C> {
    /// A closed breaker with an empty window.
    pub fn new(options: BreakerOptions, clock: C) -> Self {
        CircuitBreaker {
            window: Window::new(options.window),
            options,
            clock,
            inner: Inner::Closed,
            streak: 0,
            trips_in_a_row: 0,
            counters: BreakerCounters::default(),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &BreakerOptions {
        &self.options
    }

    /// The current state. An open breaker whose wait has ended still reads `Open` until the next
    /// [`try_acquire`](Self::try_acquire) or passing health check moves it to half-open.
    pub fn state(&self) -> BreakerState {
        match self.inner {
            Inner::Closed => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// When an open breaker's wait ends; `None` unless open.
    pub fn open_until(&self) -> Option<Timestamp> {
        match self.inner {
            Inner::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Time left until an open breaker's wait ends (zero if it already has): the basis of a
    /// `Retry-After` header. `None` unless open.
    pub fn retry_after(&self) -> Option<Duration> {
        self.open_until().map(|until| until.since(self.clock.now()))
    }

    /// Failure rate and slow-call rate over the current window (zeros when empty).
    pub fn rates(&self) -> (f64, f64) {
        self.window.rates()
    }

    /// Outcomes in the current window.
    pub fn window_len(&self) -> usize {
        self.window.len()
    }

    /// Lifetime counters.
    pub fn counters(&self) -> &BreakerCounters {
        &self.counters
    }

    /// Asks to make one call. An open breaker past its wait goes half-open first.
    pub fn try_acquire(&mut self) -> Permit {
        self.expire_open();
        let permit = match &mut self.inner {
            Inner::Closed => Permit::Allowed,
            Inner::Open { .. } => Permit::Rejected,
            Inner::HalfOpen {
                in_flight,
                succeeded,
                since,
            } => {
                // A probe never reported nor released (a dropped call) must not wedge the
                // breaker: probes outstanding for `open_max` are presumed lost.
                let now = self.clock.now();
                if *in_flight > 0
                    && now >= since.plus(self.options.open_max.max(self.options.open_base))
                {
                    *in_flight = 0;
                    *since = now;
                }
                // Total probes per half-open period is bounded too, so exactly
                // `half_open_probes` successes are needed and none is left over at the close.
                if *in_flight + *succeeded < self.options.half_open_probes.max(1) {
                    *in_flight += 1;
                    Permit::Probe
                } else {
                    Permit::Rejected
                }
            }
        };
        match permit {
            Permit::Rejected => self.counters.rejected += 1,
            Permit::Probe => self.counters.probes += 1,
            Permit::Allowed => {}
        }
        permit
    }

    /// Reports a successful call and how long it took.
    pub fn on_success(&mut self, latency: Duration, was_probe: bool) {
        let slow = latency >= self.options.slow_call;
        self.counters.calls += 1;
        self.counters.slow_calls += u64::from(slow);
        match &mut self.inner {
            Inner::Closed => {
                self.streak = 0;
                self.record(Outcome {
                    failed: false,
                    slow,
                });
            }
            Inner::HalfOpen {
                in_flight,
                succeeded,
                ..
            } if was_probe => {
                *in_flight = in_flight.saturating_sub(1);
                *succeeded += 1;
                if *succeeded >= self.options.half_open_probes.max(1) {
                    self.close();
                }
            }
            Inner::HalfOpen { .. } | Inner::Open { .. } => {}
        }
    }

    /// Reports a failed call (an error answer, a broken connection or a timeout).
    pub fn on_failure(&mut self, was_probe: bool) {
        self.counters.calls += 1;
        self.counters.failures += 1;
        self.failure(was_probe);
    }

    /// Reports an active health check. See the module docs for its effect in each state.
    pub fn on_health_check(&mut self, ok: bool) {
        self.counters.health_checks += 1;
        if !ok {
            self.counters.health_failures += 1;
        }
        match (self.inner, ok) {
            (Inner::Closed, true) => self.streak = 0,
            (Inner::Closed, false) | (Inner::HalfOpen { .. }, false) => self.failure(true),
            (Inner::Open { until }, false) => {
                let later = self.clock.now().plus(self.current_wait());
                self.inner = Inner::Open {
                    until: until.max(later),
                };
            }
            (Inner::Open { .. }, true) => self.expire_open(),
            (Inner::HalfOpen { .. }, true) => {}
        }
    }

    /// Hands back a probe permit whose call was not made (cancelled, or routed elsewhere).
    /// Ignored unless half-open.
    pub fn release_probe(&mut self) {
        if let Inner::HalfOpen { in_flight, .. } = &mut self.inner {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// A failure from a call or a health check. `probe_like` says whether, while half-open, it
    /// is evidence about the endpoint now (a probe or a check) rather than a late answer.
    fn failure(&mut self, probe_like: bool) {
        match self.inner {
            Inner::Closed => {
                self.streak += 1;
                let limit = self.options.consecutive_failures;
                if limit > 0 && self.streak >= limit {
                    self.trip();
                } else {
                    self.record(Outcome {
                        failed: true,
                        slow: false,
                    });
                }
            }
            Inner::HalfOpen { .. } if probe_like => self.trip(),
            Inner::HalfOpen { .. } | Inner::Open { .. } => {}
        }
    }

    /// Adds an outcome to the window (closed only) and trips on the rates.
    fn record(&mut self, outcome: Outcome) {
        self.window.push(outcome);
        let min = self.options.min_calls.clamp(1, self.window.cap);
        if self.window.len() < min {
            return;
        }
        let (failure, slow) = self.window.rates();
        if failure >= self.options.failure_rate || slow >= self.options.slow_call_rate {
            self.trip();
        }
    }

    /// The open wait for the next trip: `open_base × 2^trips_in_a_row`, capped at `open_max`.
    fn current_wait(&self) -> Duration {
        let base = self.options.open_base;
        let cap = self.options.open_max.max(base);
        base.checked_mul(1u32 << self.trips_in_a_row.min(31))
            .map_or(cap, |w| w.min(cap))
    }

    fn trip(&mut self) {
        let until = self.clock.now().plus(self.current_wait());
        self.inner = Inner::Open { until };
        self.trips_in_a_row = self.trips_in_a_row.saturating_add(1);
        self.counters.trips += 1;
        self.window.clear();
        self.streak = 0;
    }

    fn close(&mut self) {
        self.inner = Inner::Closed;
        self.trips_in_a_row = 0;
        self.window.clear();
        self.streak = 0;
    }

    /// Open past its deadline → half-open with no probes yet.
    fn expire_open(&mut self) {
        if let Inner::Open { until } = self.inner {
            let now = self.clock.now();
            if now >= until {
                self.inner = Inner::HalfOpen {
                    in_flight: 0,
                    succeeded: 0,
                    since: now,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests;

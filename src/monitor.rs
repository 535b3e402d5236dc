//! The monitor: on shard 0, every `ATLAS_MONITOR_INTERVAL_S` (default 5 s), collect every
//! shard's metrics over the mesh, turn the change since the last collection into a window
//! (requests, 5xx, cache outcomes, p95 latency per operation),
//! evaluate the brief's alert rules, and compute a health score.
//!
//! Alert thresholds (defaults reproduce the brief's table; the two variables scale them):
//!
//! | alert | warning | critical | emergency |
//! | --- | --- | --- | --- |
//! | `response_time` (p95 of the window) | 0.75 × `ALERT_RESPONSE_TIME_MS` (300 ms) | 1.25 × (500 ms) | 2.5 × (1000 ms) |
//! | `error_rate` (5xx share, ≥ 20 requests) | `ALERT_ERROR_RATE` (5 %) | 2 × (10 %) | 5 × (25 %) |
//! | `cache_hit_rate` (≥ 20 lookups) | < 70 % | < 50 % | — |
//! | `concurrent_requests` | > 80 % of `MAX_CONCURRENT_REQUESTS` (8000) | > 95 % (9500) | — |
//!
//! An alert fires at a severity once its condition has held for `ATLAS_ALERT_FOR_WINDOWS`
//! consecutive windows, and resolves only after as many consecutive clear windows
//! (hysteresis); every change is logged and kept in the event history.
//!
//! Health score (0–100) = 100 − 35·latency − 30·errors − 10·cache − 10·saturation −
//! 15·endpoints, each term in [0, 1]: latency = (p95 − target) / (4·target), errors = error
//! rate / (5·`ALERT_ERROR_RATE`), cache = (0.7 − hit rate) / 0.7, saturation = (in flight /
//! max − 0.5) / 0.5, endpoints = share of endpoints whose breaker is open on any shard.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use atlas_shard::{BreakerState, Operation};

use crate::config::Config;
use crate::metrics::{self, MetricsSnapshot, DURATION_BUCKETS};
use crate::runtime::shard::Shard;

/// Alert events kept.
const EVENTS: usize = 200;
/// Fewest requests or lookups in a window for rate-based rules to be evaluated.
const MIN_SAMPLE: u64 = 20;

/// An alert's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
    /// The service is failing.
    Emergency,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Emergency => "emergency",
        }
    }
}

/// The alert rules, in a fixed order.
pub const ALERTS: [&str; 4] = [
    "response_time",
    "error_rate",
    "cache_hit_rate",
    "concurrent_requests",
];

/// One collection window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// AI requests answered in the window.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Cache hits, misses (incl. bypass) and stale answers.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Stale answers.
    pub stale: u64,
    /// p95 latency of successful answers, seconds (bucket upper bound), if any.
    pub p95: Option<f64>,
    /// Hit rate per operation, if it had lookups.
    pub hit_rate: [Option<f64>; Operation::COUNT],
    /// Requests in progress at the end of the window.
    pub in_flight: u64,
    /// Share of endpoints open on some shard.
    pub endpoints_open: f64,
}

/// What the monitor exports with the metrics (`Send`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorSummary {
    /// Health score 0–100.
    pub health_score: f64,
    /// Hit rate per operation over the last window.
    pub hit_rate: [Option<f64>; Operation::COUNT],
    /// Active alerts: (alert, severity).
    pub active: Vec<(&'static str, Severity)>,
    /// Alert changes so far.
    pub events: u64,
}

/// An alert change.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Which alert.
    pub alert: &'static str,
    /// New severity (`None`: resolved).
    pub severity: Option<Severity>,
    /// The measured value that caused it.
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
struct RuleState {
    active: Option<Severity>,
    /// Consecutive windows at (or above) `candidate`.
    streak: u32,
    candidate: Option<Severity>,
}

/// The monitor of shard 0.
pub struct Monitor {
    interval: Duration,
    for_windows: u32,
    response_target: f64,
    error_rate: f64,
    max_concurrent: f64,
    last: RefCell<Option<MetricsSnapshot>>,
    rules: RefCell<[RuleState; 4]>,
    events: RefCell<VecDeque<AlertEvent>>,
    event_count: RefCell<u64>,
    summary: RefCell<MonitorSummary>,
}

impl Monitor {
    /// A monitor configured from `config`.
    pub fn new(config: &Config) -> Rc<Self> {
        Rc::new(Monitor {
            interval: config.monitor_interval,
            for_windows: config.alert_for_windows,
            response_target: config.alert_response_time.as_secs_f64(),
            error_rate: config.alert_error_rate,
            max_concurrent: config.max_concurrent_requests as f64,
            last: RefCell::new(None),
            rules: RefCell::new(Default::default()),
            events: RefCell::new(VecDeque::new()),
            event_count: RefCell::new(0),
            summary: RefCell::new(MonitorSummary {
                health_score: 100.0,
                ..MonitorSummary::default()
            }),
        })
    }

    /// The current summary.
    pub fn summary(&self) -> MonitorSummary {
        self.summary.borrow().clone()
    }

    /// The last alert events, oldest first.
    pub fn events(&self) -> Vec<AlertEvent> {
        self.events.borrow().iter().cloned().collect()
    }

    /// Collects every interval until the shard shuts down.
    pub async fn run(self: Rc<Self>, shard: Rc<Shard>) {
        loop {
            glommio::timer::sleep(self.interval).await;
            if shard.is_draining() {
                return;
            }
            self.observe(&shard.collect_metrics().await);
        }
    }

    /// Turns a collection into a window and evaluates the rules.
    pub fn observe(&self, shards: &[MetricsSnapshot]) {
        let total = metrics::merge(shards);
        let window = {
            let last = self.last.borrow();
            window(&total, last.as_ref(), shards)
        };
        *self.last.borrow_mut() = Some(total);
        self.evaluate(&window);
    }

    fn evaluate(&self, w: &Window) {
        let levels = [
            severity_above(w.p95, [0.75, 1.25, 2.5].map(|k| k * self.response_target)),
            severity_above(
                (w.requests >= MIN_SAMPLE).then(|| w.errors as f64 / w.requests as f64),
                [1.0, 2.0, 5.0].map(|k| k * self.error_rate),
            ),
            {
                let lookups = w.hits + w.misses + w.stale;
                let rate = (lookups >= MIN_SAMPLE).then(|| w.hits as f64 / lookups as f64);
                match rate {
                    Some(r) if r < 0.5 => Some(Severity::Critical),
                    Some(r) if r < 0.7 => Some(Severity::Warning),
                    _ => None,
                }
            },
            severity_above(
                Some(w.in_flight as f64),
                [0.8, 0.95, f64::INFINITY].map(|k| k * self.max_concurrent),
            ),
        ];
        let values = [
            w.p95.unwrap_or(0.0),
            if w.requests > 0 {
                w.errors as f64 / w.requests as f64
            } else {
                0.0
            },
            hit_rate(w).unwrap_or(1.0),
            w.in_flight as f64,
        ];
        let mut rules = self.rules.borrow_mut();
        for (i, level) in levels.into_iter().enumerate() {
            let rule = &mut rules[i];
            if level == rule.candidate {
                rule.streak = rule.streak.saturating_add(1);
            } else {
                rule.candidate = level;
                rule.streak = 1;
            }
            if rule.streak >= self.for_windows && rule.active != rule.candidate {
                rule.active = rule.candidate;
                self.record(ALERTS[i], rule.active, values[i]);
            }
        }
        let active: Vec<(&'static str, Severity)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.active.map(|s| (ALERTS[i], s)))
            .collect();
        let mut summary = self.summary.borrow_mut();
        summary.active = active;
        summary.hit_rate = w.hit_rate;
        summary.health_score = self.health_score(w);
        summary.events = *self.event_count.borrow();
    }

    fn record(&self, alert: &'static str, severity: Option<Severity>, value: f64) {
        match severity {
            Some(s) => log::warn!("alert {alert} firing ({}): value {value:.4}", s.as_str()),
            None => log::info!("alert {alert} resolved: value {value:.4}"),
        }
        *self.event_count.borrow_mut() += 1;
        let mut events = self.events.borrow_mut();
        events.push_back(AlertEvent {
            alert,
            severity,
            value,
        });
        while events.len() > EVENTS {
            events.pop_front();
        }
    }

    fn health_score(&self, w: &Window) -> f64 {
        let unit = |x: f64| x.clamp(0.0, 1.0);
        let target = self.response_target.max(1e-6);
        let latency = w.p95.map_or(0.0, |p| unit((p - target) / (4.0 * target)));
        let errors = if w.requests > 0 {
            unit((w.errors as f64 / w.requests as f64) / (5.0 * self.error_rate.max(1e-6)))
        } else {
            0.0
        };
        let cache = hit_rate(w).map_or(0.0, |r| unit((0.7 - r) / 0.7));
        let saturation = unit((w.in_flight as f64 / self.max_concurrent.max(1.0) - 0.5) / 0.5);
        let score = 100.0
            - 35.0 * latency
            - 30.0 * errors
            - 10.0 * cache
            - 10.0 * saturation
            - 15.0 * unit(w.endpoints_open);
        (score * 10.0).round() / 10.0
    }
}

fn hit_rate(w: &Window) -> Option<f64> {
    let lookups = w.hits + w.misses + w.stale;
    (lookups > 0).then(|| w.hits as f64 / lookups as f64)
}

fn severity_above(value: Option<f64>, bounds: [f64; 3]) -> Option<Severity> {
    let v = value?;
    if v > bounds[2] {
        Some(Severity::Emergency)
    } else if v > bounds[1] {
        Some(Severity::Critical)
    } else if v > bounds[0] {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// The window between two cumulative totals.
fn window(
    now: &MetricsSnapshot,
    last: Option<&MetricsSnapshot>,
    shards: &[MetricsSnapshot],
) -> Window {
    let empty = MetricsSnapshot::default();
    let last = last.unwrap_or(&empty);
    let mut w = Window {
        in_flight: now.in_flight,
        ..Window::default()
    };
    let status_total = |m: &MetricsSnapshot, five: bool| -> u64 {
        m.requests
            .status
            .iter()
            .filter(|(_, s, _)| !five || (500..600).contains(s))
            .map(|(_, _, n)| n)
            .sum()
    };
    w.requests = status_total(now, false).saturating_sub(status_total(last, false));
    w.errors = status_total(now, true).saturating_sub(status_total(last, true));
    let mut buckets = [0u64; DURATION_BUCKETS.len() + 1];
    for op in Operation::ALL {
        let (mut hits, mut lookups) = (0, 0);
        for ci in 0..4 {
            let a = &now.requests.duration[op.index()][ci];
            let b = &last.requests.duration[op.index()][ci];
            let delta: Vec<u64> = a
                .counts()
                .iter()
                .zip(b.counts().iter())
                .map(|(x, y)| x.saturating_sub(*y))
                .collect();
            let n: u64 = delta.iter().sum();
            for (acc, d) in buckets.iter_mut().zip(delta.iter()) {
                *acc += d;
            }
            match ci {
                0 => {
                    w.hits += n;
                    hits += n;
                    lookups += n;
                }
                2 => {
                    w.stale += n;
                    lookups += n;
                }
                _ => {
                    w.misses += n;
                    lookups += n;
                }
            }
        }
        w.hit_rate[op.index()] = (lookups > 0).then(|| hits as f64 / lookups as f64);
    }
    let count: u64 = buckets.iter().sum();
    if count > 0 {
        let need = (count as f64 * 0.95).ceil() as u64;
        let mut cumulative = 0;
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            if cumulative >= need {
                w.p95 = Some(DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
                break;
            }
        }
    }
    let mut distinct: Vec<&str> = shards
        .iter()
        .flat_map(|s| s.engine.endpoints.iter().map(|e| e.name.as_str()))
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    if !distinct.is_empty() {
        let open = distinct
            .iter()
            .filter(|n| {
                shards.iter().any(|s| {
                    s.engine
                        .endpoints
                        .iter()
                        .any(|e| e.name == **n && e.state == BreakerState::Open)
                })
            })
            .count();
        w.endpoints_open = open as f64 / distinct.len() as f64;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::engine::CacheStatus;

    fn config() -> Config {
        Config {
            alert_for_windows: 2,
            ..Config::default()
        }
    }

    fn traffic(snap: &mut MetricsSnapshot, n: u64, seconds: f64, status: u16, cache: CacheStatus) {
        for _ in 0..n {
            snap.requests
                .record(Operation::RiskAssessment, status, Some(cache), seconds, 0.0);
        }
    }

    #[test]
    fn slow_windows_fire_after_the_hold_and_resolve_with_hysteresis() {
        let m = Monitor::new(&config());
        let mut s = MetricsSnapshot::default();
        m.observe(std::slice::from_ref(&s));
        // Two slow windows (p95 0.75 s > 500 ms critical, < 1 s emergency).
        for _ in 0..2 {
            traffic(&mut s, 30, 0.7, 200, CacheStatus::Hit);
            m.observe(std::slice::from_ref(&s));
        }
        assert_eq!(
            m.summary().active,
            vec![("response_time", Severity::Critical)]
        );
        assert!(m.summary().health_score < 100.0);
        // One fast window is not enough to resolve; two are.
        traffic(&mut s, 30, 0.001, 200, CacheStatus::Hit);
        m.observe(std::slice::from_ref(&s));
        assert_eq!(m.summary().active.len(), 1);
        traffic(&mut s, 30, 0.001, 200, CacheStatus::Hit);
        m.observe(std::slice::from_ref(&s));
        assert!(m.summary().active.is_empty());
        let events = m.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].severity, None);
    }

    #[test]
    fn error_rate_and_hit_rate_rules() {
        let m = Monitor::new(&config());
        let mut s = MetricsSnapshot::default();
        for _ in 0..2 {
            traffic(&mut s, 10, 0.001, 503, CacheStatus::Miss);
            for _ in 0..10 {
                s.requests
                    .record(Operation::RiskAssessment, 503, None, 0.001, 0.0);
            }
            traffic(&mut s, 20, 0.001, 200, CacheStatus::Miss);
            m.observe(std::slice::from_ref(&s));
        }
        let active = m.summary().active;
        assert!(
            active.contains(&("error_rate", Severity::Emergency)),
            "{active:?}"
        );
        assert!(
            active.contains(&("cache_hit_rate", Severity::Critical)),
            "{active:?}"
        );
        assert_eq!(
            m.summary().hit_rate[Operation::RiskAssessment.index()],
            Some(0.0)
        );
    }
}

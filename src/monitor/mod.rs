//! The monitor: on shard 0, every `ATLAS_MONITOR_INTERVAL_S` (default 5 s), collect every
//! shard's metrics over the mesh, turn the change since the last collection into a window
//! ([`window`]), keep the last `ATLAS_MONITOR_HISTORY` windows, evaluate the brief's alert
//! rules, compute a health score, follow trends and (optionally) learned baselines
//! ([`trend`]), send alert changes to a webhook ([`webhook`]) and answer
//! `GET /ai/admin/performance` ([`report`]).
//!
//! Layout: `window` (pure window arithmetic), `trend` (slopes, baselines), `report` (the
//! performance document), `webhook` (delivery task). This file owns the state and the rules.
//! Nothing here runs on the request path: the shards only keep plain counters.
//!
//! Alert thresholds (defaults reproduce the brief's table; the two variables scale them):
//!
//! | alert | warning | critical | emergency |
//! | --- | --- | --- | --- |
//! | `response_time` (p95 of the window) | 0.75 × `ALERT_RESPONSE_TIME_MS` (300 ms) | 1.25 × (500 ms) | 2.5 × (1000 ms) |
//! | `error_rate` (5xx share, ≥ 20 requests) | `ALERT_ERROR_RATE` (5 %) | 2 × (10 %) | 5 × (25 %) |
//! | `cache_hit_rate` (≥ 20 lookups) | < 70 % | < 50 % | — |
//! | `concurrent_requests` | > 80 % of `MAX_CONCURRENT_REQUESTS` (8000) | > 95 % (9500) | — |
//! | `latency_deviation` (`ATLAS_ADAPTIVE_THRESHOLDS`, per operation, ≥ 20 answers) | p95 > min(static warning, max(3 × baseline, 5 ms)) | — | — |
//! | `auth_failures` (refusals from one client address in the window) | ≥ `ATLAS_ALERT_AUTH_FAILURES` (20) | — | — |
//!
//! An alert fires at a severity once its condition has held for `ATLAS_ALERT_FOR_WINDOWS`
//! consecutive windows, and resolves only after as many consecutive clear windows
//! (hysteresis); every change is logged, counted, kept in the event history and sent to the
//! webhook.
//!
//! Health score (0–100) = 100 − 35·latency − 30·errors − 10·cache − 10·saturation −
//! 15·endpoints, each term in [0, 1]: latency = (p95 − target) / (4·target), errors = error
//! rate / (5·`ALERT_ERROR_RATE`), cache = (0.7 − hit rate) / 0.7, saturation = (in flight /
//! max − 0.5) / 0.5, endpoints = share of endpoints whose breaker is open on any shard.

pub mod render;
pub mod report;
pub mod trend;
pub mod webhook;
pub mod window;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::wallclock::unix_ms_now;

use atlas_shard::Operation;

use crate::config::Config;
use crate::metrics::{self, MetricsSnapshot};
use trend::Baseline;
use webhook::{Webhook, WebhookStats};
use window::Window;

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
pub const ALERTS: [&str; 6] = [
    "response_time",
    "error_rate",
    "cache_hit_rate",
    "concurrent_requests",
    "latency_deviation",
    "auth_failures",
];

/// The health score and the terms it was computed from (each in [0, 1], 0 = perfect).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Health {
    /// 0–100.
    pub score: f64,
    /// p95 above the response-time target.
    pub latency: f64,
    /// Error rate against five times its threshold.
    pub errors: f64,
    /// Hit rate below 70 %.
    pub cache: f64,
    /// Requests in progress above half the maximum.
    pub saturation: f64,
    /// Share of endpoints with an open breaker.
    pub endpoints: f64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            score: 100.0,
            latency: 0.0,
            errors: 0.0,
            cache: 0.0,
            saturation: 0.0,
            endpoints: 0.0,
        }
    }
}

/// What the monitor exports with the metrics (`Send`).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSummary {
    /// Health score 0–100.
    pub health_score: f64,
    /// Hit rate per operation over the last window.
    pub hit_rate: [Option<f64>; Operation::COUNT],
    /// Active alerts: (alert, severity).
    pub active: Vec<(&'static str, Severity)>,
    /// Alert changes so far.
    pub events: u64,
    /// Webhook deliveries: (delivered, failed after retries, dropped because the queue was
    /// full); zero without a webhook.
    pub notifications: (u64, u64, u64),
}

impl Default for MonitorSummary {
    fn default() -> Self {
        MonitorSummary {
            health_score: 100.0,
            hit_rate: [None; Operation::COUNT],
            active: Vec::new(),
            events: 0,
            notifications: (0, 0, 0),
        }
    }
}

/// An alert change.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Which alert.
    pub alert: &'static str,
    /// New severity (`None`: resolved).
    pub severity: Option<Severity>,
    /// Severity before the change (`None`: it was not firing).
    pub previous: Option<Severity>,
    /// The measured value that caused it (seconds, a fraction, a count or a ratio to the
    /// baseline, by alert).
    pub value: f64,
    /// When, milliseconds since the Unix epoch (the end of the window).
    pub unix_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct RuleState {
    active: Option<Severity>,
    /// Consecutive windows at `candidate`.
    streak: u32,
    candidate: Option<Severity>,
}

/// A window kept in the history, with the health computed from it.
#[derive(Debug, Clone)]
struct Record {
    window: Window,
    health: Health,
}

/// Fixed settings, from the configuration.
#[derive(Debug, Clone)]
struct Settings {
    interval: Duration,
    for_windows: u32,
    history: usize,
    adaptive: bool,
    /// `ALERT_RESPONSE_TIME_MS` in seconds.
    response_target: f64,
    error_rate: f64,
    max_concurrent: f64,
    auth_failures: u64,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Settings {
            interval: config.monitor_interval,
            for_windows: config.alert_for_windows,
            history: config.monitor_history.max(1),
            adaptive: config.adaptive_thresholds,
            response_target: config.alert_response_time.as_secs_f64(),
            error_rate: config.alert_error_rate,
            max_concurrent: config.max_concurrent_requests as f64,
            auth_failures: config.alert_auth_failures,
        }
    }
}

impl Settings {
    /// The static response-time warning threshold, seconds.
    fn latency_warning(&self) -> f64 {
        0.75 * self.response_target
    }
}

/// Where the webhook goes, resolved on the main thread.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The receiver's address.
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// Request path.
    pub path: String,
    /// This instance's name in the payload (`hostname:port`).
    pub instance: String,
}

/// The monitor of shard 0.
pub struct Monitor {
    /// From the configuration; a SIGHUP reload replaces them ([`Monitor::reconfigure`]).
    settings: RefCell<Settings>,
    /// Cumulative totals at the end of each kept window, plus the one before the oldest (so
    /// the history can be summed as one window); with the monotonic time of each, seconds.
    totals: RefCell<VecDeque<(f64, MetricsSnapshot)>>,
    history: RefCell<VecDeque<Record>>,
    rules: RefCell<[RuleState; ALERTS.len()]>,
    baselines: RefCell<[Baseline; Operation::COUNT]>,
    events: RefCell<VecDeque<AlertEvent>>,
    event_count: RefCell<u64>,
    summary: RefCell<MonitorSummary>,
    webhook: Option<Webhook>,
    /// The webhook's delivery task, until `run` starts it.
    delivery: RefCell<Option<webhook::Delivery>>,
    webhook_stats: Rc<WebhookStats>,
    started: Instant,
}

impl Monitor {
    /// A monitor configured from `config`, sending alert changes to `webhook` when given.
    pub fn new(config: &Config, webhook: Option<WebhookTarget>) -> Rc<Self> {
        let webhook_stats = Rc::new(WebhookStats::default());
        let (webhook, delivery) = match webhook {
            Some(target) => {
                let (w, d) = webhook::channel(target, Rc::clone(&webhook_stats));
                (Some(w), Some(d))
            }
            None => (None, None),
        };
        Rc::new(Monitor {
            settings: RefCell::new(Settings::from(config)),
            // Counters start at zero with the process: the first window counts from there.
            totals: RefCell::new(VecDeque::from([(0.0, MetricsSnapshot::default())])),
            history: RefCell::new(VecDeque::new()),
            rules: RefCell::new(Default::default()),
            baselines: RefCell::new([Baseline::default(); Operation::COUNT]),
            events: RefCell::new(VecDeque::new()),
            event_count: RefCell::new(0),
            summary: RefCell::new(MonitorSummary::default()),
            webhook,
            delivery: RefCell::new(delivery),
            webhook_stats,
            started: Instant::now(),
        })
    }

    /// Applies a configuration reload: thresholds, alert hysteresis, adaptive baselines on or
    /// off, the collection interval (from the next window on) and the history length (a
    /// shorter one drops the oldest windows at the next collection). Alert states, history
    /// and learned baselines are kept. `MAX_CONCURRENT_REQUESTS` is not reloadable and stays.
    pub fn reconfigure(&self, config: &Config) {
        let mut settings = self.settings.borrow_mut();
        let max_concurrent = settings.max_concurrent;
        *settings = Settings {
            max_concurrent,
            ..Settings::from(config)
        };
    }

    /// The current summary.
    pub fn summary(&self) -> MonitorSummary {
        let mut s = self.summary.borrow().clone();
        s.notifications = self.webhook_stats.counts();
        s
    }

    /// The last alert events, oldest first.
    pub fn events(&self) -> Vec<AlertEvent> {
        self.events.borrow().iter().cloned().collect()
    }

    /// Collects every interval, through `collect` (every shard's metrics; `None` once the
    /// shard shuts down, which ends the loop).
    pub async fn run<F>(self: Rc<Self>, collect: impl Fn() -> F)
    where
        F: std::future::Future<Output = Option<Vec<MetricsSnapshot>>>,
    {
        if let Some(delivery) = self.delivery.borrow_mut().take() {
            glommio::spawn_local(delivery.run()).detach();
        }
        loop {
            let interval = self.settings.borrow().interval;
            glommio::timer::sleep(interval).await;
            let Some(shards) = collect().await else {
                return;
            };
            self.observe(&shards, self.started.elapsed().as_secs_f64(), unix_ms_now());
        }
    }

    /// Turns a collection taken at `at_s` (monotonic seconds) and `unix_ms` into a window,
    /// keeps it, and evaluates the rules.
    pub fn observe(&self, shards: &[MetricsSnapshot], at_s: f64, unix_ms: u64) {
        let total = metrics::merge(shards);
        let window = {
            let totals = self.totals.borrow();
            let last = totals.back();
            let seconds = last.map_or(at_s, |(t, _)| at_s - *t);
            window::between(
                &total,
                last.map(|(_, m)| m),
                shards,
                seconds.max(1e-3),
                unix_ms,
            )
        };
        {
            let mut totals = self.totals.borrow_mut();
            totals.push_back((at_s, total));
            while totals.len() > self.settings.borrow().history + 1 {
                totals.pop_front();
            }
        }
        let health = self.evaluate(&window);
        let mut history = self.history.borrow_mut();
        history.push_back(Record { window, health });
        while history.len() > self.settings.borrow().history {
            history.pop_front();
        }
    }

    fn evaluate(&self, w: &Window) -> Health {
        let t = &w.total;
        let (levels, values) = {
            let s = self.settings.borrow();
            let lookups_enough = t.lookups >= MIN_SAMPLE;
            let hit = t.hit_rate().filter(|_| lookups_enough);
            let (deviation, ratio) = self.deviation(w);
            (
                [
                    severity_above(t.p95(), [0.75, 1.25, 2.5].map(|k| k * s.response_target)),
                    severity_above(
                        t.error_rate().filter(|_| t.requests >= MIN_SAMPLE),
                        [1.0, 2.0, 5.0].map(|k| k * s.error_rate),
                    ),
                    match hit {
                        Some(r) if r < 0.5 => Some(Severity::Critical),
                        Some(r) if r < 0.7 => Some(Severity::Warning),
                        _ => None,
                    },
                    severity_above(
                        Some(w.in_flight as f64),
                        [0.8, 0.95, f64::INFINITY].map(|k| k * s.max_concurrent),
                    ),
                    deviation,
                    (w.auth_refused_max.0 >= s.auth_failures).then_some(Severity::Warning),
                ],
                [
                    t.p95().unwrap_or(0.0),
                    t.error_rate().unwrap_or(0.0),
                    t.hit_rate().unwrap_or(1.0),
                    w.in_flight as f64,
                    ratio,
                    w.auth_refused_max.0 as f64,
                ],
            )
        };
        {
            let mut rules = self.rules.borrow_mut();
            for (i, level) in levels.into_iter().enumerate() {
                let rule = &mut rules[i];
                if level == rule.candidate {
                    rule.streak = rule.streak.saturating_add(1);
                } else {
                    rule.candidate = level;
                    rule.streak = 1;
                }
                if rule.streak >= self.settings.borrow().for_windows
                    && rule.active != rule.candidate
                {
                    let previous = rule.active;
                    rule.active = rule.candidate;
                    self.record(AlertEvent {
                        alert: ALERTS[i],
                        severity: rule.active,
                        previous,
                        value: values[i],
                        unix_ms: w.unix_ms,
                    });
                }
            }
        }
        let health = self.health(w);
        let active = self.active();
        let mut summary = self.summary.borrow_mut();
        summary.active = active;
        summary.hit_rate = w.ops.each_ref().map(|o| o.hit_rate());
        summary.health_score = health.score;
        summary.events = *self.event_count.borrow();
        health
    }

    /// Alerts firing now, in rule order.
    fn active(&self) -> Vec<(&'static str, Severity)> {
        self.rules
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.active.map(|s| (ALERTS[i], s)))
            .collect()
    }

    /// The `latency_deviation` level and the largest p95/baseline ratio among deviating
    /// operations (learning the baselines of the others).
    fn deviation(&self, w: &Window) -> (Option<Severity>, f64) {
        let (adaptive, warning) = {
            let s = self.settings.borrow();
            (s.adaptive, s.latency_warning())
        };
        if !adaptive {
            return (None, 0.0);
        }
        let mut worst: Option<f64> = None;
        let mut baselines = self.baselines.borrow_mut();
        for (o, b) in w.ops.iter().zip(baselines.iter_mut()) {
            let Some(p95) = o.p95().filter(|_| o.lookups >= MIN_SAMPLE) else {
                continue;
            };
            if b.observe(p95, warning) {
                let ratio = p95 / b.p95.max(1e-9);
                worst = Some(worst.map_or(ratio, |r: f64| r.max(ratio)));
            }
        }
        (worst.map(|_| Severity::Warning), worst.unwrap_or(0.0))
    }

    fn record(&self, event: AlertEvent) {
        let name = event.alert;
        match event.severity {
            Some(s) => log::warn!(
                "alert {name} firing ({}): value {:.4}",
                s.as_str(),
                event.value
            ),
            None => log::info!("alert {name} resolved: value {:.4}", event.value),
        }
        *self.event_count.borrow_mut() += 1;
        if let Some(hook) = &self.webhook {
            hook.send(&event, self.summary.borrow().health_score);
        }
        let mut events = self.events.borrow_mut();
        events.push_back(event);
        while events.len() > EVENTS {
            events.pop_front();
        }
    }

    fn health(&self, w: &Window) -> Health {
        let unit = |x: f64| x.clamp(0.0, 1.0);
        let s = self.settings.borrow();
        let target = s.response_target.max(1e-6);
        let t = &w.total;
        let latency = t.p95().map_or(0.0, |p| unit((p - target) / (4.0 * target)));
        let errors = t
            .error_rate()
            .map_or(0.0, |r| unit(r / (5.0 * s.error_rate.max(1e-6))));
        let cache = t.hit_rate().map_or(0.0, |r| unit((0.7 - r) / 0.7));
        let saturation = unit((w.in_flight as f64 / s.max_concurrent.max(1.0) - 0.5) / 0.5);
        let endpoints = unit(w.endpoints_open);
        let score = 100.0
            - 35.0 * latency
            - 30.0 * errors
            - 10.0 * cache
            - 10.0 * saturation
            - 15.0 * endpoints;
        Health {
            score: (score * 10.0).round() / 10.0,
            latency,
            errors,
            cache,
            saturation,
            endpoints,
        }
    }
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

#[cfg(test)]
mod tests;

//! Prometheus metrics: per-shard plain counters and fixed-bucket histograms recorded on the
//! request path without atomics, a `Send` snapshot each shard produces on a scrape, the merge
//! of all shards' snapshots, and the text exposition format (0.0.4).
//!
//! The serving shard answers `GET /metrics` by broadcasting one `Metrics` call over the mesh;
//! each shard copies its counters (a few kilobytes) and goes back to work. Nothing here
//! touches sockets.

use std::fmt::Write as _;

use atlas_shard::{BatchStats, Operation};

use crate::ai::engine::CacheStatus;
use crate::ai::engine::EngineFigures;
use crate::ai::invalidation::{Invalidation, Kind};
use crate::monitor::{MonitorSummary, Severity, ALERTS};

/// Upper bounds (seconds) of the request-duration buckets: sub-millisecond hits to
/// multi-second misses.
pub const DURATION_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the batch-size buckets.
const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Upper bounds (microseconds) of the queue-time buckets.
const QUEUE_BUCKETS_US: [u64; 12] = [
    100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

const CACHE_LABELS: [&str; 4] = ["hit", "miss", "stale", "bypass"];

fn cache_index(c: CacheStatus) -> usize {
    match c {
        CacheStatus::Hit => 0,
        CacheStatus::Miss => 1,
        CacheStatus::Stale => 2,
        CacheStatus::Bypass => 3,
    }
}

/// A fixed-bucket histogram (non-cumulative counts; made cumulative when rendered).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    counts: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
}

impl Buckets {
    /// Records one duration in seconds.
    pub fn record(&mut self, seconds: f64) {
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += seconds;
    }

    fn merge(&mut self, o: &Buckets) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.sum += o.sum;
    }

    /// Answers recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-cumulative counts per bucket (the last one is above every bound).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }
}

/// What one shard records on its request path (AI requests it accepted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestMetrics {
    /// Duration by operation and cache outcome (successful answers).
    pub duration: [[Buckets; 4]; Operation::COUNT],
    /// Gateway overhead (total minus model processing) by operation.
    pub overhead: [Buckets; Operation::COUNT],
    /// Answers by operation and HTTP status.
    pub status: Vec<(Operation, u16, u64)>,
    /// Answers a model computed for this request, by operation (mean batch size and queue
    /// time as requests saw them, for `/ai/admin/performance`).
    pub model: [ModelFigures; Operation::COUNT],
    /// Invalidations this shard accepted (API, events, context changes), by selector kind.
    pub invalidations: [u64; Kind::COUNT],
    /// Invalidations another instance published and this one applied, by selector kind.
    pub peer_invalidations: [u64; Kind::COUNT],
    /// Events accepted, by type (the built-in and configured types only: bounded).
    pub events: Vec<(String, u64)>,
}

/// Sums over the answers a model computed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelFigures {
    /// Answers computed by a model.
    pub answers: u64,
    /// Sum of the sizes of the batches they were computed in.
    pub batch_sum: u64,
    /// Sum of the seconds they waited in a batch queue.
    pub queue_s: f64,
}

impl ModelFigures {
    /// The change since `earlier`.
    pub fn since(&self, earlier: &ModelFigures) -> ModelFigures {
        ModelFigures {
            answers: self.answers.saturating_sub(earlier.answers),
            batch_sum: self.batch_sum.saturating_sub(earlier.batch_sum),
            queue_s: (self.queue_s - earlier.queue_s).max(0.0),
        }
    }

    fn add(&mut self, o: &ModelFigures) {
        self.answers += o.answers;
        self.batch_sum += o.batch_sum;
        self.queue_s += o.queue_s;
    }
}

impl RequestMetrics {
    /// Records one answered AI request.
    pub fn record(
        &mut self,
        op: Operation,
        status: u16,
        cache: Option<CacheStatus>,
        total_s: f64,
        processing_s: f64,
    ) {
        if let Some(c) = cache {
            self.duration[op.index()][cache_index(c)].record(total_s);
            self.overhead[op.index()].record((total_s - processing_s).max(0.0));
        }
        match self
            .status
            .iter_mut()
            .find(|(o, s, _)| *o == op && *s == status)
        {
            Some(entry) => entry.2 += 1,
            None => self.status.push((op, status, 1)),
        }
    }

    /// Records an answer a model computed in a batch of `batch_size` after `queue_s` queued.
    pub fn record_model(&mut self, op: Operation, batch_size: usize, queue_s: f64) {
        let m = &mut self.model[op.index()];
        m.answers += 1;
        m.batch_sum += batch_size as u64;
        m.queue_s += queue_s;
    }

    /// Records an invalidation this shard accepted: one for each kind of selector it uses.
    pub fn record_invalidation(&mut self, inv: &Invalidation) {
        for kind in inv.kinds() {
            self.invalidations[kind.index()] += 1;
        }
    }

    /// Records an invalidation another instance published, applied here.
    pub fn record_peer_invalidation(&mut self, inv: &Invalidation) {
        for kind in inv.kinds() {
            self.peer_invalidations[kind.index()] += 1;
        }
    }

    /// Records an accepted event of type `event`.
    pub fn record_event(&mut self, event: &str) {
        add_event(&mut self.events, event, 1);
    }

    fn merge(&mut self, o: &RequestMetrics) {
        for (a, b) in self.model.iter_mut().zip(o.model.iter()) {
            a.add(b);
        }
        for (a, b) in self.invalidations.iter_mut().zip(o.invalidations) {
            *a += b;
        }
        for (a, b) in self.peer_invalidations.iter_mut().zip(o.peer_invalidations) {
            *a += b;
        }
        for (event, n) in &o.events {
            add_event(&mut self.events, event, *n);
        }
        for (a, b) in self.duration.iter_mut().zip(o.duration.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                x.merge(y);
            }
        }
        for (a, b) in self.overhead.iter_mut().zip(o.overhead.iter()) {
            a.merge(b);
        }
        for &(op, status, n) in &o.status {
            match self
                .status
                .iter_mut()
                .find(|(x, s, _)| *x == op && *s == status)
            {
                Some(entry) => entry.2 += n,
                None => self.status.push((op, status, n)),
            }
        }
    }
}

fn add_event(events: &mut Vec<(String, u64)>, event: &str, n: u64) {
    match events.iter_mut().find(|(e, _)| e == event) {
        Some(entry) => entry.1 += n,
        None => events.push((event.to_string(), n)),
    }
}

/// One shard's metrics, copied on a scrape (plain data, `Send`).
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// Request-path metrics.
    pub requests: RequestMetrics,
    /// Requests in progress.
    pub in_flight: u64,
    /// Client connections open.
    pub connections_open: u64,
    /// The engine's counters.
    pub engine: EngineFigures,
    /// Queue lengths by operation.
    pub queued: [u64; Operation::COUNT],
    /// Batch sizes: cumulative counts at each of `BATCH_BUCKETS`, total count, sum.
    pub batch_size: (Vec<u64>, u64, f64),
    /// Queue times (µs): cumulative counts at each of `QUEUE_BUCKETS_US`, total count, sum.
    pub queue_time: (Vec<u64>, u64, f64),
    /// The monitor's summary (shard 0 only).
    pub monitor: Option<MonitorSummary>,
    /// Authentication counters.
    pub auth: crate::auth::AuthFigures,
    /// The rate limits' figures (`None` when every limit is off).
    pub rate: Option<crate::ratelimit::RateFigures>,
}

/// The cumulative bucket counts, total and sum of a `Distribution`-like source.
fn cumulative(
    bounds: &[u64],
    count_at_or_below: impl Fn(u64) -> u64,
    count: u64,
    mean: f64,
) -> (Vec<u64>, u64, f64) {
    (
        bounds.iter().map(|&b| count_at_or_below(b)).collect(),
        count,
        mean * count as f64,
    )
}

impl MetricsSnapshot {
    /// Batch figures from a shard's batch statistics.
    pub fn set_batch_stats(&mut self, stats: &BatchStats) {
        self.queued = stats.queue_len;
        let b = &stats.batch_size;
        self.batch_size = cumulative(
            &BATCH_BUCKETS,
            |v| b.count_at_or_below(v),
            b.count(),
            b.mean(),
        );
        let q = &stats.queue_time_us;
        self.queue_time = cumulative(
            &QUEUE_BUCKETS_US,
            |v| q.count_at_or_below(v),
            q.count(),
            q.mean(),
        );
    }

    fn merge(&mut self, o: &MetricsSnapshot) {
        self.requests.merge(&o.requests);
        self.in_flight += o.in_flight;
        self.connections_open += o.connections_open;
        self.engine.merge(&o.engine);
        self.auth.merge(&o.auth);
        for (a, b) in self.queued.iter_mut().zip(o.queued.iter()) {
            *a += b;
        }
        merge_cumulative(&mut self.batch_size, &o.batch_size);
        merge_cumulative(&mut self.queue_time, &o.queue_time);
        match (&mut self.rate, &o.rate) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.rate = Some(*b),
            _ => {}
        }
    }
}

fn merge_cumulative(a: &mut (Vec<u64>, u64, f64), b: &(Vec<u64>, u64, f64)) {
    if a.0.len() < b.0.len() {
        a.0.resize(b.0.len(), 0);
    }
    for (x, y) in a.0.iter_mut().zip(b.0.iter()) {
        *x += y;
    }
    a.1 += b.1;
    a.2 += b.2;
}

/// All shards' snapshots merged into one (endpoint views and the monitor summary are not
/// merged: they are read per shard).
pub fn merge(shards: &[MetricsSnapshot]) -> MetricsSnapshot {
    let mut total = MetricsSnapshot::default();
    for s in shards {
        total.merge(s);
    }
    total
}

/// Renders every shard's snapshot as one Prometheus text exposition.
pub fn render(shards: &[MetricsSnapshot]) -> String {
    let total = merge(shards);
    let mut out = String::with_capacity(16 * 1024);
    let w = &mut out;
    head(w, "atlas_build_info", "gauge", "Build information.");
    let _ = writeln!(
        w,
        "atlas_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    head(
        w,
        "ai_optimized_request_duration_seconds",
        "histogram",
        "Time from a parsed AI request to its answer, by operation and cache outcome.",
    );
    for op in Operation::ALL {
        for (ci, cache) in CACHE_LABELS.iter().enumerate() {
            let labels = format!("operation=\"{}\",cache=\"{cache}\"", op.as_str());
            histogram(
                w,
                "ai_optimized_request_duration_seconds",
                &labels,
                &total.requests.duration[op.index()][ci],
            );
        }
    }
    head(
        w,
        "ai_gateway_overhead_seconds",
        "histogram",
        "Time an AI request spends in Atlas outside the model call (total minus processing).",
    );
    for op in Operation::ALL {
        let labels = format!("operation=\"{}\"", op.as_str());
        histogram(
            w,
            "ai_gateway_overhead_seconds",
            &labels,
            &total.requests.overhead[op.index()],
        );
    }
    head(
        w,
        "ai_optimized_requests_total",
        "counter",
        "AI requests answered, by operation and HTTP status.",
    );
    let mut status = total.requests.status.clone();
    status.sort_by_key(|(op, s, _)| (op.index(), *s));
    for (op, s, n) in status {
        let _ = writeln!(
            w,
            "ai_optimized_requests_total{{operation=\"{}\",status=\"{s}\"}} {n}",
            op.as_str()
        );
    }
    head(
        w,
        "ai_cache_operations_total",
        "counter",
        "L1 cache outcomes (by operation for lookups; operation=\"all\" for stores, evictions and invalidations).",
    );
    for op in Operation::ALL {
        for (ci, cache) in CACHE_LABELS.iter().enumerate() {
            let n = total.requests.duration[op.index()][ci].count();
            let _ = writeln!(
                w,
                "ai_cache_operations_total{{operation=\"{}\",result=\"{cache}\"}} {n}",
                op.as_str()
            );
        }
    }
    for (result, n) in [
        ("store", total.engine.cache.inserts),
        ("evict", total.engine.cache.evictions),
        ("invalidate", total.engine.cache.invalidations),
        ("expire", total.engine.cache.expirations),
    ] {
        let _ = writeln!(
            w,
            "ai_cache_operations_total{{operation=\"all\",result=\"{result}\"}} {n}"
        );
    }
    gauge(
        w,
        "ai_cache_entries",
        "Results in the L1 caches.",
        total.engine.cache_entries as f64,
    );
    gauge(
        w,
        "ai_cache_bytes",
        "Bytes accounted in the L1 caches.",
        total.engine.cache_bytes as f64,
    );
    gauge(
        w,
        "ai_concurrent_requests",
        "AI requests in progress.",
        total.in_flight as f64,
    );
    gauge(
        w,
        "ai_connections_open",
        "Client connections open.",
        total.connections_open as f64,
    );
    head(
        w,
        "ai_request_queue_size",
        "gauge",
        "Requests waiting in the batch queues, by operation.",
    );
    for op in Operation::ALL {
        let _ = writeln!(
            w,
            "ai_request_queue_size{{operation=\"{}\"}} {}",
            op.as_str(),
            total.queued[op.index()]
        );
    }
    counter(
        w,
        "ai_single_flight_joins_total",
        "Requests that joined an identical computation in flight.",
        total.engine.flights.joins,
    );
    counter(
        w,
        "ai_model_computations_total",
        "Inputs computed by model endpoints.",
        total.engine.computations,
    );
    counter(
        w,
        "ai_model_batches_total",
        "Batches sent to model endpoints.",
        total.engine.batches,
    );
    cumulative_histogram(
        w,
        "ai_batch_size",
        "Requests per model batch.",
        &BATCH_BUCKETS.map(|b| b as f64),
        &total.batch_size,
        1.0,
    );
    cumulative_histogram(
        w,
        "ai_queue_time_seconds",
        "Time requests waited in the batch queues.",
        &QUEUE_BUCKETS_US.map(|b| b as f64 / 1e6),
        &total.queue_time,
        1e-6,
    );
    invalidations(w, &total);
    endpoints(w, shards);
    l2(w, shards);
    auth(w, &total.auth, total.rate.as_ref());
    rate_limits(w, total.rate.as_ref());
    if let Some(m) = shards.iter().find_map(|s| s.monitor.as_ref()) {
        monitor(w, m);
    }
    out
}

/// The rate-limit metrics: refusals always (zeros with every limit off), the rest only when a
/// limit is on; Redis figures only with Redis.
fn rate_limits(w: &mut String, rate: Option<&crate::ratelimit::RateFigures>) {
    let zero = crate::ratelimit::RateFigures::default();
    let r = rate.unwrap_or(&zero);
    head(
        w,
        "ai_rate_limited_total",
        "counter",
        "Requests refused with 429 by a rate limit, by scope (user or global).",
    );
    for (scope, n) in [("user", r.refused_user), ("global", r.refused_global)] {
        let _ = writeln!(w, "ai_rate_limited_total{{scope=\"{scope}\"}} {n}");
    }
    if rate.is_none() {
        return;
    }
    gauge(
        w,
        "ai_rate_limit_users",
        "Users whose rate-limit bucket is tracked (idle users with a full bucket are dropped).",
        r.tracked_users as f64,
    );
    counter(
        w,
        "ai_rate_limit_untracked_total",
        "Requests of users not tracked because the table was full (accepted without a user limit).",
        r.untracked,
    );
    let Some(store) = &r.store else {
        return;
    };
    head(
        w,
        "ai_rate_limit_redis_total",
        "counter",
        "Rate-limit token batches asked of Redis (take), failed (error), not tried while its breaker was open (skipped), unspent tokens returned (return), and decisions made without Redis because it failed (fallback).",
    );
    for (result, n) in [
        ("take", store.takes),
        ("error", store.errors),
        ("skipped", store.skipped),
        ("return", store.returns),
        ("fallback", r.fallbacks),
    ] {
        let _ = writeln!(w, "ai_rate_limit_redis_total{{result=\"{result}\"}} {n}");
    }
    counter(
        w,
        "ai_rate_limit_unavailable_total",
        "Requests refused with 503 because Redis was unreachable and ATLAS_RATE_LIMIT_REDIS_FAILURE=closed.",
        r.unavailable,
    );
}

fn monitor(w: &mut String, m: &MonitorSummary) {
    head(
        w,
        "ai_cache_hit_rate",
        "gauge",
        "L1 hit rate over the last monitor window, by operation (absent without lookups).",
    );
    for op in Operation::ALL {
        if let Some(rate) = m.hit_rate[op.index()] {
            let _ = writeln!(
                w,
                "ai_cache_hit_rate{{operation=\"{}\"}} {rate}",
                op.as_str()
            );
        }
    }
    gauge(
        w,
        "ai_health_score",
        "Health score 0-100 from latency, errors, cache, saturation and endpoints.",
        m.health_score,
    );
    head(
        w,
        "ai_alerts_active",
        "gauge",
        "1 for each alert firing at a severity.",
    );
    for alert in ALERTS {
        for sev in [Severity::Warning, Severity::Critical, Severity::Emergency] {
            let on = u8::from(m.active.contains(&(alert, sev)));
            let _ = writeln!(
                w,
                "ai_alerts_active{{alert=\"{alert}\",severity=\"{}\"}} {on}",
                sev.as_str()
            );
        }
    }
    counter(
        w,
        "ai_alert_events_total",
        "Alert state changes since start.",
        m.events,
    );
    head(
        w,
        "ai_alert_notifications_total",
        "counter",
        "Alert changes sent to ATLAS_ALERT_WEBHOOK: delivered, failed after retries, dropped (queue full).",
    );
    let (delivered, failed, dropped) = m.notifications;
    for (result, n) in [
        ("delivered", delivered),
        ("failed", failed),
        ("dropped", dropped),
    ] {
        let _ = writeln!(w, "ai_alert_notifications_total{{result=\"{result}\"}} {n}");
    }
}

/// Authentication and security-event series.
fn auth(
    w: &mut String,
    a: &crate::auth::AuthFigures,
    rate: Option<&crate::ratelimit::RateFigures>,
) {
    head(
        w,
        "ai_auth_token_cache_total",
        "counter",
        "Bearer JWTs found in the verified-token cache (hit) or verified in full (miss).",
    );
    let _ = writeln!(
        w,
        "ai_auth_token_cache_total{{result=\"hit\"}} {}",
        a.cache_hits
    );
    let _ = writeln!(
        w,
        "ai_auth_token_cache_total{{result=\"miss\"}} {}",
        a.cache_misses
    );
    head(
        w,
        "ai_security_events_total",
        "counter",
        "Security events: refusals by code (401s and admin_required), user_mismatch, admin actions, rate-limit refusals.",
    );
    for (code, n) in crate::auth::CODES.iter().zip(a.refused) {
        let _ = writeln!(w, "ai_security_events_total{{event=\"{code}\"}} {n}");
    }
    let _ = writeln!(
        w,
        "ai_security_events_total{{event=\"user_mismatch\"}} {}",
        a.forbidden
    );
    let _ = writeln!(
        w,
        "ai_security_events_total{{event=\"admin_action\"}} {}",
        a.admin_actions
    );
    let limited = rate.map_or(0, |r| r.refused_user + r.refused_global + r.unavailable);
    let _ = writeln!(
        w,
        "ai_security_events_total{{event=\"rate_limited\"}} {limited}"
    );
}

/// The Redis L2 series (only when it is configured).
fn l2(w: &mut String, shards: &[MetricsSnapshot]) {
    let mut total: Option<crate::l2::L2Figures> = None;
    for s in shards {
        if let Some(f) = &s.engine.l2 {
            total.get_or_insert_with(Default::default).merge(f);
        }
    }
    let Some(t) = total else {
        return;
    };
    head(
        w,
        "ai_l2_operations_total",
        "counter",
        "Redis L2 lookups by result (hit, miss, error, timeout, corrupt, stale, skipped) and stores (store, store_dropped).",
    );
    for (result, n) in [
        ("hit", t.hits),
        ("miss", t.misses),
        ("error", t.errors),
        ("timeout", t.timeouts),
        ("corrupt", t.corrupt),
        ("stale", t.stale),
        ("skipped", t.skipped),
        ("store", t.stores),
        ("store_dropped", t.stores_dropped),
    ] {
        let _ = writeln!(w, "ai_l2_operations_total{{result=\"{result}\"}} {n}");
    }
    head(
        w,
        "ai_l2_state",
        "gauge",
        "Redis breaker state per shard: 0 closed, 1 half-open, 2 open.",
    );
    for (k, s) in shards.iter().enumerate() {
        if let Some(state) = s.engine.l2.as_ref().and_then(|f| f.state) {
            let _ = writeln!(w, "ai_l2_state{{shard=\"{k}\"}} {}", state.as_gauge());
        }
    }
    gauge(
        w,
        "ai_l2_connections",
        "Redis worker connections up.",
        t.connected as f64,
    );
}

fn invalidations(w: &mut String, total: &MetricsSnapshot) {
    head(
        w,
        "ai_invalidations_total",
        "counter",
        "Invalidations accepted (API, events, context changes), by selector kind.",
    );
    for kind in Kind::ALL {
        let n = total.requests.invalidations[kind.index()];
        let _ = writeln!(
            w,
            "ai_invalidations_total{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }
    head(
        w,
        "ai_peer_invalidations_total",
        "counter",
        "Invalidations other instances published (Redis pub/sub) and this one applied, by selector kind.",
    );
    for kind in Kind::ALL {
        let n = total.requests.peer_invalidations[kind.index()];
        let _ = writeln!(
            w,
            "ai_peer_invalidations_total{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }
    head(
        w,
        "ai_invalidated_entries_total",
        "counter",
        "L1 entries removed by invalidations, by the selector kind that removed them.",
    );
    for kind in Kind::ALL {
        let n = total.engine.invalidated[kind.index()];
        let _ = writeln!(
            w,
            "ai_invalidated_entries_total{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }
    head(w, "ai_events_total", "counter", "Events accepted, by type.");
    let mut events = total.requests.events.clone();
    events.sort();
    for (event, n) in events {
        let _ = writeln!(w, "ai_events_total{{type=\"{event}\"}} {n}");
    }
    gauge(
        w,
        "ai_context_entries",
        "Stored user contexts.",
        total.engine.context_entries as f64,
    );
    gauge(
        w,
        "ai_context_bytes",
        "Bytes accounted to stored user contexts.",
        total.engine.context_bytes as f64,
    );
    head(
        w,
        "ai_context_operations_total",
        "counter",
        "Stored-context outcomes: write, hit, miss, delete, evict, expire.",
    );
    let c = &total.engine.contexts;
    for (result, n) in [
        ("write", c.writes),
        ("hit", c.hits),
        ("miss", c.misses),
        ("delete", c.deletes),
        ("evict", c.evictions),
        ("expire", c.expirations),
    ] {
        let _ = writeln!(w, "ai_context_operations_total{{result=\"{result}\"}} {n}");
    }
}

fn endpoints(w: &mut String, shards: &[MetricsSnapshot]) {
    head(
        w,
        "ai_endpoint_state",
        "gauge",
        "Circuit breaker state per endpoint and shard: 0 closed, 1 half-open, 2 open.",
    );
    for (k, s) in shards.iter().enumerate() {
        for e in &s.engine.endpoints {
            let _ = writeln!(
                w,
                "ai_endpoint_state{{endpoint=\"{}\",shard=\"{k}\"}} {}",
                e.name,
                e.state.as_gauge()
            );
        }
    }
    head(
        w,
        "ai_endpoint_calls_total",
        "counter",
        "Batch calls per endpoint.",
    );
    for (name, calls, _, _) in endpoint_sums(shards) {
        let _ = writeln!(w, "ai_endpoint_calls_total{{endpoint=\"{name}\"}} {calls}");
    }
    head(
        w,
        "ai_endpoint_errors_total",
        "counter",
        "Failed batch calls per endpoint.",
    );
    for (name, _, errors, _) in endpoint_sums(shards) {
        let _ = writeln!(
            w,
            "ai_endpoint_errors_total{{endpoint=\"{name}\"}} {errors}"
        );
    }
    head(
        w,
        "ai_endpoint_latency_seconds",
        "gauge",
        "Peak-EWMA latency estimate per endpoint (mean over shards).",
    );
    for (name, _, _, ewma_ms) in endpoint_sums(shards) {
        let _ = writeln!(
            w,
            "ai_endpoint_latency_seconds{{endpoint=\"{name}\"}} {}",
            ewma_ms / 1000.0
        );
    }
}

/// (name, calls, errors, mean EWMA ms) per endpoint across shards.
fn endpoint_sums(shards: &[MetricsSnapshot]) -> Vec<(String, u64, u64, f64)> {
    let mut out: Vec<(String, u64, u64, f64, u32)> = Vec::new();
    for s in shards {
        for e in &s.engine.endpoints {
            match out.iter_mut().find(|x| x.0 == e.name) {
                Some(x) => {
                    x.1 += e.calls;
                    x.2 += e.errors;
                    x.3 += e.ewma_ms;
                    x.4 += 1;
                }
                None => out.push((e.name.clone(), e.calls, e.errors, e.ewma_ms, 1)),
            }
        }
    }
    out.into_iter()
        .map(|(n, c, e, m, k)| (n, c, e, m / f64::from(k.max(1))))
        .collect()
}

fn head(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(w: &mut String, name: &str, help: &str, value: f64) {
    head(w, name, "gauge", help);
    let _ = writeln!(w, "{name} {value}");
}

fn counter(w: &mut String, name: &str, help: &str, value: u64) {
    head(w, name, "counter", help);
    let _ = writeln!(w, "{name} {value}");
}

fn histogram(w: &mut String, name: &str, labels: &str, b: &Buckets) {
    let mut cumulative = 0;
    for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
        cumulative += b.counts[i];
        let _ = writeln!(w, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    cumulative += b.counts[DURATION_BUCKETS.len()];
    let _ = writeln!(w, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(w, "{name}_sum{{{labels}}} {}", b.sum);
    let _ = writeln!(w, "{name}_count{{{labels}}} {cumulative}");
}

fn cumulative_histogram(
    w: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    data: &(Vec<u64>, u64, f64),
    sum_scale: f64,
) {
    head(w, name, "histogram", help);
    let mut last = 0;
    for (i, bound) in bounds.iter().enumerate() {
        // Cumulative counts must never decrease.
        last = data.0.get(i).copied().unwrap_or(last).max(last).min(data.1);
        let _ = writeln!(w, "{name}_bucket{{le=\"{bound}\"}} {last}");
    }
    let _ = writeln!(w, "{name}_bucket{{le=\"+Inf\"}} {}", data.1);
    let _ = writeln!(w, "{name}_sum {}", data.2 * sum_scale);
    let _ = writeln!(w, "{name}_count {}", data.1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_counts_add_up() {
        let mut a = MetricsSnapshot::default();
        a.requests.record(
            Operation::RiskAssessment,
            200,
            Some(CacheStatus::Hit),
            0.0002,
            0.0,
        );
        a.requests.record(
            Operation::RiskAssessment,
            200,
            Some(CacheStatus::Miss),
            0.3,
            0.29,
        );
        a.requests
            .record(Operation::RiskAssessment, 400, None, 0.0001, 0.0);
        let mut b = MetricsSnapshot::default();
        b.requests.record(
            Operation::RiskAssessment,
            200,
            Some(CacheStatus::Hit),
            0.0004,
            0.0,
        );
        let text = render(&[a, b]);
        assert!(text.contains(
            "ai_optimized_request_duration_seconds_bucket{operation=\"risk_assessment\",cache=\"hit\",le=\"0.00025\"} 1"
        ));
        assert!(text.contains(
            "ai_optimized_request_duration_seconds_count{operation=\"risk_assessment\",cache=\"hit\"} 2"
        ));
        assert!(text.contains(
            "ai_optimized_requests_total{operation=\"risk_assessment\",status=\"200\"} 3"
        ));
        assert!(text.contains(
            "ai_optimized_requests_total{operation=\"risk_assessment\",status=\"400\"} 1"
        ));
        assert!(text.contains(
            "ai_cache_operations_total{operation=\"risk_assessment\",result=\"miss\"} 1"
        ));
    }
}

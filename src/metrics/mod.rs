//! Prometheus metrics: per-shard plain counters and fixed-bucket histograms recorded on the
//! request path without atomics, a `Send` snapshot each shard produces on a scrape, the merge
//! of all shards' snapshots, and the text exposition format (0.0.4).
//!
//! The serving shard answers `GET /metrics` by broadcasting one `Metrics` call over the mesh;
//! each shard copies its counters (a few kilobytes) and goes back to work. Nothing here
//! touches sockets.

use atlas_shard::{BatchStats, Operation};

use crate::ai::engine::CacheStatus;
use crate::ai::engine::EngineFigures;
use crate::ai::invalidation::{Invalidation, Kind};

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
    /// `/graphql` requests answered, by path ([`GraphqlPath`]).
    pub graphql: [u64; GraphqlPath::ALL.len()],
}

/// How a `/graphql` request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphqlPath {
    /// The prepared path, with the request's bytes bound before (the GraphQL memo).
    Memo,
    /// The prepared path, bound now.
    Prepared,
    /// async-graphql (documents without a plan, values the prepared path leaves to it, and
    /// requests that are refused before execution).
    General,
}

impl GraphqlPath {
    /// Every path, in index order.
    pub const ALL: [GraphqlPath; 3] = [
        GraphqlPath::Memo,
        GraphqlPath::Prepared,
        GraphqlPath::General,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphqlPath::Memo => "memo",
            GraphqlPath::Prepared => "prepared",
            GraphqlPath::General => "general",
        }
    }
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

    /// Records a `/graphql` request answered by `path`.
    pub fn record_graphql(&mut self, path: GraphqlPath) {
        self.graphql[path as usize] += 1;
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
        for (a, b) in self.graphql.iter_mut().zip(o.graphql) {
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
    /// Authentication counters.
    pub auth: crate::auth::AuthFigures,
    /// The rate limits' figures (`None` when every limit is off).
    pub rate: Option<crate::ratelimit::RateFigures>,
    /// The request memo's figures.
    pub memo: crate::ai::memo::MemoFigures,
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
        self.memo.merge(&o.memo);
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

/// All shards' snapshots merged into one (endpoint views are not merged: they are read per
/// shard).
pub fn merge(shards: &[MetricsSnapshot]) -> MetricsSnapshot {
    let mut total = MetricsSnapshot::default();
    for s in shards {
        total.merge(s);
    }
    total
}

pub mod render;

pub use render::render;

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

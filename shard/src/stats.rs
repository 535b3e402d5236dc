//! Per-shard statistics: plain counters owned by each structure (cache, single-flight table,
//! batch queues), hdrhistogram distributions, and [`ShardSnapshot`], the cheap copy the server
//! merges across shards for `/metrics`.
//!
//! Recording is a plain integer add or a histogram bucket increment: no atomics, no locks (one
//! owner per shard). Depends only on `hdrhistogram`.

use hdrhistogram::Histogram;

use crate::config::Operation;

/// A distribution of non-negative integers (microseconds, batch sizes) with two significant
/// digits, values clamped to `[1, high]`.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// Always `Some`: construction with constant bounds cannot fail, but the library's API is
    /// fallible and this crate does not panic.
    inner: Option<Histogram<u64>>,
}

impl Distribution {
    /// An empty distribution covering `[1, high]` (`high` at least 2).
    pub fn new(high: u64) -> Self {
        Distribution {
            inner: Histogram::new_with_bounds(1, high.max(2), 2).ok(),
        }
    }

    /// Records one value (clamped into range).
    #[inline]
    pub fn record(&mut self, value: u64) {
        if let Some(h) = &mut self.inner {
            h.saturating_record(value.max(1));
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.inner.as_ref().map_or(0, Histogram::len)
    }

    /// Number of recorded values at or below `value` (for cumulative histogram buckets; exact
    /// to the distribution's two significant digits).
    pub fn count_at_or_below(&self, value: u64) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |h| h.count_between(0, value.max(1)))
    }

    /// The value at quantile `q` in `[0, 1]` (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        self.inner.as_ref().map_or(0, |h| h.value_at_quantile(q))
    }

    /// Mean of recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        self.inner.as_ref().map_or(0.0, Histogram::mean)
    }

    /// Largest recorded value (0 when empty).
    pub fn max(&self) -> u64 {
        self.inner.as_ref().map_or(0, Histogram::max)
    }

    /// Adds every value of `other` (values past this distribution's range are clamped).
    pub fn merge(&mut self, other: &Distribution) {
        if let (Some(a), Some(b)) = (&mut self.inner, &other.inner) {
            for v in b.iter_recorded() {
                a.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }
}

/// Counters of the L1 cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Fresh hits.
    pub hits: u64,
    /// Hits inside stale-while-revalidate.
    pub stale_hits: u64,
    /// Lookups that found only a stale-if-error candidate (also counted as misses).
    pub stale_if_error: u64,
    /// Lookups that must compute (no entry, expired, collision, or stale-if-error candidate).
    pub misses: u64,
    /// Lookups whose 64-bit hash matched an entry with different key bytes.
    pub collisions: u64,
    /// Stored results.
    pub inserts: u64,
    /// Inserts refused for size.
    pub too_large: u64,
    /// Entries removed to keep the byte budget.
    pub evictions: u64,
    /// Entries removed past their TTL plus stale windows.
    pub expirations: u64,
    /// Entries removed by invalidation (key, tag, symbol, user, operation, clear).
    pub invalidations: u64,
    /// Entries replaced by a newer result under the same key.
    pub replaced: u64,
    /// Refresh-ahead reports.
    pub refresh_ahead: u64,
}

impl CacheCounters {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, o: &CacheCounters) {
        self.hits += o.hits;
        self.stale_hits += o.stale_hits;
        self.stale_if_error += o.stale_if_error;
        self.misses += o.misses;
        self.collisions += o.collisions;
        self.inserts += o.inserts;
        self.too_large += o.too_large;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
        self.invalidations += o.invalidations;
        self.replaced += o.replaced;
        self.refresh_ahead += o.refresh_ahead;
    }

    /// `(hits + stale hits) / lookups`, 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        let served = self.hits + self.stale_hits;
        let total = served + self.misses;
        if total == 0 {
            0.0
        } else {
            served as f64 / total as f64
        }
    }
}

/// Counters of the single-flight table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlightCounters {
    /// Callers that became the owner of a computation.
    pub leaders: u64,
    /// Callers that joined a computation in flight.
    pub joins: u64,
    /// Callers sent straight to the queue because the table was full (or a hash collision).
    pub bypassed: u64,
    /// Callers refused because a key had its maximum of waiters.
    pub overloaded: u64,
    /// Computations completed.
    pub completed: u64,
}

impl FlightCounters {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, o: &FlightCounters) {
        self.leaders += o.leaders;
        self.joins += o.joins;
        self.bypassed += o.bypassed;
        self.overloaded += o.overloaded;
        self.completed += o.completed;
    }
}

/// Why a batch left its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlushReason {
    /// It reached the maximum batch size.
    Size = 0,
    /// Its oldest request waited the whole window.
    Window = 1,
    /// High-priority requests bypass the window.
    Priority = 2,
    /// The endpoint was idle, so waiting would only add latency.
    Idle = 3,
}

impl FlushReason {
    /// Every reason, in index order.
    pub const ALL: [FlushReason; 4] = [
        FlushReason::Size,
        FlushReason::Window,
        FlushReason::Priority,
        FlushReason::Idle,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Size => "size",
            FlushReason::Window => "window",
            FlushReason::Priority => "priority",
            FlushReason::Idle => "idle",
        }
    }
}

/// Statistics of the batch queues.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// Requests currently queued, per operation.
    pub queue_len: [u64; Operation::COUNT],
    /// Requests accepted.
    pub enqueued: u64,
    /// Requests handed out in batches.
    pub dispatched: u64,
    /// Requests removed past their deadline (never dispatched).
    pub expired: u64,
    /// Requests refused because their operation's queue was full.
    pub rejected: u64,
    /// Queued low-priority (or lower) requests dropped to admit a higher-priority one.
    pub shed: u64,
    /// Batches per flush reason, indexed by `FlushReason as usize`.
    pub flushes: [u64; 4],
    /// Time from enqueue to dispatch, microseconds.
    pub queue_time_us: Distribution,
    /// Requests per batch.
    pub batch_size: Distribution,
}

impl Default for BatchStats {
    fn default() -> Self {
        BatchStats {
            queue_len: [0; Operation::COUNT],
            enqueued: 0,
            dispatched: 0,
            expired: 0,
            rejected: 0,
            shed: 0,
            flushes: [0; 4],
            queue_time_us: Distribution::new(60_000_000),
            batch_size: Distribution::new(1024),
        }
    }
}

impl BatchStats {
    /// Adds `other` into `self` (gauges add too: the merged queue length is the total).
    pub fn merge(&mut self, o: &BatchStats) {
        for (a, b) in self.queue_len.iter_mut().zip(o.queue_len) {
            *a += b;
        }
        self.enqueued += o.enqueued;
        self.dispatched += o.dispatched;
        self.expired += o.expired;
        self.rejected += o.rejected;
        self.shed += o.shed;
        for (a, b) in self.flushes.iter_mut().zip(o.flushes) {
            *a += b;
        }
        self.queue_time_us.merge(&o.queue_time_us);
        self.batch_size.merge(&o.batch_size);
    }
}

/// Everything one shard reports, copied out for `/metrics`; merge several with
/// [`ShardSnapshot::merge`].
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    /// Cache counters.
    pub cache: CacheCounters,
    /// Live cache entries.
    pub cache_entries: u64,
    /// Accounted cache bytes.
    pub cache_bytes: u64,
    /// Cache byte budget.
    pub cache_max_bytes: u64,
    /// Single-flight counters.
    pub flight: FlightCounters,
    /// Computations in flight.
    pub flights_in_flight: u64,
    /// Batch queue statistics.
    pub batch: BatchStats,
}

impl ShardSnapshot {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, o: &ShardSnapshot) {
        self.cache.merge(&o.cache);
        self.cache_entries += o.cache_entries;
        self.cache_bytes += o.cache_bytes;
        self.cache_max_bytes += o.cache_max_bytes;
        self.flight.merge(&o.flight);
        self.flights_in_flight += o.flights_in_flight;
        self.batch.merge(&o.batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_records_and_merges() {
        let mut a = Distribution::new(1000);
        let mut b = Distribution::new(1000);
        a.record(0); // clamped to 1
        a.record(10);
        b.record(5000); // clamped to 1000
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile(0.0), 1);
        assert!(a.max() >= 995);
    }

    #[test]
    fn snapshots_merge() {
        let mut a = ShardSnapshot::default();
        let mut b = ShardSnapshot::default();
        a.cache.hits = 3;
        b.cache.hits = 1;
        b.cache.misses = 4;
        b.batch.flushes[FlushReason::Idle as usize] = 2;
        b.batch.batch_size.record(8);
        a.merge(&b);
        assert_eq!(a.cache.hits, 4);
        assert!((a.cache.hit_ratio() - 0.5).abs() < 1e-9);
        assert_eq!(a.batch.flushes[3], 2);
        assert_eq!(a.batch.batch_size.count(), 1);
        assert_eq!(CacheCounters::default().hit_ratio(), 0.0);
    }
}

//! One monitor window: the change between two cumulative metric totals, per operation and in
//! total. Latency quantiles are interpolated inside the histogram buckets the way Prometheus's
//! `histogram_quantile` does, so Atlas's own alerts agree with the rules in `monitoring/` that
//! read the same histogram. Pure functions over snapshots: no clock, no I/O.

use atlas_shard::{BreakerState, Operation};

use crate::metrics::{Buckets, MetricsSnapshot, ModelFigures, DURATION_BUCKETS};

/// Figures of one operation (or of all) over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpWindow {
    /// AI requests answered (every status).
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Successful answers that were cache hits.
    pub hits: u64,
    /// Successful answers that looked the cache up (hit, miss, stale, bypass).
    pub lookups: u64,
    /// Latency quantiles of successful answers, seconds: p50, p95, p99.
    pub quantiles: Option<[f64; 3]>,
    /// Answers a model computed: mean batch size and queue time.
    pub model: ModelFigures,
}

impl OpWindow {
    /// 5xx share of the answers; `None` without answers.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// Hit share of the lookups; `None` without lookups.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.lookups > 0).then(|| self.hits as f64 / self.lookups as f64)
    }

    /// p95 latency in seconds.
    pub fn p95(&self) -> Option<f64> {
        self.quantiles.map(|q| q[1])
    }

    /// Mean size of the batches model-computed answers came from.
    pub fn mean_batch(&self) -> Option<f64> {
        (self.model.answers > 0).then(|| self.model.batch_sum as f64 / self.model.answers as f64)
    }

    /// Mean queue time of model-computed answers, seconds.
    pub fn mean_queue(&self) -> Option<f64> {
        (self.model.answers > 0).then(|| self.model.queue_s / self.model.answers as f64)
    }
}

/// One collection window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Length of the window, seconds.
    pub seconds: f64,
    /// Wall-clock end of the window, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Per operation, indexed by `Operation::index`.
    pub ops: [OpWindow; Operation::COUNT],
    /// Every operation together.
    pub total: OpWindow,
    /// Requests in progress at the end of the window.
    pub in_flight: u64,
    /// Share of endpoints whose breaker is open on some shard.
    pub endpoints_open: f64,
    /// Most authentication refusals from one client address in the window, and the address.
    pub auth_refused_max: (u64, Option<std::net::IpAddr>),
}

/// The window between two cumulative totals (`last` `None`: since start). `shards` are the
/// per-shard snapshots `now` was merged from (endpoint states are per shard).
pub fn between(
    now: &MetricsSnapshot,
    last: Option<&MetricsSnapshot>,
    shards: &[MetricsSnapshot],
    seconds: f64,
    unix_ms: u64,
) -> Window {
    let empty = MetricsSnapshot::default();
    let last = last.unwrap_or(&empty);
    let mut w = Window {
        seconds,
        unix_ms,
        in_flight: now.in_flight,
        endpoints_open: endpoints_open(shards),
        ..Window::default()
    };
    let mut all = [0u64; DURATION_BUCKETS.len() + 1];
    for op in Operation::ALL {
        let i = op.index();
        let o = &mut w.ops[i];
        let answered = |m: &MetricsSnapshot, five: bool| -> u64 {
            m.requests
                .status
                .iter()
                .filter(|(x, s, _)| *x == op && (!five || (500..600).contains(s)))
                .map(|(_, _, n)| n)
                .sum()
        };
        o.requests = answered(now, false).saturating_sub(answered(last, false));
        o.errors = answered(now, true).saturating_sub(answered(last, true));
        o.model = now.requests.model[i].since(&last.requests.model[i]);
        let mut counts = [0u64; DURATION_BUCKETS.len() + 1];
        for (ci, (a, b)) in now.requests.duration[i]
            .iter()
            .zip(last.requests.duration[i].iter())
            .enumerate()
        {
            let n = delta(a, b, &mut counts);
            o.lookups += n;
            if ci == 0 {
                o.hits += n;
            }
        }
        o.quantiles = quantiles(&counts);
        for (acc, n) in all.iter_mut().zip(counts.iter()) {
            *acc += n;
        }
        w.total.requests += o.requests;
        w.total.errors += o.errors;
        w.total.hits += o.hits;
        w.total.lookups += o.lookups;
        let model = o.model;
        w.total.model.answers += model.answers;
        w.total.model.batch_sum += model.batch_sum;
        w.total.model.queue_s += model.queue_s;
    }
    w.total.quantiles = quantiles(&all);
    for (addr, n) in &now.auth.by_addr {
        let before = last
            .auth
            .by_addr
            .iter()
            .find(|(a, _)| a == addr)
            .map_or(0, |(_, m)| *m);
        let d = n.saturating_sub(before);
        if d > w.auth_refused_max.0 {
            w.auth_refused_max = (d, Some(*addr));
        }
    }
    w
}

/// Adds the per-bucket change from `b` to `a` into `acc`; returns the number of answers.
fn delta(a: &Buckets, b: &Buckets, acc: &mut [u64]) -> u64 {
    let mut n = 0;
    for ((x, y), out) in a.counts().iter().zip(b.counts().iter()).zip(acc.iter_mut()) {
        let d = x.saturating_sub(*y);
        *out += d;
        n += d;
    }
    n
}

/// p50, p95, p99 of non-cumulative bucket counts; `None` when empty.
pub fn quantiles(counts: &[u64]) -> Option<[f64; 3]> {
    let total: u64 = counts.iter().sum();
    (total > 0).then(|| [0.5, 0.95, 0.99].map(|q| quantile(counts, total, q)))
}

/// `histogram_quantile`: the bucket holding rank `q × total`, interpolated linearly between
/// its bounds; a rank in the overflow bucket reports the highest finite bound.
fn quantile(counts: &[u64], total: u64, q: f64) -> f64 {
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = DURATION_BUCKETS.get(i) else {
                break;
            };
            let lower = if i == 0 { 0.0 } else { DURATION_BUCKETS[i - 1] };
            let into = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return lower + (upper - lower) * into;
        }
        below += n;
    }
    DURATION_BUCKETS[DURATION_BUCKETS.len() - 1]
}

/// Share of distinct endpoints whose breaker is open on at least one shard.
fn endpoints_open(shards: &[MetricsSnapshot]) -> f64 {
    let mut names: Vec<&str> = shards
        .iter()
        .flat_map(|s| s.engine.endpoints.iter().map(|e| e.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return 0.0;
    }
    let open = names
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
    open as f64 / names.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::engine::CacheStatus;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let mut b = Buckets::default();
        // 100 answers spread evenly inside (0.2, 0.3].
        for i in 0..100 {
            b.record(0.2 + 0.001 * (i as f64 + 0.5));
        }
        let [p50, p95, p99] = quantiles(b.counts()).unwrap();
        assert!((p50 - 0.25).abs() < 1e-9, "{p50}");
        assert!((p95 - 0.295).abs() < 1e-9, "{p95}");
        assert!((p99 - 0.299).abs() < 1e-9, "{p99}");
        assert_eq!(quantiles(Buckets::default().counts()), None);
        let mut slow = Buckets::default();
        slow.record(60.0);
        assert_eq!(quantiles(slow.counts()).unwrap()[2], 10.0);
    }

    #[test]
    fn a_window_is_the_change_between_totals() {
        let mut s = MetricsSnapshot::default();
        let op = Operation::CashflowForecast;
        s.requests
            .record(op, 200, Some(CacheStatus::Hit), 0.001, 0.0);
        let first = s.clone();
        for _ in 0..3 {
            s.requests
                .record(op, 200, Some(CacheStatus::Miss), 0.2, 0.15);
            s.requests.record_model(op, 8, 0.01);
        }
        s.requests
            .record(op, 200, Some(CacheStatus::Hit), 0.001, 0.0);
        s.requests.record(op, 503, None, 0.001, 0.0);
        let w = between(&s, Some(&first), std::slice::from_ref(&s), 5.0, 7);
        let o = &w.ops[op.index()];
        assert_eq!((o.requests, o.errors, o.hits, o.lookups), (5, 1, 1, 4));
        assert_eq!(o.error_rate(), Some(0.2));
        assert_eq!(o.hit_rate(), Some(0.25));
        assert_eq!(o.mean_batch(), Some(8.0));
        assert!((o.mean_queue().unwrap() - 0.01).abs() < 1e-12);
        assert_eq!(w.total.requests, 5);
        assert_eq!(
            w.ops[Operation::RiskAssessment.index()],
            OpWindow::default()
        );
        assert_eq!((w.seconds, w.unix_ms), (5.0, 7));
    }
}

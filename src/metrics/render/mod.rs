//! The text exposition format (0.0.4): one section per subsystem, rendered from the merge of
//! every shard's snapshot.

use std::fmt::Write as _;

use atlas_shard::Operation;

use super::{
    merge, Buckets, MetricsSnapshot, BATCH_BUCKETS, CACHE_LABELS, DURATION_BUCKETS,
    QUEUE_BUCKETS_US,
};

mod subsystems;
use subsystems::{auth, endpoints, graphql, invalidations, l2, memo, rate_limits};

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
    memo(w, &total.memo);
    graphql(w, &total.requests.graphql);
    auth(w, &total.auth, total.rate.as_ref());
    rate_limits(w, total.rate.as_ref());
    out
}

/// Writes a family's `# HELP` and `# TYPE` lines.
pub fn head(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a gauge without labels.
pub fn gauge(w: &mut String, name: &str, help: &str, value: f64) {
    head(w, name, "gauge", help);
    let _ = writeln!(w, "{name} {value}");
}

/// Writes a counter without labels.
pub fn counter(w: &mut String, name: &str, help: &str, value: u64) {
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

//! One section per subsystem of the exposition: rate limits, the request memo,
//! GraphQL, authentication, the Redis L2, invalidations and the model endpoints.

use std::fmt::Write as _;

use super::super::{GraphqlPath, MetricsSnapshot};
use super::{counter, gauge, head};
use crate::ai::invalidation::Kind;
use crate::endpoint::EndpointError;

/// The rate-limit metrics: refusals always (zeros with every limit off), the rest only when a
/// limit is on; Redis figures only with Redis.
pub(super) fn rate_limits(w: &mut String, rate: Option<&crate::ratelimit::RateFigures>) {
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

/// The request memo's series (`ai::memo`).
pub(super) fn memo(w: &mut String, m: &crate::ai::memo::MemoFigures) {
    head(
        w,
        "ai_request_memo_total",
        "counter",
        "AI requests whose exact bytes a shard had parsed before (hit), parsed now (miss), or too large to remember (skipped).",
    );
    let c = &m.counters;
    for (result, n) in [("hit", c.hits), ("miss", c.misses), ("skipped", c.skipped)] {
        let _ = writeln!(w, "ai_request_memo_total{{result=\"{result}\"}} {n}");
    }
    head(
        w,
        "ai_request_memo_evictions_total",
        "counter",
        "Parsed requests the memo let go to stay within ATLAS_REQUEST_MEMO_BYTES.",
    );
    let _ = writeln!(w, "ai_request_memo_evictions_total {}", c.evictions);
    head(
        w,
        "ai_request_memo_bytes",
        "gauge",
        "Bytes the request memos of all shards hold (budget: ATLAS_REQUEST_MEMO_BYTES per shard).",
    );
    let _ = writeln!(w, "ai_request_memo_bytes {}", m.bytes);
}

/// `/graphql` requests by how they were answered (`graphql::prepared`).
pub(super) fn graphql(w: &mut String, counts: &[u64]) {
    head(
        w,
        "ai_graphql_requests_total",
        "counter",
        "/graphql requests by path: memo (prepared, bytes seen before), prepared (planned document), general (async-graphql).",
    );
    for (path, n) in GraphqlPath::ALL.iter().zip(counts) {
        let _ = writeln!(
            w,
            "ai_graphql_requests_total{{path=\"{}\"}} {n}",
            path.as_str()
        );
    }
}

/// Authentication and security-event series.
pub(super) fn auth(
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
pub(super) fn l2(w: &mut String, shards: &[MetricsSnapshot]) {
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

pub(super) fn invalidations(w: &mut String, total: &MetricsSnapshot) {
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

pub(super) fn endpoints(w: &mut String, shards: &[MetricsSnapshot]) {
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
        "Failed batch calls per endpoint, by reason: timeout, connect, status (a non-200 answer), protocol (a malformed answer).",
    );
    for (name, _, errors, _) in endpoint_sums(shards) {
        for (reason, n) in EndpointError::REASONS.iter().zip(errors) {
            let _ = writeln!(
                w,
                "ai_endpoint_errors_total{{endpoint=\"{name}\",reason=\"{reason}\"}} {n}"
            );
        }
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

/// (name, calls, errors per reason, mean EWMA ms) per endpoint across shards.
fn endpoint_sums(shards: &[MetricsSnapshot]) -> Vec<(String, u64, [u64; 4], f64)> {
    let mut out: Vec<(String, u64, [u64; 4], f64, u32)> = Vec::new();
    for s in shards {
        for e in &s.engine.endpoints {
            match out.iter_mut().find(|x| x.0 == e.name) {
                Some(x) => {
                    x.1 += e.calls;
                    for (sum, n) in x.2.iter_mut().zip(e.errors_by_reason) {
                        *sum += n;
                    }
                    x.3 += e.ewma_ms;
                    x.4 += 1;
                }
                None => out.push((e.name.clone(), e.calls, e.errors_by_reason, e.ewma_ms, 1)),
            }
        }
    }
    out.into_iter()
        .map(|(n, c, e, m, k)| (n, c, e, m / f64::from(k.max(1))))
        .collect()
}

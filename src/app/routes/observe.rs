//! The read-only routes that observe Atlas: `/health/ready`, `/health/detailed` (each shard's
//! figures gathered over the mesh), `/metrics` (Prometheus text) and
//! `/ai/admin/performance` (the monitor's document).

use std::rc::Rc;

use serde_json::json;

use crate::app::{Shard, ShardCall, ShardReply};
use crate::error::ApiError;
use crate::http::{Response, Status};

pub(super) async fn metrics(shard: &Rc<Shard>) -> Response {
    if !shard.core.config.enable_prometheus {
        return ApiError::new(
            Status::NotFound,
            "not_found",
            "metrics are disabled (ENABLE_PROMETHEUS=false)",
        )
        .to_response();
    }
    let (snapshots, monitor) = shard.collect_metrics().await;
    let mut text = crate::metrics::render(&snapshots);
    if let Some(summary) = &monitor {
        crate::monitor::render::prometheus(&mut text, summary);
    }
    Response::text(Status::Ok, "text/plain; version=0.0.4; charset=utf-8", text)
}

/// The `redis` section of `/health/detailed`: totals and each shard's breaker.
fn redis_json(
    c: &crate::config::Config,
    shards: &[(usize, crate::l2::L2Figures)],
) -> serde_json::Value {
    if c.redis_urls.is_empty() {
        return json!({"configured": false});
    }
    let mut total = crate::l2::L2Figures::default();
    for (_, f) in shards {
        total.merge(f);
    }
    let open = shards
        .iter()
        .filter(|(_, f)| f.state == Some(atlas_shard::BreakerState::Open))
        .count();
    json!({
        "configured": true,
        "mode": if c.redis_cluster || c.redis_urls.len() > 1 { "cluster" } else { "node" },
        "status": if total.connected == 0 { "down" } else if open > 0 { "degraded" } else { "up" },
        "connections": total.connected,
        "timeout_ms": c.redis_timeout.as_millis() as u64,
        "hits": total.hits,
        "misses": total.misses,
        "errors": total.errors,
        "timeouts": total.timeouts,
        "corrupt": total.corrupt,
        "stale": total.stale,
        "skipped": total.skipped,
        "stores": total.stores,
        "stores_dropped": total.stores_dropped,
        "breakers": shards.iter().map(|(k, f)| json!({
            "shard": k,
            "state": f.state.map_or("closed", |s| s.as_str()),
        })).collect::<Vec<_>>(),
    })
}

/// The `rate_limits` section of `/health/detailed`: the limits, their counters, and with
/// Redis whether they are shared now or each shard fell back (as of its last try).
fn rate_json(
    c: &crate::config::Config,
    shards: &[(usize, crate::ratelimit::RateFigures)],
) -> serde_json::Value {
    let rl = &c.rate_limits();
    if !rl.is_on() {
        return json!({"enabled": false});
    }
    let mut total = crate::ratelimit::RateFigures::default();
    for (_, f) in shards {
        total.merge(f);
    }
    let rate = |r: Option<atlas_shard::Rate>| {
        r.map(|r| json!({"rps": r.per_second(), "burst": r.burst()}))
    };
    let redis = total.store.map(|store| {
        let fallback: Vec<usize> = shards
            .iter()
            .filter(|(_, f)| {
                f.store
                    .and_then(|s| s.state)
                    .is_some_and(|s| s != atlas_shard::BreakerState::Closed)
            })
            .map(|(k, _)| *k)
            .collect();
        json!({
            "failure_mode": rl.redis_failure.as_str(),
            "status": if fallback.is_empty() { "shared" } else { "fallback" },
            "fallback_shards": fallback,
            "takes": store.takes,
            "errors": store.errors,
            "skipped": store.skipped,
            "returns": store.returns,
            "fallbacks": total.fallbacks,
        })
    });
    json!({
        "enabled": true,
        "user": rate(rl.user()),
        "global": rate(rl.global()),
        "count_hits": rl.count_hits,
        "max_users": rl.max_users,
        "tracked_users": total.tracked_users,
        "untracked": total.untracked,
        "refused": {
            "user": total.refused_user,
            "global": total.refused_global,
            "unavailable": total.unavailable,
        },
        "redis": redis,
    })
}

pub(super) async fn performance(shard: &Rc<Shard>) -> Response {
    let until = std::time::Instant::now() + crate::app::BROADCAST_LIMIT;
    let reply = shard
        .core
        .mesh
        .call_until(0, ShardCall::Performance, until)
        .await;
    match reply {
        Ok(ShardReply::Performance(Some(doc))) => Response::json(Status::Ok, doc),
        Ok(_) => ApiError::new(
            Status::ServiceUnavailable,
            "monitor_unavailable",
            "the monitor is not running on shard 0",
        )
        .to_response(),
        Err(_) => ApiError::new(
            Status::ServiceUnavailable,
            "monitor_unavailable",
            "shard 0 (the monitor) did not answer in time",
        )
        .to_response()
        .header("Retry-After", "1"),
    }
}

pub(super) fn ready(shard: &Shard) -> Response {
    let shards = shard.core.shared.shards;
    if shard.core.shared.is_ready() {
        Response::json(
            Status::Ok,
            format!("{{\"status\":\"ready\",\"shards\":{shards}}}"),
        )
    } else {
        let status = if shard.core.is_draining() {
            "draining"
        } else {
            "starting"
        };
        Response::json(
            Status::ServiceUnavailable,
            format!("{{\"status\":\"{status}\",\"shards\":{shards}}}"),
        )
    }
}

pub(super) async fn detailed(shard: &Rc<Shard>) -> Response {
    // A shard that does not answer in time is reported unreachable, not waited for.
    let replies = shard
        .core
        .mesh
        .broadcast(|| ShardCall::Info, crate::app::BROADCAST_LIMIT)
        .await;
    let mut shards = Vec::with_capacity(replies.len());
    let mut healthy = true;
    let mut monitor_summary = None;
    let mut l2 = Vec::new();
    let mut rate = Vec::new();
    for (k, reply) in replies.into_iter().enumerate() {
        match reply {
            Ok(ShardReply::Info(info)) => shards.push({
                if info.monitor.is_some() {
                    monitor_summary = info.monitor.clone();
                }
                if let Some(f) = &info.engine.l2 {
                    l2.push((info.shard, f.clone()));
                }
                if let Some(f) = &info.rate {
                    rate.push((info.shard, *f));
                }
                json!({
                "shard": info.shard,
                "cpu": info.cpu,
                "connections_open": info.connections_open,
                "connections_total": info.connections_total,
                "connections_rejected": info.connections_rejected,
                "requests_total": info.requests_total,
                "in_flight": info.in_flight,
                "model_computations": info.engine.computations,
                "model_batches": info.engine.batches,
                "refreshes": info.engine.refreshes,
                "queued": info.engine.queued,
                "cache": {
                    "entries": info.engine.cache_entries,
                    "bytes": info.engine.cache_bytes,
                    "hits": info.engine.cache.hits,
                    "stale_hits": info.engine.cache.stale_hits,
                    "misses": info.engine.cache.misses,
                    "inserts": info.engine.cache.inserts,
                    "evictions": info.engine.cache.evictions,
                    "invalidations": info.engine.cache.invalidations,
                },
                "request_memo": {
                    "entries": info.memo.entries,
                    "bytes": info.memo.bytes,
                    "max_bytes": info.memo.max_bytes,
                    "hits": info.memo.counters.hits,
                    "misses": info.memo.counters.misses,
                    "evictions": info.memo.counters.evictions,
                    "skipped": info.memo.counters.skipped,
                },
                "single_flight": {
                    "leaders": info.engine.flights.leaders,
                    "joins": info.engine.flights.joins,
                    "bypassed": info.engine.flights.bypassed,
                },
                "endpoints": info.engine.endpoints.iter().map(|e| json!({
                    "name": e.name,
                    "state": e.state.as_str(),
                    "state_gauge": e.state.as_gauge(),
                    "calls": e.calls,
                    "errors": e.errors,
                    "trips": e.trips,
                    "ewma_ms": e.ewma_ms,
                    "in_flight": e.in_flight,
                    "weight": e.weight,
                    "protocol": e.protocol,
                    "model": e.model,
                    "problem": e.problem,
                    "errors_by_reason": crate::endpoint::EndpointError::REASONS
                        .iter()
                        .zip(e.errors_by_reason)
                        .map(|(r, n)| (r.to_string(), json!(n)))
                        .collect::<serde_json::Map<_, _>>(),
                    "last_error": e.last_error,
                })).collect::<Vec<_>>(),
                })
            }),
            Ok(_) | Err(_) => {
                healthy = false;
                shards.push(json!({"shard": k, "status": "unreachable"}));
            }
        }
    }
    let monitor = monitor_summary.map(|m| {
        json!({
            "health_score": m.health_score,
            "alerts": m.active.iter().map(|(a, s)| json!({"alert": a, "severity": s.as_str()})).collect::<Vec<_>>(),
            "alert_events": m.events,
            "notifications": {
                "delivered": m.notifications.0,
                "failed": m.notifications.1,
                "dropped": m.notifications.2,
            },
        })
    });
    // The configuration in force: batch settings follow a SIGHUP reload.
    let live = shard.core.live_config();
    let c = &*live;
    let body = json!({
        "status": if healthy && shard.core.shared.is_ready() { "ok" } else { "degraded" },
        "monitor": monitor,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": shard.core.origin.elapsed().as_secs_f64(),
        "answered_by": shard.core.id,
        "limits": {
            "shards": shard.core.shared.shards,
            "max_connections": c.max_connections,
            "max_concurrent_requests": c.max_concurrent_requests,
            "max_body_bytes": c.max_body_bytes,
            "request_timeout_ms": c.request_timeout.as_millis() as u64,
            "batch_size": c.batch_size,
            "batch_timeout_ms": c.batch_timeout.as_millis() as u64,
            "cache_max_bytes": c.cache_max_bytes,
        },
        "redis": redis_json(c, &l2),
        "rate_limits": rate_json(c, &rate),
        "shards": shards,
    });
    Response::json(Status::Ok, body.to_string())
}

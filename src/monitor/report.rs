//! `GET /ai/admin/performance`: the brief's performance dashboard as one JSON document, built
//! on shard 0 from the monitor's history (the serving shard asks shard 0 over the mesh). The
//! shape is pinned by `monitoring/schemas/performance.schema.json`.
//!
//! - `last_window` and `recent` (every kept window summed): per operation and in total,
//!   requests/s, p50/p95/p99, error rate, cache hit rate, mean batch size and queue time.
//! - `trend`: slope and direction of throughput, p95, error rate and hit rate, per operation
//!   and in total, and the list of degrading figures ([`super::trend`]).
//! - `series`: the totals of each kept window, oldest first.
//! - `health`: the score and its components; `alerts`: active, thresholds, history, webhook
//!   deliveries; `adaptive`: the learned baselines.

use atlas_shard::Operation;
use serde_json::{json, Map, Value};

use super::trend::{self, Figure};
use super::window::{self, OpWindow, Window};
use super::{Monitor, ALERTS};

/// The performance document.
pub fn performance(m: &Monitor) -> Value {
    let history = m.history.borrow();
    let s = m.settings.borrow();
    let last = history.back();
    let recent = {
        let totals = m.totals.borrow();
        match (totals.front(), totals.back()) {
            (Some((t0, first)), Some((t1, newest))) if totals.len() > 1 => Some(window::between(
                newest,
                Some(first),
                &[],
                (t1 - t0).max(1e-3),
                last.map_or(0, |r| r.window.unix_ms),
            )),
            _ => None,
        }
    };
    let windows: Vec<&Window> = history.iter().map(|r| &r.window).collect();
    let health = last.map(|r| r.health).unwrap_or_default();
    let (delivered, failed, dropped) = m.webhook_stats.counts();
    let target_ms = s.response_target * 1000.0;
    json!({
        "generated_at_unix_ms": crate::wallclock::unix_ms_now(),
        "uptime_s": m.started.elapsed().as_secs_f64(),
        "interval_s": s.interval.as_secs_f64(),
        "windows": history.len(),
        "history_capacity": s.history,
        "last_window": last.map(|r| figures(&r.window)),
        "recent": recent.as_ref().map(figures),
        "trend": trends(&windows),
        "series": windows.iter().zip(history.iter()).map(|(w, r)| json!({
            "unix_ms": w.unix_ms,
            "seconds": w.seconds,
            "rps": w.total.requests as f64 / w.seconds,
            "p95_ms": w.total.p95().map(|v| v * 1000.0),
            "error_rate": w.total.error_rate(),
            "cache_hit_rate": w.total.hit_rate(),
            "in_flight": w.in_flight,
            "health_score": r.health.score,
        })).collect::<Vec<_>>(),
        "health": {
            "score": health.score,
            "components": {
                "latency": health.latency,
                "errors": health.errors,
                "cache": health.cache,
                "saturation": health.saturation,
                "endpoints": health.endpoints,
            },
            "weights": {"latency": 35, "errors": 30, "cache": 10, "saturation": 10, "endpoints": 15},
            "formula": "100 - 35*latency - 30*errors - 10*cache - 10*saturation - 15*endpoints; \
                latency = (p95 - target)/(4*target), errors = error_rate/(5*ALERT_ERROR_RATE), \
                cache = (0.7 - hit_rate)/0.7, saturation = (in_flight/max - 0.5)/0.5, \
                endpoints = share of endpoints with an open breaker; each clamped to [0, 1]",
        },
        "alerts": {
            "rules": ALERTS,
            "active": m.active().iter().map(|(a, sev)| json!({"alert": a, "severity": sev.as_str()})).collect::<Vec<_>>(),
            "thresholds": {
                "response_time_p95_ms": {"warning": 0.75 * target_ms, "critical": 1.25 * target_ms, "emergency": 2.5 * target_ms},
                "error_rate": {"warning": s.error_rate, "critical": 2.0 * s.error_rate, "emergency": 5.0 * s.error_rate},
                "cache_hit_rate_below": {"warning": 0.7, "critical": 0.5},
                "concurrent_requests": {"warning": 0.8 * s.max_concurrent, "critical": 0.95 * s.max_concurrent},
                "auth_failures_per_address": s.auth_failures,
                "for_windows": s.for_windows,
            },
            "history": m.events.borrow().iter().map(|e| json!({
                "alert": e.alert,
                "status": if e.severity.is_some() { "firing" } else { "resolved" },
                "severity": e.severity.map(|x| x.as_str()),
                "previous_severity": e.previous.map(|x| x.as_str()),
                "value": e.value,
                "at_unix_ms": e.unix_ms,
            })).collect::<Vec<_>>(),
            "changes_total": *m.event_count.borrow(),
            "notifications": {
                "webhook": m.webhook.is_some(),
                "delivered": delivered,
                "failed": failed,
                "dropped": dropped,
            },
        },
        "adaptive": {
            "enabled": s.adaptive,
            "baselines": by_operation(|op| {
                let b = m.baselines.borrow()[op.index()];
                json!({
                    "p95_ms": (b.windows > 0).then_some(b.p95 * 1000.0),
                    "windows": b.windows,
                    "threshold_ms": b.threshold(s.latency_warning()).map(|t| t * 1000.0),
                })
            }),
        },
    })
}

/// Figures of one window, per operation and in total.
fn figures(w: &Window) -> Value {
    json!({
        "unix_ms": w.unix_ms,
        "seconds": w.seconds,
        "in_flight": w.in_flight,
        "totals": op_figures(&w.total, w.seconds),
        "operations": by_operation(|op| op_figures(&w.ops[op.index()], w.seconds)),
    })
}

fn op_figures(o: &OpWindow, seconds: f64) -> Value {
    let ms = |v: Option<f64>| v.map(|x| x * 1000.0);
    let q = |i: usize| o.quantiles.map(|q| q[i] * 1000.0);
    json!({
        "requests": o.requests,
        "rps": o.requests as f64 / seconds,
        "errors": o.errors,
        "error_rate": o.error_rate(),
        "cache_hit_rate": o.hit_rate(),
        "p50_ms": q(0),
        "p95_ms": q(1),
        "p99_ms": q(2),
        "model_answers": o.model.answers,
        "mean_batch_size": o.mean_batch(),
        "mean_queue_ms": ms(o.mean_queue()),
    })
}

/// Reads one figure of an operation's (or the totals') window.
type Measure = fn(&Window, &OpWindow) -> Option<f64>;

/// Trends of the totals and of each operation, and which figures degrade.
fn trends(windows: &[&Window]) -> Value {
    let mut degrading = Vec::new();
    let mut of = |name: &str, pick: &dyn Fn(&Window) -> &OpWindow| -> Value {
        let series = |f: Measure| -> Vec<(f64, f64)> {
            windows
                .iter()
                .filter_map(|w| f(w, pick(w)).map(|v| (w.unix_ms as f64 / 1000.0, v)))
                .collect()
        };
        let mut out = Map::new();
        let figures: [(&str, Figure, Measure); 4] = [
            ("rps", Figure::Throughput, |w, o| {
                Some(o.requests as f64 / w.seconds)
            }),
            ("p95_ms", Figure::Latency, |_, o| {
                o.p95().map(|v| v * 1000.0)
            }),
            ("error_rate", Figure::ErrorRate, |_, o| o.error_rate()),
            ("cache_hit_rate", Figure::HitRate, |_, o| o.hit_rate()),
        ];
        for (key, figure, f) in figures {
            let t = trend::trend(figure, &series(f));
            if t.as_ref().is_some_and(|t| t.degrading) {
                degrading.push(format!("{name}.{key}"));
            }
            out.insert(
                key.to_string(),
                t.map_or(Value::Null, |t| {
                    json!({
                        "points": t.points,
                        "slope_per_min": t.slope_per_min,
                        "change": t.change,
                        "mean": t.mean,
                        "last": t.last,
                        "direction": t.direction.as_str(),
                        "degrading": t.degrading,
                    })
                }),
            );
        }
        Value::Object(out)
    };
    let totals = of("totals", &|w| &w.total);
    let operations = by_operation(|op| of(op.as_str(), &|w| &w.ops[op.index()]));
    json!({
        "totals": totals,
        "operations": operations,
        "degrading": degrading,
    })
}

fn by_operation(mut f: impl FnMut(Operation) -> Value) -> Value {
    Value::Object(
        Operation::ALL
            .iter()
            .map(|op| (op.as_str().to_string(), f(*op)))
            .collect(),
    )
}

//! The monitor's section of the Prometheus exposition, written after the one the metrics
//! render (`/metrics` appends it from shard 0's summary). Uses the exposition's writers from
//! `crate::metrics::render`; the metrics know nothing of the monitor.

use std::fmt::Write as _;

use atlas_shard::Operation;

use super::{MonitorSummary, Severity, ALERTS};
use crate::metrics::render::{counter, gauge, head};

/// Writes the monitor's series (`ai_cache_hit_rate`, `ai_health_score`, `ai_alerts_active`,
/// `ai_alert_events_total`, `ai_alert_notifications_total`) at the end of the exposition
/// `crate::metrics::render` wrote.
pub fn prometheus(w: &mut String, m: &MonitorSummary) {
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

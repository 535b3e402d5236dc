//! Alert changes POSTed as JSON to `ATLAS_ALERT_WEBHOOK`, on shard 0, off every request path.
//!
//! The monitor hands each change to a bounded local channel ([`Webhook::send`] never waits:
//! when [`QUEUE`] changes are already waiting, the new one is dropped and counted). One
//! delivery task sends them in order, each up to [`TRIES`] times with a [`TIMEOUT`] per try
//! and a growing pause between tries; a 2xx answer is a delivery, anything else (refused,
//! timed out, non-2xx) is retried and finally counted as failed. The counts are exported as
//! `ai_alert_notifications_total{result}`.
//!
//! Payload: `{"source":"atlas","instance","alert","status":"firing"|"resolved","severity",
//! "previous_severity","value","health_score","at_unix_ms"}`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use serde_json::json;

use super::{AlertEvent, WebhookTarget};
use crate::client::HttpClient;

/// Changes that may wait for delivery.
pub const QUEUE: usize = 64;
/// Attempts per change.
pub const TRIES: u32 = 3;
/// Deadline of one attempt.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after the first failed attempt (doubled after each further one).
const BACKOFF: Duration = Duration::from_millis(250);

/// Delivery counts (shard 0 only).
#[derive(Debug, Default)]
pub struct WebhookStats {
    delivered: Cell<u64>,
    failed: Cell<u64>,
    dropped: Cell<u64>,
}

impl WebhookStats {
    /// (delivered, failed, dropped).
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.delivered.get(), self.failed.get(), self.dropped.get())
    }
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().saturating_add(1));
}

/// The monitor's side: queues payloads.
pub struct Webhook {
    tx: LocalSender<String>,
    instance: String,
    stats: Rc<WebhookStats>,
}

/// The delivery task's side.
pub struct Delivery {
    rx: LocalReceiver<String>,
    client: HttpClient,
    path: String,
    stats: Rc<WebhookStats>,
}

/// A webhook and its (not yet started) delivery task.
pub fn channel(target: WebhookTarget, stats: Rc<WebhookStats>) -> (Webhook, Delivery) {
    let (tx, rx) = local_channel::new_bounded(QUEUE);
    let client = HttpClient::new(target.addr, target.host, 1, TIMEOUT);
    (
        Webhook {
            tx,
            instance: target.instance,
            stats: Rc::clone(&stats),
        },
        Delivery {
            rx,
            client,
            path: target.path,
            stats,
        },
    )
}

impl Webhook {
    /// Queues `event` for delivery; drops it (counted) when the queue is full.
    pub fn send(&self, event: &AlertEvent, health_score: f64) {
        let body = payload(event, health_score, &self.instance);
        if self.tx.try_send(body).is_err() {
            bump(&self.stats.dropped);
            log::warn!(
                "alert webhook queue full ({QUEUE}); dropped the {} change",
                event.alert
            );
        }
    }
}

impl Delivery {
    /// Delivers queued changes until the monitor goes away.
    pub async fn run(self) {
        while let Some(body) = self.rx.recv().await {
            self.deliver(body.as_bytes()).await;
        }
    }

    async fn deliver(&self, body: &[u8]) {
        let mut pause = BACKOFF;
        for attempt in 1..=TRIES {
            match self.client.post_json(&self.path, body, TIMEOUT).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    bump(&self.stats.delivered);
                    return;
                }
                Ok(r) => log::warn!(
                    "alert webhook answered {} (attempt {attempt}/{TRIES})",
                    r.status
                ),
                Err(e) => log::warn!("alert webhook: {e} (attempt {attempt}/{TRIES})"),
            }
            if attempt < TRIES {
                glommio::timer::sleep(pause).await;
                pause *= 2;
            }
        }
        bump(&self.stats.failed);
    }
}

/// The JSON body for one change.
pub fn payload(event: &AlertEvent, health_score: f64, instance: &str) -> String {
    json!({
        "source": "atlas",
        "instance": instance,
        "alert": event.alert,
        "status": if event.severity.is_some() { "firing" } else { "resolved" },
        "severity": event.severity.map(|s| s.as_str()),
        "previous_severity": event.previous.map(|s| s.as_str()),
        "value": event.value,
        "health_score": health_score,
        "at_unix_ms": event.unix_ms,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Severity;

    #[test]
    fn payload_says_what_changed() {
        let fired = AlertEvent {
            alert: "error_rate",
            severity: Some(Severity::Critical),
            previous: Some(Severity::Warning),
            value: 0.12,
            unix_ms: 1_700_000_000_000,
        };
        let v: serde_json::Value =
            serde_json::from_str(&payload(&fired, 71.5, "gw-1:8083")).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["previous_severity"], "warning");
        assert_eq!(v["instance"], "gw-1:8083");
        assert_eq!(v["at_unix_ms"], 1_700_000_000_000u64);
        let resolved = AlertEvent {
            severity: None,
            ..fired
        };
        let v: serde_json::Value = serde_json::from_str(&payload(&resolved, 99.0, "x")).unwrap();
        assert_eq!(v["status"], "resolved");
        assert!(v["severity"].is_null());
    }
}

//! The invalidation routes, `POST /ai/cache/invalidate` and `POST /ai/events`, and the
//! invalidations other instances publish over Redis. What an invalidation is and how it
//! reaches every shard is `ai::invalidation`'s; this module reads the routes' bodies there,
//! counts what it applies in the accepting shard's metrics, and answers.

use std::rc::Rc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{context, Shard, BROADCAST_LIMIT};
use crate::ai::invalidation::{self, Invalidation, Report};
use crate::http::{Request, Response, Status};

/// Handles `POST /ai/cache/invalidate`.
pub async fn handle(shard: &Rc<Shard>, request: &Request) -> Response {
    let inv = match invalidation::read(request) {
        Ok(inv) => inv,
        Err(e) => return e.to_response(),
    };
    let report = everywhere(shard, inv).await;
    Response::json(Status::Ok, Value::Object(report.fields()).to_string())
}

/// Handles `POST /ai/events`.
pub async fn events(shard: &Rc<Shard>, request: &Request) -> Response {
    let (event, inv) = match crate::ai::events::read(request, &shard.core.config.event_tags) {
        Ok(read) => read,
        Err(e) => return e.to_response(),
    };
    if shard.core.config.enable_prometheus {
        shard.metrics.borrow_mut().record_event(&event);
    }
    let report = everywhere(shard, inv).await;
    let mut body = report.fields();
    body.insert("event".into(), json!(event));
    Response::json(Status::Ok, Value::Object(body).to_string())
}

/// Applies an invalidation that starts on this instance (an API call, an event, a context
/// change) everywhere it must go (`ai::invalidation::everywhere`), and counts it in the
/// metrics of the shard that accepted it.
pub async fn everywhere(shard: &Rc<Shard>, inv: Invalidation) -> Report {
    if shard.core.config.enable_prometheus {
        shard.metrics.borrow_mut().record_invalidation(&inv);
    }
    let l2 = shard.engine().and_then(|e| e.l2.clone());
    invalidation::everywhere(&shard.core.mesh, l2.as_deref(), inv, BROADCAST_LIMIT).await
}

/// Applies the invalidations other instances publish, on shard 0, until the process ends.
pub async fn follow_other_instances(
    shard: Rc<Shard>,
    mut messages: futures_channel::mpsc::UnboundedReceiver<Vec<u8>>,
    me: u64,
) {
    use futures_lite::StreamExt;
    let mesh = &shard.core.mesh;
    while let Some(bytes) = messages.next().await {
        if bytes == crate::l2::pool::RESYNC {
            log::warn!("redis: resubscribed after a gap; clearing L1 (it refills from L2)");
            let all = Invalidation {
                all: true,
                ..Invalidation::default()
            };
            invalidation::on_every_shard(mesh, all, BROADCAST_LIMIT).await;
            continue;
        }
        #[derive(Deserialize)]
        struct Message {
            origin: u64,
            invalidation: Invalidation,
        }
        match serde_json::from_slice::<Message>(&bytes) {
            Ok(m) if m.origin == me => {}
            Ok(m) => {
                // A peer changed these users' contexts: drop the local copies (the new one is
                // in Redis).
                let users: Vec<String> = m
                    .invalidation
                    .tags
                    .iter()
                    .filter_map(|t| t.strip_prefix("context:"))
                    .map(str::to_string)
                    .collect();
                for user in users {
                    context::forget(&shard, &user).await;
                }
                let report =
                    invalidation::on_every_shard(mesh, m.invalidation.clone(), BROADCAST_LIMIT)
                        .await;
                // Counted once applied: a test (or an operator) that sees the count knows
                // this instance acts on it.
                if shard.core.config.enable_prometheus {
                    shard
                        .metrics
                        .borrow_mut()
                        .record_peer_invalidation(&m.invalidation);
                }
                log::debug!(
                    "redis: applied a peer's invalidation: {} removed",
                    report.removed
                );
            }
            Err(e) => log::warn!("redis: ignoring a malformed invalidation message: {e}"),
        }
    }
}

//! The AI operations, `POST /ai/{operation}`, on the accepting shard: parse and validate
//! ([`request`]), merge the user's stored context when asked ([`context`]), compute the cache
//! key (operation + canonical input + user, [`canonical`]), send the job to the owning shard
//! over the mesh, and turn the owner's answer into a response whose body is the exact cached
//! bytes and whose metadata travels in headers.
//!
//! The owner side lives in [`engine`]. Invalidation (`/ai/cache/invalidate`, `/ai/events`) is
//! in [`invalidation`] and [`events`]. This module never touches the cache or the queues.

pub mod canonical;
pub mod context;
pub mod engine;
pub mod events;
pub mod horizon;
pub mod invalidation;
pub mod pool;
pub mod request;

use std::rc::Rc;
use std::time::Instant;

use atlas_shard::{CacheKey, Operation};

use crate::error::ApiError;
use crate::http::{Request, Response, Status};
use crate::runtime::shard::{Shard, ShardCall, ShardReply};
use engine::{Job, Served};

/// Handles `POST /ai/{op}`.
pub async fn handle(
    shard: &Rc<Shard>,
    op: Operation,
    request: &Request,
    caller: &crate::auth::Caller<'_>,
) -> Response {
    let started = Instant::now();
    let metrics_on = shard.config.enable_prometheus;
    let record = |status: crate::http::Status| {
        if metrics_on {
            let total_s = started.elapsed().as_secs_f64();
            shard
                .metrics
                .borrow_mut()
                .record(op, status.code(), None, total_s, 0.0);
        }
    };
    // Without `use_context` the input is checked before admission, as it always was; with
    // it, after admission and the one mesh call that reads the context.
    let prepared = match request::parse(op, request) {
        Ok(draft) if draft.use_context => Prepared::NeedsContext(draft),
        Ok(draft) => match draft.finish(None) {
            Ok(p) => Prepared::Ready(p),
            Err(e) => {
                record(e.status);
                return e.to_response();
            }
        },
        Err(e) => {
            record(e.status);
            return e.to_response();
        }
    };
    let (priority, user) = match &prepared {
        Prepared::Ready(p) => (p.priority, p.user.as_str()),
        Prepared::NeedsContext(d) => (d.priority, d.user.as_str()),
    };
    // A token's subject computes, reads and (through `use_context`) uses only its own data.
    if let Err(e) = caller.check_user(&shard.auth, user) {
        record(e.status);
        return e.to_response();
    }
    let Some(_in_flight) = shard.admit(priority) else {
        record(Status::ServiceUnavailable);
        return engine::overloaded(
            "too many requests in progress (MAX_CONCURRENT_REQUESTS); retry later",
        )
        .to_response()
        .header("Retry-After", "1");
    };
    // RATE LIMITS: the one point where an AI request is charged, after parsing, the user
    // check and admission (a malformed, forbidden or shed request costs no token) and before
    // any work; charged to the token's subject (the named user with auth off).
    let charged = crate::ratelimit::subject(caller.identity, user);
    let allowance = match crate::ratelimit::check(shard, charged).await {
        Ok(allowance) => allowance,
        Err(refused) => {
            record(refused.error.status);
            refused.log(charged, caller.peer);
            return refused.to_response();
        }
    };
    let deadline = started + shard.config.request_timeout;
    let (parsed, context_version) = match prepared {
        Prepared::Ready(p) => (p, None),
        Prepared::NeedsContext(draft) => {
            let merged = context::fetch(shard, &draft.user, deadline)
                .await
                .and_then(|ctx| {
                    let version = ctx.version;
                    draft
                        .finish(Some(&ctx.value.fields))
                        .map(|p| (p, Some(version)))
                });
            match merged {
                Ok(m) => m,
                Err(e) => {
                    record(e.status);
                    return e.to_response();
                }
            }
        }
    };
    let key = match CacheKey::new(op, Some(&parsed.user), &parsed.canonical) {
        Ok(k) => k,
        Err(e) => {
            record(Status::BadRequest);
            return ApiError::new(
                Status::BadRequest,
                "invalid_request",
                format!("user_id: {e}"),
            )
            .to_response();
        }
    };
    let owner = key.shard(shard.mesh.shards());
    let job = Job {
        key,
        input: parsed.input,
        priority: parsed.priority,
        mode: parsed.mode,
        max_age: parsed.max_age,
        deadline,
        tags: parsed.dependencies,
    };
    let call = shard.mesh.call(owner, ShardCall::Ai(Box::new(job)));
    let answer = futures_lite::future::or(async { Some(call.await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await;
    let mut cache = None;
    let mut processing_s = 0.0;
    let mut model = None;
    let response = match answer {
        None => engine::timeout().to_response(),
        Some(Err(e)) => ApiError::new(
            Status::ServiceUnavailable,
            "shard_unavailable",
            format!("the owning shard did not answer: {e}"),
        )
        .to_response(),
        Some(Ok(ShardReply::Ai(Ok(served)))) => {
            cache = Some(served.cache);
            processing_s = served.processing_ms / 1000.0;
            if served.batch_size > 0 {
                model = Some((served.batch_size, served.queue_ms / 1000.0));
            }
            success(served)
        }
        Some(Ok(ShardReply::Ai(Err(e)))) => {
            let r = e.to_response();
            if e.status == Status::ServiceUnavailable {
                r.header("Retry-After", "1")
            } else {
                r
            }
        }
        Some(Ok(_)) => {
            ApiError::new(Status::InternalServerError, "internal", "unexpected reply").to_response()
        }
    };
    let response = allowance.finish(shard, response, cache);
    let total_ms = ms_since(started);
    if metrics_on {
        let mut metrics = shard.metrics.borrow_mut();
        metrics.record(
            op,
            response.status.code(),
            cache,
            total_ms / 1000.0,
            processing_s,
        );
        if let Some((batch_size, queue_s)) = model {
            metrics.record_model(op, batch_size, queue_s);
        }
    }
    let response = response
        .header("X-Atlas-Owner", owner.to_string())
        .header("X-Atlas-Total-Ms", format!("{total_ms:.3}"));
    match context_version {
        Some(v) => response.header("X-Atlas-Context-Version", v.to_string()),
        None => response,
    }
}

/// A parsed request, complete or waiting for the user's stored context.
enum Prepared {
    Ready(request::AiRequest),
    NeedsContext(request::Draft),
}

fn success(served: Served) -> Response {
    let level = match served.cache {
        engine::CacheStatus::Hit if served.from_l2 => Some("l2"),
        engine::CacheStatus::Hit | engine::CacheStatus::Stale => Some("l1"),
        _ => None,
    };
    let response = Response::json(Status::Ok, served.body);
    let response = match level {
        Some(level) => response.header("X-Atlas-Cache-Level", level),
        None => response,
    };
    response
        .header("X-Atlas-Cache", served.cache.as_str())
        .header("X-Atlas-Queue-Ms", format!("{:.3}", served.queue_ms))
        .header(
            "X-Atlas-Processing-Ms",
            format!("{:.3}", served.processing_ms),
        )
        .header("X-Atlas-Batch-Size", served.batch_size.to_string())
        .header("X-Atlas-Endpoint", served.endpoint)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

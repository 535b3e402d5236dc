//! `POST /ai/{operation}` on the accepting shard, the hot path: the request memo or a fresh
//! parse ([`prepare`]), then the user check, admission, the rate limit, the stored context
//! when asked, the job on the owning shard over the mesh, and the owner's answer as a response
//! whose body is the exact cached bytes and whose metadata travels in headers ([`serve`]).
//! REST and each GraphQL operation field come through here. Never touches the cache or the
//! queues: the owner's engine does (`ai::engine`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use atlas_shard::Operation;

use super::{context, Shard, ShardCall, ShardReply};
use crate::ai::engine::{self, Job, JobSpec, Served};
use crate::ai::request;
use crate::error::ApiError;
use crate::http::{Request, Response, Status};
use crate::mesh::MeshError;

/// Handles `POST /ai/{op}`.
pub async fn handle(
    shard: &Rc<Shard>,
    op: Operation,
    request: &Request,
    caller: &crate::auth::Caller<'_>,
) -> Response {
    let started = Instant::now();
    match prepare(shard, op, request, caller.identity) {
        Ok(prepared) => serve(shard, op, prepared, caller, started).await,
        Err(e) => refuse(shard, op, started, &e),
    }
}

/// The parsed request: from the memo when this shard has parsed exactly these bytes before
/// (parsed and checked already), else parsed now (and remembered when it is complete).
/// Without `use_context` the input is checked here, before admission; with it, after
/// admission and the one mesh call that reads the context ([`serve`]).
pub fn prepare(
    shard: &Shard,
    op: Operation,
    request: &Request,
    identity: &crate::auth::Identity,
) -> Result<Prepared, ApiError> {
    let memo_bytes = shard.requests.borrow_mut().bytes_of(op, identity, request);
    let remembered = memo_bytes
        .as_ref()
        .and_then(|b| shard.requests.borrow_mut().get(b));
    if let Some(spec) = remembered {
        return Ok(Prepared::Ready(spec));
    }
    let prepared = parse_new(op, request)?;
    if let (Prepared::Ready(spec), Some(b)) = (&prepared, &memo_bytes) {
        shard.requests.borrow_mut().insert(b, spec);
    }
    Ok(prepared)
}

/// The answer to a request refused before [`serve`] (counted like any answered request).
pub fn refuse(shard: &Shard, op: Operation, started: Instant, e: &ApiError) -> Response {
    if shard.core.config.enable_prometheus {
        shard.metrics.borrow_mut().record(
            op,
            e.status.code(),
            None,
            started.elapsed().as_secs_f64(),
            0.0,
        );
    }
    e.to_response()
}

/// Serves a prepared request: the user check, admission, rate limits, the stored context
/// when asked, then the owner shard's answer (the REST route and each GraphQL operation
/// field come here). The response's body is the exact cached bytes; its metadata is in
/// `X-Atlas-*` headers.
pub async fn serve(
    shard: &Rc<Shard>,
    op: Operation,
    prepared: Prepared,
    caller: &crate::auth::Caller<'_>,
    started: Instant,
) -> Response {
    let metrics_on = shard.core.config.enable_prometheus;
    let record = |status: crate::http::Status| {
        if metrics_on {
            let total_s = started.elapsed().as_secs_f64();
            shard
                .metrics
                .borrow_mut()
                .record(op, status.code(), None, total_s, 0.0);
        }
    };
    let (priority, user) = match &prepared {
        Prepared::Ready(spec) => (spec.priority, spec.key.user().unwrap_or("")),
        Prepared::NeedsContext(d) => (d.priority, d.user.as_str()),
    };
    // A token's subject computes, reads and (through `use_context`) uses only its own data.
    if let Err(e) = caller.check_user(&shard.auth, user) {
        record(e.status);
        return e.to_response();
    }
    let Some(_in_flight) = shard.core.admit(priority) else {
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
    let allowance = match crate::ratelimit::check(&shard.rates(), charged).await {
        Ok(allowance) => allowance,
        Err(refused) => {
            record(refused.error.status);
            refused.log(charged, caller.peer);
            return refused.to_response();
        }
    };
    let deadline = started + shard.core.config.request_timeout;
    let (spec, context_version) = match prepared {
        Prepared::Ready(spec) => (spec, None),
        Prepared::NeedsContext(draft) => {
            let merged = context::fetch(shard, &draft.user, deadline)
                .await
                .and_then(|ctx| {
                    let version = ctx.version;
                    let spec = draft.finish(Some(&ctx.value.fields))?.into_spec()?;
                    Ok((Arc::new(spec), Some(version)))
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
    let owner = spec.key.shard(shard.core.mesh.shards());
    let job = Job::new(spec, deadline);
    // The deadline costs no timer per request: a hit answers at once, a hop is watched by
    // the mesh's sweep.
    let answer = shard
        .core
        .mesh
        .call_until(owner, ShardCall::Ai(Box::new(job)), deadline)
        .await;
    let mut cache = None;
    let mut processing_s = 0.0;
    let mut model = None;
    let response = match answer {
        Err(MeshError::Timeout(_)) => engine::timeout().to_response(),
        Err(e) => ApiError::new(
            Status::ServiceUnavailable,
            "shard_unavailable",
            format!("the owning shard did not answer: {e}"),
        )
        .to_response(),
        Ok(ShardReply::Ai(Ok(served))) => {
            cache = Some(served.cache);
            processing_s = served.processing_ms / 1000.0;
            if served.batch_size > 0 {
                model = Some((served.batch_size, served.queue_ms / 1000.0));
            }
            success(served)
        }
        Ok(ShardReply::Ai(Err(e))) => {
            let r = e.to_response();
            if e.status == Status::ServiceUnavailable {
                r.header("Retry-After", "1")
            } else {
                r
            }
        }
        Ok(_) => {
            ApiError::new(Status::InternalServerError, "internal", "unexpected reply").to_response()
        }
    };
    let response = allowance.finish(&shard.rates(), response, cache);
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
pub enum Prepared {
    /// Complete: what the owner shard needs.
    Ready(Arc<JobSpec>),
    /// Waiting for the user's stored context (`use_context`).
    NeedsContext(request::Draft),
}

/// Parses a request the memo does not know: its spec, or its draft when it needs the user's
/// context.
fn parse_new(op: Operation, request: &Request) -> Result<Prepared, ApiError> {
    let draft = request::parse(op, request)?;
    if draft.use_context {
        return Ok(Prepared::NeedsContext(draft));
    }
    Ok(Prepared::Ready(Arc::new(draft.finish(None)?.into_spec()?)))
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

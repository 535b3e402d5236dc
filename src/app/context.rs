//! The context routes, `PUT|GET|HEAD|DELETE /ai/context/{user_id}`, and the reads of a
//! stored context for AI requests with `"use_context": true` (see `ai::context` for the store,
//! ownership and the merge): the calls to the owner shard, the L2 copy that other instances
//! read, and the invalidation of every result computed with a context that changed.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use atlas_shard::{Context, Written};

use super::{Shard, ShardCall, ShardReply, BROADCAST_LIMIT};
use crate::ai::context::{owner, tag, ContextCall, ContextReply, ContextValue, SharedContext};
use crate::ai::invalidation::{self, Invalidation};
use crate::ai::request::{check_user, parse_body};
use crate::error::{json_string, ApiError};
use crate::http::{Request, Response, Status};
use crate::mesh::MeshError;

fn not_found(user: &str) -> ApiError {
    ApiError::new(
        Status::NotFound,
        "context_not_found",
        format!(
            "no stored context for user `{}` (store one with PUT /ai/context/{{user_id}})",
            crate::error::truncate(user, 64)
        ),
    )
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        Status::ServiceUnavailable,
        "shard_unavailable",
        format!("the shard that owns the context did not answer: {e}"),
    )
}

/// Runs `call` on the shard that owns `user`, waiting at most `until` (and never longer than
/// the broadcast limit).
async fn call_owner(
    shard: &Rc<Shard>,
    user: &str,
    call: ContextCall,
    until: Instant,
) -> Result<ContextReply, ApiError> {
    let target = owner(user, shard.core.mesh.shards());
    let until = until.min(Instant::now() + BROADCAST_LIMIT);
    let reply = shard
        .core
        .mesh
        .call_until(target, ShardCall::Context(Box::new(call)), until)
        .await;
    match reply {
        Ok(ShardReply::Context(r)) => Ok(r),
        Ok(_) => Err(unavailable("unexpected reply")),
        Err(MeshError::Timeout(_)) => Err(unavailable("timed out")),
        Err(e) => Err(unavailable(e)),
    }
}

/// Reads `user`'s context for a request with `use_context` (one mesh call to the owner;
/// with Redis, a context another instance stored is read from there when the owner has none).
/// 404 `context_not_found` when there is none.
pub async fn fetch(
    shard: &Rc<Shard>,
    user: &str,
    until: Instant,
) -> Result<Context<SharedContext>, ApiError> {
    let call = ContextCall::Get {
        user: user.to_string(),
    };
    match call_owner(shard, user, call, until).await? {
        ContextReply::Get(Some(context)) => Ok(context),
        _ => match l2_of(shard) {
            Some(l2) => from_l2(&l2, user).await.ok_or_else(|| not_found(user)),
            None => Err(not_found(user)),
        },
    }
}

/// The shard's L2 handle, when Redis is configured.
fn l2_of(shard: &Shard) -> Option<Rc<crate::l2::L2>> {
    shard.engine().and_then(|e| e.l2.clone())
}

/// A context stored in Redis by any instance: `{"version","expires_unix_ms","context"}`.
/// Not kept locally (so an update on another instance is seen at once); an invalid value is
/// logged and treated as absent.
async fn from_l2(l2: &crate::l2::L2, user: &str) -> Option<Context<SharedContext>> {
    let bytes = l2.get_bytes(l2.context_key(user)).await?;
    let now = crate::wallclock::unix_ms_now();
    let parsed: Option<(u64, u64, Map<String, Value>)> =
        serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
            let version = v.get("version")?.as_u64()?;
            let expires = v.get("expires_unix_ms")?.as_u64()?;
            let fields = v.get("context")?.as_object()?.clone();
            Some((version, expires, fields))
        });
    let Some((version, expires, fields)) = parsed else {
        log::warn!("redis: ignoring an invalid stored context");
        return None;
    };
    let json = crate::ai::canonical::to_vec(&Value::Object(fields.clone()));
    (expires > now).then(|| Context {
        value: Arc::new(ContextValue {
            json: Bytes::from(json),
            fields,
        }),
        version,
        expires_in: std::time::Duration::from_millis(expires - now),
    })
}

/// Drops this instance's copy of `user`'s context (another instance changed it; Redis holds
/// the new one).
pub async fn forget(shard: &Rc<Shard>, user: &str) {
    let call = ContextCall::Delete {
        user: user.to_string(),
    };
    let until = Instant::now() + BROADCAST_LIMIT;
    if let Err(e) = call_owner(shard, user, call, until).await {
        log::warn!("context: cannot drop the local copy of a changed context: {e:?}");
    }
}

/// The method of a context route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET` (and `HEAD`): read.
    Get,
    /// `PUT`: store or replace.
    Put,
    /// `DELETE`: remove.
    Delete,
}

/// The user id in `/ai/context/{user_id}`: percent-decoded UTF-8, validated like an AI
/// request's `user_id`.
pub fn user_from_path(path: &str) -> Result<String, ApiError> {
    let segment = path.strip_prefix("/ai/context/").unwrap_or("");
    let bad = || {
        ApiError::new(
            Status::BadRequest,
            "invalid_request",
            "user_id: the path segment must be percent-encoded UTF-8",
        )
    };
    let raw = segment.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    let user = String::from_utf8(bytes).map_err(|_| bad())?;
    check_user(&user, "user_id")?;
    Ok(user)
}

/// Handles `PUT|GET|DELETE /ai/context/{user_id}`.
pub async fn handle(
    shard: &Rc<Shard>,
    method: Method,
    request: &Request,
    caller: &crate::auth::Caller<'_>,
) -> Response {
    let user = match user_from_path(request.path()) {
        Ok(user) => user,
        Err(e) => return e.to_response(),
    };
    // Reading, writing and deleting a context are the user's own (or an admin's) business.
    if let Err(e) = caller.check_user(&shard.auth, &user) {
        return e.to_response();
    }
    // RATE LIMITS: every context call costs a token of the token's subject (the user in the
    // path with auth off).
    let charged = crate::ratelimit::subject(caller.identity, &user);
    let allowance = match crate::ratelimit::check(&shard.rates(), charged).await {
        Ok(allowance) => allowance,
        Err(refused) => {
            refused.log(charged, caller.peer);
            return refused.to_response();
        }
    };
    let response = match run(shard, method, request, user).await {
        Ok(response) => response,
        Err(e) => e.to_response(),
    };
    allowance.finish(&shard.rates(), response, None)
}

async fn run(
    shard: &Rc<Shard>,
    method: Method,
    request: &Request,
    user: String,
) -> Result<Response, ApiError> {
    let until = Instant::now() + shard.core.config.request_timeout;
    match method {
        Method::Get => {
            let context = fetch(shard, &user, until).await?;
            Ok(Response::json(Status::Ok, get_body(&user, &context)))
        }
        Method::Put => {
            let value = parse_context(request, shard.core.config.context_max_bytes)?;
            let call = ContextCall::Put {
                user: user.clone(),
                value: Arc::new(value),
            };
            let json = match &call {
                ContextCall::Put { value, .. } => value.json.clone(),
                _ => Bytes::new(),
            };
            let written = match call_owner(shard, &user, call, until).await? {
                ContextReply::Put(Ok(written)) => written,
                ContextReply::Put(Err(e)) => return Err(too_large(e.to_string())),
                _ => return Err(unavailable("unexpected reply")),
            };
            // Redis first, then the invalidation: a peer that drops its copy on the message
            // finds the new context there.
            let stored = match l2_of(shard) {
                Some(l2) => Some(store_in_l2(&l2, &user, &json, &written).await),
                None => None,
            };
            let report = invalidate(shard, &user).await;
            let mut body = report.fields();
            if let Some(stored) = stored {
                body.insert(
                    "context_l2".into(),
                    match stored {
                        Ok(()) => json!({"stored": true}),
                        Err(e) => json!({"stored": false, "error": e}),
                    },
                );
            }
            body.insert("user_id".into(), json!(user));
            body.insert("version".into(), json!(written.version));
            body.insert(
                "expires_in_s".into(),
                json!(written.expires_in.as_secs_f64().ceil() as u64),
            );
            Ok(Response::json(Status::Ok, Value::Object(body).to_string()))
        }
        Method::Delete => {
            let call = ContextCall::Delete { user: user.clone() };
            let version = match call_owner(shard, &user, call, until).await? {
                ContextReply::Delete(version) => version,
                _ => return Err(unavailable("unexpected reply")),
            };
            let in_l2 = match l2_of(shard) {
                Some(l2) => l2
                    .unlink(l2.context_key(&user), invalidation::L2_LIMIT)
                    .await
                    .map_err(|e| log::warn!("context: cannot delete from Redis: {e}"))
                    .unwrap_or(false),
                None => false,
            };
            let report = invalidate(shard, &user).await;
            let mut body = report.fields();
            body.insert("user_id".into(), json!(user));
            body.insert("deleted".into(), json!(version.is_some() || in_l2));
            body.insert("version".into(), json!(version));
            Ok(Response::json(Status::Ok, Value::Object(body).to_string()))
        }
    }
}

/// Writes a context to Redis with its TTL, for the other instances.
async fn store_in_l2(
    l2: &crate::l2::L2,
    user: &str,
    json: &Bytes,
    written: &Written,
) -> Result<(), String> {
    let ttl_ms = written.expires_in.as_millis() as u64;
    let mut value = Vec::with_capacity(json.len() + 64);
    value.extend_from_slice(
        format!(
            "{{\"version\":{},\"expires_unix_ms\":{},\"context\":",
            written.version,
            crate::wallclock::unix_ms_now() + ttl_ms
        )
        .as_bytes(),
    );
    value.extend_from_slice(json);
    value.push(b'}');
    l2.set_bytes(l2.context_key(user), value, ttl_ms, invalidation::L2_LIMIT)
        .await
}

/// Removes, on every shard, the results computed with `user`'s context.
async fn invalidate(shard: &Rc<Shard>, user: &str) -> invalidation::Report {
    super::invalidate::everywhere(shard, Invalidation::of_tags(vec![tag(user)])).await
}

fn too_large(message: String) -> ApiError {
    ApiError::new(Status::PayloadTooLarge, "context_too_large", message)
}

/// Reads a `PUT` body: a JSON object of at most `max_bytes` bytes as sent.
fn parse_context(request: &Request, max_bytes: usize) -> Result<ContextValue, ApiError> {
    if request.body.len() > max_bytes {
        return Err(too_large(format!(
            "a context is at most {max_bytes} bytes (ATLAS_CONTEXT_MAX_BYTES); this one is {}",
            request.body.len()
        )));
    }
    match parse_body::<Value>(request)? {
        Value::Object(fields) => {
            let json = crate::ai::canonical::to_vec(&Value::Object(fields.clone()));
            Ok(ContextValue {
                json: Bytes::from(json),
                fields,
            })
        }
        _ => Err(ApiError::new(
            Status::BadRequest,
            "invalid_request",
            "the body must be a JSON object (the context)",
        )),
    }
}

/// `{"user_id": ..., "context": {...}, "version": N, "expires_in_s": S}`, with the stored
/// bytes copied in as they are.
fn get_body(user: &str, context: &Context<SharedContext>) -> Bytes {
    let mut out = Vec::with_capacity(context.value.json.len() + user.len() + 64);
    out.extend_from_slice(b"{\"user_id\":");
    json_string(&mut out, user);
    out.extend_from_slice(b",\"context\":");
    out.extend_from_slice(&context.value.json);
    out.extend_from_slice(
        format!(
            ",\"version\":{},\"expires_in_s\":{}}}",
            context.version,
            context.expires_in.as_secs_f64().ceil() as u64
        )
        .as_bytes(),
    );
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_in_paths_are_percent_decoded_and_checked() {
        assert_eq!(user_from_path("/ai/context/u-42").unwrap(), "u-42");
        assert_eq!(user_from_path("/ai/context/a%2Fb%20c").unwrap(), "a/b c");
        assert_eq!(user_from_path("/ai/context/%C3%A9").unwrap(), "é");
        for bad in [
            "/ai/context/",
            "/ai/context/%",
            "/ai/context/%zz",
            "/ai/context/%ff",
            "/ai/context/a%00",
        ] {
            let e = user_from_path(bad).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (Status::BadRequest, "invalid_request"),
                "{bad}"
            );
        }
        let long = format!("/ai/context/{}", "x".repeat(257));
        assert!(user_from_path(&long).is_err());
    }

    #[test]
    fn the_get_body_is_json() {
        let context = Context {
            value: Arc::new(ContextValue {
                json: Bytes::from_static(br#"{"a":1}"#),
                fields: Map::new(),
            }),
            version: 3,
            expires_in: std::time::Duration::from_millis(1500),
        };
        let v: Value = serde_json::from_slice(&get_body("u\"1", &context)).unwrap();
        assert_eq!(
            v,
            json!({"user_id": "u\"1", "context": {"a": 1}, "version": 3, "expires_in_s": 2})
        );
    }
}

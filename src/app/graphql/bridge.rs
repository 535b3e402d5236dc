//! The `Send` bridge between async-graphql's resolvers and the shard: a field's REST call
//! ([`Call`]) runs as a local task on this shard's executor, with the request REST would have
//! received, through the route's own handler ([`crate::app::routes::run_route`]); the resolver
//! awaits its [`Response`] on a `Send` oneshot. Also the mapping of a refused call to a
//! GraphQL error ([`refusal`]). Must not touch caches, queues or the mesh.

use std::borrow::Cow;
use std::rc::Rc;

use async_graphql::{Context, Error, ErrorExtensions, Result};
use serde::Deserialize;
use serde_json::Value;

use super::{current_shard, GqlCaller};
use crate::app::Shard;
use crate::auth::Caller;
use crate::http::parse::{parse_head, Limits, Parsed};
use crate::http::{Request, Response};

/// A call to a REST route's handler, run on this shard.
pub(super) struct Call {
    /// The REST method.
    pub method: &'static str,
    /// The REST path.
    pub path: Cow<'static, str>,
    /// The REST body.
    pub body: Vec<u8>,
    /// Refused with `admin_required` unless the caller is an admin.
    pub admin: bool,
}

/// Runs `call` on this shard's executor and awaits its response (a `Send` future: the shard
/// is only touched inside the spawned local task).
pub(super) async fn on_shard(ctx: &Context<'_>, call: Call) -> Result<Response> {
    let caller = ctx.data::<GqlCaller>()?.clone();
    let (tx, rx) = futures_channel::oneshot::channel();
    spawn(call, caller, tx)?;
    rx.await.map_err(|_| {
        Error::new("the shard dropped the request").extend_with(|_, e| e.set("code", "internal"))
    })
}

fn spawn(
    call: Call,
    caller: GqlCaller,
    tx: futures_channel::oneshot::Sender<Response>,
) -> Result<()> {
    let shard = current_shard().ok_or_else(|| Error::new("no shard on this thread"))?;
    let task = glommio::spawn_local(async move {
        let response = run(&shard, call, &caller).await;
        let _ = tx.send(response);
    });
    drop(task.detach());
    Ok(())
}

/// The REST handler for `call`, given the request REST would have received.
async fn run(shard: &Rc<Shard>, call: Call, caller: &GqlCaller) -> Response {
    let identity = caller.identity();
    let caller = Caller {
        identity: &identity,
        peer: caller.peer,
    };
    if call.admin {
        if let Err(e) = shard.auth.check_admin(&identity, &call.path, caller.peer) {
            return e.to_response();
        }
    }
    let request = match rest_request(call.method, &call.path, call.body) {
        Ok(request) => request,
        Err(e) => return e.to_response(),
    };
    let route = match crate::app::routes::resolve(
        &shard.tier,
        request.method(),
        request.path(),
        call.method,
    ) {
        Ok(route) => route,
        Err(e) => return e.to_response(),
    };
    crate::app::routes::run_route(shard, route, &request, &caller).await
}

/// The request REST would have received: `method path` with a JSON `body`.
pub(super) fn rest_request(
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Request, crate::error::ApiError> {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: graphql\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    match parse_head(raw.as_bytes(), &Limits::default()) {
        Ok(Parsed::Done(head)) => Ok(Request {
            head,
            raw: bytes::Bytes::from(raw),
            body: bytes::Bytes::from(body),
        }),
        Ok(Parsed::Incomplete) | Err(_) => Err(crate::error::ApiError::new(
            crate::http::Status::BadRequest,
            "invalid_request",
            "the field's arguments do not make a valid request",
        )),
    }
}

/// The response as a field value, or its error as a GraphQL error.
pub(super) fn answer(response: Response) -> Result<Value> {
    if response.status.code() < 300 {
        return Ok(serde_json::from_slice(&response.body).unwrap_or(Value::Null));
    }
    Err(refusal(&response))
}

/// REST's error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorFields,
}

#[derive(Deserialize, Default)]
struct ErrorFields {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The GraphQL error of a refused field: REST's message, and in `extensions` REST's `code`
/// and `status`; a 429 is `code: "RATE_LIMITED"` (REST's code in `restCode`); an answer with
/// `Retry-After` (429, 503) adds `retryAfterS`.
pub(super) fn refusal(response: &Response) -> Error {
    let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
    let status = response.status.code();
    let rest_code = body.error.code.unwrap_or_else(|| "internal".to_string());
    let message = body
        .error
        .message
        .unwrap_or_else(|| "the request failed".to_string());
    let retry_after: Option<u64> = header(response, "Retry-After").and_then(|v| v.parse().ok());
    Error::new(message).extend_with(|_, e| {
        if status == 429 {
            e.set("code", RATE_LIMITED);
            e.set("restCode", rest_code.as_str());
        } else {
            e.set("code", rest_code.as_str());
        }
        e.set("status", status);
        if let Some(s) = retry_after {
            e.set("retryAfterS", s);
        }
    })
}

/// `extensions.code` of a field refused by a rate limit.
pub const RATE_LIMITED: &str = "RATE_LIMITED";

pub(super) fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

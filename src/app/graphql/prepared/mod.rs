//! The prepared path: a document that async-graphql has parsed and validated once, and that
//! only asks for operation fields ([`plan`]), is answered from then on without async-graphql.
//! Per request: the arguments and variables become each field's REST body ([`bind`]), each
//! body the REST pipeline's parsed request (`app::ai::prepare`, with the REST memo), each field runs
//! through `app::ai::serve` directly on this shard (no task, no oneshot; several fields
//! concurrently, so their misses can share batches), and the answer is written from the REST
//! responses' bytes ([`project`]). A request whose exact bytes this shard has bound before
//! skips the binding too: the GraphQL memo maps them to the fields' parsed requests.
//!
//! The same rules as the slow path apply to every field, because they are the REST pipeline's:
//! the user check, admission, rate limits, context, the cache entry, the numbers, the error
//! codes. What this path does not prove it answers exactly as async-graphql would, it leaves
//! to async-graphql: documents without a plan, and any request whose values do not fit their
//! types (async-graphql words that error).
//!
//! Hot path. Touches no cache, queue or mesh itself; state is per shard thread.

mod bind;
mod plan;
mod project;
pub(super) mod types;

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{PathSegment, ServerError};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ai::engine::JobSpec;
use crate::app::ai::Prepared;
use crate::app::Shard;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Method, Request, Response, Status};
use crate::metrics::GraphqlPath;
use atlas_shard::Memo;
pub(super) use plan::Plan;
use plan::Root;

thread_local! {
    /// This thread's plans by (query text, operation name); `None` for a document the
    /// prepared path does not run.
    static PLANS: RefCell<Plans> = RefCell::new(Plans::default());
    /// This thread's bound requests by their exact bytes (built on first use).
    static MEMO: RefCell<Option<Memo<Rc<Bound>>>> = const { RefCell::new(None) };
}

/// Most documents a shard keeps plans for (emptied when full, like the parsed documents).
const PLANS_MAX: usize = 256;
/// Most query text, summed, a shard keeps plans for.
const PLANS_TEXT_MAX: usize = 128 * 1024;
/// Longest query text a plan is kept for.
const PLAN_TEXT_MAX: usize = 8 * 1024;

#[derive(Default)]
struct Plans {
    map: AHashMap<(String, Option<String>), Option<Rc<Plan>>>,
    text: usize,
}

/// A request bound to its plan: each operation field's parsed REST request, in root order.
struct Bound {
    plan: Rc<Plan>,
    specs: Vec<Arc<JobSpec>>,
}

/// Whether the prepared path has decided about this document already.
pub(super) fn knows(query: &str, operation: Option<&str>) -> bool {
    if query.len() > PLAN_TEXT_MAX {
        return true;
    }
    PLANS.with(|p| {
        p.borrow()
            .map
            .contains_key(&(query.to_string(), operation.map(str::to_string)))
    })
}

/// The plan of `doc`'s operation `operation`, when the prepared path can run it.
pub(super) fn plan(doc: &ExecutableDocument, operation: Option<&str>) -> Option<Plan> {
    plan::build(doc, operation)
}

/// Records the decision about a document that passed validation: its plan, or `None` when
/// the prepared path does not run it.
pub(super) fn learn(query: &str, operation: Option<&str>, plan: Option<Plan>) {
    if query.len() > PLAN_TEXT_MAX {
        return;
    }
    PLANS.with(|p| {
        let mut p = p.borrow_mut();
        let key = (query.to_string(), operation.map(str::to_string));
        if p.map.contains_key(&key) {
            return;
        }
        if p.map.len() >= PLANS_MAX || p.text + query.len() > PLANS_TEXT_MAX {
            p.map.clear();
            p.text = 0;
        }
        p.text += query.len();
        p.map.insert(key, plan.map(Rc::new));
    });
}

/// The answer to a GraphQL request through the prepared path, or `None` when it is left to
/// async-graphql.
pub(super) async fn answer(
    shard: &Rc<Shard>,
    request: &Request,
    caller: &Caller<'_>,
    graphql_response: bool,
) -> Option<Response> {
    let (tag, payload): (&[u8], &[u8]) = match request.method() {
        Method::Get => (b"G", request.query()?),
        Method::Post => {
            if let Some(ct) = request.header("content-type") {
                if !crate::ai::request::json_compatible(std::str::from_utf8(ct).ok()?) {
                    return None;
                }
            }
            (b"P", &request.body)
        }
        _ => return None,
    };
    let (kind, subject) = crate::ai::memo::identity_bytes(caller.identity);
    let parts: [&[u8]; 4] = [tag, kind, subject, payload];
    let remembered = MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let memo = m.get_or_insert_with(|| {
            let max = shard.core.config.request_memo_bytes;
            Memo::new(max, max / 16)
        });
        if !memo.is_enabled() || !memo.could_hold(&parts) {
            return Err(None);
        }
        let hash = memo.hash(&parts);
        memo.get(hash, &parts).cloned().ok_or(Some(hash))
    });
    let hash = match remembered {
        Ok(bound) => {
            record(shard, GraphqlPath::Memo);
            let calls = bound
                .specs
                .iter()
                .map(|s| Ok(Prepared::Ready(Arc::clone(s))));
            return Some(
                execute(
                    shard,
                    &bound.plan,
                    calls.collect(),
                    caller,
                    graphql_response,
                )
                .await,
            );
        }
        Err(hash) => hash,
    };
    let (query, operation, variables) = read(request)?;
    let plan = PLANS.with(|p| {
        let key = (query.into_owned(), operation.map(Cow::into_owned));
        p.borrow().map.get(&key).cloned()
    })??;
    let bodies = bind::bodies(&plan, &variables)?;
    let mut calls = Vec::with_capacity(bodies.len());
    for (op, body) in plan.ops().map(|f| f.op).zip(bodies) {
        let call = super::bridge::rest_request("POST", super::operation::rest_path(op), body)
            .and_then(|r| crate::app::ai::prepare(shard, op, &r, caller.identity));
        calls.push(call);
    }
    let specs: Option<Vec<Arc<JobSpec>>> = calls
        .iter()
        .map(|c| match c {
            Ok(Prepared::Ready(spec)) => Some(Arc::clone(spec)),
            _ => None,
        })
        .collect();
    if let (Some(specs), Some(hash)) = (specs, hash) {
        // The specs may outlive the REST memo's entries: each counts here too.
        let cost = std::mem::size_of::<Bound>()
            + specs
                .iter()
                .map(|s| crate::ai::memo::spec_cost(s))
                .sum::<usize>();
        let bound = Rc::new(Bound {
            plan: Rc::clone(&plan),
            specs,
        });
        MEMO.with(|m| {
            if let Some(memo) = m.borrow_mut().as_mut() {
                memo.insert(hash, &parts, bound, cost);
            }
        });
    }
    record(shard, GraphqlPath::Prepared);
    Some(execute(shard, &plan, calls, caller, graphql_response).await)
}

fn record(shard: &Shard, path: GraphqlPath) {
    if shard.core.config.enable_prometheus {
        shard.metrics.borrow_mut().record_graphql(path);
    }
}

/// A POST body's GraphQL request, borrowed where it can be.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    query: Cow<'a, str>,
    #[serde(default, borrow, rename = "operationName")]
    operation_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    variables: Option<&'a RawValue>,
}

/// The query text, operation name and variables of the request; `None` when it is not a
/// well-formed GraphQL request (async-graphql's path words the error).
fn read(request: &Request) -> Option<(Cow<'_, str>, Option<Cow<'_, str>>, bind::Variables)> {
    // As the general path reads them: an empty GET `operationName` is none, an empty POST one
    // is a name (which no operation has); GET `variables=null` is none.
    let (query, operation, variables) = if request.method() == Method::Get {
        let (query, variables, operation) = super::query_params(request).ok()?;
        let variables: Option<bind::Variables> = match variables.filter(|v| !v.is_empty()) {
            Some(v) => serde_json::from_str(&v).ok()?,
            None => None,
        };
        let operation = operation.filter(|o| !o.is_empty()).map(Cow::Owned);
        (Cow::Owned(query?), operation, variables.unwrap_or_default())
    } else {
        let body: Body<'_> = serde_json::from_slice(&request.body).ok()?;
        let variables = match body.variables {
            Some(raw) => serde_json::from_str(raw.get()).ok()?,
            None => Default::default(),
        };
        (body.query, body.operation_name, variables)
    };
    (!query.is_empty()).then_some((query, operation, variables))
}

/// Runs the operation fields of `plan` (their parsed requests in `calls`, in root order) and
/// writes the answer.
async fn execute(
    shard: &Rc<Shard>,
    plan: &Plan,
    calls: Vec<Result<Prepared, ApiError>>,
    caller: &Caller<'_>,
    graphql_response: bool,
) -> Response {
    let fields: Vec<&plan::OpField> = plan.ops().collect();
    let run = |op, call| async move {
        let started = Instant::now();
        match call {
            Ok(prepared) => crate::app::ai::serve(shard, op, prepared, caller, started).await,
            Err(e) => crate::app::ai::refuse(shard, op, started, &e),
        }
    };
    // One field (the common case) is awaited in place; several run concurrently.
    let mut calls = calls.into_iter();
    let mut responses = match (fields.as_slice(), calls.len()) {
        ([field], 1) => match calls.next() {
            Some(call) => vec![run(field.op, call).await],
            None => Vec::new(),
        },
        _ => {
            let runs = fields.iter().zip(calls).map(|(f, call)| run(f.op, call));
            futures_util::future::join_all(runs).await
        }
    }
    .into_iter();
    let capacity = 64
        + responses
            .as_slice()
            .iter()
            .map(|r| r.body.len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(b"{\"data\":{");
    let mut errors: Vec<ServerError> = Vec::new();
    let mut limited = Some(1u64);
    for (i, root) in plan.roots.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match root {
            Root::Typename { key } => {
                limited = None;
                crate::error::json_string(&mut out, key);
                out.extend_from_slice(b":\"Query\"");
            }
            Root::Op(f) => {
                crate::error::json_string(&mut out, &f.key);
                out.push(b':');
                // One call per field is bound; a missing one answers null, never a panic.
                let Some(response) = responses.next() else {
                    out.extend_from_slice(b"null");
                    limited = None;
                    continue;
                };
                if response.status.code() < 300 {
                    limited = None;
                    let budget = shard.core.config.request_memo_bytes;
                    project::operation(&mut out, f, (plan.id, i), &response, &mut errors, budget);
                    continue;
                }
                out.extend_from_slice(b"null");
                let retry = super::bridge::header(&response, "Retry-After")
                    .and_then(|v| v.parse::<u64>().ok());
                limited = match (limited, response.status) {
                    (Some(longest), Status::TooManyRequests) => {
                        Some(longest.max(retry.unwrap_or(1)))
                    }
                    _ => None,
                };
                let mut e = super::bridge::refusal(&response).into_server_error(f.pos);
                e.path = vec![PathSegment::Field(f.key.clone())];
                errors.push(e);
            }
        }
    }
    out.push(b'}');
    if !errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        let _ = serde_json::to_writer(&mut out, &errors);
    }
    out.push(b'}');
    let response = super::respond_bytes(Status::Ok, out, graphql_response);
    match limited {
        Some(s) if !fields.is_empty() => response.header("Retry-After", s.to_string()),
        _ => response,
    }
}

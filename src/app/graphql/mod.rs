//! `POST /graphql` and `GET /graphql?query=`: GraphQL over the same pipeline as the REST
//! routes. Every field is answered by the REST handler of its route (`app::ai` for the four
//! operations, `app::context`, `app::invalidate` (`handle`, `events`), the performance
//! document), called with a request built from the field's arguments: same validation, same
//! cache key, same owner shard, same batches and the same exact body bytes, so a REST call and
//! the same GraphQL field share one cache entry.
//!
//! async-graphql asks for `Send` resolver futures and `Send + Sync` context data; a shard's
//! state is `Rc` and not `Send`. A resolver therefore never holds the shard: it spawns the
//! REST handler as a local task on this shard's executor (through a thread-local weak pointer,
//! taken and released inside one synchronous call) and awaits a `Send` oneshot for its
//! `Response`. Everything still runs on one core. Fields of one query document run
//! concurrently (async-graphql joins them), so their misses can share batches.
//!
//! This module owns the schema ([`schema`]) and the HTTP side (GraphQL-over-HTTP: request
//! forms, status codes, limits); it must not touch caches, queues or the mesh directly.

mod bridge;
mod document;
mod inputs;
mod nulls;
mod operation;
mod outputs;
mod prepared;
mod request;
pub mod schema;

use std::cell::{OnceCell, RefCell};
use std::rc::{Rc, Weak};

use serde_json::json;

use crate::app::Shard;
use crate::auth::{Caller, Identity};
use crate::config::Config;
use crate::http::{Method, Request, Response, Status};

use document::chosen;
use document::{has_mutation, keep_parsed, parse_cached, root_names, DOC_MAX_LEN};
pub(crate) use request::path_encode;
use request::{query_params, read_request};
pub use schema::{sdl, AtlasSchema};

thread_local! {
    /// This thread's shard, for the local tasks that resolvers spawn (weak: it never keeps a
    /// shard alive past its shutdown).
    static SHARD: RefCell<Weak<Shard>> = const { RefCell::new(Weak::new()) };
    /// This thread's schema, built once from the configuration's limits.
    static SCHEMA: OnceCell<AtlasSchema> = const { OnceCell::new() };
    /// This thread's schema for documents that only introspect (built when first needed,
    /// only when introspection is on).
    static INTROSPECTION: OnceCell<AtlasSchema> = const { OnceCell::new() };
}

/// The shard a resolver on this thread runs its field on, if it is still alive.
pub(crate) fn current_shard() -> Option<Rc<Shard>> {
    SHARD.with(|s| s.borrow().upgrade())
}

/// Media type of GraphQL-over-HTTP responses that use status codes for request errors.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The caller of a GraphQL request, in a form that is `Send + Sync` (async-graphql context
/// data); turned back into an [`Identity`] on the shard.
#[derive(Debug, Clone)]
pub struct GqlCaller {
    /// Who is asking.
    kind: CallerKind,
    /// From where.
    pub peer: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone)]
enum CallerKind {
    Open,
    User { sub: String, admin: bool },
    AdminToken,
}

impl GqlCaller {
    fn new(caller: &Caller<'_>) -> Self {
        let kind = match caller.identity {
            Identity::Open => CallerKind::Open,
            Identity::User { sub, admin } => CallerKind::User {
                sub: sub.to_string(),
                admin: *admin,
            },
            Identity::AdminToken => CallerKind::AdminToken,
        };
        GqlCaller {
            kind,
            peer: caller.peer,
        }
    }

    /// The identity on the shard thread.
    pub fn identity(&self) -> Identity {
        match &self.kind {
            CallerKind::Open => Identity::Open,
            CallerKind::User { sub, admin } => Identity::User {
                sub: sub.as_str().into(),
                admin: *admin,
            },
            CallerKind::AdminToken => Identity::AdminToken,
        }
    }
}

/// Builds the schema with the configured limits.
pub fn build(config: &Config) -> AtlasSchema {
    schema::build(
        config.graphql_introspection,
        config.graphql_max_depth,
        config.graphql_max_complexity,
    )
}

/// Handles `/graphql`: the prepared path when it runs the document ([`prepared`]), else
/// async-graphql.
pub async fn handle(shard: &Rc<Shard>, request: &Request, caller: &Caller<'_>) -> Response {
    let graphql_response = request
        .header("accept")
        .and_then(|a| std::str::from_utf8(a).ok())
        .is_some_and(|a| a.contains(GRAPHQL_RESPONSE));
    if let Some(response) = prepared::answer(shard, request, caller, graphql_response).await {
        return response;
    }
    match general(shard, request, caller, graphql_response).await {
        Served::Prepared(response) => response,
        Served::General(response) => {
            if shard.core.config.enable_prometheus {
                shard
                    .metrics
                    .borrow_mut()
                    .record_graphql(crate::metrics::GraphqlPath::General);
            }
            response
        }
    }
}

/// Which path answered a request [`general`] took.
enum Served {
    /// The prepared path (a document validated by the dry run).
    Prepared(Response),
    /// async-graphql, or a refusal before it.
    General(Response),
}

/// A request the prepared path did not answer: refused, or run on async-graphql. A valid
/// document the prepared path has not seen and could run is validated here by a dry run (no
/// resolver runs) and then answered by the prepared path after all.
async fn general(
    shard: &Rc<Shard>,
    request: &Request,
    caller: &Caller<'_>,
    graphql_response: bool,
) -> Served {
    SHARD.with(|s| {
        if s.borrow().strong_count() == 0 {
            *s.borrow_mut() = Rc::downgrade(shard);
        }
    });
    let is_get = matches!(request.method(), Method::Get | Method::Head);
    let mut gql = match read_request(request, is_get) {
        Ok(r) => r,
        Err(message) => {
            return Served::General(refused(Status::BadRequest, &message, graphql_response))
        }
    };
    let was_cached = parse_cached(&mut gql);
    // Checks that need the parsed document (parse errors themselves are left to the executor,
    // which reports them in the spec's shape).
    let operation = gql.operation_name.clone();
    let mut only_introspects = false;
    if let Ok(doc) = gql.parsed_query() {
        if is_get && has_mutation(doc, operation.as_deref()) {
            let refusal = refused(
                Status::MethodNotAllowed,
                "mutations are sent with POST",
                graphql_response,
            );
            return Served::General(refusal.header("Allow", "POST"));
        }
        let roots = root_names(doc, operation.as_deref());
        let introspects = roots.iter().any(|n| *n == "__schema" || *n == "__type");
        only_introspects = introspects && roots.iter().all(|n| n.starts_with("__"));
        if !shard.core.config.graphql_introspection && introspects {
            return Served::General(request_error(
                "introspection is disabled (ATLAS_GRAPHQL_INTROSPECTION); `atlas graphql-schema` prints the schema",
                graphql_response,
            ));
        }
        let fields = roots.len();
        let max = shard.core.config.graphql_max_fields;
        if fields > max {
            let message =
                format!("the operation selects {fields} top-level fields; at most {max} (ATLAS_GRAPHQL_MAX_FIELDS)");
            return Served::General(request_error(&message, graphql_response));
        }
    }
    // A document the prepared path has not decided about yet (kept with its decision once it
    // passed validation).
    let unseen = if prepared::knows(&gql.query, operation.as_deref()) {
        None
    } else {
        let query = gql.query.clone();
        gql.parsed_query().ok().map(|doc| (query, doc.clone()))
    };
    let fresh = if was_cached || gql.query.len() > DOC_MAX_LEN {
        None
    } else {
        unseen.clone()
    };
    // A document that only introspects (what GraphQL clients send to load the schema) gets
    // limits that fit the standard introspection queries; every other document the
    // configured ones.
    let schema = if only_introspects && shard.core.config.graphql_introspection {
        INTROSPECTION.with(|s| s.get_or_init(schema::build_introspection).clone())
    } else {
        SCHEMA.with(|s| s.get_or_init(|| build(&shard.core.config)).clone())
    };
    if let Some((query, doc)) = &unseen {
        if let Some(plan) = prepared::plan(doc, operation.as_deref()) {
            let mut dry = async_graphql::Request::new(query.clone())
                .variables(gql.variables.clone())
                .data(GqlCaller::new(caller))
                .data(DryRun);
            dry.operation_name = operation.clone();
            dry.set_parsed_query(doc.clone());
            let checked = schema.execute(dry).await;
            if request_failed(&checked) {
                return Served::General(request_errors(&checked, graphql_response));
            }
            if let Some((query, doc)) = fresh {
                keep_parsed(query, doc);
            }
            prepared::learn(query, operation.as_deref(), Some(plan));
            if let Some(response) = prepared::answer(shard, request, caller, graphql_response).await
            {
                return Served::Prepared(response);
            }
            // Values the prepared path leaves to async-graphql.
            return Served::General(execute(&schema, gql, caller, graphql_response).await);
        }
    }
    let query = gql.query.clone();
    let answer = schema.execute(gql.data(GqlCaller::new(caller))).await;
    if !request_failed(&answer) {
        if let Some((query, doc)) = fresh {
            keep_parsed(query, doc);
        }
        if let Some((query, _)) = &unseen {
            prepared::learn(query, operation.as_deref(), None);
        }
    }
    Served::General(respond_answer(
        answer,
        &query,
        operation.as_deref(),
        graphql_response,
    ))
}

/// Marks a dry run: the operation fields' resolvers answer null at once (the document and
/// its arguments are still parsed and validated).
pub(super) struct DryRun;

/// Runs `gql` on async-graphql.
async fn execute(
    schema: &AtlasSchema,
    gql: async_graphql::Request,
    caller: &Caller<'_>,
    graphql_response: bool,
) -> Response {
    let query = gql.query.clone();
    let operation = gql.operation_name.clone();
    let answer = schema.execute(gql.data(GqlCaller::new(caller))).await;
    respond_answer(answer, &query, operation.as_deref(), graphql_response)
}

/// Whether async-graphql refused the request as a whole (parse, validation, variables).
fn request_failed(answer: &async_graphql::Response) -> bool {
    answer.data == async_graphql::Value::Null
        && !answer.errors.is_empty()
        && answer.errors.iter().all(|e| e.path.is_empty())
}

/// The errors of a request refused as a whole: 200, or 400 for GraphQL-over-HTTP clients.
fn request_errors(answer: &async_graphql::Response, graphql_response: bool) -> Response {
    let status = if graphql_response {
        Status::BadRequest
    } else {
        Status::Ok
    };
    respond(status, &Answer::errors(&answer.errors), graphql_response)
}

/// async-graphql's answer to document `query` as the HTTP response.
fn respond_answer(
    mut answer: async_graphql::Response,
    query: &str,
    operation: Option<&str>,
    graphql_response: bool,
) -> Response {
    if request_failed(&answer) {
        return request_errors(&answer, graphql_response);
    }
    nulls::place(&mut answer, query, operation);
    let retry_after = all_rate_limited(&answer);
    let response = respond(Status::Ok, &Answer::data(&answer), graphql_response);
    match retry_after {
        Some(s) => response.header("Retry-After", s.to_string()),
        None => response,
    }
}

/// The GraphQL response body, serialised straight from async-graphql's values.
#[derive(serde::Serialize)]
struct Answer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [async_graphql::ServerError],
}

impl<'a> Answer<'a> {
    fn data(r: &'a async_graphql::Response) -> Self {
        Answer {
            data: Some(&r.data),
            errors: &r.errors,
        }
    }

    fn errors(errors: &'a [async_graphql::ServerError]) -> Self {
        Answer { data: None, errors }
    }
}

/// When every top-level field of the answer is null because a rate limit refused it: the
/// longest of their `retryAfterS` (at least 1), for the response's `Retry-After`.
fn all_rate_limited(answer: &async_graphql::Response) -> Option<u64> {
    let async_graphql::Value::Object(fields) = &answer.data else {
        return None;
    };
    if fields.is_empty() {
        return None;
    }
    let mut longest = 1;
    for (name, value) in fields {
        if *value != async_graphql::Value::Null {
            return None;
        }
        let limited = answer.errors.iter().find(|e| {
            matches!(e.path.first(), Some(async_graphql::PathSegment::Field(f)) if f == name.as_str())
                && extension(e, "code")
                    == Some(&async_graphql::Value::String(bridge::RATE_LIMITED.into()))
        })?;
        if let Some(async_graphql::Value::Number(n)) = extension(limited, "retryAfterS") {
            longest = longest.max(n.as_u64().unwrap_or(1));
        }
    }
    Some(longest)
}

fn extension<'e>(
    e: &'e async_graphql::ServerError,
    name: &str,
) -> Option<&'e async_graphql::Value> {
    e.extensions.as_ref().and_then(|x| x.get(name))
}

/// A request error detected before execution, in the spec's shape.
fn request_error(message: &str, graphql_response: bool) -> Response {
    let status = if graphql_response {
        Status::BadRequest
    } else {
        Status::Ok
    };
    respond(
        status,
        &json!({"errors": [{"message": message}]}),
        graphql_response,
    )
}

/// A request that is not a well-formed GraphQL-over-HTTP request.
fn refused(status: Status, message: &str, graphql_response: bool) -> Response {
    respond(
        status,
        &json!({"errors": [{"message": message}]}),
        graphql_response,
    )
}

fn respond(status: Status, body: &impl serde::Serialize, graphql_response: bool) -> Response {
    respond_bytes(
        status,
        serde_json::to_vec(body).unwrap_or_default(),
        graphql_response,
    )
}

fn respond_bytes(status: Status, bytes: Vec<u8>, graphql_response: bool) -> Response {
    if graphql_response {
        Response::text(status, GRAPHQL_RESPONSE, bytes)
    } else {
        Response::json(status, bytes)
    }
}

//! `POST /graphql` and `GET /graphql?query=`: GraphQL over the same pipeline as the REST
//! routes. Every field is answered by the REST handler of its route (`crate::ai::handle` for
//! the four operations, `ai::context`, `ai::invalidation`, `ai::events`, the performance
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
mod inputs;
mod nulls;
mod operation;
mod outputs;
mod prepared;
pub mod schema;

use std::cell::{OnceCell, RefCell};
use std::rc::{Rc, Weak};

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use serde_json::json;

use crate::auth::{Caller, Identity};
use crate::config::Config;
use crate::http::{Method, Request, Response, Status};
use crate::runtime::shard::Shard;

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
    /// This thread's parsed documents by query text: parsing is the largest single cost of a
    /// small request (validation still runs on every request). Bounded: see [`DOCS_MAX`].
    static DOCS: RefCell<ahash::AHashMap<String, ExecutableDocument>> = RefCell::new(Default::default());
}

/// Most documents a shard keeps parsed (the set is emptied when full: clients send a handful
/// of distinct documents, so it refills with the live ones).
const DOCS_MAX: usize = 256;
/// Longest query text whose parsed document is kept.
const DOC_MAX_LEN: usize = 8 * 1024;
/// Most query text, summed, whose parsed documents a shard keeps (a parsed document is a
/// small multiple of its text; with [`DOCS_MAX`] this bounds the cache's memory).
const DOCS_TEXT_MAX: usize = 128 * 1024;

/// Gives `gql` its parsed document from this thread's cache; answers whether it was there.
fn parse_cached(gql: &mut async_graphql::Request) -> bool {
    if gql.query.len() > DOC_MAX_LEN {
        return false;
    }
    let cached = DOCS.with(|d| d.borrow().get(&gql.query).cloned());
    match cached {
        Some(doc) => {
            gql.set_parsed_query(doc);
            true
        }
        None => false,
    }
}

/// Keeps a document that parsed and passed validation and Atlas's own checks (a refused
/// document is never kept, so refusals cannot fill the cache).
fn keep_parsed(query: String, doc: ExecutableDocument) {
    if query.len() > DOC_MAX_LEN {
        return;
    }
    DOCS.with(|d| {
        let mut d = d.borrow_mut();
        let text: usize = d.keys().map(String::len).sum();
        if d.len() >= DOCS_MAX || text + query.len() > DOCS_TEXT_MAX {
            d.clear();
        }
        d.insert(query, doc);
    });
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
            if shard.config.enable_prometheus {
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
        if !shard.config.graphql_introspection && introspects {
            return Served::General(request_error(
                "introspection is disabled (ATLAS_GRAPHQL_INTROSPECTION); `atlas graphql-schema` prints the schema",
                graphql_response,
            ));
        }
        let fields = roots.len();
        let max = shard.config.graphql_max_fields;
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
    let schema = if only_introspects && shard.config.graphql_introspection {
        INTROSPECTION.with(|s| s.get_or_init(schema::build_introspection).clone())
    } else {
        SCHEMA.with(|s| s.get_or_init(|| build(&shard.config)).clone())
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

/// The GraphQL request of a POST body (`{"query", "variables", "operationName"}`) or a GET
/// query string.
fn read_request(request: &Request, is_get: bool) -> Result<async_graphql::Request, String> {
    if is_get {
        let (gql_query, variables, operation) = query_params(request)?;
        let query = gql_query
            .filter(|q| !q.is_empty())
            .ok_or("missing or empty `query` parameter")?;
        let mut gql = async_graphql::Request::new(query);
        if let Some(v) = variables.filter(|v| !v.is_empty()) {
            let variables: async_graphql::Variables = serde_json::from_str(&v)
                .map_err(|e| format!("`variables` is not a JSON object: {e}"))?;
            gql = gql.variables(variables);
        }
        if let Some(op) = operation.filter(|o| !o.is_empty()) {
            gql = gql.operation_name(op);
        }
        Ok(gql)
    } else {
        // The media types REST reads as JSON (`application/json`, `*/*+json`, and what
        // `curl -d` sends); anything else is not a GraphQL-over-HTTP request.
        if let Some(ct) = request.header("content-type") {
            let ct = String::from_utf8_lossy(ct);
            if !crate::ai::request::json_compatible(&ct) {
                return Err(format!(
                    "the body must be application/json, not `{}`",
                    crate::error::truncate(&ct, 64)
                ));
            }
        }
        if !crate::ai::request::starts_object(&request.body) {
            return Err(
                "the body is not a GraphQL request (a JSON object with a `query` string)".into(),
            );
        }
        // Read straight into async-graphql's request (its variables into its own values).
        let gql: async_graphql::Request = serde_json::from_slice(&request.body).map_err(|e| {
            format!("the body is not a GraphQL request (JSON with a `query` string): {e}")
        })?;
        if gql.query.is_empty() {
            return Err("the body has no `query` string".into());
        }
        Ok(gql)
    }
}

/// `query`, `variables` and `operationName` of a GET request's query string, decoded.
#[allow(clippy::type_complexity)]
fn query_params(
    request: &Request,
) -> Result<(Option<String>, Option<String>, Option<String>), String> {
    let query = request.query().unwrap_or_default();
    let mut gql_query = None;
    let mut variables = None;
    let mut operation = None;
    for pair in query.split(|b| *b == b'&') {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let value = form_decode(value).ok_or("the query string is not valid UTF-8")?;
        match name {
            b"query" => gql_query = Some(value),
            b"variables" => variables = Some(value),
            b"operationName" => operation = Some(value),
            _ => {}
        }
    }
    Ok((gql_query, variables, operation))
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space).
fn form_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a user id for a `/ai/context/{user_id}` path.
pub(crate) fn path_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The operation the request runs (the named one, or the only one).
pub(super) fn chosen<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d async_graphql::parser::types::OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| &op.node),
        // The spec's GetOperation: without a name, the document's only operation (a named
        // one, like the standard `query IntrospectionQuery`, parses as `Multiple`).
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

fn has_mutation(doc: &ExecutableDocument, name: Option<&str>) -> bool {
    chosen(doc, name)
        .is_some_and(|op| op.ty == async_graphql::parser::types::OperationType::Mutation)
}

/// The names of the root fields the chosen operation selects, through fragments (each one
/// pipeline request, counted against `ATLAS_GRAPHQL_MAX_FIELDS`). A document
/// that asks for `__schema` or `__type` introspects (async-graphql answers them with null
/// when introspection is off; Atlas refuses the request instead).
fn root_names<'d>(doc: &'d ExecutableDocument, name: Option<&str>) -> Vec<&'d str> {
    let mut names = Vec::new();
    if let Some(op) = chosen(doc, name) {
        collect(doc, &op.selection_set.node, 0, &mut names);
    }
    names
}

/// The names of the fields of `set`, through fragments (at most 8 fragments deep; deeper or
/// cyclic fragments are left to validation).
fn collect<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    depth: usize,
    out: &mut Vec<&'d str>,
) {
    if depth > 8 {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => out.push(f.node.name.node.as_str()),
            Selection::InlineFragment(f) => {
                collect(doc, &f.node.selection_set.node, depth + 1, out)
            }
            Selection::FragmentSpread(s) => {
                if let Some(f) = doc.fragments.get(&s.node.fragment_name.node) {
                    collect(doc, &f.node.selection_set.node, depth + 1, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_decode() {
        assert_eq!(form_decode(b"a+b%7Bc%7D").as_deref(), Some("a b{c}"));
        assert_eq!(form_decode(b"%zz"), None);
        assert_eq!(path_encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn counts_top_level_fields_through_fragments() {
        let doc = async_graphql::parser::parse_query(
            "query { a b ...F ... on Query { c } } fragment F on Query { d e }",
        )
        .unwrap();
        assert_eq!(root_names(&doc, None).len(), 5);
    }

    #[test]
    fn a_lone_named_operation_is_the_one_that_runs() {
        // Named operations parse as `Multiple`: without an operation name the only one runs,
        // so its fields are counted and its introspection seen (the limits apply to it).
        let doc = async_graphql::parser::parse_query("query Q { a: __typename b { c } }").unwrap();
        assert_eq!(root_names(&doc, None).len(), 2);
        assert_eq!(root_names(&doc, None), ["__typename", "b"]);
        let doc = async_graphql::parser::parse_query("query IntrospectionQuery { __schema { t } }")
            .unwrap();
        assert_eq!(root_names(&doc, None), ["__schema"]);
        // Two operations and no name: none is chosen (execution reports it).
        let doc = async_graphql::parser::parse_query("query A { a } query B { b }").unwrap();
        assert_eq!(root_names(&doc, None).len(), 0);
        assert_eq!(root_names(&doc, Some("B")).len(), 1);
    }

    #[test]
    fn kept_documents_are_given_back_and_the_cache_is_bounded() {
        let mut a = async_graphql::Request::new("{ a }");
        assert!(!parse_cached(&mut a));
        keep_parsed(a.query.clone(), a.parsed_query().unwrap().clone());
        let mut b = async_graphql::Request::new("{ a }");
        assert!(parse_cached(&mut b));
        assert_eq!(root_names(b.parsed_query().unwrap(), None).len(), 1);
        // Too long to keep.
        let long = format!("{{ a {} }}", " ".repeat(DOC_MAX_LEN));
        let mut l = async_graphql::Request::new(long.clone());
        keep_parsed(long, l.parsed_query().unwrap().clone());
        assert!(!parse_cached(&mut l));
        // The text budget empties the set rather than exceed it.
        for i in 0..40 {
            let q = format!("{{ a{i} {} }}", " ".repeat(7 * 1024));
            let doc = async_graphql::parser::parse_query(&q).unwrap();
            keep_parsed(q, doc);
            let text: usize = DOCS.with(|d| d.borrow().keys().map(String::len).sum());
            assert!(text <= DOCS_TEXT_MAX);
        }
    }
}

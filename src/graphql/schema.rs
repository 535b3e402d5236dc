//! The GraphQL schema: one query field per AI operation, `context`, `performance` (admins),
//! and the mutations `setContext`, `deleteContext`, `invalidate`, `publishEvent`. Each field
//! builds the body its REST route takes and runs that route's handler on this shard
//! ([`on_shard`]); the answer is mapped back: a 200 body into the field's value, an error body
//! (`{"error": {"code", "message"}}`) into a GraphQL error with `extensions { code, status }`.
//!
//! Typed: the operation envelopes (`userId`, `priority`, `cache`, `dependencies`,
//! `useContext`), the result envelope and its `meta`, the stored context. JSON (the `JSON`
//! scalar): each operation's `input` and `result` (the REST schemas in `/openapi.json`),
//! the context object, the invalidation and event bodies and their answers, `performance`.

use async_graphql::{
    Context, EmptySubscription, Enum, Error, ErrorExtensions, InputObject, Json, Object, Result,
    Schema, SimpleObject,
};
use serde_json::{json, Map, Value};

use atlas_shard::Operation;

use super::{current_shard, path_encode, GqlCaller};
use crate::auth::Caller;
use crate::http::parse::{parse_head, Limits, Parsed};
use crate::http::{Request, Response};

/// The schema type.
pub type AtlasSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema with its limits.
pub fn build(introspection: bool, depth: usize, complexity: usize) -> AtlasSchema {
    let builder = Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(depth)
        .limit_complexity(complexity);
    let builder = if introspection {
        builder
    } else {
        builder.disable_introspection()
    };
    builder.finish()
}

/// The schema in SDL (what `atlas graphql-schema` prints; kept in `src/graphql/schema.graphql`).
pub fn sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription)
        .finish()
        .sdl()
}

/// Queries.
pub struct Query;
/// Mutations.
pub struct Mutation;

/// Scheduling priority (`priority` of the REST body).
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Priority {
    /// Skips the batching window.
    High,
    /// The default.
    Normal,
    /// Shed first under load.
    Low,
}

/// Cache mode (`cache.mode` of the REST body).
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum CacheMode {
    /// Look up; on a miss compute once, then store.
    Default,
    /// Skip the lookup, store the fresh result.
    NoCache,
    /// Skip the lookup, store nothing.
    NoStore,
    /// Recompute and replace.
    Refresh,
}

/// `cache` of the REST body.
#[derive(InputObject)]
pub struct CacheOptions {
    /// How the cache is used.
    mode: Option<CacheMode>,
    /// Shortens the TTL; an older cached result is not served.
    ttl_s: Option<u64>,
}

/// How the result was obtained (the REST `X-Atlas-*` headers).
#[derive(SimpleObject)]
pub struct Meta {
    /// `hit`, `miss`, `stale` or `bypass`.
    cache: String,
    /// The shard that owns the key.
    shard: i32,
    /// Time in Atlas for this field, in milliseconds.
    total_ms: f64,
    /// Requests in the batch that computed the result (0 for hits).
    batch_size: i32,
    /// `embedded`, a remote endpoint's name, or `cache`.
    endpoint: String,
    /// With `useContext`: the version of the stored context that was merged.
    context_version: Option<i64>,
}

/// The answer of an AI operation (the REST body, plus `meta`).
#[derive(SimpleObject)]
pub struct AiResult {
    /// The operation's name.
    operation: String,
    /// The operation's result (schemas in `/openapi.json`).
    result: Json<Value>,
    /// The model's confidence, 0 to 1.
    confidence: Option<f64>,
    /// The model version that computed it.
    model_version: Option<String>,
    /// Cache and batch metadata.
    meta: Meta,
}

/// A user's stored context.
#[derive(SimpleObject)]
pub struct StoredContext {
    /// The user.
    user_id: String,
    /// The stored object, keys sorted.
    context: Json<Value>,
    /// 1 for a new context, one more with each replacement.
    version: i64,
    /// Seconds until it expires.
    expires_in_s: f64,
}

/// A call to a REST route's handler, run on this shard.
struct Call {
    method: &'static str,
    path: String,
    body: Vec<u8>,
    /// Refused with `admin_required` unless the caller is an admin.
    admin: bool,
}

/// Runs `call` on this shard's executor and awaits its response (a `Send` future: the shard
/// is only touched inside the spawned local task).
async fn on_shard(ctx: &Context<'_>, call: Call) -> Result<Response> {
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
async fn run(
    shard: &std::rc::Rc<crate::runtime::shard::Shard>,
    call: Call,
    caller: &GqlCaller,
) -> Response {
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
    let raw = format!(
        "{} {} HTTP/1.1\r\nHost: graphql\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        call.method,
        call.path,
        call.body.len()
    );
    let head = match parse_head(raw.as_bytes(), &Limits::default()) {
        Ok(Parsed::Done(head)) => head,
        Ok(Parsed::Incomplete) | Err(_) => {
            return crate::error::ApiError::new(
                crate::http::Status::BadRequest,
                "invalid_request",
                "the field's arguments do not make a valid request",
            )
            .to_response()
        }
    };
    let request = Request {
        head,
        raw: bytes::Bytes::from(raw),
        body: bytes::Bytes::from(call.body),
    };
    let route =
        match crate::router::resolve(&shard.app, request.method(), request.path(), call.method) {
            Ok(route) => route,
            Err(e) => return e.to_response(),
        };
    crate::router::run_route(shard, route, &request, &caller).await
}

/// The response as a field value, or its error as a GraphQL error.
fn answer(response: Response) -> Result<Value> {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if response.status.code() < 300 {
        return Ok(body);
    }
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or("internal")
        .to_string();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("the request failed")
        .to_string();
    let status = response.status.code();
    Err(Error::new(message).extend_with(|_, e| {
        e.set("code", code.as_str());
        e.set("status", status);
    }))
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// The arguments every operation field takes, as the REST body.
#[allow(clippy::too_many_arguments)]
async fn operation(
    ctx: &Context<'_>,
    op: Operation,
    user_id: String,
    input: Option<Json<Value>>,
    priority: Option<Priority>,
    cache: Option<CacheOptions>,
    dependencies: Option<Vec<String>>,
    use_context: Option<bool>,
) -> Result<Option<AiResult>> {
    let mut body = Map::new();
    body.insert("user_id".into(), Value::String(user_id));
    if let Some(Json(input)) = input {
        body.insert("input".into(), input);
    }
    if let Some(p) = priority {
        let p = match p {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        };
        body.insert("priority".into(), Value::String(p.into()));
    }
    if let Some(c) = cache {
        let mut cache = Map::new();
        if let Some(m) = c.mode {
            let m = match m {
                CacheMode::Default => "default",
                CacheMode::NoCache => "no_cache",
                CacheMode::NoStore => "no_store",
                CacheMode::Refresh => "refresh",
            };
            cache.insert("mode".into(), Value::String(m.into()));
        }
        if let Some(t) = c.ttl_s {
            cache.insert("ttl_s".into(), json!(t));
        }
        body.insert("cache".into(), Value::Object(cache));
    }
    if let Some(d) = dependencies {
        body.insert("dependencies".into(), json!(d));
    }
    if let Some(u) = use_context {
        body.insert("use_context".into(), Value::Bool(u));
    }
    let call = Call {
        method: "POST",
        path: format!("/ai/{}", op.as_str()),
        body: serde_json::to_vec(&body)?,
        admin: false,
    };
    let response = on_shard(ctx, call).await?;
    let meta = Meta {
        cache: header(&response, "X-Atlas-Cache").unwrap_or("").to_string(),
        shard: header(&response, "X-Atlas-Owner")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1),
        total_ms: header(&response, "X-Atlas-Total-Ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        batch_size: header(&response, "X-Atlas-Batch-Size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        endpoint: header(&response, "X-Atlas-Endpoint")
            .unwrap_or("")
            .to_string(),
        context_version: header(&response, "X-Atlas-Context-Version").and_then(|v| v.parse().ok()),
    };
    let mut body = answer(response)?;
    Ok(Some(AiResult {
        operation: body["operation"]
            .as_str()
            .unwrap_or(op.as_str())
            .to_string(),
        result: Json(body["result"].take()),
        confidence: body["confidence"].as_f64(),
        model_version: body["model_version"].as_str().map(str::to_string),
        meta,
    }))
}

#[Object]
impl Query {
    /// `POST /ai/portfolio_analysis`.
    #[allow(clippy::too_many_arguments)]
    async fn portfolio_analysis(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<AiResult>> {
        let op = Operation::PortfolioAnalysis;
        operation(
            ctx,
            op,
            user_id,
            input,
            priority,
            cache,
            dependencies,
            use_context,
        )
        .await
    }

    /// `POST /ai/budget_optimization`.
    #[allow(clippy::too_many_arguments)]
    async fn budget_optimization(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<AiResult>> {
        let op = Operation::BudgetOptimization;
        operation(
            ctx,
            op,
            user_id,
            input,
            priority,
            cache,
            dependencies,
            use_context,
        )
        .await
    }

    /// `POST /ai/risk_assessment`.
    #[allow(clippy::too_many_arguments)]
    async fn risk_assessment(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<AiResult>> {
        let op = Operation::RiskAssessment;
        operation(
            ctx,
            op,
            user_id,
            input,
            priority,
            cache,
            dependencies,
            use_context,
        )
        .await
    }

    /// `POST /ai/cashflow_forecast`.
    #[allow(clippy::too_many_arguments)]
    async fn cashflow_forecast(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<AiResult>> {
        let op = Operation::CashflowForecast;
        operation(
            ctx,
            op,
            user_id,
            input,
            priority,
            cache,
            dependencies,
            use_context,
        )
        .await
    }

    /// `GET /ai/context/{user_id}`: the stored context, or null when none is stored.
    async fn context(&self, ctx: &Context<'_>, user_id: String) -> Result<Option<StoredContext>> {
        let call = Call {
            method: "GET",
            path: format!("/ai/context/{}", path_encode(&user_id)),
            body: Vec::new(),
            admin: false,
        };
        let response = on_shard(ctx, call).await?;
        if response.status.code() == 404 {
            return Ok(None);
        }
        let mut body = answer(response)?;
        Ok(Some(StoredContext {
            user_id: body["user_id"].as_str().unwrap_or(&user_id).to_string(),
            context: Json(body["context"].take()),
            version: body["version"].as_i64().unwrap_or(0),
            expires_in_s: body["expires_in_s"].as_f64().unwrap_or(0.0),
        }))
    }

    /// `GET /ai/admin/performance` (admins only): the monitor's performance document.
    async fn performance(&self, ctx: &Context<'_>) -> Result<Option<Json<Value>>> {
        let call = Call {
            method: "GET",
            path: "/ai/admin/performance".into(),
            body: Vec::new(),
            admin: true,
        };
        answer(on_shard(ctx, call).await?).map(|v| Some(Json(v)))
    }
}

#[Object]
impl Mutation {
    /// `PUT /ai/context/{user_id}`: stores or replaces the user's context; answers the REST
    /// body (`version`, `expires_in_s`, `removed`, ...).
    async fn set_context(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        context: Json<Value>,
    ) -> Result<Option<Json<Value>>> {
        let call = Call {
            method: "PUT",
            path: format!("/ai/context/{}", path_encode(&user_id)),
            body: serde_json::to_vec(&context.0)?,
            admin: false,
        };
        answer(on_shard(ctx, call).await?).map(|v| Some(Json(v)))
    }

    /// `DELETE /ai/context/{user_id}`; answers the REST body.
    async fn delete_context(
        &self,
        ctx: &Context<'_>,
        user_id: String,
    ) -> Result<Option<Json<Value>>> {
        let call = Call {
            method: "DELETE",
            path: format!("/ai/context/{}", path_encode(&user_id)),
            body: Vec::new(),
            admin: false,
        };
        answer(on_shard(ctx, call).await?).map(|v| Some(Json(v)))
    }

    /// `POST /ai/cache/invalidate` (admins only) with `selectors` as the body; answers the
    /// REST body (`removed`, `shards`, `unreachable`).
    async fn invalidate(
        &self,
        ctx: &Context<'_>,
        selectors: Json<Value>,
    ) -> Result<Option<Json<Value>>> {
        let call = Call {
            method: "POST",
            path: "/ai/cache/invalidate".into(),
            body: serde_json::to_vec(&selectors.0)?,
            admin: true,
        };
        answer(on_shard(ctx, call).await?).map(|v| Some(Json(v)))
    }

    /// `POST /ai/events` (admins only) with `event` as the body; answers the REST body.
    async fn publish_event(
        &self,
        ctx: &Context<'_>,
        event: Json<Value>,
    ) -> Result<Option<Json<Value>>> {
        let call = Call {
            method: "POST",
            path: "/ai/events".into(),
            body: serde_json::to_vec(&event.0)?,
            admin: true,
        };
        answer(on_shard(ctx, call).await?).map(|v| Some(Json(v)))
    }
}

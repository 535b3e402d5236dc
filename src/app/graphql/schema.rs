//! The GraphQL schema: one query field per AI operation, `context`, `performance` (admins),
//! and the mutations `setContext`, `deleteContext`, `invalidate`, `publishEvent`. Each field
//! builds the body its REST route takes and runs that route's handler on this shard
//! ([`super::bridge`]; the operations through [`super::operation`]); the answer is mapped back: a 200 body into the field's value, an error body
//! (`{"error": {"code", "message"}}`) into a GraphQL error with `extensions { code, status }`.
//!
//! Typed: each operation's input ([`inputs`](super::inputs)) and result
//! ([`outputs`](super::outputs)), the envelopes (`userId`, `priority`, `cache`,
//! `dependencies`, `useContext`), `meta`, the stored context. JSON (the `JSON` scalar): the
//! escape hatches `inputJson` and `resultJson` (the REST objects as they are), the context
//! object, the invalidation and event bodies and their answers, `performance`.

use async_graphql::{
    Context, EmptySubscription, Enum, InputObject, Json, Object, Result, Schema, SimpleObject,
};
use serde_json::Value;

use atlas_shard::Operation;

use super::bridge::{answer, on_shard, Call};
use super::operation::{
    operation, BudgetOptimization, CashflowForecast, Envelope, PortfolioAnalysis, RiskAssessment,
};
use super::{inputs, path_encode};

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

/// Deepest nesting of a document that only introspects (`__schema`, `__type`, `__typename` at
/// its root): the standard introspection query of graphql-js, graphql-core, Apollo and
/// GraphiQL nests `ofType` to depth 13, some clients a few levels more.
pub const INTROSPECTION_MAX_DEPTH: usize = 32;

/// Highest complexity of a document that only introspects (the full standard query with
/// descriptions counts a few hundred).
pub const INTROSPECTION_MAX_COMPLEXITY: usize = 5_000;

/// The schema that answers documents which only introspect, when introspection is on: the
/// same types, with limits that fit the standard introspection queries. Documents that
/// select any other field run on [`build`]'s schema and its configured limits.
pub fn build_introspection() -> AtlasSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(INTROSPECTION_MAX_DEPTH)
        .limit_complexity(INTROSPECTION_MAX_COMPLEXITY)
        .finish()
}

/// The schema in SDL (what `atlas graphql-schema` prints; kept in `src/app/graphql/schema.graphql`).
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

impl Priority {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
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

impl CacheMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CacheMode::Default => "default",
            CacheMode::NoCache => "no_cache",
            CacheMode::NoStore => "no_store",
            CacheMode::Refresh => "refresh",
        }
    }
}

/// `cache` of the REST body.
#[derive(InputObject)]
pub struct CacheOptions {
    /// How the cache is used.
    pub mode: Option<CacheMode>,
    /// Shortens the TTL; an older cached result is not served.
    pub ttl_s: Option<u64>,
}

/// How the result was obtained (the REST `X-Atlas-*` headers).
#[derive(SimpleObject)]
pub struct Meta {
    /// `hit`, `miss`, `stale` or `bypass`.
    pub(super) cache: String,
    /// The shard that owns the key.
    pub(super) shard: i32,
    /// Time in Atlas for this field, in milliseconds.
    pub(super) total_ms: f64,
    /// Requests in the batch that computed the result (0 for hits).
    pub(super) batch_size: i32,
    /// `embedded`, a remote endpoint's name, or `cache`.
    pub(super) endpoint: String,
    /// With `useContext`: the version of the stored context that was merged.
    pub(super) context_version: Option<i64>,
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

#[Object]
impl Query {
    /// `POST /ai/portfolio_analysis`: `input` typed, or `inputJson` as the REST `input` object (one
    /// of them, or neither with `useContext`).
    #[allow(clippy::too_many_arguments)]
    async fn portfolio_analysis(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<inputs::Portfolio>,
        input_json: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<PortfolioAnalysis>> {
        let envelope = Envelope {
            user_id,
            input_json,
            priority,
            cache,
            dependencies,
            use_context,
        };
        Ok(
            operation(ctx, Operation::PortfolioAnalysis, input, envelope)
                .await?
                .map(PortfolioAnalysis),
        )
    }

    /// `POST /ai/budget_optimization`: `input` typed, or `inputJson` as the REST `input` object (one
    /// of them, or neither with `useContext`).
    #[allow(clippy::too_many_arguments)]
    async fn budget_optimization(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<inputs::Budget>,
        input_json: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<BudgetOptimization>> {
        let envelope = Envelope {
            user_id,
            input_json,
            priority,
            cache,
            dependencies,
            use_context,
        };
        Ok(
            operation(ctx, Operation::BudgetOptimization, input, envelope)
                .await?
                .map(BudgetOptimization),
        )
    }

    /// `POST /ai/risk_assessment`: `input` typed, or `inputJson` as the REST `input` object (one
    /// of them, or neither with `useContext`).
    #[allow(clippy::too_many_arguments)]
    async fn risk_assessment(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<inputs::Risk>,
        input_json: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<RiskAssessment>> {
        let envelope = Envelope {
            user_id,
            input_json,
            priority,
            cache,
            dependencies,
            use_context,
        };
        Ok(operation(ctx, Operation::RiskAssessment, input, envelope)
            .await?
            .map(RiskAssessment))
    }

    /// `POST /ai/cashflow_forecast`: `input` typed, or `inputJson` as the REST `input` object (one
    /// of them, or neither with `useContext`).
    #[allow(clippy::too_many_arguments)]
    async fn cashflow_forecast(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        input: Option<inputs::Cashflow>,
        input_json: Option<Json<Value>>,
        priority: Option<Priority>,
        cache: Option<CacheOptions>,
        dependencies: Option<Vec<String>>,
        use_context: Option<bool>,
    ) -> Result<Option<CashflowForecast>> {
        let envelope = Envelope {
            user_id,
            input_json,
            priority,
            cache,
            dependencies,
            use_context,
        };
        Ok(operation(ctx, Operation::CashflowForecast, input, envelope)
            .await?
            .map(CashflowForecast))
    }

    /// `GET /ai/context/{user_id}`: the stored context, or null when none is stored.
    async fn context(&self, ctx: &Context<'_>, user_id: String) -> Result<Option<StoredContext>> {
        let call = Call {
            method: "GET",
            path: format!("/ai/context/{}", path_encode(&user_id)).into(),
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
            path: format!("/ai/context/{}", path_encode(&user_id)).into(),
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
            path: format!("/ai/context/{}", path_encode(&user_id)).into(),
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

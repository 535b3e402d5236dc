//! Routes: which handler a method and path go to ([`resolve`], before the body is read, so a
//! request for a missing route is refused without reading its body), and the handlers
//! ([`handle`]).
//!
//! Handlers return values (`Response`); errors become HTTP through `ApiError::to_response`.
//! Routes never touch sockets.

use std::rc::Rc;

use serde_json::json;

use atlas_shard::Operation;

pub use crate::ai::context::Method as ContextMethod;
use crate::error::ApiError;
use crate::http::{Method, Request, Response, Status};
use crate::runtime::shard::{App, Shard, ShardCall, ShardReply};

/// Every route Atlas serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`: liveness.
    Health,
    /// `GET /health/ready`: 200 once every shard listens, 503 before that and while draining.
    Ready,
    /// `GET /health/detailed`: per-shard counters gathered over the mesh.
    Detailed,
    /// `POST /ai/{operation}`: an AI operation through the owner shard's cache and batches.
    Ai(Operation),
    /// `GET /openapi.json`: the API description.
    OpenApi,
    /// `POST /v1/batch` on a model endpoint: the batch protocol.
    Batch,
    /// `GET /v1/info` on a model endpoint.
    Info,
    /// `GET /metrics`: Prometheus text format (when `ENABLE_PROMETHEUS` is true).
    Metrics,
    /// `GET /ai/admin/performance`: the monitor's performance document (from shard 0).
    Performance,
    /// `POST /ai/cache/invalidate`: drop cached results on every shard.
    Invalidate,
    /// `POST /ai/events`: domain events mapped to invalidations.
    Events,
    /// `PUT|GET|HEAD|DELETE /ai/context/{user_id}`: a user's stored context (the handler
    /// reads the user id from the path).
    Context(ContextMethod),
    /// `POST /graphql`, `GET|HEAD /graphql?query=`: GraphQL over the same handlers (admin
    /// fields are checked per field).
    GraphQl,
}

/// Who may call a route once authentication lands (the security issue enforces it; until then
/// every route is open, as README says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness, the API description; and, for now, the operator views
    /// `/health/detailed` and `/metrics` and the model tier's protocol, which are kept off
    /// public networks instead.
    Public,
    /// The user the request names (in its body or path), or an admin.
    User,
    /// Admins only: whole-cache operations and the performance document.
    Admin,
}

impl Route {
    /// Whether the handler may take long (a model computation, a remote call): the
    /// connection flushes earlier pipelined answers before running it.
    pub fn is_slow(self) -> bool {
        matches!(
            self,
            Route::Ai(_)
                | Route::Batch
                | Route::Detailed
                | Route::Metrics
                | Route::Performance
                | Route::Invalidate
                | Route::Events
                | Route::Context(_)
                | Route::GraphQl
        )
    }

    /// Who may call this route.
    pub fn access(self) -> Access {
        match self {
            Route::Invalidate | Route::Events | Route::Performance => Access::Admin,
            Route::Ai(_) | Route::Context(_) | Route::GraphQl => Access::User,
            Route::Health
            | Route::Ready
            | Route::Detailed
            | Route::OpenApi
            | Route::Batch
            | Route::Info
            | Route::Metrics => Access::Public,
        }
    }

    /// Whether only admins may call this route (`POST /ai/cache/invalidate`, `POST
    /// /ai/events`, `GET /ai/admin/performance`).
    pub fn requires_admin(self) -> bool {
        self.access() == Access::Admin
    }
}

/// Maps a method and path to a route of the shard's app: 404 for an unknown path, 405 (with
/// `Allow`) for a known path with the wrong method.
pub fn resolve(app: &App, method: Method, path: &str, method_str: &str) -> Result<Route, ApiError> {
    let read_only = |route| match method {
        Method::Get | Method::Head => Ok(route),
        _ => Err(ApiError::method_not_allowed(method_str, "GET, HEAD")),
    };
    let post_only = |route| match method {
        Method::Post => Ok(route),
        _ => Err(ApiError::method_not_allowed(method_str, "POST")),
    };
    match path {
        "/health" => return read_only(Route::Health),
        "/health/ready" => return read_only(Route::Ready),
        "/health/detailed" => return read_only(Route::Detailed),
        "/metrics" => return read_only(Route::Metrics),
        _ => {}
    }
    match app {
        App::Gateway(_) => match path {
            "/openapi.json" => read_only(Route::OpenApi),
            "/ai/admin/performance" => read_only(Route::Performance),
            "/ai/cache/invalidate" => post_only(Route::Invalidate),
            "/ai/events" => post_only(Route::Events),
            "/graphql" => match method {
                Method::Get | Method::Head | Method::Post => Ok(Route::GraphQl),
                _ => Err(ApiError::method_not_allowed(method_str, "GET, HEAD, POST")),
            },
            _ if path.starts_with("/ai/context/") => {
                let user = &path["/ai/context/".len()..];
                if user.is_empty() || user.contains('/') {
                    return Err(ApiError::not_found(path));
                }
                match method {
                    Method::Get | Method::Head => Ok(Route::Context(ContextMethod::Get)),
                    Method::Put => Ok(Route::Context(ContextMethod::Put)),
                    Method::Delete => Ok(Route::Context(ContextMethod::Delete)),
                    _ => Err(ApiError::method_not_allowed(
                        method_str,
                        "GET, HEAD, PUT, DELETE",
                    )),
                }
            }
            _ => match path.strip_prefix("/ai/") {
                Some(name) => {
                    let op = Operation::from_name(name).ok_or_else(|| unknown_operation(name))?;
                    post_only(Route::Ai(op))
                }
                None => Err(ApiError::not_found(path)),
            },
        },
        App::Model(_) => match path {
            "/v1/batch" => post_only(Route::Batch),
            "/v1/info" => read_only(Route::Info),
            _ => Err(ApiError::not_found(path)),
        },
    }
}

fn unknown_operation(name: &str) -> ApiError {
    let known: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
    ApiError::new(
        Status::NotFound,
        "unknown_operation",
        format!(
            "unknown operation `{}`; known: {}",
            crate::error::truncate(name, 64),
            known.join(", ")
        ),
    )
}

/// Authenticates the request (see `auth`) and runs the handler for `route`.
pub async fn handle(
    shard: &Rc<Shard>,
    route: Route,
    request: &Request,
    peer: Option<std::net::IpAddr>,
) -> Response {
    let identity = match shard.auth.authenticate(route, request, peer) {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    let caller = crate::auth::Caller {
        identity: &identity,
        peer,
    };
    run_route(shard, route, request, &caller).await
}

/// Runs the handler for `route` for an authenticated caller (also how `/graphql` fields
/// reach the REST handlers).
pub async fn run_route(
    shard: &Rc<Shard>,
    route: Route,
    request: &Request,
    caller: &crate::auth::Caller<'_>,
) -> Response {
    match route {
        Route::Health => Response::json(Status::Ok, shard.health_body.clone()),
        Route::Ready => ready(shard),
        Route::Detailed => detailed(shard).await,
        Route::Ai(op) => crate::ai::handle(shard, op, request, caller).await,
        Route::OpenApi => {
            Response::json(Status::Ok, crate::openapi::served(&shard.config.event_tags))
        }
        Route::Metrics => metrics(shard).await,
        Route::Performance => performance(shard).await,
        Route::Invalidate => crate::ai::invalidation::handle(shard, request).await,
        Route::Events => crate::ai::events::handle(shard, request).await,
        Route::Context(method) => crate::ai::context::handle(shard, method, request, caller).await,
        Route::GraphQl => crate::graphql::handle(shard, request, caller).await,
        Route::Batch | Route::Info => match &shard.app {
            App::Model(server) if route == Route::Batch => server.batch(shard, request).await,
            App::Model(server) => server.info(),
            App::Gateway(_) => ApiError::not_found(request.path()).to_response(),
        },
    }
}

async fn metrics(shard: &Rc<Shard>) -> Response {
    if !shard.config.enable_prometheus {
        return ApiError::new(
            Status::NotFound,
            "not_found",
            "metrics are disabled (ENABLE_PROMETHEUS=false)",
        )
        .to_response();
    }
    let snapshots = shard.collect_metrics().await;
    Response::text(
        Status::Ok,
        "text/plain; version=0.0.4; charset=utf-8",
        crate::metrics::render(&snapshots),
    )
}

/// The `redis` section of `/health/detailed`: totals and each shard's breaker.
fn redis_json(
    c: &crate::config::Config,
    shards: &[(usize, crate::l2::L2Figures)],
) -> serde_json::Value {
    if c.redis_urls.is_empty() {
        return json!({"configured": false});
    }
    let mut total = crate::l2::L2Figures::default();
    for (_, f) in shards {
        total.merge(f);
    }
    let open = shards
        .iter()
        .filter(|(_, f)| f.state == Some(atlas_shard::BreakerState::Open))
        .count();
    json!({
        "configured": true,
        "mode": if c.redis_cluster || c.redis_urls.len() > 1 { "cluster" } else { "node" },
        "status": if total.connected == 0 { "down" } else if open > 0 { "degraded" } else { "up" },
        "connections": total.connected,
        "timeout_ms": c.redis_timeout.as_millis() as u64,
        "hits": total.hits,
        "misses": total.misses,
        "errors": total.errors,
        "timeouts": total.timeouts,
        "corrupt": total.corrupt,
        "stale": total.stale,
        "skipped": total.skipped,
        "stores": total.stores,
        "stores_dropped": total.stores_dropped,
        "breakers": shards.iter().map(|(k, f)| json!({
            "shard": k,
            "state": f.state.map_or("closed", |s| s.as_str()),
        })).collect::<Vec<_>>(),
    })
}

/// The `rate_limits` section of `/health/detailed`: the limits, their counters, and with
/// Redis whether they are shared now or each shard fell back (as of its last try).
fn rate_json(
    c: &crate::config::Config,
    shards: &[(usize, crate::ratelimit::RateFigures)],
) -> serde_json::Value {
    let rl = &c.rate_limits;
    if !rl.is_on() {
        return json!({"enabled": false});
    }
    let mut total = crate::ratelimit::RateFigures::default();
    for (_, f) in shards {
        total.merge(f);
    }
    let rate = |r: Option<atlas_shard::Rate>| {
        r.map(|r| json!({"rps": r.per_second(), "burst": r.burst()}))
    };
    let redis = total.store.map(|store| {
        let fallback: Vec<usize> = shards
            .iter()
            .filter(|(_, f)| {
                f.store
                    .and_then(|s| s.state)
                    .is_some_and(|s| s != atlas_shard::BreakerState::Closed)
            })
            .map(|(k, _)| *k)
            .collect();
        json!({
            "failure_mode": rl.redis_failure.as_str(),
            "status": if fallback.is_empty() { "shared" } else { "fallback" },
            "fallback_shards": fallback,
            "takes": store.takes,
            "errors": store.errors,
            "skipped": store.skipped,
            "returns": store.returns,
            "fallbacks": total.fallbacks,
        })
    });
    json!({
        "enabled": true,
        "user": rate(rl.user()),
        "global": rate(rl.global()),
        "count_hits": rl.count_hits,
        "max_users": rl.max_users,
        "tracked_users": total.tracked_users,
        "untracked": total.untracked,
        "refused": {
            "user": total.refused_user,
            "global": total.refused_global,
            "unavailable": total.unavailable,
        },
        "redis": redis,
    })
}

async fn performance(shard: &Rc<Shard>) -> Response {
    let until = std::time::Instant::now() + crate::runtime::shard::BROADCAST_LIMIT;
    let reply = shard
        .mesh
        .call_until(0, ShardCall::Performance, until)
        .await;
    match reply {
        Ok(ShardReply::Performance(Some(doc))) => Response::json(Status::Ok, doc),
        Ok(_) => ApiError::new(
            Status::ServiceUnavailable,
            "monitor_unavailable",
            "the monitor is not running on shard 0",
        )
        .to_response(),
        Err(_) => ApiError::new(
            Status::ServiceUnavailable,
            "monitor_unavailable",
            "shard 0 (the monitor) did not answer in time",
        )
        .to_response()
        .header("Retry-After", "1"),
    }
}

fn ready(shard: &Shard) -> Response {
    let shards = shard.shared.shards;
    if shard.shared.is_ready() {
        Response::json(
            Status::Ok,
            format!("{{\"status\":\"ready\",\"shards\":{shards}}}"),
        )
    } else {
        let status = if shard.is_draining() {
            "draining"
        } else {
            "starting"
        };
        Response::json(
            Status::ServiceUnavailable,
            format!("{{\"status\":\"{status}\",\"shards\":{shards}}}"),
        )
    }
}

async fn detailed(shard: &Rc<Shard>) -> Response {
    // A shard that does not answer in time is reported unreachable, not waited for.
    let replies = shard
        .mesh
        .broadcast(|| ShardCall::Info, crate::runtime::shard::BROADCAST_LIMIT)
        .await;
    let mut shards = Vec::with_capacity(replies.len());
    let mut healthy = true;
    let mut monitor_summary = None;
    let mut l2 = Vec::new();
    let mut rate = Vec::new();
    for (k, reply) in replies.into_iter().enumerate() {
        match reply {
            Ok(ShardReply::Info(info)) => shards.push({
                if info.monitor.is_some() {
                    monitor_summary = info.monitor.clone();
                }
                if let Some(f) = &info.engine.l2 {
                    l2.push((info.shard, f.clone()));
                }
                if let Some(f) = &info.rate {
                    rate.push((info.shard, *f));
                }
                json!({
                "shard": info.shard,
                "cpu": info.cpu,
                "connections_open": info.connections_open,
                "connections_total": info.connections_total,
                "connections_rejected": info.connections_rejected,
                "requests_total": info.requests_total,
                "in_flight": info.in_flight,
                "model_computations": info.engine.computations,
                "model_batches": info.engine.batches,
                "refreshes": info.engine.refreshes,
                "queued": info.engine.queued,
                "cache": {
                    "entries": info.engine.cache_entries,
                    "bytes": info.engine.cache_bytes,
                    "hits": info.engine.cache.hits,
                    "stale_hits": info.engine.cache.stale_hits,
                    "misses": info.engine.cache.misses,
                    "inserts": info.engine.cache.inserts,
                    "evictions": info.engine.cache.evictions,
                    "invalidations": info.engine.cache.invalidations,
                },
                "request_memo": {
                    "entries": info.memo.entries,
                    "bytes": info.memo.bytes,
                    "max_bytes": info.memo.max_bytes,
                    "hits": info.memo.counters.hits,
                    "misses": info.memo.counters.misses,
                    "evictions": info.memo.counters.evictions,
                    "skipped": info.memo.counters.skipped,
                },
                "single_flight": {
                    "leaders": info.engine.flights.leaders,
                    "joins": info.engine.flights.joins,
                    "bypassed": info.engine.flights.bypassed,
                },
                "endpoints": info.engine.endpoints.iter().map(|e| json!({
                    "name": e.name,
                    "state": e.state.as_str(),
                    "state_gauge": e.state.as_gauge(),
                    "calls": e.calls,
                    "errors": e.errors,
                    "trips": e.trips,
                    "ewma_ms": e.ewma_ms,
                    "in_flight": e.in_flight,
                    "weight": e.weight,
                    "protocol": e.protocol,
                    "model": e.model,
                    "problem": e.problem,
                    "errors_by_reason": crate::endpoint::EndpointError::REASONS
                        .iter()
                        .zip(e.errors_by_reason)
                        .map(|(r, n)| (r.to_string(), json!(n)))
                        .collect::<serde_json::Map<_, _>>(),
                    "last_error": e.last_error,
                })).collect::<Vec<_>>(),
                })
            }),
            Ok(_) | Err(_) => {
                healthy = false;
                shards.push(json!({"shard": k, "status": "unreachable"}));
            }
        }
    }
    let monitor = monitor_summary.map(|m| {
        json!({
            "health_score": m.health_score,
            "alerts": m.active.iter().map(|(a, s)| json!({"alert": a, "severity": s.as_str()})).collect::<Vec<_>>(),
            "alert_events": m.events,
            "notifications": {
                "delivered": m.notifications.0,
                "failed": m.notifications.1,
                "dropped": m.notifications.2,
            },
        })
    });
    // The configuration in force: batch settings follow a SIGHUP reload.
    let live = shard.live_config();
    let c = &*live;
    let body = json!({
        "status": if healthy && shard.shared.is_ready() { "ok" } else { "degraded" },
        "monitor": monitor,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": shard.origin.elapsed().as_secs_f64(),
        "answered_by": shard.id,
        "limits": {
            "shards": shard.shared.shards,
            "max_connections": c.max_connections,
            "max_concurrent_requests": c.max_concurrent_requests,
            "max_body_bytes": c.max_body_bytes,
            "request_timeout_ms": c.request_timeout.as_millis() as u64,
            "batch_size": c.batch_size,
            "batch_timeout_ms": c.batch_timeout.as_millis() as u64,
            "cache_max_bytes": c.cache_max_bytes,
        },
        "redis": redis_json(c, &l2),
        "rate_limits": rate_json(c, &rate),
        "shards": shards,
    });
    Response::json(Status::Ok, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_known_routes_and_rejects_others() {
        let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
        ex.run(async {
            let engine = crate::ai::engine::Engine::start(
                std::time::Instant::now(),
                &crate::ai::engine::EngineSetup {
                    options: crate::ai::engine::EngineOptions {
                        cache_bytes: 1 << 20,
                        batch: atlas_shard::BatchOptions::default(),
                        warming: false,
                        contexts: atlas_shard::ContextOptions {
                            ttl: std::time::Duration::from_secs(60),
                            max_bytes: 1 << 20,
                        },
                    },
                    cache: crate::config::cache::defaults(std::time::Duration::from_secs(300)),
                    pool: crate::ai::pool::PoolOptions {
                        embedded: true,
                        remote: Vec::new(),
                        connection_pool_size: 0,
                        health_interval: std::time::Duration::from_secs(5),
                        cpu: None,
                    },
                    l2: None,
                },
                1,
            );
            let gw = App::Gateway(engine);
            assert_eq!(
                resolve(&gw, Method::Get, "/health", "GET"),
                Ok(Route::Health)
            );
            assert_eq!(
                resolve(&gw, Method::Head, "/health/ready", "HEAD"),
                Ok(Route::Ready)
            );
            let e = resolve(&gw, Method::Post, "/health", "POST").unwrap_err();
            assert_eq!(e.status, Status::MethodNotAllowed);
            assert_eq!(e.allow, Some("GET, HEAD"));
            assert_eq!(
                resolve(&gw, Method::Get, "/nope", "GET")
                    .unwrap_err()
                    .status,
                Status::NotFound
            );
            assert_eq!(
                resolve(&gw, Method::Post, "/ai/portfolio_analysis", "POST"),
                Ok(Route::Ai(Operation::PortfolioAnalysis))
            );
            let e = resolve(&gw, Method::Post, "/ai/astrology", "POST").unwrap_err();
            assert_eq!((e.status, e.code), (Status::NotFound, "unknown_operation"));
            let e = resolve(&gw, Method::Get, "/ai/risk_assessment", "GET").unwrap_err();
            assert_eq!(e.allow, Some("POST"));
            let invalidate = resolve(&gw, Method::Post, "/ai/cache/invalidate", "POST");
            assert_eq!(invalidate, Ok(Route::Invalidate));
            assert!(Route::Invalidate.requires_admin() && Route::Events.requires_admin());
            assert_eq!(
                resolve(&gw, Method::Post, "/ai/events", "POST"),
                Ok(Route::Events)
            );
            let e = resolve(&gw, Method::Get, "/ai/events", "GET").unwrap_err();
            assert_eq!(e.allow, Some("POST"));
            for (m, name, want) in [
                (Method::Put, "PUT", ContextMethod::Put),
                (Method::Get, "GET", ContextMethod::Get),
                (Method::Head, "HEAD", ContextMethod::Get),
                (Method::Delete, "DELETE", ContextMethod::Delete),
            ] {
                let route = resolve(&gw, m, "/ai/context/u-1", name).unwrap();
                assert_eq!(route, Route::Context(want));
                assert_eq!(route.access(), Access::User);
            }
            let e = resolve(&gw, Method::Post, "/ai/context/u-1", "POST").unwrap_err();
            assert_eq!(e.allow, Some("GET, HEAD, PUT, DELETE"));
            for path in ["/ai/context/", "/ai/context/a/b"] {
                let e = resolve(&gw, Method::Get, path, "GET").unwrap_err();
                assert_eq!(e.code, "not_found", "{path}");
            }
            assert_eq!(
                resolve(&gw, Method::Post, "/v1/batch", "POST")
                    .unwrap_err()
                    .status,
                Status::NotFound
            );

            let model = App::Model(crate::modelserver::ModelServer::new(
                Default::default(),
                0,
                None,
            ));
            assert_eq!(
                resolve(&model, Method::Post, "/v1/batch", "POST"),
                Ok(Route::Batch)
            );
            assert_eq!(
                resolve(&model, Method::Get, "/v1/info", "GET"),
                Ok(Route::Info)
            );
            assert_eq!(
                resolve(&model, Method::Get, "/health", "GET"),
                Ok(Route::Health)
            );
            let e = resolve(&model, Method::Post, "/ai/risk_assessment", "POST").unwrap_err();
            assert_eq!(e.status, Status::NotFound);
        });
    }
}

//! Routes: which handler a method and path go to ([`resolve`], before the body is read, so a
//! request for a missing route is refused without reading its body), and the handlers
//! ([`handle`]).
//!
//! Handlers return values (`Response`); errors become HTTP through `ApiError::to_response`.
//! Routes never touch sockets.

use std::rc::Rc;

use atlas_shard::Operation;

pub use crate::app::context::Method as ContextMethod;
use crate::app::{Shard, Tier};
pub use crate::auth::Access;
use crate::error::ApiError;
use crate::http::{Method, Request, Response, Status};

mod observe;
use observe::{detailed, metrics, performance, ready};

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
pub fn resolve(
    app: &Tier,
    method: Method,
    path: &str,
    method_str: &str,
) -> Result<Route, ApiError> {
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
        Tier::Gateway(_) => match path {
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
        Tier::Model(_) => match path {
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
    let identity = match shard.auth.authenticate(route.access(), request, peer) {
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
        Route::Health => Response::json(Status::Ok, shard.core.health_body.clone()),
        Route::Ready => ready(shard),
        Route::Detailed => detailed(shard).await,
        Route::Ai(op) => crate::app::ai::handle(shard, op, request, caller).await,
        Route::OpenApi => Response::json(
            Status::Ok,
            crate::openapi::served(&shard.core.config.event_tags),
        ),
        Route::Metrics => metrics(shard).await,
        Route::Performance => performance(shard).await,
        Route::Invalidate => crate::app::invalidate::handle(shard, request).await,
        Route::Events => crate::app::invalidate::events(shard, request).await,
        Route::Context(method) => crate::app::context::handle(shard, method, request, caller).await,
        Route::GraphQl => crate::app::graphql::handle(shard, request, caller).await,
        Route::Batch | Route::Info => match &shard.tier {
            Tier::Model(server) if route == Route::Batch => {
                server.batch(request, shard.core.shutdown_started()).await
            }
            Tier::Model(server) => server.info(),
            Tier::Gateway(_) => ApiError::not_found(request.path()).to_response(),
        },
    }
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
                    cache: crate::config::Config::default().cache,
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
            let gw = Tier::Gateway(engine);
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

            let model = Tier::Model(crate::modelserver::ModelServer::new(
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

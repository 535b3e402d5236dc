//! The apps: `atlas serve` (the gateway) and `atlas model-endpoint` (the model tier). This
//! module is the top layer: the per-shard state that wires the services together ([`Shard`]),
//! the closed set of cross-shard messages ([`calls`]), the routes ([`routes`]) and their
//! handlers, GraphQL ([`graphql`]), and what the main thread prepares ([`launch`]). It
//! implements the runtime's `App` for [`Shard`]; nothing below it names it.
//!
//! Everything here lives on one executor thread; the services' counters are plain `Cell`s.

pub mod ai;
pub mod calls;
pub mod context;
pub mod graphql;
pub mod invalidate;
pub mod launch;
pub mod routes;

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use atlas_shard::{BatchOptions, ContextOptions};

use crate::ai::engine::{Engine, EngineFigures, EngineOptions, EngineSetup};
use crate::ai::memo::RequestMemo;
use crate::ai::pool::{PoolOptions, ResolvedEndpoint};
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Method, Request, Response};
use crate::mesh::Answer;
use crate::metrics::{MetricsSnapshot, RequestMetrics};
use crate::modelserver::{ModelOptions, ModelServer};
use crate::monitor::{Monitor, MonitorSummary};
use crate::ratelimit::Limiter;
use crate::runtime::{App, Core};
pub use calls::{ShardCall, ShardInfo, ShardReply, BROADCAST_LIMIT};
use routes::Route;

/// The runtime's part of an app shard.
pub type ShardCore = Core<ShardCall, ShardReply>;

/// One core's shard of an app: the runtime's part and the services it wires together.
pub struct Shard {
    /// The runtime's part: index, configuration, counters, mesh, shutdown.
    pub core: Rc<ShardCore>,
    /// What this process serves.
    pub tier: Tier,
    /// Request-path metrics of the AI requests this shard accepted.
    pub metrics: RefCell<RequestMetrics>,
    /// The AI requests this shard parsed, by their exact bytes (`ai::memo`).
    pub requests: RefCell<RequestMemo>,
    /// The monitor (shard 0 of a gateway only).
    pub monitor: Option<Rc<Monitor>>,
    /// Authentication state (keys shared, token cache and counters per shard).
    pub auth: crate::auth::Auth,
    /// The rate limits (`None` when every limit is off, and on a model endpoint).
    pub rate_limits: Option<Rc<Limiter>>,
}

/// What a shard serves: the gateway (with its owner-side engine) or the model tier.
pub enum Tier {
    /// `atlas serve`: the cache, single flight, batch queues and endpoints of this shard.
    Gateway(Rc<Engine>),
    /// `atlas model-endpoint`: the batch protocol over the built-in models.
    Model(Rc<ModelServer>),
}

/// Which server a process runs (chosen by the subcommand).
#[derive(Debug, Clone)]
pub enum Role {
    /// `atlas serve`.
    Gateway,
    /// `atlas model-endpoint`.
    ModelEndpoint(ModelOptions),
}

impl Shard {
    /// Builds the services of shard `core.id` from what the main thread prepared.
    fn new(core: Rc<ShardCore>, seed: &launch::Seed) -> Self {
        let (id, config, origin, cpu) = (core.id, Arc::clone(&core.config), core.origin, core.cpu);
        let resolved = &seed.resolved;
        let shards = core.mesh.shards().max(1);
        let tier = match &seed.role {
            Role::Gateway => Tier::Gateway(Engine::start(
                origin,
                &EngineSetup {
                    options: EngineOptions {
                        cache_bytes: config.cache_max_bytes / shards,
                        batch: BatchOptions {
                            max_batch: config.batch_size,
                            window: config.batch_timeout,
                            max_queue_len: config.max_concurrent_requests.div_ceil(shards).max(1),
                            request_timeout: config.request_timeout,
                        },
                        warming: config.enable_cache_warming,
                        contexts: ContextOptions {
                            ttl: config.context_cache_ttl,
                            max_bytes: config.context_store_bytes / shards,
                        },
                    },
                    cache: config.cache.clone(),
                    pool: PoolOptions {
                        embedded: config.embedded,
                        remote: resolved.endpoints.clone(),
                        connection_pool_size: if config.enable_connection_pooling {
                            config.connection_pool_size
                        } else {
                            0
                        },
                        health_interval: config.health_interval,
                        cpu,
                    },
                    l2: resolved.redis.clone().map(|pool| {
                        (
                            pool,
                            crate::l2::L2Options {
                                prefix: config.redis_prefix.clone(),
                                timeout: config.redis_timeout,
                            },
                        )
                    }),
                },
                0x5eed_0000 + id as u64,
            )),
            Role::ModelEndpoint(opts) => Tier::Model(ModelServer::new(opts.clone(), id, cpu)),
        };
        let rate_limits = match &tier {
            Tier::Gateway(engine) => Limiter::start(
                &config.rate_limits(),
                shards,
                origin,
                resolved.global_limit.clone(),
                engine.l2.clone(),
                config.redis_timeout,
            ),
            Tier::Model(_) => None,
        };
        if let Tier::Gateway(engine) = &tier {
            let entries = resolved.take_restore(id);
            if !entries.is_empty() {
                let offered = entries.len();
                let stored = engine.cache.borrow_mut().restore(entries);
                log::info!("shard {id}: restored {stored} of {offered} snapshot entries");
            }
        }
        let gateway = matches!(seed.role, Role::Gateway);
        Shard {
            tier,
            metrics: RefCell::new(RequestMetrics::default()),
            requests: RefCell::new(RequestMemo::new(if gateway {
                config.request_memo_bytes
            } else {
                0
            })),
            monitor: (id == 0 && gateway).then(|| Monitor::new(&config, resolved.webhook.clone())),
            auth: crate::auth::Auth::new(
                resolved.verifier.clone(),
                config.admin_token.as_deref(),
                config.jwt_cache_entries,
            ),
            rate_limits,
            core,
        }
    }

    /// The engine, on a gateway.
    pub fn engine(&self) -> Option<&Rc<Engine>> {
        match &self.tier {
            Tier::Gateway(engine) => Some(engine),
            Tier::Model(_) => None,
        }
    }

    /// What this shard checks the rate limits with.
    pub fn rates(
        &self,
    ) -> crate::ratelimit::Rates<'_, Rc<crate::mesh::Mesh<ShardCall, ShardReply>>> {
        crate::ratelimit::Rates {
            limiter: self.rate_limits.as_ref(),
            link: &self.core.mesh,
            count: self.core.config.enable_prometheus,
        }
    }

    /// This shard's counters.
    pub fn info(&self) -> ShardInfo {
        let c = &self.core.counters;
        ShardInfo {
            shard: self.core.id,
            cpu: self.core.cpu,
            connections_open: c.connections_open.get(),
            connections_total: c.connections_total.get(),
            connections_rejected: c.connections_rejected.get(),
            requests_total: c.requests_total.get(),
            in_flight: c.in_flight.get(),
            engine: self.engine_figures(),
            monitor: self.monitor.as_ref().map(|m| m.summary()),
            rate: self.rate_limits.as_ref().map(|l| l.figures()),
            memo: self.requests.borrow().figures(),
        }
    }

    fn engine_figures(&self) -> EngineFigures {
        self.engine().map(|e| e.figures()).unwrap_or_default()
    }

    /// Every shard's metrics (those that answer within a second), and the monitor's summary
    /// (from shard 0 of a gateway).
    pub async fn collect_metrics(&self) -> (Vec<MetricsSnapshot>, Option<MonitorSummary>) {
        let mut summary = None;
        let metrics = self
            .core
            .mesh
            .broadcast(|| ShardCall::Metrics, BROADCAST_LIMIT)
            .await
            .into_iter()
            .filter_map(|r| match r {
                Ok(ShardReply::Metrics(m, monitor)) => {
                    summary = summary.take().or(monitor.map(|m| *m));
                    Some(*m)
                }
                _ => None,
            })
            .collect();
        (metrics, summary)
    }

    /// A copy of this shard's metrics.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut m = MetricsSnapshot {
            requests: self.metrics.borrow().clone(),
            in_flight: self.core.counters.in_flight.get(),
            connections_open: self.core.counters.connections_open.get(),
            engine: self.engine_figures(),
            auth: self.auth.figures(),
            rate: self.rate_limits.as_ref().map(|l| l.figures()),
            memo: self.requests.borrow().figures(),
            ..MetricsSnapshot::default()
        };
        if let Some(e) = self.engine() {
            m.set_batch_stats(&e.batch_stats());
        }
        m
    }

    /// On shard 0 with Redis: subscribes to the invalidations other instances publish.
    fn follow_peers(self: &Rc<Self>) {
        let Some(l2) = self.engine().and_then(|e| e.l2.as_ref()) else {
            return;
        };
        if self.core.id != 0 {
            return;
        }
        let (tx, rx) = futures_channel::mpsc::unbounded();
        match l2.pool().subscribe(l2.channel(), tx) {
            Ok(()) => {
                let me = l2.pool().instance();
                glommio::spawn_local(invalidate::follow_other_instances(Rc::clone(self), rx, me))
                    .detach();
            }
            Err(e) => log::warn!("redis: cannot start the subscriber: {e}"),
        }
    }
}

impl App for Shard {
    type Call = ShardCall;
    type Reply = ShardReply;
    type Route = Route;
    type Seed = launch::Seed;
    type Update = Option<Vec<ResolvedEndpoint>>;

    fn start(core: Rc<ShardCore>, seed: &launch::Seed) -> Rc<Self> {
        Rc::new(Shard::new(core, seed))
    }

    fn run(self: &Rc<Self>) {
        if let Some(monitor) = &self.monitor {
            let shard = Rc::clone(self);
            let collect = move || {
                let shard = Rc::clone(&shard);
                async move {
                    if shard.core.is_draining() {
                        return None;
                    }
                    Some(shard.collect_metrics().await.0)
                }
            };
            glommio::spawn_local(Rc::clone(monitor).run(collect)).detach();
        }
        self.follow_peers();
    }

    fn core(&self) -> &Rc<ShardCore> {
        &self.core
    }

    fn answer(self: &Rc<Self>, call: ShardCall) -> Answer<ShardReply> {
        calls::answer(self, call)
    }

    fn ping() -> ShardCall {
        ShardCall::Ping
    }

    fn is_pong(reply: &ShardReply) -> bool {
        matches!(reply, ShardReply::Pong(_))
    }

    fn route(&self, method: Method, path: &str, method_str: &str) -> Result<Route, ApiError> {
        routes::resolve(&self.tier, method, path, method_str)
    }

    fn is_slow(route: Route) -> bool {
        route.is_slow()
    }

    async fn handle(
        self: &Rc<Self>,
        route: Route,
        request: &Request,
        peer: Option<IpAddr>,
    ) -> Response {
        routes::handle(self, route, request, peer).await
    }

    /// Applies a reload to what this shard owns: its engine's batching and cache warming, its
    /// endpoint pool (when the endpoints changed), its rate limits, and on shard 0 the
    /// monitor's thresholds and windows. The configuration already holds the start values of
    /// every setting that needs a restart.
    fn reconfigure(&self, config: &Arc<Config>, endpoints: &Option<Vec<ResolvedEndpoint>>) {
        if let Some(engine) = self.engine() {
            if let Some(endpoints) = endpoints {
                let change = engine.pool.update(endpoints);
                // Every shard does the same; one line says it (when the list changed: every
                // reload hands the whole list, applied again as a no-op).
                if self.core.id == 0 && !(change.added.is_empty() && change.removed.is_empty()) {
                    let removed: Vec<String> = change
                        .removed
                        .iter()
                        .map(|(name, running)| format!("{name} ({running} call(s) finishing)"))
                        .collect();
                    log::info!(
                        "SIGHUP: endpoints on each shard: kept [{}], started [{}], retired [{}]",
                        change.kept.join(", "),
                        change.added.join(", "),
                        removed.join(", ")
                    );
                }
            }
            // After the pool: this wakes the dispatcher, which reads the new capacity.
            engine.reconfigure(
                config.batch_size,
                config.batch_timeout,
                config.enable_cache_warming,
                &config.cache,
            );
        }
        if let Some(limiter) = &self.rate_limits {
            limiter.reconfigure(&config.rate_limits());
        }
        if let Some(monitor) = &self.monitor {
            monitor.reconfigure(config);
        }
    }

    /// Writes this shard's live L1 entries to `ATLAS_STATE_DIR` on the executor's blocking
    /// thread; a failure (read-only or full disk) is logged and shutdown goes on.
    async fn drained(self: &Rc<Self>) {
        let (Some(dir), Some(engine)) = (self.core.config.state_dir.clone(), self.engine()) else {
            return;
        };
        let entries: Vec<atlas_shard::SnapshotEntry> = engine.cache.borrow().snapshot().collect();
        let (id, count, started) = (self.core.id, entries.len(), std::time::Instant::now());
        let written = glommio::executor()
            .spawn_blocking(move || {
                crate::snapshot::write(&dir, id, &entries, crate::wallclock::unix_ms_now())
            })
            .await;
        match written {
            Ok(bytes) => log::info!(
                "snapshot: shard {id} wrote {count} entries ({bytes} bytes) in {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            ),
            Err(e) => log::warn!("snapshot: shard {id} could not write its snapshot: {e}"),
        }
    }
}

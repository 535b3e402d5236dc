//! One shard: the state a core owns (counters, its mesh end, its shutdown signal) and the
//! cross-shard messages it answers.
//!
//! Everything here lives on one executor thread; counters are plain `Cell`s, not atomics. The
//! few values all shards share (`Shared`) are atomics touched on connect, not per request.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Instant;

use atlas_shard::{BatchOptions, ContextOptions, Priority};
use glommio::sync::Semaphore;

use super::admission::{Admission, Region};
use crate::ai::context::{ContextCall, ContextReply};
use crate::ai::engine::{Engine, EngineFigures, EngineOptions, EngineSetup, Job, Looked, Outcome};
use crate::ai::invalidation::Invalidation;
use crate::ai::memo::{MemoFigures, RequestMemo};
use crate::ai::pool::PoolOptions;
use crate::config::Config;
use crate::http::Limits;
use crate::mesh::{Answer, Mesh};
use crate::metrics::{MetricsSnapshot, RequestMetrics};
use crate::modelserver::{ModelOptions, ModelServer};
use crate::monitor::{Monitor, MonitorSummary};
use crate::ratelimit::{Limiter, RateCall, RateFigures, RateReply, Verdict};

/// How long a scrape, `/health/detailed` or the monitor waits for each shard's answer.
pub const BROADCAST_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// State shared by every shard of the process. Touched on connection accept/close and on
/// lifecycle changes, never per request.
#[derive(Debug)]
pub struct Shared {
    /// Number of shards.
    pub shards: usize,
    /// Open client connections across all shards (for `ATLAS_MAX_CONNECTIONS`).
    pub connections: AtomicUsize,
    /// Highest `connections` since the memory trimmer last looked (see `runtime::trim`).
    pub connections_peak: AtomicUsize,
    /// Every shard is listening (`/health/ready`).
    pub ready: AtomicBool,
    /// A shutdown signal arrived: stop accepting, finish in-flight requests.
    pub draining: AtomicBool,
    /// Shards that have finished draining their connections.
    pub drained: AtomicUsize,
    /// `MAX_CONCURRENT_REQUESTS` for the whole instance (`runtime::admission`).
    pub admission: Admission,
}

impl Shared {
    /// State for `shards` shards, not yet ready, admitting `max_in_flight` requests at once.
    pub fn new(shards: usize, max_in_flight: usize) -> Self {
        Shared {
            admission: Admission::new(max_in_flight as u64, shards),
            shards,
            connections: AtomicUsize::new(0),
            connections_peak: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
        }
    }

    /// Whether every shard is up and no shutdown is under way.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Calls one shard makes on another over the mesh. A closed set: each issue that needs a new
/// cross-shard operation adds a variant.
#[derive(Debug)]
pub enum ShardCall {
    /// Report this shard's counters.
    Info,
    /// Answer an AI request whose key this shard owns.
    Ai(Box<Job>),
    /// Copy this shard's metrics (for a `/metrics` scrape).
    Metrics,
    /// Build the performance document (shard 0, which runs the monitor).
    Performance,
    /// Drop the cached results this invalidation selects (its keys are this shard's).
    Invalidate(Box<Invalidation>),
    /// Read or change a stored user context this shard owns.
    Context(Box<ContextCall>),
    /// Take or give back rate-limit tokens of a user this shard owns.
    RateLimit(Box<RateCall>),
    /// Answer at once (the watchdog's liveness check of every shard).
    Ping,
}

/// Answers to [`ShardCall`]s.
#[derive(Debug)]
pub enum ShardReply {
    /// Answer to `Info`.
    Info(Box<ShardInfo>),
    /// Answer to `Ai`.
    Ai(Outcome),
    /// Answer to `Metrics`.
    Metrics(Box<MetricsSnapshot>),
    /// Answer to `Performance`: the JSON text, `None` where no monitor runs.
    Performance(Option<String>),
    /// Answer to `Invalidate`: entries removed.
    Invalidated(u64),
    /// Answer to `Context`.
    Context(ContextReply),
    /// Answer to `RateLimit`.
    RateLimit(RateReply),
    /// Answer to `Ping`: the shard's index.
    Pong(usize),
}

/// A snapshot of one shard's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardInfo {
    /// Shard index.
    pub shard: usize,
    /// CPU the shard is pinned to, if known.
    pub cpu: Option<usize>,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections refused at the connection cap since start.
    pub connections_rejected: u64,
    /// Requests answered since start.
    pub requests_total: u64,
    /// Requests being handled now.
    pub in_flight: u64,
    /// The engine's counters (empty on a model endpoint).
    pub engine: EngineFigures,
    /// The monitor's summary (shard 0 only).
    pub monitor: Option<MonitorSummary>,
    /// The rate limits' figures (`None` when every limit is off).
    pub rate: Option<RateFigures>,
    /// The request memo's figures.
    pub memo: MemoFigures,
}

/// Plain per-shard counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub connections_open: Cell<u64>,
    /// Connections accepted since start.
    pub connections_total: Cell<u64>,
    /// Requests answered since start.
    pub requests_total: Cell<u64>,
    /// Requests being handled now.
    pub in_flight: Cell<u64>,
    /// Connections refused because of the connection cap.
    pub connections_rejected: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: i64) {
    cell.set(cell.get().saturating_add_signed(by));
}

/// One core's shard.
pub struct Shard {
    /// Shard index: the mesh peer id.
    pub id: usize,
    /// CPU this shard's thread is pinned to.
    pub cpu: Option<usize>,
    /// The configuration the process started with. Settings a SIGHUP reload may change are
    /// read from [`Shard::live_config`] instead.
    pub config: Arc<Config>,
    /// The configuration in force: `config` with the reloadable settings of the last reload
    /// (see `runtime::reload`).
    live: RefCell<Arc<Config>>,
    /// HTTP parsing limits derived from the configuration.
    pub limits: Limits,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// This shard's counters.
    pub counters: Counters,
    /// This shard's end of the mesh.
    pub mesh: Rc<Mesh<ShardCall, ShardReply>>,
    /// Closed when shutdown starts; waiting on it is how tasks learn of shutdown.
    pub shutdown: Semaphore,
    /// Pre-built `/health` body.
    pub health_body: bytes::Bytes,
    /// What this process serves.
    pub app: App,
    /// Request-path metrics of the AI requests this shard accepted.
    pub metrics: RefCell<RequestMetrics>,
    /// The AI requests this shard parsed, by their exact bytes (`ai::memo`).
    pub requests: RefCell<RequestMemo>,
    /// The monitor (shard 0 of a gateway only).
    pub monitor: Option<Rc<Monitor>>,
    /// When the process started the shards (for uptime).
    pub origin: Instant,
    /// Authentication state (keys shared, token cache and counters per shard).
    pub auth: crate::auth::Auth,
    /// The rate limits (`None` when every limit is off, and on a model endpoint).
    pub rate_limits: Option<Rc<Limiter>>,
}

/// What a shard serves: the gateway (with its owner-side engine) or the model tier.
pub enum App {
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
    /// A shard with index `mesh.id()`.
    pub fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        mesh: Rc<Mesh<ShardCall, ShardReply>>,
        origin: Instant,
        role: &Role,
        resolved: &super::Resolved,
    ) -> Self {
        let id = mesh.id();
        let shards = mesh.shards().max(1);
        let limits = Limits {
            max_body: config.max_body_bytes,
            ..Limits::default()
        };
        let health_body = bytes::Bytes::from(format!(
            "{{\"status\":\"ok\",\"shard\":{id},\"shards\":{shards},\"version\":\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ));
        let cpu = current_cpu();
        let app = match role {
            Role::Gateway => App::Gateway(Engine::start(
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
            Role::ModelEndpoint(opts) => App::Model(ModelServer::new(opts.clone(), id, cpu)),
        };
        let rate_limits = match &app {
            App::Gateway(engine) => Limiter::start(
                &config.rate_limits,
                shards,
                origin,
                resolved.global_limit.clone(),
                engine.l2.clone(),
                config.redis_timeout,
            ),
            App::Model(_) => None,
        };
        if let App::Gateway(engine) = &app {
            let entries = resolved.take_restore(id);
            if !entries.is_empty() {
                let offered = entries.len();
                let stored = engine.cache.borrow_mut().restore(entries);
                log::info!("shard {id}: restored {stored} of {offered} snapshot entries");
            }
        }
        Shard {
            id,
            app,
            metrics: RefCell::new(RequestMetrics::default()),
            requests: RefCell::new(RequestMemo::new(match role {
                Role::Gateway => config.request_memo_bytes,
                Role::ModelEndpoint(_) => 0,
            })),
            monitor: (id == 0 && matches!(role, Role::Gateway))
                .then(|| Monitor::new(&config, resolved.webhook.clone())),
            cpu,
            origin,
            auth: crate::auth::Auth::new(
                resolved.verifier.clone(),
                config.admin_token.as_deref(),
                config.jwt_cache_entries,
            ),
            live: RefCell::new(Arc::clone(&config)),
            config,
            limits,
            shared,
            counters: Counters::default(),
            mesh,
            shutdown: Semaphore::new(0),
            health_body,
            rate_limits,
        }
    }

    /// The configuration in force (the start configuration plus reloaded settings).
    pub fn live_config(&self) -> Arc<Config> {
        Arc::clone(&self.live.borrow())
    }

    /// Applies a reload to what this shard owns: its engine's batching and cache warming, its
    /// endpoint pool (when the endpoints changed), its rate limits, and on shard 0 the
    /// monitor's thresholds and windows. The configuration already holds the start values of
    /// every setting that needs a restart.
    pub fn reconfigure(&self, reload: &super::control::Reload) {
        let config = Arc::clone(&reload.config);
        if let App::Gateway(engine) = &self.app {
            if let Some(endpoints) = &reload.endpoints {
                let change = engine.pool.update(endpoints);
                // Every shard does the same; one line says it (when the list changed: every
                // reload hands the whole list, applied again as a no-op).
                if self.id == 0 && !(change.added.is_empty() && change.removed.is_empty()) {
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
            limiter.reconfigure(&config.rate_limits);
        }
        if let Some(monitor) = &self.monitor {
            monitor.reconfigure(&config);
        }
        *self.live.borrow_mut() = config;
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Resolves when shutdown starts.
    pub async fn shutdown_started(&self) {
        // Nobody ever releases units: this waits until `close()` makes it fail.
        let _ = self.shutdown.acquire(1).await;
    }

    /// Answers a mesh call addressed to this shard: at once where nothing needs waiting for
    /// (a cache hit, a ping, a context read), otherwise as a task. Reports and invalidations
    /// scan whole structures, so they run as tasks too and never hold up the calls queued
    /// behind them.
    pub fn answer(self: &Rc<Self>, call: ShardCall) -> Answer<ShardReply> {
        match call {
            ShardCall::Ping => Answer::Now(ShardReply::Pong(self.id)),
            ShardCall::Context(call) => Answer::Now(crate::ai::context::on_shard(self, *call)),
            ShardCall::Ai(job) => match &self.app {
                App::Gateway(engine) => match engine.lookup(*job) {
                    Looked::Answered(outcome) => Answer::Now(ShardReply::Ai(outcome)),
                    Looked::Miss(miss) => {
                        let engine = Rc::clone(engine);
                        Answer::Later(Box::pin(async move {
                            ShardReply::Ai(engine.execute_miss(miss).await)
                        }))
                    }
                },
                App::Model(_) => Answer::Now(ShardReply::Ai(Err(crate::error::ApiError::new(
                    crate::http::Status::NotFound,
                    "not_a_gateway",
                    "this process is a model endpoint",
                )))),
            },
            call => Answer::Later(Box::pin(Rc::clone(self).handle_call(call))),
        }
    }

    /// Answers the calls that run as tasks.
    async fn handle_call(self: Rc<Self>, call: ShardCall) -> ShardReply {
        match call {
            ShardCall::Info => ShardReply::Info(Box::new(self.info())),
            ShardCall::Metrics => ShardReply::Metrics(Box::new(self.metrics_snapshot())),
            ShardCall::Performance => ShardReply::Performance(
                self.monitor
                    .as_ref()
                    .map(|m| crate::monitor::report::performance(m).to_string()),
            ),
            ShardCall::Invalidate(inv) => ShardReply::Invalidated(match &self.app {
                App::Gateway(engine) => engine.invalidate(&inv),
                App::Model(_) => 0,
            }),
            ShardCall::RateLimit(call) => ShardReply::RateLimit(match &self.rate_limits {
                Some(limiter) => limiter.answer(*call).await,
                None => RateReply::Taken(Verdict::Allowed {
                    user: None,
                    charges: Default::default(),
                }),
            }),
            call @ (ShardCall::Ping | ShardCall::Context(_) | ShardCall::Ai(_)) => {
                match self.answer(call) {
                    Answer::Now(reply) => reply,
                    Answer::Later(work) => work.await,
                }
            }
        }
    }

    /// This shard's counters.
    pub fn info(&self) -> ShardInfo {
        let c = &self.counters;
        ShardInfo {
            shard: self.id,
            cpu: self.cpu,
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
        match &self.app {
            App::Gateway(e) => e.figures(),
            App::Model(_) => EngineFigures::default(),
        }
    }

    /// Every shard's metrics (those that answer within a second).
    pub async fn collect_metrics(self: &Rc<Self>) -> Vec<MetricsSnapshot> {
        self.mesh
            .broadcast(|| ShardCall::Metrics, BROADCAST_LIMIT)
            .await
            .into_iter()
            .filter_map(|r| match r {
                Ok(ShardReply::Metrics(m)) => Some(*m),
                _ => None,
            })
            .collect()
    }

    /// A copy of this shard's metrics.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut m = MetricsSnapshot {
            requests: self.metrics.borrow().clone(),
            in_flight: self.counters.in_flight.get(),
            connections_open: self.counters.connections_open.get(),
            engine: self.engine_figures(),
            monitor: self.monitor.as_ref().map(|mon| mon.summary()),
            auth: self.auth.figures(),
            rate: self.rate_limits.as_ref().map(|l| l.figures()),
            memo: self.requests.borrow().figures(),
            ..MetricsSnapshot::default()
        };
        if let App::Gateway(e) = &self.app {
            m.set_batch_stats(&e.batch_stats());
        }
        m
    }

    /// Records an answered request.
    pub fn count_request(&self) {
        bump(&self.counters.requests_total, 1);
    }

    /// Records an accepted connection; the guard records its close.
    pub fn open_connection(self: &Rc<Self>) -> ConnectionGuard {
        bump(&self.counters.connections_open, 1);
        bump(&self.counters.connections_total, 1);
        ConnectionGuard {
            shard: Rc::clone(self),
        }
    }

    /// Admits a request while the instance has fewer than `MAX_CONCURRENT_REQUESTS` in
    /// progress (`runtime::admission`: from this shard's own share first, without contention);
    /// the guard releases it. Low-priority requests are shed first, past 80 %.
    pub fn admit(self: &Rc<Self>, priority: Priority) -> Option<InFlight> {
        let region = self
            .shared
            .admission
            .admit(self.id, priority == Priority::Low)?;
        bump(&self.counters.in_flight, 1);
        Some(InFlight {
            shard: Rc::clone(self),
            region,
        })
    }
}

/// Decrements the open-connection counters when a connection ends, however it ends.
pub struct ConnectionGuard {
    shard: Rc<Shard>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        bump(&self.shard.counters.connections_open, -1);
        self.shard
            .shared
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request counted against the in-flight cap until dropped.
pub struct InFlight {
    shard: Rc<Shard>,
    /// Where its permit goes back.
    region: Region,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        bump(&self.shard.counters.in_flight, -1);
        self.shard.shared.admission.release(self.region);
    }
}

/// The CPU this thread is pinned to, when it is pinned to exactly one.
fn current_cpu() -> Option<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if ids.len() == 1 => ids.first().map(|c| c.id),
        _ => None,
    }
}

//! The owner shard's engine: for a key this shard owns, L1 lookup → single-flight → batch
//! queue → model endpoint → cache fill → wake every waiter.
//!
//! One `Engine` per shard, touched only by that shard's executor: no locks. It drives the
//! synchronous `atlas-shard` structures and maps their ids to shard-local oneshot slots. A
//! dispatcher task polls the batch queues whenever something changes (a push, a batch done, a
//! window or deadline reached) and runs each batch on the endpoint in its own task.
//!
//! It also holds the stored contexts of the users this shard owns (`ai::context`), and
//! applies invalidations to its cache ([`Engine::invalidate`], a seam for the Redis tier).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use atlas_shard::{
    BatchOptions, BatchQueues, Cache, CacheConfigs, CacheKey, CacheOptions, ContextOptions,
    ContextStore, FlightOptions, Join, Lookup, MonotonicClock, Operation, Priority, SingleFlight,
    WaiterId,
};

use super::context::SharedContext;
use super::invalidation::{self, Invalidation};
use super::pool::{EndpointPool, PoolOptions};
use super::request::CacheMode;
use crate::error::ApiError;
use crate::http::Status;
use crate::l2::{L2Options, L2};
use crate::models::{ModelInput, ModelOutput};
use crate::notify::Notify;
use crate::oneshot;

mod dispatch;
mod figures;
mod fill;

use figures::bump;
pub use figures::{EngineCounters, EngineFigures};

/// Whether and how the cache answered, sent as `X-Atlas-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// A fresh cached result.
    Hit,
    /// Computed for this request (or shared with an identical request in flight).
    Miss,
    /// A result past its TTL, served inside stale-while-revalidate (a refresh runs) or
    /// stale-if-error (recomputing failed).
    Stale,
    /// The lookup was skipped (`no_cache`, `no_store`, `refresh`).
    Bypass,
}

impl CacheStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// A served answer: the exact body bytes and how they were obtained.
#[derive(Debug, Clone)]
pub struct Served {
    /// Response body, byte-identical for every request served from the same cache entry.
    pub body: Bytes,
    /// How the cache answered.
    pub cache: CacheStatus,
    /// Time spent in the batch queue, ms (0 for hits).
    pub queue_ms: f64,
    /// Model time for the batch, ms (0 for hits).
    pub processing_ms: f64,
    /// Requests in the batch that computed this result (0 for hits).
    pub batch_size: usize,
    /// Which endpoint computed it (`cache` for hits).
    pub endpoint: Cow<'static, str>,
    /// Whether the hit came from the shared L2 (Redis) rather than this shard's L1.
    pub from_l2: bool,
}

/// What the owner answers.
pub type Outcome = Result<Served, ApiError>;

/// What a lookup in the cache alone decided.
pub enum Looked {
    /// The cache answered (a hit, or a stale copy while one refresh runs).
    Answered(Outcome),
    /// It did not: the job goes on to [`Engine::execute_miss`].
    Miss(Miss),
}

/// A job the cache did not answer.
pub struct Miss {
    job: Job,
    /// A copy past its TTL but inside stale-if-error, served if computing fails.
    fallback: Option<(Bytes, Arc<JobSpec>)>,
}

/// What a request asks of its owner shard, fixed once its bytes are parsed. Shared and never
/// changed: the accepting shard's request memo keeps it for the next identical request, so a
/// repeated request sends the same spec again without parsing anything.
#[derive(Debug)]
pub struct JobSpec {
    /// The cache key (operation, user, canonical input).
    pub key: CacheKey,
    /// The validated model input.
    pub input: ModelInput,
    /// Scheduling priority the request asked for.
    pub priority: Priority,
    /// Cache use.
    pub mode: CacheMode,
    /// Oldest acceptable cached result, and TTL cap for a fresh one.
    pub max_age: Option<Duration>,
    /// Dependency tags the request declares.
    pub tags: Vec<String>,
}

/// A request routed to its owner shard.
#[derive(Debug)]
pub struct Job {
    /// What is asked.
    pub spec: Arc<JobSpec>,
    /// Scheduling priority (the spec's, lowered for a background refresh).
    pub priority: Priority,
    /// When the request must be answered.
    pub deadline: Instant,
}

impl Job {
    /// A job for `spec` at its own priority, due at `deadline`.
    pub fn new(spec: Arc<JobSpec>, deadline: Instant) -> Job {
        Job {
            priority: spec.priority,
            spec,
            deadline,
        }
    }
}

/// The computation in flight for one key, as its single-flight leader runs it.
struct Leading {
    /// The leader's priority (a follower never waits on a lower one).
    priority: Priority,
    /// Dependency tags declared by the followers waiting on it: the stored result carries
    /// them too.
    follower_tags: Vec<String>,
}

/// One request waiting in a batch queue.
struct Pending {
    input: ModelInput,
    reply: oneshot::Sender<Result<Computed, ApiError>>,
}

/// A freshly computed result.
struct Computed {
    body: Bytes,
    endpoint: String,
    output: ModelOutput,
    queue_ms: f64,
    processing_ms: f64,
    batch_size: usize,
}

/// Per-shard owner engine.
pub struct Engine {
    /// Origin of this process's monotonic timestamps (shared by all shards).
    origin: Instant,
    clock: MonotonicClock,
    /// L1 result cache.
    pub cache: RefCell<Cache<MonotonicClock>>,
    /// Identical misses in flight.
    pub flights: RefCell<SingleFlight>,
    followers: RefCell<HashMap<WaiterId, oneshot::Sender<Outcome>>>,
    /// Each single-flight leader's computation, by key bytes.
    leaders: RefCell<HashMap<Box<[u8]>, Leading>>,
    /// Batch queues of this shard.
    queues: RefCell<BatchQueues<MonotonicClock, Pending>>,
    /// How each operation's results are cached (a reload replaces it).
    configs: RefCell<CacheConfigs>,
    /// The model endpoints and how batches are routed among them.
    pub pool: Rc<EndpointPool>,
    /// Batches running on the endpoints now.
    busy: Cell<usize>,
    /// Wakes the dispatcher.
    wake: Notify,
    /// Refresh hot entries before expiry (`ENABLE_CACHE_WARMING`; a reload may change it).
    warming: Cell<bool>,
    /// The invalidations applied last (see [`invalidation::Recent`]).
    recent: RefCell<invalidation::Recent>,
    /// When each selector was last invalidated here: refuses results read back from Redis
    /// that an invalidation applied here made stale (see [`super::horizon`]).
    horizon: RefCell<super::horizon::Horizon>,
    /// Stored user contexts of the users this shard owns (`/ai/context/{user_id}`).
    pub contexts: RefCell<ContextStore<MonotonicClock, SharedContext>>,
    /// Counters for `/health/detailed`.
    pub counters: EngineCounters,
    /// The shared L2 on Redis, when configured.
    pub l2: Option<Rc<L2>>,
}

/// Engine settings derived from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// This shard's byte budget.
    pub cache_bytes: usize,
    /// Batch queue parameters.
    pub batch: BatchOptions,
    /// Refresh hot entries before expiry.
    pub warming: bool,
    /// This shard's context store: TTL and byte budget.
    pub contexts: ContextOptions,
}

/// Everything an engine is built from.
#[derive(Debug, Clone)]
pub struct EngineSetup {
    /// Cache and batching settings.
    pub options: EngineOptions,
    /// How each operation's results are cached.
    pub cache: CacheConfigs,
    /// The model endpoints.
    pub pool: PoolOptions,
    /// The Redis workers and how this shard uses them (`None`: no L2).
    pub l2: Option<(crate::l2::pool::Pool, L2Options)>,
}

impl Engine {
    /// A new engine on the current executor; starts its dispatcher task.
    pub fn start(origin: Instant, setup: &EngineSetup, seed: u64) -> Rc<Engine> {
        let opts = setup.options;
        let clock = MonotonicClock::with_origin(origin);
        let engine = Rc::new(Engine {
            origin,
            clock,
            cache: RefCell::new(Cache::new(
                CacheOptions::with_max_bytes(opts.cache_bytes),
                clock,
            )),
            flights: RefCell::new(SingleFlight::new(FlightOptions::default())),
            followers: RefCell::new(HashMap::new()),
            leaders: RefCell::new(HashMap::new()),
            queues: RefCell::new(BatchQueues::new(opts.batch, clock)),
            configs: RefCell::new(setup.cache.clone()),
            pool: EndpointPool::start(&setup.pool, clock, seed),
            busy: Cell::new(0),
            wake: Notify::default(),
            warming: Cell::new(opts.warming),
            recent: RefCell::new(invalidation::Recent::default()),
            horizon: RefCell::new(super::horizon::Horizon::default()),
            contexts: RefCell::new(ContextStore::new(opts.contexts, clock)),
            counters: EngineCounters::default(),
            l2: setup
                .l2
                .as_ref()
                .map(|(pool, o)| Rc::new(L2::new(pool.clone(), o.clone(), origin))),
        });
        engine.apply_batchable();
        glommio::spawn_local(Rc::clone(&engine).dispatch_loop()).detach();
        glommio::spawn_local(Rc::clone(&engine).sweep_loop()).detach();
        engine
    }

    /// Tells the batch queues which operations may batch (`batch_compatible`).
    fn apply_batchable(&self) {
        let configs = self.configs.borrow();
        let mut queues = self.queues.borrow_mut();
        for op in Operation::ALL {
            queues.set_batchable(op, configs.get(op).batch_compatible);
        }
    }

    /// Reclaims expired entries a slice at a time (each pass scans at most `SWEEP_SCAN`
    /// entries), so memory held by results nobody reads again returns to the budget without a
    /// pause. Refresh-ahead itself happens on reads (`Hit::refresh_ahead`): a hot entry is read
    /// by definition, and the read carries the input and tags to recompute it with.
    async fn sweep_loop(self: Rc<Self>) {
        const SWEEP_EVERY: Duration = Duration::from_secs(1);
        const SWEEP_SCAN: usize = 1024;
        let mut ignored = Vec::new();
        loop {
            glommio::timer::sleep(SWEEP_EVERY).await;
            self.cache.borrow_mut().sweep(SWEEP_SCAN, &mut ignored);
            ignored.clear();
            self.contexts.borrow_mut().sweep();
        }
    }

    /// Applies a configuration reload: batch size and window (`BATCH_SIZE`,
    /// `BATCH_TIMEOUT_MS`) and each operation's batch compatibility for the next batches
    /// formed, whether hot entries are refreshed ahead of expiry, and each operation's cache
    /// settings for the results stored from now on (entries already cached keep the TTL and
    /// windows they were stored with). Wakes the dispatcher so a shorter window takes effect
    /// at once.
    pub fn reconfigure(
        &self,
        max_batch: usize,
        window: Duration,
        warming: bool,
        cache: &CacheConfigs,
    ) {
        self.queues.borrow_mut().set_batching(max_batch, window);
        *self.configs.borrow_mut() = cache.clone();
        self.apply_batchable();
        self.warming.set(warming);
        self.wake.notify();
    }

    /// The batch queues' statistics (borrowed: a scrape reads them without copying).
    pub fn batch_stats(&self) -> std::cell::Ref<'_, atlas_shard::BatchStats> {
        std::cell::Ref::map(self.queues.borrow(), |q| q.stats())
    }

    /// This engine's counters, for `/health/detailed` and `/metrics` alike.
    pub fn figures(&self) -> EngineFigures {
        let cache = self.cache.borrow();
        EngineFigures {
            computations: self.counters.computations.get(),
            batches: self.counters.batches.get(),
            refreshes: self.counters.refreshes.get(),
            cache: *cache.counters(),
            cache_entries: cache.len() as u64,
            cache_bytes: cache.bytes_used() as u64,
            flights: *self.flights.borrow().counters(),
            queued: self.queued() as u64,
            endpoints: self.pool.snapshot(),
            l2: self.l2.as_ref().map(|l2| l2.figures()),
            invalidated: self.counters.invalidated.each_ref().map(Cell::get),
            context_entries: self.contexts.borrow().len() as u64,
            context_bytes: self.contexts.borrow().bytes_used() as u64,
            contexts: *self.contexts.borrow().counters(),
        }
    }

    /// Applies an invalidation to this shard and returns how many entries it removed: the one
    /// place where a shard drops results on request (API, events, context changes, and later
    /// messages from other instances).
    ///
    /// Deleting from Redis happens once per invalidation in [`invalidation::everywhere`], not
    /// per shard. A write-behind store that lands in Redis after that delete is refused when
    /// read back ([`super::horizon`]), here and on every instance that applied `inv`.
    pub fn invalidate(&self, inv: &Invalidation) -> u64 {
        self.recent.borrow_mut().record(inv);
        self.horizon
            .borrow_mut()
            .record(inv, crate::wallclock::unix_ms_now());
        let removed = invalidation::apply(&mut self.cache.borrow_mut(), inv);
        for (cell, n) in self.counters.invalidated.iter().zip(removed.0) {
            bump(cell, n);
        }
        removed.total()
    }

    /// Requests waiting in the batch queues.
    pub fn queued(&self) -> usize {
        self.queues.borrow().len()
    }

    /// Answers a job for a key this shard owns.
    pub async fn execute(self: Rc<Self>, job: Job) -> Outcome {
        match self.lookup(job) {
            Looked::Answered(outcome) => outcome,
            Looked::Miss(miss) => self.execute_miss(miss).await,
        }
    }

    /// What the cache alone answers for `job`, without waiting: a fresh hit (refreshed ahead
    /// of expiry in the background when hot), or a stale one inside stale-while-revalidate
    /// (one refresh runs); anything else is a miss for [`Engine::execute_miss`].
    pub fn lookup(self: &Rc<Self>, job: Job) -> Looked {
        let lookup = if job.spec.mode == CacheMode::Default {
            let found = self.cache.borrow_mut().get(&job.spec.key);
            match found {
                Lookup::Fresh(h) | Lookup::Stale(h) | Lookup::StaleIfError(h)
                    if job.spec.max_age.is_some_and(|max| h.age > max) =>
                {
                    Lookup::Miss
                }
                other => other,
            }
        } else {
            Lookup::Miss
        };
        if matches!(lookup, Lookup::Fresh(_) | Lookup::Stale(_)) {
            self.keep_tags(&job.spec.key, &job.spec.tags);
        }
        let fallback = match lookup {
            Lookup::Fresh(hit) => {
                if hit.refresh_ahead && self.warming.get() {
                    self.spawn_refresh(job);
                }
                return Looked::Answered(Ok(served_from_cache(hit.body, CacheStatus::Hit)));
            }
            Lookup::Stale(hit) => {
                self.spawn_refresh(job);
                return Looked::Answered(Ok(served_from_cache(hit.body, CacheStatus::Stale)));
            }
            // Kept with the spec (the computation consumes the job), in case it is served.
            Lookup::StaleIfError(hit) => Some((hit.body, Arc::clone(&job.spec))),
            Lookup::Miss => None,
        };
        Looked::Miss(Miss { job, fallback })
    }

    /// Answers a job the cache did not: joins an identical computation in flight or leads
    /// one (from L2, else the model), and serves the stale-if-error copy if computing fails.
    pub async fn execute_miss(self: Rc<Self>, miss: Miss) -> Outcome {
        let Miss { job, fallback } = miss;
        let outcome = if job.spec.mode != CacheMode::Default {
            self.compute_and_store(job).await.map(|mut s| {
                s.cache = CacheStatus::Bypass;
                s
            })
        } else {
            let joined = self.flights.borrow_mut().join(&job.spec.key);
            match joined {
                // The leader's work runs in its own task: if this request is abandoned, the
                // computation still completes and wakes the followers.
                Join::Leader => glommio::spawn_local(Rc::clone(&self).lead(job))
                    .detach()
                    .await
                    .unwrap_or_else(|| Err(internal("the computation was cancelled"))),
                // A follower never waits on a lower-priority computation (a normal request
                // behind a background refresh, a high one behind a normal one): it computes
                // on its own at its own priority instead.
                Join::Follower(waiter) if self.leader_priority(&job.spec.key) < job.priority => {
                    self.flights.borrow_mut().leave(&job.spec.key, waiter);
                    self.compute_and_store(job).await
                }
                Join::Follower(waiter) => {
                    if let Some(leading) = self.leaders.borrow_mut().get_mut(job.spec.key.bytes()) {
                        leading.follower_tags.extend(job.spec.tags.iter().cloned());
                    }
                    let (tx, rx) = oneshot::channel();
                    self.followers.borrow_mut().insert(waiter, tx);
                    rx.await
                        .unwrap_or_else(|| Err(internal("the shared computation was lost")))
                }
                Join::Bypass => self.compute_and_store(job).await,
                Join::Overloaded => Err(overloaded("too many identical requests waiting")),
            }
        };
        match (outcome, fallback) {
            (Err(_), Some((body, spec))) => {
                self.keep_tags(&spec.key, &spec.tags);
                Ok(served_from_cache(body, CacheStatus::Stale))
            }
            (outcome, _) => outcome,
        }
    }

    /// Answers `job` as the single-flight leader (from L2 if it holds a fresh copy, else by
    /// computing it), then wakes every follower with the result.
    async fn lead(self: Rc<Self>, job: Job) -> Outcome {
        let key = job.spec.key.clone();
        self.leaders.borrow_mut().insert(
            key.bytes().into(),
            Leading {
                priority: job.priority,
                follower_tags: Vec::new(),
            },
        );
        let outcome = match self.l2_lookup(&job).await {
            Some(served) => Ok(served),
            None => self.compute_and_store(job).await,
        };
        self.leaders.borrow_mut().remove(key.bytes());
        let waiters = self.flights.borrow_mut().complete(&key);
        let mut followers = self.followers.borrow_mut();
        for w in waiters {
            if let Some(tx) = followers.remove(&w) {
                tx.send(outcome.clone());
            }
        }
        outcome
    }

    /// The priority of the computation in flight for `key` (high when unknown, so that a
    /// follower then simply joins).
    fn leader_priority(&self, key: &CacheKey) -> Priority {
        self.leaders
            .borrow()
            .get(key.bytes())
            .map_or(Priority::High, |l| l.priority)
    }

    /// Recomputes a cached result in the background at low priority, unless an identical
    /// computation is already running.
    fn spawn_refresh(self: &Rc<Self>, mut job: Job) {
        let joined = self.flights.borrow_mut().join(&job.spec.key);
        match joined {
            Join::Leader => {
                bump(&self.counters.refreshes, 1);
                job.priority = Priority::Low;
                job.deadline = Instant::now() + self.queues.borrow().options().request_timeout;
                let engine = Rc::clone(self);
                glommio::spawn_local(async move {
                    let _ = engine.lead(job).await;
                })
                .detach();
            }
            Join::Follower(w) => {
                self.flights.borrow_mut().leave(&job.spec.key, w);
            }
            Join::Bypass | Join::Overloaded => {}
        }
    }
}

fn served_from_cache(body: Bytes, cache: CacheStatus) -> Served {
    Served {
        body,
        cache,
        queue_ms: 0.0,
        processing_ms: 0.0,
        batch_size: 0,
        endpoint: Cow::Borrowed("cache"),
        from_l2: false,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn internal(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(Status::InternalServerError, "internal", message)
}

/// 503 for work refused under load.
pub fn overloaded(message: &'static str) -> ApiError {
    ApiError::new(Status::ServiceUnavailable, "overloaded", message)
}

/// 504 for a request past `REQUEST_TIMEOUT_MS`.
pub fn timeout() -> ApiError {
    ApiError::new(
        Status::GatewayTimeout,
        "timeout",
        "the request did not complete within REQUEST_TIMEOUT_MS",
    )
}

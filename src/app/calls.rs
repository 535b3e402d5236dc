//! The closed set of cross-shard messages of the apps ([`ShardCall`], [`ShardReply`]) and how
//! a shard answers them ([`answer`]). Each service that talks to other shards sees only its
//! own call and reply through a `mesh::Link`; the conversions below are how its messages ride
//! in this set.

use std::rc::Rc;

use crate::ai::context::{ContextCall, ContextReply};
use crate::ai::engine::{EngineFigures, Job, Looked, Outcome};
use crate::ai::invalidation::{Dropped, Invalidation};
use crate::ai::memo::MemoFigures;
use crate::mesh::Answer;
use crate::metrics::MetricsSnapshot;
use crate::monitor::MonitorSummary;
use crate::ratelimit::{RateCall, RateFigures, RateReply, Verdict};

use super::{Shard, Tier};

/// How long a scrape, `/health/detailed` or the monitor waits for each shard's answer.
pub const BROADCAST_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// Answer to `Metrics`: the shard's metrics, and the monitor's summary where it runs.
    Metrics(Box<MetricsSnapshot>, Option<Box<MonitorSummary>>),
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

/// The rate limiter's calls ride as [`ShardCall::RateLimit`].
impl From<RateCall> for ShardCall {
    fn from(call: RateCall) -> Self {
        ShardCall::RateLimit(Box::new(call))
    }
}

/// The rate limiter's replies ride as [`ShardReply::RateLimit`].
impl TryFrom<ShardReply> for RateReply {
    type Error = ShardReply;

    fn try_from(reply: ShardReply) -> Result<Self, ShardReply> {
        match reply {
            ShardReply::RateLimit(r) => Ok(r),
            other => Err(other),
        }
    }
}

/// Invalidations ride as [`ShardCall::Invalidate`].
impl From<Box<Invalidation>> for ShardCall {
    fn from(call: Box<Invalidation>) -> Self {
        ShardCall::Invalidate(call)
    }
}

/// Their answers ride as [`ShardReply::Invalidated`].
impl TryFrom<ShardReply> for Dropped {
    type Error = ShardReply;

    fn try_from(reply: ShardReply) -> Result<Self, ShardReply> {
        match reply {
            ShardReply::Invalidated(n) => Ok(Dropped(n)),
            other => Err(other),
        }
    }
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

/// Answers a mesh call addressed to `shard`: at once where nothing needs waiting for (a cache
/// hit, a ping, a context read), otherwise as a task. Reports and invalidations scan whole
/// structures, so they run as tasks too and never hold up the calls queued behind them.
pub fn answer(shard: &Rc<Shard>, call: ShardCall) -> Answer<ShardReply> {
    match call {
        ShardCall::Ping => Answer::Now(ShardReply::Pong(shard.core.id)),
        ShardCall::Context(call) => Answer::Now(ShardReply::Context(match shard.engine() {
            Some(engine) => crate::ai::context::answer(engine, *call),
            None => ContextReply::Get(None),
        })),
        ShardCall::Ai(job) => match &shard.tier {
            Tier::Gateway(engine) => match engine.lookup(*job) {
                Looked::Answered(outcome) => Answer::Now(ShardReply::Ai(outcome)),
                Looked::Miss(miss) => {
                    let engine = Rc::clone(engine);
                    Answer::Later(Box::pin(async move {
                        ShardReply::Ai(engine.execute_miss(miss).await)
                    }))
                }
            },
            Tier::Model(_) => Answer::Now(ShardReply::Ai(Err(crate::error::ApiError::new(
                crate::http::Status::NotFound,
                "not_a_gateway",
                "this process is a model endpoint",
            )))),
        },
        call => Answer::Later(Box::pin(on_task(Rc::clone(shard), call))),
    }
}

/// Answers the calls that run as tasks.
async fn on_task(shard: Rc<Shard>, call: ShardCall) -> ShardReply {
    match call {
        ShardCall::Info => ShardReply::Info(Box::new(shard.info())),
        ShardCall::Metrics => ShardReply::Metrics(
            Box::new(shard.metrics_snapshot()),
            shard.monitor.as_ref().map(|m| Box::new(m.summary())),
        ),
        ShardCall::Performance => ShardReply::Performance(
            shard
                .monitor
                .as_ref()
                .map(|m| crate::monitor::report::performance(m).to_string()),
        ),
        ShardCall::Invalidate(inv) => ShardReply::Invalidated(match shard.engine() {
            Some(engine) => engine.invalidate(&inv),
            None => 0,
        }),
        ShardCall::RateLimit(call) => ShardReply::RateLimit(match &shard.rate_limits {
            Some(limiter) => limiter.answer(*call).await,
            None => RateReply::Taken(Verdict::Allowed {
                user: None,
                charges: Default::default(),
            }),
        }),
        call @ (ShardCall::Ping | ShardCall::Context(_) | ShardCall::Ai(_)) => {
            match answer(&shard, call) {
                Answer::Now(reply) => reply,
                Answer::Later(work) => work.await,
            }
        }
    }
}

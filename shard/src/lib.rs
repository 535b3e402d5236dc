//! `atlas-shard`: everything one Atlas core owns, as plain synchronous data structures with an
//! injected clock. No glommio, no sockets, no locks: it tests and benches anywhere.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`clock`] | the [`Clock`] trait, the real [`MonotonicClock`], the test [`ManualClock`] |
//! | [`config`] | [`Operation`], [`Strategy`], per-operation [`CacheConfig`], the adaptive TTL |
//! | [`key`] | [`CacheKey`]: canonical key bytes, their 64-bit hash, the owning shard |
//! | [`entry`] | what crosses the cache boundary: [`EntryMeta`], [`Lookup`], [`Hit`], [`SnapshotEntry`] |
//! | [`cache`] | [`Cache`]: the L1 result cache under a byte budget |
//! | [`context`] | [`ContextStore`]: stored user contexts with versions and a TTL, under a byte budget |
//! | [`policy`] | eviction order ([`PolicyKind`]: LRU or S3-FIFO) |
//! | `index` | reverse indexes (user, operation, tag, symbol → entries), crate-private |
//! | [`memo`] | [`Memo`]: exact request bytes → their parse result, under a byte budget (CLOCK) |
//! | [`singleflight`] | [`SingleFlight`]: identical misses share one computation |
//! | [`batch`] | [`BatchQueues`]: per-operation batching with windows, priorities, deadlines |
//! | [`stats`] | counters, histograms and the mergeable [`ShardSnapshot`] |
//! | [`breaker`] | [`CircuitBreaker`]: one model endpoint's closed / open / half-open state machine |
//! | [`balancer`] | [`Balancer`]: power-of-two-choices over peak-EWMA latency, outstanding calls and weight |
//! | [`ratelimit`] | [`Rate`] (GCRA token bucket), [`UserLimits`] per shard, the lock-free [`SharedBucket`], store-backed [`Grant`]s |
//!
//! The server drives everything: it reads the clock through these types, calls `get`/`insert`
//! on the cache, `join`/`complete` on the single-flight table, `push`/`poll` on the batch
//! queues, and turns the returned values into responses. Nothing here calls back.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod balancer;
pub mod batch;
pub mod breaker;
pub mod cache;
pub mod clock;
pub mod config;
pub mod context;
pub mod entry;
mod index;
pub mod key;
pub mod memo;
pub mod policy;
pub mod ratelimit;
pub mod singleflight;
pub mod stats;

pub use balancer::{Balancer, BalancerOptions, EndpointSnapshot, InvalidWeight, XorShift64};
pub use batch::{
    Batch, BatchOptions, BatchQueues, DropReason, Dropped, Poll, Priority, PushError, Pushed,
    QueueKey, Request, RequestId,
};
pub use breaker::{BreakerCounters, BreakerOptions, BreakerState, CircuitBreaker, Permit};
pub use cache::{Cache, CacheOptions, ENTRY_OVERHEAD};
pub use clock::{Clock, ManualClock, MonotonicClock, Timestamp};
pub use config::{adaptive_ttl, CacheConfig, CacheConfigs, Operation, Strategy};
pub use context::{Context, ContextCounters, ContextError, ContextOptions, ContextStore, Written};
pub use entry::{EntryMeta, Hit, InsertError, Lookup, SnapshotEntry};
pub use key::{CacheKey, KeyError};
pub use memo::{Memo, MemoCounters};
pub use policy::PolicyKind;
pub use ratelimit::{Decision, Grant, Rate, SharedBucket, Spend, UserLimitCounters, UserLimits};
pub use singleflight::{FlightOptions, Join, SingleFlight, WaiterId};
pub use stats::{
    BatchStats, CacheCounters, Distribution, FlightCounters, FlushReason, ShardSnapshot,
};

/// A [`ShardSnapshot`] of one shard's structures.
pub fn snapshot<C: Clock, D: Clock, T>(
    cache: &Cache<C>,
    flights: &SingleFlight,
    queues: &BatchQueues<D, T>,
) -> ShardSnapshot {
    ShardSnapshot {
        cache: *cache.counters(),
        cache_entries: cache.len() as u64,
        cache_bytes: cache.bytes_used() as u64,
        cache_max_bytes: cache.options().max_bytes as u64,
        flight: *flights.counters(),
        flights_in_flight: flights.len() as u64,
        batch: queues.stats().clone(),
    }
}

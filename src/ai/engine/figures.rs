//! The engine's counters, and the plain copy a scrape takes of them.

use std::cell::Cell;

use crate::ai::invalidation::Kind;

/// A copy of one engine's counters (plain data, `Send`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineFigures {
    /// Inputs computed by model endpoints.
    pub computations: u64,
    /// Model batches run.
    pub batches: u64,
    /// Background refreshes started.
    pub refreshes: u64,
    /// L1 cache counters.
    pub cache: atlas_shard::CacheCounters,
    /// L1 entries.
    pub cache_entries: u64,
    /// L1 bytes accounted.
    pub cache_bytes: u64,
    /// Single-flight counters.
    pub flights: atlas_shard::FlightCounters,
    /// Requests waiting in the batch queues.
    pub queued: u64,
    /// This shard's view of each endpoint.
    pub endpoints: Vec<crate::ai::pool::EndpointInfo>,
    /// This shard's L2 figures (`None` without Redis).
    pub l2: Option<crate::l2::L2Figures>,
    /// L1 entries removed by invalidations, by [`Kind`].
    pub invalidated: [u64; Kind::COUNT],
    /// Stored user contexts.
    pub context_entries: u64,
    /// Bytes accounted to stored user contexts.
    pub context_bytes: u64,
    /// Context store counters.
    pub contexts: atlas_shard::ContextCounters,
}

impl EngineFigures {
    /// Adds `o`'s counters (endpoint views are per shard and not merged).
    pub fn merge(&mut self, o: &EngineFigures) {
        self.computations += o.computations;
        self.batches += o.batches;
        self.refreshes += o.refreshes;
        self.cache.merge(&o.cache);
        self.cache_entries += o.cache_entries;
        self.cache_bytes += o.cache_bytes;
        self.flights.merge(&o.flights);
        self.queued += o.queued;
        match (&mut self.l2, &o.l2) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.l2 = Some(b.clone()),
            _ => {}
        }
        for (a, b) in self.invalidated.iter_mut().zip(o.invalidated) {
            *a += b;
        }
        self.context_entries += o.context_entries;
        self.context_bytes += o.context_bytes;
        self.contexts.merge(&o.contexts);
    }
}

/// Plain counters of this shard's engine.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Inputs computed by the model (one per item in each batch).
    pub computations: Cell<u64>,
    /// Model batches run.
    pub batches: Cell<u64>,
    /// Background refreshes started (stale-while-revalidate and refresh-ahead).
    pub refreshes: Cell<u64>,
    /// L1 entries removed by invalidations, by [`Kind`].
    pub invalidated: [Cell<u64>; Kind::COUNT],
}

pub(super) fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
}

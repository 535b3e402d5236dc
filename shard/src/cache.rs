//! The L1 result cache of one shard: exact response bodies under a byte budget, with TTL and
//! stale windows, invalidation by key, tag, symbol, user and operation, refresh-ahead reports
//! and snapshots.
//!
//! Hot path (`get`): one hash-map probe on the precomputed key hash, a full key-bytes compare,
//! a timestamp compare, a reference-count increment on the body. Owns the slot table and the
//! budget; delegates eviction order to [`crate::policy`] and reverse indexes to
//! `crate::index`. Single-threaded by ownership (one cache per shard); no I/O.

use std::time::Duration;

use bytes::Bytes;

use crate::clock::{duration_millis_u32, Clock};
use crate::config::Operation;
use crate::entry::{EntryMeta, Hit, InsertError, Lookup, SnapshotEntry};
use crate::index::{DepKind, Index};
use crate::key::{hash_key_bytes, parse, CacheKey, HashIndex};
use crate::policy::{Policy, PolicyKind};
use crate::stats::CacheCounters;

/// Flag: refresh-ahead applies to this entry.
const WARM: u8 = 1;
/// Flag: refresh-ahead was already reported for this entry.
const REPORTED: u8 = 2;

/// Construction parameters of a [`Cache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// The byte budget (`ATLAS_CACHE_MAX_BYTES / shards`): accounted bytes never exceed it.
    pub max_bytes: usize,
    /// Largest accounted size of one entry; larger results are not stored.
    pub max_entry_bytes: usize,
    /// Eviction policy.
    pub policy: PolicyKind,
    /// Refresh-ahead: an entry is hot once it has been read this many times.
    pub refresh_min_hits: u32,
    /// Refresh-ahead: a hot entry is reported in the last this-many percent of its TTL.
    pub refresh_window_percent: u8,
}

impl CacheOptions {
    /// Defaults for a budget: S3-FIFO, entries up to an eighth of the budget, refresh-ahead
    /// after 3 reads in the last 10 % of the TTL.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        CacheOptions {
            max_bytes,
            max_entry_bytes: max_bytes / 8,
            policy: PolicyKind::S3Fifo,
            refresh_min_hits: 3,
            refresh_window_percent: 10,
        }
    }
}

/// One stored result. Key and body share one buffer: `buf = key ++ body`.
#[derive(Debug)]
struct Entry {
    buf: Bytes,
    key_len: u32,
    /// Accounted bytes (what `used` was charged).
    charge: u32,
    /// Milliseconds on the cache's clock.
    created_ms: u64,
    ttl_ms: u32,
    swr_ms: u32,
    sie_ms: u32,
    hits: u32,
    flags: u8,
    /// Quantised to 1/255.
    confidence: u8,
    /// Quantised to 1/255.
    volatility: u8,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.buf[..self.key_len as usize]
    }

    /// Age past which the entry is useless.
    fn retention_ms(&self) -> u64 {
        u64::from(self.ttl_ms) + u64::from(self.swr_ms.max(self.sie_ms))
    }
}

/// Accounted bytes of one slot besides key, body and tags: the entry, the hash-map bucket at
/// worst load (16-byte bucket + control byte, half full), the body's shared reference-count
/// block, and the policy's and indexes' per-slot records.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Option<Entry>>()
    + 2 * 17
    + 32
    + Policy::BYTES_PER_ENTRY
    + Index::BYTES_PER_ENTRY;

fn quantise(x: f32) -> u8 {
    if x.is_nan() {
        0
    } else {
        (x.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// The L1 result cache of one shard.
#[derive(Debug)]
pub struct Cache<C: Clock> {
    clock: C,
    opts: CacheOptions,
    /// Accounted bytes of live entries; never above `opts.max_bytes`.
    used: usize,
    /// Key hash → slot. One entry per hash: an insert whose hash collides replaces the older
    /// entry (lookups compare full key bytes, so this only costs a miss).
    map: HashIndex<u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    policy: Policy,
    index: Index,
    counters: CacheCounters,
    /// Next slot the expiry sweep looks at.
    sweep_cursor: usize,
    /// Reused buffer of slots to remove.
    scratch: Vec<u32>,
}

impl<C: Clock> Cache<C> {
    /// An empty cache.
    pub fn new(opts: CacheOptions, clock: C) -> Self {
        Cache {
            clock,
            opts,
            used: 0,
            map: HashIndex::default(),
            slots: Vec::new(),
            free: Vec::new(),
            policy: Policy::new(opts.policy),
            index: Index::default(),
            counters: CacheCounters::default(),
            sweep_cursor: 0,
            scratch: Vec::new(),
        }
    }

    /// Live entries (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Accounted bytes in use.
    pub fn bytes_used(&self) -> usize {
        self.used
    }

    /// The options the cache was built with.
    pub fn options(&self) -> &CacheOptions {
        &self.opts
    }

    /// Counters since construction.
    pub fn counters(&self) -> &CacheCounters {
        &self.counters
    }

    /// Distinct users, tags and symbols currently indexed.
    pub fn indexed_names(&self) -> (usize, usize, usize) {
        self.index.name_counts()
    }

    /// The eviction policy in use.
    pub fn policy(&self) -> PolicyKind {
        self.policy.kind()
    }

    /// The bytes an insert of `key`, a body of `body_len` bytes and `meta` would be charged.
    pub fn charge_of(key: &CacheKey, body_len: usize, meta: &EntryMeta) -> usize {
        let user = key.user().map_or(0, str::len);
        let deps: usize = meta
            .tags
            .iter()
            .chain(&meta.symbols)
            .map(|s| 2 * s.len())
            .sum();
        key.bytes().len()
            + body_len
            + ENTRY_OVERHEAD
            + 2 * user
            + deps
            + (meta.tags.len() + meta.symbols.len()) * Index::BYTES_PER_DEP
    }

    /// Looks `key` up.
    pub fn get(&mut self, key: &CacheKey) -> Lookup {
        let Some(&slot) = self.map.get(&key.hash()) else {
            self.counters.misses += 1;
            return Lookup::Miss;
        };
        let now_ms = self.clock.now().as_millis();
        let (min_hits, window) = (self.opts.refresh_min_hits, self.opts.refresh_window_percent);
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            self.counters.misses += 1;
            return Lookup::Miss;
        };
        if e.key() != key.bytes() {
            self.counters.collisions += 1;
            self.counters.misses += 1;
            return Lookup::Miss;
        }
        let age = now_ms.saturating_sub(e.created_ms);
        let ttl = u64::from(e.ttl_ms);
        let hit = |e: &mut Entry, count: bool, refresh: bool| {
            if count {
                e.hits = e.hits.saturating_add(1);
            }
            Hit {
                body: e.buf.slice(e.key_len as usize..),
                age: Duration::from_millis(age),
                ttl: Duration::from_millis(ttl),
                hits: e.hits,
                refresh_ahead: refresh,
            }
        };
        if age < ttl {
            let mut refresh = false;
            if e.flags & (WARM | REPORTED) == WARM
                && e.hits.saturating_add(1) >= min_hits
                && age * 100 >= ttl * (100 - u64::from(window.min(100)))
            {
                e.flags |= REPORTED;
                refresh = true;
                self.counters.refresh_ahead += 1;
            }
            let h = hit(e, true, refresh);
            self.policy.touch(slot);
            self.counters.hits += 1;
            Lookup::Fresh(h)
        } else if age < ttl + u64::from(e.swr_ms) {
            let h = hit(e, true, false);
            self.policy.touch(slot);
            self.counters.stale_hits += 1;
            Lookup::Stale(h)
        } else if age < ttl + u64::from(e.sie_ms) {
            let h = hit(e, false, false);
            self.counters.stale_if_error += 1;
            self.counters.misses += 1;
            Lookup::StaleIfError(h)
        } else {
            self.remove_slot(slot);
            self.counters.expirations += 1;
            self.counters.misses += 1;
            Lookup::Miss
        }
    }

    /// Stores `body` under `key`, replacing any older entry, evicting as needed to stay within
    /// the budget. Returns the number of entries evicted.
    pub fn insert(
        &mut self,
        key: &CacheKey,
        body: Bytes,
        meta: &EntryMeta,
    ) -> Result<usize, InsertError> {
        let now_ms = self.clock.now().as_millis();
        self.insert_at(key, &body, meta, now_ms, 0, 0)
    }

    fn insert_at(
        &mut self,
        key: &CacheKey,
        body: &[u8],
        meta: &EntryMeta,
        created_ms: u64,
        hits: u32,
        extra_flags: u8,
    ) -> Result<usize, InsertError> {
        if let Some(&old) = self.map.get(&key.hash()) {
            self.remove_slot(old);
            self.counters.replaced += 1;
        }
        let charge = Self::charge_of(key, body.len(), meta);
        let max = self
            .opts
            .max_entry_bytes
            .min(self.opts.max_bytes)
            .min(u32::MAX as usize);
        if charge > max {
            self.counters.too_large += 1;
            return Err(InsertError::TooLarge { charge, max });
        }
        let evicted = self.evict_for(charge);
        let mut buf = Vec::with_capacity(key.bytes().len() + body.len());
        buf.extend_from_slice(key.bytes());
        buf.extend_from_slice(body);
        let entry = Entry {
            buf: Bytes::from(buf),
            key_len: key.bytes().len() as u32,
            charge: charge as u32,
            created_ms,
            ttl_ms: duration_millis_u32(meta.ttl),
            swr_ms: duration_millis_u32(meta.stale_while_revalidate),
            sie_ms: duration_millis_u32(meta.stale_if_error),
            hits,
            flags: if meta.refresh_ahead { WARM } else { 0 } | extra_flags,
            confidence: quantise(meta.confidence),
            volatility: quantise(meta.volatility),
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key.hash(), slot);
        self.policy.insert(slot, key.hash());
        self.index
            .add(slot, key.operation(), key.user(), &meta.tags, &meta.symbols);
        self.used += charge;
        self.counters.inserts += 1;
        Ok(evicted)
    }

    /// Evicts entries in policy order until `need` more bytes fit in the budget (or nothing is
    /// left to evict). Returns how many were evicted.
    fn evict_for(&mut self, need: usize) -> usize {
        let mut evicted = 0;
        while self.used + need > self.opts.max_bytes {
            let slots = &self.slots;
            let hash_of = |s: u32| {
                slots
                    .get(s as usize)
                    .and_then(Option::as_ref)
                    .map_or(0, |e| hash_key_bytes(e.key()))
            };
            let Some(victim) = self.policy.evict(hash_of) else {
                break;
            };
            self.remove_slot(victim);
            evicted += 1;
        }
        self.counters.evictions += evicted as u64;
        evicted
    }

    /// The live slot holding exactly `key`, if any.
    fn slot_of(&self, key: &CacheKey) -> Option<u32> {
        let &slot = self.map.get(&key.hash())?;
        let e = self.slots.get(slot as usize)?.as_ref()?;
        (e.key() == key.bytes()).then_some(slot)
    }

    /// Removes the entry in `slot` from the map, the policy, the indexes and the budget.
    fn remove_slot(&mut self, slot: u32) -> bool {
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return false;
        };
        self.map.remove(&hash_key_bytes(e.key()));
        self.policy.remove(slot);
        self.index.remove(slot);
        self.used -= e.charge as usize;
        self.free.push(slot);
        true
    }

    /// Incremental maintenance, called by the shard on a timer: looks at up to `max_scan`
    /// slots from where the last sweep stopped, removes entries past their TTL plus stale
    /// windows, and pushes onto `refresh` the keys of warm-up-enabled hot entries that are in
    /// the last part of their TTL and not yet reported. Returns the number of entries removed.
    /// Cost O(max_scan).
    pub fn sweep(&mut self, max_scan: usize, refresh: &mut Vec<CacheKey>) -> usize {
        let now_ms = self.clock.now().as_millis();
        let n = self.slots.len();
        let mut removed = 0;
        for _ in 0..max_scan.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
            }
            let slot = self.sweep_cursor;
            self.sweep_cursor += 1;
            let Some(e) = self.slots[slot].as_mut() else {
                continue;
            };
            let age = now_ms.saturating_sub(e.created_ms);
            if age >= e.retention_ms() {
                self.remove_slot(slot as u32);
                self.counters.expirations += 1;
                removed += 1;
                continue;
            }
            let ttl = u64::from(e.ttl_ms);
            let window = u64::from(self.opts.refresh_window_percent.min(100));
            if e.flags & (WARM | REPORTED) == WARM
                && e.hits >= self.opts.refresh_min_hits
                && age < ttl
                && age * 100 >= ttl * (100 - window)
            {
                if let Ok(k) = CacheKey::from_bytes(e.key()) {
                    e.flags |= REPORTED;
                    self.counters.refresh_ahead += 1;
                    refresh.push(k);
                }
            }
        }
        removed
    }
}

mod dependencies;
mod snapshot;

#[cfg(test)]
mod tests;

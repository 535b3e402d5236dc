//! Stored user contexts of one shard (`PUT /ai/context/{user_id}`): one value per user, with a
//! version and an expiry, under a byte budget.
//!
//! Plain data with an injected clock, like the cache; the server decides what a value is and
//! how many bytes it counts for. Every context lives the same TTL, so the order of writes is
//! also the order of expiry: expired contexts are dropped when read and by [`ContextStore::sweep`]
//! (which only looks at the oldest), and when a new context does not fit the budget the
//! oldest-written ones leave first. Single-threaded by ownership; no I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::clock::Clock;

/// Accounted bytes of one stored context besides its value and user id: the map entry, the
/// order entry and the slot.
pub const CONTEXT_OVERHEAD: usize = 128;

/// Construction parameters of a [`ContextStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextOptions {
    /// How long a context lives after it was written (`CONTEXT_CACHE_TTL`).
    pub ttl: Duration,
    /// The byte budget of this shard's store; accounted bytes never exceed it.
    pub max_bytes: usize,
}

/// A stored context as a read returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Context<V> {
    /// The value.
    pub value: V,
    /// 1 for a new context, one more with every write that replaces a live one.
    pub version: u64,
    /// Time left before it expires.
    pub expires_in: Duration,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The version now stored.
    pub version: u64,
    /// Time left before it expires (the TTL).
    pub expires_in: Duration,
    /// Other users' contexts dropped to make room.
    pub evicted: usize,
}

/// Why a write stored nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// The context alone is larger than the store's budget.
    TooLarge {
        /// Accounted bytes of the context.
        charge: usize,
        /// The budget.
        max: usize,
    },
}

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextError::TooLarge { charge, max } => write!(
                f,
                "a context of {charge} accounted bytes exceeds the store's {max} byte budget"
            ),
        }
    }
}

impl std::error::Error for ContextError {}

/// Counters of one store since construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextCounters {
    /// Contexts written.
    pub writes: u64,
    /// Reads that found a live context.
    pub hits: u64,
    /// Reads that found none (or only an expired one).
    pub misses: u64,
    /// Contexts removed on request.
    pub deletes: u64,
    /// Contexts dropped to make room for another.
    pub evictions: u64,
    /// Contexts dropped past their TTL.
    pub expirations: u64,
}

impl ContextCounters {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &ContextCounters) {
        self.writes += o.writes;
        self.hits += o.hits;
        self.misses += o.misses;
        self.deletes += o.deletes;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
    }
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    version: u64,
    /// Milliseconds on the store's clock.
    written_ms: u64,
    /// Accounted bytes.
    charge: usize,
    /// Position in `order`.
    seq: u64,
}

/// The stored contexts of one shard.
#[derive(Debug)]
pub struct ContextStore<C: Clock, V> {
    clock: C,
    opts: ContextOptions,
    /// User id → context.
    map: HashMap<Box<str>, Slot<V>, ahash::RandomState>,
    /// Write sequence → user id: oldest write (and next expiry) first.
    order: BTreeMap<u64, Box<str>>,
    next_seq: u64,
    /// Accounted bytes; never above `opts.max_bytes`.
    used: usize,
    counters: ContextCounters,
}

impl<C: Clock, V: Clone> ContextStore<C, V> {
    /// An empty store.
    pub fn new(opts: ContextOptions, clock: C) -> Self {
        ContextStore {
            clock,
            opts,
            map: HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            used: 0,
            counters: ContextCounters::default(),
        }
    }

    /// Contexts held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Accounted bytes in use.
    pub fn bytes_used(&self) -> usize {
        self.used
    }

    /// Counters since construction.
    pub fn counters(&self) -> &ContextCounters {
        &self.counters
    }

    /// The bytes a context of `value_bytes` for `user` is charged.
    pub fn charge_of(user: &str, value_bytes: usize) -> usize {
        value_bytes + user.len() + CONTEXT_OVERHEAD
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.opts.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn expires_in(&self, written_ms: u64, now_ms: u64) -> Duration {
        Duration::from_millis(
            self.ttl_ms()
                .saturating_sub(now_ms.saturating_sub(written_ms)),
        )
    }

    fn is_expired(&self, slot: &Slot<V>, now_ms: u64) -> bool {
        now_ms.saturating_sub(slot.written_ms) >= self.ttl_ms()
    }

    /// Removes `user`'s slot from the map, the order and the budget.
    fn take(&mut self, user: &str) -> Option<Slot<V>> {
        let slot = self.map.remove(user)?;
        self.order.remove(&slot.seq);
        self.used -= slot.charge;
        Some(slot)
    }

    /// Stores `value` (counted as `value_bytes`) as `user`'s context, replacing any earlier
    /// one, with a fresh TTL. Expired contexts, then the oldest-written ones, are dropped
    /// until it fits.
    pub fn put(
        &mut self,
        user: &str,
        value: V,
        value_bytes: usize,
    ) -> Result<Written, ContextError> {
        let charge = Self::charge_of(user, value_bytes);
        if charge > self.opts.max_bytes {
            return Err(ContextError::TooLarge {
                charge,
                max: self.opts.max_bytes,
            });
        }
        let now_ms = self.clock.now().as_millis();
        let version = match self.take(user) {
            Some(old) if !self.is_expired(&old, now_ms) => old.version + 1,
            Some(_) => {
                self.counters.expirations += 1;
                1
            }
            None => 1,
        };
        self.sweep();
        let mut evicted = 0;
        while self.used + charge > self.opts.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.map.remove(&oldest) {
                self.used -= slot.charge;
                evicted += 1;
            }
        }
        self.counters.evictions += evicted as u64;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, user.into());
        self.map.insert(
            user.into(),
            Slot {
                value,
                version,
                written_ms: now_ms,
                charge,
                seq,
            },
        );
        self.used += charge;
        self.counters.writes += 1;
        Ok(Written {
            version,
            expires_in: self.opts.ttl,
            evicted,
        })
    }

    /// `user`'s live context, if any (an expired one is dropped).
    pub fn get(&mut self, user: &str) -> Option<Context<V>> {
        let now_ms = self.clock.now().as_millis();
        let expired = match self.map.get(user) {
            None => {
                self.counters.misses += 1;
                return None;
            }
            Some(slot) => self.is_expired(slot, now_ms),
        };
        if expired {
            self.take(user);
            self.counters.expirations += 1;
            self.counters.misses += 1;
            return None;
        }
        let slot = self.map.get(user)?;
        self.counters.hits += 1;
        Some(Context {
            value: slot.value.clone(),
            version: slot.version,
            expires_in: self.expires_in(slot.written_ms, now_ms),
        })
    }

    /// Removes `user`'s context; returns the version removed if it was live.
    pub fn remove(&mut self, user: &str) -> Option<u64> {
        let now_ms = self.clock.now().as_millis();
        let slot = self.take(user)?;
        if self.is_expired(&slot, now_ms) {
            self.counters.expirations += 1;
            return None;
        }
        self.counters.deletes += 1;
        Some(slot.version)
    }

    /// Drops expired contexts, oldest first, stopping at the first live one. Cost: the number
    /// dropped, plus one. Returns how many were dropped.
    pub fn sweep(&mut self) -> usize {
        let now_ms = self.clock.now().as_millis();
        let mut dropped = 0;
        while let Some((_, user)) = self.order.first_key_value() {
            let expired = self
                .map
                .get(user)
                .is_none_or(|slot| self.is_expired(slot, now_ms));
            if !expired {
                break;
            }
            if let Some((_, user)) = self.order.pop_first() {
                if let Some(slot) = self.map.remove(&user) {
                    self.used -= slot.charge;
                    dropped += 1;
                }
            }
        }
        self.counters.expirations += dropped as u64;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn store(ttl_s: u64, max_bytes: usize) -> (ContextStore<ManualClock, u32>, ManualClock) {
        let clock = ManualClock::new();
        let opts = ContextOptions {
            ttl: Duration::from_secs(ttl_s),
            max_bytes,
        };
        (ContextStore::new(opts, clock.clone()), clock)
    }

    #[test]
    fn versions_count_writes_of_a_live_context() {
        let (mut s, clock) = store(10, 1 << 20);
        assert_eq!(s.put("u1", 1, 10).unwrap().version, 1);
        assert_eq!(s.put("u1", 2, 10).unwrap().version, 2);
        clock.advance_ms(4_000);
        let c = s.get("u1").unwrap();
        assert_eq!(
            (c.value, c.version, c.expires_in),
            (2, 2, Duration::from_secs(6))
        );
        assert_eq!(s.remove("u1"), Some(2));
        assert_eq!(s.get("u1"), None);
        assert_eq!(s.remove("u1"), None);
        assert_eq!(s.put("u1", 3, 10).unwrap().version, 1, "a new context");
        assert_eq!(
            s.bytes_used(),
            ContextStore::<ManualClock, u32>::charge_of("u1", 10)
        );
        let c = s.counters();
        assert_eq!((c.writes, c.hits, c.misses, c.deletes), (3, 1, 1, 1));
    }

    #[test]
    fn contexts_expire_after_the_ttl() {
        let (mut s, clock) = store(2, 1 << 20);
        s.put("a", 1, 10).unwrap();
        clock.advance_ms(1_000);
        s.put("b", 2, 10).unwrap();
        clock.advance_ms(999);
        assert!(s.get("a").is_some());
        clock.advance_ms(1);
        assert_eq!(s.get("a"), None, "expired at exactly the TTL");
        // Rewriting a live context renews its TTL and bumps its version.
        s.put("b", 3, 10).unwrap();
        clock.advance_ms(1_500);
        assert_eq!(s.get("b").map(|c| c.version), Some(2));
        clock.advance_ms(500);
        assert_eq!(s.sweep(), 1);
        assert!(s.is_empty());
        assert_eq!(s.bytes_used(), 0);
        assert_eq!(s.counters().expirations, 2);
    }

    #[test]
    fn the_budget_drops_the_oldest_written_first() {
        let charge = ContextStore::<ManualClock, u32>::charge_of("u0", 100);
        let (mut s, _) = store(60, 3 * charge);
        for (i, user) in ["u0", "u1", "u2"].iter().enumerate() {
            assert_eq!(s.put(user, i as u32, 100).unwrap().evicted, 0);
        }
        // Rewriting u0 makes it the newest: u1 is now the oldest.
        assert_eq!(s.put("u0", 9, 100).unwrap().evicted, 0);
        assert_eq!(s.put("u3", 3, 100).unwrap().evicted, 1);
        assert_eq!(s.get("u1"), None);
        assert!(s.get("u0").is_some() && s.get("u2").is_some() && s.get("u3").is_some());
        assert!(s.bytes_used() <= 3 * charge);
        assert_eq!(
            s.put("big", 0, 3 * charge),
            Err(ContextError::TooLarge {
                charge: ContextStore::<ManualClock, u32>::charge_of("big", 3 * charge),
                max: 3 * charge
            })
        );
        assert_eq!(s.len(), 3, "a refused write drops nothing");
    }
}

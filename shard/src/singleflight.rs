//! The single-flight table: identical cache misses in flight share one computation.
//!
//! Synchronous and value-based: the first caller of a key becomes its leader and computes; later
//! callers get a [`WaiterId`], which the async server maps to a waker; the leader's
//! [`SingleFlight::complete`] hands back the waiter ids to wake with its result (success or
//! error). The table stores no results and no wakers. Bounded:
//!
//! - past `max_keys` keys in flight, a new key's caller gets [`Join::Bypass`]: it goes straight
//!   to the batch queue uncoalesced (correct, only deduplication is lost; the batch queue's own
//!   bound is then the overload guard);
//! - past `max_waiters` followers of one key, a caller gets [`Join::Overloaded`]: a stampede on
//!   one key beyond that is itself overload, answered 503 rather than sent to a model.

use std::collections::hash_map::Entry as MapEntry;

use crate::key::{CacheKey, HashIndex};
use crate::stats::FlightCounters;

/// Bounds of a [`SingleFlight`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightOptions {
    /// Most keys in flight at once.
    pub max_keys: usize,
    /// Most followers waiting on one key.
    pub max_waiters: usize,
}

impl Default for FlightOptions {
    /// 4096 keys, 1024 waiters per key.
    fn default() -> Self {
        FlightOptions {
            max_keys: 4096,
            max_waiters: 1024,
        }
    }
}

/// Identifies one waiting caller; unique per table for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(pub u64);

/// What a caller that missed the cache should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Nobody computes this key yet: compute it, then call [`SingleFlight::complete`] exactly
    /// once, whether the computation succeeded or failed.
    Leader,
    /// The key is being computed: wait to be woken with the leader's result.
    Follower(WaiterId),
    /// The table is full (or another key with the same hash is in flight): compute alone,
    /// without coalescing and without calling `complete`.
    Bypass,
    /// The key already has its maximum of waiters: answer with an overload error.
    Overloaded,
}

/// One computation in flight.
#[derive(Debug)]
struct Flight {
    /// Full key bytes: a hash collision must not join another key's computation.
    key: Box<[u8]>,
    waiters: Vec<WaiterId>,
}

/// The single-flight table of one shard.
#[derive(Debug, Default)]
pub struct SingleFlight {
    opts: FlightOptions,
    flights: HashIndex<Flight>,
    next_waiter: u64,
    counters: FlightCounters,
}

impl SingleFlight {
    /// An empty table.
    pub fn new(opts: FlightOptions) -> Self {
        SingleFlight {
            opts,
            ..Default::default()
        }
    }

    /// Keys in flight.
    pub fn len(&self) -> usize {
        self.flights.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.flights.is_empty()
    }

    /// Counters since construction.
    pub fn counters(&self) -> &FlightCounters {
        &self.counters
    }

    /// Whether `key` is being computed.
    pub fn in_flight(&self, key: &CacheKey) -> bool {
        self.flights
            .get(&key.hash())
            .is_some_and(|f| *f.key == *key.bytes())
    }

    /// Followers waiting on `key`.
    pub fn waiters(&self, key: &CacheKey) -> usize {
        self.flights
            .get(&key.hash())
            .filter(|f| *f.key == *key.bytes())
            .map_or(0, |f| f.waiters.len())
    }

    /// A caller missed the cache on `key`.
    pub fn join(&mut self, key: &CacheKey) -> Join {
        let at_cap = self.flights.len() >= self.opts.max_keys;
        match self.flights.entry(key.hash()) {
            MapEntry::Occupied(mut o) => {
                let f = o.get_mut();
                if *f.key != *key.bytes() {
                    self.counters.bypassed += 1;
                    return Join::Bypass;
                }
                if f.waiters.len() >= self.opts.max_waiters {
                    self.counters.overloaded += 1;
                    return Join::Overloaded;
                }
                let id = WaiterId(self.next_waiter);
                self.next_waiter += 1;
                f.waiters.push(id);
                self.counters.joins += 1;
                Join::Follower(id)
            }
            MapEntry::Vacant(v) => {
                if at_cap {
                    self.counters.bypassed += 1;
                    return Join::Bypass;
                }
                v.insert(Flight {
                    key: key.bytes().into(),
                    waiters: Vec::new(),
                });
                self.counters.leaders += 1;
                Join::Leader
            }
        }
    }

    /// The leader of `key` finished (with a result or an error). Returns the followers to wake,
    /// in join order; empty if `key` was not in flight.
    pub fn complete(&mut self, key: &CacheKey) -> Vec<WaiterId> {
        match self.flights.entry(key.hash()) {
            MapEntry::Occupied(o) if *o.get().key == *key.bytes() => {
                self.counters.completed += 1;
                o.remove().waiters
            }
            _ => Vec::new(),
        }
    }

    /// A follower stopped waiting (its client went away or its deadline passed). Returns
    /// whether it was waiting.
    pub fn leave(&mut self, key: &CacheKey, waiter: WaiterId) -> bool {
        let Some(f) = self.flights.get_mut(&key.hash()) else {
            return false;
        };
        if *f.key != *key.bytes() {
            return false;
        }
        let before = f.waiters.len();
        f.waiters.retain(|w| *w != waiter);
        before != f.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Operation;

    fn key(s: &str) -> CacheKey {
        CacheKey::new(Operation::RiskAssessment, Some("u"), s.as_bytes()).unwrap()
    }

    #[test]
    fn first_leads_others_follow_and_are_woken_in_order() {
        let mut t = SingleFlight::new(FlightOptions::default());
        let k = key("a");
        assert_eq!(t.join(&k), Join::Leader);
        let Join::Follower(w1) = t.join(&k) else {
            panic!()
        };
        let Join::Follower(w2) = t.join(&k) else {
            panic!()
        };
        assert_ne!(w1, w2);
        assert!(t.in_flight(&k));
        assert_eq!(t.waiters(&k), 2);
        assert_eq!(t.complete(&k), vec![w1, w2]);
        assert!(!t.in_flight(&k));
        assert!(t.complete(&k).is_empty());
        // After completion the next miss leads again.
        assert_eq!(t.join(&k), Join::Leader);
        assert_eq!(t.counters().joins, 2);
        assert_eq!(t.counters().leaders, 2);
    }

    #[test]
    fn caps_bypass_and_overload() {
        let mut t = SingleFlight::new(FlightOptions {
            max_keys: 1,
            max_waiters: 1,
        });
        let (a, b) = (key("a"), key("b"));
        assert_eq!(t.join(&a), Join::Leader);
        assert_eq!(t.join(&b), Join::Bypass);
        assert!(matches!(t.join(&a), Join::Follower(_)));
        assert_eq!(t.join(&a), Join::Overloaded);
        assert_eq!(t.counters().bypassed, 1);
        assert_eq!(t.counters().overloaded, 1);
        assert_eq!(t.complete(&a).len(), 1);
        assert_eq!(t.join(&b), Join::Leader);
    }

    #[test]
    fn leave_removes_a_waiter() {
        let mut t = SingleFlight::new(FlightOptions::default());
        let k = key("a");
        t.join(&k);
        let Join::Follower(w1) = t.join(&k) else {
            panic!()
        };
        let Join::Follower(w2) = t.join(&k) else {
            panic!()
        };
        assert!(t.leave(&k, w1));
        assert!(!t.leave(&k, w1));
        assert_eq!(t.complete(&k), vec![w2]);
    }

    #[test]
    fn different_key_with_same_hash_never_joins() {
        let mut t = SingleFlight::new(FlightOptions::default());
        let a = key("a");
        // Forge a flight under a's hash with other key bytes.
        t.flights.insert(
            a.hash(),
            Flight {
                key: b"other".to_vec().into(),
                waiters: vec![],
            },
        );
        assert_eq!(t.join(&a), Join::Bypass);
        assert!(!t.in_flight(&a));
        assert!(t.complete(&a).is_empty());
        assert!(!t.leave(&a, WaiterId(0)));
    }
}

//! When each selector was last invalidated on one shard, so that a result read back from
//! Redis can be refused when an invalidation applied here names it and is not older than the
//! result.
//!
//! Why it is needed: Redis deletes and write-behind stores race. Instance A answers a miss and
//! queues its store; instance B invalidates the result's tag, deletes the tag's members from
//! Redis and publishes; A's store lands after B's delete. A drops its L1 copy when the message
//! arrives, and the next lookup on any instance would find A's store in Redis and serve it
//! again. A result is stamped with the time its computation *started* (its input was read
//! then), so every instance that has applied the invalidation refuses every result whose input
//! was read before it, wherever and whenever that result was written. The recomputed result
//! then overwrites the stale record.
//!
//! Times are wall-clock milliseconds since the Unix epoch, the same clock as the records'
//! `created_unix_ms`. Clocks of different hosts agree only as well as NTP keeps them: a result
//! written by a host whose clock runs ahead by more than the time between the invalidation and
//! its arrival here can slip through (documented in the README).

use std::collections::HashMap;

use atlas_shard::{CacheKey, Operation};

use super::invalidation::Invalidation;

/// Most names one kind of selector remembers. Past it, that kind is forgotten and the floor
/// rises to the time of the newest invalidation forgotten: every result computed before it
/// is then refused, which costs misses, never correctness.
pub const MAX_NAMES: usize = 16_384;

/// The latest invalidation time per selector.
#[derive(Debug, Default)]
pub struct Horizon {
    /// Results created at or before this are refused (`all`, and forgotten names).
    floor: u64,
    tags: Names,
    symbols: Names,
    users: Names,
    keys: Names,
    operations: [u64; Operation::COUNT],
}

/// Latest time per name, bounded by [`MAX_NAMES`].
#[derive(Debug, Default)]
struct Names {
    at: HashMap<Box<[u8]>, u64, ahash::RandomState>,
    /// The newest time dropped when the map was last emptied.
    forgotten: u64,
}

impl Names {
    fn set(&mut self, name: &[u8], at: u64) {
        if self.at.len() >= MAX_NAMES && !self.at.contains_key(name) {
            let newest = self.at.values().copied().max().unwrap_or(0);
            self.forgotten = self.forgotten.max(newest);
            self.at.clear();
        }
        let slot = self.at.entry(name.into()).or_insert(0);
        *slot = (*slot).max(at);
    }

    fn get(&self, name: &[u8]) -> u64 {
        self.at.get(name).copied().unwrap_or(0)
    }
}

/// A key is remembered by its 64-bit hash, not its bytes (a canonical input can be as large as
/// a request body): two keys that collide only share a time, which refuses more, never less.
fn key_name(key: &CacheKey) -> [u8; 8] {
    key.hash().to_le_bytes()
}

impl Horizon {
    /// Records `inv` as applied at `now_unix_ms`.
    pub fn record(&mut self, inv: &Invalidation, now_unix_ms: u64) {
        let at = now_unix_ms;
        if inv.all {
            self.floor = self.floor.max(at);
        }
        for t in &inv.tags {
            self.tags.set(t.as_bytes(), at);
        }
        for s in &inv.symbols {
            self.symbols.set(s.as_bytes(), at);
        }
        for u in &inv.users {
            self.users.set(u.as_bytes(), at);
        }
        for k in &inv.keys {
            if let Ok(key) = k.cache_key() {
                self.keys.set(&key_name(&key), at);
            }
        }
        for op in &inv.operations {
            let slot = &mut self.operations[op.index()];
            *slot = (*slot).max(at);
        }
    }

    /// The time of the latest invalidation applied here that selects a result under `key`
    /// with these tags and symbols (0 when none did).
    pub fn latest(&self, key: &CacheKey, tags: &[String], symbols: &[String]) -> u64 {
        let mut at = self
            .floor
            .max(self.tags.forgotten)
            .max(self.symbols.forgotten)
            .max(self.users.forgotten)
            .max(self.keys.forgotten)
            .max(self.operations[key.operation().index()])
            .max(self.keys.get(&key_name(key)));
        if let Some(user) = key.user() {
            at = at.max(self.users.get(user.as_bytes()));
        }
        for t in tags {
            at = at.max(self.tags.get(t.as_bytes()));
        }
        for s in symbols {
            at = at.max(self.symbols.get(s.as_bytes()));
        }
        at
    }

    /// Whether a result whose computation started at `created_unix_ms` was invalidated here
    /// since (an invalidation in the same millisecond counts: the order is unknown).
    pub fn refuses(
        &self,
        created_unix_ms: u64,
        key: &CacheKey,
        tags: &[String],
        symbols: &[String],
    ) -> bool {
        self.latest(key, tags, symbols) >= created_unix_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::invalidation::KeyRef;

    fn key(user: &str) -> CacheKey {
        CacheKey::new(Operation::RiskAssessment, Some(user), b"{}").unwrap()
    }

    #[test]
    fn a_result_is_refused_only_by_a_selecting_invalidation_not_older_than_it() {
        let mut h = Horizon::default();
        let (k, tags, symbols) = (key("u1"), vec!["t".to_string()], vec!["AAPL".to_string()]);
        assert!(!h.refuses(1, &k, &tags, &symbols));
        h.record(&Invalidation::of_tags(vec!["other".into()]), 100);
        assert!(!h.refuses(50, &k, &tags, &symbols), "names another tag");
        h.record(&Invalidation::of_tags(vec!["t".into()]), 100);
        assert!(h.refuses(50, &k, &tags, &symbols), "read before");
        assert!(h.refuses(100, &k, &tags, &symbols), "same millisecond");
        assert!(!h.refuses(101, &k, &tags, &symbols), "read after");
        let selectors = [
            Invalidation {
                symbols: symbols.clone(),
                ..Invalidation::default()
            },
            Invalidation {
                users: vec!["u1".into()],
                ..Invalidation::default()
            },
            Invalidation {
                operations: vec![Operation::RiskAssessment],
                ..Invalidation::default()
            },
            Invalidation {
                keys: vec![KeyRef {
                    operation: Operation::RiskAssessment,
                    user_id: "u1".into(),
                    canonical_input: "{}".into(),
                }],
                ..Invalidation::default()
            },
            Invalidation {
                all: true,
                ..Invalidation::default()
            },
        ];
        for (i, inv) in selectors.iter().enumerate() {
            let at = 200 + i as u64 * 10;
            h.record(inv, at);
            assert!(h.refuses(at, &k, &[], &symbols), "{inv:?}");
            assert!(!h.refuses(at + 1, &k, &[], &symbols), "{inv:?}");
        }
        // Other users, operations and keys are untouched by the per-user/op/key selectors.
        let mut h = Horizon::default();
        h.record(&selectors[1], 500);
        h.record(&selectors[2], 500);
        h.record(&selectors[3], 500);
        let other = CacheKey::new(Operation::BudgetOptimization, Some("u2"), b"{}").unwrap();
        assert!(!h.refuses(10, &other, &[], &[]));
    }

    #[test]
    fn a_time_going_backwards_never_lowers_what_is_remembered() {
        let mut h = Horizon::default();
        h.record(&Invalidation::of_tags(vec!["t".into()]), 300);
        h.record(&Invalidation::of_tags(vec!["t".into()]), 200);
        assert!(h.refuses(250, &key("u"), &["t".into()], &[]));
    }

    #[test]
    fn forgetting_names_refuses_more_never_less() {
        let mut h = Horizon::default();
        for i in 0..MAX_NAMES as u64 {
            h.record(&Invalidation::of_tags(vec![format!("t{i}")]), 1_000 + i);
        }
        let k = key("u");
        assert!(!h.refuses(5_000, &k, &["t1".into()], &[]));
        assert!(h.refuses(1_001, &k, &["t1".into()], &[]));
        // One more name empties the map; what it held is now covered by the floor.
        h.record(&Invalidation::of_tags(vec!["new".into()]), 90_000);
        assert!(h.refuses(1_001, &k, &["t1".into()], &[]));
        assert!(h.refuses(1_000 + MAX_NAMES as u64 - 1, &k, &["zzz".into()], &[]));
        assert!(!h.refuses(1_000 + MAX_NAMES as u64, &k, &["zzz".into()], &[]));
        assert!(h.refuses(90_000, &k, &["new".into()], &[]));
    }
}

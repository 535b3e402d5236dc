//! [`Memo`]: a bounded map from exact request bytes to what parsing them produced, so a shard
//! parses and validates each distinct request once instead of on every repetition.
//!
//! It maps *bytes to parse results*, never to answers: whatever it returns is exactly what
//! parsing the same bytes again would return, so invalidation, TTLs and user isolation stay
//! where they are (the cache). The caller decides which bytes make up a request (operation,
//! caller identity, body, the headers that change its meaning) and passes them as parts; two
//! requests share an entry only when every part is byte-identical. The 64-bit hash only
//! locates an entry; the stored bytes are compared in full on every lookup.
//!
//! Bounded in bytes (the stored key bytes plus the cost the caller states for the value);
//! when full, CLOCK (second chance) picks what leaves: an entry read since the hand last
//! passed it stays for one more turn. No clock, no I/O, no locks: one per shard.
//!
//! Hot path: a lookup hashes the parts once and allocates nothing.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

/// Bytes counted per entry beyond its key bytes and the value's stated cost (the map slot,
/// the CLOCK queue slot, the key's allocation).
pub const MEMO_ENTRY_OVERHEAD: usize = 96;

/// Counters of one memo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoCounters {
    /// Lookups that found their bytes.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries stored.
    pub inserts: u64,
    /// Entries removed to make room.
    pub evictions: u64,
    /// Entries not stored because they alone exceed the per-entry limit (or the memo is off).
    pub skipped: u64,
}

impl MemoCounters {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &MemoCounters) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.inserts += o.inserts;
        self.evictions += o.evictions;
        self.skipped += o.skipped;
    }
}

/// Bytes the stored key of these parts takes: each part's u32 length, then its bytes.
fn key_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| 4 + p.len()).sum()
}

/// One stored request.
struct Slot<V> {
    /// The parts, each as a little-endian u32 length then its bytes.
    key: Box<[u8]>,
    value: V,
    /// Bytes this entry counts against the budget.
    cost: usize,
    /// Read since the CLOCK hand last passed it.
    referenced: bool,
}

/// A byte-bounded map from request bytes (given as parts) to a value.
pub struct Memo<V> {
    max_bytes: usize,
    max_entry_bytes: usize,
    hasher: ahash::RandomState,
    slots: HashMap<u64, Slot<V>, ahash::RandomState>,
    /// Every stored hash once, in CLOCK order (front: where the hand is).
    hand: VecDeque<u64>,
    bytes: usize,
    counters: MemoCounters,
}

impl<V> Memo<V> {
    /// A memo holding at most `max_bytes`, and no entry costing more than `max_entry_bytes`.
    /// `max_bytes == 0` turns it off: nothing is stored, every lookup misses.
    pub fn new(max_bytes: usize, max_entry_bytes: usize) -> Self {
        Memo {
            max_bytes,
            max_entry_bytes: max_entry_bytes.min(max_bytes),
            hasher: ahash::RandomState::new(),
            slots: HashMap::with_hasher(ahash::RandomState::new()),
            hand: VecDeque::new(),
            bytes: 0,
            counters: MemoCounters::default(),
        }
    }

    /// Whether the memo stores anything at all.
    pub fn is_enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Whether an entry with these key parts could be stored at all; when it could not (too
    /// large, or the memo is off), counts it as skipped, so the caller neither hashes nor
    /// looks up bytes that can never be remembered.
    pub fn could_hold(&mut self, parts: &[&[u8]]) -> bool {
        let fits =
            self.is_enabled() && key_len(parts) + MEMO_ENTRY_OVERHEAD <= self.max_entry_bytes;
        if !fits && self.is_enabled() {
            self.counters.skipped += 1;
        }
        fits
    }

    /// The hash of `parts` (each part's length, then its bytes).
    pub fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in parts {
            h.write_usize(part.len());
            h.write(part);
        }
        h.finish()
    }

    /// The value stored for exactly these parts (`hash` from [`Memo::hash`]).
    pub fn get(&mut self, hash: u64, parts: &[&[u8]]) -> Option<&V> {
        match self.slots.get_mut(&hash) {
            Some(slot) if same(&slot.key, parts) => {
                slot.referenced = true;
                self.counters.hits += 1;
                Some(&slot.value)
            }
            _ => {
                self.counters.misses += 1;
                None
            }
        }
    }

    /// Stores `value` for these parts, `value_cost` being the bytes it holds. Makes room by
    /// CLOCK; an entry over the per-entry limit is not stored. A different entry under the
    /// same hash (a 64-bit collision) is replaced. Returns whether it was stored.
    pub fn insert(&mut self, hash: u64, parts: &[&[u8]], value: V, value_cost: usize) -> bool {
        let key_len = key_len(parts);
        let cost = key_len + value_cost + MEMO_ENTRY_OVERHEAD;
        if cost > self.max_entry_bytes {
            self.counters.skipped += 1;
            return false;
        }
        let mut key = Vec::with_capacity(key_len);
        for part in parts {
            key.extend_from_slice(&(part.len() as u32).to_le_bytes());
            key.extend_from_slice(part);
        }
        let slot = Slot {
            key: key.into_boxed_slice(),
            value,
            cost,
            referenced: false,
        };
        self.counters.inserts += 1;
        if let Some(old) = self.slots.get_mut(&hash) {
            // Stored again (two identical misses raced) or a collision: replaced in place,
            // keeping its place under the hand.
            self.bytes = self.bytes - old.cost + cost;
            *old = slot;
        } else {
            while self.bytes + cost > self.max_bytes {
                if !self.evict_one() {
                    break;
                }
            }
            self.slots.insert(hash, slot);
            self.hand.push_back(hash);
            self.bytes += cost;
        }
        while self.bytes > self.max_bytes {
            if !self.evict_one() {
                break;
            }
        }
        self.slots.contains_key(&hash)
    }

    /// Removes one entry: the first under the hand not read since the hand last passed.
    fn evict_one(&mut self) -> bool {
        while let Some(hash) = self.hand.pop_front() {
            let Some(slot) = self.slots.get_mut(&hash) else {
                continue;
            };
            if slot.referenced {
                slot.referenced = false;
                self.hand.push_back(hash);
                continue;
            }
            if let Some(slot) = self.slots.remove(&hash) {
                self.bytes -= slot.cost;
                self.counters.evictions += 1;
            }
            return true;
        }
        false
    }

    /// Removes every entry (counters stay).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.hand.clear();
        self.bytes = 0;
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes counted against the budget.
    pub fn bytes_used(&self) -> usize {
        self.bytes
    }

    /// The budget in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Lookups, inserts, evictions.
    pub fn counters(&self) -> &MemoCounters {
        &self.counters
    }
}

/// Whether `key` (length-prefixed parts) holds exactly `parts`.
fn same(key: &[u8], parts: &[&[u8]]) -> bool {
    let mut rest = key;
    for part in parts {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len != part.len() || tail.len() < len || &tail[..len] != *part {
            return false;
        }
        rest = &tail[len..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put(m: &mut Memo<u32>, parts: &[&[u8]], v: u32, cost: usize) -> bool {
        let h = m.hash(parts);
        m.insert(h, parts, v, cost)
    }

    fn get(m: &mut Memo<u32>, parts: &[&[u8]]) -> Option<u32> {
        let h = m.hash(parts);
        m.get(h, parts).copied()
    }

    #[test]
    fn finds_exactly_the_bytes_it_stored() {
        let mut m = Memo::new(1 << 20, 1 << 16);
        assert!(put(&mut m, &[b"op", b"alice", b"{\"a\":1}"], 7, 10));
        assert_eq!(get(&mut m, &[b"op", b"alice", b"{\"a\":1}"]), Some(7));
        // Another user, another body, another split of the same bytes: all misses.
        assert_eq!(get(&mut m, &[b"op", b"bob", b"{\"a\":1}"]), None);
        assert_eq!(get(&mut m, &[b"op", b"alice", b"{\"a\":2}"]), None);
        assert_eq!(get(&mut m, &[b"opa", b"lice", b"{\"a\":1}"]), None);
        assert_eq!(get(&mut m, &[b"op", b"alice"]), None);
        let c = *m.counters();
        assert_eq!((c.hits, c.misses, c.inserts), (1, 4, 1));
    }

    #[test]
    fn a_colliding_hash_never_returns_the_other_entry() {
        let mut m = Memo::new(1 << 20, 1 << 16);
        // Forge a collision: store under the hash of other bytes.
        let h = m.hash(&[b"x"]);
        m.insert(h, &[b"stored"], 1, 0);
        assert_eq!(m.get(h, &[b"x"]).copied(), None);
        assert_eq!(m.get(h, &[b"stored"]).copied(), Some(1));
        // Storing the other bytes under the same hash replaces the entry.
        m.insert(h, &[b"x"], 2, 0);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(h, &[b"x"]).copied(), Some(2));
        assert_eq!(m.get(h, &[b"stored"]).copied(), None);
    }

    #[test]
    fn stays_within_its_budget_and_keeps_what_is_read() {
        let entry = 4 + 8 + 100 + MEMO_ENTRY_OVERHEAD;
        let mut m = Memo::new(entry * 4, entry);
        for k in 0u64..4 {
            assert!(put(&mut m, &[&k.to_le_bytes()], k as u32, 100));
        }
        assert_eq!(m.len(), 4);
        // Entry 0 is read: the hand spares it once, and entry 1 leaves instead.
        assert_eq!(get(&mut m, &[&0u64.to_le_bytes()]), Some(0));
        assert!(put(&mut m, &[&9u64.to_le_bytes()], 9, 100));
        assert_eq!(m.len(), 4);
        assert!(m.bytes_used() <= m.max_bytes());
        assert_eq!(get(&mut m, &[&0u64.to_le_bytes()]), Some(0));
        assert_eq!(get(&mut m, &[&1u64.to_le_bytes()]), None);
        assert_eq!(m.counters().evictions, 1);
    }

    #[test]
    fn an_entry_over_the_limit_or_a_memo_turned_off_stores_nothing() {
        let mut m = Memo::new(1 << 20, 200);
        assert!(!put(&mut m, &[b"big"], 1, 500));
        assert_eq!(m.counters().skipped, 1);
        // Keys that alone exceed the limit are refused before any hashing.
        assert!(m.could_hold(&[&[0u8; 50]]));
        assert!(!m.could_hold(&[&[0u8; 150]]));
        assert_eq!(m.counters().skipped, 2);
        let mut off = Memo::new(0, 1 << 16);
        assert!(!off.could_hold(&[b"k"]));
        assert!(!off.is_enabled());
        assert!(!put(&mut off, &[b"k"], 1, 0));
        assert_eq!(get(&mut off, &[b"k"]), None);
        assert_eq!(off.bytes_used(), 0);
    }

    proptest! {
        /// Whatever is stored and evicted, a lookup returns the value last stored for exactly
        /// those bytes or nothing, and the byte count matches the entries.
        #[test]
        fn lookups_agree_with_a_plain_map(ops in proptest::collection::vec((0u8..24, 0usize..300, any::<bool>()), 1..400)) {
            let mut m = Memo::new(4096, 1024);
            let mut model = std::collections::HashMap::new();
            for (i, (k, cost, write)) in ops.into_iter().enumerate() {
                let parts: [&[u8]; 2] = [b"op", &[k]];
                if write {
                    if put(&mut m, &parts, i as u32, cost) {
                        model.insert(k, i as u32);
                    }
                } else if let Some(v) = get(&mut m, &parts) {
                    prop_assert_eq!(Some(&v), model.get(&k));
                }
                prop_assert!(m.bytes_used() <= m.max_bytes());
                let counted: usize = m.slots.values().map(|s| s.cost).sum();
                prop_assert_eq!(counted, m.bytes_used());
                prop_assert_eq!(m.hand.len(), m.len());
            }
        }
    }
}

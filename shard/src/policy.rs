//! Eviction order of the L1 cache: which slot leaves when the byte budget is full.
//!
//! Two policies over the cache's slot numbers, chosen by measured hit ratio (see
//! `bench/RESULTS.md`): plain LRU (the floor) and S3-FIFO (Yang et al., SOSP 2023: a small
//! probationary FIFO, a main FIFO with reinsertion, and a ghost FIFO of recently evicted
//! hashes). Hot path: `touch` is O(1) and, for S3-FIFO, writes one byte (no list surgery on a
//! hit). Knows nothing about entries, bytes or time; the cache tells it what happened.

use std::collections::VecDeque;

use crate::key::HashIndex;

/// "No slot" in the intrusive lists.
const NIL: u32 = u32::MAX;
/// Queue id of the main queue (LRU's only queue).
const MAIN: u8 = 0;
/// Queue id of S3-FIFO's small probationary queue.
const SMALL: u8 = 1;
/// Queue id of a slot in no queue.
const NONE: u8 = 2;
/// S3-FIFO's access counter saturates here (two bits in the paper).
const MAX_FREQ: u8 = 3;
/// S3-FIFO's small queue holds this share of the entries, in percent.
const SMALL_PERCENT: usize = 10;

/// Which eviction policy a cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Least recently used: a hit moves the entry to the front.
    Lru,
    /// S3-FIFO: new entries go through a small FIFO; only those hit there reach the main FIFO;
    /// hashes evicted from the small queue are remembered in a ghost FIFO so that a quick
    /// return goes straight to main. Better hit ratio than LRU on skewed traces, cheaper hits.
    S3Fifo,
}

/// Links and policy bits of one slot.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Towards the front (newer) of the queue.
    prev: u32,
    /// Towards the back (older) of the queue.
    next: u32,
    /// Which queue holds the slot.
    queue: u8,
    /// S3-FIFO access counter, saturating at [`MAX_FREQ`].
    freq: u8,
}

const EMPTY_NODE: Node = Node {
    prev: NIL,
    next: NIL,
    queue: NONE,
    freq: 0,
};

/// A doubly linked queue threaded through `nodes`: push at the front, pop at the back.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
    len: 0,
};

/// FIFO of recently evicted key hashes with O(1) membership test.
#[derive(Debug, Default)]
struct Ghost {
    /// Hashes in eviction order, oldest first; `order[i]` was pushed with sequence
    /// `front_seq + i`.
    order: VecDeque<u64>,
    /// Hash → sequence number of its newest push; entries whose sequence no longer matches are
    /// stale and skipped when popped.
    seq: HashIndex<u64>,
    /// Sequence number of `order.front()`.
    front_seq: u64,
}

impl Ghost {
    fn push(&mut self, hash: u64, cap: usize) {
        let s = self.front_seq + self.order.len() as u64;
        self.order.push_back(hash);
        self.seq.insert(hash, s);
        while self.order.len() > cap {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(h) = self.order.pop_front() {
            if self.seq.get(&h) == Some(&self.front_seq) {
                self.seq.remove(&h);
            }
            self.front_seq += 1;
        }
    }

    /// Whether `hash` was recently evicted; forgets it if so.
    fn take(&mut self, hash: u64) -> bool {
        self.seq.remove(&hash).is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }

    fn clear(&mut self) {
        self.order.clear();
        self.seq.clear();
    }
}

/// Eviction order over slot numbers.
#[derive(Debug)]
pub(crate) struct Policy {
    kind: PolicyKind,
    /// Indexed by slot number.
    nodes: Vec<Node>,
    /// `[MAIN, SMALL]`; LRU uses only `MAIN`.
    lists: [List; 2],
    /// S3-FIFO's ghost queue (unused by LRU).
    ghost: Ghost,
}

impl Policy {
    pub(crate) fn new(kind: PolicyKind) -> Self {
        Policy {
            kind,
            nodes: Vec::new(),
            lists: [EMPTY_LIST; 2],
            ghost: Ghost::default(),
        }
    }

    pub(crate) fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// Number of slots in the queues.
    pub(crate) fn len(&self) -> usize {
        self.lists[0].len + self.lists[1].len
    }

    /// Number of hashes in the ghost queue (bounded by `len()`).
    #[cfg(test)]
    pub(crate) fn ghost_len(&self) -> usize {
        self.ghost.len()
    }

    /// Heap bytes per slot spent here, for the cache's accounting: one node plus one ghost
    /// record (deque slot, map bucket with control byte, at the map's worst load factor).
    pub(crate) const BYTES_PER_ENTRY: usize = std::mem::size_of::<Node>() + 8 + 2 * 17;

    /// A new entry in `slot` with key hash `hash`.
    pub(crate) fn insert(&mut self, slot: u32, hash: u64) {
        let i = slot as usize;
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, EMPTY_NODE);
        }
        let queue = match self.kind {
            PolicyKind::Lru => MAIN,
            PolicyKind::S3Fifo if self.ghost.take(hash) => MAIN,
            PolicyKind::S3Fifo => SMALL,
        };
        self.nodes[i].freq = 0;
        self.push_front(queue, slot);
    }

    /// The entry in `slot` was read.
    #[inline]
    pub(crate) fn touch(&mut self, slot: u32) {
        match self.kind {
            PolicyKind::Lru => {
                if self.lists[0].head != slot {
                    self.unlink(slot);
                    self.push_front(MAIN, slot);
                }
            }
            PolicyKind::S3Fifo => {
                if let Some(n) = self.nodes.get_mut(slot as usize) {
                    n.freq = (n.freq + 1).min(MAX_FREQ);
                }
            }
        }
    }

    /// The entry in `slot` left the cache for a reason other than eviction (replaced,
    /// invalidated, expired).
    pub(crate) fn remove(&mut self, slot: u32) {
        self.unlink(slot);
    }

    /// Picks the next victim, unlinks it and returns its slot; `None` when empty. `hash_of`
    /// gives a slot's key hash (for the ghost queue).
    pub(crate) fn evict(&mut self, hash_of: impl Fn(u32) -> u64) -> Option<u32> {
        match self.kind {
            PolicyKind::Lru => {
                let victim = self.lists[0].tail;
                if victim == NIL {
                    return None;
                }
                self.unlink(victim);
                Some(victim)
            }
            PolicyKind::S3Fifo => self.evict_s3(hash_of),
        }
    }

    fn evict_s3(&mut self, hash_of: impl Fn(u32) -> u64) -> Option<u32> {
        loop {
            let total = self.len();
            if total == 0 {
                return None;
            }
            let small = self.lists[SMALL as usize];
            if small.len > 0 && (small.len * 100 >= total * SMALL_PERCENT || self.lists[0].len == 0)
            {
                let t = small.tail;
                self.unlink(t);
                if self.nodes[t as usize].freq > 0 {
                    // Hit while on probation: promote.
                    self.nodes[t as usize].freq = 0;
                    self.push_front(MAIN, t);
                    continue;
                }
                self.ghost.push(hash_of(t), total);
                return Some(t);
            }
            let t = self.lists[0].tail;
            self.unlink(t);
            let n = &mut self.nodes[t as usize];
            if n.freq > 0 {
                n.freq -= 1;
                self.push_front(MAIN, t);
                continue;
            }
            return Some(t);
        }
    }

    /// Forgets every slot and the ghost queue.
    pub(crate) fn clear(&mut self) {
        self.nodes.clear();
        self.lists = [EMPTY_LIST; 2];
        self.ghost.clear();
    }

    fn push_front(&mut self, queue: u8, slot: u32) {
        let list = &mut self.lists[queue as usize];
        let old_head = list.head;
        {
            let n = &mut self.nodes[slot as usize];
            n.prev = NIL;
            n.next = old_head;
            n.queue = queue;
        }
        if old_head != NIL {
            self.nodes[old_head as usize].prev = slot;
        } else {
            list.tail = slot;
        }
        list.head = slot;
        list.len += 1;
    }

    fn unlink(&mut self, slot: u32) {
        let Some(&n) = self.nodes.get(slot as usize) else {
            return;
        };
        if n.queue == NONE {
            return;
        }
        let list = &mut self.lists[n.queue as usize];
        if n.prev != NIL {
            self.nodes[n.prev as usize].next = n.next;
        } else {
            list.head = n.next;
        }
        if n.next != NIL {
            self.nodes[n.next as usize].prev = n.prev;
        } else {
            list.tail = n.prev;
        }
        list.len -= 1;
        self.nodes[slot as usize] = Node {
            freq: n.freq,
            ..EMPTY_NODE
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut Policy) -> Vec<u32> {
        std::iter::from_fn(|| p.evict(u64::from)).collect()
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut p = Policy::new(PolicyKind::Lru);
        for s in 0..4 {
            p.insert(s, u64::from(s));
        }
        p.touch(0);
        p.remove(2);
        assert_eq!(drain(&mut p), vec![1, 3, 0]);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn s3fifo_keeps_entries_hit_on_probation_and_uses_ghost() {
        let mut p = Policy::new(PolicyKind::S3Fifo);
        for s in 0..10 {
            p.insert(s, u64::from(s) + 100);
        }
        p.touch(0);
        // 0 was hit: promoted to main instead of evicted; 1 goes first, into the ghost.
        assert_eq!(p.evict(|s| u64::from(s) + 100), Some(1));
        assert_eq!(p.ghost_len(), 1);
        // 1 comes back quickly: straight to main, ghost forgets it.
        p.insert(1, 101);
        assert_eq!(p.ghost_len(), 1); // the record stays in the FIFO but no longer matches
        assert!(!p.ghost.take(101));
        let order = drain(&mut p);
        assert_eq!(order.len(), 10);
        assert_eq!(&order[..8], &[2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(p.ghost_len() <= 10);
    }

    #[test]
    fn ghost_is_bounded() {
        let mut g = Ghost::default();
        for h in 0..100 {
            g.push(h % 7, 5);
        }
        assert_eq!(g.len(), 5);
        assert!(g.seq.len() <= 5);
    }
}

//! [`Admission`]: `MAX_CONCURRENT_REQUESTS` for the whole instance, however connections
//! spread over shards, with a fast path that stays on the shard.
//!
//! The cap is split into regions: each shard's own share (half of its fair share) and one
//! pool (the rest). A shard admits from its share while it has room, which touches only a
//! counter on its own cache line; past it, from the pool; when the pool is used up too, from
//! another shard's unused share. Every permit remembers the region it came from and goes back
//! there, so the regions never hold more than their sizes and the instance never more than the
//! cap, while any free room anywhere admits a request: the instance admits exactly the cap.
//!
//! Low-priority requests are shed first: they never take the last fifth of any region, so
//! they are refused once the instance is 80 % full (a region they cannot use is already 80 %
//! used). Lock-free (one compare-and-swap per region tried); no clock, no I/O.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

/// Where an admitted request's permit came from (it goes back there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// A shard's own share (by shard index).
    Share(usize),
    /// The instance pool.
    Pool,
}

/// One counter with its size.
#[derive(Debug)]
struct Counter {
    used: CachePadded<AtomicU64>,
    size: u64,
}

impl Counter {
    fn new(size: u64) -> Self {
        Counter {
            used: CachePadded::new(AtomicU64::new(0)),
            size,
        }
    }

    /// Takes one permit if fewer than `limit` are in use.
    fn take(&self, limit: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v < limit).then_some(v + 1)
            })
            .is_ok()
    }

    /// The limit for a request of this kind: the whole region, or four fifths of it for a
    /// low-priority one.
    fn limit(&self, low: bool) -> u64 {
        if low {
            self.size * 4 / 5
        } else {
            self.size
        }
    }
}

/// The instance's in-flight cap, shared by every shard.
#[derive(Debug)]
pub struct Admission {
    shares: Box<[Counter]>,
    pool: Counter,
}

impl Admission {
    /// A cap of `cap` requests over `shards` shards (at least one).
    pub fn new(cap: u64, shards: usize) -> Self {
        let shards = shards.max(1);
        let share = cap / (2 * shards as u64);
        Admission {
            shares: (0..shards).map(|_| Counter::new(share)).collect(),
            pool: Counter::new(cap - share * shards as u64),
        }
    }

    /// Admits one request accepted by `shard` (low-priority ones only under 80 % of each
    /// region); the region its permit came from, or `None` when the instance is full.
    pub fn admit(&self, shard: usize, low: bool) -> Option<Region> {
        let own = self.shares.get(shard)?;
        if own.take(own.limit(low)) {
            return Some(Region::Share(shard));
        }
        if self.pool.take(self.pool.limit(low)) {
            return Some(Region::Pool);
        }
        // Rare: the pool is used up, so the instance is nearly full; borrow another shard's
        // unused share (starting after this one, so borrowers spread).
        let n = self.shares.len();
        (1..n)
            .map(|k| (shard + k) % n)
            .find(|&j| self.shares[j].take(self.shares[j].limit(low)))
            .map(Region::Share)
    }

    /// Gives back a permit `admit` returned.
    pub fn release(&self, region: Region) {
        let counter = match region {
            Region::Share(j) => self.shares.get(j),
            Region::Pool => Some(&self.pool),
        };
        if let Some(c) = counter {
            let _ = c
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
        }
    }

    /// Requests admitted and not yet released, in the whole instance.
    pub fn in_flight(&self) -> u64 {
        self.shares
            .iter()
            .chain(std::iter::once(&self.pool))
            .map(|c| c.used.load(Ordering::Acquire))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_shard_alone_reaches_exactly_the_cap() {
        // 10 over 2 shards: shares of 2 and 2, a pool of 6.
        let a = Admission::new(10, 2);
        let permits: Vec<Region> = (0..10).map(|_| a.admit(0, false).unwrap()).collect();
        assert_eq!(a.admit(0, false), None);
        assert_eq!(
            a.admit(1, false),
            None,
            "the instance is full, whoever asks"
        );
        assert_eq!(a.in_flight(), 10);
        assert_eq!(
            permits.iter().filter(|r| **r == Region::Share(0)).count(),
            2
        );
        assert_eq!(permits.iter().filter(|r| **r == Region::Pool).count(), 6);
        assert_eq!(
            permits.iter().filter(|r| **r == Region::Share(1)).count(),
            2
        );
        // A released permit of another shard's share is taken again by whoever needs it.
        a.release(Region::Share(1));
        assert_eq!(a.admit(1, false), Some(Region::Share(1)));
        for r in permits {
            a.release(r);
        }
        a.release(Region::Share(1));
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn any_spread_over_shards_admits_exactly_the_cap() {
        for shards in 1..=5 {
            for cap in [1u64, 3, 10, 97, 10_000] {
                let a = Admission::new(cap, shards);
                let mut seed = cap * 31 + shards as u64;
                let mut admitted = 0;
                // Uneven: shard drawn by a small generator, skewed towards shard 0.
                while admitted < cap {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let shard = ((seed >> 33) as usize % (shards * 2)).min(shards - 1);
                    assert!(a.admit(shard, false).is_some(), "{cap}/{shards}");
                    admitted += 1;
                }
                for shard in 0..shards {
                    assert_eq!(a.admit(shard, false), None, "{cap}/{shards}");
                }
                assert_eq!(a.in_flight(), cap);
            }
        }
    }

    #[test]
    fn low_priority_is_shed_at_four_fifths() {
        let a = Admission::new(100, 2); // shares 25 and 25, pool 50
        let mut low = 0;
        while a.admit(0, true).is_some() {
            low += 1;
        }
        // 20 + 40 + 20: four fifths of every region.
        assert_eq!(low, 80);
        // Normal requests still get the rest.
        let normal = (0..100).filter(|_| a.admit(1, false).is_some()).count();
        assert_eq!(normal, 20);
        assert_eq!(a.in_flight(), 100);
    }

    #[test]
    fn concurrent_shards_never_exceed_the_cap() {
        let a = Arc::new(Admission::new(64, 4));
        // Permits held right now (counted after an admit, before a release), and its peak.
        let live = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|shard| {
                let (a, live, peak) = (Arc::clone(&a), Arc::clone(&live), Arc::clone(&peak));
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..20_000u64 {
                        if i % 3 != 2 {
                            if let Some(r) = a.admit(shard, i % 7 == 0) {
                                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                                peak.fetch_max(now, Ordering::SeqCst);
                                held.push(r);
                            }
                        } else if let Some(r) = held.pop() {
                            live.fetch_sub(1, Ordering::SeqCst);
                            a.release(r);
                        }
                    }
                    for r in held {
                        live.fetch_sub(1, Ordering::SeqCst);
                        a.release(r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!((48..=64).contains(&peak), "{peak}");
        assert_eq!(a.in_flight(), 0);
    }
}

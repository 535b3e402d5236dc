//! Rate limits as plain data with an injected clock: the token bucket kept as one timestamp
//! (GCRA, [`Rate`]), the per-user buckets of one shard ([`UserLimits`]), one bucket shared by
//! every shard without a lock ([`SharedBucket`]), and a local allowance of tokens taken in
//! batches from a store shared by several instances ([`Grant`]).
//!
//! **GCRA.** A token bucket of `burst` tokens refilled at `per_second` is kept as a single
//! number, the *theoretical arrival time* (TAT): the time at which the bucket would be full
//! again. With `T = 1 s / per_second` (the interval between two tokens) and `τ = burst × T`,
//! a request at `now` is accepted when `max(TAT, now) + T − now ≤ τ`, and then TAT becomes
//! `max(TAT, now) + T`. A bucket whose TAT is not after `now` is full, exactly as if it had
//! never been used, which is what lets idle buckets be dropped. Arithmetic is on whole
//! nanoseconds: no floating-point drift, and every decision is reproducible with a
//! [`crate::ManualClock`].
//!
//! Must not depend on anything but `clock`; no I/O. [`SharedBucket`] is the one structure in
//! this crate meant to be shared between threads: it is a single `AtomicU64` updated with a
//! compare-and-swap loop, never a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, Timestamp};

/// The highest rate a [`Rate`] accepts, per second (one token a microsecond: the shared
/// store counts in microseconds).
pub const MAX_RATE: f64 = 1_000_000.0;
/// The largest burst a [`Rate`] accepts.
pub const MAX_BURST: u32 = 1_000_000;
/// Least time between two sweeps a full [`UserLimits`] runs on its own to make room.
pub const SWEEP_GAP: Duration = Duration::from_millis(100);

/// A limit: `per_second` requests on average, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    per_second: f64,
    /// The bucket's size: requests accepted at once from a full bucket.
    burst: u32,
    /// Nanoseconds between two tokens (`T`).
    interval_ns: u64,
}

/// What a limit said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is accepted (and was charged a token).
    pub allowed: bool,
    /// The bucket's size (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests that would be accepted right after this one (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Time until the bucket is full again (`X-RateLimit-Reset`).
    pub reset: Duration,
    /// For a refused request, time until one would be accepted (`Retry-After`); zero when
    /// allowed.
    pub retry_after: Duration,
}

impl Rate {
    /// A limit of `per_second` (above 0, at most [`MAX_RATE`]) with a bucket of `burst` (1 to
    /// [`MAX_BURST`]); `None` when either is out of range.
    pub fn new(per_second: f64, burst: u32) -> Option<Rate> {
        if !(per_second > 0.0 && per_second <= MAX_RATE) || burst == 0 || burst > MAX_BURST {
            return None;
        }
        let interval_ns = (1e9 / per_second).round() as u64;
        Some(Rate {
            per_second,
            burst,
            interval_ns: interval_ns.max(1),
        })
    }

    /// Tokens added per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The bucket's size.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time between two tokens.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    /// `τ`: how far ahead of now the TAT may run (the whole bucket).
    fn tolerance(&self) -> u64 {
        self.interval_ns.saturating_mul(u64::from(self.burst))
    }

    /// Tokens in a bucket with TAT `tat` at `now`.
    pub fn available(&self, tat: u64, now: u64) -> u32 {
        let used = tat.saturating_sub(now);
        let free = self.tolerance().saturating_sub(used) / self.interval_ns;
        free.min(u64::from(self.burst)) as u32
    }

    /// One request at `now` against a bucket with TAT `tat`: the decision and the new TAT
    /// (unchanged when refused).
    pub fn take(&self, tat: u64, now: u64) -> (Decision, u64) {
        let base = tat.max(now);
        let next = base.saturating_add(self.interval_ns);
        let ahead = next - now;
        let tolerance = self.tolerance();
        if ahead <= tolerance {
            let decision = Decision {
                allowed: true,
                limit: self.burst,
                remaining: ((tolerance - ahead) / self.interval_ns) as u32,
                reset: Duration::from_nanos(ahead),
                retry_after: Duration::ZERO,
            };
            (decision, next)
        } else {
            let decision = Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset: Duration::from_nanos(base - now),
                retry_after: Duration::from_nanos(ahead - tolerance),
            };
            (decision, tat)
        }
    }

    /// The TAT after giving back one token taken from a bucket whose TAT is now `tat`. Exact:
    /// every accepted request added one interval, so removing one undoes it (a bucket that
    /// refilled meanwhile just stays full).
    pub fn untake(&self, tat: u64) -> u64 {
        tat.saturating_sub(self.interval_ns)
    }

    /// The TAT under `to` of a bucket whose TAT under this rate is `tat` at `now`: the same
    /// whole tokens available (at most `to`'s burst; the fraction of the next token is lost),
    /// refilling at `to`'s pace from now on. A full bucket stays full.
    pub fn rescale(&self, tat: u64, now: u64, to: &Rate) -> u64 {
        if tat <= now {
            return tat;
        }
        let tokens = self.available(tat, now).min(to.burst);
        let used = u64::from(to.burst - tokens).saturating_mul(to.interval_ns);
        now.saturating_add(used)
    }
}

/// One bucket shared by every shard of a process (the global limit): its TAT in one
/// `AtomicU64`, advanced with a compare-and-swap loop. No lock, no lost update: concurrent
/// takes are serialised by the CAS and each sees the TAT the previous one left.
///
/// Time comes from the caller, on a clock whose origin every shard shares. A caller whose
/// `now` is slightly stale (read just before another shard's take) can only be refused
/// earlier, never accepted beyond the limit: the TAT only moves forward by one interval per
/// accepted request, whatever `now` each caller read.
///
/// The rate itself can change in place ([`SharedBucket::set_rate`], a configuration reload):
/// it is kept in atomics too, so a take never waits. A take that races the change may be
/// decided with the old interval and the new burst (or the reverse): one decision, at the
/// instant of the change, off by at most the difference between the two limits.
#[derive(Debug)]
pub struct SharedBucket {
    /// `Rate::per_second`, as `f64` bits.
    per_second: AtomicU64,
    /// `Rate::burst`.
    burst: AtomicU32,
    /// `Rate::interval_ns`.
    interval_ns: AtomicU64,
    /// The TAT, nanoseconds on the shared clock.
    tat: AtomicU64,
}

impl SharedBucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> SharedBucket {
        SharedBucket {
            per_second: AtomicU64::new(rate.per_second.to_bits()),
            burst: AtomicU32::new(rate.burst),
            interval_ns: AtomicU64::new(rate.interval_ns),
            tat: AtomicU64::new(0),
        }
    }

    /// The limit in force.
    pub fn rate(&self) -> Rate {
        Rate {
            per_second: f64::from_bits(self.per_second.load(Ordering::Acquire)),
            burst: self.burst.load(Ordering::Acquire),
            interval_ns: self.interval_ns.load(Ordering::Acquire),
        }
    }

    /// Changes the limit at `now`, keeping the tokens the bucket holds (at most the new
    /// burst): see [`Rate::rescale`].
    pub fn set_rate(&self, rate: Rate, now: Timestamp) {
        let old = self.rate();
        self.per_second
            .store(rate.per_second.to_bits(), Ordering::Release);
        self.burst.store(rate.burst, Ordering::Release);
        self.interval_ns.store(rate.interval_ns, Ordering::Release);
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(old.rescale(t, now.as_nanos(), &rate))
            });
    }

    /// Takes one token at `now` if there is one.
    pub fn take(&self, now: Timestamp) -> Decision {
        let rate = self.rate();
        // Relaxed is enough: the TAT is the only data, and read-modify-writes of one location
        // are totally ordered.
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            let (decision, next) = rate.take(current, now.as_nanos());
            if !decision.allowed {
                return decision;
            }
            match self.tat.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return decision,
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back one token taken earlier.
    pub fn untake(&self) {
        let rate = self.rate();
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(rate.untake(t))
            });
    }

    /// Tokens available at `now`.
    pub fn available(&self, now: Timestamp) -> u32 {
        self.rate()
            .available(self.tat.load(Ordering::Relaxed), now.as_nanos())
    }
}

/// Tokens taken in advance from a bucket in a shared store (Redis, for several instances)
/// and spent locally, so the store is asked once per batch instead of once per request.
///
/// Tokens are only ever taken from the store, so spending them never exceeds the store's
/// limit; tokens not spent before `expires` go back to it ([`Grant::take_expired`]). When
/// the store grants nothing it also says when its next token comes: until then every request
/// is refused here without asking it again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grant {
    /// Unspent tokens.
    tokens: u32,
    /// When unspent tokens go back to the store (nanoseconds on the local clock).
    expires: u64,
    /// The store's TAT as of the last take, on the local clock (for the headers' estimate).
    store_tat: u64,
    /// The store had no token before this time.
    denied_until: u64,
}

/// The outcome of [`Grant::spend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// A local token was spent: the request is accepted.
    Spent(Decision),
    /// The store said it has no token before `retry_after`: the request is refused.
    Denied(Decision),
    /// No local token: ask the store for a batch. `expired` tokens were past their time and
    /// must go back to the store.
    Empty {
        /// Expired tokens to return.
        expired: u32,
    },
    /// The user could not be tracked (the table is full): accept without a limit.
    Untracked,
}

impl Grant {
    /// Spends one local token at `now`, if there is a live one.
    pub fn spend(&mut self, rate: &Rate, now: Timestamp) -> Spend {
        let now = now.as_nanos();
        if self.tokens > 0 && now < self.expires {
            self.tokens -= 1;
            return Spend::Spent(self.estimate(rate, now, true));
        }
        if now < self.denied_until {
            // Expired tokens stay until the next sweep returns them.
            let mut decision = self.estimate(rate, now, false);
            decision.retry_after = Duration::from_nanos(self.denied_until - now);
            return Spend::Denied(decision);
        }
        Spend::Empty {
            expired: std::mem::take(&mut self.tokens),
        }
    }

    /// Records the store's answer to a take at `now`: `granted` tokens, kept until `now +
    /// ttl`, and `store_wait`, how far the store's TAT runs ahead of its own clock.
    pub fn fill(
        &mut self,
        rate: &Rate,
        now: Timestamp,
        granted: u32,
        store_wait: Duration,
        ttl: Duration,
    ) {
        let now = now.as_nanos();
        let wait = u64::try_from(store_wait.as_nanos()).unwrap_or(u64::MAX);
        self.store_tat = now.saturating_add(wait);
        if granted > 0 {
            self.tokens = self.tokens.saturating_add(granted);
            self.expires = now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX));
            self.denied_until = 0;
        } else {
            // The store's next token: when its TAT is one interval inside the tolerance.
            let ahead = wait.saturating_add(rate.interval_ns);
            self.denied_until = now.saturating_add(ahead.saturating_sub(rate.tolerance()));
        }
    }

    /// Gives back one token spent earlier (kept locally; it returns to the store with the
    /// others if unspent).
    pub fn give_back(&mut self) {
        self.tokens = self.tokens.saturating_add(1);
    }

    /// Unspent tokens (live or expired).
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    /// Takes the tokens whose time has passed at `now` (to return them to the store).
    pub fn take_expired(&mut self, now: Timestamp) -> u32 {
        if now.as_nanos() >= self.expires {
            std::mem::take(&mut self.tokens)
        } else {
            0
        }
    }

    /// Whether this grant holds nothing worth keeping at `now`.
    fn is_idle(&self, now: u64) -> bool {
        self.tokens == 0 && self.denied_until <= now && self.store_tat <= now
    }

    /// The headers' view: local tokens plus what the store had left at its last answer,
    /// refilled since (other instances' takes since then are not seen).
    fn estimate(&self, rate: &Rate, now: u64, allowed: bool) -> Decision {
        let remaining = if allowed {
            let store = rate.available(self.store_tat, now);
            self.tokens.saturating_add(store).min(rate.burst)
        } else {
            0
        };
        Decision {
            allowed,
            limit: rate.burst,
            remaining,
            reset: Duration::from_nanos(self.store_tat.saturating_sub(now)),
            retry_after: Duration::ZERO,
        }
    }
}

/// One user's state on the shard that owns the user.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The local bucket's TAT (nanoseconds on the clock).
    tat: u64,
    /// Tokens taken from the shared store.
    grant: Grant,
}

/// Counters of a [`UserLimits`] since construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimitCounters {
    /// Requests of users who found the table full (accepted without a limit).
    pub untracked: u64,
    /// Idle users dropped by sweeps.
    pub dropped: u64,
}

impl UserLimitCounters {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &UserLimitCounters) {
        self.untracked += o.untracked;
        self.dropped += o.dropped;
    }
}

/// The per-user buckets of the users one shard owns, at most `max_users` of them.
///
/// A user whose bucket is full and whose grant is idle is the same as one never seen, so
/// [`UserLimits::sweep`] drops such users; the table holds only users active within the last
/// `burst / per_second` seconds. When it is full even after a sweep, a new user is accepted
/// without being tracked (counted in [`UserLimitCounters::untracked`]).
#[derive(Debug)]
pub struct UserLimits<C: Clock> {
    clock: C,
    rate: Rate,
    max_users: usize,
    /// User id → state.
    map: HashMap<Box<str>, Slot, ahash::RandomState>,
    /// When the last sweep ran (nanoseconds on the clock).
    last_sweep: u64,
    counters: UserLimitCounters,
}

impl<C: Clock> UserLimits<C> {
    /// An empty table for `rate`, holding at most `max_users` users (at least 1).
    pub fn new(rate: Rate, max_users: usize, clock: C) -> Self {
        UserLimits {
            clock,
            rate,
            max_users: max_users.max(1),
            map: HashMap::default(),
            last_sweep: 0,
            counters: UserLimitCounters::default(),
        }
    }

    /// The limit every user gets.
    pub fn rate(&self) -> &Rate {
        &self.rate
    }

    /// Changes the limit of every user, keeping each one's tokens (at most the new burst: see
    /// [`Rate::rescale`]). Tokens already taken from the shared store stay granted.
    pub fn set_rate(&mut self, rate: Rate) {
        let now = self.clock.now().as_nanos();
        let old = self.rate;
        for slot in self.map.values_mut() {
            slot.tat = old.rescale(slot.tat, now, &rate);
        }
        self.rate = rate;
    }

    /// Changes how many users are tracked at once (at least 1). A smaller table shrinks as
    /// idle users are swept; nobody is dropped early.
    pub fn set_max_users(&mut self, max_users: usize) {
        self.max_users = max_users.max(1);
    }

    /// The current time on this table's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Users tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no user is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The counters.
    pub fn counters(&self) -> &UserLimitCounters {
        &self.counters
    }

    /// Takes one token from `user`'s local bucket.
    pub fn take(&mut self, user: &str) -> Decision {
        let now = self.clock.now().as_nanos();
        let rate = self.rate;
        match self.slot(user, now) {
            Some(slot) => {
                let (decision, tat) = rate.take(slot.tat, now);
                slot.tat = tat;
                decision
            }
            None => rate.take(0, now).0,
        }
    }

    /// Gives back one token taken from `user`'s local bucket.
    pub fn untake(&mut self, user: &str) {
        if let Some(slot) = self.map.get_mut(user) {
            slot.tat = self.rate.untake(slot.tat);
        }
    }

    /// Spends one of `user`'s tokens taken from the shared store.
    pub fn spend(&mut self, user: &str) -> Spend {
        let now = self.clock.now();
        let rate = self.rate;
        match self.slot(user, now.as_nanos()) {
            Some(slot) => slot.grant.spend(&rate, now),
            None => Spend::Untracked,
        }
    }

    /// Records the store's answer for `user` (see [`Grant::fill`]).
    pub fn fill(&mut self, user: &str, granted: u32, store_wait: Duration, ttl: Duration) {
        let now = self.clock.now();
        let rate = self.rate;
        if let Some(slot) = self.slot(user, now.as_nanos()) {
            slot.grant.fill(&rate, now, granted, store_wait, ttl);
        }
    }

    /// Gives back one of `user`'s store tokens spent earlier.
    pub fn give_back(&mut self, user: &str) {
        if let Some(slot) = self.map.get_mut(user) {
            slot.grant.give_back();
        }
    }

    /// Drops every idle user (full bucket, idle grant) and appends each user's expired store
    /// tokens to `expired` (to return them). Answers how many users were dropped.
    pub fn sweep(&mut self, expired: &mut Vec<(Box<str>, u32)>) -> usize {
        let now = self.clock.now();
        self.last_sweep = now.as_nanos();
        let before = self.map.len();
        self.map.retain(|user, slot| {
            let n = slot.grant.take_expired(now);
            if n > 0 {
                expired.push((user.clone(), n));
            }
            !(slot.tat <= now.as_nanos() && slot.grant.is_idle(now.as_nanos()))
        });
        let dropped = before - self.map.len();
        self.counters.dropped += dropped as u64;
        dropped
    }

    /// `user`'s slot, made if missing and there is room (after a sweep when the table is
    /// full and the last sweep is at least [`SWEEP_GAP`] old).
    fn slot(&mut self, user: &str, now: u64) -> Option<&mut Slot> {
        if !self.map.contains_key(user) {
            let gap = u64::try_from(SWEEP_GAP.as_nanos()).unwrap_or(u64::MAX);
            if self.map.len() >= self.max_users && now.saturating_sub(self.last_sweep) >= gap {
                // Expired store tokens found here are not returned: they refill on their own.
                self.sweep(&mut Vec::new());
            }
            if self.map.len() >= self.max_users {
                self.counters.untracked += 1;
                return None;
            }
            self.map.insert(user.into(), Slot::default());
        }
        self.map.get_mut(user)
    }
}

#[cfg(test)]
mod tests;

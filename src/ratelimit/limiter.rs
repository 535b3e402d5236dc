//! One shard's rate limits (the owner side): the buckets of the users this shard owns, its
//! view of the global bucket, and the Redis batches of both. [`Limiter::take`] answers for one
//! request; `super::check` routes requests here and turns the [`Verdict`] into HTTP.
//!
//! Shard-local: plain cells and `RefCell`s, never borrowed across an `await`. The only
//! cross-thread state is the global [`SharedBucket`] (one atomic).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atlas_shard::{Clock, Decision, Grant, MonotonicClock, Rate, SharedBucket, Spend, UserLimits};

use super::store::{Store, StoreFigures, GRANT_TTL};
use super::{Charge, Charges, RateCall, RateReply, Scope, Verdict};
use crate::config::ratelimit::{RateLimitConfig, RedisFailure};

/// Per-shard counters (plain cells: shard-local).
#[derive(Debug, Default)]
struct Counters {
    /// Requests this shard answered 429 by the user limit.
    refused_user: Cell<u64>,
    /// Requests this shard answered 429 by the global limit.
    refused_global: Cell<u64>,
    /// Requests this shard answered 503 because Redis was down (`closed`).
    unavailable: Cell<u64>,
    /// Decisions this shard made without Redis because it failed (`local` or `open`).
    fallbacks: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().saturating_add(1));
}

/// A copy of one shard's rate-limit figures (`Send`), for `/metrics` and `/health/detailed`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateFigures {
    /// Requests refused by the user limit.
    pub refused_user: u64,
    /// Requests refused by the global limit.
    pub refused_global: u64,
    /// Requests refused because Redis was down (`closed`).
    pub unavailable: u64,
    /// Decisions made without Redis because it failed.
    pub fallbacks: u64,
    /// Users tracked now.
    pub tracked_users: u64,
    /// Requests of users not tracked (table full).
    pub untracked: u64,
    /// Idle users dropped.
    pub dropped: u64,
    /// Redis use (`None` without Redis).
    pub store: Option<StoreFigures>,
}

impl RateFigures {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &RateFigures) {
        self.refused_user += o.refused_user;
        self.refused_global += o.refused_global;
        self.unavailable += o.unavailable;
        self.fallbacks += o.fallbacks;
        self.tracked_users += o.tracked_users;
        self.untracked += o.untracked;
        self.dropped += o.dropped;
        match (&mut self.store, &o.store) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.store = Some(*b),
            _ => {}
        }
    }
}

/// The global limit as one shard sees it.
struct Global {
    /// The process-wide bucket (no Redis, or Redis down with `local`).
    local: Arc<SharedBucket>,
    /// Tokens this shard took from the Redis bucket.
    grant: RefCell<Grant>,
    /// Tokens asked of Redis at a time (a reload may change it).
    batch: Cell<u32>,
}

/// One shard's rate limits.
pub struct Limiter {
    /// The users this shard owns (`None`: no per-user limit).
    users: Option<RefCell<UserLimits<MonotonicClock>>>,
    /// Tokens asked of Redis at a time for one user (a reload may change it).
    user_batch: Cell<u32>,
    /// The global limit (`None`: none).
    global: Option<Global>,
    /// Whether hits keep their tokens.
    count_hits: Cell<bool>,
    /// What to do while Redis fails.
    failure: Cell<RedisFailure>,
    /// Shards sharing the global limit (the global batch is split over them).
    shards: usize,
    /// Redis, when configured.
    store: Option<Store>,
    /// The clock every shard shares (the global bucket's time base).
    clock: MonotonicClock,
    counters: Counters,
}

/// Tokens asked of Redis at a time: a tenth of the burst, split over `takers`.
fn batch(rate: &Rate, takers: usize) -> u32 {
    let per = (u64::from(rate.burst())).div_ceil(10 * takers.max(1) as u64);
    per.clamp(1, 1000) as u32
}

impl Limiter {
    /// This shard's limits, or `None` when every limit is off. `global` is the process-wide
    /// bucket (made once for all shards); `l2` the Redis handle when configured.
    pub fn start(
        config: &RateLimitConfig,
        shards: usize,
        origin: Instant,
        global: Option<Arc<SharedBucket>>,
        l2: Option<Rc<crate::l2::L2>>,
        redis_timeout: Duration,
    ) -> Option<Rc<Limiter>> {
        if !config.is_on() {
            return None;
        }
        let clock = MonotonicClock::with_origin(origin);
        let users = config.user().map(|rate| {
            RefCell::new(UserLimits::new(
                rate,
                config.max_users.div_ceil(shards.max(1)),
                clock,
            ))
        });
        let global = match (config.global(), global) {
            (Some(rate), Some(local)) => Some(Global {
                local,
                grant: RefCell::new(Grant::default()),
                batch: Cell::new(batch(&rate, shards)),
            }),
            _ => None,
        };
        let limiter = Rc::new(Limiter {
            user_batch: Cell::new(config.user().map_or(1, |r| batch(&r, 1))),
            users,
            global,
            count_hits: Cell::new(config.count_hits),
            failure: Cell::new(config.redis_failure),
            shards,
            store: l2.map(|l2| Store::new(l2, (redis_timeout * 10).max(STORE_LIMIT), origin)),
            clock,
            counters: Counters::default(),
        });
        if limiter.users.is_some() || limiter.store.is_some() {
            glommio::spawn_local(Rc::clone(&limiter).sweep_loop()).detach();
        }
        Some(limiter)
    }

    /// Whether there is a per-user limit (then [`Limiter::take`] runs on the user's owner).
    pub fn limits_users(&self) -> bool {
        self.users.is_some()
    }

    /// Whether cache hits keep their tokens (`ATLAS_RATE_LIMIT_HITS`).
    pub fn counts_hits(&self) -> bool {
        self.count_hits.get()
    }

    /// Applies reloaded settings to the limits this shard was started with: the per-user rate
    /// and burst (every tracked user keeps its tokens, at most the new burst), the users
    /// tracked, the Redis batch sizes derived from the rates, whether hits cost a token and
    /// the Redis failure mode. A limit that was off at start stays off, and one that was on
    /// stays on (`runtime::reload` keeps such a change pending until a restart). The global
    /// bucket's rate is changed once for all shards by the app's supervisor on the signal
    /// thread (`app::launch`, [`SharedBucket::set_rate`]); this shard only resizes its Redis
    /// batch.
    pub fn reconfigure(&self, config: &RateLimitConfig) {
        if let (Some(users), Some(rate)) = (&self.users, config.user()) {
            let mut users = users.borrow_mut();
            if *users.rate() != rate {
                users.set_rate(rate);
            }
            users.set_max_users(config.max_users.div_ceil(self.shards.max(1)));
            self.user_batch.set(batch(&rate, 1));
        }
        if let (Some(global), Some(rate)) = (&self.global, config.global()) {
            global.batch.set(batch(&rate, self.shards));
        }
        self.count_hits.set(config.count_hits);
        self.failure.set(config.redis_failure);
    }

    /// The rate this shard enforces for `scope` (what a refusal names).
    pub fn rate(&self, scope: Scope) -> Option<Rate> {
        match scope {
            Scope::User => self.users.as_ref().map(|u| *u.borrow().rate()),
            Scope::Global => self.global.as_ref().map(|g| g.local.rate()),
        }
    }

    /// Counts a refusal this shard answers: by `scope`, or (`None`) a 503 because Redis was
    /// down with `closed`.
    pub fn count_refused(&self, scope: Option<Scope>) {
        bump(match scope {
            Some(Scope::User) => &self.counters.refused_user,
            Some(Scope::Global) => &self.counters.refused_global,
            None => &self.counters.unavailable,
        });
    }

    /// Every second: drops idle users and returns expired Redis tokens (the user table holds
    /// at most its share of `ATLAS_RATE_LIMIT_MAX_USERS`, so a pass is bounded).
    async fn sweep_loop(self: Rc<Self>) {
        let mut expired = Vec::new();
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            if let Some(users) = &self.users {
                let mut users = users.borrow_mut();
                users.sweep(&mut expired);
                if let Some(store) = &self.store {
                    for (user, n) in expired.drain(..) {
                        store.give_back(store.user_key(&user), users.rate(), n);
                    }
                }
                expired.clear();
            }
            if let (Some(store), Some(g)) = (&self.store, &self.global) {
                let n = g.grant.borrow_mut().take_expired(self.clock.now());
                if n > 0 {
                    store.give_back(store.global_key(), &g.local.rate(), n);
                }
            }
        }
    }

    /// Takes a token for `user` (when users are limited and there is one) and a global one.
    /// Runs on the user's owner shard (any shard without a per-user limit or a user).
    pub async fn take(&self, user: Option<&str>) -> Verdict {
        let (decision, user_charge) = match (&self.users, user) {
            (Some(users), Some(user)) => match self.take_user(users, user).await {
                Step::Allowed(d, charge) => (d, charge),
                Step::Refused(decision) => {
                    return Verdict::Refused {
                        scope: Scope::User,
                        decision,
                    }
                }
                Step::Unavailable => return Verdict::Unavailable,
            },
            _ => (None, Charge::Free),
        };
        let global_charge = match &self.global {
            None => Charge::Free,
            Some(global) => match self.take_global(global).await {
                Step::Allowed(_, charge) => charge,
                other => {
                    if let Some(user) = user {
                        self.give_back_user(user, user_charge);
                    }
                    return match other {
                        Step::Refused(decision) => Verdict::Refused {
                            scope: Scope::Global,
                            decision,
                        },
                        _ => Verdict::Unavailable,
                    };
                }
            },
        };
        Verdict::Allowed {
            user: decision,
            charges: Charges {
                user: user_charge,
                global: global_charge,
            },
        }
    }

    async fn take_user(&self, users: &RefCell<UserLimits<MonotonicClock>>, user: &str) -> Step {
        let rate = *users.borrow().rate();
        if let Some(store) = &self.store {
            let step = self
                .via_store(
                    store,
                    || store.user_key(user),
                    &rate,
                    self.user_batch.get(),
                    || users.borrow_mut().spend(user),
                    |granted, wait| users.borrow_mut().fill(user, granted, wait, GRANT_TTL),
                )
                .await;
            if let Some(step) = step {
                return step;
            }
        }
        let local = || users.borrow_mut().take(user);
        self.local_or_fallback(local)
    }

    async fn take_global(&self, global: &Global) -> Step {
        if let Some(store) = &self.store {
            let now = || self.clock.now();
            let rate = global.local.rate();
            let step = self
                .via_store(
                    store,
                    || store.global_key(),
                    &rate,
                    global.batch.get(),
                    || global.grant.borrow_mut().spend(&rate, now()),
                    |granted, wait| {
                        global
                            .grant
                            .borrow_mut()
                            .fill(&rate, now(), granted, wait, GRANT_TTL)
                    },
                )
                .await;
            if let Some(step) = step {
                return step;
            }
        }
        self.local_or_fallback(|| global.local.take(self.clock.now()))
    }

    /// The local bucket: the only one without Redis; with Redis down, per
    /// `ATLAS_RATE_LIMIT_REDIS_FAILURE`.
    fn local_or_fallback(&self, take: impl FnOnce() -> Decision) -> Step {
        if self.store.is_some() {
            bump(&self.counters.fallbacks);
            match self.failure.get() {
                RedisFailure::Local => {}
                RedisFailure::Open => return Step::Allowed(None, Charge::Free),
                RedisFailure::Closed => return Step::Unavailable,
            }
        }
        let decision = take();
        if decision.allowed {
            Step::Allowed(Some(decision), Charge::Local)
        } else {
            Step::Refused(decision)
        }
    }

    /// Spends a token taken from Redis, taking a batch first when none is left; `None` when
    /// Redis failed (the caller falls back).
    async fn via_store(
        &self,
        store: &Store,
        key: impl FnOnce() -> Vec<u8>,
        rate: &Rate,
        batch: u32,
        spend: impl Fn() -> Spend,
        fill: impl FnOnce(u32, Duration),
    ) -> Option<Step> {
        let key = match spend() {
            Spend::Spent(d) => return Some(Step::Allowed(Some(d), Charge::Store)),
            Spend::Denied(d) => return Some(Step::Refused(d)),
            Spend::Untracked => return Some(Step::Allowed(None, Charge::Free)),
            Spend::Empty { expired } => {
                let key = key();
                if expired > 0 {
                    store.give_back(key.clone(), rate, expired);
                }
                key
            }
        };
        let taken = store.take(key, rate, batch).await?;
        fill(taken.granted, taken.wait);
        Some(match spend() {
            Spend::Spent(d) => Step::Allowed(Some(d), Charge::Store),
            Spend::Denied(d) => Step::Refused(d),
            Spend::Untracked => Step::Allowed(None, Charge::Free),
            // Nothing granted and the next token is due already: refuse for one interval.
            Spend::Empty { .. } => Step::Refused(Decision {
                allowed: false,
                limit: rate.burst(),
                remaining: 0,
                reset: taken.wait,
                retry_after: rate.interval(),
            }),
        })
    }

    fn give_back_user(&self, user: &str, charge: Charge) {
        let Some(users) = &self.users else {
            return;
        };
        match charge {
            Charge::Free => {}
            Charge::Local => users.borrow_mut().untake(user),
            Charge::Store => users.borrow_mut().give_back(user),
        }
    }

    /// Gives back the tokens an accepted request took (on the shard that took them).
    pub fn give_back(&self, user: Option<&str>, charges: Charges) {
        if let Some(user) = user {
            self.give_back_user(user, charges.user);
        }
        if let Some(global) = &self.global {
            match charges.global {
                Charge::Free => {}
                Charge::Local => global.local.untake(),
                Charge::Store => global.grant.borrow_mut().give_back(),
            }
        }
    }

    /// A copy of this shard's figures.
    pub fn figures(&self) -> RateFigures {
        let c = &self.counters;
        let (tracked, counters) = match &self.users {
            Some(users) => {
                let u = users.borrow();
                (u.len() as u64, *u.counters())
            }
            None => (0, Default::default()),
        };
        RateFigures {
            refused_user: c.refused_user.get(),
            refused_global: c.refused_global.get(),
            unavailable: c.unavailable.get(),
            fallbacks: c.fallbacks.get(),
            tracked_users: tracked,
            untracked: counters.untracked,
            dropped: counters.dropped,
            store: self.store.as_ref().map(Store::figures),
        }
    }

    /// Answers a [`RateCall`] addressed to this shard.
    pub async fn answer(&self, call: RateCall) -> RateReply {
        match call {
            RateCall::Take { user } => RateReply::Taken(self.take(Some(&user)).await),
            RateCall::GiveBack { user, charges } => {
                self.give_back(Some(&user), charges);
                RateReply::GivenBack
            }
        }
    }
}

/// The least time a take from Redis may wait (10 × `ATLAS_REDIS_TIMEOUT_MS` when longer).
const STORE_LIMIT: Duration = Duration::from_millis(50);

/// One limit's outcome.
enum Step {
    /// Accepted: the decision for the headers (`None`: no limit applied) and the charge.
    Allowed(Option<Decision>, Charge),
    /// Refused.
    Refused(Decision),
    /// Redis down and `closed`.
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_a_tenth_of_the_burst_split_over_takers() {
        let r = Rate::new(100.0, 100).unwrap();
        assert_eq!(batch(&r, 1), 10);
        assert_eq!(batch(&r, 4), 3);
        assert_eq!(batch(&Rate::new(1.0, 1).unwrap(), 8), 1);
        assert_eq!(batch(&Rate::new(1e6, 1_000_000).unwrap(), 1), 1000);
    }
}

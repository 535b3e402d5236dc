//! Rate limits on the request path (`ATLAS_RATE_LIMIT_*`): a token bucket per user, kept on
//! the shard that owns the user, and one global bucket shared by every shard; with Redis,
//! both shared by every instance ([`store`]).
//!
//! Flow, on the accepting shard: [`check`] → the user's owner shard (one mesh hop, none when
//! this shard owns the user) runs [`Limiter::take`]: the user's bucket, then the global one
//! (a user refused never costs a global token; a request the global limit refuses gives its
//! user token back) → [`Verdict`] → `Ok(`[`Allowance`]`)` or `Err(`[`Refused`]`)`. With no
//! per-user limit only the global bucket is taken, on the accepting shard. After the answer,
//! [`Allowance::finish`] adds the `X-RateLimit-*` headers and, when cache hits do not count
//! (`ATLAS_RATE_LIMIT_HITS=false`), gives a hit's tokens back.
//!
//! The bucket arithmetic lives in `atlas_shard::ratelimit`; this module holds it per shard,
//! routes to the owner, talks to Redis, and turns decisions into HTTP. It never touches the
//! cache or the queues.

pub mod store;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atlas_shard::{Clock, Decision, Grant, MonotonicClock, Rate, SharedBucket, Spend, UserLimits};

use crate::ai::engine::CacheStatus;
use crate::config::ratelimit::{RateLimitConfig, RedisFailure};
use crate::error::ApiError;
use crate::http::{Response, Status};
use crate::runtime::shard::{Shard, ShardCall, ShardReply, BROADCAST_LIMIT};
use store::{Store, StoreFigures, GRANT_TTL};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The user's own limit.
    User,
    /// The global limit.
    Global,
}

impl Scope {
    /// The label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Global => "global",
        }
    }
}

/// How a token was charged, so that it can be given back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charge {
    /// Nothing was charged (limit off, untracked user, or Redis down with `open`).
    #[default]
    Free,
    /// From this instance's bucket.
    Local,
    /// From tokens taken from Redis.
    Store,
}

/// The tokens one accepted request took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charges {
    /// The user's token.
    pub user: Charge,
    /// The global token.
    pub global: Charge,
}

/// The owner shard's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: the user limit's view (for the headers; `None` without one) and what was
    /// charged.
    Allowed {
        /// The per-user decision.
        user: Option<Decision>,
        /// The tokens taken.
        charges: Charges,
    },
    /// Refused by a limit.
    Refused {
        /// Which one.
        scope: Scope,
        /// Its decision (retry time, headers).
        decision: Decision,
    },
    /// Redis is unreachable and `ATLAS_RATE_LIMIT_REDIS_FAILURE=closed`.
    Unavailable,
}

/// A rate-limit operation run on the shard that owns the user.
#[derive(Debug)]
pub enum RateCall {
    /// Take a token for `user` (and a global one).
    Take {
        /// The user.
        user: String,
    },
    /// Give back the tokens an accepted request took.
    GiveBack {
        /// The user.
        user: String,
        /// What it took.
        charges: Charges,
    },
}

/// The answer to a [`RateCall`].
#[derive(Debug)]
pub enum RateReply {
    /// Answer to `Take`.
    Taken(Verdict),
    /// Answer to `GiveBack`.
    GivenBack,
}

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
    /// Tokens asked of Redis at a time.
    batch: u32,
}

/// One shard's rate limits.
pub struct Limiter {
    /// The users this shard owns (`None`: no per-user limit).
    users: Option<RefCell<UserLimits<MonotonicClock>>>,
    /// Tokens asked of Redis at a time for one user.
    user_batch: u32,
    /// The global limit (`None`: none).
    global: Option<Global>,
    /// Whether hits keep their tokens.
    count_hits: bool,
    /// What to do while Redis fails.
    failure: RedisFailure,
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
                batch: batch(&rate, shards),
            }),
            _ => None,
        };
        let limiter = Rc::new(Limiter {
            user_batch: config.user().map_or(1, |r| batch(&r, 1)),
            users,
            global,
            count_hits: config.count_hits,
            failure: config.redis_failure,
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
                    store.give_back(store.global_key(), g.local.rate(), n);
                }
            }
        }
    }

    /// Takes a token for `user` (when users are limited) and a global one. Runs on the
    /// user's owner shard (any shard without a per-user limit).
    pub async fn take(&self, user: &str) -> Verdict {
        let (decision, user_charge) = match &self.users {
            None => (None, Charge::Free),
            Some(users) => match self.take_user(users, user).await {
                Step::Allowed(d, charge) => (d, charge),
                Step::Refused(decision) => {
                    return Verdict::Refused {
                        scope: Scope::User,
                        decision,
                    }
                }
                Step::Unavailable => return Verdict::Unavailable,
            },
        };
        let global_charge = match &self.global {
            None => Charge::Free,
            Some(global) => match self.take_global(global).await {
                Step::Allowed(_, charge) => charge,
                other => {
                    self.give_back_user(user, user_charge);
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
                    self.user_batch,
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
            let step = self
                .via_store(
                    store,
                    || store.global_key(),
                    global.local.rate(),
                    global.batch,
                    || global.grant.borrow_mut().spend(global.local.rate(), now()),
                    |granted, wait| {
                        global.grant.borrow_mut().fill(
                            global.local.rate(),
                            now(),
                            granted,
                            wait,
                            GRANT_TTL,
                        )
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
            match self.failure {
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
    pub fn give_back(&self, user: &str, charges: Charges) {
        self.give_back_user(user, charges.user);
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
            RateCall::Take { user } => RateReply::Taken(self.take(&user).await),
            RateCall::GiveBack { user, charges } => {
                self.give_back(&user, charges);
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

/// A request the limits accepted: what to tell the client, and what to give back if the
/// answer turns out to be a cache hit that should not count.
#[derive(Debug, Default)]
pub struct Allowance {
    /// The per-user decision (the `X-RateLimit-*` headers), when a user limit applied.
    decision: Option<Decision>,
    /// Tokens to give back for a cache hit (`ATLAS_RATE_LIMIT_HITS=false` only).
    refund: Option<Refund>,
}

/// Where an allowance's tokens came from.
#[derive(Debug)]
struct Refund {
    owner: usize,
    user: String,
    charges: Charges,
}

impl Allowance {
    /// Finishes the answer to an accepted request: gives the tokens back when it was served
    /// from the cache and hits do not count, and adds `X-RateLimit-Limit`, `-Remaining` and
    /// `-Reset` when a user limit applied. `cache` is how the cache answered (`None` when
    /// the route has no cache, like the context routes: always charged).
    pub fn finish(
        self,
        shard: &Rc<Shard>,
        response: Response,
        cache: Option<CacheStatus>,
    ) -> Response {
        let hit = matches!(cache, Some(CacheStatus::Hit | CacheStatus::Stale));
        let mut returned = false;
        if let (true, Some(refund)) = (hit, self.refund) {
            returned = refund.charges.user != Charge::Free;
            refund.send(shard);
        }
        match self.decision {
            Some(d) => {
                let remaining = if returned {
                    d.remaining.saturating_add(1).min(d.limit)
                } else {
                    d.remaining
                };
                headers(response, d.limit, remaining, d.reset)
            }
            None => response,
        }
    }
}

impl Refund {
    /// Gives the tokens back on the shard that took them (a detached mesh call when it is
    /// another: the answer does not wait for it).
    fn send(self, shard: &Rc<Shard>) {
        if self.owner == shard.id {
            if let Some(limiter) = &shard.rate_limits {
                limiter.give_back(&self.user, self.charges);
            }
            return;
        }
        let mesh = Rc::clone(&shard.mesh);
        glommio::spawn_local(async move {
            let call = RateCall::GiveBack {
                user: self.user,
                charges: self.charges,
            };
            let _ = mesh
                .call(self.owner, ShardCall::RateLimit(Box::new(call)))
                .await;
        })
        .detach();
    }
}

/// A request the limits refused.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The error (429 `rate_limited_user` / `rate_limited_global`, 503
    /// `rate_limit_unavailable`, 503 `shard_unavailable`).
    pub error: ApiError,
    /// The refusing limit's decision (`None` for the 503s).
    pub decision: Option<Decision>,
    /// Which limit refused (`None` for the 503s).
    pub scope: Option<Scope>,
}

impl Refused {
    fn limited(scope: Scope, decision: Decision, rate: Option<Rate>) -> Refused {
        let code = match scope {
            Scope::User => "rate_limited_user",
            Scope::Global => "rate_limited_global",
        };
        let what = match scope {
            Scope::User => "this user's",
            Scope::Global => "the global",
        };
        let limit = rate.map_or(String::new(), |r| {
            format!(
                " of {} requests per second (burst {})",
                r.per_second(),
                r.burst()
            )
        });
        Refused {
            error: ApiError::new(
                Status::TooManyRequests,
                code,
                format!(
                    "over {what} rate limit{limit}; retry in {} s",
                    ceil_secs(decision.retry_after).max(1)
                ),
            ),
            decision: Some(decision),
            scope: Some(scope),
        }
    }

    fn unavailable(code: &'static str, message: String) -> Refused {
        Refused {
            error: ApiError::new(Status::ServiceUnavailable, code, message),
            decision: None,
            scope: None,
        }
    }

    /// The response: the error with `Retry-After` (whole seconds, rounded up, at least 1)
    /// and, for a 429, the refusing limit's `X-RateLimit-*` headers.
    pub fn to_response(&self) -> Response {
        let response = self.error.to_response();
        match self.decision {
            Some(d) => headers(
                response.header("Retry-After", ceil_secs(d.retry_after).max(1).to_string()),
                d.limit,
                0,
                d.reset,
            ),
            None => response.header("Retry-After", "1"),
        }
    }
}

fn headers(response: Response, limit: u32, remaining: u32, reset: Duration) -> Response {
    response
        .header("X-RateLimit-Limit", limit.to_string())
        .header("X-RateLimit-Remaining", remaining.to_string())
        .header("X-RateLimit-Reset", ceil_secs(reset).to_string())
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

/// The shard that keeps `user`'s bucket: the owner of the user's stored context too.
pub fn owner(user: &str, shards: usize) -> usize {
    atlas_shard::key::shard_of(user.as_bytes(), shards)
}

/// Applies the rate limits to a request of `user` (the authenticated subject once auth is
/// on; the user the request names until then). `Ok` with what to finish the answer with, or
/// `Err` with the refusal to send. Free when every limit is off.
pub async fn check(shard: &Rc<Shard>, user: &str) -> Result<Allowance, Refused> {
    let Some(limiter) = &shard.rate_limits else {
        return Ok(Allowance::default());
    };
    let owner = if limiter.limits_users() {
        owner(user, shard.mesh.shards())
    } else {
        shard.id
    };
    let verdict = if owner == shard.id {
        limiter.take(user).await
    } else {
        ask_owner(shard, owner, user).await?
    };
    let metrics_on = shard.config.enable_prometheus;
    match verdict {
        Verdict::Allowed {
            user: decision,
            charges,
        } => {
            let refundable = charges.user != Charge::Free || charges.global != Charge::Free;
            Ok(Allowance {
                decision,
                refund: (!limiter.count_hits && refundable).then(|| Refund {
                    owner,
                    user: user.to_string(),
                    charges,
                }),
            })
        }
        Verdict::Refused { scope, decision } => {
            if metrics_on {
                bump(match scope {
                    Scope::User => &limiter.counters.refused_user,
                    Scope::Global => &limiter.counters.refused_global,
                });
            }
            let rate = match scope {
                Scope::User => shard.config.rate_limits.user(),
                Scope::Global => shard.config.rate_limits.global(),
            };
            Err(Refused::limited(scope, decision, rate))
        }
        Verdict::Unavailable => {
            if metrics_on {
                bump(&limiter.counters.unavailable);
            }
            Err(Refused::unavailable(
                "rate_limit_unavailable",
                "the shared rate limits (Redis) cannot be reached and \
                 ATLAS_RATE_LIMIT_REDIS_FAILURE=closed; retry later"
                    .to_string(),
            ))
        }
    }
}

/// Runs the take on `owner`, waiting at most the broadcast limit.
async fn ask_owner(shard: &Rc<Shard>, owner: usize, user: &str) -> Result<Verdict, Refused> {
    let call = RateCall::Take {
        user: user.to_string(),
    };
    let reply = futures_lite::future::or(
        async {
            Some(
                shard
                    .mesh
                    .call(owner, ShardCall::RateLimit(Box::new(call)))
                    .await,
            )
        },
        async {
            glommio::timer::sleep(BROADCAST_LIMIT).await;
            None
        },
    )
    .await;
    match reply {
        Some(Ok(ShardReply::RateLimit(RateReply::Taken(verdict)))) => Ok(verdict),
        Some(Ok(_)) => Err(shard_unavailable("unexpected reply")),
        Some(Err(e)) => Err(shard_unavailable(e)),
        None => Err(shard_unavailable("timed out")),
    }
}

fn shard_unavailable(e: impl std::fmt::Display) -> Refused {
    Refused::unavailable(
        "shard_unavailable",
        format!("the shard that keeps this user's rate limit did not answer: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_retry_after_and_the_limit_headers() {
        let decision = Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset: Duration::from_millis(2100),
            retry_after: Duration::from_millis(200),
        };
        let refused = Refused::limited(Scope::User, decision, Rate::new(5.0, 10));
        let r = refused.to_response();
        assert_eq!(r.status, Status::TooManyRequests);
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(h("Retry-After").as_deref(), Some("1"));
        assert_eq!(h("X-RateLimit-Limit").as_deref(), Some("10"));
        assert_eq!(h("X-RateLimit-Remaining").as_deref(), Some("0"));
        assert_eq!(h("X-RateLimit-Reset").as_deref(), Some("3"));
        assert_eq!(refused.error.code, "rate_limited_user");
        assert!(refused
            .error
            .message
            .contains("5 requests per second (burst 10)"));
        let global = Refused::limited(Scope::Global, decision, None);
        assert_eq!(global.error.code, "rate_limited_global");
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_nanos(2_000_000_001)), 3);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }

    #[test]
    fn batches_are_a_tenth_of_the_burst_split_over_takers() {
        let r = Rate::new(100.0, 100).unwrap();
        assert_eq!(batch(&r, 1), 10);
        assert_eq!(batch(&r, 4), 3);
        assert_eq!(batch(&Rate::new(1.0, 1).unwrap(), 8), 1);
        assert_eq!(batch(&Rate::new(1e6, 1_000_000).unwrap(), 1), 1000);
    }
}

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
//! Layout: `limiter` (the owner side: one shard's buckets and Redis batches), [`store`] (the
//! Redis script and its breaker), this file (the request path: [`subject`], [`check`], the
//! mesh messages, [`Allowance`] and [`Refused`]). The bucket arithmetic lives in
//! `atlas_shard::ratelimit`. Nothing here touches the cache or the queues. A shard checks the
//! limits with [`Rates`]: its own limiter and a `mesh::Link` that carries only [`RateCall`]s.

mod limiter;
pub mod store;

use std::rc::Rc;
use std::time::Duration;

use atlas_shard::{Decision, Rate};

use crate::ai::engine::CacheStatus;
use crate::error::ApiError;
use crate::http::{Response, Status};
use crate::mesh::Link;
pub use limiter::{Limiter, RateFigures};

/// Longest the accepting shard waits for the user's owner to answer a take.
pub const OWNER_LIMIT: Duration = Duration::from_secs(1);

/// What a shard checks the rate limits with.
pub struct Rates<'a, L> {
    /// This shard's limiter (`None` when every limit is off).
    pub limiter: Option<&'a Rc<Limiter>>,
    /// The mesh, as far as rate-limit calls go.
    pub link: &'a L,
    /// Whether refusals are counted (`ENABLE_PROMETHEUS`).
    pub count: bool,
}

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
    /// The user charged (`None`: only a global token was).
    user: Option<String>,
    charges: Charges,
}

impl Allowance {
    /// Finishes the answer to an accepted request: gives the tokens back when it was served
    /// from the cache and hits do not count, and adds `X-RateLimit-Limit`, `-Remaining` and
    /// `-Reset` when a user limit applied. `cache` is how the cache answered (`None` when
    /// the route has no cache, like the context routes: always charged).
    pub fn finish<L: Link<RateCall, RateReply>>(
        self,
        rates: &Rates<'_, L>,
        response: Response,
        cache: Option<CacheStatus>,
    ) -> Response {
        let hit = matches!(cache, Some(CacheStatus::Hit | CacheStatus::Stale));
        let mut returned = false;
        if let (true, Some(refund)) = (hit, self.refund) {
            returned = refund.charges.user != Charge::Free;
            refund.send(rates);
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
    fn send<L: Link<RateCall, RateReply>>(self, rates: &Rates<'_, L>) {
        let user = match self.user {
            Some(user) if self.owner != rates.link.this_shard() => user,
            user => {
                if let Some(limiter) = rates.limiter {
                    limiter.give_back(user.as_deref(), self.charges);
                }
                return;
            }
        };
        let link = rates.link.clone();
        glommio::spawn_local(async move {
            let call = RateCall::GiveBack {
                user,
                charges: self.charges,
            };
            let _ = link.ask(self.owner, call, None).await;
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

    /// Logs the refusal as a security event (one line, target `atlas::security`): the scope
    /// or code, the subject charged, the client address.
    pub fn log(&self, subject: Option<&str>, peer: Option<std::net::IpAddr>) {
        log::warn!(
            target: "atlas::security",
            "event=rate_limited scope={} subject={:?} retry_after_s={} peer={}",
            self.scope.map_or(self.error.code, Scope::as_str),
            subject.map_or("-", |s| crate::error::truncate(s, 64)),
            self.decision
                .map_or(1, |d| ceil_secs(d.retry_after).max(1)),
            peer.map_or("-".to_string(), |p| p.to_string()),
        );
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

/// The identity a request is charged to, given who is asking and the user the request names
/// (the body's `user_id`, the context path's user): the token's subject when authenticated
/// (so an admin acting for another user is charged itself), the named user with auth off,
/// and nobody for the static `ATLAS_ADMIN_TOKEN` (an operator: only the global limit
/// applies).
pub fn subject<'a>(identity: &'a crate::auth::Identity, named: &'a str) -> Option<&'a str> {
    match identity {
        crate::auth::Identity::User { sub, .. } => Some(sub),
        crate::auth::Identity::Open => Some(named),
        crate::auth::Identity::AdminToken => None,
    }
}

/// Applies the rate limits to a request charged to `user` (see [`subject`]; `None`: the
/// global limit only). `Ok` with what to finish the answer with, or `Err` with the refusal
/// to send. Free when every limit is off.
pub async fn check<L: Link<RateCall, RateReply>>(
    rates: &Rates<'_, L>,
    user: Option<&str>,
) -> Result<Allowance, Refused> {
    let Some(limiter) = rates.limiter else {
        return Ok(Allowance::default());
    };
    let here = rates.link.this_shard();
    let (owner, user) = match user {
        Some(user) if limiter.limits_users() => (owner(user, rates.link.shard_count()), Some(user)),
        _ => (here, None),
    };
    let verdict = match user {
        Some(user) if owner != here => ask_owner(rates.link, owner, user).await?,
        _ => limiter.take(user).await,
    };
    let metrics_on = rates.count;
    match verdict {
        Verdict::Allowed {
            user: decision,
            charges,
        } => {
            let refundable = charges.user != Charge::Free || charges.global != Charge::Free;
            Ok(Allowance {
                decision,
                refund: (!limiter.counts_hits() && refundable).then(|| Refund {
                    owner,
                    user: user.map(str::to_string),
                    charges,
                }),
            })
        }
        Verdict::Refused { scope, decision } => {
            if metrics_on {
                limiter.count_refused(Some(scope));
            }
            Err(Refused::limited(scope, decision, limiter.rate(scope)))
        }
        Verdict::Unavailable => {
            if metrics_on {
                limiter.count_refused(None);
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

/// Runs the take on `owner`, waiting at most [`OWNER_LIMIT`].
async fn ask_owner(
    link: &impl Link<RateCall, RateReply>,
    owner: usize,
    user: &str,
) -> Result<Verdict, Refused> {
    let call = RateCall::Take {
        user: user.to_string(),
    };
    let reply =
        futures_lite::future::or(async { Some(link.ask(owner, call, None).await) }, async {
            glommio::timer::sleep(OWNER_LIMIT).await;
            None
        })
        .await;
    match reply {
        Some(Ok(RateReply::Taken(verdict))) => Ok(verdict),
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
}

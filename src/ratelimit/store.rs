//! The shared store of the rate limits: GCRA buckets in Redis, taken from in batches by an
//! atomic Lua script, so that several instances enforce one limit.
//!
//! A bucket is one key holding its TAT in microseconds on Redis's own clock (`TIME` inside
//! the script: instances never compare their clocks). [`Store::take`] asks for up to `want`
//! tokens and gets how many were granted and how far the TAT now runs ahead; tokens come back
//! with a negative `want` ([`Store::give_back`], fire-and-forget). Keys:
//! `{prefix}rl:u:{user}` (escaped like the L2's index keys) and `{prefix}rl:global`; each
//! expires when its bucket is full again, so an idle user costs Redis nothing.
//!
//! Calls go through the L2's worker pool (`L2::query`) and a per-shard breaker: two
//! consecutive failures (an error, or no answer within the limit) open it for 1 s, doubling
//! to 10 s, then one probe decides; while it is open the caller falls back
//! (`ATLAS_RATE_LIMIT_REDIS_FAILURE`). Runs on a shard thread; never blocks it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use atlas_shard::{BreakerOptions, BreakerState, CircuitBreaker, MonotonicClock, Rate};

use crate::l2::L2;

/// The script: `KEYS[1]` the bucket; `ARGV` interval (µs), burst, want (negative: give
/// back). Answers `{granted, TAT − now (µs)}`.
pub const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
local granted = 0
if want > 0 then
  granted = math.floor((now + tolerance - tat) / interval)
  if granted > want then granted = want end
  if granted < 0 then granted = 0 end
  tat = tat + granted * interval
else
  tat = math.max(tat + want * interval, now)
end
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
else
  redis.call('DEL', KEYS[1])
end
return {granted, tat - now}
";

/// Tokens unspent this long after they were taken go back to Redis.
pub const GRANT_TTL: Duration = Duration::from_secs(1);

/// What a take got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Tokens granted (0: none left).
    pub granted: u32,
    /// How far the bucket's TAT now runs ahead of Redis's clock.
    pub wait: Duration,
}

/// Counters of one shard's store use.
#[derive(Debug, Default)]
struct Counters {
    takes: Cell<u64>,
    errors: Cell<u64>,
    skipped: Cell<u64>,
    returns: Cell<u64>,
}

/// A copy of one shard's store figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreFigures {
    /// Takes Redis answered.
    pub takes: u64,
    /// Takes that failed or timed out.
    pub errors: u64,
    /// Takes not tried because the breaker was open.
    pub skipped: u64,
    /// Give-backs queued.
    pub returns: u64,
    /// This shard's breaker.
    pub state: Option<BreakerState>,
}

impl StoreFigures {
    /// Adds `o`'s counters (the state is kept from `self` when set).
    pub fn merge(&mut self, o: &StoreFigures) {
        self.takes += o.takes;
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.returns += o.returns;
        if self.state.is_none() {
            self.state = o.state;
        }
    }
}

/// One shard's handle on the shared buckets.
pub struct Store {
    l2: Rc<L2>,
    breaker: RefCell<CircuitBreaker<MonotonicClock>>,
    /// Longest wait for a take.
    limit: Duration,
    counters: Counters,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().saturating_add(1));
}

/// The interval of `rate` in whole microseconds (at least 1).
fn interval_us(rate: &Rate) -> u64 {
    (rate.interval().as_nanos() as u64).div_ceil(1000).max(1)
}

impl Store {
    /// A handle over `l2`; a take waits at most `limit`.
    pub fn new(l2: Rc<L2>, limit: Duration, origin: Instant) -> Store {
        let options = BreakerOptions {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call: limit,
            open_base: Duration::from_secs(1),
            open_max: Duration::from_secs(10),
            half_open_probes: 1,
            consecutive_failures: 2,
        };
        Store {
            l2,
            breaker: RefCell::new(CircuitBreaker::new(
                options,
                MonotonicClock::with_origin(origin),
            )),
            limit,
            counters: Counters::default(),
        }
    }

    /// The key of `user`'s bucket.
    pub fn user_key(&self, user: &str) -> Vec<u8> {
        self.l2.index_key("rl:u", user)
    }

    /// The key of the global bucket.
    pub fn global_key(&self) -> Vec<u8> {
        self.l2.index_key("rl", "global")
    }

    /// Takes up to `want` tokens from the bucket `key` of `rate`; `None` when Redis failed,
    /// timed out, or the breaker is open (the caller falls back).
    pub async fn take(&self, key: Vec<u8>, rate: &Rate, want: u32) -> Option<Taken> {
        let permit = self.breaker.borrow_mut().try_acquire();
        if !permit.is_allowed() {
            bump(&self.counters.skipped);
            return None;
        }
        let probe = permit.is_probe();
        let before = self.state();
        let started = Instant::now();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SCRIPT)
            .arg(1)
            .arg(key)
            .arg(interval_us(rate))
            .arg(rate.burst())
            .arg(want);
        let answer = self.l2.query(cmd, self.limit).await.and_then(parse);
        match answer {
            Ok(taken) => {
                bump(&self.counters.takes);
                self.breaker
                    .borrow_mut()
                    .on_success(started.elapsed(), probe);
                if before != BreakerState::Closed && self.state() == BreakerState::Closed {
                    log::info!("rate limits: Redis answers again; limits are shared again");
                }
                Some(taken)
            }
            Err(e) => {
                bump(&self.counters.errors);
                self.breaker.borrow_mut().on_failure(probe);
                if before != BreakerState::Open && self.state() == BreakerState::Open {
                    log::warn!("rate limits: Redis failed ({e}); falling back");
                }
                None
            }
        }
    }

    /// Returns `n` unspent tokens to the bucket `key` (queued; nobody waits).
    pub fn give_back(&self, key: Vec<u8>, rate: &Rate, n: u32) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SCRIPT)
            .arg(1)
            .arg(key)
            .arg(interval_us(rate))
            .arg(rate.burst())
            .arg(-i64::from(n));
        if self.l2.fire(cmd) {
            bump(&self.counters.returns);
        }
    }

    /// The breaker's state.
    pub fn state(&self) -> BreakerState {
        self.breaker.borrow().state()
    }

    /// A copy of the counters.
    pub fn figures(&self) -> StoreFigures {
        let c = &self.counters;
        StoreFigures {
            takes: c.takes.get(),
            errors: c.errors.get(),
            skipped: c.skipped.get(),
            returns: c.returns.get(),
            state: Some(self.state()),
        }
    }
}

/// `{granted, wait_us}` from the script.
fn parse(value: redis::Value) -> Result<Taken, String> {
    match value {
        redis::Value::Array(items) => match items.as_slice() {
            [redis::Value::Int(granted), redis::Value::Int(wait)] => Ok(Taken {
                granted: u32::try_from(*granted).unwrap_or(0),
                wait: Duration::from_micros(u64::try_from(*wait).unwrap_or(0)),
            }),
            _ => Err(format!("unexpected script answer {items:?}")),
        },
        redis::Value::ServerError(e) => Err(e.to_string()),
        other => Err(format!("unexpected script answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_answers_parse_and_intervals_round_up() {
        let v = redis::Value::Array(vec![redis::Value::Int(3), redis::Value::Int(1500)]);
        assert_eq!(
            parse(v),
            Ok(Taken {
                granted: 3,
                wait: Duration::from_micros(1500)
            })
        );
        assert!(parse(redis::Value::Nil).is_err());
        let r = Rate::new(3.0, 1).unwrap();
        assert_eq!(interval_us(&r), 333_334);
        assert_eq!(interval_us(&Rate::new(1_000_000.0, 1).unwrap()), 1);
    }
}

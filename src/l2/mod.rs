//! The shared L2 cache on Redis (`ATLAS_REDIS_URL`), as seen from one shard: bounded
//! lookups, write-behind stores, and a breaker that stops using Redis while it is unhealthy.
//!
//! Layout: `record` (the validated rkyv value format), `pool` (worker threads with the Redis
//! connections), this file (the shard-side handle, its breaker and counters).
//!
//! Order on the owner shard: L1 → single flight → **L2** → batch queue. Only a single-flight
//! leader looks L2 up, so a burst of identical misses costs one Redis read. A lookup waits at
//! most `ATLAS_REDIS_TIMEOUT_MS`; a timeout, an error, a value that fails validation or holds
//! another key is a miss and never an error for the client. A hit is inserted into L1 with
//! its remaining lifetime and answered as `X-Atlas-Cache: hit`, `X-Atlas-Cache-Level: l2`.
//!
//! Stores are write-behind: queued to the workers after the client's answer is on its way
//! (never awaited), with Redis TTL = the entry's remaining lifetime (fresh + stale window).
//! Each stored key is listed in index sets (`{prefix}t:{tag}`, `s:{symbol}`, `u:{user}`,
//! `o:{operation}`) so invalidations can find it in Redis.
//!
//! Breaker (per shard, the count-window breaker of the endpoints): 3 consecutive failures or
//! ≥ 50 % failures over the last 20 lookups (10 at least) open it for 1 s, doubling to 30 s;
//! then one probe lookup decides. While open, lookups skip L2; stores still go (they never
//! wait on Redis).

pub mod pool;
pub mod record;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use atlas_shard::{
    BreakerOptions, BreakerState, CacheKey, CircuitBreaker, MonotonicClock, SnapshotEntry,
};

use pool::{Command, Pool};
use record::Record;

/// How one shard uses the L2.
#[derive(Debug, Clone)]
pub struct L2Options {
    /// Prefix of every Redis key Atlas writes.
    pub prefix: String,
    /// Longest wait for a lookup.
    pub timeout: Duration,
}

/// Counters of one shard's L2 use (plain cells: shard-local).
#[derive(Debug, Default)]
struct Counters {
    hits: Cell<u64>,
    misses: Cell<u64>,
    errors: Cell<u64>,
    timeouts: Cell<u64>,
    corrupt: Cell<u64>,
    stale: Cell<u64>,
    skipped: Cell<u64>,
    stores: Cell<u64>,
    stores_dropped: Cell<u64>,
}

/// A copy of one shard's L2 figures (`Send`), for `/metrics` and `/health/detailed`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct L2Figures {
    /// Lookups that found a valid value.
    pub hits: u64,
    /// Lookups that found nothing (or an expired value).
    pub misses: u64,
    /// Lookups that failed (connection, server error).
    pub errors: u64,
    /// Lookups that took longer than the timeout.
    pub timeouts: u64,
    /// Values that failed validation or held another key.
    pub corrupt: u64,
    /// Lookups that found a record an invalidation applied on this instance had made stale
    /// (written by a store that raced it; see `ai::horizon`). Not counted as hits.
    pub stale: u64,
    /// Lookups and stores skipped because the breaker was open or the queue full.
    pub skipped: u64,
    /// Stores queued.
    pub stores: u64,
    /// Stores dropped (queue full, breaker open).
    pub stores_dropped: u64,
    /// This shard's breaker state.
    pub state: Option<BreakerState>,
    /// Worker connections up (process-wide).
    pub connected: u64,
}

impl L2Figures {
    /// Adds another shard's counters (state and connections are kept from `self` if set).
    pub fn merge(&mut self, o: &L2Figures) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.corrupt += o.corrupt;
        self.stale += o.stale;
        self.skipped += o.skipped;
        self.stores += o.stores;
        self.stores_dropped += o.stores_dropped;
        self.connected = self.connected.max(o.connected);
        if self.state.is_none() {
            self.state = o.state;
        }
    }
}

/// One shard's handle on the L2.
pub struct L2 {
    pool: Pool,
    options: L2Options,
    breaker: RefCell<CircuitBreaker<MonotonicClock>>,
    counters: Counters,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().saturating_add(1));
}

/// Appends `bytes` with `{`, `}`, `%` and control bytes as `%XX`.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if matches!(b, b'{' | b'}' | b'%') || b < 0x20 || b == 0x7f {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// A worker's answer, or an error when it does not come within `limit`.
async fn answer_within<T>(
    rx: oneshot::Receiver<Result<T, String>>,
    limit: Duration,
) -> Result<T, String> {
    let answer = futures_lite::future::or(async { Some(rx.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await;
    match answer {
        Some(Ok(result)) => result,
        Some(Err(_)) => Err("the Redis worker went away".into()),
        None => Err(format!(
            "Redis did not answer within {} ms",
            limit.as_millis()
        )),
    }
}

/// The breaker settings for Redis.
fn breaker_options(timeout: Duration) -> BreakerOptions {
    BreakerOptions {
        window: 20,
        min_calls: 10,
        failure_rate: 0.5,
        slow_call_rate: 1.0,
        slow_call: timeout,
        open_base: Duration::from_secs(1),
        open_max: Duration::from_secs(30),
        half_open_probes: 1,
        consecutive_failures: 3,
    }
}

impl L2 {
    /// A handle on `pool` for one shard.
    pub fn new(pool: Pool, options: L2Options, origin: Instant) -> L2 {
        let breaker = CircuitBreaker::new(
            breaker_options(options.timeout),
            MonotonicClock::with_origin(origin),
        );
        L2 {
            pool,
            options,
            breaker: RefCell::new(breaker),
            counters: Counters::default(),
        }
    }

    /// The Redis key of a result: `{prefix}r:{operation}:{user length}:{user}:{canonical
    /// input}`, readable in `redis-cli`, injective (the length frames the user), with `{`, `}`
    /// and `%` percent-escaped so that no part of an input becomes a Redis Cluster hash tag.
    pub fn redis_key(&self, key: &CacheKey) -> Vec<u8> {
        let user = key.user().unwrap_or("");
        let mut k = Vec::with_capacity(self.options.prefix.len() + 32 + key.bytes().len());
        k.extend_from_slice(self.options.prefix.as_bytes());
        k.extend_from_slice(b"r:");
        k.extend_from_slice(key.operation().as_str().as_bytes());
        k.extend_from_slice(format!(":{}:", user.len()).as_bytes());
        escape(&mut k, user.as_bytes());
        k.push(b':');
        escape(&mut k, key.input());
        k
    }

    /// The index set listing results that depend on `name` of `kind` (`t` tag, `s` symbol,
    /// `u` user, `o` operation).
    pub fn index_key(&self, kind: &str, name: &str) -> Vec<u8> {
        let mut k = format!("{}{kind}:", self.options.prefix).into_bytes();
        escape(&mut k, name.as_bytes());
        k
    }

    /// The Redis key of `user`'s stored context.
    pub fn context_key(&self, user: &str) -> Vec<u8> {
        self.index_key("c", user)
    }

    /// Looks `key` up; `None` on a miss, an error, a timeout, an invalid value, or while the
    /// breaker is open. Never fails the caller.
    pub async fn get(&self, key: &CacheKey) -> Option<SnapshotEntry> {
        let bytes = self.get_bytes(self.redis_key(key)).await?;
        let now = crate::wallclock::unix_ms_now();
        match Record::decode(&bytes, Some(key.bytes())) {
            Ok(r) if r.remaining_ms(now) > 0 => {
                bump(&self.counters.hits);
                Some(r.into_entry(now))
            }
            Ok(_) => {
                bump(&self.counters.misses);
                None
            }
            Err(e) => {
                bump(&self.counters.corrupt);
                log::debug!("redis: ignoring an invalid L2 value: {e}");
                None
            }
        }
    }

    /// Recounts the last hit of [`L2::get`] as stale: the caller refused it.
    pub fn count_stale(&self) {
        self.counters
            .hits
            .set(self.counters.hits.get().saturating_sub(1));
        bump(&self.counters.stale);
    }

    /// Runs one command and waits at most `limit` for its answer.
    pub async fn query(&self, cmd: redis::Cmd, limit: Duration) -> Result<redis::Value, String> {
        let (tx, rx) = oneshot::channel();
        self.pool
            .send(Command::Query { cmd, reply: tx })
            .map_err(|_| "the Redis queue is full".to_string())?;
        answer_within(rx, limit).await
    }

    /// `SET key value PX ttl_ms`, waiting at most `limit`.
    pub async fn set_bytes(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: u64,
        limit: Duration,
    ) -> Result<(), String> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl_ms.max(1));
        match self.query(cmd, limit).await? {
            redis::Value::Okay | redis::Value::SimpleString(_) => Ok(()),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// `UNLINK key`, waiting at most `limit`: whether the key existed.
    pub async fn unlink(&self, key: Vec<u8>, limit: Duration) -> Result<bool, String> {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(key);
        match self.query(cmd, limit).await? {
            redis::Value::Int(n) => Ok(n > 0),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// `GET key` through the breaker, waiting at most the lookup timeout: the bytes, or
    /// `None` on a miss, an error or a timeout (counted; a found value is not yet counted:
    /// the caller validates it).
    pub async fn get_bytes(&self, key: Vec<u8>) -> Option<Vec<u8>> {
        let permit = self.breaker.borrow_mut().try_acquire();
        if !permit.is_allowed() {
            bump(&self.counters.skipped);
            return None;
        }
        let probe = permit.is_probe();
        let (tx, rx) = oneshot::channel();
        let sent = self.pool.send(Command::Get { key, reply: tx });
        if sent.is_err() {
            bump(&self.counters.skipped);
            self.breaker.borrow_mut().on_failure(probe);
            return None;
        }
        let started = Instant::now();
        let answer = futures_lite::future::or(async { Some(rx.await) }, async {
            glommio::timer::sleep(self.options.timeout).await;
            None
        })
        .await;
        let bytes = match answer {
            None => {
                bump(&self.counters.timeouts);
                self.breaker.borrow_mut().on_failure(probe);
                return None;
            }
            Some(Ok(Ok(found))) => {
                self.breaker
                    .borrow_mut()
                    .on_success(started.elapsed(), probe);
                found
            }
            Some(Ok(Err(_)) | Err(_)) => {
                bump(&self.counters.errors);
                self.breaker.borrow_mut().on_failure(probe);
                return None;
            }
        };
        if bytes.is_none() {
            bump(&self.counters.misses);
        }
        bytes
    }

    /// Queues `entry` to be written to Redis (write-behind; dropped and counted when the
    /// queue is full). The breaker does not gate stores: they never wait on Redis, and a
    /// breaker opened by slow lookups (a busy shard misses the 5 ms budget as surely as a
    /// slow Redis) must not empty the shared cache; with Redis down the workers fail them at
    /// once and the bounded queue absorbs the rest.
    pub fn store(&self, key: &CacheKey, entry: &SnapshotEntry) {
        let now = crate::wallclock::unix_ms_now();
        let record = Record::from_entry(entry, now);
        let ttl_ms = record.remaining_ms(now);
        if ttl_ms == 0 {
            return;
        }
        let Ok(value) = record.encode() else {
            bump(&self.counters.stores_dropped);
            return;
        };
        let mut index = Vec::with_capacity(2 + entry.tags.len() + entry.symbols.len());
        index.push(self.index_key("o", key.operation().as_str()));
        if let Some(user) = key.user() {
            index.push(self.index_key("u", user));
        }
        index.extend(entry.tags.iter().map(|t| self.index_key("t", t)));
        index.extend(entry.symbols.iter().map(|s| self.index_key("s", s)));
        let sent = self.pool.send(Command::Set {
            key: self.redis_key(key),
            value,
            ttl_ms,
            index,
        });
        match sent {
            Ok(()) => bump(&self.counters.stores),
            Err(_) => bump(&self.counters.stores_dropped),
        }
    }

    /// Queues a command whose answer nobody waits for.
    pub fn fire(&self, cmd: redis::Cmd) -> bool {
        self.pool.send(Command::Fire(cmd)).is_ok()
    }

    /// Deletes results from Redis: `keys`, every result listed in the index sets `sets`
    /// (see [`L2::index_key`]), and with `all` everything under the prefix. Waits at most
    /// `limit`; answers the number of results deleted.
    pub async fn delete(
        &self,
        keys: Vec<Vec<u8>>,
        sets: Vec<Vec<u8>>,
        all: bool,
        limit: Duration,
    ) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        let scan = all.then(|| self.options.prefix.as_bytes().to_vec());
        self.pool
            .send(Command::Invalidate {
                keys,
                sets,
                scan,
                results: format!("{}r:", self.options.prefix).into_bytes(),
                reply: Some(tx),
            })
            .map_err(|_| "the Redis queue is full".to_string())?;
        answer_within(rx, limit).await
    }

    /// The pub/sub channel invalidations travel on (`{prefix}invalidate`).
    pub fn channel(&self) -> Vec<u8> {
        format!("{}invalidate", self.options.prefix).into_bytes()
    }

    /// Publishes `message` on [`L2::channel`] (queued; dropped and logged when the queue is
    /// full).
    pub fn publish(&self, message: Vec<u8>) {
        let sent = self.pool.send(Command::Publish {
            channel: self.channel(),
            message,
        });
        if sent.is_err() {
            log::warn!("redis: queue full, an invalidation was not published");
        }
    }

    /// The pool (for commands that need an answer).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A copy of this shard's figures.
    pub fn figures(&self) -> L2Figures {
        let c = &self.counters;
        L2Figures {
            hits: c.hits.get(),
            misses: c.misses.get(),
            errors: c.errors.get(),
            timeouts: c.timeouts.get(),
            corrupt: c.corrupt.get(),
            stale: c.stale.get(),
            skipped: c.skipped.get(),
            stores: c.stores.get(),
            stores_dropped: c.stores_dropped.get(),
            state: Some(self.breaker.borrow().state()),
            connected: self.pool.connected() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atlas_shard::Operation;

    fn l2() -> L2 {
        let (tx, _rx) = crossbeam::channel::bounded(1);
        L2::new(
            Pool::for_tests(tx),
            L2Options {
                prefix: "atlas:v1:".into(),
                timeout: Duration::from_millis(5),
            },
            Instant::now(),
        )
    }

    #[test]
    fn redis_keys_are_readable_framed_and_free_of_hash_tags() {
        let l2 = l2();
        let key = CacheKey::new(Operation::RiskAssessment, Some("u:1"), br#"{"age":35}"#).unwrap();
        assert_eq!(
            String::from_utf8(l2.redis_key(&key)).unwrap(),
            "atlas:v1:r:risk_assessment:3:u:1:%7B\"age\":35%7D"
        );
        // The length keeps ("u", ":x") and ("u:", "x") apart.
        let a = CacheKey::new(Operation::RiskAssessment, Some("u"), b":x").unwrap();
        let b = CacheKey::new(Operation::RiskAssessment, Some("u:"), b"x").unwrap();
        assert_ne!(l2.redis_key(&a), l2.redis_key(&b));
        assert_eq!(
            l2.index_key("t", "fx{eur}"),
            b"atlas:v1:t:fx%7Beur%7D".to_vec()
        );
    }
}

//! Cache invalidation: the [`Invalidation`] value (what to remove), applying one to a shard's
//! L1 cache ([`apply`]), sending one to every shard of this process ([`on_every_shard`], keys
//! only to their owners, over the service's `mesh::Link`) and the body of
//! `POST /ai/cache/invalidate` ([`read`]; the handler is the app's, `app::invalidate`).
//!
//! `POST /ai/events` and context updates build an `Invalidation` too, and all three go
//! through [`everywhere`]:
//!
//! - **Per shard**, [`crate::ai::engine::Engine::invalidate`]: what one shard drops (its L1
//!   entries; a result computed across the invalidation is answered but not stored, in L1 or
//!   L2).
//! - **Per instance**, [`everywhere`]: an invalidation that starts here. The L1 broadcast;
//!   with Redis, the deletion from Redis (once per invalidation, not per shard: Redis is
//!   shared, through the index sets every stored result is listed in), then the publication
//!   of the `Invalidation` as JSON on `{prefix}invalidate`. Other instances receive it
//!   (`app::invalidate::follow_other_instances`) and apply it with [`on_every_shard`] only
//!   (their Redis work was done by the sender; re-applying it would echo).
//! - A subscription that was lost and made again may have missed messages: the instance
//!   then clears its L1 everywhere (entries refill from L2, which the senders cleaned).
//!
//! `Invalidation` is plain `Send` data and round-trips through JSON (serde), so the same value
//! crosses the mesh and the pub/sub channel.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use atlas_shard::{Cache, CacheKey, Clock, KeyError, Operation};

use crate::l2::L2;
use crate::mesh::Link;

mod route;
pub use route::{check_names, operation, read};
#[cfg(test)]
use {
    crate::error::ApiError,
    route::{from_body, invalid, Body},
};

/// Most names in one selector list (`dependencies`, `symbols`, `keys`).
const MAX_LIST: usize = 1024;
/// Longest tag or symbol named in an invalidation; longer than a request's own tags so that
/// `context:<user_id>` can be named for any valid user id.
pub const MAX_NAME_LEN: usize = 512;

/// How an invalidation selects entries: a closed set, in the order they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Everything (`all: true`).
    All,
    /// Exact cache keys.
    Key,
    /// Dependency tags.
    Tag,
    /// Market symbols.
    Symbol,
    /// Every result of a user.
    User,
    /// Every result of an operation.
    Operation,
}

impl Kind {
    /// Number of kinds.
    pub const COUNT: usize = 6;
    /// Every kind, in application order.
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::All,
        Kind::Key,
        Kind::Tag,
        Kind::Symbol,
        Kind::User,
        Kind::Operation,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::All => "all",
            Kind::Key => "key",
            Kind::Tag => "tag",
            Kind::Symbol => "symbol",
            Kind::User => "user",
            Kind::Operation => "operation",
        }
    }

    /// Position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One exact cache key, as (operation, user, canonical input): what a key of `POST
/// /ai/cache/invalidate` becomes after canonicalisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// The operation.
    #[serde(with = "operation_name")]
    pub operation: Operation,
    /// The user scope.
    pub user_id: String,
    /// The canonical JSON text of the input (see `ai::canonical`).
    pub canonical_input: String,
}

impl KeyRef {
    /// The cache key this names.
    pub fn cache_key(&self) -> Result<CacheKey, KeyError> {
        CacheKey::new(
            self.operation,
            Some(&self.user_id),
            self.canonical_input.as_bytes(),
        )
    }
}

/// What to remove from the caches. Selectors add up: an entry is removed when any of them
/// selects it. Plain `Send` data, serialised as JSON for the Redis pub/sub channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invalidation {
    /// Remove everything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Exact keys (each applied on its owner shard only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyRef>,
    /// Results that declared any of these dependency tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Results computed from any of these market symbols.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
    /// Every result of these users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Every result of these operations.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "operation_names"
    )]
    pub operations: Vec<Operation>,
}

impl Invalidation {
    /// An invalidation of dependency tags.
    pub fn of_tags(tags: Vec<String>) -> Self {
        Invalidation {
            tags,
            ..Invalidation::default()
        }
    }

    /// Whether it selects nothing.
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.keys.is_empty()
            && self.tags.is_empty()
            && self.symbols.is_empty()
            && self.users.is_empty()
            && self.operations.is_empty()
    }

    /// Whether it selects a result stored under `key` with these dependency `tags` and
    /// market `symbols`.
    pub fn selects(&self, key: &CacheKey, tags: &[String], symbols: &[String]) -> bool {
        self.all
            || self
                .keys
                .iter()
                .any(|k| k.cache_key().is_ok_and(|k| k == *key))
            || self.tags.iter().any(|t| tags.contains(t))
            || self.symbols.iter().any(|s| symbols.contains(s))
            || key
                .user()
                .is_some_and(|u| self.users.iter().any(|x| x == u))
            || self.operations.contains(&key.operation())
    }

    /// The kinds of selector it uses.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL.into_iter().filter(|k| match k {
            Kind::All => self.all,
            Kind::Key => !self.keys.is_empty(),
            Kind::Tag => !self.tags.is_empty(),
            Kind::Symbol => !self.symbols.is_empty(),
            Kind::User => !self.users.is_empty(),
            Kind::Operation => !self.operations.is_empty(),
        })
    }
}

/// Entries removed, by the kind of selector that removed them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed(pub [u64; Kind::COUNT]);

impl Removed {
    /// Entries removed in all.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Removes from `cache` every entry `inv` selects. Selectors are applied in [`Kind::ALL`]
/// order; an entry selected several ways is removed (and counted) once, under the first.
/// Keys that are not this shard's are simply not found.
pub fn apply<C: Clock>(cache: &mut Cache<C>, inv: &Invalidation) -> Removed {
    let mut removed = Removed::default();
    let mut count = |kind: Kind, n: usize| removed.0[kind.index()] += n as u64;
    if inv.all {
        count(Kind::All, cache.clear());
        return removed;
    }
    for key in &inv.keys {
        if let Ok(key) = key.cache_key() {
            count(Kind::Key, usize::from(cache.invalidate_key(&key)));
        }
    }
    for tag in &inv.tags {
        count(Kind::Tag, cache.invalidate_tag(tag));
    }
    count(Kind::Symbol, cache.invalidate_symbols(&inv.symbols));
    for user in &inv.users {
        count(Kind::User, cache.invalidate_user(user));
    }
    for &op in &inv.operations {
        count(Kind::Operation, cache.invalidate_operation(op));
    }
    removed
}

/// How many of the latest invalidations [`Recent`] remembers.
const RECENT: usize = 64;

/// The invalidations one shard applied last, numbered, so that a computation that was in
/// flight while one ran can tell whether the invalidation named its result: such a result is
/// answered but not stored (its input was read before the invalidation).
#[derive(Debug, Default)]
pub struct Recent {
    /// Invalidations applied since start.
    applied: u64,
    /// The last [`RECENT`] of them, with their numbers, oldest first.
    log: VecDeque<(u64, Invalidation)>,
}

impl Recent {
    /// A mark to take before a computation starts.
    pub fn mark(&self) -> u64 {
        self.applied
    }

    /// Records an applied invalidation.
    pub fn record(&mut self, inv: &Invalidation) {
        self.applied += 1;
        self.log.push_back((self.applied, inv.clone()));
        if self.log.len() > RECENT {
            self.log.pop_front();
        }
    }

    /// Whether an invalidation applied after `mark` selects a result under `key` with these
    /// tags and symbols; also true when more were applied since than are remembered.
    pub fn selects_since(
        &self,
        mark: u64,
        key: &CacheKey,
        tags: &[String],
        symbols: &[String],
    ) -> bool {
        if self.applied == mark {
            return false;
        }
        match self.log.front() {
            Some(&(oldest, _)) if oldest <= mark + 1 => self
                .log
                .iter()
                .filter(|(n, _)| *n > mark)
                .any(|(_, inv)| inv.selects(key, tags, symbols)),
            _ => true,
        }
    }
}

/// What an invalidation did across this process's shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries removed in all.
    pub removed: u64,
    /// Entries removed per shard, in shard order; `None` for a shard that did not answer.
    pub shards: Vec<Option<u64>>,
    /// Shards that did not answer within the broadcast limit (the invalidation may still be
    /// applied there when it gets to it).
    pub unreachable: Vec<usize>,
    /// With Redis: results deleted there, or why that failed.
    pub l2: Option<Result<u64, String>>,
}

impl Report {
    /// `removed`, `shards` and `unreachable` as JSON fields, for callers to add their own.
    pub fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("removed".into(), json!(self.removed));
        m.insert("shards".into(), json!(self.shards));
        m.insert("unreachable".into(), json!(self.unreachable));
        match &self.l2 {
            Some(Ok(n)) => {
                m.insert("l2".into(), json!({"removed": n}));
            }
            Some(Err(e)) => {
                m.insert("l2".into(), json!({"error": e}));
            }
            None => {}
        }
        m
    }
}

/// Applies an invalidation that starts on this instance (an API call, an event, a context
/// change) everywhere it must go: the L1 caches of this process, waiting at most `limit` for
/// each shard, then with Redis (`l2`) the results stored there (waiting at most [`L2_LIMIT`])
/// and a message to the other instances.
pub async fn everywhere(
    link: &impl Link<Box<Invalidation>, Dropped>,
    l2: Option<&L2>,
    inv: Invalidation,
    limit: std::time::Duration,
) -> Report {
    let mut report = on_every_shard(link, inv.clone(), limit).await;
    if let Some(l2) = l2 {
        let keys = inv
            .keys
            .iter()
            .filter_map(|k| k.cache_key().ok())
            .map(|k| l2.redis_key(&k))
            .collect();
        let mut sets: Vec<Vec<u8>> = Vec::new();
        sets.extend(inv.tags.iter().map(|t| l2.index_key("t", t)));
        sets.extend(inv.symbols.iter().map(|t| l2.index_key("s", t)));
        sets.extend(inv.users.iter().map(|t| l2.index_key("u", t)));
        sets.extend(inv.operations.iter().map(|o| l2.index_key("o", o.as_str())));
        report.l2 = Some(l2.delete(keys, sets, inv.all, L2_LIMIT).await);
        let message = json!({"origin": l2.pool().instance(), "invalidation": inv});
        l2.publish(message.to_string().into_bytes());
    }
    report
}

/// Longest an invalidation waits for Redis to delete what it names.
pub const L2_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How many entries one shard dropped for an invalidation (the answer to the mesh call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped(pub u64);

/// Applies `inv` to the L1 cache of every shard of this process: each key goes to its owner
/// only, every other selector to every shard; a shard left with nothing to do is not called.
/// Shards that do not answer within `limit` are reported, not waited for.
pub async fn on_every_shard(
    link: &impl Link<Box<Invalidation>, Dropped>,
    mut inv: Invalidation,
    limit: std::time::Duration,
) -> Report {
    let n = link.shard_count();
    let mut keys: Vec<Vec<KeyRef>> = vec![Vec::new(); n];
    for key in std::mem::take(&mut inv.keys) {
        if let Ok(k) = key.cache_key() {
            keys[k.shard(n)].push(key);
        }
    }
    let broad = !inv.is_empty();
    let calls: Vec<(usize, Box<Invalidation>)> = keys
        .into_iter()
        .enumerate()
        .filter(|(_, keys)| broad || !keys.is_empty())
        .map(|(k, keys)| {
            let call = Invalidation {
                keys,
                ..inv.clone()
            };
            (k, Box::new(call))
        })
        .collect();
    let called: Vec<usize> = calls.iter().map(|(k, _)| *k).collect();
    let replies = link.ask_each(calls, limit).await;
    let mut report = Report {
        shards: vec![Some(0); n],
        ..Report::default()
    };
    for (k, reply) in called.into_iter().zip(replies) {
        match reply {
            Ok(Dropped(removed)) => {
                report.removed += removed;
                report.shards[k] = Some(removed);
            }
            Err(_) => {
                report.shards[k] = None;
                report.unreachable.push(k);
            }
        }
    }
    report
}

/// Serde for one [`Operation`] as its name.
mod operation_name {
    use atlas_shard::Operation;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(op: &Operation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(op.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Operation, D::Error> {
        let name = String::deserialize(d)?;
        Operation::from_name(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown operation `{name}`")))
    }
}

/// Serde for a list of [`Operation`]s as their names.
mod operation_names {
    use atlas_shard::Operation;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ops: &[Operation], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ops.iter().map(|o| o.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Operation>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|name| {
                Operation::from_name(name)
                    .ok_or_else(|| D::Error::custom(format!("unknown operation `{name}`")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

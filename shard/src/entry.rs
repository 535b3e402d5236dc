//! The values that cross the L1 cache's boundary: what an insert declares about a result
//! ([`EntryMeta`]), what a lookup answers ([`Lookup`], [`Hit`]), and the owned, plain-data form
//! of a live entry for snapshots ([`SnapshotEntry`]).
//!
//! Plain data only (no clock, no cache internals); `SnapshotEntry` uses only owned std types and
//! `Bytes`, so the deployment work can derive rkyv's traits on it (rkyv's `bytes-1` feature, or
//! a `Vec<u8>` body).

use std::time::Duration;

use bytes::Bytes;

use crate::config::CacheConfig;

/// What an insert declares about a result besides its key and body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryMeta {
    /// Lifetime as a fresh result (already adapted: see [`CacheConfig::ttl_for`]).
    pub ttl: Duration,
    /// After `ttl`, how long the result is served as stale while a refresh runs.
    pub stale_while_revalidate: Duration,
    /// After `ttl`, how long the result may be served if recomputing it fails.
    pub stale_if_error: Duration,
    /// The model's confidence in the result, in `[0, 1]` (kept for metrics and snapshots).
    pub confidence: f32,
    /// The result's volatility hint, in `[0, 1]`.
    pub volatility: f32,
    /// Whether this result may be refreshed ahead of expiry (the operation's `warmup`).
    pub refresh_ahead: bool,
    /// Dependency tags (`user:42:transactions`); invalidating one removes the result.
    pub tags: Vec<String>,
    /// Market symbols the result used; a `market_data_update` event for one removes it.
    pub symbols: Vec<String>,
}

impl EntryMeta {
    /// Metadata for a result of an operation configured by `config`, with the adaptive TTL
    /// for `confidence` and `volatility`, the configured windows and warm-up, and no tags.
    pub fn from_config(config: &CacheConfig, confidence: f32, volatility: f32) -> Self {
        EntryMeta {
            ttl: config.ttl_for(confidence, volatility),
            stale_while_revalidate: config.stale_while_revalidate,
            stale_if_error: config.stale_if_error,
            confidence,
            volatility,
            refresh_ahead: config.warmup,
            tags: Vec::new(),
            symbols: Vec::new(),
        }
    }

    /// Adds dependency tags.
    pub fn with_tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Adds event symbols.
    pub fn with_symbols<S: Into<String>>(mut self, symbols: impl IntoIterator<Item = S>) -> Self {
        self.symbols.extend(symbols.into_iter().map(Into::into));
        self
    }
}

/// A cached result handed to the caller. The body is the exact stored response bytes (a
/// reference-count increment, no copy).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The response body, byte-identical to what was inserted.
    pub body: Bytes,
    /// Time since the result was stored.
    pub age: Duration,
    /// The result's TTL.
    pub ttl: Duration,
    /// Accesses so far, this one included.
    pub hits: u32,
    /// Set once per entry when a hot, warm-up-enabled result enters the last part of its TTL:
    /// the shard should recompute it now so that it never expires under load.
    pub refresh_ahead: bool,
}

/// The answer of a cache lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Within its TTL: serve it.
    Fresh(Hit),
    /// Past its TTL, within stale-while-revalidate: serve it and recompute in the background.
    Stale(Hit),
    /// Past TTL and stale-while-revalidate but within stale-if-error: recompute as on a miss,
    /// and serve this only if recomputing fails.
    StaleIfError(Hit),
    /// Nothing usable.
    Miss,
}

impl Lookup {
    /// The hit that may be served right now (fresh or stale), if any.
    pub fn servable(&self) -> Option<&Hit> {
        match self {
            Lookup::Fresh(h) | Lookup::Stale(h) => Some(h),
            Lookup::StaleIfError(_) | Lookup::Miss => None,
        }
    }

    /// Whether this is a miss of any kind (including a stale-if-error candidate).
    pub fn needs_compute(&self) -> bool {
        matches!(self, Lookup::StaleIfError(_) | Lookup::Miss)
    }
}

/// A live entry as plain owned data, for saving a snapshot and rebuilding a cache from it.
/// Operation and user scope are part of the key bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotEntry {
    /// Canonical key bytes ([`crate::CacheKey::bytes`]).
    pub key: Vec<u8>,
    /// The response body.
    pub body: Bytes,
    /// Age at snapshot time, in milliseconds. The writer adds the downtime before restoring.
    pub age_ms: u64,
    /// TTL in milliseconds.
    pub ttl_ms: u32,
    /// Stale-while-revalidate window in milliseconds.
    pub stale_while_revalidate_ms: u32,
    /// Stale-if-error window in milliseconds.
    pub stale_if_error_ms: u32,
    /// Confidence, quantised to 1/255.
    pub confidence: f32,
    /// Volatility, quantised to 1/255.
    pub volatility: f32,
    /// Accesses so far.
    pub hits: u32,
    /// Whether refresh-ahead applies.
    pub refresh_ahead: bool,
    /// Dependency tags.
    pub tags: Vec<String>,
    /// Event symbols.
    pub symbols: Vec<String>,
}

/// Why an insert stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// The entry's accounted size is over the per-entry limit; any older entry under the same
    /// key was removed.
    TooLarge {
        /// Accounted bytes of the entry.
        charge: usize,
        /// The limit.
        max: usize,
    },
}

impl std::fmt::Display for InsertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InsertError::TooLarge { charge, max } => {
                write!(
                    f,
                    "cache entry of {charge} bytes exceeds the {max} byte limit"
                )
            }
        }
    }
}

impl std::error::Error for InsertError {}

//! The cache key: canonical bytes of (operation, user scope, canonical input) and their 64-bit
//! ahash, which also picks the owning shard.
//!
//! The hash is only a locator: every lookup compares the full key bytes, so a collision can
//! never return another request's result. The hash uses fixed seeds so every shard of a process
//! computes the same owner; it is never persisted (a snapshot stores key bytes and rehashes).

use crate::config::Operation;

/// Fixed ahash seeds: the same key hashes the same on every shard of a process.
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Length of the fixed header: operation byte and user-scope length (u16, little-endian).
const HEADER: usize = 3;

/// The longest user scope a key can carry, in bytes.
pub const MAX_USER_LEN: usize = u16::MAX as usize;

/// Why bytes are not a valid cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Shorter than the header, or the user-scope length runs past the end.
    Truncated,
    /// The operation byte names no [`Operation`].
    UnknownOperation(u8),
    /// The user scope is not UTF-8.
    BadUser,
    /// The user scope is longer than [`MAX_USER_LEN`].
    UserTooLong,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Truncated => f.write_str("cache key truncated"),
            KeyError::UnknownOperation(b) => write!(f, "cache key names unknown operation {b}"),
            KeyError::BadUser => f.write_str("cache key user scope is not UTF-8"),
            KeyError::UserTooLong => f.write_str("cache key user scope too long"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A request's cache key.
///
/// Layout of [`CacheKey::bytes`]: `[operation u8][user length u16 LE][user][canonical input]`.
/// Length-prefixing the user makes the encoding unambiguous; an empty user is the shared
/// (non-user) scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// ahash of `bytes` with fixed seeds.
    hash: u64,
    /// The canonical key bytes, compared in full on every lookup.
    bytes: Box<[u8]>,
}

/// The process-wide key hasher.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3])
}

/// Hashes canonical key bytes the way [`CacheKey`] does.
pub fn hash_key_bytes(bytes: &[u8]) -> u64 {
    hasher().hash_one(bytes)
}

impl CacheKey {
    /// Builds the key of `operation` on `canonical_input` for `user` (`None`: shared scope).
    /// The caller canonicalises the input (sorted JSON keys, normalised numbers); this type
    /// only frames it.
    pub fn new(
        operation: Operation,
        user: Option<&str>,
        canonical_input: &[u8],
    ) -> Result<Self, KeyError> {
        let user = user.unwrap_or("").as_bytes();
        let user_len = u16::try_from(user.len()).map_err(|_| KeyError::UserTooLong)?;
        let mut bytes = Vec::with_capacity(HEADER + user.len() + canonical_input.len());
        bytes.push(operation as u8);
        bytes.extend_from_slice(&user_len.to_le_bytes());
        bytes.extend_from_slice(user);
        bytes.extend_from_slice(canonical_input);
        Ok(Self::from_validated(bytes.into_boxed_slice()))
    }

    /// Rebuilds a key from its bytes (for example from a snapshot), validating the framing.
    pub fn from_bytes(bytes: impl Into<Box<[u8]>>) -> Result<Self, KeyError> {
        let bytes = bytes.into();
        parse(&bytes)?;
        Ok(Self::from_validated(bytes))
    }

    fn from_validated(bytes: Box<[u8]>) -> Self {
        CacheKey {
            hash: hash_key_bytes(&bytes),
            bytes,
        }
    }

    /// A key with an arbitrary hash, to simulate a 64-bit collision in tests.
    #[cfg(test)]
    pub(crate) fn with_forged_hash(hash: u64, bytes: &[u8]) -> Self {
        CacheKey {
            hash,
            bytes: bytes.into(),
        }
    }

    /// The 64-bit hash of the key bytes.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The canonical key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The shard that owns this key among `shards` shards (`hash % shards`; 0 if `shards` is 0).
    pub fn shard(&self, shards: usize) -> usize {
        shard_of_hash(self.hash, shards)
    }

    /// The operation the key belongs to.
    pub fn operation(&self) -> Operation {
        // Validated at construction.
        parse(&self.bytes)
            .map(|p| p.0)
            .unwrap_or(Operation::BudgetOptimization)
    }

    /// The user scope, `None` for the shared scope.
    pub fn user(&self) -> Option<&str> {
        parse(&self.bytes).ok().and_then(|p| p.1)
    }

    /// The canonical input bytes (what the shard recomputes on refresh-ahead).
    pub fn input(&self) -> &[u8] {
        parse(&self.bytes).map(|p| p.2).unwrap_or(&[])
    }
}

/// `hash % shards`, 0 if `shards` is 0.
fn shard_of_hash(hash: u64, shards: usize) -> usize {
    if shards == 0 {
        return 0;
    }
    (hash % shards as u64) as usize
}

/// The shard that owns data keyed by `name` alone, such as a user's stored context: the key
/// hash of its bytes modulo `shards` (0 if `shards` is 0). Stable within a process, like
/// [`CacheKey::shard`].
pub fn shard_of(name: &[u8], shards: usize) -> usize {
    shard_of_hash(hash_key_bytes(name), shards)
}

/// Splits key bytes into operation, user scope and input.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Operation, Option<&str>, &[u8]), KeyError> {
    if bytes.len() < HEADER {
        return Err(KeyError::Truncated);
    }
    let op =
        Operation::from_index(usize::from(bytes[0])).ok_or(KeyError::UnknownOperation(bytes[0]))?;
    let user_len = usize::from(u16::from_le_bytes([bytes[1], bytes[2]]));
    let rest = &bytes[HEADER..];
    if rest.len() < user_len {
        return Err(KeyError::Truncated);
    }
    let (user, input) = rest.split_at(user_len);
    let user = std::str::from_utf8(user).map_err(|_| KeyError::BadUser)?;
    Ok((op, (!user.is_empty()).then_some(user), input))
}

/// A hasher for keys that already are good 64-bit hashes (ahash output): it passes them
/// through, so index maps keyed by [`CacheKey::hash`] do not hash twice.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u64 keys; fold bytes in so it still works.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by precomputed 64-bit hashes.
pub(crate) type HashIndex<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<PassThroughHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_and_is_unambiguous() {
        let k = CacheKey::new(Operation::PortfolioAnalysis, Some("u42"), b"{\"a\":1}").unwrap();
        assert_eq!(k.operation(), Operation::PortfolioAnalysis);
        assert_eq!(k.user(), Some("u42"));
        assert_eq!(k.input(), b"{\"a\":1}");
        let back = CacheKey::from_bytes(k.bytes().to_vec()).unwrap();
        assert_eq!(back, k);
        // Moving bytes between user and input changes the key.
        let k2 = CacheKey::new(Operation::PortfolioAnalysis, Some("u4"), b"2{\"a\":1}").unwrap();
        assert_ne!(k.bytes(), k2.bytes());
        let shared = CacheKey::new(Operation::RiskAssessment, None, b"x").unwrap();
        assert_eq!(shared.user(), None);
        assert!(k.shard(8) < 8);
        assert_eq!(k.shard(0), 0);
    }

    #[test]
    fn bad_bytes_are_rejected() {
        assert_eq!(CacheKey::from_bytes(vec![0u8]), Err(KeyError::Truncated));
        assert_eq!(
            CacheKey::from_bytes(vec![9u8, 0, 0]),
            Err(KeyError::UnknownOperation(9))
        );
        assert_eq!(
            CacheKey::from_bytes(vec![0u8, 5, 0, b'a']),
            Err(KeyError::Truncated)
        );
        assert_eq!(
            CacheKey::from_bytes(vec![0u8, 1, 0, 0xff]),
            Err(KeyError::BadUser)
        );
        let long = "x".repeat(MAX_USER_LEN + 1);
        assert_eq!(
            CacheKey::new(Operation::RiskAssessment, Some(&long), b""),
            Err(KeyError::UserTooLong)
        );
    }

    #[test]
    fn hash_is_stable_within_process() {
        let a = CacheKey::new(Operation::CashflowForecast, None, b"abc").unwrap();
        let b = CacheKey::new(Operation::CashflowForecast, None, b"abc").unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash(), hash_key_bytes(a.bytes()));
    }
}

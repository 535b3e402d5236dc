//! A shard's verified-token cache: token bytes → identity, kept until the token's `exp` or
//! [`MAX_AGE`] after it was verified, whichever comes first, at most
//! `ATLAS_JWT_CACHE_ENTRIES` tokens ([`CAPACITY`] by default; 0 turns it off).
//!
//! Keyed by the exact token bytes (hashed by the map, compared in full), so a lookup can
//! never return another token's identity. When full, expired entries are dropped first, then
//! an arbitrary eighth of the rest: a busy shard re-verifies a few tokens, nothing more.

use std::collections::HashMap;

use super::Identity;

/// Longest an identity is trusted without verifying its token again, seconds.
pub const MAX_AGE: u64 = 60;
/// Tokens kept per shard by default.
pub const CAPACITY: usize = 10_000;

#[derive(Debug)]
struct Entry {
    identity: Identity,
    /// Unix seconds after which the entry is not used.
    until: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct TokenCache {
    map: HashMap<Box<[u8]>, Entry>,
    capacity: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_capacity(CAPACITY)
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: nothing is kept).
    pub fn with_capacity(capacity: usize) -> Self {
        TokenCache {
            map: HashMap::new(),
            capacity,
        }
    }

    /// The identity of `token` if it was verified and is still trusted at `now` (unix s).
    pub fn get(&mut self, token: &[u8], now: u64) -> Option<Identity> {
        let entry = self.map.get(token)?;
        if now < entry.until {
            return Some(entry.identity.clone());
        }
        self.map.remove(token);
        None
    }

    /// Keeps a verified token's identity until `min(exp, now + MAX_AGE)`.
    pub fn insert(&mut self, token: &[u8], identity: Identity, exp: u64, now: u64) {
        let until = exp.min(now + MAX_AGE);
        if until <= now || self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.retain(|_, e| e.until > now);
        }
        if self.map.len() >= self.capacity {
            let n = (self.capacity / 8).max(1);
            let drop: Vec<Box<[u8]>> = self.map.keys().take(n).cloned().collect();
            for k in drop {
                self.map.remove(&k);
            }
        }
        self.map.insert(token.into(), Entry { identity, until });
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Identity {
        Identity::User {
            sub: name.into(),
            admin: false,
        }
    }

    #[test]
    fn trusts_until_expiry_or_max_age() {
        let mut c = TokenCache::default();
        c.insert(b"t1", user("a"), 1_000 + 10, 1_000);
        assert_eq!(c.get(b"t1", 1_009), Some(user("a")));
        assert_eq!(c.get(b"t1", 1_010), None, "expired with the token");
        c.insert(b"t2", user("b"), 1_000_000, 1_000);
        assert_eq!(c.get(b"t2", 1_000 + MAX_AGE - 1), Some(user("b")));
        assert_eq!(
            c.get(b"t2", 1_000 + MAX_AGE),
            None,
            "re-verified after MAX_AGE"
        );
        c.insert(b"t3", user("c"), 999, 1_000);
        assert!(
            c.get(b"t3", 1_000).is_none(),
            "an expired token is not kept"
        );
        assert!(c.get(b"t", 1_000).is_none(), "exact bytes only");
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut c = TokenCache::with_capacity(0);
        c.insert(b"t", user("a"), 10_000, 1_000);
        assert!(c.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let mut c = TokenCache::default();
        for i in 0..(CAPACITY + 100) {
            c.insert(format!("tok-{i}").as_bytes(), user("u"), 10_000, 1_000);
        }
        assert!(c.len() <= CAPACITY);
        assert!(c
            .get(format!("tok-{}", CAPACITY + 99).as_bytes(), 1_000)
            .is_some());
    }
}

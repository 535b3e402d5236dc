//! The accepting shard's request memo: parse and validate each distinct `/ai/{operation}`
//! request once. A request whose bytes this shard has parsed before gets the same
//! [`JobSpec`] (cache key, typed input, cache controls, priority, tags) back without touching
//! its JSON.
//!
//! The memo maps request bytes to a parse result, never to an answer: the spec goes to the
//! owner shard exactly as a fresh parse would, so the cache, TTLs, invalidation and user
//! isolation are untouched. What makes up "the same request" (every part compared byte for
//! byte): the operation, the caller's identity (auth off: none; a token: its subject and
//! role), the `Content-Type`, `X-Priority` and `Cache-Control` headers (the only headers the
//! parse reads) and the body. Not memoised: requests that fail validation (each is parsed
//! again and gets its error), and `use_context` requests (their input depends on the stored
//! context at the time).
//!
//! Bounded per shard by `ATLAS_REQUEST_MEMO_BYTES` (0 turns it off); an entry counts its
//! request bytes plus what the parsed spec holds (the key bytes, the typed input's heap, the
//! tags and the spec itself).
//!
//! Hot path. Knows nothing of sockets or the mesh.

use std::sync::Arc;

use atlas_shard::{Memo, MemoCounters, Operation};

use super::engine::JobSpec;
use crate::auth::Identity;
use crate::http::Request;

/// What one shard's memo holds and has done, for `/health/detailed` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoFigures {
    /// Requests remembered now.
    pub entries: u64,
    /// Bytes they count against the budget.
    pub bytes: u64,
    /// The budget (`ATLAS_REQUEST_MEMO_BYTES`).
    pub max_bytes: u64,
    /// Lookups, inserts, evictions, requests too large to keep.
    pub counters: MemoCounters,
}

impl MemoFigures {
    /// Adds another shard's figures.
    pub fn merge(&mut self, o: &MemoFigures) {
        self.entries += o.entries;
        self.bytes += o.bytes;
        self.max_bytes += o.max_bytes;
        self.counters.merge(&o.counters);
    }
}

/// The bytes a parsed spec holds (the key bytes, the typed input's heap, the tags and the spec
/// itself): what a memo entry keeping it counts.
pub fn spec_cost(spec: &JobSpec) -> usize {
    let tags: usize = spec
        .tags
        .iter()
        .map(|t| t.len() + std::mem::size_of::<String>())
        .sum();
    std::mem::size_of::<JobSpec>() + spec.key.bytes().len() + spec.input.heap_bytes() + tags
}

/// The caller as memo key bytes: its kind (open, operator token, user, admin user) and its
/// subject. Two callers the user check treats differently never share these bytes.
pub fn identity_bytes(identity: &Identity) -> (&'static [u8], &[u8]) {
    match identity {
        Identity::Open => (b"o", b""),
        Identity::AdminToken => (b"a", b""),
        Identity::User { sub, admin: false } => (b"u", sub.as_bytes()),
        Identity::User { sub, admin: true } => (b"U", sub.as_bytes()),
    }
}

/// The bytes that identify one request, borrowed from it.
pub struct RequestBytes<'a> {
    parts: [&'a [u8]; 7],
    hash: u64,
}

/// One shard's memo of parsed requests.
pub struct RequestMemo {
    memo: Memo<Arc<JobSpec>>,
}

impl RequestMemo {
    /// A memo of at most `max_bytes` (0: off); no single request may take more than a
    /// sixteenth of it.
    pub fn new(max_bytes: usize) -> Self {
        RequestMemo {
            memo: Memo::new(max_bytes, max_bytes / 16),
        }
    }

    /// The bytes of `request` for `op` from `identity`, hashed; `None` when the memo is off or
    /// the request is too large to be remembered (then nothing is hashed).
    pub fn bytes_of<'a>(
        &mut self,
        op: Operation,
        identity: &'a Identity,
        request: &'a Request,
    ) -> Option<RequestBytes<'a>> {
        if !self.memo.is_enabled() {
            return None;
        }
        let (kind, subject) = identity_bytes(identity);
        let header = |name| request.header(name).unwrap_or(b"\0");
        let parts = [
            op.as_str().as_bytes(),
            kind,
            subject,
            header("content-type"),
            header("x-priority"),
            header("cache-control"),
            &request.body[..],
        ];
        // A request too large to be remembered is not hashed.
        if !self.memo.could_hold(&parts) {
            return None;
        }
        let hash = self.memo.hash(&parts);
        Some(RequestBytes { parts, hash })
    }

    /// The spec parsed earlier from exactly these bytes.
    pub fn get(&mut self, bytes: &RequestBytes<'_>) -> Option<Arc<JobSpec>> {
        self.memo.get(bytes.hash, &bytes.parts).cloned()
    }

    /// Remembers the spec parsed from these bytes.
    pub fn insert(&mut self, bytes: &RequestBytes<'_>, spec: &Arc<JobSpec>) {
        self.memo
            .insert(bytes.hash, &bytes.parts, Arc::clone(spec), spec_cost(spec));
    }

    /// Entries, bytes and counters.
    pub fn figures(&self) -> MemoFigures {
        MemoFigures {
            entries: self.memo.len() as u64,
            bytes: self.memo.bytes_used() as u64,
            max_bytes: self.memo.max_bytes() as u64,
            counters: *self.memo.counters(),
        }
    }
}

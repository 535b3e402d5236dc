//! Context memory: a user's stored financial context (`PUT|GET|DELETE /ai/context/{user_id}`,
//! whose handlers are the app's, `app::context`), kept on the shard that owns the user, and its
//! use by AI requests with `"use_context": true`: the calls to the owner, how the owner answers
//! them, ownership and the merge.
//!
//! Ownership: a user's context lives on shard `ahash(user id) % shards`, with the fixed seeds
//! of the cache keys (`atlas_shard::key::shard_of`). The store itself is
//! `atlas_shard::ContextStore` inside that shard's engine (TTL `CONTEXT_CACHE_TTL`, byte budget
//! `ATLAS_CONTEXT_STORE_BYTES / shards`). Every change of a context (write or delete)
//! invalidates, on every shard, the results computed with it: they carry the dependency tag
//! `context:<user_id>` ([`tag`]).
//!
//! The merge ([`merge`]) is shallow and per operation: a top-level field of the context is
//! copied into the request's `input` when the operation's input has that field and the
//! request does not set it itself (the request's own fields win); other context fields are
//! left out. The merged input is what is validated, keyed and computed.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use atlas_shard::{Context, ContextError, Operation, Written};

use super::engine::Engine;

/// A stored context: its canonical JSON text (what `GET` returns) and the parsed object (what
/// requests merge). Shared between the owner shard's store and the requests that read it.
#[derive(Debug)]
pub struct ContextValue {
    /// Canonical JSON of the object (sorted keys, no whitespace).
    pub json: Bytes,
    /// The object's fields.
    pub fields: Map<String, Value>,
}

/// How a stored context is held: immutable and shared, so a read is a reference-count
/// increment.
pub type SharedContext = Arc<ContextValue>;

/// A context operation, run on the shard that owns the user.
#[derive(Debug)]
pub enum ContextCall {
    /// Store (replace) a user's context.
    Put {
        /// The user.
        user: String,
        /// The context.
        value: SharedContext,
    },
    /// Read a user's context.
    Get {
        /// The user.
        user: String,
    },
    /// Remove a user's context.
    Delete {
        /// The user.
        user: String,
    },
}

/// The answer to a [`ContextCall`].
#[derive(Debug)]
pub enum ContextReply {
    /// Answer to `Put`.
    Put(Result<Written, ContextError>),
    /// Answer to `Get`: the live context, if any.
    Get(Option<Context<SharedContext>>),
    /// Answer to `Delete`: the version removed, if a live context was there.
    Delete(Option<u64>),
}

/// Runs a context call on the owner shard's engine.
pub fn answer(engine: &Engine, call: ContextCall) -> ContextReply {
    let mut store = engine.contexts.borrow_mut();
    match call {
        ContextCall::Put { user, value } => {
            let bytes = value.json.len();
            ContextReply::Put(store.put(&user, value, bytes))
        }
        ContextCall::Get { user } => ContextReply::Get(store.get(&user)),
        ContextCall::Delete { user } => ContextReply::Delete(store.remove(&user)),
    }
}

/// The dependency tag of every result computed with `user`'s context.
pub fn tag(user: &str) -> String {
    format!("context:{user}")
}

/// The shard that owns `user`'s context among `shards`.
pub fn owner(user: &str, shards: usize) -> usize {
    atlas_shard::key::shard_of(user.as_bytes(), shards)
}

/// Copies into `input` each top-level field of `context` that `op`'s input accepts and
/// `input` does not set (a shallow merge where the request's own fields win). Returns how
/// many fields came from the context.
pub fn merge(op: Operation, input: &mut Map<String, Value>, context: &Map<String, Value>) -> usize {
    let mut merged = 0;
    for &field in crate::models::input_fields(op) {
        if input.contains_key(field) {
            continue;
        }
        if let Some(value) = context.get(field) {
            input.insert(field.to_string(), value.clone());
            merged += 1;
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn merge_is_shallow_the_request_wins_and_only_the_operations_fields_come_in() {
        let context = map(json!({
            "monthly_income": 5000, "expenses": [{"category": "rent"}], "age": 35,
            "holdings": [{"symbol": "AAPL"}], "accounts": ["checking"]
        }));
        let mut input = map(json!({"monthly_income": 6000, "goals": []}));
        assert_eq!(
            merge(Operation::BudgetOptimization, &mut input, &context),
            1
        );
        assert_eq!(
            Value::Object(input),
            json!({"monthly_income": 6000, "goals": [], "expenses": [{"category": "rent"}]})
        );
        let mut input = Map::new();
        assert_eq!(merge(Operation::RiskAssessment, &mut input, &context), 2);
        assert_eq!(
            Value::Object(input),
            json!({"age": 35, "holdings": [{"symbol": "AAPL"}]})
        );
        let mut input = Map::new();
        assert_eq!(merge(Operation::CashflowForecast, &mut input, &context), 0);
    }

    #[test]
    fn owner_is_stable_and_spreads() {
        let owners: std::collections::HashSet<usize> =
            (0..64).map(|i| owner(&format!("u-{i}"), 4)).collect();
        assert_eq!(owners.len(), 4);
        assert_eq!(owner("u-1", 4), owner("u-1", 4));
        assert_eq!(owner("u-1", 1), 0);
    }
}

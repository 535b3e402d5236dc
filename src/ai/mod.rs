//! The AI service: parsing and validating requests ([`request`]), the stored contexts
//! ([`context`]), the cache key (operation + canonical input + user, [`canonical`]), the
//! request memo ([`memo`]), the owner side (the [`engine`]: cache, single flight, batches,
//! endpoints through the [`pool`]) and invalidation ([`invalidation`], [`events`]).
//!
//! The request path that wires these to admission, rate limits and the mesh is the app's
//! (`app::ai`); nothing here names the app or the runtime's shard.

pub mod canonical;
pub mod context;
pub mod engine;
pub mod events;
pub mod horizon;
pub mod invalidation;
pub mod memo;
pub mod pool;
pub mod request;

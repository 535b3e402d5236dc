//! Atlas: a thread-per-core inference gateway for financial AI operations.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`cli`] | the command line, logging set-up, exit statuses |
//! | [`config`] | the settings table, layering (defaults < file < env < flags), validation |
//! | [`runtime`] | host checks, listening sockets, one pinned glommio executor per shard, signals, drain |
//! | [`runtime::shard`] | what one shard owns: counters, its mesh end, its shutdown signal |
//! | [`mesh`] | cross-shard calls: run on shard k, run on all shards |
//! | [`conn`] | one client connection: read, parse, route, write; keep-alive, pipelining, timeouts |
//! | [`http`] | pure HTTP/1.1 parsing (head, chunked bodies) and response serialisation |
//! | [`router`] | method + path → handler; the handlers |
//! | [`error`] | `ApiError`, the one place an error becomes an HTTP response |
//!
//! Request flow goes one way: `runtime` accepts → `conn` reads and parses (`http`) →
//! `router` resolves and handles (over `mesh` when another shard owns the data) → `conn`
//! writes. The shard data structures live in the `atlas-shard` crate.

pub mod ai;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod error;
pub mod graphql;
pub mod http;
pub mod l2;
pub mod mesh;
pub mod metrics;
pub mod models;
pub mod modelserver;
pub mod monitor;
pub mod notify;
pub mod oneshot;
pub mod router;
pub mod runtime;
pub mod snapshot;
pub mod status;

//! Atlas: a thread-per-core inference gateway for financial AI operations.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`cli`] | the command line, exit statuses |
//! | [`logging`] | the stderr logger whose filter a reload can change |
//! | [`config`] | the settings table, layering (defaults < file < env < flags), validation |
//! | [`runtime`] | host checks, listening sockets, one pinned glommio executor per shard, signals (drain, SIGHUP reload), systemd notifications |
//! | [`runtime::shard`] | what one shard owns: counters, its mesh end, its shutdown signal |
//! | [`mesh`] | cross-shard calls: run on shard k, run on all shards |
//! | [`conn`] | one client connection: read, parse, route, write; keep-alive, pipelining, timeouts |
//! | [`http`] | pure HTTP/1.1 parsing (head, chunked bodies) and response serialisation |
//! | [`router`] | method + path → handler; the handlers |
//! | [`error`] | `ApiError`, the one place an error becomes an HTTP response |
//! | [`ratelimit`] | per-user and global rate limits: buckets on the owner shard, one lock-free global bucket, Redis for several instances |
//! | [`tune`] | `atlas tune --check`: the host audit (sysctls, limits, io_uring, THP, IRQs) |
//! | `fuzz` | (tests and `cargo fuzz` builds only) one `fn(&[u8])` per parser facing outside bytes |
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
/// `ApiError`, where every error becomes a response (it lives in the HTTP layer).
pub use http::error;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod graphql;
pub mod http;
pub mod l2;
pub mod logging;
pub mod mesh;
pub mod metrics;
pub mod models;
pub mod modelserver;
pub mod monitor;
pub mod notify;
pub mod oneshot;
pub mod openapi;
pub mod ratelimit;
pub mod router;
pub mod runtime;
pub mod snapshot;
pub mod status;
pub mod tune;
pub mod wallclock;

//! Atlas: a thread-per-core inference gateway for financial AI operations.
//!
//! # Layout
//!
//! Four layers, bottom first; a module uses its own layer and those below, never one above,
//! and no module imports one that imports it back (`tests/layers.rs` checks both;
//! `ARCHITECTURE.md` is the map).
//!
//! | layer | module | owns |
//! | --- | --- | --- |
//! | foundations | [`config`] | the settings table, layering (defaults < file < env < flags), validation |
//! | | [`http`] | pure HTTP/1.1 parsing (head, chunked bodies), response serialisation, [`error`] (`ApiError`, the one place an error becomes a response) |
//! | | [`models`], [`endpoint`], [`client`] | the embedded models; remote model endpoints and their HTTP client |
//! | | [`l2`], [`snapshot`] | Redis as the shared cache; L1 snapshots across restarts |
//! | | [`logging`], [`wallclock`], [`oneshot`], [`notify`], [`status`], [`openapi`] | small pieces the others share |
//! | runtime | [`runtime`] | host checks, listening sockets, one pinned glommio executor per shard, the connection loop ([`runtime::conn`]), signals (drain, SIGHUP reload), systemd notifications; generic over [`runtime::App`] |
//! | | [`mesh`] | cross-shard calls: run on shard k, run on all shards; a service's typed view ([`mesh::Link`]) |
//! | services | [`ai`] | request parsing, the memo, the owner-side engine (cache, single flight, batches, endpoint pool), invalidation, stored contexts |
//! | | [`auth`], [`ratelimit`] | authentication; per-user and global rate limits |
//! | | [`metrics`], [`monitor`] | request metrics and the Prometheus exposition; the monitor's windows, alerts and webhook |
//! | | [`modelserver`] | the batch protocol over the built-in models (`atlas model-endpoint`) |
//! | apps | [`app`] | the per-shard state wiring the services ([`app::Shard`]), the cross-shard messages, the routes and handlers, GraphQL, the supervisor |
//! | | [`cli`], [`tune`] | the command line and exit statuses; `atlas tune --check` |
//! | | `fuzz` | (tests and `cargo fuzz` builds only) one `fn(&[u8])` per parser facing outside bytes |
//!
//! Request flow goes one way: `runtime` accepts → `runtime::conn` reads and parses (`http`)
//! → the app routes and handles (`app::routes`, over `mesh` when another shard owns the
//! data) → `runtime::conn` writes. The shard data structures live in the `atlas-shard`
//! crate.

pub mod ai;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod endpoint;
/// `ApiError`, where every error becomes a response (it lives in the HTTP layer).
pub use http::error;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
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
pub mod runtime;
pub mod snapshot;
pub mod status;
pub mod tune;
pub mod wallclock;

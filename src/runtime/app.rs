//! What the runtime asks of what a shard serves: the [`App`] trait (one per shard, on its
//! executor) and the [`Supervisor`] (the main thread's side, which prepares what every shard
//! is built from and what a SIGHUP hands them).
//!
//! The runtime is written against these two traits and names no type above it: the app owns
//! its per-shard state, its routes and the closed set of cross-shard messages.

use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::Core;
use super::reload::Plan;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Method, Request, Response};
use crate::mesh::Answer;

/// The shard of an app: built once on each executor, then handed every request and every
/// mesh call addressed to the shard.
pub trait App: Sized + 'static {
    /// A cross-shard call (the app's closed set).
    type Call: Send + 'static;
    /// An answer to a [`App::Call`].
    type Reply: Send + 'static;
    /// Which handler a request goes to, chosen before its body is read.
    type Route: Copy;
    /// What every shard is built from, made once on the main thread.
    type Seed: Send + Sync + 'static;
    /// What a reload hands every shard besides the configuration.
    type Update: Send + Sync + 'static;

    /// Builds the shard on its executor, around the runtime's part.
    fn start(core: Rc<Core<Self::Call, Self::Reply>>, seed: &Self::Seed) -> Rc<Self>;

    /// Starts the shard's own background tasks, once the mesh serves its calls.
    fn run(self: &Rc<Self>);

    /// The runtime's part of the shard.
    fn core(&self) -> &Rc<Core<Self::Call, Self::Reply>>;

    /// Answers a mesh call addressed to this shard: at once where nothing needs waiting for,
    /// otherwise as a task.
    fn answer(self: &Rc<Self>, call: Self::Call) -> Answer<Self::Reply>;

    /// The call the watchdog sends every shard: it must be answered at once.
    fn ping() -> Self::Call;

    /// Whether `reply` answers [`App::ping`].
    fn is_pong(reply: &Self::Reply) -> bool;

    /// Maps a method and path to a route: 404 for an unknown path, 405 (with `Allow`) for a
    /// known path with the wrong method.
    fn route(&self, method: Method, path: &str, method_str: &str) -> Result<Self::Route, ApiError>;

    /// Whether the route's handler may take long: the connection flushes earlier pipelined
    /// answers before running it.
    fn is_slow(route: Self::Route) -> bool;

    /// Answers a request on `route` whose body has been read.
    fn handle(
        self: &Rc<Self>,
        route: Self::Route,
        request: &Request,
        peer: Option<IpAddr>,
    ) -> impl Future<Output = Response>;

    /// Applies a reload to what the shard owns; the runtime then puts `config` in force.
    fn reconfigure(&self, config: &Arc<Config>, update: &Self::Update);

    /// Runs once the shard's connections are closed, before the shards wait for each other
    /// (writes what must survive a restart).
    fn drained(self: &Rc<Self>) -> impl Future<Output = ()>;
}

/// The main thread's side of an app: made once the listening address is known, then kept by
/// the signal thread.
pub trait Supervisor: Send + 'static {
    /// The shard it supervises.
    type App: App;

    /// What the announcement line calls the server (`atlas`, `atlas model-endpoint`).
    fn name(&self) -> &'static str;

    /// What every shard is built from.
    fn seed(&self) -> Arc<<Self::App as App>::Seed>;

    /// The origin of the shards' shared monotonic clock, taken just before the executors
    /// start (for time bases the supervisor shares with the shards).
    fn clock(&mut self, origin: Instant);

    /// Prepares the shards' part of an accepted reload on the signal thread (never on a
    /// shard: DNS and other blocking work happen here); may hold back changes it cannot apply
    /// (they stay in `plan` as not applied).
    fn reload(&mut self, plan: &mut Plan, current: &Config) -> <Self::App as App>::Update;

    /// Runs on the main thread after every shard stopped, with when the drain started and
    /// its grace period (flushes what the shards left queued).
    fn finish(seed: &<Self::App as App>::Seed, since: Instant, grace: Duration);
}

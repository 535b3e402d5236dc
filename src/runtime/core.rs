//! The runtime's part of a shard: what every app's shard has whatever it serves (its index
//! and CPU, the configuration in force, its counters, its end of the mesh, its shutdown
//! signal) and the few values all shards share ([`Shared`]).
//!
//! Everything but `Shared` lives on one executor thread; counters are plain `Cell`s, not
//! atomics. `Shared` holds atomics touched on connect and on lifecycle changes, and admission
//! (one `fetch_add` on the shard's own cache line per request). Knows nothing of what the app
//! serves: the mesh's call and reply types are the app's.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use atlas_shard::Priority;
use glommio::sync::Semaphore;

use super::admission::{Admission, Region};
use crate::config::Config;
use crate::http::Limits;
use crate::mesh::Mesh;

/// State shared by every shard of the process. Touched on connection accept/close and on
/// lifecycle changes; per request only through admission.
#[derive(Debug)]
pub struct Shared {
    /// Number of shards.
    pub shards: usize,
    /// Open client connections across all shards (for `ATLAS_MAX_CONNECTIONS`).
    pub connections: AtomicUsize,
    /// Highest `connections` since the memory trimmer last looked (see `runtime::trim`).
    pub connections_peak: AtomicUsize,
    /// Every shard is listening (`/health/ready`).
    pub ready: AtomicBool,
    /// A shutdown signal arrived: stop accepting, finish in-flight requests.
    pub draining: AtomicBool,
    /// Shards that have finished draining their connections.
    pub drained: AtomicUsize,
    /// `MAX_CONCURRENT_REQUESTS` for the whole instance (`runtime::admission`).
    pub admission: Admission,
}

impl Shared {
    /// State for `shards` shards, not yet ready, admitting `max_in_flight` requests at once.
    pub fn new(shards: usize, max_in_flight: usize) -> Self {
        Shared {
            admission: Admission::new(max_in_flight as u64, shards),
            shards,
            connections: AtomicUsize::new(0),
            connections_peak: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
        }
    }

    /// Whether every shard is up and no shutdown is under way.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Plain per-shard counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub connections_open: Cell<u64>,
    /// Connections accepted since start.
    pub connections_total: Cell<u64>,
    /// Requests answered since start.
    pub requests_total: Cell<u64>,
    /// Requests being handled now.
    pub in_flight: Cell<u64>,
    /// Connections refused because of the connection cap.
    pub connections_rejected: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: i64) {
    cell.set(cell.get().saturating_add_signed(by));
}

/// One core's shard, as the runtime sees it. `Q` and `R` are the app's cross-shard call and
/// reply types.
pub struct Core<Q: Send + 'static, R: Send + 'static> {
    /// Shard index: the mesh peer id.
    pub id: usize,
    /// CPU this shard's thread is pinned to.
    pub cpu: Option<usize>,
    /// The configuration the process started with. Settings a SIGHUP reload may change are
    /// read from [`Core::live_config`] instead.
    pub config: Arc<Config>,
    /// The configuration in force: `config` with the reloadable settings of the last reload
    /// (see `runtime::reload`).
    live: RefCell<Arc<Config>>,
    /// HTTP parsing limits derived from the configuration.
    pub limits: Limits,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// This shard's counters.
    pub counters: Counters,
    /// This shard's end of the mesh.
    pub mesh: Rc<Mesh<Q, R>>,
    /// Closed when shutdown starts; waiting on it is how tasks learn of shutdown.
    pub shutdown: Semaphore,
    /// Pre-built `/health` body.
    pub health_body: bytes::Bytes,
    /// When the process started the shards (for uptime, and the shards' shared clock).
    pub origin: Instant,
}

impl<Q: Send + 'static, R: Send + 'static> Core<Q, R> {
    /// The runtime's part of shard `mesh.id()`.
    pub fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        mesh: Rc<Mesh<Q, R>>,
        origin: Instant,
    ) -> Self {
        let id = mesh.id();
        let shards = mesh.shards().max(1);
        let limits = Limits {
            max_body: config.max_body_bytes,
            ..Limits::default()
        };
        let health_body = bytes::Bytes::from(format!(
            "{{\"status\":\"ok\",\"shard\":{id},\"shards\":{shards},\"version\":\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ));
        Core {
            id,
            cpu: current_cpu(),
            live: RefCell::new(Arc::clone(&config)),
            config,
            limits,
            shared,
            counters: Counters::default(),
            mesh,
            shutdown: Semaphore::new(0),
            health_body,
            origin,
        }
    }

    /// The configuration in force (the start configuration plus reloaded settings).
    pub fn live_config(&self) -> Arc<Config> {
        Arc::clone(&self.live.borrow())
    }

    /// Puts a reloaded configuration in force (after the app applied it).
    pub(super) fn set_live(&self, config: Arc<Config>) {
        *self.live.borrow_mut() = config;
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Resolves when shutdown starts.
    pub async fn shutdown_started(&self) {
        // Nobody ever releases units: this waits until `close()` makes it fail.
        let _ = self.shutdown.acquire(1).await;
    }

    /// Records an answered request.
    pub fn count_request(&self) {
        bump(&self.counters.requests_total, 1);
    }

    /// Records an accepted connection; the guard records its close.
    pub fn open_connection(self: &Rc<Self>) -> ConnectionGuard<Q, R> {
        bump(&self.counters.connections_open, 1);
        bump(&self.counters.connections_total, 1);
        ConnectionGuard {
            core: Rc::clone(self),
        }
    }

    /// Admits a request while the instance has fewer than `MAX_CONCURRENT_REQUESTS` in
    /// progress (`runtime::admission`: from this shard's own share first, without contention);
    /// the guard releases it. Low-priority requests are shed first, past 80 %.
    pub fn admit(self: &Rc<Self>, priority: Priority) -> Option<InFlight<Q, R>> {
        let region = self
            .shared
            .admission
            .admit(self.id, priority == Priority::Low)?;
        bump(&self.counters.in_flight, 1);
        Some(InFlight {
            core: Rc::clone(self),
            region,
        })
    }
}

/// Decrements the open-connection counters when a connection ends, however it ends.
pub struct ConnectionGuard<Q: Send + 'static, R: Send + 'static> {
    core: Rc<Core<Q, R>>,
}

impl<Q: Send + 'static, R: Send + 'static> Drop for ConnectionGuard<Q, R> {
    fn drop(&mut self) {
        bump(&self.core.counters.connections_open, -1);
        self.core.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request counted against the in-flight cap until dropped.
pub struct InFlight<Q: Send + 'static, R: Send + 'static> {
    core: Rc<Core<Q, R>>,
    /// Where its permit goes back.
    region: Region,
}

impl<Q: Send + 'static, R: Send + 'static> Drop for InFlight<Q, R> {
    fn drop(&mut self) {
        bump(&self.core.counters.in_flight, -1);
        self.core.shared.admission.release(self.region);
    }
}

/// The CPU this thread is pinned to, when it is pinned to exactly one.
fn current_cpu() -> Option<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if ids.len() == 1 => ids.first().map(|c| c.id),
        _ => None,
    }
}

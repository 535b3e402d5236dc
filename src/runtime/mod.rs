//! The runtime: checks the host, binds the listening sockets, starts one pinned glommio
//! executor per core (each a shard), announces readiness, and drains on SIGTERM/SIGINT.
//!
//! Lifecycle: `serve` → prerequisites (`sys`) → sockets (`listener`) → executors → each shard
//! joins the mesh, starts accepting and reports ready → the main thread prints
//! `atlas listening on http://IP:PORT shards=N` and tells systemd `READY=1` (`sd_notify`) →
//! SIGHUP re-reads the configuration and hands the reloadable part to every shard (`reload`,
//! `control`) → SIGTERM/SIGINT tells systemd `STOPPING=1` and closes every shard's shutdown
//! semaphore → shards stop accepting, finish in-flight requests (up to the grace period),
//! write their snapshots, wait for each other, and exit → the main thread flushes the Redis
//! write-behind queue (bounded by the rest of the grace) → the process exits 0. A second
//! SIGTERM/SIGINT exits at once with status 1. With `WatchdogSec=`, shard 0 pings systemd
//! while every shard answers (`watchdog`).

pub mod admission;
pub mod control;
pub mod listener;
pub mod reload;
mod resolve;
pub mod sd_notify;
pub mod shard;
mod signals;

pub use resolve::Resolved;
use resolve::{auth_keys, load_snapshots, resolve_endpoints, resolve_webhook, start_redis};
use signals::SignalWatcher;
pub mod sys;
pub mod trim;
pub mod watchdog;

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

use crate::ai::pool::ResolvedEndpoint;
use crate::config::{Config, Flags, Raw};
use crate::mesh::{Handler, MeshBuilders};
use crate::monitor::WebhookTarget;
use control::{Control, ShardEnd};
use reload::Reloader;
use sd_notify::Notifier;
use shard::{App, Role, Shard, ShardCall, ShardReply, Shared};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A host prerequisite is missing.
    #[error(transparent)]
    Prerequisite(#[from] sys::Prerequisite),
    /// The configuration asks for something this host cannot give (exit status 2).
    #[error("{0}")]
    Config(String),
    /// Binding or another OS call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard failed while starting.
    #[error("shard failed to start: {0}")]
    Shard(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// What each shard is handed when its executor starts.
struct ShardSeed {
    listener: RawFd,
    control: ShardEnd,
}

/// Runs the server until a shutdown signal, then drains and returns. `flags` and `raw` are
/// where `config` came from: a SIGHUP reads them again.
pub fn serve(config: Config, role: Role, flags: Flags, raw: &Raw) -> Result<(), StartError> {
    let reloader = Reloader::new(flags, raw, config.clone());
    let facts = sys::probe();
    sys::check(&facts)?;
    let shards = config.cores.unwrap_or(facts.cpus.len()).max(1);
    if shards > facts.cpus.len() {
        return Err(StartError::Config(format!(
            "ATLAS_CORES={shards}: this process may run on {} CPUs ({:?}); ask for at most that many",
            facts.cpus.len(),
            facts.cpus
        )));
    }
    let backlog = config.listen_backlog.or(facts.somaxconn).unwrap_or(4096);
    let (fds, addr) = listener::bind_all(config.listen, shards, backlog)
        .map_err(io_err(format!("cannot listen on {}", config.listen)))?;

    let memlock_needed = sys::memlock_per_shard(config.io_memory_bytes) * shards as u64;
    log::info!(
        "atlas {} starting: shards={shards} pinned={} listen={addr} backlog={backlog} \
         glommio=0.9 io_memory={}/shard (locked memory needed ≈ {}) {facts}",
        env!("CARGO_PKG_VERSION"),
        config.pin_shards,
        sys::human_bytes(config.io_memory_bytes as u64),
        sys::human_bytes(memlock_needed),
    );
    if !facts.ipc_lock && facts.memlock < memlock_needed {
        log::warn!(
            "locked-memory limit {} is below the {} the io_uring buffers need; they will run \
             unregistered (slower). Raise LimitMEMLOCK (see tuning/README.md)",
            sys::human_bytes(facts.memlock),
            sys::human_bytes(memlock_needed)
        );
    }

    let resolved = Arc::new(Resolved {
        endpoints: resolve_endpoints(&config)?,
        webhook: resolve_webhook(&config, addr)?,
        redis: start_redis(&config)?,
        verifier: auth_keys(&config, addr)?,
        restore: Arc::new(Mutex::new(load_snapshots(&config, shards))),
        global_limit: config
            .rate_limits
            .global()
            .map(|rate| Arc::new(atlas_shard::SharedBucket::new(rate))),
    });

    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(io_err("cannot install signal handlers"))?;

    let (control, ends) =
        Control::new(shards).map_err(io_err("cannot create the shard control channel"))?;
    let seeds: Vec<ShardSeed> = fds
        .into_iter()
        .zip(ends)
        .map(|(listener, control)| ShardSeed { listener, control })
        .collect();
    let notifier = Notifier::from_env().map(Arc::new);
    let watchdog = notifier
        .as_ref()
        .and_then(|_| sd_notify::watchdog_interval());

    let config = Arc::new(config);
    let shared = Arc::new(Shared::new(shards, config.max_concurrent_requests));
    let seeds = Arc::new(Mutex::new(seeds));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let mesh = MeshBuilders::<ShardCall, ShardReply>::new(shards, config.mesh_capacity);

    let origin = Instant::now();
    let allowed = facts.cpus.clone();
    let cpus = CpuSet::online()
        .map_err(|e| StartError::Shard(format!("cannot list CPUs: {e}")))?
        .filter(|l| allowed.contains(&l.cpu));
    let handles = {
        let start = ShardStart {
            config: Arc::clone(&config),
            shared: Arc::clone(&shared),
            seeds,
            mesh,
            ready: ready_tx,
            origin,
            role: role.clone(),
            resolved: Arc::clone(&resolved),
            watchdog: notifier.clone().zip(watchdog),
        };
        // Pinned: one CPU per shard, spread over cores and packages. Unpinned: every shard
        // may run on any allowed CPU and the kernel places them.
        let placement = if config.pin_shards {
            PoolPlacement::MaxSpread(shards, Some(cpus))
        } else {
            PoolPlacement::Fenced(shards, cpus)
        };
        LocalExecutorPoolBuilder::new(placement)
            .name("atlas-shard")
            .io_memory(config.io_memory_bytes)
            .on_all_shards(move || run_shard(start))
            .map_err(|e| StartError::Shard(e.to_string()))?
    };

    for _ in 0..shards {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(StartError::Shard(e)),
            Err(_) => return Err(StartError::Shard("a shard did not start in 30 s".into())),
        }
    }
    shared.ready.store(true, Ordering::Release);
    announce(&role, addr, shards);
    log::info!("ready: {shards} shards listening on {addr}");
    let status = format!("serving on {addr}, {shards} shards");
    if let Some(n) = &notifier {
        n.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ));
    }

    let drain_started = Arc::new(OnceLock::new());
    let watcher = SignalWatcher {
        endpoints: resolved.endpoints.clone(),
        global_limit: resolved.global_limit.clone(),
        clock: atlas_shard::MonotonicClock::with_origin(origin),
        shared: Arc::clone(&shared),
        control,
        reloader,
        notifier: notifier.clone(),
        status,
        drain_started: Arc::clone(&drain_started),
    };
    trim::spawn(Arc::clone(&shared));
    std::thread::Builder::new()
        .name("atlas-signals".into())
        .spawn(move || watcher.run(signals))
        .map_err(io_err("cannot start the signal thread"))?;

    let mut failed = 0;
    for result in handles.join_all() {
        if let Err(e) = result {
            log::error!("shard ended with an error: {e}");
            failed += 1;
        }
    }
    if let Some(redis) = &resolved.redis {
        let (since, grace) = drain_started
            .get()
            .copied()
            .unwrap_or((Instant::now(), config.shutdown_grace));
        flush_l2_stores(redis, since, grace);
    }
    if failed > 0 {
        return Err(StartError::Shard(format!("{failed} shard(s) failed")));
    }
    log::info!("stopped");
    Ok(())
}

/// Gives the Redis workers the rest of the grace period (at least [`MIN_L2_FLUSH`]) to send
/// the write-behind stores still queued when the shards stopped, so results computed just
/// before shutdown reach the shared cache; what is left after that is dropped and logged.
fn flush_l2_stores(redis: &crate::l2::pool::Pool, since: Instant, grace: Duration) {
    let queued = redis.pending();
    if queued == 0 {
        return;
    }
    let limit = grace.saturating_sub(since.elapsed()).max(MIN_L2_FLUSH);
    let started = Instant::now();
    let left = redis.flush(limit);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if left == 0 {
        log::info!("redis: flushed {queued} queued command(s) in {ms:.1} ms");
    } else {
        log::warn!(
            "redis: {left} of {queued} queued command(s) not sent within {ms:.0} ms; dropped"
        );
    }
}

/// Least time the Redis write-behind queue gets at shutdown, even when the drain used up the
/// grace period.
const MIN_L2_FLUSH: Duration = Duration::from_secs(1);

fn announce(role: &Role, addr: SocketAddr, shards: usize) {
    let what = match role {
        Role::Gateway => "atlas",
        Role::ModelEndpoint(_) => "atlas model-endpoint",
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{what} listening on http://{addr} shards={shards}");
    let _ = out.flush();
}

/// Everything a shard's executor is started with (cloned once per shard).
#[derive(Clone)]
struct ShardStart {
    config: Arc<Config>,
    shared: Arc<Shared>,
    /// Listening and notify sockets; each shard takes one pair.
    seeds: Arc<Mutex<Vec<ShardSeed>>>,
    mesh: MeshBuilders<ShardCall, ShardReply>,
    /// Reports the shard ready (or failed) to the main thread.
    ready: mpsc::Sender<Result<usize, String>>,
    /// Origin of the shards' shared monotonic clock.
    origin: Instant,
    role: Role,
    resolved: Arc<Resolved>,
    /// systemd's watchdog, when `WatchdogSec=` is set: shard 0 pings it (see `watchdog`).
    watchdog: Option<(Arc<Notifier>, Duration)>,
}

async fn run_shard(start: ShardStart) {
    let ShardStart {
        config,
        shared,
        seeds,
        mesh,
        ready,
        origin,
        role,
        resolved,
        watchdog,
    } = start;
    let seed = match seeds.lock().map(|mut s| s.pop()) {
        Ok(Some(seed)) => seed,
        _ => {
            let _ = ready.send(Err("no listening socket left for this shard".into()));
            return;
        }
    };
    // SAFETY: the descriptor was created for this shard and is owned by nothing else.
    let listener = unsafe { TcpListener::from_raw_fd(seed.listener) };

    let mesh = match mesh.join().await {
        Ok(mesh) => mesh,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot join the shard mesh: {e}")));
            return;
        }
    };
    let shard = Rc::new(Shard::new(
        config,
        Arc::clone(&shared),
        Rc::clone(&mesh),
        origin,
        &role,
        &resolved,
    ));
    let handler: Handler<ShardCall, ShardReply> = {
        let shard = Rc::clone(&shard);
        Rc::new(move |call| shard.answer(call))
    };
    mesh.serve(handler);

    glommio::spawn_local(seed.control.serve(Rc::clone(&shard))).detach();
    if let (0, Some((notifier, interval))) = (shard.id, watchdog) {
        glommio::spawn_local(watchdog::run(Rc::clone(&shard), notifier, interval)).detach();
    }
    if let Some(monitor) = &shard.monitor {
        glommio::spawn_local(Rc::clone(monitor).run(Rc::clone(&shard))).detach();
    }
    follow_peers(&shard);
    log::debug!("shard {} on cpu {:?} accepting", shard.id, shard.cpu);
    let _ = ready.send(Ok(shard.id));
    drop(ready);

    accept_loop(&shard, &listener).await;
    drop(listener);
    drain(&shard).await;
}

/// On shard 0 with Redis: subscribes to the invalidations other instances publish.
fn follow_peers(shard: &Rc<Shard>) {
    let App::Gateway(engine) = &shard.app else {
        return;
    };
    let Some(l2) = engine.l2.as_ref().filter(|_| shard.id == 0) else {
        return;
    };
    let (tx, rx) = futures_channel::mpsc::unbounded();
    match l2.pool().subscribe(l2.channel(), tx) {
        Ok(()) => {
            let me = l2.pool().instance();
            glommio::spawn_local(crate::ai::invalidation::follow_other_instances(
                Rc::clone(shard),
                rx,
                me,
            ))
            .detach();
        }
        Err(e) => log::warn!("redis: cannot start the subscriber: {e}"),
    }
}

/// Writes this shard's live L1 entries to `ATLAS_STATE_DIR` on the executor's blocking
/// thread; a failure (read-only or full disk) is logged and shutdown goes on.
async fn write_snapshot(shard: &Rc<Shard>) {
    let (Some(dir), App::Gateway(engine)) = (shard.config.state_dir.clone(), &shard.app) else {
        return;
    };
    let entries: Vec<atlas_shard::SnapshotEntry> = engine.cache.borrow().snapshot().collect();
    let (id, count, started) = (shard.id, entries.len(), Instant::now());
    let written = glommio::executor()
        .spawn_blocking(move || {
            crate::snapshot::write(&dir, id, &entries, crate::wallclock::unix_ms_now())
        })
        .await;
    match written {
        Ok(bytes) => log::info!(
            "snapshot: shard {id} wrote {count} entries ({bytes} bytes) in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        ),
        Err(e) => log::warn!("snapshot: shard {id} could not write its snapshot: {e}"),
    }
}

async fn accept_loop(shard: &Rc<Shard>, listener: &TcpListener) {
    let max = shard.config.max_connections;
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.shutdown_started().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                // Typically EMFILE/ENFILE: log at most once a second and back off briefly so
                // the loop does not spin while descriptors are exhausted.
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                    log::warn!("accept failed: {e}");
                    last_error_log = Some(Instant::now());
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let open = shard.shared.connections.fetch_add(1, Ordering::Relaxed);
        shard
            .shared
            .connections_peak
            .fetch_max(open + 1, Ordering::Relaxed);
        if open >= max {
            shard.shared.connections.fetch_sub(1, Ordering::Relaxed);
            let c = &shard.counters.connections_rejected;
            c.set(c.get() + 1);
            glommio::spawn_local(reject(shard.id, stream)).detach();
            continue;
        }
        glommio::spawn_local(crate::conn::serve(Rc::clone(shard), stream)).detach();
    }
}

/// Answers a connection over the cap with 503 and closes it, without reading from it.
async fn reject(shard: usize, mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    let err = crate::error::ApiError::fatal(
        crate::http::Status::ServiceUnavailable,
        "too_many_connections",
        "the server is at its connection limit (ATLAS_MAX_CONNECTIONS); retry later",
    );
    let mut out = Vec::with_capacity(256);
    let framing = crate::http::response::Framing {
        head_only: false,
        close: true,
        http10_keep_alive: false,
    };
    crate::http::response::write_response(&mut out, &err.to_response(), framing, shard);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

/// Waits for this shard's connections to finish, then for every other shard to finish too (so
/// no shard leaves while a peer may still call it), both bounded by the grace period.
async fn drain(shard: &Rc<Shard>) {
    let deadline = Instant::now() + shard.live_config().shutdown_grace;
    while shard.counters.connections_open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    write_snapshot(shard).await;
    let left = shard.counters.connections_open.get();
    if left > 0 {
        log::warn!(
            "shard {}: grace period over, dropping {left} connection(s)",
            shard.id
        );
    }
    shard.shared.drained.fetch_add(1, Ordering::AcqRel);
    while shard.shared.drained.load(Ordering::Acquire) < shard.shared.shards
        && Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

//! The runtime: checks the host, binds the listening sockets, starts one pinned glommio
//! executor per core (each a shard), announces readiness, and drains on SIGTERM/SIGINT.
//!
//! Lifecycle: `serve` → prerequisites (`sys`) → sockets (`listener`) → the app's supervisor
//! (`app::Supervisor`: what the shards are built from) → executors → each shard joins the
//! mesh, builds its app (`app::App`), starts accepting and reports ready → the main thread
//! prints `NAME listening on http://IP:PORT shards=N` and tells systemd `READY=1`
//! (`sd_notify`) → SIGHUP re-reads the configuration and hands the reloadable part to every
//! shard (`reload`, `control`) → SIGTERM/SIGINT tells systemd `STOPPING=1` and closes every
//! shard's shutdown semaphore → shards stop accepting, finish in-flight requests (up to the
//! grace period), let the app write what must survive, wait for each other, and exit → the
//! supervisor finishes (bounded by the rest of the grace) → the process exits 0. A second
//! SIGTERM/SIGINT exits at once with status 1. With `WatchdogSec=`, shard 0 pings systemd
//! while every shard answers (`watchdog`).
//!
//! Generic over the app: this module and everything under it name no type of the layers
//! above (no AI, no route, no service). See `ARCHITECTURE.md`.

pub mod admission;
pub mod app;
pub mod conn;
pub mod control;
pub mod core;
pub mod listener;
pub mod reload;
pub mod sd_notify;
mod signals;
pub mod sys;
pub mod trim;
pub mod watchdog;

use signals::SignalWatcher;

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

use crate::config::{Config, Flags, Raw};
use crate::mesh::{Handler, MeshBuilders};
pub use app::{App, Supervisor};
use control::{Control, ShardEnd};
pub use core::{Core, Shared};
use reload::Reloader;
use sd_notify::Notifier;

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
struct ShardSeed<U> {
    listener: RawFd,
    control: ShardEnd<U>,
}

/// The update type of supervisor `S`'s app.
type UpdateOf<S> = <<S as Supervisor>::App as App>::Update;
/// The call and reply types of supervisor `S`'s app.
type CallOf<S> = <<S as Supervisor>::App as App>::Call;
type ReplyOf<S> = <<S as Supervisor>::App as App>::Reply;

/// What the app's supervisor is made with: known once the sockets are bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// Number of shards.
    pub shards: usize,
}

/// Runs the server until a shutdown signal, then drains and returns. `flags` and `raw` are
/// where `config` came from: a SIGHUP reads them again. `supervise` makes the app's
/// supervisor once the sockets are bound.
pub fn serve<S: Supervisor>(
    config: Config,
    flags: Flags,
    raw: &Raw,
    supervise: impl FnOnce(&Config, Bound) -> Result<S, StartError>,
) -> Result<(), StartError> {
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

    let mut supervisor = supervise(&config, Bound { addr, shards })?;
    // After the supervisor's start-up work, so that uptime counts from the shards' start.
    let origin = Instant::now();
    supervisor.clock(origin);
    let seed = supervisor.seed();
    let name = supervisor.name();

    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(io_err("cannot install signal handlers"))?;

    let (control, ends) =
        Control::new(shards).map_err(io_err("cannot create the shard control channel"))?;
    let seeds: Vec<ShardSeed<UpdateOf<S>>> = fds
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
    let mesh = MeshBuilders::<CallOf<S>, ReplyOf<S>>::new(shards, config.mesh_capacity);

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
            seed: Arc::clone(&seed),
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
            .on_all_shards(move || run_shard::<S::App>(start))
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
    announce(name, addr, shards);
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
        supervisor,
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
    let (since, grace) = drain_started
        .get()
        .copied()
        .unwrap_or((Instant::now(), config.shutdown_grace));
    S::finish(&seed, since, grace);
    if failed > 0 {
        return Err(StartError::Shard(format!("{failed} shard(s) failed")));
    }
    log::info!("stopped");
    Ok(())
}

/// Prints the one line tests and tools wait for.
fn announce(name: &str, addr: SocketAddr, shards: usize) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{name} listening on http://{addr} shards={shards}");
    let _ = out.flush();
}

/// Everything a shard's executor is started with (cloned once per shard).
struct ShardStart<A: App> {
    config: Arc<Config>,
    shared: Arc<Shared>,
    /// Listening and control sockets; each shard takes one pair.
    seeds: Arc<Mutex<Vec<ShardSeed<A::Update>>>>,
    mesh: MeshBuilders<A::Call, A::Reply>,
    /// Reports the shard ready (or failed) to the main thread.
    ready: mpsc::Sender<Result<usize, String>>,
    /// Origin of the shards' shared monotonic clock.
    origin: Instant,
    /// What the app builds each shard from.
    seed: Arc<A::Seed>,
    /// systemd's watchdog, when `WatchdogSec=` is set: shard 0 pings it (see `watchdog`).
    watchdog: Option<(Arc<Notifier>, Duration)>,
}

impl<A: App> Clone for ShardStart<A> {
    fn clone(&self) -> Self {
        ShardStart {
            config: Arc::clone(&self.config),
            shared: Arc::clone(&self.shared),
            seeds: Arc::clone(&self.seeds),
            mesh: self.mesh.clone(),
            ready: self.ready.clone(),
            origin: self.origin,
            seed: Arc::clone(&self.seed),
            watchdog: self.watchdog.clone(),
        }
    }
}

async fn run_shard<A: App>(start: ShardStart<A>) {
    let ShardStart {
        config,
        shared,
        seeds,
        mesh,
        ready,
        origin,
        seed: app_seed,
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
    let core = Rc::new(Core::new(
        config,
        Arc::clone(&shared),
        Rc::clone(&mesh),
        origin,
    ));
    let shard = A::start(Rc::clone(&core), &app_seed);
    let handler: Handler<A::Call, A::Reply> = {
        let shard = Rc::clone(&shard);
        Rc::new(move |call| shard.answer(call))
    };
    mesh.serve(handler);

    glommio::spawn_local(seed.control.serve(Rc::clone(&shard))).detach();
    if let (0, Some((notifier, interval))) = (core.id, watchdog) {
        glommio::spawn_local(watchdog::run(Rc::clone(&shard), notifier, interval)).detach();
    }
    shard.run();
    log::debug!("shard {} on cpu {:?} accepting", core.id, core.cpu);
    let _ = ready.send(Ok(core.id));
    drop(ready);

    accept_loop(&shard, &listener).await;
    drop(listener);
    drain(&shard).await;
}

async fn accept_loop<A: App>(shard: &Rc<A>, listener: &TcpListener) {
    let core = shard.core();
    let max = core.config.max_connections;
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            core.shutdown_started().await;
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
        let open = core.shared.connections.fetch_add(1, Ordering::Relaxed);
        core.shared
            .connections_peak
            .fetch_max(open + 1, Ordering::Relaxed);
        if open >= max {
            core.shared.connections.fetch_sub(1, Ordering::Relaxed);
            let c = &core.counters.connections_rejected;
            c.set(c.get() + 1);
            glommio::spawn_local(reject(core.id, stream)).detach();
            continue;
        }
        glommio::spawn_local(conn::serve(Rc::clone(shard), stream)).detach();
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

/// Waits for this shard's connections to finish, lets the app write what must survive, then
/// waits for every other shard to finish too (so no shard leaves while a peer may still call
/// it), both bounded by the grace period.
async fn drain<A: App>(shard: &Rc<A>) {
    let core = shard.core();
    let deadline = Instant::now() + core.live_config().shutdown_grace;
    while core.counters.connections_open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shard.drained().await;
    let left = core.counters.connections_open.get();
    if left > 0 {
        log::warn!(
            "shard {}: grace period over, dropping {left} connection(s)",
            core.id
        );
    }
    core.shared.drained.fetch_add(1, Ordering::AcqRel);
    while core.shared.drained.load(Ordering::Acquire) < core.shared.shards
        && Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

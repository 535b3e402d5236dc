//! The app's supervisor (`runtime::Supervisor`): what the main thread resolves and starts
//! before the executors (the endpoints' addresses, the JWT keys, the Redis workers, the alert
//! webhook, the snapshots to restore, the global rate-limit bucket), what the signal thread
//! resolves again on SIGHUP, and the Redis flush after the shards stopped. No DNS and no
//! blocking connect ever happens on a shard.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Role, Shard};
use crate::ai::pool::ResolvedEndpoint;
use crate::config::Config;
use crate::monitor::WebhookTarget;
use crate::runtime::reload::Plan;
use crate::runtime::{Bound, StartError, Supervisor};

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// The main thread's side of `atlas serve` and `atlas model-endpoint`.
pub struct Launcher {
    /// What every shard is built from.
    seed: Arc<Seed>,
    /// The shards' shared clock (the global bucket's time base).
    clock: atlas_shard::MonotonicClock,
    /// The remote endpoints in force, resolved. Every reload hands the whole list to every
    /// shard (applying it again changes nothing), so a shard that missed a reload catches up
    /// at the next.
    endpoints: Vec<ResolvedEndpoint>,
}

impl Launcher {
    /// Resolves and starts what the shards of `role` need, for a server bound as `bound`
    /// says.
    pub fn new(config: &Config, role: Role, bound: Bound) -> Result<Launcher, StartError> {
        let Bound {
            addr: bound,
            shards,
        } = bound;
        let resolved = Resolved {
            endpoints: resolve_endpoints(config)?,
            webhook: resolve_webhook(config, bound)?,
            redis: start_redis(config)?,
            verifier: auth_keys(config, bound)?,
            restore: Arc::new(Mutex::new(load_snapshots(config, shards))),
            global_limit: config
                .rate_limits()
                .global()
                .map(|rate| Arc::new(atlas_shard::SharedBucket::new(rate))),
        };
        Ok(Launcher {
            endpoints: resolved.endpoints.clone(),
            // Replaced by the shards' origin before they start (`Supervisor::clock`).
            clock: atlas_shard::MonotonicClock::with_origin(Instant::now()),
            seed: Arc::new(Seed { role, resolved }),
        })
    }
}

/// What every shard is built from.
pub struct Seed {
    /// Which server this process runs.
    pub role: Role,
    /// What the main thread resolved and started.
    pub resolved: Resolved,
}

impl Supervisor for Launcher {
    type App = Shard;

    fn name(&self) -> &'static str {
        match self.seed.role {
            Role::Gateway => "atlas",
            Role::ModelEndpoint(_) => "atlas model-endpoint",
        }
    }

    fn seed(&self) -> Arc<Seed> {
        Arc::clone(&self.seed)
    }

    fn clock(&mut self, origin: Instant) {
        self.clock = atlas_shard::MonotonicClock::with_origin(origin);
    }

    fn reload(&mut self, plan: &mut Plan, current: &Config) -> Option<Vec<ResolvedEndpoint>> {
        // Resolved here, on the signal thread: a shard never waits for DNS. Only new or
        // changed endpoints are looked up; an unchanged one keeps its address (and so its
        // state on the shards, even behind round-robin DNS).
        if plan.config.endpoints != current.endpoints {
            match resolve_changed(&plan.config, &self.endpoints) {
                Ok(list) => self.endpoints = list,
                Err(e) => {
                    log::error!("SIGHUP: {e}");
                    plan.hold_endpoints(current, "cannot be resolved");
                }
            }
        }
        if plan.changes.iter().any(|c| c.applied) {
            use atlas_shard::Clock;
            if let (Some(bucket), Some(rate)) = (
                &self.seed.resolved.global_limit,
                plan.config.rate_limits().global(),
            ) {
                if bucket.rate() != rate {
                    bucket.set_rate(rate, self.clock.now());
                }
            }
        }
        Some(self.endpoints.clone())
    }

    fn finish(seed: &Seed, since: Instant, grace: Duration) {
        if let Some(redis) = &seed.resolved.redis {
            flush_l2_stores(redis, since, grace);
        }
    }
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

/// Resolves the remote endpoints' host names here, on the main thread, so no shard ever
/// blocks on DNS.
fn resolve_endpoints(config: &Config) -> Result<Vec<ResolvedEndpoint>, StartError> {
    resolve_changed(config, &[])
}

/// [`resolve_endpoints`], reusing the address of every endpoint `known` already lists with
/// the same specification.
fn resolve_changed(
    config: &Config,
    known: &[ResolvedEndpoint],
) -> Result<Vec<ResolvedEndpoint>, StartError> {
    config
        .endpoints
        .iter()
        .map(|spec| {
            if let Some(r) = known.iter().find(|r| r.spec == *spec) {
                return Ok(r.clone());
            }
            let addr = first_address(&spec.host, spec.port).ok_or_else(|| {
                StartError::Config(format!(
                    "ATLAS_ENDPOINTS: cannot resolve {}:{} for endpoint {}",
                    spec.host, spec.port, spec.name
                ))
            })?;
            Ok(ResolvedEndpoint {
                spec: spec.clone(),
                addr,
            })
        })
        .collect()
}

/// Loads the JWT keys and decides whether authentication is on (`ATLAS_AUTH`): required
/// needs a key; unset means required when a key is configured, off on a loopback address,
/// and a refusal to start on any other address. Logs the decision (never a secret).
fn auth_keys(
    config: &Config,
    bound: SocketAddr,
) -> Result<Option<Arc<crate::auth::verify::Verifier>>, StartError> {
    use crate::config::AuthMode;
    let verifier = crate::auth::verify::Verifier::load(config).map_err(StartError::Config)?;
    let loopback = bound.ip().is_loopback();
    let on = match (config.auth, &verifier) {
        (AuthMode::Off, _) => {
            if !loopback {
                log::warn!(
                    target: "atlas::security",
                    "event=config auth=off listen={bound}: ATLAS_AUTH=off on a non-loopback address; every route is open"
                );
            }
            false
        }
        (AuthMode::Required | AuthMode::Auto, Some(_)) => true,
        (AuthMode::Required, None) => return Err(StartError::Config(
            "ATLAS_AUTH=required needs ATLAS_JWT_SECRET, ATLAS_JWT_PUBLIC_KEY or ATLAS_JWKS_FILE"
                .into(),
        )),
        (AuthMode::Auto, None) if loopback => false,
        (AuthMode::Auto, None) => {
            return Err(StartError::Config(format!(
                "listening on {bound} (not loopback) without authentication: configure \
                 ATLAS_JWT_SECRET, ATLAS_JWT_PUBLIC_KEY or ATLAS_JWKS_FILE, or set ATLAS_AUTH=off \
                 explicitly"
            )))
        }
    };
    let verifier = verifier.filter(|_| on).map(Arc::new);
    match &verifier {
        Some(v) => log::info!(
            target: "atlas::security",
            "event=config auth=required keys=\"{}\" admin_token={}",
            v.describe(),
            if config.admin_token.is_some() { "set" } else { "unset" }
        ),
        None => log::info!(target: "atlas::security", "event=config auth=off listen={bound}"),
    }
    Ok(verifier)
}

/// Starts the Redis workers when `ATLAS_REDIS_URL` is set: min(`CONNECTION_POOL_SIZE`, 4)
/// threads, each with one connection (made on the worker, so a Redis that is down does not
/// delay the start), I/O deadline 20 × `ATLAS_REDIS_TIMEOUT_MS` (at least 100 ms).
fn start_redis(config: &Config) -> Result<Option<crate::l2::pool::Pool>, StartError> {
    use crate::l2::pool::{Pool, Target};
    let target = match config.redis_urls.as_slice() {
        [] => return Ok(None),
        [one] if !config.redis_cluster => Target::Node(one.clone()),
        seeds => Target::Cluster(seeds.to_vec()),
    };
    let workers = config.connection_pool_size.clamp(1, 4);
    let io_timeout = (config.redis_timeout * 20).max(Duration::from_millis(100));
    log::info!("redis L2: {target:?}, {workers} connections");
    Pool::start(target, workers, io_timeout)
        .map(Some)
        .map_err(io_err("cannot start the Redis workers"))
}

/// The first address `host:port` resolves to (blocking DNS: main or signal thread only).
fn first_address(host: &str, port: u16) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
}

/// Resolves `ATLAS_ALERT_WEBHOOK`; names this instance `hostname:port` in its payloads.
fn resolve_webhook(
    config: &Config,
    bound: SocketAddr,
) -> Result<Option<WebhookTarget>, StartError> {
    let Some(url) = &config.alert_webhook else {
        return Ok(None);
    };
    let addr = first_address(&url.host, url.port).ok_or_else(|| {
        StartError::Config(format!(
            "ATLAS_ALERT_WEBHOOK: cannot resolve {}",
            url.authority()
        ))
    })?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "atlas".to_string());
    Ok(Some(WebhookTarget {
        addr,
        host: url.authority(),
        path: url.path.clone(),
        instance: format!("{host}:{}", bound.port()),
    }))
}

/// Addresses resolved and process-wide clients started on the main thread before the
/// executors start (never DNS or a blocking connect on a shard).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The remote model endpoints.
    pub endpoints: Vec<ResolvedEndpoint>,
    /// Where alert changes go (`ATLAS_ALERT_WEBHOOK`).
    pub webhook: Option<WebhookTarget>,
    /// The Redis workers of the L2 (`ATLAS_REDIS_URL`).
    pub redis: Option<crate::l2::pool::Pool>,
    /// The JWT keys when authentication is required (`None`: auth off).
    pub verifier: Option<Arc<crate::auth::verify::Verifier>>,
    /// Snapshot entries for each shard to restore (taken once by the shard).
    pub restore: Arc<Mutex<Vec<Vec<atlas_shard::SnapshotEntry>>>>,
    /// The global rate-limit bucket every shard shares (`ATLAS_RATE_LIMIT_GLOBAL_RPS`).
    pub global_limit: Option<Arc<atlas_shard::SharedBucket>>,
}

impl Resolved {
    /// Shard `id`'s snapshot entries (empty after the first call).
    pub fn take_restore(&self, id: usize) -> Vec<atlas_shard::SnapshotEntry> {
        self.restore
            .lock()
            .ok()
            .and_then(|mut all| all.get_mut(id).map(std::mem::take))
            .unwrap_or_default()
    }
}

/// Reads the snapshots in `ATLAS_STATE_DIR` (creating it if missing), grouped by owner shard.
fn load_snapshots(config: &Config, shards: usize) -> Vec<Vec<atlas_shard::SnapshotEntry>> {
    let Some(dir) = &config.state_dir else {
        return Vec::new();
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        log::warn!(
            "ATLAS_STATE_DIR {}: {e}; snapshots will fail, starting cold",
            dir.display()
        );
        return Vec::new();
    }
    crate::snapshot::load_all(dir, shards, crate::wallclock::unix_ms_now())
}

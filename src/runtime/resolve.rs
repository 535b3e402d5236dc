//! What the main thread resolves and starts before the executors: the endpoints' addresses,
//! the JWT keys, the Redis workers, the alert webhook and the snapshots to restore (no DNS and
//! no blocking connect ever happens on a shard).

use super::*;

/// Resolves the remote endpoints' host names here, on the main thread, so no shard ever
/// blocks on DNS.
pub(super) fn resolve_endpoints(config: &Config) -> Result<Vec<ResolvedEndpoint>, StartError> {
    resolve_changed(config, &[])
}

/// [`resolve_endpoints`], reusing the address of every endpoint `known` already lists with
/// the same specification.
pub(super) fn resolve_changed(
    config: &Config,
    known: &[ResolvedEndpoint],
) -> Result<Vec<ResolvedEndpoint>, StartError> {
    use std::net::ToSocketAddrs;
    config
        .endpoints
        .iter()
        .map(|spec| {
            if let Some(r) = known.iter().find(|r| r.spec == *spec) {
                return Ok(r.clone());
            }
            let addr = (spec.host.as_str(), spec.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
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
pub(super) fn auth_keys(
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
pub(super) fn start_redis(config: &Config) -> Result<Option<crate::l2::pool::Pool>, StartError> {
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

/// Resolves `ATLAS_ALERT_WEBHOOK`; names this instance `hostname:port` in its payloads.
pub(super) fn resolve_webhook(
    config: &Config,
    bound: SocketAddr,
) -> Result<Option<WebhookTarget>, StartError> {
    use std::net::ToSocketAddrs;
    let Some(url) = &config.alert_webhook else {
        return Ok(None);
    };
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
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

/// Prints the one line tests and tools wait for.
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
pub(super) fn load_snapshots(
    config: &Config,
    shards: usize,
) -> Vec<Vec<atlas_shard::SnapshotEntry>> {
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

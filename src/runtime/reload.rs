//! SIGHUP: read the configuration again from the same sources (the `--config` file and the
//! flags; the environment of a running process does not change), validate all of it, and
//! apply the settings that can change without a restart.
//!
//! Reloadable (the `reload` rows of the settings table, [`reloadable`]): the log filter, the drain
//! grace, batch size and window, cache warming, the per-operation cache settings and
//! `RESULT_CACHE_TTL` (for results stored from then on), the monitor's alert thresholds, hold
//! windows, interval, history and adaptive baselines, the rate limits' rates, bursts and options,
//! and the remote endpoints (each shard rebuilds its pool, keeping the state of the endpoints whose
//! name and address are unchanged). A rate limit switched on or off waits for a restart (its state
//! exists only for limits on at start), and so does an endpoint list that would leave no endpoint
//! with the embedded models off. Everything else is fixed at start because it shaped something
//! built once: sockets (listen address, backlog), the shard count and the memory split across
//! shards, the embedded models, the Redis workers, the webhook address, snapshots, limits and
//! timeouts read on the request path. A change that is not applied is logged with why; an invalid
//! configuration is logged in full and nothing changes.
//!
//! This file is the pure part (what changed, what applies); `runtime` runs it on the signal
//! thread and hands the result to the shards over `control`.

use std::collections::HashMap;

use crate::config::{self, Config, ConfigError, Flags, Raw, SETTINGS};

/// Whether a SIGHUP reload applies this setting.
pub fn is_reloadable(env: &str) -> bool {
    config::settings::by_env(env).is_some_and(|s| s.reload)
}

/// The settings a SIGHUP reload applies (the table's `reload` rows), by environment name.
pub fn reloadable() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().filter(|s| s.reload).map(|s| s.env)
}

/// The running configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Reloader {
    /// The flags the process was started with (`--config FILE` among them).
    flags: Flags,
    /// The configuration in force.
    current: Config,
    /// The text of each setting in force, by environment name.
    in_force: HashMap<&'static str, String>,
}

/// One setting whose value differs from the one in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The environment name.
    pub name: &'static str,
    /// The value in force (`<redacted>` for secrets).
    pub old: String,
    /// The value read now.
    pub new: String,
    /// Applied now (`false`: see `why`).
    pub applied: bool,
    /// Why it is not applied (empty when applied).
    pub why: String,
}

/// The outcome of reading the configuration again.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The configuration to put in force: the current one with the reloadable settings
    /// replaced.
    pub config: Config,
    /// Every changed setting.
    pub changes: Vec<Change>,
    /// The text of each reloadable setting as read now (in force once committed).
    reloaded: Vec<(&'static str, String)>,
}

impl Reloader {
    /// A reloader for a process started with `flags`, whose configuration `config` was built
    /// from `raw`.
    pub fn new(flags: Flags, raw: &Raw, config: Config) -> Self {
        let in_force = SETTINGS
            .iter()
            .map(|s| (s.env, raw.get(s).0.trim().to_string()))
            .collect();
        Reloader {
            flags,
            current: config,
            in_force,
        }
    }

    /// The configuration in force.
    pub fn current(&self) -> &Config {
        &self.current
    }

    /// Reads and validates the configuration again (`env` stands for the process
    /// environment) and returns what would change, or every problem with it.
    pub fn plan(&self, env: impl Fn(&str) -> Option<String>) -> Result<Plan, Vec<ConfigError>> {
        let (raw, mut errors) = config::gather(&self.flags, env);
        let built = config::build(&raw);
        let fresh = match built {
            Ok(c) if errors.is_empty() => c,
            Ok(_) => return Err(errors),
            Err(e) => {
                errors.extend(e);
                return Err(errors);
            }
        };
        let changes = SETTINGS
            .iter()
            .filter_map(|s| {
                let new = raw.get(s).0.trim().to_string();
                let old = self.in_force.get(s.env).cloned().unwrap_or_default();
                (new != old).then(|| {
                    let shown = |v: String| if s.secret { "<redacted>".into() } else { v };
                    let why = if !is_reloadable(s.env) {
                        "needs a restart".to_string()
                    } else if switches_a_limit(&self.current, &fresh, s.env) {
                        "turns a rate limit on or off, which needs a restart".to_string()
                    } else {
                        String::new()
                    };
                    Change {
                        name: s.env,
                        old: shown(old),
                        new: shown(new),
                        applied: why.is_empty(),
                        why,
                    }
                })
            })
            .collect();
        let reloaded = SETTINGS
            .iter()
            .filter(|s| is_reloadable(s.env) && !switches_a_limit(&self.current, &fresh, s.env))
            .map(|s| (s.env, raw.get(s).0.trim().to_string()))
            .collect();
        let mut plan = Plan {
            config: merge(&self.current, &fresh),
            changes,
            reloaded,
        };
        if !plan.config.embedded && plan.config.endpoints.is_empty() {
            plan.hold_endpoints(
                &self.current,
                "would leave no endpoint: ATLAS_EMBEDDED=false is in force until a restart",
            );
        }
        Ok(plan)
    }

    /// Records `plan` as in force (after it was handed to the shards).
    pub fn commit(&mut self, plan: Plan) {
        for (name, text) in plan.reloaded {
            self.in_force.insert(name, text);
        }
        self.current = plan.config;
    }
}

impl Plan {
    /// Keeps the endpoints in force (`ATLAS_ENDPOINTS` not applied, for `why`): a reload
    /// that cannot resolve the new list, or one that would leave no endpoint.
    pub fn hold_endpoints(&mut self, current: &Config, why: &str) {
        const NAME: &str = "ATLAS_ENDPOINTS";
        self.config.endpoints = current.endpoints.clone();
        self.reloaded.retain(|(name, _)| *name != NAME);
        for change in self.changes.iter_mut().filter(|c| c.name == NAME) {
            change.applied = false;
            change.why = why.to_string();
        }
    }
}

/// Whether `env` is a rate-limit setting whose change in `fresh` turns its limit (per user or
/// global) on or off. The limits' state (the per-user tables, the global bucket shared by
/// the shards, the Redis batches) is built at start only for limits that are on, so such a
/// change waits for a restart; a change of rate or burst of a limit that stays on applies.
fn switches_a_limit(current: &Config, fresh: &Config, env: &str) -> bool {
    let (c, f) = (current.rate_limits(), fresh.rate_limits());
    match env {
        "ATLAS_RATE_LIMIT_USER_RPS" | "ATLAS_RATE_LIMIT_USER_BURST" => {
            c.user().is_some() != f.user().is_some()
        }
        "ATLAS_RATE_LIMIT_GLOBAL_RPS" | "ATLAS_RATE_LIMIT_GLOBAL_BURST" => {
            c.global().is_some() != f.global().is_some()
        }
        _ => false,
    }
}

/// `current` with every reloadable setting taken from `fresh` (each row's own field, and the
/// cache group as a whole), except that a rate limit switched on or off keeps its current rate
/// and burst (see [`switches_a_limit`]).
pub fn merge(current: &Config, fresh: &Config) -> Config {
    let mut merged = current.clone();
    for take in SETTINGS.iter().filter(|s| s.reload).filter_map(|s| s.take) {
        take(&mut merged, fresh);
    }
    // The cache rows are one group (`settings` checks that all of them reload).
    merged.cache = fresh.cache.clone();
    let (c, f) = (current.rate_limits(), fresh.rate_limits());
    if c.user().is_some() != f.user().is_some() {
        merged.rate_limit_user_rps = current.rate_limit_user_rps;
        merged.rate_limit_user_burst = current.rate_limit_user_burst;
    }
    if c.global().is_some() != f.global().is_some() {
        merged.rate_limit_global_rps = current.rate_limit_global_rps;
        merged.rate_limit_global_burst = current.rate_limit_global_burst;
    }
    merged
}

/// One log line per change, e.g. `ALERT_ERROR_RATE: 0.05 -> 0.2 (applied)`.
pub fn describe(change: &Change) -> String {
    format!(
        "{}: {} -> {} ({})",
        change.name,
        shown(&change.old),
        shown(&change.new),
        if change.applied {
            "applied".to_string()
        } else {
            format!("{}, not applied", change.why)
        }
    )
}

fn shown(v: &str) -> &str {
    if v.is_empty() {
        "(unset)"
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ratelimit::RedisFailure;
    use atlas_shard::Operation;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("atlas-reload-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("atlas.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn start(path: &Path) -> Reloader {
        let flags = Flags {
            config_file: Some(path.to_path_buf()),
            ..Flags::default()
        };
        let (raw, errors) = config::gather(&flags, |_| None);
        assert!(errors.is_empty(), "{errors:?}");
        let config = config::build(&raw).unwrap();
        Reloader::new(flags, &raw, config)
    }

    /// README's reload table names exactly the reloadable settings.
    #[test]
    fn readme_lists_the_reloadable_settings() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Reload (SIGHUP)")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let mut listed: Vec<&str> = section
            .lines()
            .filter(|l| l.trim_start().starts_with("| `"))
            .flat_map(|l| l.split('|').nth(1).unwrap().split('`'))
            .filter(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !w.is_empty())
            .collect();
        listed.sort_unstable();
        let mut expected: Vec<&str> = reloadable().collect();
        expected.sort_unstable();
        assert_eq!(listed, expected);
    }

    /// Each reloadable setting gets through `merge`, each fixed one does not.
    #[test]
    fn merge_takes_exactly_the_reloadable_settings() {
        let path = file(
            "merge",
            "alert_error_rate = 0.05\nbatch_size = 32\nlisten = \"127.0.0.1:8083\"\n\
             rate_limit_user_rps = 100\nrate_limit_global_rps = 1000\n",
        );
        let mut r = start(&path);
        std::fs::write(
            &path,
            format!(
                "log = \"debug\"\nshutdown_grace_s = 3\nbatch_size = 8\nbatch_timeout_ms = 7\n\
             enable_cache_warming = false\nmonitor_interval_s = 2\nmonitor_history = 9\n\
             alert_for_windows = 4\nadaptive_thresholds = true\nalert_response_time_ms = 900\n\
             alert_error_rate = 0.2\nlisten = \"127.0.0.1:9\"\ncores = 1\n\
             max_connections = 5\nendpoints = \"a=http://127.0.0.1:9000\"\n\
             rate_limit_user_rps = 2\nrate_limit_user_burst = 4\nrate_limit_global_rps = 50\n\
             rate_limit_global_burst = 60\nrate_limit_hits = false\nrate_limit_max_users = 7\n\
             rate_limit_redis_failure = \"closed\"\nresult_cache_ttl = 77\n{}",
                // Every operation's six cache settings, in `[cache.<op>]` tables.
                Operation::ALL
                    .iter()
                    .map(|op| format!(
                    "[cache.{}]\nttl_s = 99\nstrategy = \"ttl\"\nstale_while_revalidate_s = 1\n\
                     stale_if_error_s = 2\nbatch_compatible = false\nwarmup = {}\n",
                    op.as_str(),
                    !matches!(op, Operation::BudgetOptimization | Operation::CashflowForecast)
                ))
                    .collect::<String>()
            ),
        )
        .unwrap();
        let plan = r.plan(|_| None).unwrap();
        let c = &plan.config;
        assert_eq!(c.log, "debug");
        assert_eq!(c.shutdown_grace, Duration::from_secs(3));
        assert_eq!(
            (c.batch_size, c.batch_timeout),
            (8, Duration::from_millis(7))
        );
        assert!(!c.enable_cache_warming);
        assert_eq!(c.monitor_interval, Duration::from_secs(2));
        assert_eq!((c.monitor_history, c.alert_for_windows), (9, 4));
        assert!(c.adaptive_thresholds);
        assert_eq!(c.alert_response_time, Duration::from_millis(900));
        assert_eq!(c.alert_error_rate, 0.2);
        let rl = &c.rate_limits();
        assert_eq!((rl.user_rps, rl.user_burst), (2.0, 4));
        assert_eq!((rl.global_rps, rl.global_burst), (50.0, 60));
        assert!(!rl.count_hits);
        assert_eq!(rl.max_users, 7);
        assert_eq!(rl.redis_failure, RedisFailure::Closed);
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(c.endpoints[0].name, "a");
        assert_eq!(c.result_cache_ttl, Duration::from_secs(77));
        for op in Operation::ALL {
            let cache = c.cache.get(op);
            assert_eq!(
                (
                    cache.ttl.as_secs(),
                    cache.strategy,
                    cache.stale_if_error.as_secs()
                ),
                (99, atlas_shard::Strategy::Ttl, 2),
                "{op}"
            );
            assert!(!cache.batch_compatible);
        }
        // Fixed settings keep their start values.
        let start = Config::default();
        assert_eq!(c.listen, start.listen);
        assert_eq!((c.cores, c.max_connections), (None, start.max_connections));
        let applied: Vec<&str> = plan
            .changes
            .iter()
            .filter(|c| c.applied)
            .map(|c| c.name)
            .collect();
        assert_eq!(applied.len(), reloadable().count(), "{applied:?}");
        let restart: Vec<&str> = plan
            .changes
            .iter()
            .filter(|c| !c.applied)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            restart,
            ["ATLAS_LISTEN", "ATLAS_CORES", "ATLAS_MAX_CONNECTIONS"]
        );
        // ALERT_ERROR_RATE 0.05 -> 0.2 is one of them; after commit it is no longer a change.
        assert!(plan
            .changes
            .iter()
            .any(|c| describe(c) == "ALERT_ERROR_RATE: 0.05 -> 0.2 (applied)"));
        r.commit(plan);
        let again = r.plan(|_| None).unwrap();
        assert!(
            again.changes.iter().all(|c| !c.applied),
            "{:?}",
            again.changes
        );
        assert_eq!(again.changes.len(), 3, "fixed settings stay pending");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// A rate limit switched on or off waits for a restart; the other changes apply.
    #[test]
    fn switching_a_limit_on_or_off_needs_a_restart() {
        let path = file("toggle", "rate_limit_user_rps = 10\n");
        let mut r = start(&path);
        std::fs::write(
            &path,
            "rate_limit_user_rps = 0\nrate_limit_global_rps = 5\nbatch_size = 4\n",
        )
        .unwrap();
        let plan = r.plan(|_| None).unwrap();
        let rl = &plan.config.rate_limits();
        assert_eq!(rl.user_rps, 10.0, "the per-user limit stays on");
        assert!(rl.global().is_none(), "the global limit stays off");
        assert_eq!(plan.config.batch_size, 4);
        let held: Vec<String> = plan
            .changes
            .iter()
            .filter(|c| !c.applied)
            .map(describe)
            .collect();
        assert_eq!(
            held,
            [
                "ATLAS_RATE_LIMIT_USER_RPS: 10 -> 0 (turns a rate limit on or off, which needs a \
                 restart, not applied)",
                "ATLAS_RATE_LIMIT_GLOBAL_RPS: 0 -> 5 (turns a rate limit on or off, which \
                 needs a restart, not applied)"
            ]
        );
        r.commit(plan);
        let again = r.plan(|_| None).unwrap();
        assert_eq!(again.changes.len(), 2, "still pending: {:?}", again.changes);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// With the embedded models off (fixed), a reload may not remove the last endpoint, even
    /// where the file also turns them on.
    #[test]
    fn a_reload_never_leaves_no_endpoint() {
        let path = file(
            "last",
            "embedded = false\nendpoints = \"a=http://127.0.0.1:9000\"\n",
        );
        let r = start(&path);
        std::fs::write(&path, "embedded = true\nendpoints = \"\"\n").unwrap();
        let plan = r.plan(|_| None).unwrap();
        assert!(!plan.config.embedded);
        assert_eq!(plan.config.endpoints.len(), 1);
        assert!(
            plan.changes.iter().all(|c| !c.applied),
            "{:?}",
            plan.changes
        );
        std::fs::write(
            &path,
            "embedded = false\nendpoints = \"b=http://127.0.0.1:9001\"\n",
        )
        .unwrap();
        let plan = r.plan(|_| None).unwrap();
        assert_eq!(plan.config.endpoints[0].name, "b");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_invalid_file_is_refused_whole() {
        let path = file("bad", "batch_size = 8\n");
        let r = start(&path);
        std::fs::write(&path, "batch_size = 0\nalert_error_rate = 7\nnope = 1\n").unwrap();
        let errors = r.plan(|_| None).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"BATCH_SIZE"), "{names:?}");
        assert!(names.contains(&"ALERT_ERROR_RATE"), "{names:?}");
        assert!(errors
            .iter()
            .any(|e| e.problem.contains("unknown key `nope`")));
        assert_eq!(r.current().batch_size, 8);
        std::fs::write(&path, "batch_size = [\n").unwrap();
        assert!(r.plan(|_| None).is_err(), "not TOML");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_environment_still_beats_the_file() {
        let path = file("env", "batch_size = 8\n");
        let flags = Flags {
            config_file: Some(path.clone()),
            ..Flags::default()
        };
        let env = |k: &str| (k == "BATCH_SIZE").then(|| "16".to_string());
        let (raw, _) = config::gather(&flags, env);
        let r = Reloader::new(flags, &raw, config::build(&raw).unwrap());
        std::fs::write(&path, "batch_size = 4\n").unwrap();
        let plan = r.plan(env).unwrap();
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        assert_eq!(plan.config.batch_size, 16);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

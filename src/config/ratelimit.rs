//! The rate-limit settings (`ATLAS_RATE_LIMIT_*`): their parsers (the rows are in the
//! settings table) and the [`RateLimitConfig`] they make together (`Config::rate_limits`).
//! The limits themselves live in `crate::ratelimit`. Must not depend on the runtime.

use atlas_shard::Rate;

use super::int_in;

/// What the limits do while the shared store (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Each instance enforces the limits on its own (fail open to local limits).
    Local,
    /// No limit is enforced until Redis answers again.
    Open,
    /// Requests that need Redis are refused with 503 `rate_limit_unavailable`.
    Closed,
}

impl RedisFailure {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisFailure::Local => "local",
            RedisFailure::Open => "open",
            RedisFailure::Closed => "closed",
        }
    }
}

/// The rate-limit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Requests per second per user (0: no per-user limit).
    pub user_rps: f64,
    /// Per-user bucket size (0: the rate rounded up, at least 1).
    pub user_burst: u32,
    /// Requests per second for the whole instance, or the whole fleet with Redis (0: none).
    pub global_rps: f64,
    /// Global bucket size (0: the rate rounded up, at least 1).
    pub global_burst: u32,
    /// Whether answers served from the cache cost a token.
    pub count_hits: bool,
    /// Users tracked at once across all shards (split evenly).
    pub max_users: usize,
    /// Behaviour while Redis is unreachable.
    pub redis_failure: RedisFailure,
}

impl RateLimitConfig {
    /// The per-user limit, if on.
    pub fn user(&self) -> Option<Rate> {
        limit(self.user_rps, self.user_burst)
    }

    /// The global limit, if on.
    pub fn global(&self) -> Option<Rate> {
        limit(self.global_rps, self.global_burst)
    }

    /// Whether any limit is on.
    pub fn is_on(&self) -> bool {
        self.user().is_some() || self.global().is_some()
    }
}

/// `per_second` with `burst` (0: `ceil(per_second)`, at least 1); `None` for a rate of 0.
fn limit(per_second: f64, burst: u32) -> Option<Rate> {
    let burst = if burst == 0 {
        per_second
            .ceil()
            .clamp(1.0, f64::from(atlas_shard::ratelimit::MAX_BURST)) as u32
    } else {
        burst
    };
    Rate::new(per_second, burst)
}

pub(super) fn per_second(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(f) if f == 0.0 || (f > 0.0 && f <= atlas_shard::ratelimit::MAX_RATE) => Ok(f),
        _ => Err(format!(
            "expected requests per second: 0 (off) or a number up to {} (0.5 is one every 2 s)",
            atlas_shard::ratelimit::MAX_RATE
        )),
    }
}

pub(super) fn burst(v: &str) -> Result<u32, String> {
    int_in(v, 0, u64::from(atlas_shard::ratelimit::MAX_BURST))
        .map(|n| n as u32)
        .map_err(|e| format!("{e} (0: the rate rounded up)"))
}

/// `ATLAS_RATE_LIMIT_REDIS_FAILURE`.
pub(super) fn redis_failure(v: &str) -> Result<RedisFailure, String> {
    match v {
        "local" => Ok(RedisFailure::Local),
        "open" => Ok(RedisFailure::Open),
        "closed" => Ok(RedisFailure::Closed),
        _ => Err("expected local, open or closed".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, gather, Flags};

    fn config(pairs: &[(&str, &str)]) -> Result<RateLimitConfig, Vec<String>> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (raw, _) = gather(&Flags::default(), |k| {
            pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        });
        build(&raw)
            .map(|c| c.rate_limits())
            .map_err(|e| e.into_iter().map(|e| e.name).collect())
    }

    #[test]
    fn off_by_default_and_burst_defaults_to_the_rate() {
        let c = config(&[]).unwrap();
        assert!(!c.is_on());
        let c = config(&[("ATLAS_RATE_LIMIT_USER_RPS", "2.5")]).unwrap();
        let user = c.user().unwrap();
        assert_eq!((user.per_second(), user.burst()), (2.5, 3));
        assert!(c.global().is_none());
        let c = config(&[
            ("ATLAS_RATE_LIMIT_GLOBAL_RPS", "0.2"),
            ("ATLAS_RATE_LIMIT_GLOBAL_BURST", "7"),
            ("ATLAS_RATE_LIMIT_HITS", "false"),
            ("ATLAS_RATE_LIMIT_REDIS_FAILURE", "closed"),
        ])
        .unwrap();
        assert_eq!(c.global().unwrap().burst(), 7);
        assert_eq!(c.global().unwrap().per_second(), 0.2);
        assert!(!c.count_hits);
        assert_eq!(c.redis_failure, RedisFailure::Closed);
    }

    #[test]
    fn bad_values_are_reported_by_name() {
        let errors = config(&[
            ("ATLAS_RATE_LIMIT_USER_RPS", "-1"),
            ("ATLAS_RATE_LIMIT_GLOBAL_RPS", "2000000"),
            ("ATLAS_RATE_LIMIT_USER_BURST", "x"),
            ("ATLAS_RATE_LIMIT_MAX_USERS", "0"),
            ("ATLAS_RATE_LIMIT_REDIS_FAILURE", "maybe"),
        ])
        .unwrap_err();
        for name in [
            "ATLAS_RATE_LIMIT_USER_RPS",
            "ATLAS_RATE_LIMIT_GLOBAL_RPS",
            "ATLAS_RATE_LIMIT_USER_BURST",
            "ATLAS_RATE_LIMIT_MAX_USERS",
            "ATLAS_RATE_LIMIT_REDIS_FAILURE",
        ] {
            assert!(errors.iter().any(|e| e == name), "{name}: {errors:?}");
        }
    }
}

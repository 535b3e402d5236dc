//! Logging to stderr with a filter that a SIGHUP reload can change (`ATLAS_LOG`).
//!
//! env_logger fixes its filter when it is built, so the process-wide logger is a thin wrapper
//! holding the current env_logger behind a read-write lock; a reload builds a new one and
//! swaps it in. Log calls below the global maximum level never reach the lock (the `log`
//! macros check that level first), so the request path pays nothing for disabled levels.

use std::sync::{OnceLock, RwLock};

use log::{Log, Metadata, Record};

/// The installed logger.
static LOGGER: OnceLock<Reloadable> = OnceLock::new();

struct Reloadable {
    inner: RwLock<env_logger::Logger>,
}

impl Log for Reloadable {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.read().is_ok_and(|l| l.enabled(metadata))
    }

    fn log(&self, record: &Record<'_>) {
        if let Ok(l) = self.inner.read() {
            l.log(record);
        }
    }

    fn flush(&self) {
        if let Ok(l) = self.inner.read() {
            l.flush();
        }
    }
}

fn build(filter: &str) -> env_logger::Logger {
    env_logger::Builder::new()
        .parse_filters(filter)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .build()
}

/// Installs the logger with `filter` (env_logger syntax: `info`, `atlas=debug,warn`). A second
/// call changes the filter instead.
pub fn init(filter: &str) {
    if LOGGER.get().is_some() {
        set_filter(filter);
        return;
    }
    let logger = LOGGER.get_or_init(|| Reloadable {
        inner: RwLock::new(build(filter)),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max_level(logger));
    }
}

/// Replaces the filter of the installed logger (no-op before [`init`]).
pub fn set_filter(filter: &str) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let fresh = build(filter);
    let level = fresh.filter();
    if let Ok(mut inner) = logger.inner.write() {
        *inner = fresh;
    }
    log::set_max_level(level);
}

fn max_level(logger: &Reloadable) -> log::LevelFilter {
    logger
        .inner
        .read()
        .map_or(log::LevelFilter::Info, |l| l.filter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_changes_after_init() {
        init("warn");
        assert!(!log::log_enabled!(log::Level::Info));
        set_filter("debug");
        assert!(log::log_enabled!(log::Level::Debug));
        set_filter("info");
        assert!(log::log_enabled!(log::Level::Info));
        assert!(!log::log_enabled!(log::Level::Debug));
    }
}

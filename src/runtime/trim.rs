//! Giving the memory of closed connections back to the OS. Each connection holds a few
//! kilobytes of buffers and task state; after thousands close, glibc's allocator keeps the
//! freed chunks in its arenas (fragmented between long-lived allocations, so its own
//! top-of-heap trimming rarely applies) and the resident size stays at its peak. A thread
//! outside the shards watches the open-connection count (and its peak, which the accept
//! loops raise) and calls `malloc_trim(0)` once it has fallen by [`DROP`] or more below the
//! peak since the last trim, at most every [`MIN_GAP`]; steady churn at a stable count never
//! trims. Never on a shard thread: `malloc_trim` takes each arena's lock in turn (measured:
//! 8 ms for a 60 MB heap, debug build).
//!
//! A no-op on other C libraries (musl has no `malloc_trim`; jemalloc-like allocators
//! return memory on their own).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::Shared;

/// Closed connections (below the peak) that make a trim worth it.
const DROP: usize = 256;
/// Shortest time between two trims.
const MIN_GAP: Duration = Duration::from_secs(5);
/// How often the connection count is looked at.
const TICK: Duration = Duration::from_secs(1);

/// Whether to trim now: `open` connections against `peak` since the last trim.
fn due(peak: usize, open: usize, since_last: Duration) -> bool {
    peak.saturating_sub(open) >= DROP && since_last >= MIN_GAP
}

/// Starts the trimming thread; it ends with the process.
pub fn spawn(shared: Arc<Shared>) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let started = std::thread::Builder::new()
        .name("atlas-trim".into())
        .spawn(move || {
            let mut last = Instant::now();
            loop {
                std::thread::sleep(TICK);
                let open = shared.connections.load(Ordering::Relaxed);
                let peak = shared.connections_peak.load(Ordering::Relaxed).max(open);
                if due(peak, open, last.elapsed()) {
                    let t = Instant::now();
                    let released = trim();
                    log::debug!(
                        "memory: {} connections closed since the peak; malloc_trim released \
                         memory: {released} ({:.1} ms)",
                        peak - open,
                        t.elapsed().as_secs_f64() * 1e3
                    );
                    shared.connections_peak.store(open, Ordering::Relaxed);
                    last = Instant::now();
                }
            }
        });
    if let Err(e) = started {
        log::warn!("memory: cannot start the trimming thread: {e}");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim has no preconditions; it only returns free heap pages to the OS.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_large_drop_and_not_too_often() {
        let long = Duration::from_secs(60);
        assert!(due(2_000, 10, long));
        assert!(!due(2_000, 1_900, long), "a small drop is steady state");
        assert!(!due(2_000, 10, Duration::from_secs(1)), "too soon");
        assert!(!due(0, 0, long));
    }
}

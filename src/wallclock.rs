//! The wall clock, for timestamps that outlive the process or cross it (L2 entries, snapshots,
//! invalidation horizons, alert reports). Everything measured within the process uses the
//! shards' monotonic clock (`atlas_shard::MonotonicClock`) instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

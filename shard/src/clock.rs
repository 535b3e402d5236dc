//! Time for everything in this crate: the [`Clock`] trait, the real monotonic clock and a
//! manual clock for deterministic tests.
//!
//! Every time-based rule in `atlas-shard` (TTLs, stale windows, batch windows, request deadlines)
//! reads time through a `Clock`, never through `std::time` directly. Depends on nothing else in
//! the crate.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A point in time: nanoseconds since the clock's own origin. Only comparable with timestamps
/// from the same clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The clock's origin.
    pub const ZERO: Timestamp = Timestamp(0);

    /// Nanoseconds since the origin.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the origin.
    pub fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// This timestamp moved forward by `d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A duration as whole nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration as whole milliseconds, saturating at `u32::MAX` (about 49 days).
pub(crate) fn duration_millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A monotonic source of [`Timestamp`]s, injected into every time-based structure.
pub trait Clock {
    /// The current time. Never goes backwards.
    fn now(&self) -> Timestamp;
}

/// The real clock: `std::time::Instant` measured from the moment the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    /// The instant that is `Timestamp::ZERO`.
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }

    /// A clock with an explicit origin, so several structures on one shard share a time base.
    pub fn with_origin(origin: Instant) -> Self {
        MonotonicClock { origin }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Timestamp {
        Timestamp(duration_nanos(self.origin.elapsed()))
    }
}

/// A clock that moves only when told to. Clones share the same time, so a test keeps one clone
/// and hands another to the structure under test. Single-threaded, like a shard.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    /// Current time in nanoseconds, shared by all clones.
    now: Rc<Cell<u64>>,
}

impl ManualClock {
    /// A clock standing at `Timestamp::ZERO`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now
            .set(self.now.get().saturating_add(duration_nanos(d)));
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// Sets the clock to `t`; ignored if `t` is earlier than now (time never goes backwards).
    pub fn set(&self, t: Timestamp) {
        if t.0 > self.now.get() {
            self.now.set(t.0);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.get())
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Rc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time_and_never_go_back() {
        let a = ManualClock::new();
        let b = a.clone();
        a.advance_ms(5);
        assert_eq!(b.now(), Timestamp(5_000_000));
        b.set(Timestamp(1));
        assert_eq!(a.now().as_millis(), 5);
        assert_eq!(
            a.now().since(Timestamp(1_000_000)),
            Duration::from_millis(4)
        );
        assert_eq!(Timestamp(1).since(a.now()), Duration::ZERO);
    }

    #[test]
    fn monotonic_clock_does_not_go_backwards() {
        let c = MonotonicClock::new();
        let t1 = c.now();
        let t2 = c.now();
        assert!(t2 >= t1);
    }
}

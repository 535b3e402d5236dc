//! Tests of the circuit breaker: every transition with a manual clock, and a property check of
//! the half-open probe bound.

use super::*;
use crate::clock::ManualClock;
use proptest::prelude::*;

const FAST: Duration = Duration::from_millis(10);
const SLOW: Duration = Duration::from_secs(3);

fn breaker(opts: BreakerOptions) -> (CircuitBreaker<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (CircuitBreaker::new(opts, clock.clone()), clock)
}

/// Options where only the window rules trip (no consecutive-failure rule).
fn window_only() -> BreakerOptions {
    BreakerOptions {
        consecutive_failures: 0,
        ..BreakerOptions::default()
    }
}

/// A closed call: acquire, then report.
fn call(b: &mut CircuitBreaker<ManualClock>, ok: bool, latency: Duration) {
    assert_eq!(b.try_acquire(), Permit::Allowed);
    if ok {
        b.on_success(latency, false);
    } else {
        b.on_failure(false);
    }
}

/// Trips a default-option breaker with consecutive failures.
fn trip(b: &mut CircuitBreaker<ManualClock>) {
    for _ in 0..b.options().consecutive_failures {
        call(b, false, FAST);
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn defaults_are_the_documented_ones() {
    let o = BreakerOptions::default();
    assert_eq!((o.window, o.min_calls), (20, 10));
    assert_eq!((o.failure_rate, o.slow_call_rate), (0.5, 0.8));
    assert_eq!(o.slow_call, Duration::from_secs(2));
    assert_eq!(
        (o.open_base, o.open_max),
        (Duration::from_secs(5), Duration::from_secs(60))
    );
    assert_eq!((o.half_open_probes, o.consecutive_failures), (3, 5));
    assert_eq!(BreakerState::Closed.as_gauge(), 0);
    assert_eq!(BreakerState::HalfOpen.as_gauge(), 1);
    assert_eq!(BreakerState::Open.as_gauge(), 2);
    assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
}

#[test]
fn failure_rate_trips_only_after_min_calls() {
    let (mut b, _) = breaker(window_only());
    // 9 failures: 100 % failure rate, but fewer than min_calls (10) outcomes.
    for _ in 0..9 {
        call(&mut b, false, FAST);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.window_len(), 9);
    call(&mut b, false, FAST);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.counters().trips, 1);
    assert_eq!(b.window_len(), 0, "a trip clears the window");
}

#[test]
fn failure_rate_below_threshold_does_not_trip_and_at_threshold_does() {
    let (mut b, _) = breaker(window_only());
    // 40 calls, 2 of every 5 failing: the window of 20 holds 40 % failures.
    for i in 0..40 {
        call(&mut b, i % 5 < 3, FAST);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert!((b.rates().0 - 0.4).abs() < 1e-9);
    // Each further failure replaces a success or a failure; two make it 50 %:
    // the oldest outcomes are success, success (i = 20, 21), so 8 → 9 → 10 failures of 20.
    call(&mut b, false, FAST);
    assert_eq!(b.state(), BreakerState::Closed, "{:?}", b.rates());
    call(&mut b, false, FAST);
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn window_forgets_old_outcomes() {
    let (mut b, _) = breaker(window_only());
    for _ in 0..20 {
        call(&mut b, true, FAST);
    }
    for _ in 0..9 {
        call(&mut b, false, FAST);
    }
    assert_eq!(b.state(), BreakerState::Closed, "9/20 failures");
    assert!((b.rates().0 - 0.45).abs() < 1e-9);
    for _ in 0..20 {
        call(&mut b, true, FAST);
    }
    assert_eq!(b.rates().0, 0.0, "all failures slid out");
    assert_eq!(b.window_len(), 20);
}

#[test]
fn slow_call_rate_trips() {
    let (mut b, _) = breaker(window_only());
    // 8 slow and 2 fast successes: slow rate 80 % at 10 calls.
    for _ in 0..2 {
        call(&mut b, true, FAST);
    }
    for _ in 0..7 {
        call(&mut b, true, SLOW);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    call(&mut b, true, SLOW);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.counters().slow_calls, 8);
    assert_eq!(b.counters().failures, 0);
    // The threshold is inclusive of exactly `slow_call`.
    let (mut b, _) = breaker(window_only());
    for _ in 0..10 {
        call(&mut b, true, Duration::from_secs(2));
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn consecutive_failures_trip_at_once_and_a_success_resets_the_streak() {
    let (mut b, _) = breaker(BreakerOptions::default());
    for _ in 0..4 {
        call(&mut b, false, FAST);
    }
    call(&mut b, true, FAST);
    for _ in 0..4 {
        call(&mut b, false, FAST);
    }
    assert_eq!(b.state(), BreakerState::Closed, "streak was broken");
    call(&mut b, false, FAST);
    assert_eq!(b.state(), BreakerState::Open, "5 in a row, only 10 calls");
    assert_eq!(b.counters().trips, 1);
}

#[test]
fn open_rejects_until_the_wait_elapses() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    assert_eq!(
        b.open_until(),
        Some(Timestamp::ZERO.plus(Duration::from_secs(5)))
    );
    assert_eq!(b.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(b.try_acquire(), Permit::Rejected);
    clock.advance_ms(4_999);
    assert_eq!(b.try_acquire(), Permit::Rejected);
    assert_eq!(b.retry_after(), Some(Duration::from_millis(1)));
    assert_eq!(b.counters().rejected, 2);
    clock.advance_ms(1);
    assert_eq!(b.state(), BreakerState::Open, "moves only when asked");
    assert_eq!(b.try_acquire(), Permit::Probe);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.retry_after(), None);
}

#[test]
fn late_outcomes_while_open_count_but_move_nothing() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    b.on_success(FAST, false);
    b.on_failure(false);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.counters().calls, 7);
    clock.advance_ms(5_000);
    assert_eq!(b.try_acquire(), Permit::Probe);
    // A non-probe call from before the trip finishing while half-open changes nothing.
    b.on_failure(false);
    assert_eq!(b.state(), BreakerState::HalfOpen);
}

#[test]
fn half_open_allows_exactly_n_probes_and_n_successes_close() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    clock.advance_ms(5_000);
    let permits: Vec<Permit> = (0..5).map(|_| b.try_acquire()).collect();
    assert_eq!(
        permits,
        [
            Permit::Probe,
            Permit::Probe,
            Permit::Probe,
            Permit::Rejected,
            Permit::Rejected
        ]
    );
    b.on_success(FAST, true);
    assert_eq!(
        b.try_acquire(),
        Permit::Rejected,
        "3 probes per period, not 3 at a time"
    );
    b.on_success(FAST, true);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    b.on_success(FAST, true);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.try_acquire(), Permit::Allowed);
    assert_eq!(b.counters().probes, 3);
}

#[test]
fn released_probe_frees_its_slot() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    clock.advance_ms(5_000);
    for _ in 0..3 {
        assert_eq!(b.try_acquire(), Permit::Probe);
    }
    assert_eq!(b.try_acquire(), Permit::Rejected);
    b.release_probe();
    assert_eq!(b.try_acquire(), Permit::Probe);
}

#[test]
fn probe_failure_reopens_with_doubled_wait_capped_and_close_resets_it() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    let mut expected = [10u64, 20, 40, 60, 60].into_iter();
    clock.advance_ms(5_000);
    for _ in 0..5 {
        assert_eq!(b.try_acquire(), Permit::Probe);
        b.on_failure(true);
        assert_eq!(b.state(), BreakerState::Open);
        let wait = expected.next().unwrap();
        assert_eq!(b.retry_after(), Some(Duration::from_secs(wait)));
        clock.advance(Duration::from_secs(wait) - Duration::from_millis(1));
        assert_eq!(b.try_acquire(), Permit::Rejected);
        clock.advance_ms(1);
    }
    assert_eq!(b.counters().trips, 6);
    // Close it, then trip again: back to the base wait.
    for _ in 0..3 {
        assert_eq!(b.try_acquire(), Permit::Probe);
        b.on_success(FAST, true);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    trip(&mut b);
    assert_eq!(b.retry_after(), Some(Duration::from_secs(5)));
}

#[test]
fn other_probes_finishing_after_a_probe_failure_move_nothing() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    clock.advance_ms(5_000);
    for _ in 0..3 {
        assert_eq!(b.try_acquire(), Permit::Probe);
    }
    b.on_failure(true);
    b.on_success(FAST, true);
    b.on_failure(true);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.counters().trips, 2, "stale probes do not trip again");
    assert_eq!(b.retry_after(), Some(Duration::from_secs(10)));
}

#[test]
fn failed_health_checks_trip_a_closed_breaker() {
    let (mut b, _) = breaker(BreakerOptions::default());
    for _ in 0..4 {
        b.on_health_check(false);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.rates().0, 1.0, "checks are recorded in the window");
    b.on_health_check(false);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.counters().health_checks, 5);
    assert_eq!(b.counters().health_failures, 5);
    assert_eq!((b.counters().calls, b.counters().failures), (0, 0));
}

#[test]
fn passing_health_check_resets_the_streak_but_not_the_window() {
    let (mut b, _) = breaker(BreakerOptions::default());
    for _ in 0..4 {
        call(&mut b, false, FAST);
    }
    b.on_health_check(true);
    assert_eq!(b.window_len(), 4);
    assert_eq!(b.rates().0, 1.0);
    for _ in 0..4 {
        call(&mut b, false, FAST);
    }
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "streak restarted at the check"
    );
}

#[test]
fn health_checks_while_open() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    // A passing check before the wait ends does nothing.
    clock.advance_ms(3_000);
    b.on_health_check(true);
    assert_eq!(b.state(), BreakerState::Open);
    // A failing check pushes the deadline to now + the current wait (10 s: the next trip's),
    // without counting a trip.
    b.on_health_check(false);
    assert_eq!(b.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(b.counters().trips, 1);
    clock.advance_ms(9_000);
    b.on_health_check(true);
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance_ms(1_000);
    // A passing check past the wait goes half-open with no probe taken.
    b.on_health_check(true);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    for _ in 0..3 {
        assert_eq!(b.try_acquire(), Permit::Probe);
    }
}

#[test]
fn health_checks_while_half_open() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    clock.advance_ms(5_000);
    assert_eq!(b.try_acquire(), Permit::Probe);
    b.on_health_check(true);
    assert_eq!(b.state(), BreakerState::HalfOpen, "checks do not close it");
    b.on_health_check(false);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.retry_after(), Some(Duration::from_secs(10)));
}

#[test]
fn counters_add_up() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    call(&mut b, true, FAST);
    call(&mut b, true, SLOW);
    trip(&mut b);
    assert_eq!(b.try_acquire(), Permit::Rejected);
    clock.advance_ms(5_000);
    assert_eq!(b.try_acquire(), Permit::Probe);
    b.on_success(SLOW, true);
    b.on_health_check(false);
    assert_eq!(
        *b.counters(),
        BreakerCounters {
            trips: 2,
            calls: 8,
            failures: 5,
            slow_calls: 2,
            rejected: 1,
            probes: 1,
            health_checks: 1,
            health_failures: 1,
        }
    );
}

#[test]
fn degenerate_options_are_clamped() {
    let (mut b, clock) = breaker(BreakerOptions {
        window: 0,
        min_calls: 50,
        half_open_probes: 0,
        open_max: Duration::ZERO,
        consecutive_failures: 0,
        ..BreakerOptions::default()
    });
    call(&mut b, false, FAST);
    assert_eq!(b.state(), BreakerState::Open, "window 1, min calls 1");
    assert_eq!(
        b.retry_after(),
        Some(Duration::from_secs(5)),
        "cap below base"
    );
    clock.advance_ms(5_000);
    assert_eq!(b.try_acquire(), Permit::Probe);
    assert_eq!(b.try_acquire(), Permit::Rejected);
    b.on_success(FAST, true);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn lost_probes_are_presumed_gone_after_open_max() {
    let (mut b, clock) = breaker(BreakerOptions::default());
    trip(&mut b);
    clock.advance_ms(5_000);
    for _ in 0..3 {
        assert_eq!(b.try_acquire(), Permit::Probe);
    }
    clock.advance_ms(59_999);
    assert_eq!(b.try_acquire(), Permit::Rejected);
    clock.advance_ms(1);
    // Nothing was reported for 60 s: the three are presumed lost, new probes go through.
    for _ in 0..3 {
        assert_eq!(b.try_acquire(), Permit::Probe);
    }
    assert_eq!(b.try_acquire(), Permit::Rejected);
}

/// One step of the property test's random workload.
#[derive(Debug, Clone)]
enum Step {
    Acquire,
    /// Slow?, stale probe first?
    Succeed(bool, bool),
    /// Stale probe first?
    Fail(bool),
    Release,
    Check(bool),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Acquire),
        3 => (any::<bool>(), any::<bool>()).prop_map(|(s, f)| Step::Succeed(s, f)),
        3 => any::<bool>().prop_map(Step::Fail),
        1 => Just(Step::Release),
        1 => any::<bool>().prop_map(Step::Check),
        2 => (0u64..3_000).prop_map(Step::Advance),
    ]
}

/// Reports one outstanding call of the model: a probe of the current period, or a stale probe
/// from an earlier period (first if `stale_first`), else a closed call.
fn report(
    b: &mut CircuitBreaker<ManualClock>,
    (current, stale, closed): (&mut usize, &mut usize, &mut usize),
    stale_first: bool,
    ok: Option<Duration>,
) {
    let was_probe = if stale_first && *stale > 0 {
        *stale -= 1;
        true
    } else if *current > 0 {
        *current -= 1;
        true
    } else if *stale > 0 {
        *stale -= 1;
        true
    } else if *closed > 0 {
        *closed -= 1;
        false
    } else {
        return;
    };
    match ok {
        Some(latency) => b.on_success(latency, was_probe),
        None => b.on_failure(was_probe),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the workload, callers never hold more than `half_open_probes` probes of one
    /// half-open period, an open breaker never lets a call through, and a closed one never
    /// rejects. (Probes are never outstanding for `open_max` here: it is an hour.)
    #[test]
    fn never_more_than_n_concurrent_probes(
        steps in proptest::collection::vec(step(), 1..300),
        probes in 1usize..5,
    ) {
        let (mut b, clock) = breaker(BreakerOptions {
            half_open_probes: probes,
            min_calls: 4,
            window: 8,
            open_base: Duration::from_secs(1),
            open_max: Duration::from_secs(3_600),
            ..BreakerOptions::default()
        });
        let (mut current, mut stale, mut closed) = (0usize, 0usize, 0usize);
        for s in steps {
            let before = b.state();
            match s {
                Step::Acquire => match b.try_acquire() {
                    Permit::Probe => current += 1,
                    Permit::Allowed => {
                        prop_assert_eq!(before, BreakerState::Closed);
                        closed += 1;
                    }
                    Permit::Rejected => prop_assert_ne!(before, BreakerState::Closed),
                },
                Step::Succeed(slow, stale_first) => {
                    let latency = if slow { SLOW } else { FAST };
                    let held = (&mut current, &mut stale, &mut closed);
                    report(&mut b, held, stale_first, Some(latency));
                }
                Step::Fail(stale_first) => {
                    report(&mut b, (&mut current, &mut stale, &mut closed), stale_first, None);
                }
                Step::Release => {
                    if current > 0 {
                        current -= 1;
                        b.release_probe();
                    }
                }
                Step::Check(ok) => b.on_health_check(ok),
                Step::Advance(ms) => clock.advance_ms(ms),
            }
            if b.state() != BreakerState::HalfOpen {
                // The period ended: its probes still out are stale from now on.
                stale += current;
                current = 0;
            }
            prop_assert!(current <= probes, "{} probes out, limit {}", current, probes);
            if let Inner::HalfOpen { in_flight, succeeded, .. } = b.inner {
                prop_assert!(in_flight + succeeded <= probes);
                prop_assert!(succeeded < probes, "would have closed");
            }
        }
    }
}

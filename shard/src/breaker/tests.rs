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
    // Alternate success/failure starting with a success: after 10 calls, rate = 5/10 = 50 %.
    for i in 0..9 {
        call(&mut b, i % 2 == 1, FAST);
    }
    // 9 calls: 5 successes? i=0 fail... compute exactly below.
    let (rate, _) = b.rates();
    assert!(rate < 0.5 || b.window_len() < 10);
    assert_eq!(b.state(), BreakerState::Closed);
    // Fill to 20 calls at 40 % failures: never trips.
    let (mut b, _) = breaker(window_only());
    for i in 0..40 {
        call(&mut b, i % 5 >= 2, FAST); // 2 of every 5 fail
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert!((b.rates().0 - 0.4).abs() < 1e-9);
    // Two more failures in a row push the window of 20 to 50 %.
    call(&mut b, false, FAST);
    assert_eq!(b.state(), BreakerState::Closed, "{:?}", b.rates());
    call(&mut b, false, FAST);
    assert_eq!(b.state(), BreakerState::Open, "{:?}", b.rates());
}

#[test]
fn window_forgets_old_outcomes() {
    let (mut b, _) = breaker(window_only());
    for _ in 0..9 {
        call(&mut b, false, FAST);
    }
    // 9 failures then 20 successes push the failures out of the window of 20.
    b.on_success(FAST, false);
    // The 10th outcome made the rate 90 %: tripped.
    assert_eq!(b.state(), BreakerState::Open);
    let (mut b, _) = breaker(window_only());
    for _ in 0..20 {
        call(&mut b, true, FAST);
    }
    for _ in 0..9 {
        call(&mut b, false, FAST);
    }
    assert_eq!(b.state(), BreakerState::Closed, "9/20 failures");
    for _ in 0..11 {
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
    assert_eq!(b.open_until(), Some(Timestamp::ZERO.plus(Duration::from_secs(5))));
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
    assert_eq!(b.try_acquire(), Permit::Rejected, "3 probes per period, not 3 at a time");
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
    assert_eq!(b.state(), BreakerState::Closed, "streak restarted at the check");
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
    assert_eq!(b.retry_after(), Some(Duration::from_secs(5)), "cap below base");
    clock.advance_ms(5_000);
    assert_eq!(b.try_acquire(), Permit::Probe);
    assert_eq!(b.try_acquire(), Permit::Rejected);
    b.on_success(FAST, true);
    assert_eq!(b.state(), BreakerState::Closed);
}

/// One step of the property test's random workload.
#[derive(Debug, Clone)]
enum Step {
    Acquire,
    Succeed(bool),
    Fail,
    Release,
    Check(bool),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Acquire),
        3 => any::<bool>().prop_map(Step::Succeed),
        3 => Just(Step::Fail),
        1 => Just(Step::Release),
        1 => any::<bool>().prop_map(Step::Check),
        2 => (0u64..8_000).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens, a half-open period never has more than `half_open_probes` probes
    /// outstanding, the gauge matches the state, and an open breaker never allows a call.
    #[test]
    fn never_more_than_n_probes_in_flight(steps in proptest::collection::vec(step(), 1..300),
                                          probes in 1usize..5) {
        let (mut b, clock) = breaker(BreakerOptions {
            half_open_probes: probes,
            min_calls: 4,
            window: 8,
            ..BreakerOptions::default()
        });
        // Probe permits the model holds (granted in the current half-open period).
        let mut held = 0usize;
        let mut closed_calls = 0usize;
        for s in steps {
            let before = b.state();
            match s {
                Step::Acquire => match b.try_acquire() {
                    Permit::Probe => held += 1,
                    Permit::Allowed => {
                        prop_assert_eq!(before, BreakerState::Closed);
                        closed_calls += 1;
                    }
                    Permit::Rejected => prop_assert_ne!(before, BreakerState::Closed),
                },
                Step::Succeed(slow) => {
                    let latency = if slow { SLOW } else { FAST };
                    if held > 0 {
                        held -= 1;
                        b.on_success(latency, true);
                    } else if closed_calls > 0 {
                        closed_calls -= 1;
                        b.on_success(latency, false);
                    }
                }
                Step::Fail => {
                    if held > 0 {
                        held -= 1;
                        b.on_failure(true);
                    } else if closed_calls > 0 {
                        closed_calls -= 1;
                        b.on_failure(false);
                    }
                }
                Step::Release => {
                    if held > 0 {
                        held -= 1;
                        b.release_probe();
                    }
                }
                Step::Check(ok) => b.on_health_check(ok),
                Step::Advance(ms) => clock.advance_ms(ms),
            }
            // A fresh half-open period starts with no probes granted; stale ones left in the
            // model no longer count against it.
            if b.state() != BreakerState::HalfOpen || before != BreakerState::HalfOpen
                && !matches!(s_is_acquire_probe(&b), true)
            {
                // Reset the model's count when leaving or (re)entering half-open.
                if b.state() != BreakerState::HalfOpen {
                    held = 0;
                }
            }
            if let Inner::HalfOpen { in_flight, succeeded } = b.inner {
                prop_assert!(in_flight <= probes);
                prop_assert!(in_flight + succeeded <= probes);
                prop_assert!(succeeded < probes, "would have closed");
            }
            prop_assert_eq!(b.state().as_gauge(), match b.state() {
                BreakerState::Closed => 0, BreakerState::HalfOpen => 1, BreakerState::Open => 2,
            });
        }
    }
}

/// Helper for the property test's bookkeeping (kept trivial on purpose).
fn s_is_acquire_probe(_b: &CircuitBreaker<ManualClock>) -> bool {
    false
}

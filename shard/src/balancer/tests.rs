//! Tests of the balancer: the peak-EWMA arithmetic with a manual clock, traffic shares in a
//! deterministic discrete-event simulation, and properties of `pick`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;
use crate::clock::ManualClock;
use proptest::prelude::*;

const MS: Duration = Duration::from_millis(1);

fn balancer(weights: &[f64]) -> (Balancer<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let mut b = Balancer::new(BalancerOptions::default(), clock.clone());
    for (i, w) in weights.iter().enumerate() {
        assert_eq!(b.add(&format!("e{i}"), *w), Ok(i));
    }
    (b, clock)
}

fn ms(d: Option<Duration>) -> f64 {
    d.unwrap().as_secs_f64() * 1e3
}

/// Open-loop simulation: one call arrives every `interval`, is sent where `pick` says, and
/// finishes after `latency(endpoint)`. Returns calls per endpoint.
fn simulate(
    b: &mut Balancer<ManualClock>,
    clock: &ManualClock,
    latency: impl Fn(usize) -> Duration,
    interval: Duration,
    calls: usize,
    seed: u64,
) -> Vec<usize> {
    let mut rng = XorShift64::new(seed);
    let mut next = || rng.next_u64();
    let mut counts = vec![0; b.len()];
    let mut in_flight = BinaryHeap::new();
    let mut now = clock.now();
    for _ in 0..calls {
        now = now.plus(interval);
        while let Some(&Reverse((done, i, rtt))) = in_flight.peek() {
            if done > now {
                break;
            }
            in_flight.pop();
            clock.set(done);
            b.finish(i, rtt);
        }
        clock.set(now);
        let i = b.pick(|_| true, &mut next).unwrap();
        b.start(i);
        counts[i] += 1;
        let rtt = latency(i);
        in_flight.push(Reverse((now.plus(rtt), i, rtt)));
    }
    counts
}

fn shares(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    counts.iter().map(|&c| c as f64 / total as f64).collect()
}

#[test]
fn defaults_and_weight_validation() {
    let o = BalancerOptions::default();
    assert_eq!(o.tau, Duration::from_secs(10));
    assert_eq!(o.initial_rtt, Duration::from_millis(50));
    assert_eq!(o.failure_penalty_factor, 5.0);
    assert_eq!(o.penalty_max, Duration::from_secs(10));
    let (mut b, _) = balancer(&[1.0]);
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(b.add("bad", w).is_err(), "{w}");
        assert!(b.set_weight(0, w).is_err(), "{w}");
    }
    assert_eq!(b.len(), 1);
    assert_eq!(b.ewma(0), Some(Duration::from_millis(50)));
    assert_eq!(b.index_of("e0"), Some(0));
    assert_eq!(b.name(0), Some("e0"));
    assert_eq!(b.name(1), None);
    // Unknown indexes are ignored, not a panic.
    b.start(7);
    b.finish(7, MS);
    b.fail(7, MS);
    b.abandon(7);
    assert_eq!(b.cost_ms(7), None);
}

#[test]
fn traffic_splits_by_weight_under_load() {
    // 2:1, equal 50 ms latency, one call per ms (about 50 in flight), 30 000 calls.
    let (mut b, clock) = balancer(&[2.0, 1.0]);
    let counts = simulate(&mut b, &clock, |_| 50 * MS, MS, 30_000, 7);
    let s = shares(&counts);
    assert!((s[0] / (2.0 / 3.0) - 1.0).abs() < 0.05, "{counts:?}");
    assert!((s[1] / (1.0 / 3.0) - 1.0).abs() < 0.05, "{counts:?}");
}

#[test]
fn traffic_splits_by_weight_over_three_endpoints() {
    let (mut b, clock) = balancer(&[1.0, 1.0, 2.0]);
    let counts = simulate(&mut b, &clock, |_| 50 * MS, MS / 2, 30_000, 11);
    let s = shares(&counts);
    for (share, want) in s.iter().zip([0.25, 0.25, 0.5]) {
        assert!((share / want - 1.0).abs() < 0.05, "{counts:?}");
    }
}

#[test]
fn equal_weights_split_evenly_even_with_no_load() {
    let (b, _) = balancer(&[1.0, 1.0]);
    let mut rng = XorShift64::new(3);
    let mut next = || rng.next_u64();
    let mut counts = [0usize; 2];
    for _ in 0..30_000 {
        counts[b.pick(|_| true, &mut next).unwrap()] += 1;
    }
    let s = shares(&counts);
    assert!((s[0] - 0.5).abs() < 0.02, "{counts:?}");
}

#[test]
fn with_no_load_the_heavier_endpoint_takes_every_call() {
    // Weight is capacity: two idle endpoints at equal latency, the larger is cheaper.
    let (b, _) = balancer(&[2.0, 1.0]);
    let mut rng = XorShift64::new(5);
    let mut next = || rng.next_u64();
    assert!((0..1_000).all(|_| b.pick(|_| true, &mut next) == Some(0)));
}

#[test]
fn slow_endpoint_gets_much_less_traffic() {
    let (mut b, clock) = balancer(&[1.0, 1.0]);
    let counts = simulate(
        &mut b,
        &clock,
        |i| if i == 1 { 500 * MS } else { 50 * MS },
        MS,
        30_000,
        13,
    );
    let s = shares(&counts);
    assert!(s[1] < 0.05, "slow endpoint got {counts:?}");
    assert!(b.snapshot()[1].ewma_ms >= 499.0);
}

#[test]
fn peak_ewma_takes_a_spike_at_once_and_decays_over_tau() {
    let (mut b, clock) = balancer(&[1.0]);
    for _ in 0..10 {
        clock.advance_ms(100);
        b.start(0);
        b.finish(0, 50 * MS);
    }
    assert!((ms(b.ewma(0)) - 50.0).abs() < 1e-6);
    b.start(0);
    b.finish(0, 500 * MS);
    assert!((ms(b.ewma(0)) - 500.0).abs() < 1e-6, "peak taken at once");
    // One 50 ms observation exactly τ later: E = 500/e + 50 (1 - 1/e).
    clock.advance(Duration::from_secs(10));
    b.start(0);
    b.finish(0, 50 * MS);
    let e1 = (-1.0f64).exp();
    let want = 500.0 * e1 + 50.0 * (1.0 - e1);
    assert!((ms(b.ewma(0)) - want).abs() < 1e-3, "{:?}", b.ewma(0));
    // A steady stream of 50 ms answers brings it back near 50 ms within about 4 τ.
    for _ in 0..400 {
        clock.advance_ms(100);
        b.start(0);
        b.finish(0, 50 * MS);
    }
    assert!(ms(b.ewma(0)) < 55.0, "{:?}", b.ewma(0));
    assert!(ms(b.ewma(0)) > 50.0);
}

#[test]
fn idle_estimate_relaxes_toward_the_prior_not_below() {
    let (mut b, clock) = balancer(&[1.0, 1.0]);
    b.start(0);
    b.finish(0, 1_050 * MS);
    clock.advance(Duration::from_secs(10));
    // 50 + 1000/e, while the stored EWMA stays as observed.
    let want = 50.0 + 1_000.0 * (-1.0f64).exp();
    assert!((ms(b.estimate(0)) - want).abs() < 1e-3);
    assert!((ms(b.ewma(0)) - 1_050.0).abs() < 1e-6);
    // A fast endpoint below the prior does not drift while idle.
    b.start(1);
    b.finish(1, 5 * MS);
    let fast = b.ewma(1);
    assert!(ms(fast) < 50.0);
    clock.advance(Duration::from_secs(100));
    assert_eq!(b.estimate(1), fast);
}

#[test]
fn outstanding_calls_shift_traffic() {
    let (mut b, _) = balancer(&[1.0, 1.0]);
    let mut rng = XorShift64::new(17);
    let mut next = || rng.next_u64();
    b.start(0);
    assert_eq!(b.cost_ms(0), Some(100.0));
    assert!((0..200).all(|_| b.pick(|_| true, &mut next) == Some(1)));
    // Endpoint 1 with two calls out is now dearer than 0 with one.
    b.start(1);
    b.start(1);
    assert!((0..200).all(|_| b.pick(|_| true, &mut next) == Some(0)));
    b.abandon(1);
    b.abandon(1);
    b.finish(0, 50 * MS);
    let picks: Vec<_> = (0..200).map(|_| b.pick(|_| true, &mut next)).collect();
    assert!(picks.contains(&Some(0)) && picks.contains(&Some(1)));
    assert_eq!(b.outstanding(0), Some(0));
}

#[test]
fn errors_push_traffic_away_and_it_comes_back() {
    let (mut b, clock) = balancer(&[1.0, 1.0]);
    let mut rng = XorShift64::new(19);
    let mut next = || rng.next_u64();
    b.start(1);
    b.fail(1, Duration::ZERO);
    // A fast error is charged 5 × the 50 ms estimate.
    assert!((ms(b.ewma(1)) - 250.0).abs() < 1e-6);
    b.start(1);
    b.fail(1, Duration::from_secs(2));
    assert!(
        (ms(b.ewma(1)) - 2_000.0).abs() < 1e-6,
        "a timeout is charged the timeout"
    );
    for _ in 0..5 {
        b.start(1);
        b.fail(1, Duration::ZERO);
    }
    assert!(
        (ms(b.ewma(1)) - 10_000.0).abs() < 1e-6,
        "capped at penalty_max"
    );
    let snap = b.snapshot()[1];
    assert_eq!((snap.calls, snap.errors, snap.outstanding), (7, 7, 0));
    // Endpoint 0 can have 100 calls out before the failing one is cheaper.
    for _ in 0..100 {
        b.start(0);
    }
    assert!((0..200).all(|_| b.pick(|_| true, &mut next) == Some(0)));
    for _ in 0..100 {
        b.abandon(0);
    }
    // Idle for a minute, the penalty has relaxed to within 10 × 1/e^6 ≈ 25 ms of the prior:
    // with one call out on endpoint 0 the recovered endpoint gets tried again.
    clock.advance(Duration::from_secs(60));
    b.start(0);
    assert_eq!(b.pick(|_| true, &mut next), Some(1));
}

#[test]
fn errors_shift_traffic_under_load() {
    // Endpoint 1 fails every call at once (connection refused): it should get little traffic.
    let (mut b, clock) = balancer(&[1.0, 1.0]);
    let mut rng = XorShift64::new(23);
    let mut next = || rng.next_u64();
    let mut counts = [0usize; 2];
    let mut in_flight = BinaryHeap::new();
    for t in 1..=30_000u64 {
        clock.set(Timestamp::ZERO.plus(MS * t as u32));
        while let Some(&Reverse((done, i))) = in_flight.peek() {
            if done > clock.now() {
                break;
            }
            in_flight.pop();
            b.finish(i, 50 * MS);
        }
        let i = b.pick(|_| true, &mut next).unwrap();
        b.start(i);
        counts[i] += 1;
        if i == 1 {
            b.fail(1, Duration::ZERO);
        } else {
            in_flight.push(Reverse((clock.now().plus(50 * MS), 0usize)));
        }
    }
    assert!(counts[1] < 300, "{counts:?}");
    assert!(
        counts[1] >= 2,
        "a failing endpoint is still retried now and then: {counts:?}"
    );
}

#[test]
fn ineligible_endpoints_are_never_picked() {
    let (b, _) = balancer(&[1.0, 5.0, 1.0, 2.0]);
    let mut rng = XorShift64::new(29);
    let mut next = || rng.next_u64();
    let mut seen = [0usize; 4];
    for _ in 0..5_000 {
        let i = b.pick(|i| i != 1 && i != 3, &mut next).unwrap();
        seen[i] += 1;
    }
    assert_eq!((seen[1], seen[3]), (0, 0));
    assert!(seen[0] > 0 && seen[2] > 0);
}

#[test]
fn one_or_no_eligible_endpoint() {
    let (b, _) = balancer(&[1.0, 1.0, 1.0]);
    let mut rng = XorShift64::new(31);
    let mut next = || rng.next_u64();
    assert!((0..100).all(|_| b.pick(|i| i == 2, &mut next) == Some(2)));
    assert_eq!(b.pick(|_| false, &mut next), None);
    let (empty, _) = balancer(&[]);
    assert!(empty.is_empty());
    assert_eq!(empty.pick(|_| true, &mut next), None);
}

#[test]
fn xorshift_is_deterministic_and_takes_a_zero_seed() {
    let (mut a, mut b) = (XorShift64::new(42), XorShift64::new(42));
    let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
    assert_eq!(xs, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
    let mut z = XorShift64::new(0);
    assert_ne!(z.next_u64(), 0);
    assert!((unit_open0(0) - 2f64.powi(-53)).abs() < 1e-30);
    assert_eq!(unit_open0(u64::MAX), 1.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// `pick` returns an eligible index whenever one exists, and `None` only when none does.
    /// With exactly two eligible endpoints it returns the cheaper one.
    #[test]
    fn pick_returns_an_eligible_endpoint(
        eps in proptest::collection::vec((0.1f64..10.0, 1u64..2_000, 0usize..5), 0..8),
        mask in any::<u8>(),
        seed in any::<u64>(),
        idle_ms in 0u64..60_000,
    ) {
        let clock = ManualClock::new();
        let mut b = Balancer::new(BalancerOptions::default(), clock.clone());
        for (i, (w, rtt, out)) in eps.iter().enumerate() {
            b.add(&i.to_string(), *w).unwrap();
            b.finish(i, Duration::from_millis(*rtt));
            for _ in 0..*out {
                b.start(i);
            }
        }
        clock.advance_ms(idle_ms);
        let eligible = |i: usize| mask & (1 << i) != 0;
        let mut rng = XorShift64::new(seed);
        let mut next = || rng.next_u64();
        let n = (0..eps.len()).filter(|&i| eligible(i)).count();
        for _ in 0..20 {
            match b.pick(eligible, &mut next) {
                None => prop_assert_eq!(n, 0),
                Some(i) => {
                    prop_assert!(i < eps.len() && eligible(i));
                    if n == 2 {
                        let other = (0..eps.len()).find(|&j| j != i && eligible(j)).unwrap();
                        prop_assert!(b.cost_ms(i).unwrap() <= b.cost_ms(other).unwrap());
                    }
                }
            }
        }
    }
}

#[test]
fn retain_keeps_what_was_learned_of_the_endpoints_kept() {
    let clock = ManualClock::new();
    let mut b = Balancer::new(BalancerOptions::default(), clock.clone());
    for name in ["a", "b", "c"] {
        b.add(name, 1.0).unwrap();
    }
    b.start(2);
    b.start(2);
    b.finish(2, Duration::from_millis(300));
    b.retain(|i| i != 1);
    assert_eq!(b.len(), 2);
    assert_eq!((b.name(0), b.name(1)), (Some("a"), Some("c")));
    assert_eq!(b.index_of("c"), Some(1));
    assert_eq!(
        b.outstanding(1),
        Some(1),
        "the call still in flight is kept"
    );
    assert_eq!(b.ewma(1), Some(Duration::from_millis(300)));
    assert_eq!(b.add("d", 2.0).unwrap(), 2);
}

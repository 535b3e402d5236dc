use super::*;
use crate::clock::ManualClock;
use proptest::prelude::*;
use std::sync::Arc;

fn rate(per_second: f64, burst: u32) -> Rate {
    Rate::new(per_second, burst).unwrap()
}

#[test]
fn rates_out_of_range_are_refused() {
    assert!(Rate::new(0.0, 1).is_none());
    assert!(Rate::new(-1.0, 1).is_none());
    assert!(Rate::new(f64::NAN, 1).is_none());
    assert!(Rate::new(MAX_RATE * 2.0, 1).is_none());
    assert!(Rate::new(1.0, 0).is_none());
    assert!(Rate::new(1.0, MAX_BURST + 1).is_none());
    assert_eq!(rate(4.0, 2).interval(), Duration::from_millis(250));
    assert_eq!(rate(0.5, 1).interval(), Duration::from_secs(2));
}

#[test]
fn a_full_bucket_takes_exactly_burst_then_refuses_until_the_next_token() {
    let clock = ManualClock::new();
    let mut users = UserLimits::new(rate(2.0, 3), 10, clock.clone());
    clock.advance_ms(1000);
    let first = users.take("u");
    assert_eq!(
        first,
        Decision {
            allowed: true,
            limit: 3,
            remaining: 2,
            reset: Duration::from_millis(500),
            retry_after: Duration::ZERO,
        }
    );
    assert_eq!(users.take("u").remaining, 1);
    let third = users.take("u");
    assert!(third.allowed);
    assert_eq!(third.remaining, 0);
    assert_eq!(third.reset, Duration::from_millis(1500));
    let refused = users.take("u");
    assert_eq!(
        refused,
        Decision {
            allowed: false,
            limit: 3,
            remaining: 0,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(500),
        }
    );
    // A refused request charged nothing: the next token comes at the same time.
    clock.advance_ms(499);
    assert_eq!(users.take("u").retry_after, Duration::from_millis(1));
    clock.advance_ms(1);
    let refilled = users.take("u");
    assert!(refilled.allowed);
    assert_eq!(refilled.remaining, 0);
    assert!(!users.take("u").allowed);
    // Other users have their own bucket.
    assert_eq!(users.take("v").remaining, 2);
}

#[test]
fn the_bucket_refills_at_the_rate_and_never_beyond_burst() {
    let clock = ManualClock::new();
    let mut users = UserLimits::new(rate(10.0, 5), 10, clock.clone());
    for _ in 0..5 {
        assert!(users.take("u").allowed);
    }
    assert!(!users.take("u").allowed);
    // 1 s at 10/s: 10 tokens offered, 5 kept.
    clock.advance_ms(1000);
    let mut accepted = 0;
    while users.take("u").allowed {
        accepted += 1;
    }
    assert_eq!(accepted, 5);
    // Steady state: one every 100 ms.
    for _ in 0..20 {
        clock.advance_ms(100);
        assert!(users.take("u").allowed);
        assert!(!users.take("u").allowed);
    }
}

#[test]
fn untake_gives_back_exactly_one_token() {
    let clock = ManualClock::new();
    let mut users = UserLimits::new(rate(1.0, 2), 10, clock.clone());
    assert!(users.take("u").allowed);
    assert!(users.take("u").allowed);
    assert!(!users.take("u").allowed);
    users.untake("u");
    assert!(users.take("u").allowed);
    assert!(!users.take("u").allowed);
    // Giving back more than was taken leaves a full bucket, not a bigger one.
    for _ in 0..5 {
        users.untake("u");
    }
    assert_eq!(users.take("u").remaining, 1);
}

#[test]
fn sweeps_drop_idle_users_only_and_a_full_table_stops_tracking() {
    let clock = ManualClock::new();
    let mut users = UserLimits::new(rate(1.0, 2), 2, clock.clone());
    users.take("a");
    clock.advance_ms(500);
    users.take("b");
    assert_eq!(users.len(), 2);
    // Full: "c" is accepted but not tracked (the inline sweep finds nobody idle).
    clock.advance_ms(SWEEP_GAP.as_millis() as u64);
    for _ in 0..5 {
        assert!(users.take("c").allowed);
    }
    assert_eq!(users.counters().untracked, 5);
    // "a" is full again 1 s after its take; "b" not yet.
    clock.advance_ms(400);
    let mut expired = Vec::new();
    assert_eq!(users.sweep(&mut expired), 1);
    assert_eq!(users.len(), 1);
    assert!(expired.is_empty());
    // Room again: "c" is tracked and limited.
    assert!(users.take("c").allowed);
    assert!(users.take("c").allowed);
    assert!(!users.take("c").allowed);
    assert_eq!(users.counters().dropped, 1);
}

#[test]
fn a_full_table_sweeps_by_itself_at_most_every_gap() {
    let clock = ManualClock::new();
    let mut users = UserLimits::new(rate(1000.0, 1), 1, clock.clone());
    users.take("a");
    clock.advance_ms(50);
    // "a" is idle (1 ms to refill) but the last sweep (at 0) is under SWEEP_GAP old.
    users.take("b");
    assert_eq!(users.counters().untracked, 1);
    clock.advance_ms(SWEEP_GAP.as_millis() as u64);
    users.take("b");
    assert_eq!(users.counters().untracked, 1);
    assert_eq!(users.len(), 1);
}

#[test]
fn shared_bucket_takes_exactly_burst_across_threads() {
    let bucket = Arc::new(SharedBucket::new(rate(1.0, 1000)));
    let now = Timestamp(5_000_000_000);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let b = Arc::clone(&bucket);
            std::thread::spawn(move || (0..1000).filter(|_| b.take(now).allowed).count())
        })
        .collect();
    let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(accepted, 1000);
    assert_eq!(bucket.available(now), 0);
    bucket.untake();
    assert_eq!(bucket.available(now), 1);
    // One second later: one more token.
    assert!(bucket.take(Timestamp(now.0 + 1_000_000_000)).allowed);
    assert!(bucket.take(Timestamp(now.0 + 1_000_000_000)).allowed);
    assert!(!bucket.take(Timestamp(now.0 + 1_000_000_000)).allowed);
}

#[test]
fn shared_bucket_with_advancing_time_accepts_burst_plus_rate() {
    // 4 threads, each reading "now" from its own position of a 2 s schedule.
    let bucket = Arc::new(SharedBucket::new(rate(100.0, 10)));
    let handles: Vec<_> = (0..4u64)
        .map(|k| {
            let b = Arc::clone(&bucket);
            std::thread::spawn(move || {
                (0..2000u64)
                    .filter(|i| b.take(Timestamp(i * 1_000_000 + k)).allowed)
                    .count()
            })
        })
        .collect();
    let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Over [0, 2 s): at most 10 + 2 s × 100/s; threads racing ahead only lose tokens.
    assert!(accepted <= 10 + 200, "{accepted}");
    assert!(accepted >= 150, "{accepted}");
}

#[test]
fn grants_spend_locally_refuse_until_the_store_has_a_token_and_expire() {
    let r = rate(10.0, 20);
    let ttl = Duration::from_secs(1);
    let mut g = Grant::default();
    let t = |ms: u64| Timestamp(ms * 1_000_000);
    assert_eq!(g.spend(&r, t(0)), Spend::Empty { expired: 0 });
    // The store granted 3 and its TAT is now 300 ms ahead: 17 left there.
    g.fill(&r, t(0), 3, Duration::from_millis(300), ttl);
    match g.spend(&r, t(0)) {
        Spend::Spent(d) => {
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 + 17);
            assert_eq!(d.reset, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(g.spend(&r, t(1)), Spend::Spent(_)));
    g.give_back();
    assert_eq!(g.tokens(), 2);
    // Past the TTL the tokens go back.
    assert_eq!(g.spend(&r, t(1000)), Spend::Empty { expired: 2 });
    // The store is empty: its TAT is 2 s ahead (τ) and the next token comes in 100 ms.
    g.fill(&r, t(1000), 0, Duration::from_millis(2000), ttl);
    match g.spend(&r, t(1050)) {
        Spend::Denied(d) => {
            assert!(!d.allowed);
            assert_eq!(d.remaining, 0);
            assert_eq!(d.retry_after, Duration::from_millis(50));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(g.spend(&r, t(1100)), Spend::Empty { expired: 0 });
}

#[test]
fn user_grants_live_in_the_table_and_sweeps_return_expired_tokens() {
    let clock = ManualClock::new();
    let mut users = UserLimits::new(rate(10.0, 10), 10, clock.clone());
    assert_eq!(users.spend("u"), Spend::Empty { expired: 0 });
    users.fill("u", 4, Duration::from_millis(400), Duration::from_secs(1));
    assert!(matches!(users.spend("u"), Spend::Spent(_)));
    users.give_back("u");
    let mut expired = Vec::new();
    assert_eq!(users.sweep(&mut expired), 0);
    assert!(expired.is_empty());
    clock.advance_ms(1000);
    assert_eq!(users.sweep(&mut expired), 1);
    assert_eq!(expired, vec![(Box::from("u"), 4)]);
    assert!(users.is_empty());
}

/// A token bucket counted in nanosecond credits: the definition GCRA must match.
struct Reference {
    credit: u64,
    last: u64,
    cost: u64,
    capacity: u64,
}

impl Reference {
    fn take(&mut self, now: u64) -> bool {
        self.credit = (self.credit + (now - self.last)).min(self.capacity);
        self.last = now;
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every decision equals a plain token bucket's, and over any stretch of the arrivals
    /// the accepted requests never exceed burst + rate × length.
    #[test]
    fn gcra_is_a_token_bucket(
        per_second in 1u32..2000,
        burst in 1u32..50,
        gaps in proptest::collection::vec(0u64..20_000_000, 1..400),
    ) {
        let r = rate(f64::from(per_second), burst);
        let mut reference = Reference {
            credit: r.tolerance(),
            last: 0,
            cost: r.interval_ns,
            capacity: r.tolerance(),
        };
        let mut tat = 0;
        let mut now = 0;
        let mut accepted_at = Vec::new();
        for gap in gaps {
            now += gap;
            let (d, next) = r.take(tat, now);
            prop_assert_eq!(d.allowed, reference.take(now));
            if d.allowed {
                accepted_at.push(now);
                prop_assert_eq!(d.remaining, r.available(next, now));
            } else {
                // Exactly when the next one would pass.
                let later = now + d.retry_after.as_nanos() as u64;
                prop_assert!(r.take(tat, later).0.allowed);
                prop_assert!(!r.take(tat, later - 1).0.allowed);
            }
            tat = next;
        }
        for (i, &a) in accepted_at.iter().enumerate() {
            for (j, &b) in accepted_at.iter().enumerate().skip(i) {
                let n = (j - i + 1) as u64;
                prop_assert!(n <= u64::from(burst) + (b - a) / r.interval_ns);
            }
        }
    }
}

#[test]
fn a_new_rate_keeps_the_tokens_clamped_to_the_new_burst() {
    let clock = ManualClock::new();
    clock.advance_ms(10_000);
    let mut users = UserLimits::new(rate(1.0, 10), 10, clock.clone());
    for _ in 0..4 {
        assert!(users.take("u").allowed);
    }
    // 6 tokens left; the full user "idle" has 10.
    assert_eq!(users.take("idle").remaining, 9);
    users.untake("idle");
    // Tighter: burst 3, 2 per second. Both hold 3 (clamped), refilling every 500 ms.
    users.set_rate(rate(2.0, 3));
    assert_eq!(users.rate().burst(), 3);
    for _ in 0..3 {
        assert!(users.take("u").allowed);
    }
    let refused = users.take("u");
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Duration::from_millis(500));
    clock.advance_ms(500);
    assert!(users.take("u").allowed);
    assert!(!users.take("u").allowed);
    // Looser: burst 100. "u" keeps its 0 tokens (no free refill), refills at 100/s.
    users.set_rate(rate(100.0, 100));
    let d = users.take("u");
    assert!(!d.allowed, "no token was added by the change");
    clock.advance_ms(10);
    assert!(users.take("u").allowed);
    // A never-seen user gets the new full bucket.
    assert_eq!(users.take("new").remaining, 99);
}

#[test]
fn a_shared_bucket_changes_rate_in_place() {
    let bucket = SharedBucket::new(rate(1.0, 10));
    let now = Timestamp(100_000_000_000);
    for _ in 0..7 {
        assert!(bucket.take(now).allowed);
    }
    assert_eq!(bucket.available(now), 3);
    bucket.set_rate(rate(10.0, 2), now);
    assert_eq!(bucket.rate().burst(), 2);
    assert_eq!(bucket.available(now), 2);
    assert!(bucket.take(now).allowed);
    assert!(bucket.take(now).allowed);
    assert!(!bucket.take(now).allowed);
    // The new pace: one token 100 ms later.
    assert!(bucket.take(Timestamp(now.0 + 100_000_000)).allowed);
    // A full bucket stays full under a bigger burst.
    let full = SharedBucket::new(rate(1.0, 1));
    full.set_rate(rate(5.0, 5), now);
    assert_eq!(full.available(now), 5);
}

proptest! {
    /// Rescaling never creates tokens beyond what the bucket held, nor beyond the new burst.
    #[test]
    fn rescale_keeps_tokens(
        used_ms in 0u64..20_000,
        a in 1u32..50, b in 1u32..50,
        ra in 1u32..100, rb in 1u32..100,
    ) {
        let (from, to) = (rate(f64::from(ra), a), rate(f64::from(rb), b));
        let now = 1_000_000_000_000u64;
        let tat = now + used_ms * 1_000_000;
        let before = from.available(tat, now);
        let after = to.available(from.rescale(tat, now, &to), now);
        prop_assert_eq!(after, before.min(b));
    }
}

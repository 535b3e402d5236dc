//! Micro-benchmarks of the rate-limit buckets, hand-rolled (no harness): ns per decision for a
//! user's bucket in a shard's table, for the global bucket alone, and for the global bucket
//! with 2 threads hammering the same atomic (the cross-core case). Generous limits, so every
//! decision is an accept that moves the state. `RUNS` (default 5; medians) and `OPS` (default
//! 2 000 000 per run) come from the environment. Results: `bench/RESULTS.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use atlas_shard::{Clock, MonotonicClock, Rate, SharedBucket, UserLimits};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs = env("RUNS", 5);
    let ops = env("OPS", 2_000_000);
    let generous = Rate::new(1_000_000.0, 1_000_000).unwrap();

    let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let per_user = median(
        (0..runs)
            .map(|_| {
                let mut table = UserLimits::new(generous, 100_000, MonotonicClock::new());
                let t = Instant::now();
                for i in 0..ops {
                    black_box(table.take(&users[i % users.len()]));
                }
                t.elapsed().as_nanos() as f64 / ops as f64
            })
            .collect(),
    );

    let clock = MonotonicClock::new();
    let alone = median(
        (0..runs)
            .map(|_| {
                let bucket = SharedBucket::new(generous);
                let t = Instant::now();
                for _ in 0..ops {
                    black_box(bucket.take(clock.now()));
                }
                t.elapsed().as_nanos() as f64 / ops as f64
            })
            .collect(),
    );

    let contended = median(
        (0..runs)
            .map(|_| {
                let bucket = Arc::new(SharedBucket::new(generous));
                let barrier = Arc::new(Barrier::new(2));
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        let (bucket, barrier) = (Arc::clone(&bucket), Arc::clone(&barrier));
                        std::thread::spawn(move || {
                            barrier.wait();
                            let t = Instant::now();
                            for _ in 0..ops {
                                black_box(bucket.take(clock.now()));
                            }
                            t.elapsed().as_nanos() as f64 / ops as f64
                        })
                    })
                    .collect();
                let per: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
                per.iter().sum::<f64>() / per.len() as f64
            })
            .collect(),
    );

    println!("rate limits, ns per decision (median of {runs} runs of {ops}; clock read included)");
    println!("user bucket, 10 000 users in one shard's table: {per_user:.1}");
    println!("global bucket, one thread:                      {alone:.1}");
    println!("global bucket, 2 threads on one atomic:         {contended:.1}");
}

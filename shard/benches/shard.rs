//! Micro-benchmarks of `atlas-shard`, hand-rolled (no harness): cache get/insert ns/op at 1 M
//! entries against `quick_cache::unsync`, per-entry memory overhead (counting allocator),
//! hit ratios on a Zipf(0.99) trace (S3-FIFO vs LRU vs quick_cache), and batch-queue cost per
//! request. Results and the command line are recorded in `bench/RESULTS.md`.
//!
//! Sizes come from the environment so CI can compile and smoke-run it cheaply:
//! `ZIPF_KEYS` (default 10 000 000), `ZIPF_REQUESTS` (default 20 000 000), `ENTRIES`
//! (default 1 000 000), `RUNS` (default 5; medians are reported).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use atlas_shard::{
    BatchOptions, BatchQueues, Cache, CacheKey, CacheOptions, EntryMeta, Lookup, MonotonicClock,
    Operation, PolicyKind, Poll, Priority, QueueKey,
};
use bytes::Bytes;

/// Counts live heap bytes, to measure per-entry overhead.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BODY: usize = 64;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic and cheap.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` samples of Zipf(s) over `keys` keys (rank 0 most popular), ranks scattered by a
/// permutation so popularity is not correlated with key bytes.
fn zipf_trace(keys: usize, n: usize, s: f64, seed: u64) -> Vec<u32> {
    let mut cdf = Vec::with_capacity(keys);
    let mut acc = 0.0;
    for r in 1..=keys {
        acc += 1.0 / (r as f64).powf(s);
        cdf.push(acc);
    }
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let u = rng.unit() * acc;
            let r = cdf.partition_point(|c| *c < u).min(keys - 1) as u64;
            ((r.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7) % keys as u64) as u32
        })
        .collect()
}

fn key_of(i: u32) -> CacheKey {
    CacheKey::new(
        Operation::PortfolioAnalysis,
        Some("user-000042"),
        format!("{{\"k\":{i:010}}}").as_bytes(),
    )
    .unwrap()
}

fn meta() -> EntryMeta {
    EntryMeta {
        ttl: Duration::from_secs(3600),
        ..EntryMeta::default()
    }
}

fn body() -> Bytes {
    Bytes::from(vec![7u8; BODY])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn atlas_cache(entries: usize, policy: PolicyKind) -> Cache<MonotonicClock> {
    let per = Cache::<MonotonicClock>::charge_of(&key_of(0), BODY, &meta());
    let opts = CacheOptions {
        policy,
        ..CacheOptions::with_max_bytes(per * entries)
    };
    Cache::new(opts, MonotonicClock::new())
}

fn hit_ratios(keys: usize, requests: usize) {
    let cap = (keys / 100).max(1);
    let t = Instant::now();
    let trace = zipf_trace(keys, requests, 0.99, 42);
    eprintln!("trace generated in {:?}", t.elapsed());
    // Pre-build keys for the whole key space lazily: build per request (same for all).
    for policy in [PolicyKind::S3Fifo, PolicyKind::Lru] {
        let t = Instant::now();
        let mut c = atlas_cache(cap, policy);
        let b = body();
        let mut hits = 0u64;
        for &k in &trace {
            let key = key_of(k);
            match c.get(&key) {
                Lookup::Fresh(_) => hits += 1,
                _ => {
                    c.insert(&key, b.clone(), &meta()).unwrap();
                }
            }
        }
        println!(
            "hit_ratio policy={policy:?} keys={keys} requests={requests} capacity={cap} entries={} ratio={:.4} ({:?})",
            c.len(),
            hits as f64 / requests as f64,
            t.elapsed()
        );
    }
    let t = Instant::now();
    let mut q: quick_cache::unsync::Cache<Box<[u8]>, Bytes> = quick_cache::unsync::Cache::new(cap);
    let b = body();
    let mut hits = 0u64;
    for &k in &trace {
        let key = key_of(k);
        if q.get(key.bytes()).is_some() {
            hits += 1;
        } else {
            q.insert(key.bytes().into(), b.clone());
        }
    }
    println!(
        "hit_ratio policy=quick_cache keys={keys} requests={requests} capacity={cap} entries={} ratio={:.4} ({:?})",
        q.len(),
        hits as f64 / requests as f64,
        t.elapsed()
    );
}

fn ns_per_op(entries: usize, runs: usize) {
    let keys: Vec<CacheKey> = (0..entries as u32).map(key_of).collect();
    let fresh: Vec<CacheKey> = (entries as u32..2 * entries as u32).map(key_of).collect();
    let mut rng = Rng(7);
    let order: Vec<usize> = (0..entries)
        .map(|_| (rng.next() % entries as u64) as usize)
        .collect();
    let b = body();

    // Memory overhead: live heap growth minus key and body bytes, after one hit per entry
    // (which allocates Bytes' shared header).
    let before = LIVE.load(Ordering::Relaxed);
    let mut c = atlas_cache(entries, PolicyKind::S3Fifo);
    for k in &keys {
        c.insert(k, b.clone(), &meta()).unwrap();
        black_box(c.get(k));
    }
    let heap = (LIVE.load(Ordering::Relaxed) - before) as f64;
    let payload: usize = keys.iter().map(|k| k.bytes().len() + BODY).sum();
    println!(
        "memory atlas entries={} heap_per_entry={:.1} overhead_per_entry={:.1} (key {} B, body {BODY} B) accounted_charge={}",
        c.len(),
        heap / entries as f64,
        (heap - payload as f64) / entries as f64,
        keys[0].bytes().len(),
        Cache::<MonotonicClock>::charge_of(&keys[0], BODY, &meta()),
    );
    let before = LIVE.load(Ordering::Relaxed);
    let mut q: quick_cache::unsync::Cache<Box<[u8]>, Bytes> =
        quick_cache::unsync::Cache::new(entries);
    for k in &keys {
        // A distinct body per entry, as in the Atlas cache (no shared refcount line).
        q.insert(k.bytes().into(), body());
        black_box(q.get(k.bytes()).cloned());
    }
    let heap = (LIVE.load(Ordering::Relaxed) - before) as f64;
    println!(
        "memory quick_cache entries={} heap_per_entry={:.1} overhead_per_entry={:.1}",
        q.len(),
        heap / entries as f64,
        (heap - payload as f64) / entries as f64
    );

    let time = |name: &str, f: &mut dyn FnMut() -> usize| {
        let v: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let n = f();
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .collect();
        println!(
            "{name} median_ns_per_op={:.1} runs={runs} all={v:.1?}",
            median(v.clone())
        );
    };
    let clock = MonotonicClock::new();
    time("clock_now (MonotonicClock::now)", &mut || {
        for _ in 0..order.len() {
            black_box(atlas_shard::Clock::now(&clock));
        }
        order.len()
    });
    time("get_hit atlas", &mut || {
        for &i in &order {
            black_box(c.get(&keys[i]));
        }
        order.len()
    });
    time("get_hit quick_cache", &mut || {
        for &i in &order {
            black_box(q.get(keys[i].bytes()).cloned());
        }
        order.len()
    });
    time("get_miss atlas", &mut || {
        for &i in &order {
            black_box(c.get(&fresh[i]));
        }
        order.len()
    });
    time("get_miss quick_cache", &mut || {
        for &i in &order {
            black_box(q.get(fresh[i].bytes()).cloned());
        }
        order.len()
    });
    let mut turn = 0usize;
    time("insert_evict atlas", &mut || {
        let src = if turn % 2 == 0 { &fresh } else { &keys };
        turn += 1;
        for k in src.iter().take(entries / 4) {
            black_box(c.insert(k, b.clone(), &meta()).unwrap());
        }
        entries / 4
    });
    let mut turn = 0usize;
    time("insert_evict quick_cache", &mut || {
        let src = if turn % 2 == 0 { &fresh } else { &keys };
        turn += 1;
        for k in src.iter().take(entries / 4) {
            q.insert(k.bytes().into(), Bytes::copy_from_slice(&b));
        }
        entries / 4
    });
    println!(
        "after inserts: atlas evictions={} len={}",
        c.counters().evictions,
        c.len()
    );
}

fn batch_cost(runs: usize) {
    let n = 1_000_000usize;
    let key = QueueKey {
        op: Operation::BudgetOptimization,
        class: 0,
    };
    let mut times_full = Vec::new();
    let mut times_idle = Vec::new();
    for _ in 0..runs {
        let mut q: BatchQueues<MonotonicClock, u64> =
            BatchQueues::new(BatchOptions::default(), MonotonicClock::new());
        let mut out = Poll::default();
        // Under load: 32 pushes, then one poll flushes a full batch.
        let t = Instant::now();
        for i in 0..n as u64 {
            q.push(key, Priority::Normal, None, i).unwrap();
            if i % 32 == 31 {
                q.poll(|_| false, &mut out);
                black_box(&out);
                out.batches.clear();
            }
        }
        times_full.push(t.elapsed().as_nanos() as f64 / n as f64);
        // Idle endpoint: every push is polled out alone.
        let t = Instant::now();
        for i in 0..n as u64 {
            q.push(key, Priority::Normal, None, i).unwrap();
            q.poll(|_| true, &mut out);
            black_box(&out);
            out.batches.clear();
        }
        times_idle.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!(
        "batch push+poll, full batches of 32: median_ns_per_request={:.1} all={times_full:.1?}",
        median(times_full.clone())
    );
    println!("batch push+poll, lone request on idle endpoint: median_ns_per_request={:.1} all={times_idle:.1?}", median(times_idle.clone()));
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that cheap.
    let quick = std::env::args().any(|a| a == "--test") || std::env::var("QUICK").is_ok();
    let runs = env("RUNS", if quick { 1 } else { 5 });
    let what = std::env::var("WHAT").unwrap_or_else(|_| "all".into());
    if what == "all" || what == "batch" {
        batch_cost(runs);
    }
    if what == "all" || what == "ops" {
        ns_per_op(env("ENTRIES", if quick { 10_000 } else { 1_000_000 }), runs);
    }
    if what == "all" || what == "zipf" {
        hit_ratios(
            env("ZIPF_KEYS", if quick { 100_000 } else { 10_000_000 }),
            env("ZIPF_REQUESTS", if quick { 200_000 } else { 20_000_000 }),
        );
    }
}

//! Tests of the L1 cache: every rule with a manual clock, and the properties.

use super::*;
use crate::clock::ManualClock;
use proptest::prelude::*;

fn key(user: Option<&str>, input: &str) -> CacheKey {
    CacheKey::new(Operation::BudgetOptimization, user, input.as_bytes()).unwrap()
}

fn meta(ttl_s: u64, swr_s: u64, sie_s: u64) -> EntryMeta {
    EntryMeta {
        ttl: Duration::from_secs(ttl_s),
        stale_while_revalidate: Duration::from_secs(swr_s),
        stale_if_error: Duration::from_secs(sie_s),
        confidence: 0.9,
        volatility: 0.1,
        ..EntryMeta::default()
    }
}

fn cache(max: usize, policy: PolicyKind) -> (Cache<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let opts = CacheOptions {
        max_entry_bytes: max,
        policy,
        ..CacheOptions::with_max_bytes(max)
    };
    (Cache::new(opts, clock.clone()), clock)
}

fn body(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn fresh_stale_stale_if_error_then_miss() {
    let (mut c, clock) = cache(1 << 20, PolicyKind::S3Fifo);
    let k = key(Some("u1"), "a");
    c.insert(&k, body("result"), &meta(10, 5, 20)).unwrap();
    match c.get(&k) {
        Lookup::Fresh(h) => {
            assert_eq!(&h.body[..], b"result");
            assert_eq!(h.hits, 1);
        }
        other => panic!("{other:?}"),
    }
    clock.advance_ms(9_999);
    assert!(matches!(c.get(&k), Lookup::Fresh(_)));
    clock.advance_ms(1);
    assert!(matches!(c.get(&k), Lookup::Stale(_)));
    clock.advance_ms(5_000);
    let Lookup::StaleIfError(h) = c.get(&k) else {
        panic!()
    };
    assert_eq!(&h.body[..], b"result");
    clock.advance_ms(15_000);
    assert_eq!(c.get(&k), Lookup::Miss);
    assert!(c.is_empty());
    assert_eq!(c.bytes_used(), 0);
    let s = c.counters();
    assert_eq!(
        (s.hits, s.stale_hits, s.stale_if_error, s.expirations),
        (2, 1, 1, 1)
    );
    assert_eq!(s.misses, 2);
}

#[test]
fn body_is_byte_identical_and_not_copied_on_hit() {
    let (mut c, _) = cache(1 << 20, PolicyKind::Lru);
    let k = key(None, "x");
    c.insert(&k, body("{\"a\": 1}"), &meta(10, 0, 0)).unwrap();
    let Lookup::Fresh(h1) = c.get(&k) else {
        panic!()
    };
    let Lookup::Fresh(h2) = c.get(&k) else {
        panic!()
    };
    assert_eq!(&h1.body[..], b"{\"a\": 1}");
    assert_eq!(
        h1.body.as_ptr(),
        h2.body.as_ptr(),
        "hits share the stored buffer"
    );
}

#[test]
fn collision_never_returns_another_requests_result() {
    let (mut c, _) = cache(1 << 20, PolicyKind::S3Fifo);
    let a = key(Some("u1"), "a");
    c.insert(&a, body("for a"), &meta(10, 0, 0)).unwrap();
    // Forge a key with a's hash but different bytes (a 64-bit collision).
    let forged = CacheKey::with_forged_hash(a.hash(), key(Some("u2"), "a").bytes());
    assert_eq!(c.get(&forged), Lookup::Miss);
    assert_eq!(c.counters().collisions, 1);
    assert!(!c.invalidate_key(&forged));
    assert!(matches!(c.get(&a), Lookup::Fresh(h) if &h.body[..] == b"for a"));
    // (A real colliding insert replaces a: the map holds one entry per hash. Not testable
    // with a forged hash, since removal rehashes the stored key bytes.)
    c.check_invariants();
}

#[test]
fn replace_updates_accounting() {
    let (mut c, _) = cache(1 << 20, PolicyKind::S3Fifo);
    let k = key(None, "k");
    c.insert(&k, body("short"), &meta(10, 0, 0).with_tags(["t1"]))
        .unwrap();
    c.insert(
        &k,
        body("a much longer body"),
        &meta(10, 0, 0).with_tags(["t2"]),
    )
    .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c.invalidate_tag("t1"), 0);
    assert_eq!(c.counters().replaced, 1);
    c.check_invariants();
    assert_eq!(c.invalidate_tag("t2"), 1);
    assert_eq!(c.bytes_used(), 0);
}

#[test]
fn budget_is_kept_by_evicting() {
    for policy in [PolicyKind::Lru, PolicyKind::S3Fifo] {
        let k0 = key(None, "000");
        let per = Cache::<ManualClock>::charge_of(&k0, 100, &meta(10, 0, 0));
        let (mut c, _) = cache(per * 10, policy);
        for i in 0..100 {
            let k = key(None, &format!("{i:03}"));
            c.insert(&k, Bytes::from(vec![0u8; 100]), &meta(10, 0, 0))
                .unwrap();
            assert!(c.bytes_used() <= per * 10);
        }
        assert_eq!(c.len(), 10);
        assert_eq!(c.counters().evictions, 90);
        c.check_invariants();
    }
}

#[test]
fn lru_keeps_recently_used() {
    let k0 = key(None, "0");
    let per = Cache::<ManualClock>::charge_of(&k0, 1, &meta(10, 0, 0));
    let (mut c, _) = cache(per * 3, PolicyKind::Lru);
    let ks: Vec<_> = (0..4).map(|i| key(None, &i.to_string())).collect();
    for k in &ks[..3] {
        c.insert(k, body("v"), &meta(10, 0, 0)).unwrap();
    }
    c.get(&ks[0]);
    c.insert(&ks[3], body("v"), &meta(10, 0, 0)).unwrap();
    assert!(matches!(c.get(&ks[0]), Lookup::Fresh(_)));
    assert_eq!(c.get(&ks[1]), Lookup::Miss);
}

#[test]
fn too_large_is_refused_and_removes_older_version() {
    let clock = ManualClock::new();
    let mut c = Cache::new(CacheOptions::with_max_bytes(100_000), clock);
    let k = key(None, "big");
    c.insert(&k, body("small"), &meta(10, 0, 0)).unwrap();
    let err = c
        .insert(&k, Bytes::from(vec![0u8; 20_000]), &meta(10, 0, 0))
        .unwrap_err();
    assert!(matches!(err, InsertError::TooLarge { max: 12_500, .. }));
    assert_eq!(c.get(&k), Lookup::Miss);
    assert_eq!(c.counters().too_large, 1);
}

#[test]
fn invalidation_by_tag_symbol_user_operation_key() {
    let (mut c, _) = cache(1 << 20, PolicyKind::S3Fifo);
    let m = || meta(100, 0, 0);
    let a = key(Some("42"), "a");
    let b = key(Some("42"), "b");
    let p = CacheKey::new(Operation::PortfolioAnalysis, Some("7"), b"p").unwrap();
    let q = CacheKey::new(Operation::PortfolioAnalysis, None, b"q").unwrap();
    c.insert(&a, body("a"), &m().with_tags(["user:42:transactions"]))
        .unwrap();
    c.insert(&b, body("b"), &m().with_tags(["user:42:goals"]))
        .unwrap();
    c.insert(&p, body("p"), &m().with_symbols(["AAPL", "MSFT"]))
        .unwrap();
    c.insert(&q, body("q"), &m().with_symbols(["MSFT"]))
        .unwrap();
    assert_eq!(c.indexed_names(), (2, 2, 2));

    assert_eq!(c.invalidate_tag("user:42:transactions"), 1);
    assert_eq!(c.get(&a), Lookup::Miss);
    assert!(matches!(c.get(&b), Lookup::Fresh(_)));
    assert_eq!(c.invalidate_tag("nobody"), 0);

    assert_eq!(c.invalidate_symbols(&["AAPL"]), 1);
    assert_eq!(c.get(&p), Lookup::Miss);
    c.insert(&p, body("p"), &m().with_symbols(["AAPL", "MSFT"]))
        .unwrap();
    assert_eq!(c.invalidate_symbols(&["MSFT", "AAPL"]), 2);

    c.insert(&p, body("p"), &m()).unwrap();
    c.insert(&q, body("q"), &m()).unwrap();
    assert_eq!(c.invalidate_user("42"), 1);
    assert_eq!(c.get(&b), Lookup::Miss);
    c.insert(&a, body("a"), &m()).unwrap();
    assert_eq!(c.invalidate_operation(Operation::PortfolioAnalysis), 2);
    assert!(matches!(c.get(&a), Lookup::Fresh(_)));
    assert!(c.invalidate_key(&a));
    assert!(!c.invalidate_key(&a));
    assert!(c.is_empty());
    assert_eq!(c.indexed_names(), (0, 0, 0));
    assert_eq!(c.counters().invalidations, 8);
    c.check_invariants();
    assert_eq!(c.bytes_used(), 0);
}

#[test]
fn added_tags_are_charged_indexed_and_invalidate() {
    let (mut c, clock) = cache(1 << 20, PolicyKind::S3Fifo);
    let k = key(Some("42"), "a");
    c.insert(&k, body("a"), &meta(100, 0, 0).with_tags(["first"]))
        .unwrap();
    let before = c.bytes_used();
    clock.advance_ms(5_000);
    assert_eq!(c.add_tags(&k, &["first", "second", "second"]), 1);
    assert_eq!(
        c.bytes_used() - before,
        2 * "second".len() + Index::BYTES_PER_DEP
    );
    assert_eq!(c.tags_of(&k), vec!["first", "second"]);
    // Age and hits are kept: the entry was not re-inserted.
    let Lookup::Fresh(h) = c.get(&k) else {
        panic!()
    };
    assert_eq!((h.age, h.hits), (Duration::from_secs(5), 1));
    assert_eq!(c.add_tags(&k, &["second"]), 0);
    assert_eq!(c.add_tags(&key(Some("42"), "absent"), &["x"]), 0);
    c.check_invariants();
    assert_eq!(c.invalidate_tag("second"), 1);
    assert!(c.is_empty());
    assert_eq!(c.bytes_used(), 0);
    c.check_invariants();
}

#[test]
fn adding_tags_past_the_entry_limit_removes_the_entry() {
    let clock = ManualClock::new();
    let opts = CacheOptions {
        max_entry_bytes: 1_000,
        ..CacheOptions::with_max_bytes(1 << 20)
    };
    let mut c = Cache::new(opts, clock);
    let k = key(None, "a");
    c.insert(&k, body("a"), &meta(100, 0, 0)).unwrap();
    let long = "t".repeat(600);
    assert_eq!(c.add_tags(&k, &[long.as_str()]), 0);
    assert_eq!(c.get(&k), Lookup::Miss);
    assert_eq!(c.counters().too_large, 1);
    assert_eq!(c.bytes_used(), 0);
    c.check_invariants();
}

#[test]
fn refresh_ahead_reports_hot_entries_near_expiry_once() {
    let (mut c, clock) = cache(1 << 20, PolicyKind::S3Fifo);
    let hot = key(None, "hot");
    let cold = key(None, "cold");
    let warm = EntryMeta {
        refresh_ahead: true,
        ..meta(100, 10, 0)
    };
    c.insert(&hot, body("h"), &warm).unwrap();
    c.insert(&cold, body("c"), &warm).unwrap();
    c.get(&hot);
    c.get(&hot);
    c.get(&cold);
    clock.advance_ms(89_000);
    // Not yet in the last 10 %.
    assert!(matches!(c.get(&cold), Lookup::Fresh(h) if !h.refresh_ahead));
    clock.advance_ms(1_000);
    assert!(matches!(c.get(&hot), Lookup::Fresh(h) if h.refresh_ahead));
    assert!(
        matches!(c.get(&hot), Lookup::Fresh(h) if !h.refresh_ahead),
        "reported once"
    );
    // cold has 2 reads: below min_hits (3) even in the window.
    let mut out = Vec::new();
    c.sweep(100, &mut out);
    assert!(out.is_empty());
    // Its third read happens before the window: the sweep, not a get, reports it.
    let cold2 = key(None, "cold2");
    c.insert(&cold2, body("c"), &warm).unwrap();
    for _ in 0..3 {
        c.get(&cold2);
    }
    clock.advance_ms(95_000);
    // hot and cold are past TTL + windows by now: the same sweep removes them.
    assert_eq!(c.sweep(100, &mut out), 2);
    assert_eq!(out, vec![cold2.clone()]);
    out.clear();
    c.sweep(100, &mut out);
    assert!(out.is_empty());
    // Entries without warm-up are never reported.
    let plain = key(None, "plain");
    c.insert(&plain, body("p"), &meta(10, 0, 0)).unwrap();
    for _ in 0..5 {
        c.get(&plain);
    }
    clock.advance_ms(9_500);
    assert!(matches!(c.get(&plain), Lookup::Fresh(h) if !h.refresh_ahead));
    assert_eq!(c.counters().refresh_ahead, 2);
}

#[test]
fn sweep_removes_expired_entries_incrementally() {
    let (mut c, clock) = cache(1 << 20, PolicyKind::S3Fifo);
    for i in 0..10 {
        c.insert(&key(None, &i.to_string()), body("v"), &meta(1, 1, 2))
            .unwrap();
    }
    c.insert(&key(None, "long"), body("v"), &meta(100, 0, 0))
        .unwrap();
    clock.advance_ms(3_000);
    let mut out = Vec::new();
    assert_eq!(c.sweep(4, &mut out), 4);
    assert_eq!(c.sweep(100, &mut out), 6);
    assert_eq!(c.len(), 1);
    assert_eq!(c.counters().expirations, 10);
    c.check_invariants();
}

#[test]
fn export_gives_one_live_entry_with_the_tags_it_gained() {
    let (mut c, clock) = cache(1 << 20, PolicyKind::S3Fifo);
    let a = key(Some("u1"), "a");
    c.insert(&a, body("A"), &meta(10, 0, 0).with_tags(["t"]))
        .unwrap();
    assert_eq!(c.add_tags(&a, &["later"]), 1);
    clock.advance_ms(2_000);
    let e = c.export(&a).unwrap();
    assert_eq!((e.age_ms, e.hits), (2_000, 0), "an export is not an access");
    assert_eq!(e.tags, vec!["t".to_string(), "later".to_string()]);
    assert_eq!(Some(e), c.snapshot().next());
    assert!(c.export(&key(None, "absent")).is_none());
    clock.advance_ms(10_000);
    assert!(c.export(&a).is_none(), "past its retention");
}

#[test]
fn snapshot_round_trips_live_entries() {
    let (mut c, clock) = cache(1 << 20, PolicyKind::S3Fifo);
    let a = key(Some("u1"), "a");
    let b = key(None, "b");
    let gone = key(None, "gone");
    let ma = EntryMeta {
        refresh_ahead: true,
        ..meta(100, 10, 50)
    }
    .with_tags(["t"])
    .with_symbols(["AAPL"]);
    c.insert(&a, body("A"), &ma).unwrap();
    c.insert(&b, body("B"), &meta(100, 0, 0)).unwrap();
    c.insert(&gone, body("G"), &meta(1, 0, 0)).unwrap();
    c.get(&a);
    clock.advance_ms(5_000);
    let snap: Vec<_> = c.snapshot().collect();
    assert_eq!(snap.len(), 2);
    let sa = snap.iter().find(|s| s.key == a.bytes()).unwrap();
    assert_eq!(sa.age_ms, 5_000);
    assert_eq!(
        (sa.tags.clone(), sa.symbols.clone()),
        (vec!["t".into()], vec!["AAPL".into()])
    );
    assert_eq!(sa.hits, 1);
    assert!(sa.refresh_ahead);

    let clock2 = ManualClock::new();
    clock2.advance_ms(1_000_000);
    let mut c2 = Cache::new(*c.options(), clock2.clone());
    assert_eq!(c2.restore(snap), 2);
    let Lookup::Fresh(h) = c2.get(&a) else {
        panic!()
    };
    assert_eq!(
        (&h.body[..], h.age, h.hits),
        (&b"A"[..], Duration::from_secs(5), 2)
    );
    assert_eq!(c2.invalidate_symbols(&["AAPL"]), 1);
    clock2.advance_ms(95_000);
    assert!(matches!(c2.get(&b), Lookup::Miss));
    c2.check_invariants();
}

#[test]
fn clear_empties_everything() {
    let (mut c, _) = cache(1 << 20, PolicyKind::S3Fifo);
    let k = key(Some("u"), "1");
    c.insert(&k, body("v"), &meta(10, 0, 0).with_tags(["t"]))
        .unwrap();
    assert_eq!(c.clear(), 1);
    assert_eq!(c.get(&k), Lookup::Miss);
    assert_eq!(c.indexed_names(), (0, 0, 0));
    c.insert(&k, body("v"), &meta(10, 0, 0)).unwrap();
    c.check_invariants();
}

/// One step of a random workload.
#[derive(Debug, Clone)]
enum Op {
    Insert {
        k: u8,
        user: u8,
        len: u16,
        ttl: u8,
        swr: u8,
        sie: u8,
        tags: Vec<u8>,
        syms: Vec<u8>,
    },
    Get(u8),
    Advance(u16),
    Tag(u8),
    Sym(u8),
    User(u8),
    Operation,
    Key(u8),
    Sweep(u8),
    AddTags(u8, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), 0u8..4, 0u16..600, 1u8..20, 0u8..10, 0u8..20,
              proptest::collection::vec(0u8..6, 0..3), proptest::collection::vec(0u8..4, 0..3))
            .prop_map(|(k, user, len, ttl, swr, sie, tags, syms)|
                Op::Insert { k, user, len, ttl, swr, sie, tags, syms }),
        4 => any::<u8>().prop_map(Op::Get),
        2 => (0u16..5000).prop_map(Op::Advance),
        1 => (0u8..6).prop_map(Op::Tag),
        1 => (0u8..4).prop_map(Op::Sym),
        1 => (0u8..4).prop_map(Op::User),
        1 => Just(Op::Operation),
        1 => any::<u8>().prop_map(Op::Key),
        1 => (1u8..50).prop_map(Op::Sweep),
        1 => (any::<u8>(), proptest::collection::vec(0u8..6, 0..3))
            .prop_map(|(k, tags)| Op::AddTags(k, tags)),
    ]
}

fn pkey(k: u8, user: u8) -> CacheKey {
    let op = Operation::from_index(usize::from(k % 2)).unwrap();
    let user = (user > 0).then(|| format!("u{user}"));
    CacheKey::new(op, user.as_deref(), &[k]).unwrap()
}

/// What the model expects of a stored entry.
#[derive(Debug, Clone)]
struct Expect {
    body: Bytes,
    created_ms: u64,
    ttl: u64,
    swr: u64,
    sie: u64,
    tags: Vec<u8>,
    syms: Vec<u8>,
    user: u8,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Budget never exceeded; nothing returned past TTL + windows; bodies are never another
    /// key's; tag invalidation removes exactly the tagged entries; indexes never point at
    /// removed entries.
    #[test]
    fn cache_model(ops in proptest::collection::vec(op(), 1..200), lru in any::<bool>(), budget in 1_000usize..6_000) {
        let policy = if lru { PolicyKind::Lru } else { PolicyKind::S3Fifo };
        let (mut c, clock) = cache(budget, policy);
        // Key byte → entry the cache may hold (it may have evicted it).
        let mut model: std::collections::HashMap<u8, Expect> = Default::default();
        let mut users: std::collections::HashMap<u8, u8> = Default::default();
        for op in ops {
            let now = clock.now().as_millis();
            match op {
                Op::Insert { k, user, len, ttl, swr, sie, tags, syms } => {
                    let key = pkey(k, user);
                    // One key byte maps to one cache key at a time in the model.
                    if let Some(u) = users.get(&k) { c.invalidate_key(&pkey(k, *u)); model.remove(&k); }
                    let body = Bytes::from(vec![k; usize::from(len)]);
                    let m = EntryMeta {
                        ttl: Duration::from_millis(u64::from(ttl) * 100),
                        stale_while_revalidate: Duration::from_millis(u64::from(swr) * 100),
                        stale_if_error: Duration::from_millis(u64::from(sie) * 100),
                        tags: tags.iter().map(|t| format!("t{t}")).collect(),
                        symbols: syms.iter().map(|s| format!("S{s}")).collect(),
                        ..EntryMeta::default()
                    };
                    if c.insert(&key, body.clone(), &m).is_ok() {
                        model.insert(k, Expect { body, created_ms: now, ttl: u64::from(ttl) * 100,
                            swr: u64::from(swr) * 100, sie: u64::from(sie) * 100, tags, syms, user });
                        users.insert(k, user);
                    }
                }
                Op::Get(k) => {
                    let user = users.get(&k).copied().unwrap_or(0);
                    let r = c.get(&pkey(k, user));
                    let hit = match &r { Lookup::Fresh(h) | Lookup::Stale(h) | Lookup::StaleIfError(h) => Some(h), Lookup::Miss => None };
                    if let Some(h) = hit {
                        let e = model.get(&k).expect("cache returned a key the model never stored");
                        prop_assert_eq!(&h.body, &e.body);
                        let age = now - e.created_ms;
                        match r {
                            Lookup::Fresh(_) => prop_assert!(age < e.ttl),
                            Lookup::Stale(_) => prop_assert!(age >= e.ttl && age < e.ttl + e.swr),
                            Lookup::StaleIfError(_) => prop_assert!(age >= e.ttl + e.swr && age < e.ttl + e.sie),
                            Lookup::Miss => {}
                        }
                    }
                    if let Some(e) = model.get(&k) {
                        if now - e.created_ms >= e.ttl + e.swr.max(e.sie) { model.remove(&k); }
                    }
                }
                Op::Advance(ms) => clock.advance_ms(u64::from(ms)),
                Op::Tag(t) => {
                    let tagged: Vec<u8> = model.iter().filter(|(_, e)| e.tags.contains(&t)).map(|(k, _)| *k).collect();
                    let live_tagged = tagged.iter().filter(|k| c.map.contains_key(&pkey(**k, users[*k]).hash())).count();
                    prop_assert_eq!(c.invalidate_tag(&format!("t{t}")), live_tagged);
                    for k in tagged { model.remove(&k); }
                    // Every remaining live entry is untagged by t.
                    let name = format!("t{t}");
                    for s in c.snapshot() { prop_assert!(!s.tags.contains(&name)); }
                }
                Op::Sym(s) => {
                    c.invalidate_symbols(&[format!("S{s}")]);
                    model.retain(|_, e| !e.syms.contains(&s));
                }
                Op::User(u) => {
                    c.invalidate_user(&format!("u{u}"));
                    model.retain(|_, e| e.user != u || u == 0);
                }
                Op::Operation => {
                    c.invalidate_operation(Operation::PortfolioAnalysis);
                    model.retain(|k, _| k % 2 == 0);
                }
                Op::Key(k) => {
                    if let Some(u) = users.get(&k) { c.invalidate_key(&pkey(k, *u)); }
                    model.remove(&k);
                }
                Op::Sweep(n) => { c.sweep(usize::from(n), &mut Vec::new()); }
                Op::AddTags(k, tags) => {
                    let user = users.get(&k).copied().unwrap_or(0);
                    let names: Vec<String> = tags.iter().map(|t| format!("t{t}")).collect();
                    c.add_tags(&pkey(k, user), &names);
                    // The entry may have been evicted to make room: the model only requires
                    // that a live entry now carries the tags.
                    if let Some(e) = model.get_mut(&k) {
                        e.tags.extend(tags);
                    }
                }
            }
            prop_assert!(c.bytes_used() <= budget);
            c.check_invariants();
        }
    }
}

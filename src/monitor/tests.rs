//! Monitor rules, history and the performance document, driven by hand-made snapshots and
//! explicit times (no clock).

use super::*;
use crate::ai::engine::CacheStatus;

fn config() -> Config {
    Config {
        alert_for_windows: 2,
        monitor_history: 4,
        ..Config::default()
    }
}

fn traffic(snap: &mut MetricsSnapshot, n: u64, seconds: f64, status: u16, cache: CacheStatus) {
    for _ in 0..n {
        snap.requests
            .record(Operation::RiskAssessment, status, Some(cache), seconds, 0.0);
    }
}

/// Observes `s` as the window ending `k` intervals (5 s) after start.
fn tick(m: &Monitor, s: &MetricsSnapshot, k: u64) {
    m.observe(
        std::slice::from_ref(s),
        5.0 * k as f64,
        1_000_000 + 5_000 * k,
    );
}

#[test]
fn slow_windows_fire_after_the_hold_and_resolve_with_hysteresis() {
    let m = Monitor::new(&config(), None);
    let mut s = MetricsSnapshot::default();
    tick(&m, &s, 0);
    // Two slow windows (p95 ~0.74 s > 500 ms critical, < 1 s emergency).
    for k in 1..=2 {
        traffic(&mut s, 30, 0.7, 200, CacheStatus::Hit);
        tick(&m, &s, k);
    }
    assert_eq!(
        m.summary().active,
        vec![("response_time", Severity::Critical)]
    );
    assert!(m.summary().health_score < 100.0);
    // One fast window is not enough to resolve; two are.
    traffic(&mut s, 30, 0.001, 200, CacheStatus::Hit);
    tick(&m, &s, 3);
    assert_eq!(m.summary().active.len(), 1);
    traffic(&mut s, 30, 0.001, 200, CacheStatus::Hit);
    tick(&m, &s, 4);
    assert!(m.summary().active.is_empty());
    let events = m.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].severity, Some(Severity::Critical));
    assert_eq!(
        events[0].unix_ms, 1_010_000,
        "stamped with its window's end"
    );
    assert_eq!(events[1].severity, None);
    assert_eq!(events[1].previous, Some(Severity::Critical));
}

#[test]
fn error_rate_and_hit_rate_rules() {
    let m = Monitor::new(&config(), None);
    let mut s = MetricsSnapshot::default();
    for k in 1..=2 {
        traffic(&mut s, 10, 0.001, 503, CacheStatus::Miss);
        for _ in 0..10 {
            s.requests
                .record(Operation::RiskAssessment, 503, None, 0.001, 0.0);
        }
        traffic(&mut s, 20, 0.001, 200, CacheStatus::Miss);
        tick(&m, &s, k);
    }
    let active = m.summary().active;
    assert!(
        active.contains(&("error_rate", Severity::Emergency)),
        "{active:?}"
    );
    assert!(
        active.contains(&("cache_hit_rate", Severity::Critical)),
        "{active:?}"
    );
    assert_eq!(
        m.summary().hit_rate[Operation::RiskAssessment.index()],
        Some(0.0)
    );
}

#[test]
fn history_is_bounded_and_the_report_sums_it() {
    let m = Monitor::new(&config(), None);
    let mut s = MetricsSnapshot::default();
    tick(&m, &s, 0);
    for k in 1..=10 {
        traffic(&mut s, 10 * k, 0.001, 200, CacheStatus::Hit);
        tick(&m, &s, k);
    }
    let doc = report::performance(&m);
    assert_eq!(doc["windows"], 4);
    assert_eq!(doc["series"].as_array().unwrap().len(), 4);
    // The last window had 100 requests in 5 s; the four kept windows 70 + 80 + 90 + 100.
    assert_eq!(doc["last_window"]["totals"]["requests"], 100);
    assert_eq!(doc["last_window"]["totals"]["rps"], 20.0);
    assert_eq!(doc["recent"]["totals"]["requests"], 340);
    assert_eq!(doc["recent"]["seconds"], 20.0);
    let risk = &doc["recent"]["operations"]["risk_assessment"];
    assert_eq!(risk["cache_hit_rate"], 1.0);
    assert!(risk["p95_ms"].as_f64().unwrap() <= 1.0);
    assert!(doc["recent"]["operations"]["portfolio_analysis"]["p95_ms"].is_null());
    // Throughput rose every window: rising, but not a degradation.
    let rps = &doc["trend"]["totals"]["rps"];
    assert_eq!(rps["direction"], "rising");
    assert_eq!(rps["degrading"], false);
    assert_eq!(doc["trend"]["degrading"].as_array().unwrap().len(), 0);
    assert_eq!(doc["health"]["score"], 100.0);
}

#[test]
fn rising_latency_is_reported_degrading() {
    let m = Monitor::new(&config(), None);
    let mut s = MetricsSnapshot::default();
    tick(&m, &s, 0);
    for (k, latency) in [0.02, 0.04, 0.08, 0.15].iter().enumerate() {
        traffic(&mut s, 40, *latency, 200, CacheStatus::Hit);
        tick(&m, &s, k as u64 + 1);
    }
    let doc = report::performance(&m);
    let degrading: Vec<&str> = doc["trend"]["degrading"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(degrading.contains(&"totals.p95_ms"), "{degrading:?}");
    assert!(
        degrading.contains(&"risk_assessment.p95_ms"),
        "{degrading:?}"
    );
}

#[test]
fn adaptive_thresholds_flag_a_deviation_from_the_learned_baseline() {
    let config = Config {
        adaptive_thresholds: true,
        alert_for_windows: 1,
        monitor_history: 60,
        ..Config::default()
    };
    let m = Monitor::new(&config, None);
    let mut s = MetricsSnapshot::default();
    tick(&m, &s, 0);
    let mut k = 1;
    for _ in 0..trend::BASELINE_WINDOWS {
        traffic(&mut s, 40, 0.004, 200, CacheStatus::Hit);
        tick(&m, &s, k);
        k += 1;
    }
    assert!(m.summary().active.is_empty());
    // 40 ms is ten times the ~4 ms baseline, yet far under the static 300 ms warning.
    traffic(&mut s, 40, 0.04, 200, CacheStatus::Hit);
    tick(&m, &s, k);
    assert_eq!(
        m.summary().active,
        vec![("latency_deviation", Severity::Warning)]
    );
    let doc = report::performance(&m);
    let b = &doc["adaptive"]["baselines"]["risk_assessment"];
    let learned = b["p95_ms"].as_f64().unwrap();
    assert!((2.5..=5.0).contains(&learned), "{b}");
    let threshold = b["threshold_ms"].as_f64().unwrap();
    assert!(
        (threshold - trend::DEVIATION_FACTOR * learned).abs() < 1e-9,
        "{b}"
    );
    // Without the setting the same traffic raises nothing.
    let plain = Monitor::new(&Config::default(), None);
    let mut s = MetricsSnapshot::default();
    for k in 0..10 {
        traffic(
            &mut s,
            40,
            if k < 8 { 0.004 } else { 0.04 },
            200,
            CacheStatus::Hit,
        );
        tick(&plain, &s, k);
    }
    assert!(plain.summary().active.is_empty());
}

#[test]
fn reconfigure_changes_thresholds_and_keeps_state() {
    let m = Monitor::new(&config(), None);
    let mut s = MetricsSnapshot::default();
    tick(&m, &s, 0);
    // 0.7 s is critical under the default 400 ms target...
    traffic(&mut s, 30, 0.7, 200, CacheStatus::Hit);
    tick(&m, &s, 1);
    // ...and nothing once the target is 2 s and one window suffices to change state.
    m.reconfigure(&Config {
        alert_response_time: Duration::from_secs(2),
        alert_for_windows: 1,
        monitor_history: 3,
        ..Config::default()
    });
    traffic(&mut s, 30, 0.7, 200, CacheStatus::Hit);
    tick(&m, &s, 2);
    assert!(m.summary().active.is_empty(), "{:?}", m.summary().active);
    let doc = report::performance(&m);
    assert_eq!(
        doc["alerts"]["thresholds"]["response_time_p95_ms"]["warning"],
        1500.0
    );
    assert_eq!(doc["history_capacity"], 3);
    assert_eq!(doc["windows"], 3, "history kept across the reload");
}

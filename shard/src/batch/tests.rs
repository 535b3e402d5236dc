//! Tests of the batch queues: each flush rule with a manual clock, and the properties.

use super::*;
use crate::clock::ManualClock;
use proptest::prelude::*;

const BUDGET: QueueKey = QueueKey {
    op: Operation::BudgetOptimization,
    class: 0,
};

fn queues(opts: BatchOptions) -> (BatchQueues<ManualClock, u32>, ManualClock) {
    let clock = ManualClock::new();
    (BatchQueues::new(opts, clock.clone()), clock)
}

fn poll(q: &mut BatchQueues<ManualClock, u32>, idle: bool) -> Poll<u32> {
    let mut out = Poll::default();
    q.poll(|_| idle, &mut out);
    out
}

fn payloads(b: &Batch<u32>) -> Vec<u32> {
    b.requests.iter().map(|r| r.payload).collect()
}

#[test]
fn lone_request_on_idle_endpoint_leaves_at_once() {
    let (mut q, _) = queues(BatchOptions::default());
    q.push(BUDGET, Priority::Normal, None, 1).unwrap();
    let out = poll(&mut q, true);
    assert_eq!(out.batches.len(), 1);
    assert_eq!(out.batches[0].reason, FlushReason::Idle);
    assert_eq!(payloads(&out.batches[0]), vec![1]);
    assert_eq!(
        q.stats().queue_time_us.max(),
        1,
        "zero queue time (recorded as the floor 1)"
    );
    assert!(q.is_empty());
    assert_eq!(q.next_deadline(), None);
}

#[test]
fn busy_endpoint_waits_for_the_window() {
    let (mut q, clock) = queues(BatchOptions::default());
    q.push(BUDGET, Priority::Normal, None, 1).unwrap();
    clock.advance_ms(10);
    q.push(BUDGET, Priority::Normal, None, 2).unwrap();
    assert_eq!(
        q.next_deadline(),
        Some(Timestamp::ZERO.plus(Duration::from_millis(50)))
    );
    clock.advance_ms(39);
    assert!(poll(&mut q, false).is_empty());
    clock.advance_ms(1);
    let out = poll(&mut q, false);
    assert_eq!(out.batches[0].reason, FlushReason::Window);
    assert_eq!(payloads(&out.batches[0]), vec![1, 2]);
    assert_eq!(q.stats().queue_time_us.max() / 1000, 50);
}

#[test]
fn new_batching_applies_to_requests_already_queued() {
    let (mut q, clock) = queues(BatchOptions::default());
    for i in 0..3 {
        q.push(BUDGET, Priority::Normal, None, i).unwrap();
    }
    // A reload shortens the window and the batch size: the next poll uses both.
    q.set_batching(2, Duration::from_millis(5));
    assert_eq!(
        q.next_deadline(),
        Some(Timestamp::ZERO),
        "a full batch of 2 is due now"
    );
    clock.advance_ms(5);
    let out = poll(&mut q, false);
    let sizes: Vec<usize> = out.batches.iter().map(|b| b.requests.len()).collect();
    assert_eq!(sizes, vec![2, 1]);
    assert_eq!(q.options().max_batch, 2);
    q.set_batching(0, Duration::ZERO);
    assert_eq!(q.options().max_batch, 1, "clamped");
}

#[test]
fn under_load_batches_fill_to_the_max() {
    let (mut q, clock) = queues(BatchOptions::default());
    for i in 0..100 {
        q.push(BUDGET, Priority::Normal, None, i).unwrap();
    }
    // The endpoint is busy: only full batches leave before the window.
    let out = poll(&mut q, false);
    let sizes: Vec<_> = out.batches.iter().map(|b| b.requests.len()).collect();
    assert_eq!(sizes, vec![32, 32, 32]);
    assert!(out.batches.iter().all(|b| b.reason == FlushReason::Size));
    assert_eq!(q.len(), 4);
    // Arrival order is kept across batches.
    assert_eq!(payloads(&out.batches[1])[0], 32);
    clock.advance_ms(50);
    let out = poll(&mut q, false);
    assert_eq!(out.batches[0].requests.len(), 4);
    assert_eq!(q.stats().batch_size.quantile(0.5), 32);
}

#[test]
fn high_priority_bypasses_the_window_alone() {
    let (mut q, _) = queues(BatchOptions::default());
    q.push(BUDGET, Priority::Normal, None, 1).unwrap();
    q.push(BUDGET, Priority::High, None, 2).unwrap();
    q.push(BUDGET, Priority::High, None, 3).unwrap();
    let out = poll(&mut q, false);
    assert_eq!(out.batches.len(), 1);
    assert_eq!(out.batches[0].reason, FlushReason::Priority);
    assert_eq!(payloads(&out.batches[0]), vec![2, 3]);
    assert_eq!(q.len(), 1);
    assert_eq!(q.stats().flushes[FlushReason::Priority as usize], 1);
}

#[test]
fn higher_priority_first_within_a_batch() {
    let (mut q, clock) = queues(BatchOptions::default());
    q.push(BUDGET, Priority::Low, None, 1).unwrap();
    q.push(BUDGET, Priority::Normal, None, 2).unwrap();
    q.push(BUDGET, Priority::Low, None, 3).unwrap();
    q.push(BUDGET, Priority::Normal, None, 4).unwrap();
    clock.advance_ms(50);
    let out = poll(&mut q, false);
    assert_eq!(payloads(&out.batches[0]), vec![2, 4, 1, 3]);
}

#[test]
fn classes_and_operations_never_mix() {
    let (mut q, _) = queues(BatchOptions::default());
    let other = QueueKey { class: 7, ..BUDGET };
    let port = QueueKey {
        op: Operation::PortfolioAnalysis,
        class: 0,
    };
    q.push(BUDGET, Priority::Normal, None, 1).unwrap();
    q.push(other, Priority::Normal, None, 2).unwrap();
    q.push(port, Priority::Normal, None, 3).unwrap();
    q.push(BUDGET, Priority::Normal, None, 4).unwrap();
    let mut out = Poll::default();
    q.poll(|k| k.op == Operation::BudgetOptimization, &mut out);
    assert_eq!(out.batches.len(), 2);
    assert_eq!(payloads(&out.batches[0]), vec![1, 4]);
    assert_eq!(out.batches[1].key, other);
    assert_eq!(q.len_of(Operation::PortfolioAnalysis), 1);
}

#[test]
fn overload_sheds_low_first_then_rejects() {
    let (mut q, _) = queues(BatchOptions {
        max_queue_len: 3,
        ..BatchOptions::default()
    });
    q.push(BUDGET, Priority::Normal, None, 1).unwrap();
    q.push(BUDGET, Priority::Low, None, 2).unwrap();
    q.push(BUDGET, Priority::Low, None, 3).unwrap();
    assert_eq!(
        q.push(BUDGET, Priority::Low, None, 4).unwrap_err(),
        PushError::Overloaded(4)
    );
    let p = q.push(BUDGET, Priority::Normal, None, 5).unwrap();
    let shed = p.shed.unwrap();
    assert_eq!((shed.request.payload, shed.reason), (2, DropReason::Shed));
    let p = q.push(BUDGET, Priority::High, None, 6).unwrap();
    assert_eq!(p.shed.unwrap().request.payload, 3);
    // Only normal and high left: high sheds normal, normal is rejected.
    assert_eq!(
        q.push(BUDGET, Priority::Normal, None, 7).unwrap_err(),
        PushError::Overloaded(7)
    );
    assert_eq!(
        q.push(BUDGET, Priority::High, None, 8)
            .unwrap()
            .shed
            .unwrap()
            .request
            .payload,
        1
    );
    assert_eq!(q.len(), 3);
    let s = q.stats();
    assert_eq!((s.shed, s.rejected, s.enqueued), (3, 2, 6));
}

#[test]
fn expired_requests_leave_with_timeout_and_are_never_dispatched() {
    let (mut q, clock) = queues(BatchOptions::default());
    let soon = Timestamp::ZERO.plus(Duration::from_millis(20));
    q.push(BUDGET, Priority::Normal, Some(soon), 1).unwrap();
    q.push(BUDGET, Priority::Normal, None, 2).unwrap();
    assert_eq!(q.next_deadline(), Some(soon));
    clock.advance_ms(20);
    let out = poll(&mut q, false);
    assert!(out.batches.is_empty());
    assert_eq!(out.dropped.len(), 1);
    assert_eq!(
        (out.dropped[0].request.payload, out.dropped[0].reason),
        (1, DropReason::Timeout)
    );
    // A client deadline cannot extend the request timeout.
    let far = Timestamp::ZERO.plus(Duration::from_secs(3600));
    q.push(BUDGET, Priority::Normal, Some(far), 3).unwrap();
    assert_eq!(
        q.push(BUDGET, Priority::Normal, Some(soon), 4).unwrap_err(),
        PushError::Expired(4)
    );
    clock.advance_ms(10_000);
    let out = poll(&mut q, false);
    assert_eq!(
        out.dropped.len(),
        2,
        "both the default and the clamped deadline passed"
    );
    assert!(q.is_empty());
    assert_eq!(q.stats().expired, 4);
}

#[derive(Debug, Clone)]
enum Step {
    Push {
        class: u32,
        prio: u8,
        deadline_ms: Option<u16>,
    },
    Advance(u16),
    Poll(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u32..2, 0u8..3, proptest::option::of(0u16..200))
            .prop_map(|(class, prio, deadline_ms)| Step::Push { class, prio, deadline_ms }),
        2 => (0u16..80).prop_map(Step::Advance),
        3 => any::<bool>().prop_map(Step::Poll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every accepted request leaves exactly once (batch, timeout or shed); no batch exceeds
    /// the max; a high-priority request never waits for a window; nothing is dispatched past
    /// its deadline.
    #[test]
    fn every_request_leaves_exactly_once(
        steps in proptest::collection::vec(step(), 1..300),
        max_batch in 1usize..8,
        max_queue_len in 1usize..20,
    ) {
        let opts = BatchOptions {
            max_batch,
            window: Duration::from_millis(50),
            max_queue_len,
            request_timeout: Duration::from_millis(300),
        };
        let (mut q, clock) = queues(opts);
        let mut accepted = std::collections::HashSet::new();
        let mut left = std::collections::HashSet::new();
        let mut next = 0u32;
        let check = |out: Poll<u32>, left: &mut std::collections::HashSet<u32>, now: Timestamp| -> Result<(), TestCaseError> {
            for b in out.batches {
                prop_assert!(!b.requests.is_empty() && b.requests.len() <= max_batch);
                for r in &b.requests {
                    prop_assert!(r.deadline > now, "dispatched past deadline");
                    if r.priority == Priority::High {
                        prop_assert_eq!(r.enqueued_at, now, "high priority waited");
                        prop_assert_eq!(b.reason, FlushReason::Priority);
                    }
                    prop_assert!(left.insert(r.payload), "left twice");
                }
            }
            for d in out.dropped {
                prop_assert!(left.insert(d.request.payload), "left twice");
            }
            Ok(())
        };
        for s in steps {
            match s {
                Step::Push { class, prio, deadline_ms } => {
                    let prio = [Priority::Low, Priority::Normal, Priority::High][usize::from(prio)];
                    let deadline = deadline_ms.map(|ms| clock.now().plus(Duration::from_millis(u64::from(ms))));
                    let key = QueueKey { op: Operation::RiskAssessment, class };
                    next += 1;
                    match q.push(key, prio, deadline, next) {
                        Ok(p) => {
                            accepted.insert(next);
                            if let Some(d) = p.shed {
                                prop_assert!(d.request.priority < prio);
                                prop_assert!(left.insert(d.request.payload));
                            }
                        }
                        Err(PushError::Overloaded(_)) => prop_assert!(q.len() >= max_queue_len),
                        Err(PushError::Expired(_)) => {}
                    }
                    prop_assert!(q.len() <= max_queue_len);
                    // The server polls after every push.
                    let mut out = Poll::default();
                    q.poll(|_| false, &mut out);
                    check(out, &mut left, clock.now())?;
                }
                Step::Advance(ms) => clock.advance_ms(u64::from(ms)),
                Step::Poll(idle) => {
                    let mut out = Poll::default();
                    q.poll(|_| idle, &mut out);
                    check(out, &mut left, clock.now())?;
                }
            }
            prop_assert_eq!(q.len(), accepted.len() - left.len());
        }
        clock.advance_ms(1_000);
        let mut out = Poll::default();
        q.poll(|_| false, &mut out);
        check(out, &mut left, clock.now())?;
        prop_assert!(q.is_empty());
        prop_assert_eq!(&accepted, &left);
        let s = q.stats();
        prop_assert_eq!(s.enqueued, s.dispatched + s.expired - (next as u64 - accepted.len() as u64 - s.rejected) + s.shed);
    }
}

#[test]
fn an_operation_that_is_not_batch_compatible_sends_each_request_alone() {
    let (mut q, _) = queues(BatchOptions::default());
    let risk = QueueKey {
        op: Operation::RiskAssessment,
        class: 0,
    };
    q.set_batchable(Operation::BudgetOptimization, false);
    for i in 0..3 {
        q.push(BUDGET, Priority::Normal, None, i).unwrap();
        q.push(risk, Priority::Normal, None, 10 + i).unwrap();
    }
    assert_eq!(
        q.next_deadline(),
        Some(Timestamp::ZERO),
        "unbatched requests are due at once"
    );
    // Busy endpoints: the unbatched operation still leaves, one request per batch; the other
    // waits for its window.
    let out = poll(&mut q, false);
    let budget: Vec<(FlushReason, Vec<u32>)> = out
        .batches
        .iter()
        .map(|b| (b.reason, payloads(b)))
        .collect();
    assert_eq!(
        budget,
        vec![
            (FlushReason::Size, vec![0]),
            (FlushReason::Size, vec![1]),
            (FlushReason::Size, vec![2])
        ]
    );
    assert!(out.batches.iter().all(|b| b.key == BUDGET));
    assert_eq!(q.len(), 3, "risk_assessment still batches");
    // Compatible again: batches form as before.
    q.set_batchable(Operation::BudgetOptimization, true);
    for i in 0..3 {
        q.push(BUDGET, Priority::Normal, None, i).unwrap();
    }
    let out = poll(&mut q, true);
    let sizes: Vec<usize> = out.batches.iter().map(|b| b.requests.len()).collect();
    assert_eq!(sizes, vec![3, 3]);
}

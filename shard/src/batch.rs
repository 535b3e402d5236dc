//! Batch queues: cache misses wait here, per operation and compatibility class, until they
//! leave together in one model call.
//!
//! Poll-style and synchronous: the server calls [`BatchQueues::push`] for each miss,
//! [`BatchQueues::poll`] whenever something may have changed (a push, a batch completing, the
//! timer set from [`BatchQueues::next_deadline`]), and sends the returned batches to endpoints.
//!
//! # The flush rule
//!
//! For each queue, in this order, at every poll:
//!
//! 1. requests past their deadline leave with a timeout and are never dispatched;
//! 2. queued `high` requests leave at once, together, without the window (reason `priority`);
//! 3. while `max_batch` or more requests wait, a full batch leaves (reason `size`);
//! 4. if the oldest request has waited the window, the rest leave (reason `window`);
//! 5. otherwise, if the operation's endpoint is idle (the server's `idle` answer: no batch of
//!    it in flight), the rest leave at once (reason `idle`).
//!
//! Rule 5 makes the window an upper bound rather than a delay everyone pays: a lone request on
//! an idle endpoint leaves on the poll after its push, with zero queue time. Under load the
//! endpoint is busy, requests accumulate while the previous batch computes, and batches grow
//! toward `max_batch` (rule 3) without waiting for the window. Within a batch, higher priority
//! comes first, then arrival order.
//!
//! # Bounds
//!
//! At most `max_queue_len` requests per operation. A push past it sheds the oldest queued
//! request of strictly lower priority (low first, then normal) or, if none, is rejected with
//! [`PushError::Overloaded`]. Every accepted request leaves exactly once: in a batch, by
//! timeout, or shed.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::config::Operation;
use crate::stats::{BatchStats, FlushReason};

/// A request's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Shed first under overload.
    Low = 0,
    /// The default.
    Normal = 1,
    /// Bypasses the batching window.
    High = 2,
}

/// Which queue a request waits in: requests batch together only with the same operation and
/// compatibility class (for example the model version or parameters that must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueKey {
    /// The operation.
    pub op: Operation,
    /// The compatibility class within the operation; 0 when all are compatible.
    pub class: u32,
}

/// Parameters of the batch queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most requests in one batch (`BATCH_SIZE`, at most 32 by the brief).
    pub max_batch: usize,
    /// Longest a request waits for companions (`BATCH_TIMEOUT_MS`).
    pub window: Duration,
    /// Most requests queued per operation.
    pub max_queue_len: usize,
    /// Default and longest deadline of a request (`REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
}

impl Default for BatchOptions {
    /// The brief's values: 32, 50 ms, 10 s timeout; 1024 queued per operation.
    fn default() -> Self {
        BatchOptions {
            max_batch: 32,
            window: Duration::from_millis(50),
            max_queue_len: 1024,
            request_timeout: Duration::from_millis(10_000),
        }
    }
}

/// Identifies one pushed request; unique per [`BatchQueues`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A queued request.
#[derive(Debug)]
pub struct Request<T> {
    /// Its id.
    pub id: RequestId,
    /// Its priority.
    pub priority: Priority,
    /// When it was pushed.
    pub enqueued_at: Timestamp,
    /// When it times out.
    pub deadline: Timestamp,
    /// The server's handle for it.
    pub payload: T,
}

/// Requests that leave together for one model call.
#[derive(Debug)]
pub struct Batch<T> {
    /// The queue they came from.
    pub key: QueueKey,
    /// Why they left now.
    pub reason: FlushReason,
    /// At most `max_batch`, higher priority first, then arrival order.
    pub requests: Vec<Request<T>>,
}

/// Why a request left without being dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its deadline passed while queued: answer with a timeout error.
    Timeout,
    /// Dropped under overload to admit a higher-priority request: answer with an overload
    /// error.
    Shed,
}

/// A request that left without being dispatched.
#[derive(Debug)]
pub struct Dropped<T> {
    /// The request.
    pub request: Request<T>,
    /// Why.
    pub reason: DropReason,
}

/// A push that was accepted.
#[derive(Debug)]
pub struct Pushed<T> {
    /// The new request's id.
    pub id: RequestId,
    /// A lower-priority request shed to make room, if any.
    pub shed: Option<Dropped<T>>,
}

/// A push that was refused; the payload comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The operation's queue is full of requests of this priority or higher.
    Overloaded(T),
    /// The deadline has already passed.
    Expired(T),
}

/// What one poll produced; reuse it across polls to keep its allocations.
#[derive(Debug)]
pub struct Poll<T> {
    /// Batches to dispatch, in flush order.
    pub batches: Vec<Batch<T>>,
    /// Requests timed out.
    pub dropped: Vec<Dropped<T>>,
}

impl<T> Default for Poll<T> {
    fn default() -> Self {
        Poll {
            batches: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

impl<T> Poll<T> {
    /// Whether the poll produced nothing.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.dropped.is_empty()
    }
}

/// One queue: a FIFO lane per priority.
#[derive(Debug)]
struct Queue<T> {
    key: QueueKey,
    /// Indexed by `Priority as usize`.
    lanes: [VecDeque<Request<T>>; 3],
    /// No queued request has a deadline before this.
    min_deadline: Timestamp,
}

impl<T> Queue<T> {
    fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    /// Normal and low requests (those that wait for a batch).
    fn batchable(&self) -> usize {
        self.lanes[Priority::Normal as usize].len() + self.lanes[Priority::Low as usize].len()
    }

    /// Arrival time of the oldest normal or low request.
    fn oldest(&self) -> Option<Timestamp> {
        let n = self.lanes[Priority::Normal as usize]
            .front()
            .map(|r| r.enqueued_at);
        let l = self.lanes[Priority::Low as usize]
            .front()
            .map(|r| r.enqueued_at);
        match (n, l) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The batch queues of one shard. `T` is the server's per-request handle.
#[derive(Debug)]
pub struct BatchQueues<C: Clock, T> {
    clock: C,
    opts: BatchOptions,
    queues: Vec<Queue<T>>,
    by_key: HashMap<QueueKey, usize, ahash::RandomState>,
    /// Queued requests per operation.
    per_op: [usize; Operation::COUNT],
    /// Operations whose requests each leave alone (not batch-compatible).
    unbatched: [bool; Operation::COUNT],
    next_id: u64,
    stats: BatchStats,
}

impl<C: Clock, T> BatchQueues<C, T> {
    /// Empty queues. `max_batch` is clamped to at least 1.
    pub fn new(mut opts: BatchOptions, clock: C) -> Self {
        opts.max_batch = opts.max_batch.max(1);
        BatchQueues {
            clock,
            opts,
            queues: Vec::new(),
            by_key: HashMap::default(),
            per_op: [0; Operation::COUNT],
            unbatched: [false; Operation::COUNT],
            next_id: 0,
            stats: BatchStats::default(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &BatchOptions {
        &self.opts
    }

    /// Replaces the batch size and window (a configuration reload). Queued requests keep their
    /// deadlines; the next poll forms batches under the new values. `max_batch` is clamped to
    /// at least 1; the queue cap and request timeout stay as constructed.
    pub fn set_batching(&mut self, max_batch: usize, window: Duration) {
        self.opts.max_batch = max_batch.max(1);
        self.opts.window = window;
    }

    /// Whether requests of `op` may share a batch (its cache configuration's
    /// `batch_compatible`). An operation that may not has batches of one: each request leaves
    /// at once, alone, as a full batch (reason `size`). Takes effect at the next poll.
    pub fn set_batchable(&mut self, op: Operation, batchable: bool) {
        self.unbatched[op.index()] = !batchable;
    }

    /// The largest batch of the queue `key`.
    fn max_batch(&self, key: QueueKey) -> usize {
        if self.unbatched[key.op.index()] {
            1
        } else {
            self.opts.max_batch
        }
    }

    /// Statistics since construction.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Requests queued in total.
    pub fn len(&self) -> usize {
        self.per_op.iter().sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests queued for `op`.
    pub fn len_of(&self, op: Operation) -> usize {
        self.per_op[op.index()]
    }

    /// Queues a request. `deadline` is the client's, if it gave one: it can only shorten
    /// `request_timeout`.
    pub fn push(
        &mut self,
        key: QueueKey,
        priority: Priority,
        deadline: Option<Timestamp>,
        payload: T,
    ) -> Result<Pushed<T>, PushError<T>> {
        let now = self.clock.now();
        let max_deadline = now.plus(self.opts.request_timeout);
        let deadline = deadline.map_or(max_deadline, |d| d.min(max_deadline));
        if deadline <= now {
            self.stats.expired += 1;
            return Err(PushError::Expired(payload));
        }
        let op = key.op.index();
        let mut shed = None;
        if self.per_op[op] >= self.opts.max_queue_len {
            match self.shed_below(key.op, priority) {
                Some(d) => shed = Some(d),
                None => {
                    self.stats.rejected += 1;
                    return Err(PushError::Overloaded(payload));
                }
            }
        }
        let qi = match self.by_key.get(&key) {
            Some(&i) => i,
            None => {
                self.queues.push(Queue {
                    key,
                    lanes: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
                    min_deadline: Timestamp(u64::MAX),
                });
                self.by_key.insert(key, self.queues.len() - 1);
                self.queues.len() - 1
            }
        };
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let q = &mut self.queues[qi];
        q.min_deadline = q.min_deadline.min(deadline);
        q.lanes[priority as usize].push_back(Request {
            id,
            priority,
            enqueued_at: now,
            deadline,
            payload,
        });
        self.per_op[op] += 1;
        self.stats.enqueued += 1;
        self.stats.queue_len[op] = self.per_op[op] as u64;
        Ok(Pushed { id, shed })
    }

    /// Removes the oldest queued request of `op` with priority strictly below `priority`,
    /// lowest priority first.
    fn shed_below(&mut self, op: Operation, priority: Priority) -> Option<Dropped<T>> {
        for lane in [Priority::Low, Priority::Normal] {
            if lane >= priority {
                break;
            }
            let oldest = self
                .queues
                .iter()
                .enumerate()
                .filter(|(_, q)| q.key.op == op)
                .filter_map(|(i, q)| q.lanes[lane as usize].front().map(|r| (r.enqueued_at, i)))
                .min();
            if let Some((_, i)) = oldest {
                let request = self.queues[i].lanes[lane as usize].pop_front()?;
                self.per_op[op.index()] -= 1;
                self.stats.shed += 1;
                self.stats.queue_len[op.index()] = self.per_op[op.index()] as u64;
                return Some(Dropped {
                    request,
                    reason: DropReason::Shed,
                });
            }
        }
        None
    }

    /// The earliest time at which [`BatchQueues::poll`] would produce something without a new
    /// push or a change in endpoint idleness: a window ending or a deadline passing (now, if
    /// high-priority requests wait). `None` when nothing is queued.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        for q in &self.queues {
            if q.len() == 0 {
                continue;
            }
            let mut t = q.min_deadline;
            if let Some(h) = q.lanes[Priority::High as usize].front() {
                t = t.min(h.enqueued_at);
            }
            if q.batchable() >= self.max_batch(q.key) {
                t = Timestamp::ZERO;
            }
            if let Some(o) = q.oldest() {
                t = t.min(o.plus(self.opts.window));
            }
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    /// Applies the flush rule (see the module docs) to every queue. `idle(key)` answers
    /// whether the endpoint serving `key` has nothing in flight; it is asked at most once per
    /// queue per poll, only when it matters. Results are appended to `out`.
    pub fn poll(&mut self, mut idle: impl FnMut(QueueKey) -> bool, out: &mut Poll<T>) {
        let now = self.clock.now();
        for qi in 0..self.queues.len() {
            if self.queues[qi].len() == 0 {
                continue;
            }
            let max = self.max_batch(self.queues[qi].key);
            if self.queues[qi].min_deadline <= now {
                self.expire(qi, now, out);
            }
            let key = self.queues[qi].key;
            while !self.queues[qi].lanes[Priority::High as usize].is_empty() {
                let b = take(&mut self.queues[qi], max, &[Priority::High]);
                self.dispatch(key, FlushReason::Priority, b, now, out);
            }
            let mut flushed = false;
            while self.queues[qi].batchable() >= max {
                let b = take(
                    &mut self.queues[qi],
                    max,
                    &[Priority::Normal, Priority::Low],
                );
                self.dispatch(key, FlushReason::Size, b, now, out);
                flushed = true;
            }
            let q = &mut self.queues[qi];
            let Some(oldest) = q.oldest() else { continue };
            let reason = if now >= oldest.plus(self.opts.window) {
                FlushReason::Window
            } else if !flushed && idle(key) {
                FlushReason::Idle
            } else {
                continue;
            };
            let b = take(q, max, &[Priority::Normal, Priority::Low]);
            self.dispatch(key, reason, b, now, out);
        }
    }

    /// Moves requests past their deadline from queue `qi` to `out.dropped`.
    fn expire(&mut self, qi: usize, now: Timestamp, out: &mut Poll<T>) {
        let q = &mut self.queues[qi];
        let mut min = Timestamp(u64::MAX);
        let mut n = 0;
        for lane in &mut q.lanes {
            if lane.iter().all(|r| r.deadline > now) {
                if let Some(m) = lane.iter().map(|r| r.deadline).min() {
                    min = min.min(m);
                }
                continue;
            }
            for r in std::mem::take(lane) {
                if r.deadline <= now {
                    out.dropped.push(Dropped {
                        request: r,
                        reason: DropReason::Timeout,
                    });
                    n += 1;
                } else {
                    min = min.min(r.deadline);
                    lane.push_back(r);
                }
            }
        }
        q.min_deadline = min;
        let op = q.key.op.index();
        self.per_op[op] -= n;
        self.stats.expired += n as u64;
        self.stats.queue_len[op] = self.per_op[op] as u64;
    }

    fn dispatch(
        &mut self,
        key: QueueKey,
        reason: FlushReason,
        requests: Vec<Request<T>>,
        now: Timestamp,
        out: &mut Poll<T>,
    ) {
        let op = key.op.index();
        self.per_op[op] -= requests.len();
        self.stats.queue_len[op] = self.per_op[op] as u64;
        self.stats.dispatched += requests.len() as u64;
        self.stats.flushes[reason as usize] += 1;
        self.stats.batch_size.record(requests.len() as u64);
        for r in &requests {
            let us = now.since(r.enqueued_at).as_micros();
            self.stats
                .queue_time_us
                .record(u64::try_from(us).unwrap_or(u64::MAX));
        }
        out.batches.push(Batch {
            key,
            reason,
            requests,
        });
    }
}

/// Takes up to `max` requests from the lanes in `order`, each lane front first.
fn take<T>(q: &mut Queue<T>, max: usize, order: &[Priority]) -> Vec<Request<T>> {
    let mut v = Vec::with_capacity(max.min(q.len()));
    for p in order {
        let lane = &mut q.lanes[*p as usize];
        let n = (max - v.len()).min(lane.len());
        v.extend(lane.drain(..n));
    }
    v
}

#[cfg(test)]
mod tests;

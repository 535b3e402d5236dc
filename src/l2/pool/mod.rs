//! The Redis side of the L2: a few worker threads, each with its own connection (one node or
//! a Redis Cluster), fed over one bounded crossbeam channel by every shard.
//!
//! Why threads and not an async client: Atlas's shards run glommio, and redis-rs's async API
//! needs a Tokio (or smol) reactor beside it. A worker thread with a synchronous connection
//! needs neither, costs one cross-thread hand-off per batch of commands, and pipelines
//! naturally: a worker takes every command waiting when it wakes (up to [`PIPELINE`]) and
//! sends them in one round trip. Replies go back through `futures-channel` oneshots, which
//! wake the waiting shard task from this thread.
//!
//! Failure: a worker whose connection breaks drops it, fails the commands of that round (a
//! lookup then counts as a miss on the shard) and reconnects at most every
//! [`RECONNECT_EVERY`], failing commands at once in between, so a dead Redis costs the
//! shards nothing but the failed hand-offs (their breaker then stops sending). Nothing here
//! runs on a shard thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Sender, TrySendError};
use futures_channel::oneshot;

use redis::{Cmd, Value};

mod worker;
use worker::Worker;

/// Most commands sent in one pipeline.
pub const PIPELINE: usize = 128;
/// Commands that may wait for a worker.
pub const QUEUE: usize = 8192;
/// A worker idle this long checks its connection with a PING before its next round.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Least time between reconnection attempts of one worker.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// The reply to a lookup: the value if the key exists.
pub type GetReply = Result<Option<Vec<u8>>, String>;

/// A unit of work for a worker.
#[derive(Debug)]
pub enum Command {
    /// `GET key`.
    Get {
        /// The Redis key.
        key: Vec<u8>,
        /// Where the answer goes (dropped by the shard once it stops waiting).
        reply: oneshot::Sender<GetReply>,
    },
    /// `SET key value PX ttl`, and the key added to each tag's index set.
    Set {
        /// The Redis key.
        key: Vec<u8>,
        /// The record bytes.
        value: Vec<u8>,
        /// Expiry, milliseconds (> 0).
        ttl_ms: u64,
        /// Index sets (`{prefix}tag:{tag}` keys) that list this key.
        index: Vec<Vec<u8>>,
    },
    /// Any plain command whose answer nobody waits for (`DEL`, `PUBLISH`, …).
    Fire(Cmd),
    /// A command whose raw answer is wanted.
    Query {
        /// The command.
        cmd: Cmd,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Value, String>>,
    },
    /// `PUBLISH channel message` (sent on its own: a cluster pipeline refuses it).
    Publish {
        /// The channel.
        channel: Vec<u8>,
        /// The message.
        message: Vec<u8>,
    },
    /// Deletes results: the given keys, every member of the given index sets (and the sets),
    /// and with `scan` every key under that prefix on every master. Answers the number of
    /// keys deleted.
    Invalidate {
        /// Result keys.
        keys: Vec<Vec<u8>>,
        /// Index sets whose members go.
        sets: Vec<Vec<u8>>,
        /// A key prefix to delete entirely (`all`).
        scan: Option<Vec<u8>>,
        /// The prefix of result keys: only those are counted (index sets are not results).
        results: Vec<u8>,
        /// Where the count goes (`None`: nobody waits).
        reply: Option<oneshot::Sender<Result<u64, String>>>,
    },
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One node, `redis://host:port[/db]`.
    Node(String),
    /// A Redis Cluster reached through these seed nodes.
    Cluster(Vec<String>),
}

/// The pool: the sending side every shard clones.
#[derive(Clone, Debug)]
pub struct Pool {
    tx: Sender<Command>,
    /// Commands queued or being executed by a worker (see [`Pool::flush`]).
    pending: Arc<AtomicUsize>,
    connected: Arc<Vec<AtomicBool>>,
    target: Target,
    io_timeout: Duration,
    /// This process's identity in published messages (so it ignores its own).
    instance: u64,
}

impl Pool {
    /// Starts `workers` threads for `target`; their I/O deadline is `io_timeout`. Connecting
    /// happens on the workers, so a Redis that is down does not delay the start.
    pub fn start(target: Target, workers: usize, io_timeout: Duration) -> std::io::Result<Pool> {
        let (tx, rx) = channel::bounded(QUEUE);
        let workers = workers.max(1);
        let connected = Arc::new(
            (0..workers)
                .map(|_| AtomicBool::new(false))
                .collect::<Vec<_>>(),
        );
        let pending = Arc::new(AtomicUsize::new(0));
        for i in 0..workers {
            let worker = Worker {
                target: target.clone(),
                rx: rx.clone(),
                pending: Arc::clone(&pending),
                io_timeout,
                conn: None,
                last_attempt: None,
                last_used: Instant::now(),
                connected: Arc::clone(&connected),
                index: i,
            };
            thread::Builder::new()
                .name(format!("atlas-redis-{i}"))
                .spawn(move || worker.run())?;
        }
        Ok(Pool {
            tx,
            pending,
            connected,
            target,
            io_timeout,
            instance: instance_id(),
        })
    }

    /// This process's identity in published messages.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Starts a thread subscribed to `channel` that forwards every message to `forward`
    /// (one node: the node; a cluster: its first seed, since cluster PUBLISH reaches every
    /// node). It reconnects after failures and ends when `forward` is closed.
    pub fn subscribe(
        &self,
        channel: Vec<u8>,
        forward: futures_channel::mpsc::UnboundedSender<Vec<u8>>,
    ) -> std::io::Result<()> {
        let url = match &self.target {
            Target::Node(url) => url.clone(),
            Target::Cluster(seeds) => seeds.first().cloned().unwrap_or_default(),
        };
        let timeout = self.io_timeout;
        thread::Builder::new()
            .name("atlas-redis-sub".into())
            .spawn(move || subscriber(&url, &channel, &forward, timeout))?;
        Ok(())
    }

    /// A pool without workers whose commands go to `tx` (unit tests).
    #[cfg(test)]
    pub fn for_tests(tx: Sender<Command>) -> Pool {
        Pool {
            tx,
            pending: Arc::new(AtomicUsize::new(0)),
            connected: Arc::new(Vec::new()),
            target: Target::Node(String::new()),
            io_timeout: Duration::from_millis(100),
            instance: 1,
        }
    }

    /// Queues `cmd`; gives it back when the queue is full or the workers are gone.
    pub fn send(&self, cmd: Command) -> Result<(), Command> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(cmd).map_err(|e| {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
            }
        })
    }

    /// Commands queued or in a worker's current round: sent to Redis or failed only later.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits (blocking this thread: call it from the main thread at shutdown, never from a
    /// shard) until every command queued so far has been executed, or `limit` has passed.
    /// Returns how many were still pending at the end (0: all flushed).
    pub fn flush(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.pending();
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Workers holding a live connection now.
    pub fn connected(&self) -> usize {
        self.connected
            .iter()
            .filter(|c| c.load(Ordering::Relaxed))
            .count()
    }

    /// Commands waiting for a worker.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// A process identity unlikely to repeat: the start time in nanoseconds mixed with the pid.
fn instance_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32).rotate_left(17)
}

/// The first message forwarded after a subscription was lost and made again: messages
/// published in between were missed.
pub const RESYNC: &[u8] = b"\0resync";

/// The subscriber loop: (re)connect, subscribe, forward messages until `forward` closes.
fn subscriber(
    url: &str,
    channel: &[u8],
    forward: &futures_channel::mpsc::UnboundedSender<Vec<u8>>,
    timeout: Duration,
) {
    let mut logged_down = false;
    let mut subscribed_before = false;
    while !forward.is_closed() {
        let conn = redis::Client::open(url).and_then(|c| c.get_connection_with_timeout(timeout));
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                if !logged_down {
                    log::warn!("redis: subscriber cannot connect: {e}; retrying");
                    logged_down = true;
                }
                thread::sleep(RECONNECT_EVERY);
                continue;
            }
        };
        let mut pubsub = conn.as_pubsub();
        if let Err(e) = pubsub.subscribe(channel) {
            log::warn!("redis: cannot subscribe: {e}");
            thread::sleep(RECONNECT_EVERY);
            continue;
        }
        // A read timeout lets the loop notice a closed `forward` without traffic.
        let _ = pubsub.set_read_timeout(Some(Duration::from_secs(1)));
        log::info!("redis: subscribed to invalidations");
        logged_down = false;
        if subscribed_before && forward.unbounded_send(RESYNC.to_vec()).is_err() {
            return;
        }
        subscribed_before = true;
        loop {
            match pubsub.get_message() {
                Ok(msg) => {
                    if forward
                        .unbounded_send(msg.get_payload_bytes().to_vec())
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => {
                    if forward.is_closed() {
                        return;
                    }
                }
                Err(e) => {
                    log::warn!("redis: subscriber lost its connection: {e}");
                    break;
                }
            }
        }
    }
}

/// Appends every key matching `pattern` on one node (cursor-based SCAN, 1000 at a time).
#[cfg(test)]
mod tests {
    use super::*;

    fn store(i: u8) -> Command {
        Command::Set {
            key: vec![i],
            value: vec![i],
            ttl_ms: 1000,
            index: Vec::new(),
        }
    }

    #[test]
    fn flush_waits_for_queued_commands_and_is_bounded() {
        // Nobody consumes: the flush gives up after its limit and reports what is left.
        let (tx, _rx) = channel::bounded(16);
        let pool = Pool::for_tests(tx);
        for i in 0..3 {
            assert!(pool.send(store(i)).is_ok());
        }
        let started = Instant::now();
        assert_eq!(pool.flush(Duration::from_millis(50)), 3);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn flush_counts_commands_a_worker_finished() {
        // Port 1 refuses connections: the workers fail every round at once, which finishes
        // the commands as far as the flush is concerned.
        let pool = Pool::start(
            Target::Node("redis://127.0.0.1:1".into()),
            2,
            Duration::from_millis(100),
        )
        .unwrap();
        for i in 0..100 {
            assert!(pool.send(store(i)).is_ok());
        }
        assert_eq!(pool.flush(Duration::from_secs(5)), 0);
    }
}

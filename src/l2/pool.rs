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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use futures_channel::oneshot;
use redis::{Cmd, Value};

/// Most commands sent in one pipeline.
pub const PIPELINE: usize = 128;
/// Commands that may wait for a worker.
pub const QUEUE: usize = 8192;
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
    connected: Arc<Vec<AtomicBool>>,
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
        for i in 0..workers {
            let worker = Worker {
                target: target.clone(),
                rx: rx.clone(),
                io_timeout,
                conn: None,
                last_attempt: None,
                connected: Arc::clone(&connected),
                index: i,
            };
            thread::Builder::new()
                .name(format!("atlas-redis-{i}"))
                .spawn(move || worker.run())?;
        }
        Ok(Pool { tx, connected })
    }

    /// A pool without workers whose commands go to `tx` (unit tests).
    #[cfg(test)]
    pub fn for_tests(tx: Sender<Command>) -> Pool {
        Pool {
            tx,
            connected: Arc::new(Vec::new()),
        }
    }

    /// Queues `cmd`; gives it back when the queue is full or the workers are gone.
    pub fn send(&self, cmd: Command) -> Result<(), Command> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
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

enum Conn {
    Node(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

struct Worker {
    target: Target,
    rx: Receiver<Command>,
    io_timeout: Duration,
    conn: Option<Conn>,
    last_attempt: Option<Instant>,
    connected: Arc<Vec<AtomicBool>>,
    index: usize,
}

impl Worker {
    fn run(mut self) {
        let mut round = Vec::with_capacity(PIPELINE);
        while let Ok(first) = self.rx.recv() {
            round.push(first);
            while round.len() < PIPELINE {
                match self.rx.try_recv() {
                    Ok(c) => round.push(c),
                    Err(_) => break,
                }
            }
            // Lookups whose shard stopped waiting are not sent.
            round.retain(|c| !matches!(c, Command::Get { reply, .. } if reply.is_canceled()));
            if !round.is_empty() {
                self.execute(&mut round);
            }
            round.clear();
        }
    }

    fn execute(&mut self, round: &mut Vec<Command>) {
        if self.conn.is_none() && !self.connect() {
            fail(round, "redis unavailable");
            return;
        }
        let mut cmds = Vec::with_capacity(round.len() * 2);
        for c in round.iter() {
            match c {
                Command::Get { key, .. } => cmds.push(redis::cmd("GET").arg(key).clone()),
                Command::Set {
                    key,
                    value,
                    ttl_ms,
                    index,
                } => {
                    cmds.push(
                        redis::cmd("SET")
                            .arg(key)
                            .arg(value)
                            .arg("PX")
                            .arg(*ttl_ms)
                            .clone(),
                    );
                    let secs = ttl_ms.div_ceil(1000);
                    for set in index {
                        cmds.push(redis::cmd("SADD").arg(set).arg(key).clone());
                        // An index lives as long as its longest-lived member (NX sets the
                        // first expiry, GT only ever extends it).
                        cmds.push(redis::cmd("EXPIRE").arg(set).arg(secs).arg("NX").clone());
                        cmds.push(redis::cmd("EXPIRE").arg(set).arg(secs).arg("GT").clone());
                    }
                }
                Command::Fire(cmd) | Command::Query { cmd, .. } => cmds.push(cmd.clone()),
            }
        }
        let result = match &mut self.conn {
            Some(Conn::Node(conn)) => {
                let mut p = redis::pipe();
                for c in cmds {
                    p.add_command(c);
                }
                p.query::<Vec<Value>>(conn)
            }
            Some(Conn::Cluster(conn)) => {
                let mut p = redis::cluster::cluster_pipe();
                for c in cmds {
                    p.add_command(c);
                }
                p.query::<Vec<Value>>(conn)
            }
            None => return fail(round, "redis unavailable"),
        };
        match result {
            Ok(values) => reply(round, values),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.disconnect();
                }
                fail(round, &e.to_string());
            }
        }
    }

    fn connect(&mut self) -> bool {
        if self
            .last_attempt
            .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
        {
            return false;
        }
        self.last_attempt = Some(Instant::now());
        let t = self.io_timeout;
        let conn = match &self.target {
            Target::Node(url) => redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(t))
                .and_then(|c| {
                    c.set_read_timeout(Some(t))?;
                    c.set_write_timeout(Some(t))?;
                    Ok(Conn::Node(c))
                }),
            Target::Cluster(seeds) => redis::cluster::ClusterClient::builder(seeds.clone())
                .connection_timeout(t)
                .response_timeout(t)
                .build()
                .and_then(|c| c.get_connection())
                .map(|c| Conn::Cluster(Box::new(c))),
        };
        match conn {
            Ok(c) => {
                log::info!("redis: worker {} connected", self.index);
                self.conn = Some(c);
                self.set_connected(true);
                true
            }
            Err(e) => {
                log::debug!("redis: worker {} cannot connect: {e}", self.index);
                false
            }
        }
    }

    fn disconnect(&mut self) {
        if self.conn.take().is_some() {
            log::warn!("redis: worker {} lost its connection", self.index);
        }
        self.set_connected(false);
    }

    fn set_connected(&self, on: bool) {
        if let Some(flag) = self.connected.get(self.index) {
            flag.store(on, Ordering::Relaxed);
        }
    }
}

/// Hands each command of the round its answer (values come in command order; a `Set`
/// produced 1 + 3 × index answers).
fn reply(round: &mut Vec<Command>, values: Vec<Value>) {
    let mut values = values.into_iter();
    for c in round.drain(..) {
        match c {
            Command::Get { reply, .. } => {
                let answer = match values.next() {
                    Some(Value::Nil) => Ok(None),
                    Some(Value::BulkString(b)) => Ok(Some(b)),
                    Some(Value::ServerError(e)) => Err(e.to_string()),
                    Some(other) => Err(format!("unexpected reply {other:?}")),
                    None => Err("missing reply".to_string()),
                };
                let _ = reply.send(answer);
            }
            Command::Set { index, .. } => {
                for _ in 0..1 + 3 * index.len() {
                    values.next();
                }
            }
            Command::Fire(_) => {
                values.next();
            }
            Command::Query { reply, .. } => {
                let _ = reply.send(values.next().ok_or_else(|| "missing reply".to_string()));
            }
        }
    }
}

fn fail(round: &mut Vec<Command>, why: &str) {
    for c in round.drain(..) {
        match c {
            Command::Get { reply, .. } => {
                let _ = reply.send(Err(why.to_string()));
            }
            Command::Query { reply, .. } => {
                let _ = reply.send(Err(why.to_string()));
            }
            Command::Set { .. } | Command::Fire(_) => {}
        }
    }
}

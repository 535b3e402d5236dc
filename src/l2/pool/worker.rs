//! A worker thread of the Redis pool: its own connection (one node or a Redis Cluster),
//! rounds of pipelined commands taken from the shared channel, replies sent back to the
//! waiting shards, reconnection at most every [`RECONNECT_EVERY`], and the key scans that
//! invalidation by pattern needs. Nothing here runs on a shard thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Receiver;
use redis::{Cmd, Value};

use super::{Command, Target, IDLE_CHECK, PIPELINE, RECONNECT_EVERY};

pub(super) enum Conn {
    Node(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

pub(super) struct Worker {
    pub(super) target: Target,
    pub(super) rx: Receiver<Command>,
    /// The pool's count of unfinished commands; lowered after each round.
    pub(super) pending: Arc<AtomicUsize>,
    pub(super) io_timeout: Duration,
    pub(super) conn: Option<Conn>,
    pub(super) last_attempt: Option<Instant>,
    /// When this worker last ran a round (see [`IDLE_CHECK`]).
    pub(super) last_used: Instant,
    pub(super) connected: Arc<Vec<AtomicBool>>,
    pub(super) index: usize,
}

impl Worker {
    pub(super) fn run(mut self) {
        let mut round = Vec::with_capacity(PIPELINE);
        while let Ok(first) = self.rx.recv() {
            round.push(first);
            while round.len() < PIPELINE {
                match self.rx.try_recv() {
                    Ok(c) => round.push(c),
                    Err(_) => break,
                }
            }
            let taken = round.len();
            // Lookups whose shard stopped waiting are not sent.
            round.retain(|c| !matches!(c, Command::Get { reply, .. } if reply.is_canceled()));
            if !round.is_empty() {
                self.execute(&mut round);
            }
            round.clear();
            self.pending.fetch_sub(taken, Ordering::Release);
        }
    }

    fn execute(&mut self, round: &mut Vec<Command>) {
        if self.conn.is_some() && self.last_used.elapsed() >= IDLE_CHECK {
            // A connection left idle may belong to a Redis that restarted since: a PING finds
            // out (and drops it) before a command that must not run twice is sent on it.
            let _ = self.query(&redis::cmd("PING"));
        }
        self.last_used = Instant::now();
        if self.conn.is_none() && !self.connect() {
            fail(round, "redis unavailable");
            return;
        }
        // Multi-step and cluster-unsafe commands run on their own, after the pipeline.
        let mut solo = Vec::new();
        round.retain_mut(|c| match c {
            Command::Publish { .. } | Command::Invalidate { .. } => {
                solo.push(std::mem::replace(c, Command::Fire(Cmd::new())));
                false
            }
            _ => true,
        });
        if !round.is_empty() {
            self.pipeline(round);
        }
        for c in solo {
            self.run_solo(c);
        }
    }

    /// Runs one `Publish` or `Invalidate`.
    fn run_solo(&mut self, c: Command) {
        match c {
            Command::Publish { channel, message } => {
                let result = self.query(redis::cmd("PUBLISH").arg(channel).arg(message));
                if let Err(e) = result {
                    log::warn!("redis: publish failed: {e}");
                }
            }
            Command::Invalidate {
                keys,
                sets,
                scan,
                results,
                reply,
            } => {
                let result = self.invalidate(keys, &sets, scan.as_deref(), &results);
                if let Err(e) = &result {
                    log::warn!("redis: invalidation failed: {e}");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            other => {
                let mut round = vec![other];
                self.pipeline(&mut round);
            }
        }
    }

    /// One command on the current connection.
    fn query(&mut self, cmd: &Cmd) -> Result<Value, String> {
        if self.conn.is_none() && !self.connect() {
            return Err("redis unavailable".into());
        }
        let result = match &mut self.conn {
            Some(Conn::Node(c)) => cmd.query::<Value>(c),
            Some(Conn::Cluster(c)) => cmd.query::<Value>(&mut **c),
            None => return Err("redis unavailable".into()),
        };
        result.map_err(|e| {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                self.disconnect();
            }
            e.to_string()
        })
    }

    /// Deletes `keys`, the members of `sets` and the sets, and with `scan` every key under
    /// that prefix; returns how many keys existed.
    fn invalidate(
        &mut self,
        mut keys: Vec<Vec<u8>>,
        sets: &[Vec<u8>],
        scan: Option<&[u8]>,
        results: &[u8],
    ) -> Result<u64, String> {
        for set in sets {
            if let Value::Array(members) = self.query(redis::cmd("SMEMBERS").arg(set))? {
                keys.extend(members.into_iter().filter_map(|m| match m {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                }));
            }
            keys.push(set.clone());
        }
        if let Some(prefix) = scan {
            keys.extend(self.scan_all(prefix)?);
        }
        keys.sort_unstable();
        keys.dedup();
        let mut removed = 0;
        // One key per command, so a cluster pipeline can route each to its slot.
        for chunk in keys.chunks(PIPELINE) {
            let cmds: Vec<Cmd> = chunk
                .iter()
                .map(|k| redis::cmd("UNLINK").arg(k).clone())
                .collect();
            let answers = self.run_pipeline(cmds).map_err(|e| e.to_string())?;
            removed += chunk
                .iter()
                .zip(answers.iter())
                .filter(|(k, v)| k.starts_with(results) && matches!(v, Value::Int(1)))
                .count() as u64;
        }
        Ok(removed)
    }

    /// Every key starting with `prefix`, on the node or on every cluster master.
    fn scan_all(&mut self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut pattern = prefix.to_vec();
        pattern.push(b'*');
        let mut out = Vec::new();
        match &mut self.conn {
            Some(Conn::Node(c)) => scan_node(c, &pattern, &mut out)?,
            Some(Conn::Cluster(c)) => {
                // SCAN is per node: connect to each master the cluster lists.
                let nodes = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query::<String>(&mut **c)
                    .map_err(|e| e.to_string())?;
                for addr in masters(&nodes) {
                    let mut node = redis::Client::open(format!("redis://{addr}"))
                        .and_then(|cl| cl.get_connection_with_timeout(self.io_timeout))
                        .map_err(|e| e.to_string())?;
                    scan_node(&mut node, &pattern, &mut out)?;
                }
            }
            None => return Err("redis unavailable".into()),
        }
        Ok(out)
    }

    fn run_pipeline(&mut self, cmds: Vec<Cmd>) -> redis::RedisResult<Vec<Value>> {
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
            None => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "redis unavailable",
            ))),
        };
        if let Err(e) = &result {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                self.disconnect();
            }
        }
        result
    }

    /// Sends the round as one pipeline and hands out the answers. When the connection turns
    /// out dropped (Redis restarted or failed over) and the round holds only lookups and
    /// stores, which may safely run twice, it is sent once more on a new connection, so that
    /// a restart costs those requests nothing. A round with other commands (the rate
    /// limiter's scripts: a take or a give-back run twice would be counted twice) fails;
    /// [`IDLE_CHECK`] keeps that rare.
    fn pipeline(&mut self, round: &mut Vec<Command>) {
        let had_conn = self.conn.is_some();
        let mut result = self.run_pipeline(commands(round));
        if let Err(e) = &result {
            let repeatable = round
                .iter()
                .all(|c| matches!(c, Command::Get { .. } | Command::Set { .. }));
            if repeatable
                && had_conn
                && self.conn.is_none()
                && e.is_connection_dropped()
                && self.connect()
            {
                result = self.run_pipeline(commands(round));
            }
        }
        match result {
            Ok(values) => reply(round, values),
            Err(e) => fail(round, &e.to_string()),
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

/// The round's commands, in order (a `Set` is `SET` plus three per index set).
fn commands(round: &[Command]) -> Vec<Cmd> {
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
            Command::Publish { .. } | Command::Invalidate { .. } => {}
        }
    }
    cmds
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
            Command::Publish { .. } | Command::Invalidate { .. } => {}
        }
    }
}

fn scan_node(
    conn: &mut redis::Connection,
    pattern: &[u8],
    out: &mut Vec<Vec<u8>>,
) -> Result<(), String> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .map_err(|e| e.to_string())?;
        out.extend(keys);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// `host:port` of each master in `CLUSTER NODES` output.
fn masters(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            (flags.split(',').any(|f| f == "master") && !flags.contains("fail"))
                .then(|| addr.split('@').next().unwrap_or(addr).to_string())
        })
        .collect()
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
            Command::Invalidate {
                reply: Some(reply), ..
            } => {
                let _ = reply.send(Err(why.to_string()));
            }
            Command::Set { .. }
            | Command::Fire(_)
            | Command::Publish { .. }
            | Command::Invalidate { .. } => {}
        }
    }
}

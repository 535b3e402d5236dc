//! The main thread's line to every shard: one Unix stream pair per shard, created before the
//! executors start. The main thread writes one byte per order; each shard's control task reads
//! them on its executor:
//!
//! - `r`: apply the reload waiting in the shared slot (the configuration, and what the app's
//!   supervisor prepared for it on the signal thread), then acknowledge;
//! - `x` (or the socket closing): start draining (close the shard's shutdown semaphore).
//!
//! The slot is a mutex touched once per reload by each shard, never on the request path.

use std::io::Write;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::net::UnixStream;

use super::app::App;
use crate::config::Config;

const RELOAD: u8 = b'r';
const DRAIN: u8 = b'x';

/// What a reload hands every shard.
#[derive(Debug)]
pub struct Reload<U> {
    /// The configuration in force from now on (start values for what needs a restart).
    pub config: Arc<Config>,
    /// The app's part, prepared by its supervisor on the signal thread.
    pub update: U,
}

/// The reload waiting for the shards, and where they acknowledge it.
#[derive(Debug)]
struct Slot<U> {
    /// The latest reload and its number.
    config: Mutex<Option<(u64, Arc<Reload<U>>)>>,
    /// Where shards acknowledge, with the number of the reload they applied.
    acks: Mutex<mpsc::Sender<u64>>,
}

/// The main thread's end.
#[derive(Debug)]
pub struct Control<U> {
    peers: Vec<StdUnixStream>,
    slot: Arc<Slot<U>>,
    acks: mpsc::Receiver<u64>,
    /// Reloads handed out so far.
    generation: u64,
}

/// One shard's end, handed to its executor.
#[derive(Debug)]
pub struct ShardEnd<U> {
    fd: RawFd,
    slot: Arc<Slot<U>>,
}

impl<U> Control<U> {
    /// The channels for `shards` shards: the main end and one end per shard.
    pub fn new(shards: usize) -> std::io::Result<(Control<U>, Vec<ShardEnd<U>>)> {
        let (ack_tx, ack_rx) = mpsc::channel();
        let slot = Arc::new(Slot {
            config: Mutex::new(None),
            acks: Mutex::new(ack_tx),
        });
        let mut peers = Vec::with_capacity(shards);
        let mut ends = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (main, shard) = StdUnixStream::pair()?;
            peers.push(main);
            ends.push(ShardEnd {
                fd: shard.into_raw_fd(),
                slot: Arc::clone(&slot),
            });
        }
        Ok((
            Control {
                peers,
                slot,
                acks: ack_rx,
                generation: 0,
            },
            ends,
        ))
    }

    /// Tells every shard to drain.
    pub fn drain(&mut self) {
        for p in &mut self.peers {
            let _ = p.write_all(&[DRAIN]);
        }
    }

    /// Hands `config` to every shard and waits up to `limit` for them to apply it; returns
    /// how many did.
    pub fn reload(&mut self, config: Reload<U>, limit: Duration) -> usize {
        let config = Arc::new(config);
        self.generation += 1;
        let generation = self.generation;
        if let Ok(mut slot) = self.slot.config.lock() {
            *slot = Some((generation, config));
        }
        for p in &mut self.peers {
            let _ = p.write_all(&[RELOAD]);
        }
        let deadline = Instant::now() + limit;
        let mut applied = 0;
        while applied < self.peers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                // A late acknowledgement of an earlier reload does not count for this one.
                Ok(g) if g == generation => applied += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        applied
    }
}

impl<U> ShardEnd<U> {
    /// Runs on the shard's executor until told to drain: applies reloads, then closes the
    /// shard's shutdown semaphore.
    pub async fn serve<A: App<Update = U>>(self, shard: Rc<A>) {
        // SAFETY: the descriptor was created for this shard by `Control::new` and is owned by
        // nothing else.
        let mut stream = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(self.fd) };
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte).await {
                Ok(1) if byte[0] == RELOAD => self.apply(&shard),
                _ => break,
            }
        }
        shard.core().shutdown.close();
    }

    fn apply<A: App<Update = U>>(&self, shard: &Rc<A>) {
        let config = self.slot.config.lock().ok().and_then(|c| c.clone());
        if let Some((generation, reload)) = config {
            shard.reconfigure(&reload.config, &reload.update);
            shard.core().set_live(Arc::clone(&reload.config));
            if let Ok(acks) = self.slot.acks.lock() {
                let _ = acks.send(generation);
            }
        }
    }
}

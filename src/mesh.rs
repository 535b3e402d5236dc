//! The shard mesh: the only way shards talk to each other. Two operations, as in Dragonfly:
//! "run this on shard k and give me the answer" ([`Mesh::call`]) and "run this on every shard
//! and collect the answers" ([`Mesh::broadcast`]).
//!
//! Built on glommio's channel mesh (a lock-free SPSC channel per ordered pair of shards). Calls
//! and replies travel on two separate meshes: a reply never waits behind a call, so two busy
//! shards calling each other cannot deadlock (a reply channel is always drained by a loop that
//! only completes waiters and never blocks). Each incoming call runs as its own task on the
//! owner, so a slow call does not hold up the calls queued behind it.
//!
//! Generic over the call and reply types, so the runtime owns the closed set of messages and
//! tests use their own. Must not touch sockets or shard data directly: it hands calls to the
//! handler it was given.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};

/// A boxed, non-`Send` future, as shard-local handlers produce.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The handler a shard runs for each call it owns.
pub type Handler<Q, R> = Rc<dyn Fn(Q) -> LocalFuture<R>>;

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// The target shard index is out of range.
    #[error("no shard {0}")]
    NoSuchShard(usize),
    /// The target shard has stopped (shutdown) and dropped the call.
    #[error("shard {0} is gone")]
    PeerGone(usize),
}

/// The builders for the two meshes; clone one per shard before the executors start.
pub struct MeshBuilders<Q: Send + 'static, R: Send + 'static> {
    calls: MeshBuilder<(u64, Q), Full>,
    replies: MeshBuilder<(u64, R), Full>,
}

impl<Q: Send + 'static, R: Send + 'static> Clone for MeshBuilders<Q, R> {
    fn clone(&self) -> Self {
        MeshBuilders {
            calls: self.calls.clone(),
            replies: self.replies.clone(),
        }
    }
}

impl<Q: Send + 'static, R: Send + 'static> MeshBuilders<Q, R> {
    /// Builders for `shards` peers with `capacity` slots per channel.
    pub fn new(shards: usize, capacity: usize) -> Self {
        MeshBuilders {
            calls: MeshBuilder::full(shards, capacity),
            replies: MeshBuilder::full(shards, capacity),
        }
    }

    /// Joins both meshes from inside a shard's executor (waits until every shard has joined)
    /// and starts the receive loops. `handler` runs every call addressed to this shard.
    pub async fn join(self, handler: Handler<Q, R>) -> Result<Rc<Mesh<Q, R>>, MeshError> {
        let (call_tx, mut call_rx) = self
            .calls
            .join()
            .await
            .map_err(|_| MeshError::PeerGone(0))?;
        let (reply_tx, mut reply_rx) = self
            .replies
            .join()
            .await
            .map_err(|_| MeshError::PeerGone(0))?;
        let mesh = Rc::new(Mesh {
            id: call_tx.peer_id(),
            shards: call_tx.nr_consumers(),
            calls: call_tx,
            replies: reply_tx,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            handler,
        });
        for (peer, receiver) in call_rx.streams() {
            let mesh = Rc::clone(&mesh);
            glommio::spawn_local(async move {
                while let Some((id, call)) = receiver.recv().await {
                    let mesh = Rc::clone(&mesh);
                    glommio::spawn_local(async move {
                        let reply = (mesh.handler)(call).await;
                        // A failed send means the caller's shard has stopped: nobody to tell.
                        let _ = mesh.replies.send_to(peer, (id, reply)).await;
                    })
                    .detach();
                }
            })
            .detach();
        }
        for (peer, receiver) in reply_rx.streams() {
            let mesh = Rc::clone(&mesh);
            glommio::spawn_local(async move {
                while let Some((id, reply)) = receiver.recv().await {
                    mesh.complete(id, Ok(reply));
                }
                mesh.fail_peer(peer);
            })
            .detach();
        }
        Ok(mesh)
    }
}

/// One shard's end of the mesh.
pub struct Mesh<Q: Send + 'static, R: Send + 'static> {
    /// This shard's index (the mesh peer id, not a CPU number).
    id: usize,
    /// Number of shards.
    shards: usize,
    /// Outgoing calls, one channel per peer.
    calls: Senders<(u64, Q)>,
    /// Outgoing replies, one channel per peer.
    replies: Senders<(u64, R)>,
    /// Calls this shard made that await a reply: id → (target shard, slot).
    pending: RefCell<HashMap<u64, (usize, Rc<Slot<R>>)>>,
    /// Next call id.
    next_id: Cell<u64>,
    /// Runs calls addressed to this shard (including its own, without a hop).
    handler: Handler<Q, R>,
}

impl<Q: Send + 'static, R: Send + 'static> Mesh<Q, R> {
    /// This shard's index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Runs `call` on shard `target` and returns its answer. A call to this shard runs here
    /// without a hop.
    pub async fn call(&self, target: usize, call: Q) -> Result<R, MeshError> {
        if target >= self.shards {
            return Err(MeshError::NoSuchShard(target));
        }
        if target == self.id {
            return Ok((self.handler)(call).await);
        }
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let slot = Rc::new(Slot::default());
        self.pending
            .borrow_mut()
            .insert(id, (target, Rc::clone(&slot)));
        if self.calls.send_to(target, (id, call)).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(MeshError::PeerGone(target));
        }
        let reply = SlotFuture { slot }.await;
        reply.map_err(|()| MeshError::PeerGone(target))
    }

    /// Runs `make()` on every shard (this one included), concurrently, and returns the answers
    /// in shard order.
    pub async fn broadcast(self: &Rc<Self>, make: impl Fn() -> Q) -> Vec<Result<R, MeshError>> {
        let tasks: Vec<_> = (0..self.shards)
            .map(|k| {
                let mesh = Rc::clone(self);
                let call = make();
                glommio::spawn_local(async move { mesh.call(k, call).await })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await);
        }
        out
    }

    fn complete(&self, id: u64, value: Result<R, ()>) {
        if let Some((_, slot)) = self.pending.borrow_mut().remove(&id) {
            slot.fill(value);
        }
    }

    fn fail_peer(&self, peer: usize) {
        let failed: Vec<u64> = self
            .pending
            .borrow()
            .iter()
            .filter(|(_, (target, _))| *target == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.complete(id, Err(()));
        }
    }
}

/// A single-use, shard-local reply slot.
struct Slot<R> {
    value: RefCell<Option<Result<R, ()>>>,
    waker: RefCell<Option<Waker>>,
}

impl<R> Default for Slot<R> {
    fn default() -> Self {
        Slot {
            value: RefCell::new(None),
            waker: RefCell::new(None),
        }
    }
}

impl<R> Slot<R> {
    fn fill(&self, value: Result<R, ()>) {
        *self.value.borrow_mut() = Some(value);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

struct SlotFuture<R> {
    slot: Rc<Slot<R>>,
}

impl<R> Future for SlotFuture<R> {
    type Output = Result<R, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(v) = self.slot.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

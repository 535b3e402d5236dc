//! The shard mesh: the only way shards talk to each other. Two operations, as in Dragonfly:
//! "run this on shard k and give me the answer" ([`Mesh::call`]) and "run this on every shard
//! and collect the answers" ([`Mesh::broadcast`]).
//!
//! Built on glommio's channel mesh (a lock-free SPSC channel per ordered pair of shards).
//! Calls and replies share one channel per direction, and three rules keep it deadlock-free and
//! cheap:
//!
//! - Nothing on the receive side ever waits: a call is handed to its own task (so a slow call
//!   does not hold up the ones behind it), a reply completes a waiting slot. A channel is
//!   therefore always drained, however busy both shards are.
//! - Senders never wait on the channel either: messages go into a per-peer outbox, and one
//!   sender task per peer moves the whole outbox into the channel as a single batch. Only that
//!   task ever awaits room in the channel (glommio's `send` panics if two tasks wait on one full
//!   channel and the second loses the race), and every message queued while a batch was in
//!   transit rides the next hop together: under load one hop carries many requests.
//! - The channel capacity bounds batches in transit; the outbox itself is bounded by the
//!   callers (each connection has at most one request in flight).
//!
//! Generic over the call and reply types, so the runtime owns the closed set of messages and
//! tests use their own. Must not touch sockets or shard data directly: it hands calls to the
//! handler it was given.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::oneshot;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};

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
    /// The shard did not answer within the caller's limit.
    #[error("shard {0} did not answer in time")]
    Timeout(usize),
    /// This shard has not started serving calls yet.
    #[error("this shard is not serving yet")]
    NotServing,
}

/// One message on the wire between two shards.
enum Envelope<Q, R> {
    /// Run `Q` and reply with the same id.
    Call(u64, Q),
    /// The answer to call `id`.
    Reply(u64, R),
}

/// What travels in one channel slot: every message queued for that peer since the last hop.
type Batch<Q, R> = Vec<Envelope<Q, R>>;

/// The mesh builder; clone one per shard before the executors start.
pub struct MeshBuilders<Q: Send + 'static, R: Send + 'static> {
    mesh: MeshBuilder<Batch<Q, R>, Full>,
}

impl<Q: Send + 'static, R: Send + 'static> Clone for MeshBuilders<Q, R> {
    fn clone(&self) -> Self {
        MeshBuilders {
            mesh: self.mesh.clone(),
        }
    }
}

impl<Q: Send + 'static, R: Send + 'static> MeshBuilders<Q, R> {
    /// A mesh of `shards` peers with `capacity` batches per channel.
    pub fn new(shards: usize, capacity: usize) -> Self {
        MeshBuilders {
            mesh: MeshBuilder::full(shards, capacity),
        }
    }

    /// Joins the mesh from inside a shard's executor (waits until every shard has joined) and
    /// starts the send loops. Nothing is received until [`Mesh::serve`] installs the handler:
    /// calls from peers wait in the channels meanwhile, so the shard can first build the state
    /// its handler needs (which itself holds the mesh).
    pub async fn join(self) -> Result<Rc<Mesh<Q, R>>, MeshError> {
        let (senders, receivers) = self.mesh.join().await.map_err(|_| MeshError::PeerGone(0))?;
        let shards = senders.nr_consumers();
        let mesh = Rc::new(Mesh {
            id: senders.peer_id(),
            shards,
            outboxes: (0..shards).map(|_| Outbox::default()).collect(),
            gone: (0..shards).map(|_| Cell::new(false)).collect(),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            handler: OnceCell::new(),
            receivers: RefCell::new(Some(receivers)),
        });
        let senders = Rc::new(senders);
        for peer in (0..shards).filter(|&p| p != mesh.id) {
            glommio::spawn_local(send_loop(Rc::clone(&mesh), Rc::clone(&senders), peer)).detach();
        }
        Ok(mesh)
    }
}

/// Moves everything queued for `peer` into the channel, one batch per slot. The only task that
/// ever waits on this channel.
async fn send_loop<Q: Send + 'static, R: Send + 'static>(
    mesh: Rc<Mesh<Q, R>>,
    senders: Rc<Senders<Batch<Q, R>>>,
    peer: usize,
) {
    loop {
        let batch = std::future::poll_fn(|cx| mesh.outboxes[peer].take_or_wait(cx)).await;
        if senders.send_to(peer, batch).await.is_err() {
            mesh.fail_peer(peer);
            return;
        }
    }
}

/// Messages waiting for the next hop to one peer.
struct Outbox<Q, R> {
    items: RefCell<Batch<Q, R>>,
    waker: RefCell<Option<Waker>>,
}

impl<Q, R> Default for Outbox<Q, R> {
    fn default() -> Self {
        Outbox {
            items: RefCell::new(Vec::new()),
            waker: RefCell::new(None),
        }
    }
}

impl<Q, R> Outbox<Q, R> {
    fn push(&self, envelope: Envelope<Q, R>) {
        self.items.borrow_mut().push(envelope);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn take_or_wait(&self, cx: &mut Context<'_>) -> Poll<Batch<Q, R>> {
        let mut items = self.items.borrow_mut();
        if items.is_empty() {
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(std::mem::take(&mut *items))
        }
    }
}

/// A call awaiting its reply: the shard it went to, and where the reply goes.
type Pending<R> = (usize, oneshot::Sender<R>);

/// One shard's end of the mesh.
pub struct Mesh<Q: Send + 'static, R: Send + 'static> {
    /// This shard's index (the mesh peer id, not a CPU number).
    id: usize,
    /// Number of shards.
    shards: usize,
    /// Messages waiting for the next hop, one outbox per peer (this shard's own is unused).
    outboxes: Vec<Outbox<Q, R>>,
    /// Peers whose channel has closed (they stopped): calls to them fail at once.
    gone: Vec<Cell<bool>>,
    /// Calls this shard made that await a reply: id → (target shard, slot).
    pending: RefCell<HashMap<u64, Pending<R>>>,
    /// Next call id.
    next_id: Cell<u64>,
    /// Runs calls addressed to this shard (including its own, without a hop); set once by
    /// [`Mesh::serve`].
    handler: OnceCell<Handler<Q, R>>,
    /// The incoming channels, until [`Mesh::serve`] starts their receive loops.
    receivers: RefCell<Option<Receivers<Batch<Q, R>>>>,
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

    /// Installs the handler for calls addressed to this shard and starts receiving. Called
    /// once; later calls are ignored.
    pub fn serve(self: &Rc<Self>, handler: Handler<Q, R>) {
        if self.handler.set(handler).is_err() {
            return;
        }
        let Some(mut receivers) = self.receivers.borrow_mut().take() else {
            return;
        };
        for (peer, receiver) in receivers.streams() {
            let mesh = Rc::clone(self);
            glommio::spawn_local(async move {
                while let Some(batch) = receiver.recv().await {
                    for envelope in batch {
                        mesh.receive(peer, envelope);
                    }
                }
                mesh.fail_peer(peer);
            })
            .detach();
        }
    }

    /// Runs `call` on shard `target` and returns its answer. A call to this shard runs here
    /// without a hop.
    pub async fn call(&self, target: usize, call: Q) -> Result<R, MeshError> {
        if target >= self.shards {
            return Err(MeshError::NoSuchShard(target));
        }
        if target == self.id {
            let handler = self.handler.get().ok_or(MeshError::NotServing)?;
            return Ok(handler(call).await);
        }
        if self.gone[target].get() {
            return Err(MeshError::PeerGone(target));
        }
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, (target, tx));
        self.outboxes[target].push(Envelope::Call(id, call));
        rx.await.ok_or(MeshError::PeerGone(target))
    }

    /// Runs `make()` on every shard (this one included), concurrently, and returns the answers
    /// in shard order; a shard that has not answered within `limit` gives
    /// `Err(MeshError::Timeout)` while the others' answers are kept.
    pub async fn broadcast(
        self: &Rc<Self>,
        make: impl Fn() -> Q,
        limit: std::time::Duration,
    ) -> Vec<Result<R, MeshError>> {
        let calls = (0..self.shards).map(|k| (k, make())).collect();
        self.call_each(calls, limit).await
    }

    /// Runs each `(shard, call)` on its shard, concurrently, and returns the answers in the
    /// order given; a call not answered within `limit` gives `Err(MeshError::Timeout)` while
    /// the others' answers are kept. For "run on some shards", where each gets its own call
    /// (an invalidation sends each key only to its owner).
    pub async fn call_each(
        self: &Rc<Self>,
        calls: Vec<(usize, Q)>,
        limit: std::time::Duration,
    ) -> Vec<Result<R, MeshError>> {
        let tasks: Vec<_> = calls
            .into_iter()
            .map(|(k, call)| {
                let mesh = Rc::clone(self);
                glommio::spawn_local(async move {
                    futures_lite::future::or(mesh.call(k, call), async move {
                        glommio::timer::sleep(limit).await;
                        Err(MeshError::Timeout(k))
                    })
                    .await
                })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await);
        }
        out
    }

    /// Handles one incoming message without waiting: calls get their own task, replies wake
    /// their caller.
    fn receive(self: &Rc<Self>, peer: usize, envelope: Envelope<Q, R>) {
        match envelope {
            Envelope::Call(id, call) => {
                let mesh = Rc::clone(self);
                glommio::spawn_local(async move {
                    // Receive loops only run after `serve` set the handler.
                    let Some(handler) = mesh.handler.get() else {
                        return;
                    };
                    let reply = handler(call).await;
                    mesh.outboxes[peer].push(Envelope::Reply(id, reply));
                })
                .detach();
            }
            Envelope::Reply(id, reply) => {
                let pending = self.pending.borrow_mut().remove(&id);
                if let Some((_, tx)) = pending {
                    tx.send(reply);
                }
            }
        }
    }

    fn fail_peer(&self, peer: usize) {
        self.gone[peer].set(true);
        self.outboxes[peer].items.borrow_mut().clear();
        // Dropping the senders wakes each caller with `PeerGone`.
        self.pending
            .borrow_mut()
            .retain(|_, (target, _)| *target != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
    use std::time::Duration;

    /// Runs `body` on `n` executors joined in one mesh whose handler answers `q * 10 + shard`,
    /// after sleeping `delay_us` microseconds (so calls overlap), and collects each shard's
    /// result.
    fn on_mesh<T, F, Fut>(n: usize, capacity: usize, delay_us: u64, body: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(Rc<Mesh<u64, u64>>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let builders = MeshBuilders::<u64, u64>::new(n, capacity);
        let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(n))
            .on_all_shards(move || async move {
                let mesh = builders.join().await.unwrap();
                let id = mesh.id() as u64;
                let handler: Handler<u64, u64> = Rc::new(move |q| {
                    Box::pin(async move {
                        if delay_us > 0 {
                            glommio::timer::sleep(Duration::from_micros(delay_us)).await;
                        }
                        q * 10 + id
                    })
                });
                mesh.serve(handler);
                let out = body(Rc::clone(&mesh)).await;
                // Keep serving peers until every shard is done with its own calls.
                glommio::timer::sleep(Duration::from_millis(200)).await;
                out
            })
            .unwrap();
        handles.join_all().into_iter().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn call_reaches_the_owner_and_the_answer_comes_back() {
        let results = on_mesh(3, 16, 0, |mesh| async move {
            let me = mesh.id();
            let mut answers = Vec::new();
            for target in 0..3 {
                answers.push((target, mesh.call(target, 7).await.unwrap()));
            }
            assert_eq!(mesh.call(3, 1).await, Err(MeshError::NoSuchShard(3)));
            (me, answers)
        });
        assert_eq!(results.len(), 3);
        for (_, answers) in results {
            for (target, answer) in answers {
                assert_eq!(answer, 70 + target as u64);
            }
        }
    }

    #[test]
    fn broadcast_reaches_every_shard_in_order() {
        let results = on_mesh(3, 16, 0, |mesh| async move {
            mesh.broadcast(|| 1, Duration::from_secs(5)).await
        });
        for answers in results {
            let answers: Vec<u64> = answers.into_iter().map(|a| a.unwrap()).collect();
            assert_eq!(answers, vec![10, 11, 12]);
        }
    }

    #[test]
    fn busy_shards_calling_each_other_do_not_deadlock() {
        // Tiny channels, slow handlers and every shard flooding every other shard at once: the
        // pattern that deadlocks when calls and replies share one bounded channel.
        let results = on_mesh(3, 2, 50, |mesh| async move {
            let tasks: Vec<_> = (0..600u64)
                .map(|i| {
                    let mesh = Rc::clone(&mesh);
                    glommio::spawn_local(async move {
                        let target = (i as usize) % mesh.shards();
                        mesh.call(target, i).await.map(|r| (i, target, r))
                    })
                })
                .collect();
            let mut ok = 0;
            for t in tasks {
                let (i, target, r) = t.await.unwrap();
                assert_eq!(r, i * 10 + target as u64);
                ok += 1;
            }
            ok
        });
        assert_eq!(results, vec![600, 600, 600]);
    }
}

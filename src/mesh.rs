//! The shard mesh: the only way shards talk to each other. Two operations, as in Dragonfly:
//! "run this on shard k and give me the answer" ([`Mesh::call`]) and "run this on every shard
//! and collect the answers" ([`Mesh::broadcast`]).
//!
//! Built on glommio's channel mesh (a lock-free SPSC channel per ordered pair of shards).
//! Calls and replies share one channel per direction, and three rules keep it deadlock-free and
//! cheap:
//!
//! - Nothing on the receive side ever waits: a call the handler answers at once (a cache hit)
//!   is answered in the receive loop itself, any other gets its own task (so a slow call does
//!   not hold up the ones behind it), and a reply completes a waiting slot. A channel is
//!   therefore always drained, however busy both shards are.
//! - Senders never wait on the channel either: messages go into a per-peer outbox, and one
//!   sender task per peer moves the whole outbox into the channel as a single batch. Only that
//!   task ever awaits room in the channel (glommio's `send` panics if two tasks wait on one full
//!   channel and the second loses the race), and every message queued while a batch was in
//!   transit rides the next hop together: under load one hop carries many requests.
//! - The channel capacity bounds batches in transit; the outbox itself is bounded by the
//!   callers (each connection has at most one request in flight).
//!
//! A call waiting for its reply holds a slot in a per-shard slab, indexed by the call id (the
//! slot's index and a generation, so a late reply never lands in a reused slot): no map, no
//! allocation per call. A call with a deadline ([`Mesh::call_until`]) needs no timer of its
//! own either: one sweep per shard, which runs only while calls are waiting (at their
//! earliest deadline, every [`SWEEP`] at the least), fails the calls whose deadline passed
//! with [`MeshError::Timeout`].
//!
//! Generic over the call and reply types: the app owns the closed set of messages and tests
//! use their own. A service sees the mesh through a [`Link`]: typed by its own call and reply,
//! so it never names the app's set. Must not touch sockets or shard data directly: it hands
//! calls to the handler it was given.

use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use slab::Slab;

/// A boxed, non-`Send` future, as shard-local handlers produce.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Longest a shard's sweep sleeps while any call waits: a call made while it sleeps, with an
/// earlier deadline than every other, learns of its timeout at most this much late.
pub const SWEEP: Duration = Duration::from_millis(5);

/// What a handler makes of a call: the answer at once, or the work that will produce it.
pub enum Answer<R> {
    /// Answered without waiting (no task, no allocation).
    Now(R),
    /// Runs as its own task; its output is the answer.
    Later(LocalFuture<R>),
}

/// The handler a shard runs for each call it owns.
pub type Handler<Q, R> = Rc<dyn Fn(Q) -> Answer<R>>;

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
    /// The shard answered with a reply of another kind than the call's.
    #[error("shard {0} answered with an unexpected reply")]
    Unexpected(usize),
}

/// A service's view of the mesh: it sends its own calls `C` and reads its own replies `P`.
/// The app's closed set of messages wraps them (`Q: From<C>`, `P: TryFrom<R>`), so a service
/// is handed `Rc<Mesh<Q, R>>` as a `Link` and never names `Q` or `R`. Costs nothing over a
/// direct call: the conversions are the app's enum wrapping and matching.
pub trait Link<C, P>: Clone + 'static {
    /// This shard's index.
    fn this_shard(&self) -> usize;

    /// Number of shards.
    fn shard_count(&self) -> usize;

    /// Runs `call` on shard `target` (see [`Mesh::call_until`]; no deadline when `None`).
    fn ask(
        &self,
        target: usize,
        call: C,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<P, MeshError>>;

    /// Runs each `(shard, call)` on its shard, concurrently (see [`Mesh::call_each`]).
    fn ask_each(
        &self,
        calls: Vec<(usize, C)>,
        limit: Duration,
    ) -> impl Future<Output = Vec<Result<P, MeshError>>>;
}

impl<Q, R, C, P> Link<C, P> for Rc<Mesh<Q, R>>
where
    Q: Send + From<C> + 'static,
    R: Send + 'static,
    P: TryFrom<R>,
{
    fn this_shard(&self) -> usize {
        self.id
    }

    fn shard_count(&self) -> usize {
        self.shards
    }

    async fn ask(&self, target: usize, call: C, deadline: Option<Instant>) -> Result<P, MeshError> {
        let reply = self.call_by(target, Q::from(call), deadline).await?;
        P::try_from(reply).map_err(|_| MeshError::Unexpected(target))
    }

    async fn ask_each(&self, calls: Vec<(usize, C)>, limit: Duration) -> Vec<Result<P, MeshError>> {
        let targets: Vec<usize> = calls.iter().map(|(k, _)| *k).collect();
        let calls = calls.into_iter().map(|(k, c)| (k, Q::from(c))).collect();
        self.call_each(calls, limit)
            .await
            .into_iter()
            .zip(targets)
            .map(|(reply, k)| {
                reply.and_then(|r| P::try_from(r).map_err(|_| MeshError::Unexpected(k)))
            })
            .collect()
    }
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
            pending: RefCell::new(Slab::new()),
            generation: Cell::new(0),
            sweep: RefCell::new(None),
            handler: OnceCell::new(),
            receivers: RefCell::new(Some(receivers)),
        });
        glommio::spawn_local(sweep_loop(Rc::clone(&mesh))).detach();
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

/// Fails the calls whose deadline passed: wakes at the earliest deadline of the calls
/// waiting, or after [`SWEEP`] at the latest (so a call made meanwhile with an earlier
/// deadline is late by at most that); parked while no call waits (an idle shard is not woken
/// for it).
async fn sweep_loop<Q: Send + 'static, R: Send + 'static>(mesh: Rc<Mesh<Q, R>>) {
    loop {
        std::future::poll_fn(|cx| {
            if mesh.pending.borrow().is_empty() {
                *mesh.sweep.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let now = Instant::now();
        let wait = mesh
            .expire(now)
            .map_or(SWEEP, |next| next.saturating_duration_since(now).min(SWEEP));
        glommio::timer::sleep(wait).await;
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

/// A call awaiting its reply.
struct Pending<R> {
    /// The shard the call went to.
    target: usize,
    /// Distinguishes this call from earlier ones that used the same slot.
    generation: u32,
    /// The answer, once it came (or why none will).
    reply: Option<Result<R, MeshError>>,
    /// The caller, to wake when the answer comes.
    waker: Option<Waker>,
    /// When the caller stops waiting (the sweep then answers `Timeout`).
    deadline: Option<Instant>,
}

/// A call id: the pending slot's index and its generation.
fn call_id(slot: usize, generation: u32) -> u64 {
    (slot as u64) << 32 | u64::from(generation)
}

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
    /// Calls this shard made that await a reply, by the slot index in their call id.
    pending: RefCell<Slab<Pending<R>>>,
    /// Generation of the next call.
    generation: Cell<u32>,
    /// The sweep task, parked while no call waits.
    sweep: RefCell<Option<Waker>>,
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
        self.call_by(target, call, None).await
    }

    /// As [`Mesh::call`], but gives up at `deadline` with `Err(MeshError::Timeout(target))`
    /// (the call may still run on its shard; its late answer is dropped). Costs no timer when
    /// the answer comes at once or from another shard (the sweep watches those); a call this
    /// shard runs as a task races one timer.
    pub async fn call_until(
        &self,
        target: usize,
        call: Q,
        deadline: Instant,
    ) -> Result<R, MeshError> {
        self.call_by(target, call, Some(deadline)).await
    }

    async fn call_by(
        &self,
        target: usize,
        call: Q,
        deadline: Option<Instant>,
    ) -> Result<R, MeshError> {
        if target >= self.shards {
            return Err(MeshError::NoSuchShard(target));
        }
        if target == self.id {
            let handler = self.handler.get().ok_or(MeshError::NotServing)?;
            return match (handler(call), deadline) {
                (Answer::Now(reply), _) => Ok(reply),
                (Answer::Later(work), None) => Ok(work.await),
                (Answer::Later(work), Some(deadline)) => {
                    futures_lite::future::or(async { Ok(work.await) }, async {
                        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()))
                            .await;
                        Err(MeshError::Timeout(target))
                    })
                    .await
                }
            };
        }
        if self.gone[target].get() {
            return Err(MeshError::PeerGone(target));
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            // Already due: not sent (the caller's time is up before the hop).
            return Err(MeshError::Timeout(target));
        }
        let generation = self.generation.get();
        self.generation.set(generation.wrapping_add(1));
        let slot = self.pending.borrow_mut().insert(Pending {
            target,
            generation,
            reply: None,
            waker: None,
            deadline,
        });
        if let Some(sweep) = self.sweep.borrow_mut().take() {
            sweep.wake();
        }
        self.outboxes[target].push(Envelope::Call(call_id(slot, generation), call));
        ReplySlot {
            mesh: self,
            slot,
            generation,
        }
        .await
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
        let until = Instant::now() + limit;
        let tasks: Vec<_> = calls
            .into_iter()
            .map(|(k, call)| {
                let mesh = Rc::clone(self);
                glommio::spawn_local(async move { mesh.call_until(k, call, until).await })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await);
        }
        out
    }

    /// Handles one incoming message without waiting: a call answered at once is answered
    /// here, any other gets its own task; a reply wakes its caller.
    fn receive(self: &Rc<Self>, peer: usize, envelope: Envelope<Q, R>) {
        match envelope {
            Envelope::Call(id, call) => {
                // Receive loops only run after `serve` set the handler.
                let Some(handler) = self.handler.get() else {
                    return;
                };
                match handler(call) {
                    Answer::Now(reply) => self.outboxes[peer].push(Envelope::Reply(id, reply)),
                    Answer::Later(work) => {
                        let mesh = Rc::clone(self);
                        glommio::spawn_local(async move {
                            let reply = work.await;
                            mesh.outboxes[peer].push(Envelope::Reply(id, reply));
                        })
                        .detach();
                    }
                }
            }
            Envelope::Reply(id, reply) => self.complete(id, Ok(reply)),
        }
    }

    /// Hands `reply` to the call `id` is waiting on, if it still waits.
    fn complete(&self, id: u64, reply: Result<R, MeshError>) {
        let (slot, generation) = ((id >> 32) as usize, id as u32);
        let waker = match self.pending.borrow_mut().get_mut(slot) {
            Some(p) if p.generation == generation && p.reply.is_none() => {
                p.reply = Some(reply);
                p.waker.take()
            }
            _ => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Answers `Timeout` to every waiting call whose deadline is not after `now`; returns the
    /// earliest deadline of the calls still waiting.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut wakers = Vec::new();
        let mut next: Option<Instant> = None;
        for (_, p) in self.pending.borrow_mut().iter_mut() {
            match p.deadline {
                Some(d) if p.reply.is_none() && d <= now => {
                    p.reply = Some(Err(MeshError::Timeout(p.target)));
                    wakers.extend(p.waker.take());
                }
                Some(d) if p.reply.is_none() => next = Some(next.map_or(d, |n| n.min(d))),
                _ => {}
            }
        }
        for w in wakers {
            w.wake();
        }
        next
    }

    fn fail_peer(&self, peer: usize) {
        self.gone[peer].set(true);
        self.outboxes[peer].items.borrow_mut().clear();
        let mut wakers = Vec::new();
        for (_, p) in self.pending.borrow_mut().iter_mut() {
            if p.target == peer && p.reply.is_none() {
                p.reply = Some(Err(MeshError::PeerGone(peer)));
                wakers.extend(p.waker.take());
            }
        }
        for w in wakers {
            w.wake();
        }
    }
}

/// The caller's side of a call in flight: resolves to the reply, and frees its slot when the
/// reply came or the caller stopped waiting (a late reply then finds no slot).
struct ReplySlot<'a, Q: Send + 'static, R: Send + 'static> {
    mesh: &'a Mesh<Q, R>,
    slot: usize,
    generation: u32,
}

impl<Q: Send + 'static, R: Send + 'static> Future for ReplySlot<'_, Q, R> {
    type Output = Result<R, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut pending = self.mesh.pending.borrow_mut();
        match pending.get_mut(self.slot) {
            Some(p) if p.generation == self.generation => match p.reply.take() {
                Some(reply) => {
                    pending.remove(self.slot);
                    Poll::Ready(reply)
                }
                None => {
                    match &mut p.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            },
            // Freed already: only after the reply was taken, which ends the future.
            _ => Poll::Ready(Err(MeshError::PeerGone(0))),
        }
    }
}

impl<Q: Send + 'static, R: Send + 'static> Drop for ReplySlot<'_, Q, R> {
    fn drop(&mut self) {
        let mut pending = self.mesh.pending.borrow_mut();
        if pending
            .get(self.slot)
            .is_some_and(|p| p.generation == self.generation)
        {
            pending.remove(self.slot);
        }
    }
}

#[cfg(test)]
mod tests;

//! Model endpoints: where a batch of inputs becomes a batch of outputs.
//!
//! [`ModelEndpoint`] is the seam; [`Endpoint`] is the closed set of concrete endpoints behind
//! it (today `Embedded`, the built-in financial models run on the owning shard; remote HTTP
//! endpoints join the enum later). An endpoint never touches the cache or the queues: it gets
//! inputs and returns one result per input, in order.

use glommio::executor;

use crate::models::{self, ModelError, ModelInput, ModelOutput};

/// A model endpoint: computes a batch, one result per input, in order. A failing item fails
/// alone.
#[allow(async_fn_in_trait)]
pub trait ModelEndpoint {
    /// The endpoint's id, sent as `X-Atlas-Endpoint`.
    fn id(&self) -> &'static str;

    /// Computes every input of the batch.
    async fn infer(&self, inputs: Vec<ModelInput>) -> Vec<Result<ModelOutput, ModelError>>;
}

/// Every kind of endpoint Atlas can route to.
pub enum Endpoint {
    /// The built-in models, computed on this shard.
    Embedded(Embedded),
}

impl ModelEndpoint for Endpoint {
    fn id(&self) -> &'static str {
        match self {
            Endpoint::Embedded(e) => e.id(),
        }
    }

    async fn infer(&self, inputs: Vec<ModelInput>) -> Vec<Result<ModelOutput, ModelError>> {
        match self {
            Endpoint::Embedded(e) => e.infer(inputs).await,
        }
    }
}

/// Nice value of the threads that run the embedded models: below the shard's I/O thread, so
/// under contention for the core the kernel favours connection handling.
const MODEL_NICE: i32 = 5;

/// The built-in models, computed on the owning shard's core.
///
/// A model call is synchronous CPU work (up to tens of milliseconds for the largest accepted
/// inputs), so it does not run on the shard's executor thread: a cooperative task queue cannot
/// preempt one long computation, and a single large portfolio would stall every connection on
/// the shard. It runs on the executor's blocking thread, which glommio places on the same CPU
/// as the executor, at a lower priority (nice +5): the work stays on the owning core, the
/// kernel preempts it for I/O, cache hits keep flowing while a batch computes, and batches
/// of one shard run one after another, like calls to one accelerator.
pub struct Embedded;

impl Embedded {
    /// The endpoint of the current shard.
    pub fn new() -> Self {
        Embedded
    }

    async fn infer(&self, inputs: Vec<ModelInput>) -> Vec<Result<ModelOutput, ModelError>> {
        executor()
            .spawn_blocking(move || {
                lower_priority_once();
                inputs.iter().map(models::compute).collect()
            })
            .await
    }

    fn id(&self) -> &'static str {
        "embedded"
    }
}

impl Default for Embedded {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static RENICED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lowers the calling thread's scheduling priority to [`MODEL_NICE`], once per thread.
fn lower_priority_once() {
    RENICED.with(|done| {
        if !done.replace(true) {
            // SAFETY: setpriority on the calling thread's own id; no memory is shared.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, MODEL_NICE);
            }
        }
    });
}

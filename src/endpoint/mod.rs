//! Model endpoints: where a batch of inputs becomes a batch of outputs.
//!
//! [`ModelEndpoint`] is the seam; [`Endpoint`] is the closed set of concrete endpoints behind
//! it: `Embedded`, the built-in financial models run on the owning shard; `Http`, a remote
//! endpoint speaking Atlas's batch protocol; `V2`, one model of an inference server speaking
//! the Open Inference Protocol (KServe V2). An endpoint never touches the cache or the queues:
//! it gets inputs and returns one result per input, in order.

pub mod http;
pub(crate) mod item;
pub mod v2;

use glommio::executor;

pub use http::HttpEndpoint;
pub use v2::V2Endpoint;

use crate::models::{self, ModelError, ModelInput, ModelOutput};

/// A model endpoint: computes a batch, one result per input, in order. A failing item fails
/// alone.
#[allow(async_fn_in_trait)]
pub trait ModelEndpoint {
    /// The endpoint's id, sent as `X-Atlas-Endpoint`.
    fn id(&self) -> &str;

    /// Computes every input of the batch: one result per input, in order, or a batch-level
    /// failure (transport, timeout, a non-200 answer) that the caller may retry elsewhere.
    async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError>;
}

pub use crate::client::EndpointError;

/// One result per input, in order.
pub type Outputs = Vec<Result<ModelOutput, ModelError>>;

/// Every kind of endpoint Atlas can route to.
pub enum Endpoint {
    /// The built-in models, computed on this shard.
    Embedded(Embedded),
    /// A remote endpoint speaking the batch protocol.
    Http(HttpEndpoint),
    /// A model of an inference server speaking the Open Inference Protocol.
    V2(V2Endpoint),
}

impl ModelEndpoint for Endpoint {
    fn id(&self) -> &str {
        match self {
            Endpoint::Embedded(e) => e.id(),
            Endpoint::Http(e) => e.id(),
            Endpoint::V2(e) => e.id(),
        }
    }

    async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError> {
        match self {
            Endpoint::Embedded(e) => e.infer(inputs).await,
            Endpoint::Http(e) => e.infer(inputs).await,
            Endpoint::V2(e) => e.infer(inputs).await,
        }
    }
}

/// Nice value of the threads that run the embedded models: below the shard's I/O thread, so
/// under contention for the core the kernel favours connection handling.
const MODEL_NICE: i32 = 5;

/// Largest estimated batch cost computed inline on the shard's executor thread.
const INLINE_BUDGET_NS: u64 = 250_000;

/// The built-in models, computed on the owning shard's core.
///
/// A model call is synchronous CPU work: from a few microseconds (a risk questionnaire) to
/// tens of milliseconds (the largest accepted portfolio, ~70 ms). A cooperative task queue
/// cannot preempt one long computation, so where a batch runs depends on its estimated cost:
///
/// - up to [`INLINE_BUDGET_NS`] (250 µs) it runs inline on the shard's executor, yielding
///   between items: handing work to another thread costs ~90 µs here, more than most
///   computations;
/// - above that it runs on the executor's blocking thread, which Atlas pins to the shard's
///   CPU on first use (glommio alone placed every shard's blocking thread on CPU 0) and runs
///   at a lower priority (nice +5): the work stays on the owning core, the kernel preempts it
///   for I/O, and cache hits keep flowing while a large batch computes. The inputs are copied
///   for that thread, which is small next to a computation of more than 250 µs.
///
/// Batches of one shard run one after another on the blocking thread, like calls to one
/// accelerator.
pub struct Embedded {
    /// The shard's CPU, which the blocking thread is pinned to.
    cpu: Option<usize>,
}

impl Embedded {
    /// The endpoint of a shard pinned to `cpu`.
    pub fn new(cpu: Option<usize>) -> Self {
        Embedded { cpu }
    }
}

impl ModelEndpoint for Embedded {
    async fn infer(&self, inputs: &[ModelInput]) -> Result<Outputs, EndpointError> {
        let cost: u64 = inputs.iter().map(estimated_ns).sum();
        if cost <= INLINE_BUDGET_NS {
            let mut out = Vec::with_capacity(inputs.len());
            for input in inputs {
                out.push(models::compute(input));
                glommio::yield_if_needed().await;
            }
            return Ok(out);
        }
        let owned = inputs.to_vec();
        let cpu = self.cpu;
        Ok(executor()
            .spawn_blocking(move || {
                prepare_model_thread(cpu);
                owned.iter().map(models::compute).collect()
            })
            .await)
    }

    fn id(&self) -> &str {
        "embedded"
    }
}

/// A rough estimate of one computation's cost in nanoseconds on this class of machine, from
/// the input sizes that dominate each model (calibrated with `cargo bench --bench models`:
/// covariance and optimiser for portfolios, month-by-month plans for budgets, the parameter
/// search for forecasts). Only used to pick inline or offloaded execution.
fn estimated_ns(input: &ModelInput) -> u64 {
    fn portfolio(holdings: usize, prices: usize) -> u64 {
        let n2 = (holdings * holdings) as u64;
        (n2 * prices as u64 + 2000 * n2) * 3 / 2
    }
    match input {
        ModelInput::Portfolio(p) => {
            let len = p.holdings.first().map_or(0, |h| h.prices.len());
            portfolio(p.holdings.len(), len)
        }
        ModelInput::Risk(r) => r.holdings.as_ref().map_or(3_000, |h| {
            portfolio(h.len(), h.first().map_or(0, |x| x.prices.len()))
        }),
        ModelInput::Budget(b) => 5_000 + 12_000 * b.debts.len() as u64,
        ModelInput::Cashflow(c) => 1_400 * c.history.len() as u64,
    }
}

thread_local! {
    static PREPARED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Once per thread: pins the calling (blocking) thread to the shard's CPU and lowers its
/// scheduling priority to [`MODEL_NICE`].
fn prepare_model_thread(cpu: Option<usize>) {
    PREPARED.with(|done| {
        if !done.replace(true) {
            if let Some(id) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id });
            }
            // SAFETY: setpriority on the calling thread's own id; no memory is shared.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, MODEL_NICE);
            }
        }
    });
}

//! The protocol-free request and response every API decodes to and encodes
//! from. Nothing here knows about JSON, protobuf or HTTP.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::tensor::Tensor;

/// One inference call, as the serving core sees it.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    /// The client's id, echoed in the response.
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// The outputs to return, in this order; empty means all of them.
    pub outputs: Vec<String>,
}

/// The result of one inference call.
#[derive(Debug, Clone)]
pub struct InferResponse {
    pub model_name: String,
    /// The concrete version that ran (never an alias).
    pub model_version: u64,
    pub id: Option<String>,
    pub outputs: Vec<Tensor>,
    pub timing: Timing,
}

/// Where the time of one call went, for the `x-podium-*-us` headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Waiting in the inference queue for a free worker.
    pub queue: Duration,
    /// Running the model (including tensor conversion in and out).
    pub inference: Duration,
    /// The rows of the run the request was part of, for a model with
    /// dynamic batching (its own rows when it ran alone); `None` for a
    /// model that does not batch.
    pub batch_size: Option<usize>,
}

/// What became of a shadow copy of a request.
#[derive(Debug)]
pub enum ShadowOutcome {
    Answered(InferResponse),
    /// Failed, or skipped (over budget, shadow queue full); the message says which.
    Failed(String),
}

/// Delivers a shadow's outcome once the shadow call is done.
pub type ShadowReceiver = oneshot::Receiver<ShadowOutcome>;

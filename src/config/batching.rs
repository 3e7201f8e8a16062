//! The `[model.<name>]` tables: settings of a model, whichever endpoints
//! route to it: its backend, its dynamic batching and its ONNX Runtime options.
//!
//! ```toml
//! [model.mlp_large]
//! backend = "tract"                     # ort | tract [default: --backend / PODIUM_BACKEND]
//!
//! [model.mlp_large.batching]
//! max_batch_size = 64                   # the most rows one run takes (2..=4096)
//! max_queue_delay_us = 200              # the longest a request waits for company [default: 0]
//! preferred_batch_sizes = [8, 16, 32, 64]  # sent at once at these sizes [default: none]
//! max_concurrent_batches = 2            # batches running at once (1..=1024) [default: no cap]
//!
//! [model.mlp_large.onnxruntime]         # each key replaces its --ort-* default
//! intra_op_threads = 2                  # [default: 1]
//! inter_op_threads = 1                  # [default: 1]
//! graph_optimization = "all"            # disable | basic | extended | all [default: all]
//! memory_arena = true                   # [default: true]
//! spinning = false                      # [default: false]
//! execution_providers = ["cpu"]         # cpu | cuda | tensorrt | openvino | xnnpack [default: ["cpu"]]
//! ```

use serde::Deserialize;

use crate::runtime::batch::BatchingPolicy;
use crate::runtime::options::{OrtOptions, OrtOverrides};
use crate::runtime::Backend;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelToml {
    #[serde(default)]
    backend: Option<Backend>,
    #[serde(default)]
    batching: Option<BatchingToml>,
    #[serde(default)]
    onnxruntime: Option<OrtOverrides>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchingToml {
    max_batch_size: usize,
    #[serde(default)]
    max_queue_delay_us: u64,
    #[serde(default)]
    preferred_batch_sizes: Vec<usize>,
    #[serde(default)]
    max_concurrent_batches: Option<usize>,
}

impl ModelToml {
    /// The model's backend, if it names one; tract is refused by a build
    /// without the `tract` feature, with the build that has it.
    pub(super) fn backend(&mut self, model: &str) -> Result<Option<Backend>, String> {
        let Some(backend) = self.backend.take() else {
            return Ok(None);
        };
        backend.check_built(&format!("[model.{model}] backend"))?;
        Ok(Some(backend))
    }

    /// The model's ONNX Runtime options, if it has any, checked over the
    /// defaults (the flags' values are checked again at start-up).
    pub(super) fn onnxruntime(&mut self, model: &str) -> Result<Option<OrtOverrides>, String> {
        let Some(o) = self.onnxruntime.take() else {
            return Ok(None);
        };
        o.over(&OrtOptions::default())
            .check(&format!("[model.{model}.onnxruntime]"))?;
        Ok(Some(o))
    }

    /// The model's batching policy, if it has one, checked; errors name
    /// the setting and the fix.
    pub(super) fn batching(self, model: &str) -> Result<Option<BatchingPolicy>, String> {
        self.batching
            .map(|b| {
                BatchingPolicy::new(
                    model,
                    b.max_batch_size,
                    b.max_queue_delay_us,
                    b.preferred_batch_sizes,
                )?
                .with_max_concurrent_batches(model, b.max_concurrent_batches)
            })
            .transpose()
    }
}

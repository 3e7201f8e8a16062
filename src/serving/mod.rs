//! The serving core: which model version answers a request, and running it.
//! Protocol-free: the APIs call [`Core::infer`] with a decoded request.

mod history;
mod models;

use std::sync::Arc;
use std::time::Instant;

pub use history::{Event, History};
pub use models::{ModelInfo, ModelStore, SlotStatus, StoreOptions, StoreStatus, SwapOutcome};

use crate::error::Error;
use crate::registry::VersionSpec;
use crate::request::{InferRequest, InferResponse};
use crate::runtime::pool::InferencePool;
use crate::runtime::InFlight;

/// Everything a request needs: the loaded models and the inference threads.
pub struct Core {
    pub models: Arc<ModelStore>,
    pub pool: InferencePool,
}

impl Core {
    /// Resolves `model`/`version`, checks the request against the model's
    /// signature and runs it on the inference pool.
    pub async fn infer(
        &self,
        model: &str,
        version: &VersionSpec,
        mut request: InferRequest,
    ) -> Result<InferResponse, Error> {
        let started = Instant::now();
        let loaded = self.models.get(model, version).await?;
        let _in_flight = InFlight::new(Arc::clone(&loaded));
        let outputs = loaded.signature.check(&loaded.label(), &mut request)?;
        let inputs = std::mem::take(&mut request.inputs);
        let (outputs, mut timing) = self.pool.run(Arc::clone(&loaded), inputs, outputs).await?;
        // Inference time as the caller sees it also covers the hop back.
        timing.inference = started
            .elapsed()
            .saturating_sub(timing.queue)
            .max(timing.inference);
        Ok(InferResponse {
            model_name: loaded.name.clone(),
            model_version: loaded.version,
            id: request.id,
            outputs,
            timing,
        })
    }
}

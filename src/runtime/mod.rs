//! Model execution: a loaded model version, its signature, and the pool of
//! inference threads that runs it off the async runtime.

pub mod ort;
pub mod pool;
mod signature;

use std::path::Path;
use std::sync::Mutex;

pub use signature::{Signature, TensorSpec};

use crate::error::Error;
use crate::tensor::Tensor;

/// One ONNX model version, ready to run: its signature and one ONNX Runtime
/// session per inference worker, so concurrent requests never wait on each
/// other's session (`Session::run` needs exclusive access).
///
/// Dropped — sessions and memory freed — when the last request holding it ends.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    pub signature: Signature,
    sessions: Vec<Mutex<::ort::session::Session>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl LoadedModel {
    /// Loads `path` with one session per worker. Blocking: call it off the
    /// async runtime.
    pub fn load(
        name: &str,
        version: u64,
        path: &Path,
        workers: usize,
    ) -> Result<LoadedModel, Error> {
        let label = format!("{name} v{version}");
        let mut sessions = Vec::with_capacity(workers.max(1));
        let mut signature = None;
        for _ in 0..workers.max(1) {
            let session = ort::open_session(path, &label)?;
            if signature.is_none() {
                signature = Some(ort::signature(&session, &label)?);
            }
            sessions.push(Mutex::new(session));
        }
        Ok(LoadedModel {
            name: name.to_string(),
            version,
            signature: signature.expect("at least one session"),
            sessions,
        })
    }

    /// `fraud v3`: how the model is named in messages.
    pub fn label(&self) -> String {
        format!("{} v{}", self.name, self.version)
    }

    /// Runs the model on worker `worker`'s session. `inputs` must already
    /// have passed [`Signature::check`]; `outputs` are indexes into the
    /// signature's outputs.
    pub fn run(
        &self,
        worker: usize,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        let slot = &self.sessions[worker % self.sessions.len()];
        // A poisoned lock only means an earlier run panicked mid-call; the
        // session itself holds no Rust-side state that could be torn.
        let mut session = slot.lock().unwrap_or_else(|p| p.into_inner());
        ort::run(
            &mut session,
            &self.signature,
            &self.label(),
            inputs,
            outputs,
        )
    }
}

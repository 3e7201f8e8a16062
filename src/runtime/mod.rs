//! Model execution: a loaded model version, its signature, and the pool of
//! inference threads that runs it off the async runtime.

pub mod batch;
pub mod options;
pub mod ort;
pub mod pool;
mod signature;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use signature::{Signature, TensorSpec};

use crate::error::Error;
use crate::tensor::Tensor;
use batch::{BatchModel, Batcher, BatchingPolicy};
use options::OrtOptions;

/// One ONNX model version, ready to run: its signature and one ONNX Runtime
/// session per inference worker, so concurrent requests never wait on each
/// other's session (`Session::run` needs exclusive access).
///
/// Dropped — sessions and memory freed — when the last request holding it ends.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    pub signature: Signature,
    /// When this copy finished loading.
    pub loaded_at: SystemTime,
    /// Size of the ONNX file; with the session count, the memory estimate.
    pub file_bytes: u64,
    /// The ONNX Runtime options every session of this copy was opened with.
    pub options: OrtOptions,
    /// Requests currently using this copy (see [`InFlight`]).
    in_flight: AtomicUsize,
    /// Set once every session has run the warm-up.
    warm: AtomicBool,
    sessions: Vec<Mutex<::ort::session::Session>>,
    /// Present when the model's requests are batched; dropped with this
    /// version, so a batch never mixes versions.
    batcher: Option<Batcher>,
}

/// Counts one request on a model version for as long as it lives.
pub struct InFlight(Arc<LoadedModel>);

impl InFlight {
    pub fn new(model: Arc<LoadedModel>) -> InFlight {
        model.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(model)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BatchModel for LoadedModel {
    fn run(
        &self,
        worker: usize,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        LoadedModel::run(self, worker, inputs, outputs)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn label(&self) -> String {
        LoadedModel::label(self)
    }
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
    /// Loads `path` with one session per worker and the default ONNX
    /// Runtime options. Blocking: call it off the async runtime.
    pub fn load(
        name: &str,
        version: u64,
        path: &Path,
        workers: usize,
    ) -> Result<LoadedModel, Error> {
        LoadedModel::load_with(name, version, path, workers, &OrtOptions::default())
    }

    /// Loads `path` with one session per worker, each opened with
    /// `options`. Blocking: call it off the async runtime.
    pub fn load_with(
        name: &str,
        version: u64,
        path: &Path,
        workers: usize,
        options: &OrtOptions,
    ) -> Result<LoadedModel, Error> {
        let label = format!("{name} v{version}");
        let mut sessions = Vec::with_capacity(workers.max(1));
        let mut signature = None;
        for _ in 0..workers.max(1) {
            let session = ort::open_session_with(path, &label, options)?;
            if signature.is_none() {
                signature = Some(ort::signature(&session, &label)?);
            }
            sessions.push(Mutex::new(session));
        }
        Ok(LoadedModel {
            name: name.to_string(),
            version,
            signature: signature.expect("at least one session"),
            loaded_at: SystemTime::now(),
            file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            options: options.clone(),
            in_flight: AtomicUsize::new(0),
            warm: AtomicBool::new(false),
            sessions,
            batcher: None,
        })
    }

    /// Batches this version's requests with `policy`; refused (with the
    /// reason and the fix) unless every input and output has a dynamic
    /// first dimension.
    pub fn enable_batching(&mut self, policy: BatchingPolicy) -> Result<(), Error> {
        policy
            .check(&self.name, &self.label(), &self.signature)
            .map_err(Error::Refused)?;
        self.batcher = Some(Batcher::new(policy));
        Ok(())
    }

    /// The dynamic batcher, when this model batches its requests.
    pub fn batcher(&self) -> Option<&Batcher> {
        self.batcher.as_ref()
    }

    /// Whether [`LoadedModel::warm_up`] has succeeded.
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// Requests using this copy right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Estimated resident memory: ONNX Runtime keeps about one copy of the
    /// weights per session.
    pub fn memory_estimate(&self) -> u64 {
        self.file_bytes.saturating_mul(self.sessions.len() as u64)
    }

    /// The memory this loaded version holds, as the memory limit counts it:
    /// the one measure loads and evictions under `--memory-limit` use.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_estimate()
    }

    /// What [`LoadedModel::memory_bytes`] will say of a version of
    /// `file_bytes` once loaded with `sessions` sessions, before loading it
    /// (so room is made first). Keep the two in step.
    pub fn expected_memory_bytes(file_bytes: u64, sessions: usize) -> u64 {
        file_bytes.saturating_mul(sessions.max(1) as u64)
    }

    /// Runs every session once on synthetic input of the declared shape
    /// (dynamic dimensions as 1, zeros / empty strings), so the first real
    /// request does not pay for lazy initialisation and a model that cannot
    /// run at all is caught before it serves.
    pub fn warm_up(&self) -> Result<(), Error> {
        use crate::tensor::{DataType, TensorData};
        let outputs: Vec<usize> = (0..self.signature.outputs.len()).collect();
        for worker in 0..self.sessions.len() {
            let inputs = self
                .signature
                .inputs
                .iter()
                .map(|spec| {
                    let shape: Vec<i64> = spec
                        .shape
                        .iter()
                        .map(|&d| if d < 0 { 1 } else { d })
                        .collect();
                    const MAX_WARM_ELEMENTS: u64 = 1 << 26;
                    let n = crate::tensor::element_count(&shape)
                        .ok()
                        .filter(|&n| n <= MAX_WARM_ELEMENTS)
                        .ok_or_else(|| {
                            Error::Refused(format!(
                                "cannot warm up {}: input \"{}\" declares shape {}, too large to run on synthetic input",
                                self.label(),
                                spec.name,
                                crate::tensor::fmt_shape(&shape)
                            ))
                        })? as usize;
                    let data = match spec.datatype {
                        DataType::Bool => TensorData::Bool(vec![false; n]),
                        DataType::Uint8 => TensorData::Uint8(vec![0; n]),
                        DataType::Uint16 => TensorData::Uint16(vec![0; n]),
                        DataType::Uint32 => TensorData::Uint32(vec![0; n]),
                        DataType::Uint64 => TensorData::Uint64(vec![0; n]),
                        DataType::Int8 => TensorData::Int8(vec![0; n]),
                        DataType::Int16 => TensorData::Int16(vec![0; n]),
                        DataType::Int32 => TensorData::Int32(vec![0; n]),
                        DataType::Int64 => TensorData::Int64(vec![0; n]),
                        DataType::Fp16 => TensorData::Fp16(vec![half::f16::ZERO; n]),
                        DataType::Bf16 => TensorData::Bf16(vec![half::bf16::ZERO; n]),
                        DataType::Fp32 => TensorData::Fp32(vec![0.0; n]),
                        DataType::Fp64 => TensorData::Fp64(vec![0.0; n]),
                        DataType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
                    };
                    Tensor::new(spec.name.clone(), shape, data)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.run(worker, inputs, &outputs).map_err(|e| {
                Error::Unavailable(format!("warm-up run of {} failed: {e}", self.label()))
            })?;
        }
        self.warm.store(true, Ordering::Release);
        Ok(())
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

//! Model execution: a loaded model version, its signature, the engine that
//! runs it (ONNX Runtime or tract, see [`backend`]), and the pool of
//! inference threads that runs it off the async runtime.

pub mod backend;
pub mod batch;
pub mod cost;
pub mod idle;
pub mod options;
pub mod ort;
pub mod pool;
mod signature;
#[cfg(feature = "tract")]
mod tract;
pub mod weights;

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant, SystemTime};

pub use backend::{Backend, Backends};
pub use signature::{Signature, TensorSpec};

use crate::error::Error;
use crate::tensor::Tensor;
use batch::{BatchModel, Batcher, BatchingPolicy};
use cost::RunCost;
use options::OrtOptions;
use weights::SharedWeights;

/// One ONNX model version, ready to run: its signature and its [`Engine`].
/// On ONNX Runtime, one session per inference worker, so concurrent requests
/// never wait on each other's session (`Session::run` needs exclusive
/// access); the sessions share one copy of the weights ([`SharedWeights`]),
/// so memory grows with the model, not with the number of inference threads.
///
/// Dropped — sessions and memory freed — when the last request holding it ends.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    pub signature: Signature,
    /// When this copy finished loading.
    pub loaded_at: SystemTime,
    /// Size of the ONNX file; with the shared weights and the session
    /// count, the memory estimate.
    pub file_bytes: u64,
    /// The ONNX Runtime options every session of this copy was opened with.
    pub options: OrtOptions,
    /// Requests currently using this copy (see [`InFlight`]).
    in_flight: AtomicUsize,
    /// Set once every session has run the warm-up.
    warm: AtomicBool,
    engine: Engine,
    /// Bytes of weights the ONNX Runtime sessions share
    /// ([`SharedWeights::bytes`]), for the estimate; the sessions themselves
    /// keep the shared values alive. 0 on tract.
    shared_bytes: u64,
    /// Present when the model's requests are batched; dropped with this
    /// version, so a batch never mixes versions.
    batcher: Option<Batcher>,
    /// What a run typically costs, learnt from every run (warm-up included).
    cost: RunCost,
}

/// What runs a loaded version's requests.
enum Engine {
    /// One ONNX Runtime session per inference worker, so concurrent requests
    /// never wait on each other's session (`Session::run` needs exclusive access).
    Ort(Vec<Mutex<::ort::session::Session>>),
    /// One optimized tract plan that every inference worker runs at once
    /// (tract runs with `&self`): one copy of the weights per version.
    #[cfg(feature = "tract")]
    Tract(tract::TractModel),
}

impl Engine {
    /// Copies of the model in memory: ONNX Runtime sessions, or the one tract plan.
    fn copies(&self) -> usize {
        match self {
            Engine::Ort(sessions) => sessions.len(),
            #[cfg(feature = "tract")]
            Engine::Tract(_) => 1,
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Engine::Ort(_) => Backend::Ort,
            #[cfg(feature = "tract")]
            Engine::Tract(_) => Backend::Tract,
        }
    }
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
            .field("backend", &self.engine.backend())
            .field("copies", &self.engine.copies())
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

    /// Loads `path` on `backend`: ONNX Runtime with one session per worker,
    /// each opened with `options`, or tract with one plan for all workers.
    /// Without the `tract` feature, tract is refused with the build that has
    /// it. Blocking: call it off the async runtime.
    pub fn load_on(
        name: &str,
        version: u64,
        path: &Path,
        workers: usize,
        backend: Backend,
        options: &OrtOptions,
    ) -> Result<LoadedModel, Error> {
        match backend {
            Backend::Ort => LoadedModel::load_with(name, version, path, workers, options),
            #[cfg(feature = "tract")]
            Backend::Tract => {
                let label = format!("{name} v{version}");
                let (model, signature) = tract::load(path, &label)?;
                Ok(LoadedModel::new(
                    name,
                    version,
                    path,
                    signature,
                    options,
                    Engine::Tract(model),
                    0,
                ))
            }
            #[cfg(not(feature = "tract"))]
            Backend::Tract => Err(Error::Unavailable(
                backend
                    .check_built(&format!("cannot load {name} v{version}"))
                    .err()
                    .unwrap_or_default(),
            )),
        }
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
        let weights = SharedWeights::from_file(path);
        let mut sessions = Vec::with_capacity(workers.max(1));
        let mut signature = None;
        for _ in 0..workers.max(1) {
            let session = ort::open_session_sharing(path, &label, options, &weights)?;
            if signature.is_none() {
                signature = Some(ort::signature(&session, &label)?);
            }
            sessions.push(Mutex::new(session));
        }
        Ok(LoadedModel::new(
            name,
            version,
            path,
            signature.expect("at least one session"),
            options,
            Engine::Ort(sessions),
            weights.bytes(),
        ))
    }

    fn new(
        name: &str,
        version: u64,
        path: &Path,
        signature: Signature,
        options: &OrtOptions,
        engine: Engine,
        shared_bytes: u64,
    ) -> LoadedModel {
        LoadedModel {
            name: name.to_string(),
            version,
            signature,
            loaded_at: SystemTime::now(),
            file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            options: options.clone(),
            in_flight: AtomicUsize::new(0),
            warm: AtomicBool::new(false),
            engine,
            shared_bytes,
            batcher: None,
            cost: RunCost::default(),
        }
    }

    /// The engine this version runs on.
    pub fn backend(&self) -> Backend {
        self.engine.backend()
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

    /// Estimated resident memory of this copy. ONNX Runtime: the shared
    /// weights twice (as read, and pre-packed for its matrix kernels), and
    /// whatever of the file is not shared once per session; tract: one copy
    /// for all workers. The one place the estimate is made; `--memory-limit`
    /// and `/admin/status` use it.
    pub fn memory_estimate(&self) -> u64 {
        match self.engine.backend() {
            Backend::Ort => {
                memory_estimate(self.file_bytes, self.shared_bytes, self.engine.copies())
            }
            Backend::Tract => self.file_bytes,
        }
    }

    /// The estimate for a file of `file_bytes` on `backend` before it is
    /// read: on ONNX Runtime as if all of it were shareable weights, as the
    /// bulk of a model file usually is (see [`weights`] for what is not
    /// shared). About what [`LoadedModel::memory_bytes`] will say once it is
    /// loaded, so room is made first.
    pub fn expected_memory(file_bytes: u64, sessions: usize, backend: Backend) -> u64 {
        match backend {
            Backend::Ort => memory_estimate(file_bytes, file_bytes, sessions),
            Backend::Tract => file_bytes,
        }
    }

    /// The memory this loaded version holds, as the memory limit counts it:
    /// the one measure loads and evictions under `--memory-limit` use.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_estimate()
    }

    /// Runs every session (or the tract plan) once on synthetic input of the declared shape
    /// (dynamic dimensions as 1, zeros / empty strings), so the first real
    /// request does not pay for lazy initialisation and a model that cannot
    /// run at all is caught before it serves.
    pub fn warm_up(&self) -> Result<(), Error> {
        use crate::tensor::{DataType, TensorData};
        let outputs: Vec<usize> = (0..self.signature.outputs.len()).collect();
        for worker in 0..self.engine.copies() {
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

    /// Runs the model on worker `worker`'s session (tract: on the shared
    /// plan). `inputs` must already have passed [`Signature::check`];
    /// `outputs` are indexes into the signature's outputs.
    pub fn run(
        &self,
        worker: usize,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        match &self.engine {
            Engine::Ort(sessions) => {
                let slot = &sessions[worker % sessions.len()];
                // A poisoned lock only means an earlier run panicked mid-call; the
                // session itself holds no Rust-side state that could be torn.
                let session = slot.lock().unwrap_or_else(|p| p.into_inner());
                self.run_ort(session, inputs, outputs)
            }
            #[cfg(feature = "tract")]
            Engine::Tract(model) => self.timed(inputs, |inputs| {
                model.run(&self.signature, &self.label(), inputs, outputs)
            }),
        }
    }

    /// Runs the model on the calling thread if a run on these inputs
    /// typically takes at most `limit` and one of the sessions in
    /// `sessions` is free right now (tract: always, its plan is shared);
    /// otherwise hands `inputs` back untouched. The inference pool's
    /// run-to-completion path: see [`pool::InferencePool::run`].
    pub fn try_run_here(
        &self,
        sessions: Range<usize>,
        limit: Duration,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Result<Vec<Tensor>, Error>, Vec<Tensor>> {
        match self.cost.estimate(cost::elements(&inputs)) {
            Some(typical) if typical <= limit => {}
            _ => return Err(inputs),
        }
        match &self.engine {
            Engine::Ort(all) => {
                for i in sessions {
                    let session = match all[i % all.len()].try_lock() {
                        Ok(session) => session,
                        Err(TryLockError::Poisoned(p)) => p.into_inner(),
                        Err(TryLockError::WouldBlock) => continue,
                    };
                    return Ok(self.run_ort(session, inputs, outputs));
                }
                Err(inputs)
            }
            #[cfg(feature = "tract")]
            Engine::Tract(model) => Ok(self.timed(inputs, |inputs| {
                model.run(&self.signature, &self.label(), inputs, outputs)
            })),
        }
    }

    fn run_ort(
        &self,
        mut session: MutexGuard<'_, ::ort::session::Session>,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        self.timed(inputs, |inputs| {
            ort::run(
                &mut session,
                &self.signature,
                &self.label(),
                inputs,
                outputs,
            )
        })
    }

    /// Runs `f` and counts how long a successful run took in [`RunCost`].
    fn timed(
        &self,
        inputs: Vec<Tensor>,
        f: impl FnOnce(Vec<Tensor>) -> Result<Vec<Tensor>, Error>,
    ) -> Result<Vec<Tensor>, Error> {
        let elements = cost::elements(&inputs);
        let started = Instant::now();
        let result = f(inputs);
        if result.is_ok() {
            self.cost.record(elements, started.elapsed());
        }
        result
    }
}

/// See [`LoadedModel::memory_estimate`].
fn memory_estimate(file_bytes: u64, shared_bytes: u64, sessions: usize) -> u64 {
    let own = file_bytes.saturating_sub(shared_bytes);
    shared_bytes
        .saturating_mul(2)
        .saturating_add(own.saturating_mul(sessions.max(1) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(irrefutable_let_patterns)] // refutable with the tract feature
    fn a_caller_run_needs_a_free_session_of_its_own_range() {
        ort::init(None).expect("run scripts/setup-ort.sh");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx");
        let model = LoadedModel::load("fraud", 1, &path, 2).unwrap();
        let row = || {
            let data = crate::tensor::TensorData::Fp32(vec![0.5; 30]);
            vec![Tensor::new("input".into(), vec![1, 30], data).unwrap()]
        };
        let limit = Duration::from_secs(1);
        assert!(
            model.try_run_here(0..2, limit, row(), &[0]).is_err(),
            "no run measured yet: the cost is unknown"
        );
        model.warm_up().unwrap();
        let Engine::Ort(sessions) = &model.engine else {
            unreachable!()
        };
        let busy = sessions[0].lock().unwrap();
        let back = model.try_run_here(0..1, limit, row(), &[0]).unwrap_err();
        assert_eq!(back, row(), "the inputs come back untouched");
        // Session 1 (another pool's, or a free one of the same pool) is free.
        assert!(model
            .try_run_here(0..2, limit, row(), &[0])
            .unwrap()
            .is_ok());
        drop(busy);
        assert!(model
            .try_run_here(0..1, limit, row(), &[0])
            .unwrap()
            .is_ok());
    }

    #[test]
    fn shared_weights_count_twice_and_the_rest_once_per_session() {
        // All shared: as read plus pre-packed, whatever the session count.
        assert_eq!(memory_estimate(100, 100, 8), 200);
        assert_eq!(memory_estimate(100, 100, 1), 200);
        // Nothing shared (e.g. weights computed at load): one copy per session.
        assert_eq!(memory_estimate(100, 0, 8), 800);
        assert_eq!(memory_estimate(100, 90, 4), 180 + 40);
    }
}

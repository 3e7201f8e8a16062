//! The ONNX Runtime backend (through the `ort` crate, library loaded at run time).
//!
//! The shared library comes from the `onnxruntime` wheel on PyPI, unpacked by
//! `scripts/setup-ort.sh` into `.ort/` of the checkout. [`init`] finds it
//! without any environment variable and, when it cannot, says where it
//! looked and the command that fixes it. It is the one way every binary,
//! example and bench finds the library, so `--ort-lib` / `ORT_DYLIB_PATH`
//! mean the same everywhere.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use half::{bf16, f16};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

use super::options::OrtOptions;
use super::signature::{Signature, TensorSpec};
use super::weights::SharedWeights;
use crate::error::Error;
use crate::tensor::{DataType, Tensor, TensorData};

const LIB_NAME: &str = "libonnxruntime.so";
const FIX: &str = "run ./scripts/setup-ort.sh in the Podium checkout (it fetches the onnxruntime wheel from PyPI into .ort/), or set ORT_DYLIB_PATH=/path/to/libonnxruntime.so";

static ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();

/// Where Podium looks for the library when none is named explicitly, in order.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // Beside the binary (an installed copy), then the checkout the binary
        // was built in (target/{debug,release}[/deps]/podium → .ort/).
        for dir in exe.ancestors().skip(1).take(4) {
            out.push(dir.join(LIB_NAME));
            out.push(dir.join(".ort").join(LIB_NAME));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(".ort").join(LIB_NAME));
    }
    out.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ort")
            .join(LIB_NAME),
    );
    out.dedup();
    out
}

/// The environment variable that names the library (as ort's own loader
/// reads it); an empty value counts as unset.
pub const ENV_VAR: &str = "ORT_DYLIB_PATH";

/// Loads ONNX Runtime once per process: from `explicit` (a flag such as
/// `--ort-lib`) if given, else from `ORT_DYLIB_PATH` if set, else from the
/// first of [`library_candidates`] that exists. Returns the path it loaded.
pub fn init(explicit: Option<&Path>) -> Result<PathBuf, String> {
    static LOADED: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = LOADED.get() {
        return Ok(path.clone());
    }
    let from_env = std::env::var_os(ENV_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = match explicit.or(from_env.as_deref()) {
        Some(p) if p.is_file() => p.to_path_buf(),
        Some(p) => {
            return Err(format!(
            "ONNX Runtime library {} (from --ort-lib / ORT_DYLIB_PATH) does not exist. Fix: {FIX}",
            p.display()
        ))
        }
        None => {
            let candidates = library_candidates();
            match candidates.iter().find(|p| p.is_file()) {
                Some(p) => p.clone(),
                None => {
                    let looked: Vec<String> = candidates
                        .iter()
                        .map(|p| format!("  {}", p.display()))
                        .collect();
                    return Err(format!(
                        "ONNX Runtime library not found. Looked in:\n{}\nFix: {FIX}",
                        looked.join("\n")
                    ));
                }
            }
        }
    };
    return_large_frees_to_the_os();
    let builder = ort::init_from(&path).map_err(|e| {
        format!(
            "could not load ONNX Runtime from {}: {e}. Podium needs ONNX Runtime 1.31 or newer. Fix: {FIX}",
            path.display()
        )
    })?;
    let environment = builder
        .with_name("podium")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("could not start ONNX Runtime from {}: {e}", path.display()))?;
    let _ = ENVIRONMENT.set(environment);
    Ok(LOADED.get_or_init(|| path).clone())
}

/// Makes glibc `malloc` (which ONNX Runtime's allocations go through; Podium's
/// own use mimalloc) map every block of 1 MiB or more on its own, so freeing
/// it returns the memory to the OS at once. Without this, glibc raises the
/// threshold to the largest block freed so far (up to 32 MiB), and the
/// weights ONNX Runtime pre-packs, then frees because the shared container
/// already holds them ([`SharedWeights`]), stay in the heap: each session
/// would still cost about one copy of the weights in resident memory. An
/// operator's own `MALLOC_MMAP_THRESHOLD_` is left as it is.
fn return_large_frees_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        const THRESHOLD: libc::c_int = 1 << 20;
        // SAFETY: mallopt only changes malloc's tuning; it is safe to call at
        // any time and from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        }
    }
}

/// Opens one session with Podium's default options ([`OrtOptions::default`]:
/// one intra-op thread, no spinning): parallelism comes from the inference
/// workers, each owning a session, so pools never fight over cores.
/// Public so benchmarks can time raw ONNX Runtime with exactly these settings.
pub fn open_session(path: &Path, label: &str) -> Result<Session, Error> {
    open_session_with(path, label, &OrtOptions::default())
}

/// Opens one session with `options` (a model's `[model.<name>.onnxruntime]`
/// over the `--ort-*` defaults), holding its own copy of the weights.
pub fn open_session_with(path: &Path, label: &str, options: &OrtOptions) -> Result<Session, Error> {
    open(path, label, options, None)
}

/// Opens one session with `options` that uses `weights` in place instead of
/// a copy of its own: every session of a model version opened with the same
/// [`SharedWeights`] shares one copy of them (and of their pre-packed forms).
pub fn open_session_sharing(
    path: &Path,
    label: &str,
    options: &OrtOptions,
    weights: &SharedWeights,
) -> Result<Session, Error> {
    open(path, label, options, Some(weights))
}

fn open(
    path: &Path,
    label: &str,
    options: &OrtOptions,
    weights: Option<&SharedWeights>,
) -> Result<Session, Error> {
    let Some(environment) = ENVIRONMENT.get() else {
        return Err(Error::Internal(format!(
            "cannot load {label}: ONNX Runtime is not initialised"
        )));
    };
    let fail = |e: ort::Error| {
        Error::Unavailable(format!("cannot load {label} from {}: {e}", path.display()))
    };
    let mut builder = options
        .apply(Session::builder(environment).map_err(fail)?)
        .map_err(fail)?;
    if let Some(weights) = weights {
        builder = weights.apply(builder).map_err(fail)?;
    }
    builder.commit_from_file(path).map_err(fail)
}

/// Reads the session's inputs and outputs. Models whose inputs or outputs
/// are not plain tensors of a supported type are refused, with the fix.
pub(super) fn signature(session: &Session, label: &str) -> Result<Signature, Error> {
    let spec = |name: &str, kind: &str, dtype: &ValueType| -> Result<TensorSpec, Error> {
        match dtype {
            ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
                name: name.to_string(),
                datatype: datatype_of(*ty).ok_or_else(|| {
                    Error::Unavailable(format!(
                        "cannot serve {label}: {kind} \"{name}\" has element type {ty:?}, which the Open Inference Protocol cannot carry"
                    ))
                })?,
                shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
            }),
            other => Err(Error::Unavailable(format!(
                "cannot serve {label}: {kind} \"{name}\" is {other:?}, not a tensor. For scikit-learn classifiers convert with skl2onnx option zipmap=False"
            ))),
        }
    };
    Ok(Signature {
        inputs: session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), "input", o.dtype()))
            .collect::<Result<_, _>>()?,
        outputs: session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), "output", o.dtype()))
            .collect::<Result<_, _>>()?,
    })
}

fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// Runs one request. `inputs` are in signature order, already checked.
pub(super) fn run(
    session: &mut Session,
    signature: &Signature,
    label: &str,
    inputs: Vec<Tensor>,
    outputs: &[usize],
) -> Result<Vec<Tensor>, Error> {
    let mut values: Vec<(String, SessionInputValue<'static>)> = Vec::with_capacity(inputs.len());
    for tensor in inputs {
        let value = to_ort(tensor.shape, tensor.data)
            .map_err(|e| Error::InvalidInput(format!("input \"{}\": {e}", tensor.name)))?;
        values.push((tensor.name, value.into()));
    }
    let mut results = session
        .run(values)
        .map_err(|e| Error::InvalidInput(format!("model {label} rejected the request: {e}")))?;
    outputs
        .iter()
        .map(|&i| {
            let name = &signature.outputs[i].name;
            let value = results.remove(name.as_str()).ok_or_else(|| {
                Error::Internal(format!("model {label} produced no output \"{name}\""))
            })?;
            from_ort(name, &value)
                .map_err(|e| Error::Internal(format!("model {label} output \"{name}\": {e}")))
        })
        .collect()
}

fn to_ort(shape: Vec<i64>, data: TensorData) -> Result<DynValue, String> {
    macro_rules! prim {
        ($v:expr) => {
            OrtTensor::from_array((shape, $v))
                .map(|t| t.into_dyn())
                .map_err(|e| e.to_string())
        };
    }
    match data {
        TensorData::Bool(v) => prim!(v),
        TensorData::Uint8(v) => prim!(v),
        TensorData::Uint16(v) => prim!(v),
        TensorData::Uint32(v) => prim!(v),
        TensorData::Uint64(v) => prim!(v),
        TensorData::Int8(v) => prim!(v),
        TensorData::Int16(v) => prim!(v),
        TensorData::Int32(v) => prim!(v),
        TensorData::Int64(v) => prim!(v),
        TensorData::Fp16(v) => prim!(v),
        TensorData::Bf16(v) => prim!(v),
        TensorData::Fp32(v) => prim!(v),
        TensorData::Fp64(v) => prim!(v),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .enumerate()
                .map(|(i, bytes)| {
                    if bytes.contains(&0) {
                        return Err(format!(
                            "BYTES element {i} contains a NUL byte; ONNX string tensors hold NUL-free UTF-8 text"
                        ));
                    }
                    String::from_utf8(bytes).map_err(|_| {
                        format!("BYTES element {i} is not valid UTF-8; ONNX string tensors hold UTF-8 text")
                    })
                })
                .collect::<Result<Vec<String>, String>>()?;
            OrtTensor::from_string_array((shape, strings.as_slice()))
                .map(|t| t.into_dyn())
                .map_err(|e| e.to_string())
        }
    }
}

fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(format!("is {:?}, not a tensor", value.dtype()));
    };
    macro_rules! prim {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            (shape.to_vec(), TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Bool => prim!(bool, Bool),
        TensorElementType::Uint8 => prim!(u8, Uint8),
        TensorElementType::Uint16 => prim!(u16, Uint16),
        TensorElementType::Uint32 => prim!(u32, Uint32),
        TensorElementType::Uint64 => prim!(u64, Uint64),
        TensorElementType::Int8 => prim!(i8, Int8),
        TensorElementType::Int16 => prim!(i16, Int16),
        TensorElementType::Int32 => prim!(i32, Int32),
        TensorElementType::Int64 => prim!(i64, Int64),
        TensorElementType::Float16 => prim!(f16, Fp16),
        TensorElementType::Bfloat16 => prim!(bf16, Bf16),
        TensorElementType::Float32 => prim!(f32, Fp32),
        TensorElementType::Float64 => prim!(f64, Fp64),
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            (
                shape.to_vec(),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => return Err(format!("has unsupported element type {other:?}")),
    };
    Tensor::new(name.to_string(), shape, data).map_err(|e| e.to_string())
}

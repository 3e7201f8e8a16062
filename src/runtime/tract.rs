//! The pure-Rust backend: tract-onnx (built with the `tract` cargo feature).
//!
//! A model is parsed, typed and optimized once per loaded version into one
//! plan. tract runs a plan with `&self` (each run gets its own state), so
//! that one plan serves every inference thread at once: one copy of the
//! weights per version, where ONNX Runtime keeps one session per thread.
//!
//! tract implements most of the core ONNX operators but only five ONNX-ML
//! ones (CategoryMapper, LinearClassifier, LinearRegressor, Normalizer,
//! TreeEnsembleClassifier); a model using any other operator is refused at
//! load time with the operators named.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{
    tract_ndarray, DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt,
    IntoTValue, IntoTensor, TDim, TValue, Tensor as TractTensor, TractError, TypedModel,
    TypedSimplePlan,
};
use tract_onnx::tract_core::model::IntoRunnable;
use tract_onnx::tract_hir::infer::Factoid;

use super::signature::{Signature, TensorSpec};
use crate::error::Error;
use crate::tensor::{DataType, Tensor, TensorData};

/// The ONNX-ML operators tract implements (named in refusals).
const ML_OPS: &str =
    "CategoryMapper, LinearClassifier, LinearRegressor, Normalizer, TreeEnsembleClassifier";

/// One loaded version on tract: an optimized plan shared by every inference
/// thread (`run` takes `&self`).
pub(super) struct TractModel {
    plan: Arc<TypedSimplePlan>,
}

/// Parses, types and optimizes `path`; returns the plan and the signature.
/// A model with operators tract lacks is refused with their names and the
/// fix (serve it on ONNX Runtime).
pub(super) fn load(path: &Path, label: &str) -> Result<(TractModel, Signature), Error> {
    let fail = |what: &str, e: TractError| {
        Error::Unavailable(format!(
            "cannot load {label} from {} on tract: {what}: {e:#}",
            path.display()
        ))
    };
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(|e| fail("cannot read the ONNX graph", e))?;
    let missing = unsupported_ops(&model);
    if !missing.is_empty() {
        return Err(Error::Refused(format!(
            "cannot load {label} on tract: operator(s) {} not supported by tract (of the ONNX-ML operators it has only {ML_OPS}); serve this model with backend = \"ort\" in [model.<name>] of the endpoints file",
            missing.join(", ")
        )));
    }
    declare_inputs(&mut model).map_err(|e| fail("cannot read the input shapes", e))?;
    let typed = model
        .into_typed()
        .map_err(|e| fail("cannot type the graph", e))?;
    let signature = signature(&typed, label)?;
    let plan = typed
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| fail("cannot optimize the graph", e))?;
    Ok((TractModel { plan }, signature))
}

/// The ONNX operator types in `model` that tract parsed as unimplemented,
/// sorted, each once.
fn unsupported_ops(model: &InferenceModel) -> Vec<String> {
    let mut ops: Vec<String> = model
        .nodes()
        .iter()
        .filter_map(|node| {
            let name = node.op.name();
            name.strip_prefix("Unimplemented(")
                .and_then(|rest| rest.strip_suffix(')'))
                .map(str::to_string)
        })
        .collect();
    ops.sort();
    ops.dedup();
    ops
}

/// Gives every input a full fact: a dimension the file leaves open (`None`
/// in scikit-learn's `[None, n]`) becomes a symbol, the first one shared as
/// the batch size `N`, so the plan accepts any size there.
fn declare_inputs(model: &mut InferenceModel) -> Result<(), TractError> {
    let batch = model.symbols.sym("N");
    for i in 0..model.inputs.len() {
        let fact = model.input_fact(i)?.clone();
        let Some(datum_type) = fact.datum_type.concretize() else {
            continue;
        };
        let Some(rank) = fact.shape.rank().concretize() else {
            continue;
        };
        let dims: Vec<TDim> = fact
            .shape
            .dims()
            .take(rank as usize)
            .enumerate()
            .map(|(axis, dim)| match dim.concretize() {
                Some(d) => d,
                None if axis == 0 => TDim::Sym(batch.clone()),
                None => TDim::Sym(model.symbols.new_with_prefix("d")),
            })
            .collect();
        model.set_input_fact(i, InferenceFact::dt_shape(datum_type, dims))?;
    }
    Ok(())
}

/// Inputs and outputs as tract typed them: a symbolic dimension is `-1`.
fn signature(model: &TypedModel, label: &str) -> Result<Signature, Error> {
    let spec = |kind: &str, name: String, fact: &tract_onnx::prelude::TypedFact| {
        let datatype = datatype_of(fact.datum_type).ok_or_else(|| {
            Error::Unavailable(format!(
                "cannot serve {label} on tract: {kind} \"{name}\" has element type {:?}, which the Open Inference Protocol cannot carry",
                fact.datum_type
            ))
        })?;
        let shape = fact
            .shape
            .iter()
            .map(|d| d.to_i64().unwrap_or(-1))
            .collect();
        Ok::<_, Error>(TensorSpec {
            name,
            datatype,
            shape,
        })
    };
    let fact = |outlet| {
        model.outlet_fact(outlet).map_err(|e| {
            Error::Internal(format!(
                "cannot read the signature of {label} on tract: {e}"
            ))
        })
    };
    let inputs = model
        .inputs
        .iter()
        .map(|&outlet| spec("input", model.node(outlet.node).name.clone(), fact(outlet)?))
        .collect::<Result<_, _>>()?;
    let outputs = model
        .outputs
        .iter()
        .map(|&outlet| {
            let name = model
                .outlet_label(outlet)
                .map(str::to_string)
                .unwrap_or_else(|| model.node(outlet.node).name.clone());
            spec("output", name, fact(outlet)?)
        })
        .collect::<Result<_, _>>()?;
    Ok(Signature { inputs, outputs })
}

fn datatype_of(ty: DatumType) -> Option<DataType> {
    Some(match ty {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

impl TractModel {
    /// Runs one request. `inputs` are in signature order, already checked;
    /// `outputs` are indexes into the signature's outputs.
    pub(super) fn run(
        &self,
        signature: &Signature,
        label: &str,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        let values = inputs
            .into_iter()
            .map(|t| {
                to_tract(t.shape, t.data)
                    .map(IntoTValue::into_tvalue)
                    .map_err(|e| Error::InvalidInput(format!("input \"{}\": {e}", t.name)))
            })
            .collect::<Result<_, _>>()?;
        let results = self.plan.run(values).map_err(|e| {
            Error::InvalidInput(format!("model {label} rejected the request: {e:#}"))
        })?;
        outputs
            .iter()
            .map(|&i| {
                let name = &signature.outputs[i].name;
                let value = results.get(i).ok_or_else(|| {
                    Error::Internal(format!("model {label} produced no output \"{name}\""))
                })?;
                from_tract(name, value)
                    .map_err(|e| Error::Internal(format!("model {label} output \"{name}\": {e}")))
            })
            .collect()
    }
}

fn to_tract(shape: Vec<i64>, data: TensorData) -> Result<TractTensor, String> {
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d} is negative")))
        .collect::<Result<Vec<usize>, String>>()?;
    macro_rules! prim {
        ($v:expr) => {
            tract_ndarray::ArrayD::from_shape_vec(dims, $v)
                .map(IntoTensor::into_tensor)
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
        TensorData::Fp32(v) => prim!(v),
        TensorData::Fp64(v) => prim!(v),
        TensorData::Bf16(_) => Err(
            "BF16 tensors cannot run on tract; serve this model with backend = \"ort\"".to_string(),
        ),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .enumerate()
                .map(|(i, bytes)| {
                    String::from_utf8(bytes).map_err(|_| {
                        format!("BYTES element {i} is not valid UTF-8; ONNX string tensors hold UTF-8 text")
                    })
                })
                .collect::<Result<Vec<String>, String>>()?;
            prim!(strings)
        }
    }
}

fn from_tract(name: &str, value: &TValue) -> Result<Tensor, String> {
    let shape: Vec<i64> = value.shape().iter().map(|&d| d as i64).collect();
    let plain = value.try_as_plain_ram().map_err(|e| e.to_string())?;
    macro_rules! prim {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(plain.as_slice::<$t>().map_err(|e| e.to_string())?.to_vec())
        };
    }
    let data = match value.datum_type() {
        DatumType::Bool => prim!(bool, Bool),
        DatumType::U8 => prim!(u8, Uint8),
        DatumType::U16 => prim!(u16, Uint16),
        DatumType::U32 => prim!(u32, Uint32),
        DatumType::U64 => prim!(u64, Uint64),
        DatumType::I8 => prim!(i8, Int8),
        DatumType::I16 => prim!(i16, Int16),
        DatumType::I32 => prim!(i32, Int32),
        DatumType::I64 => prim!(i64, Int64),
        DatumType::F16 => prim!(half::f16, Fp16),
        DatumType::F32 => prim!(f32, Fp32),
        DatumType::F64 => prim!(f64, Fp64),
        DatumType::String => TensorData::Bytes(
            plain
                .as_slice::<String>()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|s| s.clone().into_bytes())
                .collect(),
        ),
        other => return Err(format!("has unsupported element type {other:?}")),
    };
    Tensor::new(name.to_string(), shape, data).map_err(|e| e.to_string())
}

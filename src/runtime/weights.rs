//! One copy of a model version's weights for all of its sessions.
//!
//! Every inference thread has its own ONNX Runtime session (`Session::run`
//! needs exclusive access), and a session opened from a file keeps its own
//! copy of every initializer plus its own pre-packed (MLAS) copy of the
//! matrices. [`SharedWeights`] reads the large initializers out of the ONNX
//! file once, as ONNX Runtime values that every session of the version uses
//! in place (`AddInitializer`), and gives the sessions one pre-packed weights
//! container, so the packed copies are made once as well. A session then
//! holds only its graph, its kernels and its scratch memory.
//!
//! What is shared: initializers of the main graph stored inline as
//! `raw_data` (how PyTorch, tf2onnx, skl2onnx and `onnx.numpy_helper` write
//! tensors) of a fixed-width numeric type, at least [`MIN_SHARED_BYTES`]
//! long. Anything else — external data files, strings, typed-field
//! encodings, weights a graph computes at load (constant folding) — stays
//! per session, exactly as before.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use half::{bf16, f16};
use ort::session::builder::{PrepackedWeights, SessionBuilder};
use ort::value::{DynValue, Tensor as OrtTensor};
use prost::Message;

/// Initializers smaller than this stay in each session: sharing them saves
/// nothing worth a value per session's builder.
pub const MIN_SHARED_BYTES: usize = 16 * 1024;

/// The initializers of one model version that all its sessions share, and
/// the container of their pre-packed forms. Cheap to apply to any number of
/// session builders; dropped (memory freed) with the last session using it.
pub struct SharedWeights {
    initializers: Vec<(String, Arc<DynValue>)>,
    prepacked: PrepackedWeights,
    bytes: u64,
}

impl std::fmt::Debug for SharedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWeights")
            .field("initializers", &self.initializers.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl SharedWeights {
    /// Reads the shareable initializers of the ONNX model at `path`. A file
    /// that cannot be read or does not parse as an ONNX model shares
    /// nothing: ONNX Runtime reports the problem when a session opens it.
    pub fn from_file(path: &Path) -> SharedWeights {
        match std::fs::read(path) {
            Ok(model) => SharedWeights::read(Bytes::from(model)),
            Err(_) => SharedWeights::read(Bytes::new()),
        }
    }

    /// Reads the shareable initializers of the ONNX model in `model`.
    pub fn read(model: Bytes) -> SharedWeights {
        let mut initializers = Vec::new();
        let mut bytes = 0u64;
        if let Ok(model) = ModelProto::decode(model) {
            for tensor in model.graph.map(|g| g.initializer).unwrap_or_default() {
                if let Some(value) = to_value(&tensor) {
                    bytes += tensor.raw_data.len() as u64;
                    initializers.push((tensor.name, Arc::new(value)));
                }
            }
        }
        SharedWeights {
            initializers,
            prepacked: PrepackedWeights::new(),
            bytes,
        }
    }

    /// Bytes of initializer data held once here instead of in every session.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Makes a session opened from `builder` use these weights in place.
    /// With nothing to share, the builder is left exactly as it was.
    pub fn apply(&self, mut builder: SessionBuilder) -> Result<SessionBuilder, ort::Error> {
        if self.initializers.is_empty() {
            return Ok(builder);
        }
        for (name, value) in &self.initializers {
            builder = builder
                .with_initializer(name, Arc::clone(value))
                .map_err(ort::Error::<()>::from)?;
        }
        builder
            .with_prepacked_weights(&self.prepacked)
            .map_err(ort::Error::<()>::from)
    }
}

/// The ONNX element types a shared initializer may have (`TensorProto.DataType`).
fn to_value(tensor: &TensorProto) -> Option<DynValue> {
    const EXTERNAL: i32 = 1;
    if tensor.data_location == EXTERNAL || tensor.raw_data.len() < MIN_SHARED_BYTES {
        return None;
    }
    let raw = &tensor.raw_data;
    let count = tensor
        .dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
    macro_rules! share {
        ($t:ty) => {{
            const SIZE: usize = std::mem::size_of::<$t>();
            if count.checked_mul(SIZE)? != raw.len() {
                return None;
            }
            let data: Vec<$t> = raw
                .chunks_exact(SIZE)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of SIZE bytes")))
                .collect();
            OrtTensor::from_array((tensor.dims.clone(), data))
                .ok()
                .map(|t| t.into_dyn())
        }};
    }
    match tensor.data_type {
        1 => share!(f32),
        2 => share!(u8),
        3 => share!(i8),
        4 => share!(u16),
        5 => share!(i16),
        6 => share!(i32),
        7 => share!(i64),
        10 => share!(f16),
        11 => share!(f64),
        12 => share!(u32),
        13 => share!(u64),
        16 => share!(bf16),
        _ => None,
    }
}

// The few fields of onnx.proto that locate the initializers; every other
// field is skipped by the decoder. Numbers as in onnx/onnx.proto.

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "bytes", tag = "9")]
    raw_data: Bytes,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, dims: &[i64], raw_data: Vec<u8>, data_location: i32) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: 1,
            name: name.into(),
            raw_data: raw_data.into(),
            data_location,
        }
    }

    fn model(initializer: Vec<TensorProto>) -> Bytes {
        ModelProto {
            graph: Some(GraphProto { initializer }),
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn shares_large_inline_initializers_only() {
        crate::runtime::ort::init(None).expect("run scripts/setup-ort.sh");
        let large = 128 * 64;
        let shared = SharedWeights::read(model(vec![
            tensor("w", &[128, 64], vec![0; 4 * large], 0),
            tensor("bias", &[64], vec![0; 4 * 64], 0),
            tensor("external", &[128, 64], vec![0; 4 * large], 1),
            // Data that does not match its shape is left for ONNX Runtime to refuse.
            tensor("torn", &[128, 64], vec![0; 4 * large - 4], 0),
        ]));
        assert_eq!(shared.bytes(), 4 * large as u64);
        assert_eq!(shared.initializers.len(), 1);
        assert_eq!(shared.initializers[0].0, "w");
    }

    #[test]
    fn a_file_that_is_not_a_model_shares_nothing() {
        crate::runtime::ort::init(None).expect("run scripts/setup-ort.sh");
        assert_eq!(
            SharedWeights::read(Bytes::from_static(b"not onnx")).bytes(),
            0
        );
        let missing = SharedWeights::from_file(Path::new("/nonexistent/model.onnx"));
        assert_eq!(missing.bytes(), 0);
    }
}

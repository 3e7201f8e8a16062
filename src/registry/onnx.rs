//! Reads an ONNX model's header: just enough of its protobuf (`ModelProto`)
//! to tell a model from any other file and to name its graph's inputs and
//! outputs with their element types and shapes, without ONNX Runtime (the CLI registers files without loading
//! it). Fields not declared here, node and weight data included, are
//! skipped by the decoder, not copied.

use std::collections::HashSet;

use prost::Message;

/// The parts of `onnx.ModelProto` the check reads.
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// The parts of `onnx.GraphProto` the check reads.
#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

/// An `onnx.ValueInfoProto` (a graph input or output): its name and type.
#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

/// `onnx.TypeProto`, tensors only (sequences and maps are left unread).
#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<DimensionProto>,
}

/// `onnx.TensorShapeProto.Dimension`: a size, or a named (dynamic) one.
/// The two are a `oneof` in ONNX; on the wire that is two optional fields.
#[derive(Clone, PartialEq, Message)]
struct DimensionProto {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
}

/// An `onnx.TensorProto` (a weight), by name only: its data is skipped.
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(string, tag = "8")]
    name: String,
}

/// What the header says about a model: its graph's inputs (weights that
/// older models also list as inputs left out) and outputs, by name, and
/// the type of each (in the same order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxSummary {
    pub ir_version: i64,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub input_types: Vec<TensorType>,
    pub output_types: Vec<TensorType>,
}

/// The declared type of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TensorType {
    /// ONNX's `TensorProto.DataType` number (1 FLOAT, 7 INT64, …); 0 when
    /// not declared or not a tensor.
    pub elem_type: i32,
    /// Each dimension's size, None for a dynamic one; None when no shape is declared.
    pub shape: Option<Vec<Option<i64>>>,
}

impl TensorType {
    fn of(value: &ValueInfoProto) -> TensorType {
        let Some(tensor) = value.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
            return TensorType::default();
        };
        TensorType {
            elem_type: tensor.elem_type,
            shape: tensor.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| d.dim_value.filter(|&v| v > 0))
                    .collect()
            }),
        }
    }

    /// ONNX's name of the element type (`FLOAT`, `INT64`, …).
    pub fn elem_name(&self) -> String {
        let name = match self.elem_type {
            0 => "UNDEFINED",
            1 => "FLOAT",
            2 => "UINT8",
            3 => "INT8",
            4 => "UINT16",
            5 => "INT16",
            6 => "INT32",
            7 => "INT64",
            8 => "STRING",
            9 => "BOOL",
            10 => "FLOAT16",
            11 => "DOUBLE",
            12 => "UINT32",
            13 => "UINT64",
            14 => "COMPLEX64",
            15 => "COMPLEX128",
            16 => "BFLOAT16",
            n => return format!("type {n}"),
        };
        name.to_string()
    }

    /// The shape as `[-1,30]` (-1 for a dynamic dimension), or `[?]` when undeclared.
    pub fn shape_text(&self) -> String {
        match &self.shape {
            None => "[?]".into(),
            Some(dims) => {
                let dims: Vec<String> = dims
                    .iter()
                    .map(|d| d.map_or("-1".to_string(), |v| v.to_string()))
                    .collect();
                format!("[{}]", dims.join(","))
            }
        }
    }
}

/// Parses `bytes` as an ONNX model; the error says what is wrong, in words
/// that follow "not an ONNX model: ".
pub fn inspect(bytes: &[u8]) -> Result<OnnxSummary, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let model = ModelProto::decode(bytes)
        .map_err(|e| format!("it is not an ONNX (protobuf ModelProto) file ({e})"))?;
    if model.ir_version <= 0 {
        return Err("it has no ONNX IR version".into());
    }
    let Some(graph) = model.graph else {
        return Err("it has no graph".into());
    };
    let weights: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|v| !weights.contains(v.name.as_str()))
        .collect();
    let input_types = inputs.iter().map(|v| TensorType::of(v)).collect();
    let inputs: Vec<String> = inputs.iter().map(|v| v.name.clone()).collect();
    let output_types = graph.output.iter().map(TensorType::of).collect();
    let outputs: Vec<String> = graph.output.iter().map(|v| v.name.clone()).collect();
    if outputs.is_empty() {
        return Err("its graph has no outputs".into());
    }
    if inputs.iter().chain(&outputs).any(String::is_empty) {
        return Err("its graph has an input or output without a name".into());
    }
    Ok(OnnxSummary {
        ir_version: model.ir_version,
        inputs,
        outputs,
        input_types,
        output_types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_file(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn reads_the_inputs_and_outputs_of_real_models() {
        let fraud = inspect(&model_file("fraud/v1.onnx")).unwrap();
        assert!(fraud.ir_version > 0);
        assert_eq!(fraud.inputs, vec!["input".to_string()]);
        assert!(!fraud.outputs.is_empty());
        assert_eq!(fraud.input_types[0].elem_name(), "FLOAT");
        assert_eq!(fraud.input_types[0].shape_text(), "[-1,30]");
        let mlp = inspect(&model_file("mlp/v1.onnx")).unwrap();
        assert!(!mlp.inputs.is_empty() && !mlp.outputs.is_empty());
    }

    #[test]
    fn a_minimal_header_is_enough() {
        // ir_version 8; graph { output { name: "y" } }
        let bytes = [0x08, 0x08, 0x3a, 0x05, 0x62, 0x03, 0x0a, 0x01, b'y'];
        let summary = inspect(&bytes).unwrap();
        assert_eq!(summary.outputs, vec!["y".to_string()]);
        assert!(summary.inputs.is_empty());
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        for (bytes, want) in [
            (&b""[..], "empty"),
            (
                b"this is not an ONNX model",
                "not an ONNX (protobuf ModelProto) file",
            ),
            (
                b"{\"json\": true}",
                "not an ONNX (protobuf ModelProto) file",
            ),
            (&[0x3a, 0x00], "no ONNX IR version"),
            (&[0x08, 0x08], "no graph"),
            (&[0x08, 0x08, 0x3a, 0x00], "no outputs"),
            (&[0x08, 0x08, 0x3a, 0x02, 0x62, 0x00], "without a name"),
        ] {
            let err = inspect(bytes).unwrap_err();
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
        let mut truncated = model_file("fraud/v1.onnx");
        truncated.truncate(truncated.len() / 2);
        assert!(inspect(&truncated).is_err());
    }
}

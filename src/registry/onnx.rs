//! Reads an ONNX model's header: just enough of its protobuf (`ModelProto`)
//! to tell a model from any other file and to name its graph's inputs and
//! outputs, without ONNX Runtime (the CLI registers files without loading
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

/// An `onnx.ValueInfoProto` (a graph input or output), by name only.
#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
}

/// An `onnx.TensorProto` (a weight), by name only: its data is skipped.
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(string, tag = "8")]
    name: String,
}

/// What the header says about a model: its graph's inputs (weights that
/// older models also list as inputs left out) and outputs, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxSummary {
    pub ir_version: i64,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
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
    let inputs: Vec<String> = graph
        .input
        .into_iter()
        .map(|v| v.name)
        .filter(|name| !weights.contains(name.as_str()))
        .collect();
    let outputs: Vec<String> = graph.output.into_iter().map(|v| v.name).collect();
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

//! The external data files an ONNX model needs: weights kept outside the
//! protobuf (`onnx.save_model(..., save_as_external_data=True)`, and any
//! model over protobuf's 2 GB limit), named by each tensor's `location`,
//! relative to the model file's directory, where ONNX Runtime looks for them.
//!
//! Only the fields that lead to a tensor are decoded; weight data is skipped.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use prost::Message;

/// `onnx.ModelProto`: its graph.
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// `onnx.GraphProto`: its nodes (whose attributes hold tensors and
/// subgraphs) and initializers.
#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "15")]
    sparse_initializer: Vec<SparseTensorProto>,
}

/// `onnx.NodeProto`: its attributes.
#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

/// `onnx.AttributeProto`: the tensors and graphs it can hold (a `Constant`'s
/// value, an `If`'s branches, a `Loop`'s body).
#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(message, optional, tag = "5")]
    t: Option<TensorProto>,
    #[prost(message, optional, boxed, tag = "6")]
    g: Option<Box<GraphProto>>,
    #[prost(message, repeated, tag = "10")]
    tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    graphs: Vec<GraphProto>,
    #[prost(message, optional, tag = "22")]
    sparse_tensor: Option<SparseTensorProto>,
    #[prost(message, repeated, tag = "23")]
    sparse_tensors: Vec<SparseTensorProto>,
}

/// `onnx.SparseTensorProto`: values and indices are tensors.
#[derive(Clone, PartialEq, Message)]
struct SparseTensorProto {
    #[prost(message, optional, tag = "1")]
    values: Option<TensorProto>,
    #[prost(message, optional, tag = "2")]
    indices: Option<TensorProto>,
}

/// `onnx.TensorProto`: where its data is.
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    /// `DataLocation`: 0 DEFAULT (in the protobuf), 1 EXTERNAL.
    #[prost(int32, tag = "14")]
    data_location: i32,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

const EXTERNAL: i32 = 1;

/// Why the external data files of a model cannot be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalDataError {
    /// The bytes are not an ONNX model (left for the loader to report).
    NotOnnx(String),
    /// A tensor names a location ONNX Runtime would not read, or none.
    BadLocation(String),
}

impl std::fmt::Display for ExternalDataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExternalDataError::NotOnnx(why) | ExternalDataError::BadLocation(why) => {
                f.write_str(why)
            }
        }
    }
}

/// The external data files the model in `bytes` needs, relative to its
/// directory, sorted and each once; empty for a self-contained model.
/// A location outside the model's directory (absolute, or with `..`) is
/// refused: ONNX Runtime refuses it too.
pub fn external_data_files(bytes: &[u8]) -> Result<Vec<String>, ExternalDataError> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| ExternalDataError::NotOnnx(format!("not an ONNX model ({e})")))?;
    let mut found = BTreeSet::new();
    if let Some(graph) = &model.graph {
        graph_files(graph, &mut found)?;
    }
    Ok(found.into_iter().collect())
}

fn graph_files(graph: &GraphProto, found: &mut BTreeSet<String>) -> Result<(), ExternalDataError> {
    for tensor in &graph.initializer {
        tensor_file(tensor, found)?;
    }
    for sparse in &graph.sparse_initializer {
        sparse_files(sparse, found)?;
    }
    for attribute in graph.node.iter().flat_map(|n| &n.attribute) {
        for tensor in attribute.t.iter().chain(&attribute.tensors) {
            tensor_file(tensor, found)?;
        }
        for sparse in attribute
            .sparse_tensor
            .iter()
            .chain(&attribute.sparse_tensors)
        {
            sparse_files(sparse, found)?;
        }
        for sub in attribute.g.iter().map(|g| &**g).chain(&attribute.graphs) {
            graph_files(sub, found)?;
        }
    }
    Ok(())
}

fn sparse_files(
    sparse: &SparseTensorProto,
    found: &mut BTreeSet<String>,
) -> Result<(), ExternalDataError> {
    for tensor in sparse.values.iter().chain(&sparse.indices) {
        tensor_file(tensor, found)?;
    }
    Ok(())
}

fn tensor_file(
    tensor: &TensorProto,
    found: &mut BTreeSet<String>,
) -> Result<(), ExternalDataError> {
    if tensor.data_location != EXTERNAL {
        return Ok(());
    }
    let location = tensor
        .external_data
        .iter()
        .find(|e| e.key == "location")
        .map(|e| e.value.as_str())
        .ok_or_else(|| {
            ExternalDataError::BadLocation(
                "a tensor keeps its data externally but names no location".into(),
            )
        })?;
    let inside = !location.is_empty()
        && !location.contains('\\')
        && Path::new(location)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(ExternalDataError::BadLocation(format!(
            "a tensor's external data location {location:?} is not a path inside the model's directory"
        )));
    }
    found.insert(location.trim_start_matches("./").to_string());
    Ok(())
}

/// `bytes` (an ONNX model) with one more initializer, whose data is in the
/// external file `location`: protobuf merges a second message's fields.
#[cfg(test)]
pub(crate) fn with_external_tensor(bytes: &[u8], location: &str) -> Vec<u8> {
    let extra = ModelProto {
        graph: Some(GraphProto {
            initializer: vec![TensorProto {
                external_data: vec![StringStringEntryProto {
                    key: "location".into(),
                    value: location.into(),
                }],
                data_location: EXTERNAL,
            }],
            ..Default::default()
        }),
    };
    [bytes, &extra.encode_to_vec()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(location: Option<&str>) -> TensorProto {
        TensorProto {
            external_data: location
                .map(|l| StringStringEntryProto {
                    key: "location".into(),
                    value: l.into(),
                })
                .into_iter()
                .chain([StringStringEntryProto {
                    key: "offset".into(),
                    value: "0".into(),
                }])
                .collect(),
            data_location: EXTERNAL,
        }
    }

    fn model(graph: GraphProto) -> Vec<u8> {
        ModelProto { graph: Some(graph) }.encode_to_vec()
    }

    #[test]
    fn self_contained_models_need_no_files() {
        let fraud =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx"))
                .unwrap();
        assert_eq!(external_data_files(&fraud).unwrap(), Vec::<String>::new());
        assert_eq!(
            external_data_files(&with_external_tensor(&fraud, "w.bin")).unwrap(),
            ["w.bin"]
        );
        assert!(matches!(
            external_data_files(b"\xff\xff not onnx"),
            Err(ExternalDataError::NotOnnx(_))
        ));
    }

    #[test]
    fn locations_are_found_in_initializers_constants_and_subgraphs() {
        let branch = GraphProto {
            initializer: vec![tensor(Some("branch.bin"))],
            ..Default::default()
        };
        let graph = GraphProto {
            initializer: vec![tensor(Some("weights.bin")), tensor(Some("./weights.bin"))],
            sparse_initializer: vec![SparseTensorProto {
                values: Some(tensor(Some("sparse/values.bin"))),
                indices: None,
            }],
            node: vec![NodeProto {
                attribute: vec![AttributeProto {
                    t: Some(tensor(Some("constant.bin"))),
                    g: Some(Box::new(branch)),
                    ..Default::default()
                }],
            }],
        };
        assert_eq!(
            external_data_files(&model(graph)).unwrap(),
            [
                "branch.bin",
                "constant.bin",
                "sparse/values.bin",
                "weights.bin"
            ]
        );
    }

    #[test]
    fn locations_outside_the_model_directory_are_refused() {
        for bad in ["../secret", "/etc/passwd", "", "a\\..\\b"] {
            let graph = GraphProto {
                initializer: vec![tensor(Some(bad))],
                ..Default::default()
            };
            let err = external_data_files(&model(graph)).unwrap_err();
            assert!(
                matches!(err, ExternalDataError::BadLocation(_)),
                "{bad}: {err}"
            );
        }
        let graph = GraphProto {
            initializer: vec![tensor(None)],
            ..Default::default()
        };
        let err = external_data_files(&model(graph)).unwrap_err().to_string();
        assert!(err.contains("names no location"), "{err}");
    }
}

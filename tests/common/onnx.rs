//! ONNX models written by the tests themselves, for sizes not worth
//! committing: only the few onnx.proto fields they need (numbers as in
//! onnx/onnx.proto), encoded with prost.

use prost::Message;

/// A ReLU MLP over `dims` (`dims[0]` inputs named "input", `dims[last]`
/// outputs named "output", both with a dynamic batch dimension "n"): one
/// Gemm per layer, its weights stored in the file as `raw_data`
/// initializers (about 4 bytes per weight), deterministic pseudo-random
/// values scaled so activations stay finite.
pub fn mlp(dims: &[usize]) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let (mut nodes, mut initializer) = (Vec::new(), Vec::new());
    let mut x = "input".to_string();
    let layers = dims.len() - 1;
    for i in 0..layers {
        let (fan_in, fan_out) = (dims[i], dims[i + 1]);
        let scale = (6.0 / fan_in as f32).sqrt();
        let weights: Vec<u8> = (0..fan_in * fan_out)
            .flat_map(|_| (next() * scale).to_le_bytes())
            .collect();
        initializer.push(tensor(&format!("w{i}"), &[fan_in, fan_out], weights));
        initializer.push(tensor(&format!("b{i}"), &[fan_out], vec![0; 4 * fan_out]));
        let last = i + 1 == layers;
        let gemm = if last {
            "output".to_string()
        } else {
            format!("gemm{i}")
        };
        nodes.push(node(
            "Gemm",
            &[&x, &format!("w{i}"), &format!("b{i}")],
            &gemm,
        ));
        x = gemm;
        if !last {
            nodes.push(node("Relu", &[&x], &format!("relu{i}")));
            x = format!("relu{i}");
        }
    }
    ModelProto {
        ir_version: 9,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "mlp".into(),
            initializer,
            input: vec![value_info("input", dims[0])],
            output: vec![value_info("output", dims[layers])],
        }),
    }
    .encode_to_vec()
}

const FLOAT: i32 = 1;

fn tensor(name: &str, dims: &[usize], raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        name: name.into(),
        raw_data,
    }
}

fn node(op_type: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op_type.into(),
    }
}

/// A float tensor of shape `["n", width]`.
fn value_info(name: &str, width: usize) -> ValueInfoProto {
    let dim = |value| Dimension { value: Some(value) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(DimValue::DimParam("n".into())),
                        dim(DimValue::DimValue(width as i64)),
                    ],
                }),
            }),
        }),
    }
}

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TypeTensor>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeTensor {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(oneof = "DimValue", tags = "1, 2")]
    value: Option<DimValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum DimValue {
    #[prost(int64, tag = "1")]
    DimValue(i64),
    #[prost(string, tag = "2")]
    DimParam(String),
}

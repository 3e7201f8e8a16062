//! The demo fraud model's first row and what fraud v1 answers for it, shared
//! by the integration tests and the benches (which include this file alone).
#![allow(dead_code)]

/// The fraud model's first demo row (make_classification X[0]).
pub const FRAUD_ROW: [f32; 30] = [
    -1.6125827,
    0.4016974,
    1.4995775,
    0.18011032,
    1.0774275,
    0.8149318,
    0.8536152,
    -1.12284,
    0.54177755,
    0.0812119,
    -1.9892033,
    4.2974987,
    0.9194187,
    -1.7255489,
    0.48892015,
    1.4287455,
    -1.8240153,
    -2.7939188,
    0.9137139,
    0.21991499,
    1.3738962,
    0.4077905,
    3.3964667,
    -1.0543443,
    1.6287706,
    -0.7213508,
    0.49246138,
    -0.16944763,
    -1.2091073,
    4.9227457,
];

/// fraud v1's probabilities for [`FRAUD_ROW`] (label 0).
pub const FRAUD_V1_PROBABILITIES: [f32; 2] = [0.620_603_44, 0.379_396_53];

/// The fraud row `rows` times over, flattened.
pub fn fraud_rows(rows: usize) -> Vec<f32> {
    (0..rows).flat_map(|_| FRAUD_ROW).collect()
}

/// An OIP REST JSON request of `rows` fraud rows (input `input`, FP32).
pub fn fraud_request(rows: usize) -> serde_json::Value {
    serde_json::json!({"inputs": [{
        "name": "input", "shape": [rows, 30], "datatype": "FP32", "data": fraud_rows(rows)
    }]})
}

/// A gRPC `ModelInfer` request of one fraud row to `model` (typed FP32 contents).
pub fn fraud_grpc_request(model: &str) -> podium::api::grpc::proto::ModelInferRequest {
    use podium::api::grpc::proto::model_infer_request::InferInputTensor;
    use podium::api::grpc::proto::{InferTensorContents, ModelInferRequest};
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 30],
            contents: Some(InferTensorContents {
                fp32_contents: FRAUD_ROW.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The numbers of output `name` in an OIP JSON answer; panics naming the
/// output when it is missing.
pub fn output_numbers(answer: &serde_json::Value, name: &str) -> Vec<f64> {
    answer["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {answer}"))
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {answer}"))["data"]
        .as_array()
        .unwrap_or_else(|| panic!("output {name} has no data array: {answer}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Asserts that `probabilities` start with fraud v1's for [`FRAUD_ROW`].
pub fn assert_fraud_v1(probabilities: &[f64]) {
    assert!(probabilities.len() >= 2, "{probabilities:?}");
    for (got, want) in probabilities.iter().zip(FRAUD_V1_PROBABILITIES) {
        assert!((got - f64::from(want)).abs() < 1e-5, "{probabilities:?}");
    }
}

//! The answer of `/invocations`: `{"predictions": ...}`, one output as its
//! rows (records orientation), several by name.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::api::http::codec::JsonData;
use crate::error::Error;
use crate::request::InferResponse;
use crate::tensor::{Tensor, TensorData};

/// The response body MLflow clients read.
pub fn encode(response: &InferResponse) -> Result<Bytes, Error> {
    let predictions = if response.outputs.len() == 1 {
        nested(&response.outputs[0])
    } else {
        Value::Object(
            response
                .outputs
                .iter()
                .map(|t| (t.name.clone(), nested(t)))
                .collect(),
        )
    };
    serde_json::to_vec(&json!({ "predictions": predictions }))
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encoding the answer: {e}")))
}

/// A tensor as nested JSON lists following its shape.
fn nested(t: &Tensor) -> Value {
    // 16/32-bit floats in their shortest decimal form, as the OIP routes
    // print them (not widened to f64 digits).
    let short = |x: f32| {
        format!("{x}")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    };
    let flat = match &t.data {
        TensorData::Fp32(v) => v.iter().map(|&x| short(x)).collect(),
        TensorData::Fp16(v) => v.iter().map(|x| short(x.to_f32())).collect(),
        TensorData::Bf16(v) => v.iter().map(|x| short(x.to_f32())).collect(),
        data => match serde_json::to_value(JsonData(data)) {
            Ok(Value::Array(v)) => v,
            _ => Vec::new(),
        },
    };
    let dims: Vec<usize> = t.shape.iter().map(|&d| d.max(0) as usize).collect();
    fn build(flat: &[Value], dims: &[usize]) -> Value {
        match dims {
            [] => flat.first().cloned().unwrap_or(Value::Null),
            [_] => Value::Array(flat.to_vec()),
            [n, rest @ ..] => {
                let step = rest.iter().product::<usize>().max(1);
                Value::Array(
                    (0..*n)
                        .map(|i| {
                            build(
                                &flat[(i * step).min(flat.len())..((i + 1) * step).min(flat.len())],
                                rest,
                            )
                        })
                        .collect(),
                )
            }
        }
    }
    build(&flat, &dims)
}

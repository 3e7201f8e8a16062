//! Generated inputs for the OIP REST decoder: random bytes, JSON requests
//! with wrong types, shapes and values, and binary bodies whose byte counts
//! lie. See [`crate::fuzz`] for how long a run is and how to reproduce one.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{data, decode, JsonData};
use crate::fuzz::{self, assert_names, same, tensor};
use crate::tensor::{DataType, TensorData};

/// Request-level problems: the message names the header, the field or the
/// JSON, not an input.
const REQUEST_LEVEL: [&str; 5] = [
    "Inference-Header-Content-Length",
    "malformed inference request JSON",
    "bytes of binary data follow the last input",
    "parameters.binary_data_output",
    "parameters.binary_data ",
];

fn needles(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| format!("input \"{n}\""))
        .chain(REQUEST_LEVEL.iter().map(|s| s.to_string()))
        .collect()
}

/// One input of a request as JSON, every field possibly wrong.
fn input_json() -> impl Strategy<Value = (String, Value)> {
    (
        fuzz::name(),
        prop_oneof![4 => fuzz::shape().prop_map(|s| json!(s)), 1 => fuzz::json_text(2).prop_map(parse_or_null)],
        fuzz::datatype_name(),
        prop_oneof![
            4 => fuzz::json_text(3).prop_map(|t| Some(parse_or_null(t))),
            1 => Just(None),
        ],
        prop_oneof![
            4 => Just(None),
            1 => fuzz::json_scalar_text().prop_map(|t| Some(parse_or_null(t))),
        ],
    )
        .prop_map(|(name, shape, datatype, data, binary_size)| {
            let mut input = json!({"name": name, "shape": shape, "datatype": datatype});
            if let Some(data) = data {
                input["data"] = data;
            }
            if let Some(size) = binary_size {
                input["parameters"] = json!({ "binary_data_size": size });
            }
            (name, input)
        })
}

fn parse_or_null(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// `data` as the JSON a client writes: nested by `shape` or flat, with NaN
/// and infinities as the strings OIP clients use.
fn to_json(data: &TensorData, shape: &[i64], nested: bool) -> Value {
    let flat = serde_json::to_value(JsonData(data)).expect("tensor data serialises");
    let Value::Array(mut items) = flat else {
        unreachable!("JsonData is a list")
    };
    let non_finite = |x: f64| {
        if x.is_nan() {
            Some("NaN")
        } else if x == f64::INFINITY {
            Some("Infinity")
        } else if x == f64::NEG_INFINITY {
            Some("-Infinity")
        } else {
            None
        }
    };
    let floats: Option<Vec<f64>> = match data {
        TensorData::Fp16(v) => Some(v.iter().map(|x| x.to_f64()).collect()),
        TensorData::Bf16(v) => Some(v.iter().map(|x| x.to_f64()).collect()),
        TensorData::Fp32(v) => Some(v.iter().map(|&x| x as f64).collect()),
        TensorData::Fp64(v) => Some(v.clone()),
        _ => None,
    };
    for (item, x) in items.iter_mut().zip(floats.into_iter().flatten()) {
        if let Some(s) = non_finite(x) {
            *item = json!(s);
        }
    }
    if !nested || shape.len() < 2 {
        return Value::Array(items);
    }
    nest(&items, shape)
}

fn nest(items: &[Value], shape: &[i64]) -> Value {
    match shape {
        [] | [_] => Value::Array(items.to_vec()),
        [first, rest @ ..] => {
            let inner = rest.iter().product::<i64>() as usize;
            Value::Array(
                (0..*first as usize)
                    .map(|i| nest(&items[i * inner..(i + 1) * inner], rest))
                    .collect(),
            )
        }
    }
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    /// Any bytes, with or without a header length: an answer, never a panic.
    #[test]
    fn random_bodies_are_answered(
        body in fuzz::bytes(512),
        header in prop_oneof![
            Just(None),
            (0usize..600).prop_map(|n| Some(n.to_string())),
            any::<String>().prop_map(Some),
        ],
    ) {
        if let Err(e) = decode(&body, header.as_deref()) {
            assert_names(&e, &[])?;
        }
    }

    /// JSON requests with any field wrong: an error names the input at
    /// fault (or the request-level field), and what decodes is consistent.
    #[test]
    fn structured_requests_name_the_input_at_fault(
        inputs in proptest::collection::vec(input_json(), 0..4),
        output_binary in prop_oneof![3 => Just(None), 1 => fuzz::json_scalar_text().prop_map(Some)],
        header_len in any::<bool>(),
    ) {
        let names: Vec<String> = inputs.iter().map(|(n, _)| n.clone()).collect();
        let mut request = json!({"inputs": inputs.into_iter().map(|(_, v)| v).collect::<Vec<_>>()});
        if let Some(flag) = output_binary {
            request["parameters"] = json!({"binary_data_output": parse_or_null(flag)});
        }
        let body = serde_json::to_vec(&request).expect("serialises");
        let header = header_len.then(|| body.len().to_string());
        match decode(&body, header.as_deref()) {
            Err(e) => assert_names(&e, &needles(&names))?,
            Ok(decoded) => {
                for t in &decoded.request.inputs {
                    let n = crate::tensor::element_count(&t.shape).expect("checked shape");
                    prop_assert_eq!(n, t.data.len() as u64);
                }
            }
        }
    }

    /// Well-formed tensors as JSON (nested or flat) decode to exactly the
    /// values sent.
    #[test]
    fn json_data_round_trips((datatype, shape, data) in tensor(), nested in any::<bool>()) {
        let request = json!({"inputs": [{
            "name": "x", "shape": shape, "datatype": datatype.name(),
            "data": to_json(&data, &shape, nested),
        }]});
        let body = serde_json::to_vec(&request).expect("serialises");
        let decoded = decode(&body, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same(&decoded.request.inputs[0].data, &data));
    }

    /// Decoding `data` straight from the request text and from a parsed
    /// `Value` (MLflow's path) give the same tensor or the same error.
    #[test]
    fn streaming_and_parsed_data_agree(
        text in fuzz::json_text(3),
        datatype in proptest::sample::select(DataType::ALL.to_vec()),
    ) {
        let value = parse_or_null(text);
        let text = value.to_string();
        let mut de = serde_json::Deserializer::from_str(&text);
        let streamed = data::decode("x", datatype, 0, &mut de).map_err(|e| e.to_string());
        let parsed = data::decode_value("x", datatype, &value).map_err(|e| e.to_string());
        match (&streamed, &parsed) {
            (Ok(a), Ok(b)) => prop_assert!(same(a, b), "{:?} vs {:?}", a, b),
            _ => prop_assert_eq!(streamed, parsed),
        }
    }

    /// Nested data whose rows differ in length is refused even when the
    /// element count matches the shape.
    #[test]
    fn ragged_data_is_refused(rows in 2usize..5, width in 2usize..5, from in 0usize..5, to in 0usize..5) {
        let (from, to) = (from % rows, to % rows);
        prop_assume!(from != to);
        let mut nested: Vec<Vec<i32>> = (0..rows).map(|r| vec![r as i32; width]).collect();
        let moved = nested[from].pop().expect("width ≥ 2");
        nested[to].push(moved);
        let request = json!({"inputs": [{
            "name": "x", "shape": [rows * width], "datatype": "INT32", "data": nested,
        }]});
        let e = decode(&serde_json::to_vec(&request).expect("serialises"), None)
            .err()
            .ok_or_else(|| TestCaseError::fail("ragged data was accepted"))?;
        prop_assert!(e.to_string().starts_with("input \"x\" data is ragged"), "{}", e);
    }

    /// Binary tensors decode to the values sent; any lie in the byte counts
    /// is refused with a message naming the input or the header.
    #[test]
    fn binary_bodies_round_trip_and_lies_are_named(
        tensors in proptest::collection::vec(tensor(), 1..4),
        lie in prop_oneof![3 => Just(0i64), 1 => -9i64..9],
        header_lie in prop_oneof![3 => Just(0i64), 1 => -9i64..9],
        lie_at in any::<proptest::sample::Index>(),
    ) {
        // One lie at a time: two could cancel out into another valid body.
        prop_assume!(lie == 0 || header_lie == 0);
        let lie_at = lie_at.index(tensors.len());
        let mut raw = Vec::new();
        let mut inputs = Vec::new();
        for (i, (datatype, shape, data)) in tensors.iter().enumerate() {
            let before = raw.len();
            data.write_raw(&mut raw);
            let size = (raw.len() - before) as i64 + if i == lie_at { lie } else { 0 };
            inputs.push(json!({
                "name": format!("in{i}"), "shape": shape, "datatype": datatype.name(),
                "parameters": {"binary_data_size": size},
            }));
        }
        let mut body = serde_json::to_vec(&json!({"inputs": inputs})).expect("serialises");
        let header = (body.len() as i64 + header_lie).to_string();
        body.extend_from_slice(&raw);
        match decode(&body, Some(&header)) {
            Ok(decoded) => {
                prop_assert!(lie == 0 && header_lie == 0, "a lying body decoded");
                for (t, (_, shape, data)) in decoded.request.inputs.iter().zip(&tensors) {
                    prop_assert_eq!(&t.shape, shape);
                    prop_assert!(same(&t.data, data));
                }
            }
            Err(e) => {
                prop_assert!(lie != 0 || header_lie != 0, "an honest body was refused: {}", e);
                let names: Vec<String> = (0..tensors.len()).map(|i| format!("in{i}")).collect();
                assert_names(&e, &needles(&names))?;
            }
        }
    }

    /// A JSON number becomes infinity only when it said so: a finite number
    /// beyond a float type's range is refused, naming the element.
    #[test]
    fn floats_never_overflow_silently(
        datatype in proptest::sample::select(vec![DataType::Fp16, DataType::Bf16, DataType::Fp32, DataType::Fp64]),
        value in fuzz::json_scalar_text(),
    ) {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"{datatype}","data":[{value}]}}]}}"#
        );
        match decode(body.as_bytes(), None) {
            Ok(decoded) => {
                let named_infinity = value.contains("Infinity") || value.contains("inf");
                let x = match &decoded.request.inputs[0].data {
                    TensorData::Fp16(v) => v[0].to_f64(),
                    TensorData::Bf16(v) => v[0].to_f64(),
                    TensorData::Fp32(v) => v[0] as f64,
                    TensorData::Fp64(v) => v[0],
                    other => return Err(TestCaseError::fail(format!("decoded as {other:?}"))),
                };
                prop_assert!(!x.is_infinite() || named_infinity, "{} became {}", value, x);
            }
            Err(e) => assert_names(&e, &needles(&["x".to_string()]))?,
        }
    }

    /// Data nested deeper than the JSON parser follows is refused, not a
    /// stack overflow.
    #[test]
    fn deep_nesting_is_refused(deep in fuzz::deep_nesting()) {
        let body = format!(r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":{deep}}}]}}"#);
        let e = decode(body.as_bytes(), None)
            .err()
            .ok_or_else(|| TestCaseError::fail("deep nesting decoded"))?;
        prop_assert!(e.to_string().contains("recursion limit"), "{}", e);
    }
}

//! Generated inputs for the gRPC decoder: random protobuf bytes, and
//! `ModelInferRequest`s with random datatypes, shapes, typed contents and
//! raw contents. See [`crate::fuzz`] for how long a run is and how to
//! reproduce one.

use proptest::prelude::*;
use prost::Message;

use super::{decode, InferInputTensor, InferTensorContents, ModelInferRequest};
use crate::fuzz::{self, assert_names, same, tensor};
use crate::tensor::{DataType, TensorData};

/// Typed contents with a random set of fields filled with random values.
fn contents() -> impl Strategy<Value = InferTensorContents> {
    use proptest::collection::vec;
    use proptest::option::weighted;
    (
        weighted(0.3, vec(any::<bool>(), 0..8)),
        weighted(0.3, vec(any::<i32>(), 0..8)),
        weighted(0.3, vec(any::<i64>(), 0..8)),
        weighted(0.3, vec(any::<u32>(), 0..8)),
        weighted(0.3, vec(any::<u64>(), 0..8)),
        weighted(0.3, vec(any::<f32>(), 0..8)),
        weighted(0.3, vec(any::<f64>(), 0..8)),
        weighted(0.3, vec(fuzz::bytes(6), 0..8)),
    )
        .prop_map(|(b, i, i64s, u, u64s, f, d, s)| InferTensorContents {
            bool_contents: b.unwrap_or_default(),
            int_contents: i.unwrap_or_default(),
            int64_contents: i64s.unwrap_or_default(),
            uint_contents: u.unwrap_or_default(),
            uint64_contents: u64s.unwrap_or_default(),
            fp32_contents: f.unwrap_or_default(),
            fp64_contents: d.unwrap_or_default(),
            bytes_contents: s.unwrap_or_default(),
        })
}

fn input() -> impl Strategy<Value = InferInputTensor> {
    (
        fuzz::name(),
        fuzz::datatype_name(),
        fuzz::shape(),
        proptest::option::weighted(0.8, contents()),
    )
        .prop_map(|(name, datatype, shape, contents)| InferInputTensor {
            name,
            datatype,
            shape,
            parameters: Default::default(),
            contents,
        })
}

/// `data` in the typed field for its datatype; None for FP16 and BF16.
fn typed(data: &TensorData) -> Option<InferTensorContents> {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::Int8(v) => c.int_contents = v.iter().map(|&x| x.into()).collect(),
        TensorData::Int16(v) => c.int_contents = v.iter().map(|&x| x.into()).collect(),
        TensorData::Int32(v) => c.int_contents = v.clone(),
        TensorData::Int64(v) => c.int64_contents = v.clone(),
        TensorData::Uint8(v) => c.uint_contents = v.iter().map(|&x| x.into()).collect(),
        TensorData::Uint16(v) => c.uint_contents = v.iter().map(|&x| x.into()).collect(),
        TensorData::Uint32(v) => c.uint_contents = v.clone(),
        TensorData::Uint64(v) => c.uint64_contents = v.clone(),
        TensorData::Fp32(v) => c.fp32_contents = v.clone(),
        TensorData::Fp64(v) => c.fp64_contents = v.clone(),
        TensorData::Bytes(v) => c.bytes_contents = v.clone(),
        TensorData::Fp16(_) | TensorData::Bf16(_) => return None,
    }
    Some(c)
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    /// Whatever protobuf bytes decode to, the request decoder answers.
    #[test]
    fn random_messages_are_answered(body in fuzz::bytes(512)) {
        if let Ok(msg) = ModelInferRequest::decode(body.as_slice()) {
            if let Err(e) = decode(msg) {
                assert_names(&e, &[])?;
            }
        }
    }

    /// Requests with random datatypes, shapes and contents, typed or raw:
    /// an error names the input at fault, or the raw_input_contents count.
    #[test]
    fn structured_requests_name_the_input_at_fault(
        inputs in proptest::collection::vec(input(), 0..4),
        raw in prop_oneof![
            2 => Just(None),
            1 => proptest::collection::vec(fuzz::bytes(40), 0..5).prop_map(Some),
        ],
    ) {
        let mut needles: Vec<String> = inputs.iter().map(|i| format!("input \"{}\"", i.name)).collect();
        needles.push("raw_input_contents has".into());
        let msg = ModelInferRequest {
            model_name: "m".into(),
            inputs,
            raw_input_contents: raw.unwrap_or_default(),
            ..Default::default()
        };
        // What arrives went over the wire: encode and decode it first.
        let msg = ModelInferRequest::decode(msg.encode_to_vec().as_slice()).expect("round trip");
        match decode(msg) {
            Err(e) => assert_names(&e, &needles)?,
            Ok(decoded) => {
                for t in &decoded.request.inputs {
                    let n = crate::tensor::element_count(&t.shape).expect("checked shape");
                    prop_assert_eq!(n, t.data.len() as u64);
                }
            }
        }
    }

    /// Well-formed tensors decode to the values sent, typed or raw, and
    /// both forms agree.
    #[test]
    fn typed_and_raw_contents_round_trip(tensors in proptest::collection::vec(tensor(), 1..4), use_raw in any::<bool>()) {
        let use_raw = use_raw || tensors.iter().any(|(_, _, d)| typed(d).is_none());
        let mut raw = Vec::new();
        let inputs = tensors
            .iter()
            .enumerate()
            .map(|(i, (datatype, shape, data))| {
                let contents = if use_raw {
                    let mut bytes = Vec::new();
                    data.write_raw(&mut bytes);
                    raw.push(bytes);
                    None
                } else {
                    typed(data)
                };
                InferInputTensor {
                    name: format!("in{i}"),
                    datatype: datatype.name().into(),
                    shape: shape.clone(),
                    parameters: Default::default(),
                    contents,
                }
            })
            .collect();
        let msg = ModelInferRequest { inputs, raw_input_contents: raw, ..Default::default() };
        let decoded = decode(msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (t, (_, shape, data)) in decoded.request.inputs.iter().zip(&tensors) {
            prop_assert_eq!(&t.shape, shape);
            prop_assert!(same(&t.data, data));
        }
    }

    /// Raw contents whose length is not a whole number of elements, or whose
    /// BYTES length prefixes lie, are refused naming the input.
    #[test]
    fn raw_contents_with_wrong_byte_counts_are_named(
        datatype in proptest::sample::select(DataType::ALL.to_vec()),
        bytes in fuzz::bytes(64),
    ) {
        let msg = ModelInferRequest {
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: datatype.name().into(),
                shape: vec![bytes.len() as i64],
                parameters: Default::default(),
                contents: None,
            }],
            raw_input_contents: vec![bytes.clone()],
            ..Default::default()
        };
        match decode(msg) {
            Err(e) => assert_names(&e, &["input \"x\"".to_string()])?,
            Ok(decoded) => {
                let mut back = Vec::new();
                decoded.request.inputs[0].data.write_raw(&mut back);
                prop_assert_eq!(back, bytes);
            }
        }
    }
}

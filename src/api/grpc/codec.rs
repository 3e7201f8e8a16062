//! OIP gRPC messages ⇄ the protocol-free request and response. Tensor
//! checks (shape vs element count) happen in `Tensor::new` and the model
//! checks in `Signature::check`, exactly as for REST.

use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::error::Error;
use crate::request::{InferRequest, InferResponse};
use crate::tensor::{DataType, Tensor, TensorData};

/// A decoded `ModelInferRequest`: which version, what to run (the model
/// name was read before decoding, to start the call).
pub struct Decoded {
    /// The version or alias named, if any (empty means the endpoint's routing).
    pub version: String,
    /// Request-level parameters (routing may read a sticky key there).
    pub parameters: std::collections::HashMap<String, InferParameter>,
    pub request: InferRequest,
}

pub fn decode(msg: ModelInferRequest) -> Result<Decoded, Error> {
    let raw = msg.raw_input_contents;
    if !raw.is_empty() && raw.len() != msg.inputs.len() {
        return Err(Error::InvalidInput(format!(
            "raw_input_contents has {} entries for {} inputs; send one per input, in order",
            raw.len(),
            msg.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(msg.inputs.len());
    for input in msg.inputs {
        let InferInputTensor {
            name,
            datatype,
            shape,
            contents,
            ..
        } = input;
        let datatype = DataType::parse(&datatype)
            .map_err(|e| Error::InvalidInput(format!("input \"{name}\": {e}")))?;
        let data = match raw.next() {
            Some(bytes) => {
                if contents
                    .as_ref()
                    .is_some_and(|c| !filled_fields(c).is_empty())
                {
                    return Err(Error::InvalidInput(format!(
                        "input \"{name}\" has typed contents but the request uses raw_input_contents; use one form for all inputs"
                    )));
                }
                TensorData::from_raw(datatype, &bytes).map_err(|e| {
                    Error::InvalidInput(format!("input \"{name}\" raw contents: {e}"))
                })?
            }
            None => from_contents(&name, datatype, contents.unwrap_or_default())?,
        };
        inputs.push(Tensor::new(name, shape, data)?);
    }
    Ok(Decoded {
        version: msg.model_version,
        parameters: msg.parameters,
        request: InferRequest {
            id: (!msg.id.is_empty()).then_some(msg.id),
            inputs,
            outputs: msg.outputs.into_iter().map(|o| o.name).collect(),
        },
    })
}

/// The typed field that carries `datatype`.
fn field_for(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 | DataType::Bf16 => return None,
    })
}

fn filled_fields(c: &InferTensorContents) -> Vec<&'static str> {
    [
        ("bool_contents", c.bool_contents.is_empty()),
        ("int_contents", c.int_contents.is_empty()),
        ("int64_contents", c.int64_contents.is_empty()),
        ("uint_contents", c.uint_contents.is_empty()),
        ("uint64_contents", c.uint64_contents.is_empty()),
        ("fp32_contents", c.fp32_contents.is_empty()),
        ("fp64_contents", c.fp64_contents.is_empty()),
        ("bytes_contents", c.bytes_contents.is_empty()),
    ]
    .into_iter()
    .filter(|(_, empty)| !empty)
    .map(|(name, _)| name)
    .collect()
}

fn from_contents(
    name: &str,
    datatype: DataType,
    c: InferTensorContents,
) -> Result<TensorData, Error> {
    let Some(field) = field_for(datatype) else {
        return Err(Error::InvalidInput(format!(
            "input \"{name}\" is {datatype}, which has no typed contents field; send it in raw_input_contents"
        )));
    };
    let filled = filled_fields(&c);
    if let Some(wrong) = filled.iter().find(|f| **f != field) {
        return Err(Error::InvalidInput(format!(
            "input \"{name}\" is {datatype} but its data is in {wrong}; use {field}"
        )));
    }
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        name: &str,
        datatype: DataType,
        v: Vec<S>,
    ) -> Result<Vec<T>, Error> {
        v.into_iter()
            .enumerate()
            .map(|(i, x)| {
                T::try_from(x).map_err(|_| {
                    Error::InvalidInput(format!(
                        "input \"{name}\" element {i} is {x}, which is not a valid {datatype}"
                    ))
                })
            })
            .collect()
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Int8 => TensorData::Int8(narrow(name, datatype, c.int_contents)?),
        DataType::Int16 => TensorData::Int16(narrow(name, datatype, c.int_contents)?),
        DataType::Int32 => TensorData::Int32(c.int_contents),
        DataType::Int64 => TensorData::Int64(c.int64_contents),
        DataType::Uint8 => TensorData::Uint8(narrow(name, datatype, c.uint_contents)?),
        DataType::Uint16 => TensorData::Uint16(narrow(name, datatype, c.uint_contents)?),
        DataType::Uint32 => TensorData::Uint32(c.uint_contents),
        DataType::Uint64 => TensorData::Uint64(c.uint64_contents),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
        DataType::Fp16 | DataType::Bf16 => unreachable!("no typed field; returned above"),
    })
}

/// Encodes outputs in `raw_output_contents` (what `tritonclient.grpc` reads).
pub fn encode(response: InferResponse) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(response.outputs.len());
    let mut raw = Vec::with_capacity(response.outputs.len());
    for tensor in response.outputs {
        let mut bytes = Vec::with_capacity(tensor.data.raw_len());
        tensor.data.write_raw(&mut bytes);
        raw.push(bytes);
        outputs.push(InferOutputTensor {
            datatype: tensor.datatype().name().to_string(),
            name: tensor.name,
            shape: tensor.shape,
            parameters: Default::default(),
            contents: None,
        });
    }
    ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version.to_string(),
        id: response.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Timing;

    fn input(
        name: &str,
        datatype: &str,
        shape: Vec<i64>,
        contents: InferTensorContents,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            parameters: Default::default(),
            contents: Some(contents),
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            model_version: "challenger".into(),
            id: "7".into(),
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    #[test]
    fn typed_and_raw_inputs_decode_alike() {
        let typed = request(
            vec![input(
                "x",
                "INT16",
                vec![2],
                InferTensorContents {
                    int_contents: vec![-3, 300],
                    ..Default::default()
                },
            )],
            vec![],
        );
        let raw = request(
            vec![input("x", "INT16", vec![2], InferTensorContents::default())],
            vec![[(-3i16).to_le_bytes(), 300i16.to_le_bytes()].concat()],
        );
        let a = decode(typed).unwrap();
        let b = decode(raw).unwrap();
        assert_eq!(a.request.inputs, b.request.inputs);
        assert_eq!(a.request.inputs[0].data, TensorData::Int16(vec![-3, 300]));
        assert_eq!(a.version, "challenger");
        assert_eq!(a.request.id.as_deref(), Some("7"));
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let wrong_field = request(
            vec![input(
                "x",
                "INT64",
                vec![1],
                InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..Default::default()
                },
            )],
            vec![],
        );
        let e = decode(wrong_field).err().unwrap().to_string();
        assert_eq!(
            e,
            "input \"x\" is INT64 but its data is in fp32_contents; use int64_contents"
        );
        let out_of_range = request(
            vec![input(
                "x",
                "UINT8",
                vec![1],
                InferTensorContents {
                    uint_contents: vec![256],
                    ..Default::default()
                },
            )],
            vec![],
        );
        let e = decode(out_of_range).err().unwrap().to_string();
        assert_eq!(
            e,
            "input \"x\" element 0 is 256, which is not a valid UINT8"
        );
        let fp16 = request(
            vec![input("x", "FP16", vec![1], InferTensorContents::default())],
            vec![],
        );
        assert!(decode(fp16)
            .err()
            .unwrap()
            .to_string()
            .contains("send it in raw_input_contents"));
        let mismatch = request(
            vec![input("x", "FP32", vec![1], InferTensorContents::default())],
            vec![vec![], vec![]],
        );
        assert!(decode(mismatch)
            .err()
            .unwrap()
            .to_string()
            .contains("2 entries for 1 inputs"));
        let count = request(
            vec![input(
                "x",
                "FP32",
                vec![2, 3],
                InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..Default::default()
                },
            )],
            vec![],
        );
        assert_eq!(
            decode(count).err().unwrap().to_string(),
            "input \"x\" has shape [2,3] (6 elements) but 1 FP32 values were sent"
        );
    }

    #[test]
    fn outputs_go_back_raw() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: 2,
            id: None,
            outputs: vec![Tensor::new(
                "s".into(),
                vec![1],
                TensorData::Bytes(vec![b"ab".to_vec()]),
            )
            .unwrap()],
            timing: Timing::default(),
        };
        let msg = encode(response);
        assert_eq!(msg.model_version, "2");
        assert_eq!(msg.outputs[0].datatype, "BYTES");
        assert_eq!(msg.raw_output_contents, vec![vec![2, 0, 0, 0, b'a', b'b']]);
    }
}

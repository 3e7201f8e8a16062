//! OIP REST bodies ⇄ the protocol-free request and response, including
//! Triton's binary tensor data extension: a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw tensors in order.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::request::{InferRequest, InferResponse};
use crate::tensor::{DataType, Tensor, TensorData};

/// The header that splits a binary body into JSON and tensor bytes.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The request's JSON. Each input's `data` is kept as its text (borrowed
/// from the body, no copy) until the whole request has parsed: fields come
/// in any order, and only then is the datatype known for typed decoding.
#[derive(Deserialize)]
struct RestRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<RestInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RestOutput>>,
}

#[derive(Deserialize)]
struct RestInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RestOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// A decoded request and how its outputs should be encoded.
pub struct Decoded {
    pub request: InferRequest,
    pub encoding: OutputEncoding,
    /// Request-level `parameters` (routing may read a sticky key there).
    pub parameters: Option<Map<String, Value>>,
}

/// Which outputs go back as raw bytes rather than JSON `data`.
#[derive(Debug, Default)]
pub struct OutputEncoding {
    /// Request-level `binary_data_output`.
    all_binary: bool,
    /// Per-output `binary_data`, overriding `all_binary`.
    per_output: Vec<(String, bool)>,
}

impl OutputEncoding {
    fn is_binary(&self, name: &str) -> bool {
        self.per_output
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, b)| b)
            .unwrap_or(self.all_binary)
    }
}

/// Decodes a body; `header_length` is the `Inference-Header-Content-Length`
/// value when the client sent one.
pub fn decode(body: &[u8], header_length: Option<&str>) -> Result<Decoded, Error> {
    let (json, mut binary) = match header_length {
        None => (body, &[][..]),
        Some(text) => {
            let n: usize = text.trim().parse().map_err(|_| {
                Error::InvalidInput(format!(
                    "Inference-Header-Content-Length \"{text}\" is not a byte count"
                ))
            })?;
            if n > body.len() {
                return Err(Error::InvalidInput(format!(
                    "Inference-Header-Content-Length is {n} but the body has only {} bytes; the body is truncated",
                    body.len()
                )));
            }
            body.split_at(n)
        }
    };
    let rest: RestRequest = serde_json::from_slice(json)
        .map_err(|e| Error::InvalidInput(format!("malformed inference request JSON: {e}")))?;

    let mut inputs = Vec::with_capacity(rest.inputs.len());
    for input in rest.inputs {
        let datatype = DataType::parse(&input.datatype)
            .map_err(|e| Error::InvalidInput(format!("input \"{}\": {e}", input.name)))?;
        let binary_size = match param(&input.parameters, "binary_data_size") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "input \"{}\": parameters.binary_data_size must be a non-negative integer, got {v}",
                    input.name
                ))
            })? as usize),
        };
        let data = match (binary_size, &input.data) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidInput(format!(
                    "input \"{}\" has both \"data\" and parameters.binary_data_size; send one",
                    input.name
                )))
            }
            (Some(size), None) => {
                if header_length.is_none() {
                    return Err(Error::InvalidInput(format!(
                        "input \"{}\" has parameters.binary_data_size but the request has no Inference-Header-Content-Length header",
                        input.name
                    )));
                }
                if size > binary.len() {
                    return Err(Error::InvalidInput(format!(
                        "input \"{}\" declares binary_data_size {size} but only {} bytes of binary data remain; the body is truncated",
                        input.name,
                        binary.len()
                    )));
                }
                let (raw, tail) = binary.split_at(size);
                binary = tail;
                TensorData::from_raw(datatype, raw).map_err(|e| {
                    Error::InvalidInput(format!("input \"{}\" binary data: {e}", input.name))
                })?
            }
            (None, Some(text)) => decode_data(&input.name, datatype, &input.shape, text)?,
            (None, None) => {
                return Err(Error::InvalidInput(format!(
                    "input \"{}\" has no \"data\" (and no parameters.binary_data_size)",
                    input.name
                )))
            }
        };
        inputs.push(Tensor::new(input.name, input.shape, data)?);
    }
    if !binary.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} bytes of binary data follow the last input; check binary_data_size of each input",
            binary.len()
        )));
    }

    let mut encoding = OutputEncoding {
        all_binary: bool_param(&rest.parameters, "binary_data_output")?,
        per_output: Vec::new(),
    };
    let mut outputs = Vec::new();
    for output in rest.outputs.unwrap_or_default() {
        if param(&output.parameters, "binary_data").is_some() {
            let binary = bool_param(&output.parameters, "binary_data")?;
            encoding.per_output.push((output.name.clone(), binary));
        }
        outputs.push(output.name);
    }
    Ok(Decoded {
        request: InferRequest {
            id: rest.id,
            inputs,
            outputs,
        },
        encoding,
        parameters: rest.parameters,
    })
}

/// Decodes one input's JSON `data` text straight into its typed buffer.
fn decode_data(
    name: &str,
    datatype: DataType,
    shape: &[i64],
    text: &RawValue,
) -> Result<TensorData, Error> {
    let text = text.get();
    // Room for the elements the shape declares, but never more than the
    // text could hold (each element takes at least two characters, "0,"),
    // so a lying shape cannot make a small body allocate much.
    let declared = crate::tensor::element_count(shape).unwrap_or(0);
    let capacity = declared.min(text.len() as u64 / 2 + 1) as usize;
    let mut de = serde_json::Deserializer::from_str(text);
    let data = data::decode(name, datatype, capacity, &mut de)?;
    de.end()
        .map_err(|e| Error::InvalidInput(format!("input \"{name}\" data: {e}")))?;
    Ok(data)
}

fn param<'a>(params: &'a Option<Map<String, Value>>, key: &str) -> Option<&'a Value> {
    params.as_ref().and_then(|p| p.get(key))
}

fn bool_param(params: &Option<Map<String, Value>>, key: &str) -> Result<bool, Error> {
    match param(params, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Error::InvalidInput(format!(
            "parameters.{key} must be true or false, got {other}"
        ))),
    }
}

/// Reads an already parsed JSON `data`, nested ("natural") or flat,
/// row-major (MLflow's frames, reshaped before they become tensors).
pub(super) fn from_json(
    name: &str,
    datatype: DataType,
    value: &Value,
) -> Result<TensorData, Error> {
    data::decode_value(name, datatype, value)
}

#[derive(Serialize)]
struct RestResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<RestOutputTensor<'a>>,
}

#[derive(Serialize)]
struct RestOutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryDataSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinaryDataSize {
    binary_data_size: usize,
}

/// Tensor elements as a flat JSON array. Floats print in their shortest
/// round-trip form; NaN and infinities (which JSON lacks) become null, so
/// ask for binary outputs to keep them.
pub(super) struct JsonData<'a>(pub(super) &'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::Fp16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::Bf16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::Bytes(v) => s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b))),
            TensorData::Bool(v) => v.serialize(s),
            TensorData::Uint8(v) => v.serialize(s),
            TensorData::Uint16(v) => v.serialize(s),
            TensorData::Uint32(v) => v.serialize(s),
            TensorData::Uint64(v) => v.serialize(s),
            TensorData::Int8(v) => v.serialize(s),
            TensorData::Int16(v) => v.serialize(s),
            TensorData::Int32(v) => v.serialize(s),
            TensorData::Int64(v) => v.serialize(s),
            TensorData::Fp32(v) => v.serialize(s),
            TensorData::Fp64(v) => v.serialize(s),
        }
    }
}

/// A request in the OIP JSON form with every tensor as `data`: how the
/// inference table stores binary and gRPC requests, so rows stay readable.
pub fn encode_request_json(request: &InferRequest) -> Vec<u8> {
    #[derive(Serialize)]
    struct Output<'a> {
        name: &'a str,
    }
    #[derive(Serialize)]
    struct Request<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        inputs: Vec<RestOutputTensor<'a>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        outputs: Vec<Output<'a>>,
    }
    let request = Request {
        id: request.id.as_deref(),
        inputs: request
            .inputs
            .iter()
            .map(|t| RestOutputTensor {
                name: &t.name,
                datatype: t.datatype().name(),
                shape: &t.shape,
                parameters: None,
                data: Some(JsonData(&t.data)),
            })
            .collect(),
        outputs: request.outputs.iter().map(|name| Output { name }).collect(),
    };
    serde_json::to_vec(&request).expect("request JSON always serialises")
}

/// An encoded response: the body and, when it carries binary tensors, the
/// length of its JSON header.
pub struct Encoded {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes a response; outputs the client asked for in binary are appended
/// after the JSON header, in output order.
pub fn encode(response: &InferResponse, encoding: &OutputEncoding) -> Encoded {
    let mut binary = Vec::new();
    let mut any_binary = false;
    let outputs = response
        .outputs
        .iter()
        .map(|t| {
            let is_binary = encoding.is_binary(&t.name);
            let mut parameters = None;
            if is_binary {
                any_binary = true;
                let before = binary.len();
                t.data.write_raw(&mut binary);
                parameters = Some(BinaryDataSize {
                    binary_data_size: binary.len() - before,
                });
            }
            RestOutputTensor {
                name: &t.name,
                datatype: t.datatype().name(),
                shape: &t.shape,
                parameters,
                data: (!is_binary).then_some(JsonData(&t.data)),
            }
        })
        .collect();
    let head = RestResponse {
        model_name: &response.model_name,
        model_version: response.model_version.to_string(),
        id: response.id.as_deref(),
        outputs,
    };
    let mut body = serde_json::to_vec(&head).expect("response JSON always serialises");
    if !any_binary {
        return Encoded {
            body,
            header_length: None,
        };
    }
    let header_length = body.len();
    body.extend_from_slice(&binary);
    Encoded {
        body,
        header_length: Some(header_length),
    }
}

mod data;
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Timing;

    #[test]
    fn nested_and_flat_json_decode_alike() {
        let nested =
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}]}"#;
        let flat =
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[1,2,3,4]}]}"#;
        let a = decode(nested, None).unwrap().request.inputs;
        let b = decode(flat, None).unwrap().request.inputs;
        assert_eq!(a, b);
        assert_eq!(a[0].data, TensorData::Int32(vec![1, 2, 3, 4]));
    }

    #[test]
    fn binary_body_decodes_in_input_order() {
        let header = br#"{"id":"7","inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2.0f32).to_le_bytes());
        body.extend_from_slice(&[2, 0, 0, 0, b'h', b'i']);
        let decoded = decode(&body, Some(&header.len().to_string())).unwrap();
        let r = decoded.request;
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![1.5, -2.0]));
        assert_eq!(r.inputs[1].data, TensorData::Bytes(vec![b"hi".to_vec()]));
        assert_eq!(r.outputs, vec!["y"]);
        assert!(decoded.encoding.is_binary("y"));
        assert!(!decoded.encoding.is_binary("z"));
    }

    #[test]
    fn truncated_and_inconsistent_bodies_are_named() {
        let header = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0; 4]);
        let err = decode(&body, Some(&header.len().to_string()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("declares binary_data_size 8 but only 4 bytes"),
            "{err}"
        );
        let err = decode(&body, Some("100000")).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
        let err = decode(b"{\"inputs\": [", None).err().unwrap().to_string();
        assert!(err.starts_with("malformed inference request JSON"), "{err}");
        let err = decode(
            br#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT8","data":[300]}]}"#,
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            err,
            "input \"a\" element 0 is 300, which is not a valid INT8"
        );
        let err = decode(
            br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FLOAT","data":[1]}]}"#,
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("unknown datatype \"FLOAT\""), "{err}");
    }

    #[test]
    fn ragged_nested_data_is_refused_even_when_the_count_matches() {
        // Issue 17; found again by `fuzz::ragged_data_is_refused`.
        let err = decode(
            br#"{"inputs":[{"name":"x","shape":[4],"datatype":"INT32","data":[[1,2,3],[4]]}]}"#,
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            err,
            "input \"x\" data is ragged: data[1] has 1 elements but data[0] has 3; nested lists must be rectangular"
        );
        let err = decode(
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"INT32","data":[[1,2],3]}]}"#,
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("data[1] is a value where"), "{err}");
    }

    #[test]
    fn data_may_come_before_the_datatype() {
        let body =
            br#"{"inputs":[{"data":[[1.5,2],[3,4]],"shape":[2,2],"name":"x","datatype":"FP64"}]}"#;
        let r = decode(body, None).unwrap().request;
        assert_eq!(r.inputs[0].data, TensorData::Fp64(vec![1.5, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn rows_too_long_and_non_values_are_named() {
        let err = |data: &str, datatype: &str| {
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[4],"datatype":"{datatype}","data":{data}}}]}}"#
            );
            decode(body.as_bytes(), None).err().unwrap().to_string()
        };
        assert_eq!(
            err("[[1,2],[3,4,5]]", "INT32"),
            "input \"x\" data is ragged: data[1] has 3 elements but data[0] has 2; nested lists must be rectangular"
        );
        assert_eq!(
            err(r#"[1,{"a":[2]},3,4]"#, "FP32"),
            "input \"x\" element 1 is {\"a\":[2]}, which is not a valid FP32"
        );
        assert_eq!(
            err(r#"[1,2,"three",null]"#, "INT64"),
            "input \"x\" element 2 is \"three\", which is not a valid INT64"
        );
        assert_eq!(
            err("[true,false,null,true]", "BOOL"),
            "input \"x\" element 2 is null, which is not a valid BOOL"
        );
        assert_eq!(
            err("[1.5,2,3,4]", "UINT8"),
            "input \"x\" element 0 is 1.5, which is not a valid UINT8"
        );
    }

    #[test]
    fn finite_numbers_beyond_a_float_type_are_refused() {
        // Issue 17: 1e39 into FP32 silently became +inf.
        for (datatype, value) in [("FP32", "1e39"), ("FP16", "65520"), ("BF16", "-1e39")] {
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{datatype}","data":[1,{value}]}}]}}"#
            );
            let err = decode(body.as_bytes(), None).err().unwrap().to_string();
            assert!(
                err.starts_with("input \"x\" element 1 is ") && err.contains("out of range"),
                "{err}"
            );
        }
        // Infinity asked for by name is still infinity.
        let body =
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["Infinity"]}]}"#;
        let r = decode(body, None).unwrap().request;
        assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![f32::INFINITY]));
    }

    #[test]
    fn encodes_json_and_binary_outputs() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: 3,
            id: Some("x".into()),
            outputs: vec![
                Tensor::new("p".into(), vec![2], TensorData::Fp32(vec![0.5, f32::NAN])).unwrap(),
                Tensor::new("l".into(), vec![2], TensorData::Int64(vec![1, 0])).unwrap(),
            ],
            timing: Timing::default(),
        };
        let json = encode(&response, &OutputEncoding::default());
        assert!(json.header_length.is_none());
        let v: Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(v["model_version"], "3");
        assert_eq!(v["id"], "x");
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5, null]));
        assert_eq!(v["outputs"][1]["shape"], serde_json::json!([2]));

        let enc = OutputEncoding {
            all_binary: false,
            per_output: vec![("l".into(), true)],
        };
        let bin = encode(&response, &enc);
        let n = bin.header_length.unwrap();
        let v: Value = serde_json::from_slice(&bin.body[..n]).unwrap();
        assert_eq!(v["outputs"][1]["parameters"]["binary_data_size"], 16);
        assert!(v["outputs"][1].get("data").is_none());
        assert_eq!(&bin.body[n..n + 8], &1i64.to_le_bytes());
    }
}

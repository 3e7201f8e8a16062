//! A model's inputs and outputs, and the one place a request is checked
//! against them (for every protocol).

use crate::error::Error;
use crate::request::InferRequest;
use crate::tensor::{fmt_shape, DataType};

/// One declared input or output: name, datatype and shape (`-1` = any size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// What a model takes and gives, as ONNX Runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// Checks `request` against this signature and puts its inputs in the
    /// model's order. Returns the indexes of the outputs to compute. Every
    /// message names the tensor, what was sent and what `model` expects.
    pub fn check(&self, model: &str, request: &mut InferRequest) -> Result<Vec<usize>, Error> {
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for (i, input) in request.inputs.iter().enumerate() {
            if request.inputs[..i]
                .iter()
                .any(|other| other.name == input.name)
            {
                return Err(Error::InvalidInput(format!(
                    "input \"{}\" is given twice; send each input once",
                    input.name
                )));
            }
            if !self.inputs.iter().any(|spec| spec.name == input.name) {
                return Err(Error::InvalidInput(format!(
                    "model {model} has no input \"{}\"; its inputs are: {}",
                    input.name,
                    describe(&self.inputs)
                )));
            }
        }
        for spec in &self.inputs {
            let Some(pos) = request.inputs.iter().position(|t| t.name == spec.name) else {
                return Err(Error::InvalidInput(format!(
                    "missing input \"{}\": model {model} expects {} {}",
                    spec.name,
                    spec.datatype,
                    fmt_shape(&spec.shape)
                )));
            };
            let tensor = request.inputs.swap_remove(pos);
            if tensor.datatype() != spec.datatype {
                return Err(Error::InvalidInput(format!(
                    "input \"{}\" has datatype {}; model {model} expects {}",
                    spec.name,
                    tensor.datatype(),
                    spec.datatype
                )));
            }
            let fits = tensor.shape.len() == spec.shape.len()
                && tensor
                    .shape
                    .iter()
                    .zip(&spec.shape)
                    .all(|(&got, &want)| want < 0 || got == want);
            if !fits {
                return Err(Error::InvalidInput(format!(
                    "input \"{}\" has shape {}; model {model} expects {}",
                    spec.name,
                    fmt_shape(&tensor.shape),
                    fmt_shape(&spec.shape)
                )));
            }
            ordered.push(tensor);
        }
        request.inputs = ordered;

        if request.outputs.is_empty() {
            return Ok((0..self.outputs.len()).collect());
        }
        for (i, name) in request.outputs.iter().enumerate() {
            if request.outputs[..i].contains(name) {
                return Err(Error::InvalidInput(format!(
                    "output \"{name}\" is requested twice; ask for each output once"
                )));
            }
        }
        request
            .outputs
            .iter()
            .map(|name| {
                self.outputs
                    .iter()
                    .position(|spec| &spec.name == name)
                    .ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "model {model} has no output \"{name}\"; its outputs are: {}",
                            describe(&self.outputs)
                        ))
                    })
            })
            .collect()
    }
}

impl Signature {
    /// Whether a new version with this signature can replace one with
    /// `current` without breaking clients: the same input and output names,
    /// datatypes and ranks. Returns every difference, for the refusal.
    pub fn compatible_with(&self, current: &Signature) -> Result<(), String> {
        let mut differences = Vec::new();
        for (kind, new, old) in [
            ("input", &self.inputs, &current.inputs),
            ("output", &self.outputs, &current.outputs),
        ] {
            for o in old {
                match new.iter().find(|n| n.name == o.name) {
                    None => differences.push(format!("{kind} \"{}\" is gone", o.name)),
                    Some(n) if n.datatype != o.datatype => differences.push(format!(
                        "{kind} \"{}\" changes datatype {} -> {}",
                        o.name, o.datatype, n.datatype
                    )),
                    Some(n) if n.shape.len() != o.shape.len() => differences.push(format!(
                        "{kind} \"{}\" changes rank {} -> {}",
                        o.name,
                        fmt_shape(&o.shape),
                        fmt_shape(&n.shape)
                    )),
                    Some(_) => {}
                }
            }
            for n in new.iter().filter(|n| !old.iter().any(|o| o.name == n.name)) {
                differences.push(format!("{kind} \"{}\" is new", n.name));
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(differences.join("; "))
        }
    }
}

fn describe(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("\"{}\" {} {}", s.name, s.datatype, fmt_shape(&s.shape)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Tensor, TensorData};

    fn signature() -> Signature {
        Signature {
            inputs: vec![
                TensorSpec {
                    name: "a".into(),
                    datatype: DataType::Fp32,
                    shape: vec![-1, 3],
                },
                TensorSpec {
                    name: "b".into(),
                    datatype: DataType::Int64,
                    shape: vec![-1],
                },
            ],
            outputs: vec![
                TensorSpec {
                    name: "y".into(),
                    datatype: DataType::Fp32,
                    shape: vec![-1],
                },
                TensorSpec {
                    name: "z".into(),
                    datatype: DataType::Int64,
                    shape: vec![-1],
                },
            ],
        }
    }

    fn a(shape: Vec<i64>, n: usize) -> Tensor {
        Tensor::new("a".into(), shape, TensorData::Fp32(vec![0.0; n])).unwrap()
    }
    fn b() -> Tensor {
        Tensor::new("b".into(), vec![2], TensorData::Int64(vec![1, 2])).unwrap()
    }

    fn check(inputs: Vec<Tensor>, outputs: Vec<&str>) -> Result<(Vec<usize>, Vec<String>), String> {
        let mut req = InferRequest {
            inputs,
            outputs: outputs.into_iter().map(String::from).collect(),
            ..Default::default()
        };
        signature()
            .check("m v1", &mut req)
            .map(|idx| (idx, req.inputs.iter().map(|t| t.name.clone()).collect()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn compatibility_names_every_difference() {
        let current = signature();
        current.compatible_with(&current).unwrap();
        let mut new = signature();
        new.inputs[0].shape = vec![-1, 7]; // same rank: still compatible
        new.compatible_with(&current).unwrap();
        new.inputs[0].shape = vec![3];
        new.inputs[1].datatype = DataType::Int32;
        new.outputs.remove(1);
        new.outputs.push(TensorSpec {
            name: "w".into(),
            datatype: DataType::Fp32,
            shape: vec![-1],
        });
        assert_eq!(
            new.compatible_with(&current).unwrap_err(),
            "input \"a\" changes rank [-1,3] -> [3]; input \"b\" changes datatype INT64 -> INT32; output \"z\" is gone; output \"w\" is new"
        );
    }

    #[test]
    fn accepts_and_orders_inputs() {
        let (idx, order) = check(vec![b(), a(vec![2, 3], 6)], vec![]).unwrap();
        assert_eq!(order, vec!["a", "b"]);
        assert_eq!(idx, vec![0, 1]);
        let (idx, _) = check(vec![a(vec![1, 3], 3), b()], vec!["z"]).unwrap();
        assert_eq!(idx, vec![1]);
    }

    #[test]
    fn errors_name_the_tensor_and_the_expectation() {
        let e = check(vec![a(vec![1, 2], 2), b()], vec![]).unwrap_err();
        assert_eq!(e, "input \"a\" has shape [1,2]; model m v1 expects [-1,3]");
        let e = check(vec![a(vec![3], 3), b()], vec![]).unwrap_err();
        assert!(e.contains("has shape [3]"), "{e}");
        let e = check(vec![b()], vec![]).unwrap_err();
        assert_eq!(e, "missing input \"a\": model m v1 expects FP32 [-1,3]");
        let bad = Tensor::new("a".into(), vec![1, 3], TensorData::Fp64(vec![0.0; 3])).unwrap();
        let e = check(vec![bad, b()], vec![]).unwrap_err();
        assert_eq!(e, "input \"a\" has datatype FP64; model m v1 expects FP32");
        let extra = Tensor::new("c".into(), vec![1], TensorData::Fp32(vec![0.0])).unwrap();
        let e = check(vec![a(vec![1, 3], 3), b(), extra], vec![]).unwrap_err();
        assert!(
            e.starts_with("model m v1 has no input \"c\"; its inputs are: \"a\" FP32 [-1,3]"),
            "{e}"
        );
        let e = check(vec![a(vec![1, 3], 3), b(), b()], vec![]).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let e = check(vec![a(vec![1, 3], 3), b()], vec!["nope"]).unwrap_err();
        assert!(e.contains("no output \"nope\""), "{e}");
        let e = check(vec![a(vec![1, 3], 3), b()], vec!["y", "y"]).unwrap_err();
        assert_eq!(
            e,
            "output \"y\" is requested twice; ask for each output once"
        );
    }
}

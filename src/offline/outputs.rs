//! Model outputs as columns of an output file.
//!
//! One column per model output: a scalar column for an output with one value
//! per row, a fixed-size list for a vector output (`probabilities` `[-1, 2]`
//! → `FixedSizeList<Float32, 2>`; wider shapes are flattened row-major).
//! Names: an output named like an input column (or like `model_name` /
//! `model_version`, which are added after it) is written as
//! `predicted_<name>`, then `predicted_<name>_2`, … until the name is free.
//! A column is never overwritten.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float16Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, Int8Array, StringArray, UInt16Array, UInt32Array,
    UInt64Array, UInt8Array,
};
use arrow_schema::{Field, Schema};

use crate::runtime::Signature;
use crate::tensor::{fmt_shape, Tensor, TensorData};

/// The columns `podium batch` adds after the model outputs.
pub const MODEL_NAME: &str = "model_name";
pub const MODEL_VERSION: &str = "model_version";

/// The column name of each model output, in signature order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputNames {
    pub columns: Vec<String>,
    /// One line per renamed output, for the user.
    pub renamed: Vec<String>,
}

impl OutputNames {
    /// Names the outputs of `signature` next to the columns of `input`.
    /// An input column named `model_name` or `model_version` is refused:
    /// the output file has its own.
    pub fn plan(input: &Schema, signature: &Signature) -> anyhow::Result<OutputNames> {
        for reserved in [MODEL_NAME, MODEL_VERSION] {
            anyhow::ensure!(
                input.index_of(reserved).is_err(),
                "the input has a column \"{reserved}\", which podium batch adds to its output; rename or drop that column (is the input an earlier batch output?)"
            );
        }
        let mut taken: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
        taken.extend([MODEL_NAME.to_string(), MODEL_VERSION.to_string()]);
        // Output names are distinct from each other; reserve them all first
        // so a renamed output never takes another output's own name.
        let own: Vec<&str> = signature.outputs.iter().map(|o| o.name.as_str()).collect();
        let mut columns = Vec::with_capacity(own.len());
        let mut renamed = Vec::new();
        for name in &own {
            if !taken.iter().any(|t| t == name) {
                columns.push(name.to_string());
                taken.push(name.to_string());
                continue;
            }
            let base = format!("predicted_{name}");
            let free = std::iter::once(base.clone())
                .chain((2..).map(|i| format!("{base}_{i}")))
                .find(|c| !taken.contains(c) && !own.contains(&c.as_str()))
                .unwrap_or(base);
            renamed.push(format!(
                "model output \"{name}\" is written as column \"{free}\" (the input has a column \"{name}\")"
            ));
            taken.push(free.clone());
            columns.push(free);
        }
        Ok(OutputNames { columns, renamed })
    }
}

/// `tensor` (one of a batch's outputs) as a column of `rows` rows named
/// `column`: scalar when it has one value per row, else a fixed-size list.
pub fn output_column(
    tensor: Tensor,
    column: &str,
    rows: usize,
) -> anyhow::Result<(Field, ArrayRef)> {
    let shape = tensor.shape.clone();
    anyhow::ensure!(
        shape.first().is_some_and(|&n| n as usize == rows),
        "model output \"{}\" has shape {} for {rows} input rows; offline scoring needs outputs with one entry per row (first dimension = rows)",
        tensor.name,
        fmt_shape(&shape)
    );
    let width: usize = shape[1..].iter().map(|&d| d.max(0) as usize).product();
    let values = array(tensor.data);
    let item_type = values.data_type().clone();
    if shape.len() == 1 {
        return Ok((Field::new(column, item_type, false), values));
    }
    let item = Arc::new(Field::new("item", item_type, false));
    let list = FixedSizeListArray::try_new(item.clone(), width as i32, values, None)?;
    Ok((
        Field::new(column, list.data_type().clone(), false),
        Arc::new(list),
    ))
}

fn array(data: TensorData) -> ArrayRef {
    match data {
        TensorData::Bool(v) => Arc::new(BooleanArray::from(v)),
        TensorData::Uint8(v) => Arc::new(UInt8Array::from(v)),
        TensorData::Uint16(v) => Arc::new(UInt16Array::from(v)),
        TensorData::Uint32(v) => Arc::new(UInt32Array::from(v)),
        TensorData::Uint64(v) => Arc::new(UInt64Array::from(v)),
        TensorData::Int8(v) => Arc::new(Int8Array::from(v)),
        TensorData::Int16(v) => Arc::new(Int16Array::from(v)),
        TensorData::Int32(v) => Arc::new(Int32Array::from(v)),
        TensorData::Int64(v) => Arc::new(Int64Array::from(v)),
        TensorData::Fp16(v) => Arc::new(Float16Array::from(v)),
        // Arrow has no BF16; FP32 holds every BF16 value exactly.
        TensorData::Bf16(v) => Arc::new(Float32Array::from(
            v.into_iter().map(half::bf16::to_f32).collect::<Vec<_>>(),
        )),
        TensorData::Fp32(v) => Arc::new(Float32Array::from(v)),
        TensorData::Fp64(v) => Arc::new(Float64Array::from(v)),
        TensorData::Bytes(v) => Arc::new(StringArray::from_iter_values(
            v.iter().map(|b| String::from_utf8_lossy(b)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::TensorSpec;
    use crate::tensor::DataType;
    use arrow_schema::DataType as ArrowType;

    fn signature(outputs: &[&str]) -> Signature {
        Signature {
            inputs: vec![],
            outputs: outputs
                .iter()
                .map(|n| TensorSpec {
                    name: n.to_string(),
                    datatype: DataType::Fp32,
                    shape: vec![-1],
                })
                .collect(),
        }
    }

    fn schema(columns: &[&str]) -> Schema {
        Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, ArrowType::Float64, true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn clashing_outputs_are_renamed_never_overwritten() {
        let plan = OutputNames::plan(
            &schema(&["label", "predicted_label", "x"]),
            &signature(&["label", "probabilities"]),
        )
        .unwrap();
        assert_eq!(plan.columns, ["predicted_label_2", "probabilities"]);
        assert_eq!(
            plan.renamed,
            ["model output \"label\" is written as column \"predicted_label_2\" (the input has a column \"label\")"]
        );
        // A renamed output never takes the name of another output.
        let plan = OutputNames::plan(&schema(&["y"]), &signature(&["y", "predicted_y"])).unwrap();
        assert_eq!(plan.columns, ["predicted_y_2", "predicted_y"]);
        let e = OutputNames::plan(&schema(&["model_version"]), &signature(&["y"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has a column \"model_version\""), "{e}");
    }

    #[test]
    fn vector_outputs_become_fixed_size_lists() {
        let t = Tensor::new(
            "p".into(),
            vec![2, 2],
            TensorData::Fp32(vec![0.25, 0.75, 0.5, 0.5]),
        )
        .unwrap();
        let (field, column) = output_column(t, "p", 2).unwrap();
        assert_eq!(
            field.data_type().to_string(),
            "FixedSizeList(2 x non-null Float32)"
        );
        assert_eq!(column.len(), 2);
        let t = Tensor::new("l".into(), vec![2], TensorData::Int64(vec![0, 1])).unwrap();
        let (field, _) = output_column(t, "label", 2).unwrap();
        assert_eq!(
            (field.name().as_str(), field.data_type()),
            ("label", &ArrowType::Int64)
        );
        let t = Tensor::new("l".into(), vec![1], TensorData::Int64(vec![0])).unwrap();
        let e = output_column(t, "l", 2).unwrap_err().to_string();
        assert!(e.contains("has shape [1] for 2 input rows"), "{e}");
    }
}

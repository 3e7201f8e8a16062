//! Column values → model input values: casting to the input's datatype
//! (failing on values that do not fit), refusing nulls with their row, and
//! flattening list columns row-major.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType as ArrowType, Field};

use crate::tensor::{DataType, TensorData};

/// The Arrow type a model input's values are cast to.
pub fn arrow_type(datatype: DataType) -> ArrowType {
    match datatype {
        DataType::Bool => ArrowType::Boolean,
        DataType::Uint8 => ArrowType::UInt8,
        DataType::Uint16 => ArrowType::UInt16,
        DataType::Uint32 => ArrowType::UInt32,
        DataType::Uint64 => ArrowType::UInt64,
        DataType::Int8 => ArrowType::Int8,
        DataType::Int16 => ArrowType::Int16,
        DataType::Int32 => ArrowType::Int32,
        DataType::Int64 => ArrowType::Int64,
        DataType::Fp16 => ArrowType::Float16,
        // No BF16 in Arrow: refused by `width_of`, widened where read.
        DataType::Bf16 | DataType::Fp32 => ArrowType::Float32,
        DataType::Fp64 => ArrowType::Float64,
        DataType::Bytes => ArrowType::Utf8,
    }
}

/// Casting that fails on a value that does not fit (instead of a null).
const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: arrow_cast::display::FormatOptions::new(),
};

pub(super) fn cast(array: &ArrayRef, to: &ArrowType, name: &str) -> anyhow::Result<ArrayRef> {
    cast_with_options(array, to, &STRICT)
        .with_context(|| format!("column \"{name}\": cannot convert its values to {to}"))
}

pub(super) fn no_nulls(array: &dyn Array, what: &str, first_row: u64) -> anyhow::Result<()> {
    if array.null_count() == 0 {
        return Ok(());
    }
    let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
    anyhow::bail!(
        "{what} is null at row {}; fill or drop missing values before scoring",
        first_row + row as u64
    )
}

pub(super) fn scalar_values(
    column: &ArrayRef,
    name: &str,
    target: &ArrowType,
    first_row: u64,
) -> anyhow::Result<ArrayRef> {
    no_nulls(column.as_ref(), &format!("column \"{name}\""), first_row)?;
    cast(column, target, name)
}

/// The values of a list column, flattened row-major, after checking that
/// every row holds exactly `width` non-null values.
pub(super) fn list_values(
    column: &ArrayRef,
    name: &str,
    target: &ArrowType,
    width: usize,
    first_row: u64,
) -> anyhow::Result<ArrayRef> {
    no_nulls(column.as_ref(), &format!("column \"{name}\""), first_row)?;
    let item = Arc::new(Field::new("item", target.clone(), true));
    let lists = cast(column, &ArrowType::LargeList(item), name)?;
    let lists = lists.as_list::<i64>();
    let offsets = lists.value_offsets();
    if let Some(row) = (0..lists.len()).find(|&r| (offsets[r + 1] - offsets[r]) as usize != width) {
        anyhow::bail!(
            "column \"{name}\" holds {} values at row {}; the model takes {width} per row",
            offsets[row + 1] - offsets[row],
            first_row + row as u64
        );
    }
    let start = offsets[0] as usize;
    let values = lists.values().slice(start, lists.len() * width);
    if values.null_count() > 0 {
        let at = (0..values.len()).find(|&i| values.is_null(i)).unwrap_or(0);
        anyhow::bail!(
            "column \"{name}\" has a null value at row {} (position {}); fill or drop missing values before scoring",
            first_row + (at / width) as u64,
            at % width
        );
    }
    Ok(values)
}

/// The elements of `array` (already of [`arrow_type`]`(datatype)`, no nulls).
pub(super) fn tensor_data(array: &dyn Array, datatype: DataType) -> TensorData {
    macro_rules! prim {
        ($t:ty) => {
            array.as_primitive::<$t>().values().to_vec()
        };
    }
    match datatype {
        DataType::Bool => {
            TensorData::Bool(array.as_boolean().iter().map(|v| v == Some(true)).collect())
        }
        DataType::Uint8 => TensorData::Uint8(prim!(UInt8Type)),
        DataType::Uint16 => TensorData::Uint16(prim!(UInt16Type)),
        DataType::Uint32 => TensorData::Uint32(prim!(UInt32Type)),
        DataType::Uint64 => TensorData::Uint64(prim!(UInt64Type)),
        DataType::Int8 => TensorData::Int8(prim!(Int8Type)),
        DataType::Int16 => TensorData::Int16(prim!(Int16Type)),
        DataType::Int32 => TensorData::Int32(prim!(Int32Type)),
        DataType::Int64 => TensorData::Int64(prim!(Int64Type)),
        DataType::Fp16 => TensorData::Fp16(prim!(Float16Type)),
        DataType::Bf16 => TensorData::Bf16(
            prim!(Float32Type)
                .into_iter()
                .map(half::bf16::from_f32)
                .collect(),
        ),
        DataType::Fp32 => TensorData::Fp32(prim!(Float32Type)),
        DataType::Fp64 => TensorData::Fp64(prim!(Float64Type)),
        DataType::Bytes => TensorData::Bytes(
            array
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or_default().as_bytes().to_vec())
                .collect(),
        ),
    }
}

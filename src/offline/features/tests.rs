use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float64Builder, ListBuilder};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType as ArrowType, Field, Schema};

use super::*;
use crate::runtime::TensorSpec;
use crate::tensor::{DataType, TensorData};

fn input(name: &str, shape: Vec<i64>) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        shape,
    }
}

fn signature(inputs: Vec<TensorSpec>) -> Signature {
    Signature {
        inputs,
        outputs: vec![],
    }
}

fn scalars(names: &[&str]) -> Schema {
    Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, ArrowType::Float64, true))
            .collect::<Vec<_>>(),
    )
}

fn options(features: Option<&[&str]>, exclude: &[&str]) -> MappingOptions {
    MappingOptions {
        features: features.map(|f| f.iter().map(|s| s.to_string()).collect()),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
    }
}

fn map(schema: &Schema, sig: &Signature, opts: &MappingOptions) -> Result<FeatureMapping, String> {
    FeatureMapping::new(schema, sig, "m v1", opts).map_err(|e| format!("{e:#}"))
}

#[test]
fn every_non_label_column_in_file_order_or_the_named_ones() {
    let sig = signature(vec![input("x", vec![-1, 2])]);
    let schema = scalars(&["b", "y", "a"]);
    let m = map(&schema, &sig, &options(None, &["y"])).unwrap();
    assert_eq!(m.columns(), ["b", "a"]);
    assert_eq!(m.describe(), "input \"x\" <- 2 columns b, a");
    let m = map(&schema, &sig, &options(Some(&["a", "b"]), &["y"])).unwrap();
    assert_eq!(m.columns(), ["a", "b"]);
    // Without a label every column is a feature: three for two values.
    let e = map(&schema, &sig, &options(None, &[])).unwrap_err();
    assert_eq!(
        e,
        "model m v1 takes input \"x\" FP32 [-1,2] (2 values per row), but the file has 3 feature columns: b, y, a; name the 2 feature columns with --features a,b,c, or give one column \"x\" holding a list of 2 values"
    );
}

#[test]
fn features_that_do_not_fit_are_refused_with_the_fix() {
    let sig = signature(vec![input("x", vec![-1, 2])]);
    let schema = scalars(&["a", "b", "y"]);
    let e = map(&schema, &sig, &options(Some(&["a", "nope"]), &["y"])).unwrap_err();
    assert_eq!(
        e,
        "check --features: the file has no column \"nope\"; its columns are: a, b, y"
    );
    let e = map(&schema, &sig, &options(Some(&["a", "y"]), &["y"])).unwrap_err();
    assert!(
        e.ends_with("column \"y\" is the label; it cannot also be a feature"),
        "{e}"
    );
    let e = map(&schema, &sig, &options(Some(&["a", "b", "a"]), &["y"])).unwrap_err();
    assert_eq!(e, "--features names column \"a\" twice");
    let text = Schema::new(vec![
        Field::new("a", ArrowType::Float64, false),
        Field::new("id", ArrowType::Utf8, false),
    ]);
    let e = map(&text, &sig, &options(None, &[])).unwrap_err();
    assert!(
        e.starts_with("name the feature columns with --features a,b,c to leave other columns out: column \"id\" holds Utf8; input \"x\" of model m v1 takes FP32 [-1,2] (numbers)"),
        "{e}"
    );
}

#[test]
fn a_list_column_named_like_the_input_or_alone_feeds_it() {
    let sig = signature(vec![input("x", vec![-1, 3])]);
    let list = |name: &str| {
        Field::new(
            name,
            ArrowType::List(Arc::new(Field::new("item", ArrowType::Float64, true))),
            true,
        )
    };
    let schema = Schema::new(vec![
        Field::new("id", ArrowType::Int64, false),
        list("x"),
        Field::new("y", ArrowType::Int64, false),
    ]);
    let m = map(&schema, &sig, &options(None, &["y"])).unwrap();
    assert_eq!(m.columns(), ["x"]);
    let schema = Schema::new(vec![
        list("features"),
        Field::new("y", ArrowType::Int64, false),
    ]);
    let m = map(&schema, &sig, &options(None, &["y"])).unwrap();
    assert_eq!(m.columns(), ["features"]);
    let fixed = Schema::new(vec![Field::new(
        "x",
        ArrowType::FixedSizeList(Arc::new(Field::new("item", ArrowType::Float64, true)), 4),
        false,
    )]);
    let e = map(&fixed, &sig, &options(None, &[])).unwrap_err();
    assert_eq!(
        e,
        "column \"x\" holds lists of 4 values; input \"x\" of model m v1 takes FP32 [-1,3] (3 values per row)"
    );
}

#[test]
fn multi_input_models_take_one_column_per_input() {
    let sig = signature(vec![input("a", vec![-1]), input("b", vec![-1, 1])]);
    let m = map(&scalars(&["b", "a", "y"]), &sig, &options(None, &["y"])).unwrap();
    assert_eq!(m.columns(), ["a", "b"]);
    let e = map(&scalars(&["a", "y"]), &sig, &options(None, &["y"])).unwrap_err();
    assert_eq!(
        e,
        "model m v1 takes one column per input, named like the input (\"a\" FP32 [-1], \"b\" FP32 [-1,1]): the file has no column \"b\"; its columns are: a, y"
    );
    let e = map(&scalars(&["a", "b"]), &sig, &options(Some(&["a"]), &[])).unwrap_err();
    assert!(e.contains("--features does not apply"), "{e}");
}

#[test]
fn shapes_without_a_row_dimension_are_refused() {
    let e = map(
        &scalars(&["a"]),
        &signature(vec![input("x", vec![2, 3])]),
        &options(None, &[]),
    )
    .unwrap_err();
    assert_eq!(e, "model m v1 input \"x\" has shape [2,3]: offline scoring needs a first dimension of any size (-1) for the rows");
    let e = map(
        &scalars(&["a"]),
        &signature(vec![input("x", vec![-1, -1])]),
        &options(None, &[]),
    )
    .unwrap_err();
    assert!(
        e.contains("needs every dimension but the first (the rows) fixed"),
        "{e}"
    );
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

#[test]
fn columns_are_cast_and_interleaved_into_rows() {
    let sig = signature(vec![input("x", vec![-1, 2])]);
    let b = batch(vec![
        (
            "a",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as ArrayRef,
        ),
        ("b", Arc::new(Int64Array::from(vec![10, 20, 30]))),
    ]);
    let m = map(&b.schema(), &sig, &options(None, &[])).unwrap();
    let t = m.tensors(&b, 0).unwrap();
    assert_eq!(t[0].shape, vec![3, 2]);
    assert_eq!(
        t[0].data,
        TensorData::Fp32(vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0])
    );
}

#[test]
fn list_columns_are_flattened_and_checked_row_by_row() {
    let sig = signature(vec![input("x", vec![-1, 2])]);
    let mut lists = ListBuilder::new(Float64Builder::new());
    for row in [
        vec![Some(1.0), Some(2.0)],
        vec![Some(3.0), Some(4.0)],
        vec![Some(5.0)],
    ] {
        lists.append_value(row);
    }
    let b = batch(vec![("x", Arc::new(lists.finish()) as ArrayRef)]);
    let m = map(&b.schema(), &sig, &options(None, &[])).unwrap();
    let ok = m.tensors(&b.slice(0, 2), 0).unwrap();
    assert_eq!(ok[0].data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]));
    let e = m.tensors(&b, 100).unwrap_err().to_string();
    assert_eq!(
        e,
        "column \"x\" holds 1 values at row 102; the model takes 2 per row"
    );
    let mut fixed = FixedSizeListBuilder::new(Float64Builder::new(), 2);
    fixed.values().append_value(1.0);
    fixed.values().append_null();
    fixed.append(true);
    let b = batch(vec![("x", Arc::new(fixed.finish()) as ArrayRef)]);
    let e = m.tensors(&b, 7).unwrap_err().to_string();
    assert!(
        e.starts_with("column \"x\" has a null value at row 7 (position 1)"),
        "{e}"
    );
}

#[test]
fn nulls_and_values_that_do_not_fit_name_the_row() {
    let sig = signature(vec![input("x", vec![-1])]);
    let b = batch(vec![(
        "a",
        Arc::new(Float64Array::from(vec![Some(1.0), None])) as ArrayRef,
    )]);
    let m = map(&b.schema(), &sig, &options(None, &[])).unwrap();
    let e = m.tensors(&b, 10).unwrap_err().to_string();
    assert_eq!(
        e,
        "column \"a\" is null at row 11; fill or drop missing values before scoring"
    );
    let int_sig = Signature {
        inputs: vec![TensorSpec {
            name: "x".into(),
            datatype: DataType::Int8,
            shape: vec![-1],
        }],
        outputs: vec![],
    };
    let b = batch(vec![(
        "a",
        Arc::new(Int64Array::from(vec![1, 300])) as ArrayRef,
    )]);
    let m = map(&b.schema(), &int_sig, &options(None, &[])).unwrap();
    let e = format!("{:#}", m.tensors(&b, 0).unwrap_err());
    assert!(
        e.starts_with("column \"a\": cannot convert its values to Int8"),
        "{e}"
    );
    let text_sig = Signature {
        inputs: vec![TensorSpec {
            name: "s".into(),
            datatype: DataType::Bytes,
            shape: vec![-1],
        }],
        outputs: vec![],
    };
    let b = batch(vec![(
        "s",
        Arc::new(StringArray::from(vec!["hi"])) as ArrayRef,
    )]);
    let m = map(&b.schema(), &text_sig, &options(None, &[])).unwrap();
    assert_eq!(
        m.tensors(&b, 0).unwrap()[0].data,
        TensorData::Bytes(vec![b"hi".to_vec()])
    );
}

//! The feature mapping: which columns of a file feed which model input.
//! Shared by every offline command, so `batch`, `compare` (and the
//! monitoring of logged traffic) read the same file the same way.
//!
//! The rules, checked against the model's signature before anything runs:
//! - A model with one input of shape `[-1, F]` takes either ONE column
//!   holding a list of F values per row (the column named like the input,
//!   or the only feature column), or F numeric columns: all columns but the
//!   excluded ones (the label) in file order, or exactly those named by
//!   `--features a,b,c`, in that order. An input `[-1]` or `[-1, 1]` takes
//!   one scalar column.
//! - A model with several inputs takes one column per input, named like the
//!   input (a scalar column, or a list column for inputs wider than one value).
//! - Every dimension but the first (the batch) must be fixed; wider shapes
//!   (`[-1, 4, 4]`) take a list of their element count per row, row-major.
//! - Numeric columns (any integer, float or boolean type) are cast to the
//!   input's datatype, failing on values that do not fit; string inputs take
//!   text columns. A null feature value stops the job with its row.

mod convert;
#[cfg(test)]
mod tests;

use anyhow::Context;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType as ArrowType, Field, Schema};

pub use convert::arrow_type;
use convert::{list_values, scalar_values, tensor_data};

use crate::runtime::{Signature, TensorSpec};
use crate::tensor::{fmt_shape, DataType, Tensor};

/// How the columns of a file feed a model's inputs; built once per file and
/// model by [`FeatureMapping::new`], applied to each batch by
/// [`FeatureMapping::tensors`].
#[derive(Debug, Clone)]
pub struct FeatureMapping {
    feeds: Vec<InputFeed>,
}

/// Where one model input's values come from.
#[derive(Debug, Clone)]
pub struct InputFeed {
    /// The model input, as the signature declares it.
    pub input: TensorSpec,
    /// Values per row: the product of the input's dimensions after the first.
    pub width: usize,
    pub columns: FeedColumns,
    /// Index of each column of `columns` in the file's schema.
    indexes: Vec<usize>,
}

/// The file columns behind one model input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedColumns {
    /// One column: a scalar per row (width 1), or a list of `width` values.
    One(String),
    /// `width` scalar columns, one value each, in input order.
    Many(Vec<String>),
}

/// What the command line says about the columns.
#[derive(Debug, Clone, Default)]
pub struct MappingOptions {
    /// `--features a,b,c`: exactly these columns, in this order.
    pub features: Option<Vec<String>>,
    /// Columns that never feed the model (the label column).
    pub exclude: Vec<String>,
}

impl FeatureMapping {
    /// Maps the columns of `schema` to the inputs of `signature` (of the
    /// model called `model` in messages, e.g. `fraud v1`). A mismatch is
    /// refused with a message naming the columns, the signature and the fix.
    pub fn new(
        schema: &Schema,
        signature: &Signature,
        model: &str,
        options: &MappingOptions,
    ) -> anyhow::Result<FeatureMapping> {
        let widths = signature
            .inputs
            .iter()
            .map(|spec| width_of(spec, model))
            .collect::<anyhow::Result<Vec<usize>>>()?;
        let column = |name: &str| -> anyhow::Result<(usize, &Field)> {
            let found = schema.index_of(name).ok();
            let index = found.with_context(|| {
                format!(
                    "the file has no column \"{name}\"; its columns are: {}",
                    list(schema.fields().iter().map(|f| f.name().as_str()))
                )
            })?;
            anyhow::ensure!(
                !options.exclude.iter().any(|e| e == name),
                "column \"{name}\" is the label; it cannot also be a feature"
            );
            Ok((index, schema.field(index)))
        };
        let mut feeds = Vec::with_capacity(signature.inputs.len());
        if signature.inputs.len() > 1 {
            anyhow::ensure!(
                options.features.is_none(),
                "model {model} has {} inputs ({}); it takes one column per input, named like the input, so --features does not apply",
                signature.inputs.len(),
                describe_inputs(signature)
            );
            for (spec, &width) in signature.inputs.iter().zip(&widths) {
                let (index, field) = column(&spec.name).with_context(|| {
                    format!(
                        "model {model} takes one column per input, named like the input ({})",
                        describe_inputs(signature)
                    )
                })?;
                check_one(field, spec, width, model)?;
                feeds.push(InputFeed {
                    input: spec.clone(),
                    width,
                    columns: FeedColumns::One(spec.name.clone()),
                    indexes: vec![index],
                });
            }
            return Ok(FeatureMapping { feeds });
        }
        let (Some(spec), Some(&width)) = (signature.inputs.first(), widths.first()) else {
            anyhow::bail!("model {model} declares no inputs; there is nothing to feed it");
        };
        let feed = |columns: FeedColumns, indexes: Vec<usize>| InputFeed {
            input: spec.clone(),
            width,
            columns,
            indexes,
        };
        let takes = format!(
            "model {model} takes input \"{}\" {} {} ({width} value{} per row)",
            spec.name,
            spec.datatype,
            fmt_shape(&spec.shape),
            if width == 1 { "" } else { "s" }
        );
        if let Some(names) = &options.features {
            anyhow::ensure!(!names.is_empty(), "--features names no column");
            let mut chosen = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                anyhow::ensure!(
                    !names[..i].contains(name),
                    "--features names column \"{name}\" twice"
                );
                chosen.push(column(name).context("check --features")?);
            }
            if let [(index, field)] = chosen[..] {
                if is_list(field.data_type()) || width == 1 {
                    check_one(field, spec, width, model)?;
                    feeds.push(feed(FeedColumns::One(names[0].clone()), vec![index]));
                    return Ok(FeatureMapping { feeds });
                }
            }
            anyhow::ensure!(
                chosen.len() == width,
                "--features names {} column{}, but {takes}; name {width} columns, or one column holding a list of {width} values",
                chosen.len(),
                if chosen.len() == 1 { "" } else { "s" }
            );
            for (_, field) in &chosen {
                check_scalar(field, spec, model)?;
            }
            feeds.push(feed(
                FeedColumns::Many(names.clone()),
                chosen.iter().map(|(i, _)| *i).collect(),
            ));
            return Ok(FeatureMapping { feeds });
        }
        // A column named like the input, holding the whole row.
        if let Ok(index) = schema.index_of(&spec.name) {
            let field = schema.field(index);
            if !options.exclude.contains(&spec.name) && (is_list(field.data_type()) || width == 1) {
                check_one(field, spec, width, model)?;
                feeds.push(feed(FeedColumns::One(spec.name.clone()), vec![index]));
                return Ok(FeatureMapping { feeds });
            }
        }
        let candidates: Vec<(usize, &Field)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !options.exclude.contains(f.name()))
            .map(|(i, f)| (i, f.as_ref()))
            .collect();
        let names = || list(candidates.iter().map(|(_, f)| f.name().as_str()));
        let excluded = if options.exclude.is_empty() {
            String::new()
        } else {
            format!(
                " (all but {})",
                list(options.exclude.iter().map(String::as_str))
            )
        };
        if let [(index, field)] = candidates[..] {
            if is_list(field.data_type()) || width == 1 {
                check_one(field, spec, width, model)?;
                feeds.push(feed(FeedColumns::One(field.name().clone()), vec![index]));
                return Ok(FeatureMapping { feeds });
            }
        }
        anyhow::ensure!(
            !candidates.is_empty(),
            "{takes}, but the file has no feature columns{excluded}"
        );
        anyhow::ensure!(
            candidates.len() == width,
            "{takes}, but the file has {} feature columns{excluded}: {}; name the {width} feature columns with --features a,b,c, or give one column \"{}\" holding a list of {width} values",
            candidates.len(),
            names(),
            spec.name
        );
        for (_, field) in &candidates {
            check_scalar(field, spec, model).context(
                "name the feature columns with --features a,b,c to leave other columns out",
            )?;
        }
        feeds.push(feed(
            FeedColumns::Many(candidates.iter().map(|(_, f)| f.name().clone()).collect()),
            candidates.iter().map(|(i, _)| *i).collect(),
        ));
        Ok(FeatureMapping { feeds })
    }

    /// Where each model input comes from, in signature order.
    pub fn feeds(&self) -> &[InputFeed] {
        &self.feeds
    }

    /// The file columns the model reads, in input order.
    pub fn columns(&self) -> Vec<&str> {
        self.feeds
            .iter()
            .flat_map(|feed| match &feed.columns {
                FeedColumns::One(name) => std::slice::from_ref(name),
                FeedColumns::Many(names) => names.as_slice(),
            })
            .map(String::as_str)
            .collect()
    }

    /// One line per input: `input "input" <- columns f0, f1, …`.
    pub fn describe(&self) -> String {
        self.feeds
            .iter()
            .map(|feed| match &feed.columns {
                FeedColumns::One(name) => {
                    format!("input \"{}\" <- column \"{name}\"", feed.input.name)
                }
                FeedColumns::Many(names) => format!(
                    "input \"{}\" <- {} columns {}",
                    feed.input.name,
                    names.len(),
                    list(names.iter().map(String::as_str))
                ),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The model inputs for `batch`, in signature order. `first_row` is the
    /// batch's first row in the file, for messages about a bad value.
    pub fn tensors(&self, batch: &RecordBatch, first_row: u64) -> anyhow::Result<Vec<Tensor>> {
        let rows = batch.num_rows();
        self.feeds
            .iter()
            .map(|feed| {
                let target = arrow_type(feed.input.datatype);
                let flat: ArrayRef = match &feed.columns {
                    FeedColumns::One(name) => {
                        let column = batch.column(feed.indexes[0]);
                        if is_list(column.data_type()) {
                            list_values(column, name, &target, feed.width, first_row)?
                        } else {
                            scalar_values(column, name, &target, first_row)?
                        }
                    }
                    FeedColumns::Many(names) => {
                        let columns = feed
                            .indexes
                            .iter()
                            .zip(names)
                            .map(|(&i, name)| {
                                scalar_values(batch.column(i), name, &target, first_row)
                            })
                            .collect::<anyhow::Result<Vec<ArrayRef>>>()?;
                        let refs: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
                        let order: Vec<(usize, usize)> = (0..rows)
                            .flat_map(|row| (0..columns.len()).map(move |col| (col, row)))
                            .collect();
                        arrow_select::interleave::interleave(&refs, &order)?
                    }
                };
                let mut shape = feed.input.shape.clone();
                shape[0] = rows as i64;
                Ok(Tensor::new(
                    feed.input.name.clone(),
                    shape,
                    tensor_data(flat.as_ref(), feed.input.datatype),
                )?)
            })
            .collect()
    }
}

/// Values per row of `spec`: every dimension but the first must be fixed.
fn width_of(spec: &TensorSpec, model: &str) -> anyhow::Result<usize> {
    let shape = fmt_shape(&spec.shape);
    anyhow::ensure!(
        spec.datatype != DataType::Bf16,
        "model {model} input \"{}\" is BF16, which has no column type; offline scoring supports the other datatypes",
        spec.name
    );
    match spec.shape.split_first() {
        Some((&first, rest)) if first < 0 => rest.iter().try_fold(1usize, |n, &d| {
            anyhow::ensure!(
                d > 0,
                "model {model} input \"{}\" has shape {shape}: offline scoring needs every dimension but the first (the rows) fixed",
                spec.name
            );
            Ok(n.saturating_mul(d as usize))
        }),
        _ => anyhow::bail!(
            "model {model} input \"{}\" has shape {shape}: offline scoring needs a first dimension of any size (-1) for the rows",
            spec.name
        ),
    }
}

fn is_list(t: &ArrowType) -> bool {
    matches!(
        t,
        ArrowType::List(_) | ArrowType::LargeList(_) | ArrowType::FixedSizeList(..)
    )
}

/// Whether a column of type `t` can hold values of `datatype`.
fn holds(t: &ArrowType, datatype: DataType) -> bool {
    match datatype {
        DataType::Bytes => matches!(
            t,
            ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
        ),
        DataType::Bool => matches!(t, ArrowType::Boolean),
        _ => t.is_numeric() || matches!(t, ArrowType::Boolean),
    }
}

fn needs(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bytes => "text",
        DataType::Bool => "booleans",
        _ => "numbers",
    }
}

fn check_scalar(field: &Field, spec: &TensorSpec, model: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        holds(field.data_type(), spec.datatype),
        "column \"{}\" holds {}; input \"{}\" of model {model} takes {} {} ({})",
        field.name(),
        field.data_type(),
        spec.name,
        spec.datatype,
        fmt_shape(&spec.shape),
        needs(spec.datatype)
    );
    Ok(())
}

/// Checks a column that alone feeds `spec`: a list of `width` values, or a
/// scalar when `width` is 1.
fn check_one(field: &Field, spec: &TensorSpec, width: usize, model: &str) -> anyhow::Result<()> {
    let item = match field.data_type() {
        ArrowType::FixedSizeList(item, n) => {
            anyhow::ensure!(
                *n as usize == width,
                "column \"{}\" holds lists of {n} values; input \"{}\" of model {model} takes {} {} ({width} values per row)",
                field.name(),
                spec.name,
                spec.datatype,
                fmt_shape(&spec.shape)
            );
            item.data_type()
        }
        ArrowType::List(item) | ArrowType::LargeList(item) => item.data_type(),
        _ if width == 1 => return check_scalar(field, spec, model),
        other => anyhow::bail!(
            "column \"{}\" holds one {other} per row; input \"{}\" of model {model} takes {} {} ({width} values per row): give a list column, or {width} columns with --features",
            field.name(),
            spec.name,
            spec.datatype,
            fmt_shape(&spec.shape)
        ),
    };
    anyhow::ensure!(
        holds(item, spec.datatype),
        "column \"{}\" holds lists of {item}; input \"{}\" of model {model} takes {} {} ({})",
        field.name(),
        spec.name,
        spec.datatype,
        fmt_shape(&spec.shape),
        needs(spec.datatype)
    );
    Ok(())
}

fn describe_inputs(signature: &Signature) -> String {
    signature
        .inputs
        .iter()
        .map(|s| format!("\"{}\" {} {}", s.name, s.datatype, fmt_shape(&s.shape)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a, b, c` (the first ten, then how many more).
fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut shown = names
        .iter()
        .take(10)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 10 {
        shown.push_str(&format!(", … ({} more)", names.len() - 10));
    }
    shown
}

//! What a metric reads from a model's outputs and the label column, batch
//! by batch, reduced to [`RowScores`] at the end.
//!
//! Which output a metric reads (unless `--prediction` names one):
//! - accuracy: the output `label` when it is an integer with one value per
//!   row, else the only such output, else the arg-max of the probabilities;
//! - log_loss, roc_auc: the output `probabilities` (or `probability`), else
//!   the only float output `[-1, C]`; column `k` is class `k`, and for
//!   roc_auc (binary only) column 1 is the positive class. A single float
//!   per row is read as the positive-class probability;
//! - rmse, mae: the only float output with one value per row (or `variable`,
//!   skl2onnx's name for a regressor's output).
//!
//! Labels: class indexes `0..C` (integer, boolean, or integral float
//! columns) for classification metrics, numbers for rmse/mae.

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType as ArrowType;

use super::metrics::{Metric, RowScores};
use crate::runtime::{Signature, TensorSpec};
use crate::tensor::{Tensor, TensorData};

/// Where a metric's predictions come from in a model's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// An integer class per row.
    Class { output: usize },
    /// The arg-max of a probability output with `classes` columns.
    Argmax { output: usize, classes: usize },
    /// Class probabilities (`classes` columns; 1 = the positive class's).
    Probabilities { output: usize, classes: usize },
    /// One number per row.
    Value { output: usize },
}

/// Per-row material gathered batch by batch.
#[derive(Default)]
pub(super) struct Collected {
    predicted: Vec<i64>,
    labels: Vec<i64>,
    values: Vec<f64>,
    targets: Vec<f64>,
    positive: Vec<bool>,
}

impl Collected {
    pub(super) fn add(
        &mut self,
        metric: Metric,
        reading: Reading,
        outputs: &[Tensor],
        labels: Vec<f64>,
        first_row: u64,
    ) -> anyhow::Result<()> {
        let row_of = |i: usize| first_row + i as u64;
        match reading {
            Reading::Class { output } => {
                let classes =
                    integers(&outputs[output].data).context("class output is not integer")?;
                self.predicted.extend(classes);
            }
            Reading::Argmax { output, classes } => {
                let p = floats(&outputs[output].data).context("probability output is not float")?;
                self.predicted.extend(p.chunks(classes).map(|row| {
                    let mut best = 0;
                    for (k, v) in row.iter().enumerate() {
                        if *v > row[best] {
                            best = k;
                        }
                    }
                    best as i64
                }));
            }
            Reading::Probabilities { output, classes } => {
                let p = floats(&outputs[output].data).context("probability output is not float")?;
                let width = classes.max(1);
                for (i, (row, &y)) in p.chunks(width).zip(&labels).enumerate() {
                    anyhow::ensure!(
                        row.iter().all(|v| v.is_finite()),
                        "the model's probabilities are not finite at row {}",
                        row_of(i)
                    );
                    let class = y as i64;
                    let span = if classes == 1 { 2 } else { classes };
                    anyhow::ensure!(
                        (0..span as i64).contains(&class),
                        "label {class} at row {} is not a class of the model (its probabilities have {span} classes: 0..{}); labels must be class indexes",
                        row_of(i),
                        span - 1
                    );
                    if metric == Metric::RocAuc {
                        anyhow::ensure!(
                            span == 2,
                            "roc_auc needs a binary classifier; this one has {span} classes: use accuracy or log_loss"
                        );
                        self.values.push(if classes == 1 { row[0] } else { row[1] });
                        self.positive.push(class == 1);
                    } else if classes == 1 {
                        self.values
                            .push(if class == 1 { row[0] } else { 1.0 - row[0] });
                    } else {
                        self.values.push(row[class as usize]);
                    }
                }
                return Ok(());
            }
            Reading::Value { output } => {
                let v = floats(&outputs[output].data).context("value output is not float")?;
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    anyhow::bail!("the model's prediction is not finite at row {}", row_of(i));
                }
                self.values.extend(v);
                self.targets.extend(labels);
                return Ok(());
            }
        }
        self.labels.extend(labels.into_iter().map(|y| y as i64));
        Ok(())
    }

    pub(super) fn finish(self, metric: Metric) -> RowScores {
        match metric {
            Metric::Accuracy => RowScores::accuracy(&self.predicted, &self.labels),
            Metric::LogLoss => RowScores::log_loss(&self.values),
            Metric::RocAuc => RowScores::ranking(self.values, self.positive),
            Metric::Rmse => RowScores::errors(&self.values, &self.targets, true),
            Metric::Mae => RowScores::errors(&self.values, &self.targets, false),
        }
    }
}

/// The label column of one batch as numbers; for classification metrics,
/// checked to be whole class indexes.
pub(super) fn label_values(
    column: &ArrayRef,
    name: &str,
    metric: Metric,
    first_row: u64,
) -> anyhow::Result<Vec<f64>> {
    let t = column.data_type();
    anyhow::ensure!(
        t.is_numeric() || matches!(t, ArrowType::Boolean),
        "label column \"{name}\" holds {t}; {metric} needs {}",
        if metric.is_classification() {
            "class indexes (0, 1, …) as integers or booleans"
        } else {
            "numbers"
        }
    );
    if let Some(row) = (0..column.len()).find(|&i| column.is_null(i)) {
        anyhow::bail!(
            "label column \"{name}\" is null at row {}; drop unlabelled rows from the held-out file",
            first_row + row as u64
        );
    }
    let values = arrow_cast::cast(column, &ArrowType::Float64)
        .with_context(|| format!("label column \"{name}\": cannot read its values as numbers"))?;
    let values = values.as_primitive::<Float64Type>().values().to_vec();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        anyhow::bail!(
            "label column \"{name}\" holds {} at row {}",
            values[i],
            first_row + i as u64
        );
    }
    if metric.is_classification() {
        if let Some(i) = values.iter().position(|v| v.fract() != 0.0 || *v < 0.0) {
            anyhow::bail!(
                "label column \"{name}\" holds {} at row {}; {metric} needs class indexes (0, 1, …)",
                values[i],
                first_row + i as u64
            );
        }
    }
    Ok(values)
}

pub(super) fn is_integer(spec: &TensorSpec) -> bool {
    use crate::tensor::DataType::*;
    matches!(
        spec.datatype,
        Int8 | Int16 | Int32 | Int64 | Uint8 | Uint16 | Uint32 | Uint64
    )
}

/// Values per row of an output, when every dimension after the first is fixed.
pub(super) fn width(spec: &TensorSpec) -> Option<usize> {
    spec.shape
        .get(1..)?
        .iter()
        .try_fold(1usize, |n, &d| (d > 0).then(|| n * d as usize))
}

/// Decides which output `metric` reads (see the module documentation).
pub(super) fn reading(
    metric: Metric,
    signature: &Signature,
    model: &str,
    named: Option<&str>,
) -> anyhow::Result<Reading> {
    let outputs = &signature.outputs;
    let list = || {
        outputs
            .iter()
            .map(|o| {
                format!(
                    "\"{}\" {} {}",
                    o.name,
                    o.datatype,
                    crate::tensor::fmt_shape(&o.shape)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let class = |o: &TensorSpec| is_integer(o) && width(o) == Some(1);
    let probabilities = |o: &TensorSpec| o.datatype.is_float() && width(o).is_some();
    let matrix = |o: &TensorSpec| {
        o.datatype.is_float() && o.shape.len() == 2 && width(o).is_some_and(|w| w >= 2)
    };
    let value = |o: &TensorSpec| o.datatype.is_float() && width(o) == Some(1);
    let only = |fits: &dyn Fn(&TensorSpec) -> bool| {
        let mut found = outputs.iter().enumerate().filter(|(_, o)| fits(o));
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    };
    let by_name = |names: &[&str], fits: &dyn Fn(&TensorSpec) -> bool| {
        outputs
            .iter()
            .position(|o| names.contains(&o.name.as_str()) && fits(o))
    };
    let classes = |i: usize| width(&outputs[i]).unwrap_or(1);
    if let Some(name) = named {
        let i = outputs
            .iter()
            .position(|o| o.name == name)
            .with_context(|| {
                format!(
                    "--prediction {name}: model {model} has no such output; its outputs are: {}",
                    list()
                )
            })?;
        let o = &outputs[i];
        return match metric {
            Metric::Accuracy if class(o) => Ok(Reading::Class { output: i }),
            Metric::Accuracy if matrix(o) => Ok(Reading::Argmax {
                output: i,
                classes: classes(i),
            }),
            Metric::LogLoss | Metric::RocAuc if probabilities(o) => Ok(Reading::Probabilities {
                output: i,
                classes: classes(i),
            }),
            Metric::Rmse | Metric::Mae if value(o) => Ok(Reading::Value { output: i }),
            _ => anyhow::bail!(
                "--prediction {name}: output \"{name}\" {} {} cannot be read for {metric} ({})",
                o.datatype,
                crate::tensor::fmt_shape(&o.shape),
                needs(metric)
            ),
        };
    }
    let found = match metric {
        Metric::Accuracy => by_name(&["label"], &class)
            .or_else(|| only(&class))
            .map(|output| Reading::Class { output })
            .or_else(|| {
                by_name(&["probabilities", "probability"], &matrix)
                    .or_else(|| only(&matrix))
                    .map(|output| Reading::Argmax {
                        output,
                        classes: classes(output),
                    })
            }),
        Metric::LogLoss | Metric::RocAuc => {
            by_name(&["probabilities", "probability"], &probabilities)
                .or_else(|| only(&matrix))
                .map(|output| Reading::Probabilities {
                    output,
                    classes: classes(output),
                })
        }
        Metric::Rmse | Metric::Mae => only(&value)
            .or_else(|| by_name(&["variable"], &value))
            .map(|output| Reading::Value { output }),
    };
    let found = found.with_context(|| {
        format!(
            "model {model} has no output to read for {metric} ({}); its outputs are: {}; name one with --prediction",
            needs(metric),
            list()
        )
    })?;
    if let (Metric::RocAuc, Reading::Probabilities { classes, output }) = (metric, found) {
        anyhow::ensure!(
            classes <= 2,
            "roc_auc needs a binary classifier, but output \"{}\" of model {model} has {classes} classes; use accuracy or log_loss",
            outputs[output].name
        );
    }
    Ok(found)
}

fn needs(metric: Metric) -> &'static str {
    match metric {
        Metric::Accuracy => "an integer class per row, or class probabilities [-1, C]",
        Metric::LogLoss | Metric::RocAuc => "float class probabilities [-1, C]",
        Metric::Rmse | Metric::Mae => "one float per row",
    }
}

fn integers(data: &TensorData) -> Option<Vec<i64>> {
    Some(match data {
        TensorData::Int8(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Int16(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Int64(v) => v.clone(),
        TensorData::Uint8(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Uint16(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Uint32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Uint64(v) => v
            .iter()
            .map(|&x| i64::try_from(x).unwrap_or(i64::MAX))
            .collect(),
        _ => return None,
    })
}

fn floats(data: &TensorData) -> Option<Vec<f64>> {
    Some(match data {
        TensorData::Fp16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Bf16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Fp32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Fp64(v) => v.clone(),
        _ => return None,
    })
}

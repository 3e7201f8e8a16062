//! The baseline a window is compared with: a Parquet or CSV file
//! (`--baseline FILE`), its columns matched to the columns the endpoint's
//! calls give, or the table's own rows of a time range
//! (`--baseline-window START..END`, read in [`super::observe`]).
//!
//! A file's columns match by name (`x[3]`, `label`, `probabilities[1]`; a
//! list column `x` stands for `x[0]` … `x[F-1]`). A file whose columns name
//! no input column gives the features in signature order instead: exactly
//! as many columns as the inputs have, the first for `x[0]`, and so on
//! (columns named like outputs still match those by name).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

use super::decode::Cell;
use super::observe::{ColumnValues, Role};
use crate::offline::source::Source;

/// Rows read at a time from the baseline file.
const BATCH_ROWS: usize = 8192;

/// Reads the baseline file at `path` into the endpoint's `columns`.
pub fn read_file(
    path: &Path,
    endpoint: &str,
    columns: &[(String, Role)],
) -> Result<HashMap<String, ColumnValues>> {
    let source = Source::open(path, BATCH_ROWS).context("cannot read the --baseline file")?;
    let fields: Vec<(String, DataType)> = source
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let targets = match_columns(&fields, endpoint, columns)?;
    let mut out: HashMap<String, ColumnValues> = HashMap::new();
    for batch in source.batches() {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        for (i, target) in targets.iter().enumerate() {
            let array = batch.column(i);
            match target {
                Target::Skip => {}
                Target::Column(name) => push_array(array, out.entry(name.clone()).or_default())?,
                Target::List(names) => {
                    let width = names.len();
                    let values = list_values(array, width)?;
                    for (k, cell) in values.into_iter().enumerate() {
                        out.entry(names[k % width].clone()).or_default().push(cell);
                    }
                }
            }
        }
    }
    out.values_mut().for_each(ColumnValues::finish);
    Ok(out)
}

/// Where one file column goes.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Skip,
    Column(String),
    /// A list column whose elements are these columns, in order.
    List(Vec<String>),
}

fn match_columns(
    fields: &[(String, DataType)],
    endpoint: &str,
    columns: &[(String, Role)],
) -> Result<Vec<Target>> {
    let inputs: Vec<&str> = columns
        .iter()
        .filter(|(_, r)| *r == Role::Input)
        .map(|(n, _)| n.as_str())
        .collect();
    let outputs: Vec<&str> = columns
        .iter()
        .filter(|(_, r)| *r == Role::Output)
        .map(|(n, _)| n.as_str())
        .collect();
    let elements = |tensor: &str| -> Vec<String> {
        let prefix = format!("{tensor}[");
        inputs
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .map(|n| n.to_string())
            .collect()
    };
    let mut targets = Vec::with_capacity(fields.len());
    let mut unmatched = Vec::new();
    let mut named_inputs = 0;
    for (i, (name, dtype)) in fields.iter().enumerate() {
        let is_list = matches!(
            dtype,
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
        );
        if inputs.contains(&name.as_str()) {
            named_inputs += 1;
            targets.push(Target::Column(name.clone()));
        } else if outputs.contains(&name.as_str()) {
            targets.push(Target::Column(name.clone()));
        } else if is_list && !elements(name).is_empty() {
            named_inputs += 1;
            targets.push(Target::List(elements(name)));
        } else {
            unmatched.push(i);
            targets.push(Target::Skip);
        }
    }
    let describe = || {
        let show = |v: &[&str]| match v {
            [] => "none".to_string(),
            [one] => one.to_string(),
            [first, .., last] if v.len() > 4 => format!("{first} … {last}"),
            v => v.join(", "),
        };
        format!(
            "endpoint {endpoint:?} logs the input columns {} and the output columns {}",
            show(&inputs),
            show(&outputs)
        )
    };
    let unmatched_names = || {
        unmatched
            .iter()
            .map(|&i| fields[i].0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if named_inputs > 0 {
        if !unmatched.is_empty() {
            bail!(
                "the --baseline file's columns {} match no column of the endpoint ({}); rename or drop them",
                unmatched_names(),
                describe()
            );
        }
        return Ok(targets);
    }
    // Signature order: the unmatched columns are the features, in order.
    if unmatched.len() != inputs.len() {
        bail!(
            "the --baseline file has {} columns that are not outputs ({}) but {}: name the baseline's columns like those, or give exactly {} feature columns in signature order",
            unmatched.len(),
            unmatched_names(),
            describe(),
            inputs.len()
        );
    }
    for (&i, name) in unmatched.iter().zip(&inputs) {
        targets[i] = Target::Column(name.to_string());
    }
    Ok(targets)
}

fn push_array(array: &ArrayRef, into: &mut ColumnValues) -> Result<()> {
    for cell in cells(array)? {
        into.push(cell);
    }
    Ok(())
}

/// The values of a scalar column, numbers as f64 and text as text.
fn cells(array: &ArrayRef) -> Result<Vec<Cell>> {
    let strings = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Some(arrow_cast::cast(array, &DataType::Utf8)?)
        }
        _ => None,
    };
    if let Some(strings) = strings {
        let s = strings.as_string::<i32>();
        return Ok((0..s.len())
            .map(|i| {
                if s.is_valid(i) {
                    Cell::Text(s.value(i).to_string())
                } else {
                    Cell::Null
                }
            })
            .collect());
    }
    let numbers = arrow_cast::cast(array, &DataType::Float64).with_context(|| {
        format!(
            "a --baseline column of type {} cannot be read as numbers",
            array.data_type()
        )
    })?;
    let n = numbers.as_primitive::<arrow_array::types::Float64Type>();
    Ok((0..n.len())
        .map(|i| match n.is_valid(i).then(|| n.value(i)) {
            Some(x) if x.is_finite() => Cell::Number(x),
            _ => Cell::Null,
        })
        .collect())
}

/// The elements of a list column, row after row; every row must hold `width`.
fn list_values(array: &ArrayRef, width: usize) -> Result<Vec<Cell>> {
    let rows: Vec<Option<ArrayRef>> = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().iter().collect(),
        DataType::LargeList(_) => array.as_list::<i64>().iter().collect(),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().iter().collect(),
        other => bail!("a list column was expected, found {other}"),
    };
    let mut out = Vec::with_capacity(rows.len() * width);
    for row in rows {
        match row {
            Some(values) if values.len() == width => out.extend(cells(&values)?),
            Some(values) => bail!(
                "a --baseline list holds {} values; the endpoint's input has {width}",
                values.len()
            ),
            None => out.extend(std::iter::repeat_n(Cell::Null, width)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig() -> Vec<(String, Role)> {
        vec![
            ("x[0]".into(), Role::Input),
            ("x[1]".into(), Role::Input),
            ("label".into(), Role::Output),
        ]
    }

    fn fields(names: &[&str]) -> Vec<(String, DataType)> {
        names
            .iter()
            .map(|n| (n.to_string(), DataType::Float64))
            .collect()
    }

    #[test]
    fn columns_match_by_name_or_in_signature_order() {
        let t = match_columns(&fields(&["x[1]", "x[0]", "label"]), "fraud", &sig()).unwrap();
        assert_eq!(t[0], Target::Column("x[1]".into()));
        let t = match_columns(&fields(&["amount", "age", "label"]), "fraud", &sig()).unwrap();
        assert_eq!(
            t,
            vec![
                Target::Column("x[0]".into()),
                Target::Column("x[1]".into()),
                Target::Column("label".into())
            ]
        );
        let list = vec![(
            "x".to_string(),
            DataType::List(std::sync::Arc::new(arrow_schema::Field::new(
                "item",
                DataType::Float64,
                true,
            ))),
        )];
        let t = match_columns(&list, "fraud", &sig()).unwrap();
        assert_eq!(t, vec![Target::List(vec!["x[0]".into(), "x[1]".into()])]);
    }

    #[test]
    fn columns_that_fit_neither_way_are_refused_with_the_endpoints_columns() {
        let e = match_columns(&fields(&["a", "b", "c"]), "fraud", &sig())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x[0], x[1]") && e.contains("exactly 2 feature columns"),
            "{e}"
        );
        let e = match_columns(&fields(&["x[0]", "x[1]", "extra"]), "fraud", &sig())
            .unwrap_err()
            .to_string();
        assert!(e.contains("extra") && e.contains("rename or drop"), "{e}");
    }
}

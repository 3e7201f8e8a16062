//! A `/invocations` body parsed but not yet matched to a model: a data
//! frame (columns and rows, or records) or tensors. Frame columns map to the
//! model's inputs by name; when they do not, and the model has one 2-D
//! input, the columns are stacked in order into it. Each error says which
//! rule applied.

use serde_json::Value;

use crate::api::http::codec::from_json;
use crate::error::Error;
use crate::runtime::{Signature, TensorSpec};
use crate::tensor::Tensor;

/// A request body parsed, before the routed model's signature is known.
#[derive(Debug)]
pub enum Parsed {
    /// Named columns and rows of cells (`dataframe_split`, CSV).
    Frame {
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
    },
    /// `[{"column": value}, ...]` (`dataframe_records`, records in `instances`).
    Records { value: Value, field: &'static str },
    /// Named or positional nested lists (`inputs`, lists in `instances`).
    Tensors { value: Value, field: &'static str },
}

impl Parsed {
    /// The model inputs this body gives `signature`.
    pub fn into_inputs(self, signature: &Signature) -> Result<Vec<Tensor>, Error> {
        match self {
            Parsed::Frame { columns, rows } => frame_to_inputs(columns, rows, signature),
            Parsed::Records { value, field } => records_to_inputs(value, signature, field),
            Parsed::Tensors { value, field } => tensors_to_inputs(value, signature, field),
        }
    }
}

/// Records (`[{"col": v, ...}, ...]`) as a frame; columns in first-seen order.
fn records_to_inputs(
    value: Value,
    signature: &Signature,
    field: &str,
) -> Result<Vec<Tensor>, Error> {
    let Value::Array(records) = value else {
        return Err(Error::InvalidInput(format!(
            "{field} must be a list of records like [{{\"column\": value}}]"
        )));
    };
    let mut columns: Vec<String> = Vec::new();
    for record in &records {
        let Value::Object(r) = record else {
            return Err(Error::InvalidInput(format!(
                "{field} must be a list of records like [{{\"column\": value}}]"
            )));
        };
        for k in r.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let rows = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            columns
                .iter()
                .map(|c| {
                    r.get(c).cloned().ok_or_else(|| {
                        Error::InvalidInput(format!("{field} record {i} has no column \"{c}\"; every record needs every column"))
                    })
                })
                .collect()
        })
        .collect::<Result<Vec<Vec<Value>>, _>>()?;
    frame_to_inputs(columns, rows, signature)
}

/// Tensors: `{"input_name": nested list, ...}`, or one nested list for a
/// one-input model.
fn tensors_to_inputs(
    value: Value,
    signature: &Signature,
    field: &str,
) -> Result<Vec<Tensor>, Error> {
    match value {
        Value::Object(named) => named
            .into_iter()
            .map(|(name, v)| {
                let spec = signature.inputs.iter().find(|s| s.name == name).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{field} names \"{name}\", which is not an input of the model; its inputs are: {}",
                        input_names(signature)
                    ))
                })?;
                tensor(spec, &v)
            })
            .collect(),
        list @ Value::Array(_) => match signature.inputs.as_slice() {
            [only] => Ok(vec![tensor(only, &list)?]),
            _ => Err(Error::InvalidInput(format!(
                "{field} is a single list but the model has {} inputs ({}); send {{\"{field}\": {{\"input_name\": [...], ...}}}}",
                signature.inputs.len(),
                input_names(signature)
            ))),
        },
        _ => Err(Error::InvalidInput(format!("{field} must be a list or an object of named lists"))),
    }
}

/// A tensor from a nested JSON list, its shape read from the nesting.
fn tensor(spec: &TensorSpec, value: &Value) -> Result<Tensor, Error> {
    let mut shape = Vec::new();
    let mut v = value;
    while let Value::Array(items) = v {
        shape.push(items.len() as i64);
        match items.first() {
            Some(first) => v = first,
            None => break,
        }
    }
    let data = from_json(&spec.name, spec.datatype, value)?;
    Tensor::new(spec.name.clone(), shape, data)
}

/// Columns become inputs by name, or are stacked into a one-input model.
fn frame_to_inputs(
    columns: Vec<String>,
    mut rows: Vec<Vec<Value>>,
    signature: &Signature,
) -> Result<Vec<Tensor>, Error> {
    let n = rows.len();
    if columns.is_empty() && rows.iter().all(Vec::is_empty) {
        return Err(Error::InvalidInput(
            "the data frame is empty; send at least one row of values".into(),
        ));
    }
    // A missing value (null, an empty CSV cell) in a float model is NaN, as
    // pandas reads it.
    if signature.inputs.iter().all(|s| s.datatype.is_float()) {
        for cell in rows.iter_mut().flatten() {
            if cell.is_null() {
                *cell = Value::String("NaN".into());
            }
        }
    }
    for (i, row) in rows.iter().enumerate() {
        if !columns.is_empty() && row.len() != columns.len() {
            return Err(Error::InvalidInput(format!(
                "row {i} has {} values for {} columns",
                row.len(),
                columns.len()
            )));
        }
    }
    if let Some(dup) = columns
        .iter()
        .enumerate()
        .find(|(i, c)| columns[..*i].contains(c))
        .map(|(_, c)| c)
    {
        return Err(Error::InvalidInput(format!(
            "column \"{dup}\" appears twice; give each column its own name"
        )));
    }
    let by_name = !columns.is_empty() && signature.inputs.iter().all(|s| columns.contains(&s.name));
    if by_name {
        // Rule 1: a column per input (extra columns are refused, not dropped).
        if let Some(extra) = columns
            .iter()
            .find(|c| !signature.inputs.iter().any(|s| &s.name == *c))
        {
            return Err(Error::InvalidInput(format!(
                "column \"{extra}\" is not an input of the model (columns are matched to inputs by name; its inputs are: {})",
                input_names(signature)
            )));
        }
        return signature
            .inputs
            .iter()
            .map(|spec| {
                let j = columns.iter().position(|c| c == &spec.name).unwrap_or(0);
                let cells: Vec<Value> = rows.iter().map(|r| r[j].clone()).collect();
                let inner = cells.first().and_then(Value::as_array).map(|a| a.len() as i64);
                let shape = match (spec.shape.len(), inner) {
                    (1, None) => vec![n as i64],
                    (2, None) => vec![n as i64, 1],
                    (2, Some(k)) => vec![n as i64, k],
                    _ => {
                        return Err(Error::InvalidInput(format!(
                            "input \"{}\" has rank {}; a data frame column can fill rank-1 or rank-2 inputs only, send it with \"inputs\" instead",
                            spec.name,
                            spec.shape.len()
                        )))
                    }
                };
                let data = from_json(&spec.name, spec.datatype, &Value::Array(cells))?;
                Tensor::new(spec.name.clone(), shape, data)
            })
            .collect();
    }
    match signature.inputs.as_slice() {
        // Rule 2: one 2-D input takes all columns, stacked in order.
        [only] if only.shape.len() == 2 => {
            let width = rows.first().map_or(columns.len(), Vec::len);
            if only.shape[1] >= 0 && only.shape[1] != width as i64 {
                return Err(Error::InvalidInput(format!(
                    "the columns do not name the model's input \"{}\", so they were stacked in order into it: that gives {width} columns but it takes {} ({} {}); send {} columns in the model's feature order",
                    only.name,
                    only.shape[1],
                    only.datatype,
                    crate::tensor::fmt_shape(&only.shape),
                    only.shape[1]
                )));
            }
            let cells: Vec<Value> = rows.into_iter().flatten().collect();
            let data = from_json(&only.name, only.datatype, &Value::Array(cells))?;
            Ok(vec![Tensor::new(only.name.clone(), vec![n as i64, width as i64], data)?])
        }
        _ => Err(Error::InvalidInput(format!(
            "the columns ({}) do not name every input of the model ({}), and it does not take a single 2-D input to stack them into; name one column after each input",
            columns.join(", "),
            input_names(signature)
        ))),
    }
}

fn input_names(signature: &Signature) -> String {
    signature
        .inputs
        .iter()
        .map(|s| {
            format!(
                "\"{}\" {} {}",
                s.name,
                s.datatype,
                crate::tensor::fmt_shape(&s.shape)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

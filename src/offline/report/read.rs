//! The rows `podium experiment report` needs from the inference table (one
//! endpoint's calls) and from the feedback table, read with arrow-rs over
//! the files [`summary::files`] lists.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::Value;

use crate::experiments::{Label, Prediction};
use crate::inference_table::summary::{self, endpoint_of};
use crate::inference_table::FEEDBACK_DIR;

/// One recorded call that reached an arm.
#[derive(Debug, Clone)]
pub struct Call {
    pub request_id: String,
    pub client_request_id: Option<String>,
    /// `request_time`, microseconds since the epoch.
    pub time: i64,
    pub arm: String,
    pub model: Option<String>,
    pub version: Option<u64>,
    pub ok: bool,
    pub total_ms: f64,
    /// Row 0 of the prediction output, when the response was recorded.
    pub prediction: Option<Prediction>,
}

/// One feedback item.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
    pub label: Label,
    /// `received_time`, microseconds since the epoch.
    pub time: i64,
}

const CALL_COLUMNS: [&str; 8] = [
    "request_id",
    "client_request_id",
    "request_time",
    "arm",
    "model_name",
    "model_version",
    "status_code",
    "total_duration_ms",
];

/// The calls to `endpoint` that reached an arm, with `request_time` in
/// `[since, until)`, in time order; `prediction_output` names the output
/// whose row 0 is read from the recorded response.
pub fn calls(
    table: &Path,
    endpoint: &str,
    since: Option<i64>,
    until: Option<i64>,
    prediction_output: Option<&str>,
) -> anyhow::Result<Vec<Call>> {
    let mut calls = Vec::new();
    for path in summary::files(table)? {
        if endpoint_of(&path) != endpoint {
            continue;
        }
        let mut columns: Vec<&str> = CALL_COLUMNS.to_vec();
        if prediction_output.is_some() {
            columns.push("response");
        }
        for batch in read(&path, &columns)? {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            add_calls(&batch, since, until, prediction_output, &mut calls)
                .with_context(|| format!("reading {}", path.display()))?;
        }
    }
    calls.sort_by_key(|c| c.time);
    Ok(calls)
}

/// Every feedback item of the table at `table` (its `_feedback` folder), in
/// the order the server received them.
pub fn feedback(table: &Path) -> anyhow::Result<Vec<Labelled>> {
    let dir = table.join(FEEDBACK_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let columns = ["request_id", "client_request_id", "label", "received_time"];
    for path in summary::files(&dir)? {
        for batch in read(&path, &columns)? {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            let text = |name: &str| batch.column_by_name(name).map(|c| c.as_string::<i32>());
            let (Some(id), Some(client), Some(label)) =
                (text("request_id"), text("client_request_id"), text("label"))
            else {
                anyhow::bail!("{} is not a feedback table file", path.display());
            };
            let time = column(&batch, "received_time")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .context("received_time is not a timestamp")?;
            for i in 0..batch.num_rows() {
                let value: Value = serde_json::from_str(label.value(i)).with_context(|| {
                    format!("{}: label {:?} is not JSON", path.display(), label.value(i))
                })?;
                let Some(label) = label_of(&value) else {
                    continue;
                };
                out.push(Labelled {
                    request_id: (!id.is_null(i)).then(|| id.value(i).to_string()),
                    client_request_id: (!client.is_null(i)).then(|| client.value(i).to_string()),
                    label,
                    time: time.value(i),
                });
            }
        }
    }
    out.sort_by_key(|l| l.time);
    Ok(out)
}

/// The label a feedback item sent, as `POST /v2/feedback` decoded it.
fn label_of(value: &Value) -> Option<Label> {
    match value {
        Value::Bool(b) => Some(Label::Bool(*b)),
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()).map(Label::Number),
        Value::String(s) => Some(Label::Text(s.clone())),
        _ => None,
    }
}

/// Row 0 of output `output` in an OIP JSON response.
fn prediction_of(response: &str, output: &str) -> Option<Prediction> {
    let value: Value = serde_json::from_str(response).ok()?;
    let tensor = value
        .get("outputs")?
        .as_array()?
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(output))?;
    let mut first = tensor.get("data")?.as_array()?.first()?;
    while let Value::Array(inner) = first {
        first = inner.first()?;
    }
    match first {
        Value::Number(n) => n.as_f64().map(Prediction::Number),
        Value::Bool(b) => Some(Prediction::Number(if *b { 1.0 } else { 0.0 })),
        Value::String(s) => Some(Prediction::Text(s.as_str().into())),
        _ => None,
    }
}

fn read(
    path: &Path,
    columns: &[&str],
) -> anyhow::Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let roots = columns
        .iter()
        .map(|name| {
            schema.index_of(name).map_err(|_| {
                anyhow::anyhow!(
                    "{} has no column {name:?}: not a Podium table file",
                    path.display()
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    Ok(builder.with_projection(mask).build()?)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| anyhow::anyhow!("no column {name}"))
}

fn add_calls(
    batch: &RecordBatch,
    since: Option<i64>,
    until: Option<i64>,
    prediction_output: Option<&str>,
    out: &mut Vec<Call>,
) -> anyhow::Result<()> {
    let text = |name: &str| column(batch, name).map(|c| c.as_string::<i32>());
    let (id, client, arm, model) = (
        text("request_id")?,
        text("client_request_id")?,
        text("arm")?,
        text("model_name")?,
    );
    let time = column(batch, "request_time")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .context("request_time is not a timestamp")?;
    let version = column(batch, "model_version")?.as_primitive::<Int64Type>();
    let status = column(batch, "status_code")?.as_primitive::<Int32Type>();
    let total = column(batch, "total_duration_ms")?.as_primitive::<Float64Type>();
    let response = match prediction_output {
        Some(_) => Some(text("response")?),
        None => None,
    };
    for i in 0..batch.num_rows() {
        let t = time.value(i);
        if arm.is_null(i) || since.is_some_and(|s| t < s) || until.is_some_and(|u| t >= u) {
            continue;
        }
        let ok = status.value(i) < 400;
        let prediction = match (response, prediction_output) {
            (Some(r), Some(output)) if ok && !r.is_null(i) => prediction_of(r.value(i), output),
            _ => None,
        };
        out.push(Call {
            request_id: id.value(i).to_string(),
            client_request_id: (!client.is_null(i)).then(|| client.value(i).to_string()),
            time: t,
            arm: arm.value(i).to_string(),
            model: (!model.is_null(i)).then(|| model.value(i).to_string()),
            version: (!version.is_null(i)).then(|| version.value(i) as u64),
            ok,
            total_ms: total.value(i),
            prediction,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_come_from_the_named_output_of_a_recorded_response() {
        let response = r#"{"model_name":"fraud","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,2],"data":[0.2,0.8]},{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}"#;
        assert_eq!(
            prediction_of(response, "label"),
            Some(Prediction::Number(1.0))
        );
        assert_eq!(
            prediction_of(response, "probabilities"),
            Some(Prediction::Number(0.2))
        );
        assert_eq!(prediction_of(response, "missing"), None);
        assert_eq!(prediction_of("not json", "label"), None);
        let text = r#"{"outputs":[{"name":"c","data":[["cat"]]}]}"#;
        assert_eq!(
            prediction_of(text, "c"),
            Some(Prediction::Text("cat".into()))
        );
    }

    #[test]
    fn labels_read_back_as_they_were_sent() {
        assert_eq!(label_of(&serde_json::json!(1)), Some(Label::Number(1.0)));
        assert_eq!(label_of(&serde_json::json!(true)), Some(Label::Bool(true)));
        assert_eq!(
            label_of(&serde_json::json!("fraud")),
            Some(Label::Text("fraud".into()))
        );
        assert_eq!(label_of(&serde_json::json!(null)), None);
    }
}

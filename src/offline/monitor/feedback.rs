//! Ground truth for the quality metrics: the feedback table beside the
//! inference table (`TABLE_DIR/_feedback/request_date=<d>/*.parquet`, one
//! row per label: `request_id`, `client_request_id`, `label` as JSON text,
//! `received_time`), joined to calls by request id or client request id.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::experiments::label::Label;
use crate::inference_table::reader::{parquet_files, subdirs};

/// The feedback directory of a table.
pub const FEEDBACK_DIR: &str = "_feedback";

/// The labels of a table's feedback, by the id they name. A later label of
/// the same call replaces an earlier one (files are read in name order).
#[derive(Debug, Default)]
pub struct Feedback {
    by_request: HashMap<String, Label>,
    by_client: HashMap<String, Label>,
    /// Labels that are not a JSON number, string or bool (not counted).
    pub unreadable: u64,
}

impl Feedback {
    /// The label of a call, by its request id, else its client request id.
    pub fn label(&self, request_id: &str, client_request_id: Option<&str>) -> Option<&Label> {
        self.by_request
            .get(request_id)
            .or_else(|| client_request_id.and_then(|c| self.by_client.get(c)))
    }

    pub fn is_empty(&self) -> bool {
        self.by_request.is_empty() && self.by_client.is_empty()
    }
}

/// The feedback files of the table at `table_dir` (none when it has no
/// feedback directory).
pub fn files(table_dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = table_dir.join(FEEDBACK_DIR);
    let mut out = Vec::new();
    if dir.is_dir() {
        for date_dir in subdirs(&dir)? {
            parquet_files(&date_dir, &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the labels of `files`.
pub fn read(files: &[PathBuf]) -> Result<Feedback> {
    let mut feedback = Feedback::default();
    for path in files {
        read_file(path, &mut feedback)
            .with_context(|| format!("reading feedback {}", path.display()))?;
    }
    Ok(feedback)
}

fn read_file(path: &Path, feedback: &mut Feedback) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    for batch in builder.build()? {
        let batch = batch?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
                .ok_or_else(|| anyhow!("no text column {name:?}: not a Podium feedback file"))
        };
        let request_id = text("request_id")?;
        let client_request_id = text("client_request_id")?;
        let label = text("label")?;
        for i in 0..batch.num_rows() {
            let parsed = label
                .is_valid(i)
                .then(|| serde_json::from_str::<Value>(label.value(i)).ok())
                .flatten()
                .and_then(|v| match v {
                    Value::Number(n) => n.as_f64().map(Label::Number),
                    Value::String(s) => Some(Label::Text(s)),
                    Value::Bool(b) => Some(Label::Bool(b)),
                    _ => None,
                });
            let Some(parsed) = parsed else {
                feedback.unreadable += 1;
                continue;
            };
            if request_id.is_valid(i) && !request_id.value(i).is_empty() {
                feedback
                    .by_request
                    .insert(request_id.value(i).to_string(), parsed);
            } else if client_request_id.is_valid(i) {
                feedback
                    .by_client
                    .insert(client_request_id.value(i).to_string(), parsed);
            }
        }
    }
    Ok(())
}

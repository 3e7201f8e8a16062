//! One pass over an endpoint's inference-table files: every call counted in
//! its window × arm (requests, errors, latency), the features and
//! predictions of its logged payloads added to that group's columns, its
//! ground truth (when feedback has some) scored, and, with
//! `--baseline-window`, the rows of that range pooled as the baseline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::Result;
use serde_json::Value;

use super::decode::{self, Cell};
use super::feedback::Feedback;
use crate::experiments::label::{Metric, Prediction};
use crate::inference_table::reader::{self, Row};

/// The arm of calls that never reached one (refused before routing).
pub const NO_ARM: &str = "-";

/// Whether a column is a model input (feature) or output (prediction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Output => "output",
        }
    }
}

/// The values of one column in one group.
#[derive(Debug, Clone, Default)]
pub struct ColumnValues {
    pub numbers: Vec<f64>,
    pub texts: Vec<String>,
    pub nulls: u64,
}

impl ColumnValues {
    pub fn push(&mut self, cell: Cell) {
        match cell {
            Cell::Number(x) => self.numbers.push(x),
            Cell::Text(s) => self.texts.push(s),
            Cell::Null => self.nulls += 1,
        }
    }

    /// Text values outnumber numbers: profiled by top values, drift over categories.
    pub fn is_categorical(&self) -> bool {
        self.texts.len() > self.numbers.len()
    }

    /// Sorts the numbers (the statistics need them sorted).
    pub fn finish(&mut self) {
        self.numbers.sort_by(f64::total_cmp);
    }
}

/// The calls of one window × arm.
#[derive(Debug, Default)]
pub struct Group {
    pub requests: u64,
    /// Calls answered with status 400 or more.
    pub errors: u64,
    pub latency_ms: Vec<f64>,
    pub columns: HashMap<String, ColumnValues>,
    /// Calls with ground truth, and the sum of their outcomes.
    pub labelled: u64,
    pub outcome_sum: f64,
}

/// What the quality metric reads.
#[derive(Debug, Clone)]
pub struct Quality {
    pub metric: Metric,
    /// The output holding the prediction [default: `label` if the response
    /// has it, else its first output].
    pub prediction: Option<String>,
}

/// How to read the files.
#[derive(Debug, Clone)]
pub struct Plan {
    pub window_us: i64,
    /// `--baseline-window`: rows in `[start, end)` (µs) pooled as the baseline.
    pub baseline_range: Option<(i64, i64)>,
    pub quality: Quality,
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct Observed {
    /// By (window start in µs, arm).
    pub groups: BTreeMap<(i64, String), Group>,
    /// Every column seen, in the order of first sight (signature order).
    pub columns: Vec<(String, Role)>,
    /// The pooled rows of `--baseline-window`.
    pub baseline: HashMap<String, ColumnValues>,
    pub rows: u64,
    /// Successful calls whose payloads could not be read as OIP JSON
    /// (not logged, too large, or MLflow `/invocations` bodies).
    pub undecoded: u64,
    /// The names in `columns`, for a quick check.
    known: HashSet<String>,
}

impl Observed {
    fn note_column(&mut self, name: &str, role: Role) {
        if !self.known.contains(name) {
            self.known.insert(name.to_string());
            self.columns.push((name.to_string(), role));
        }
    }
}

/// Reads `files` (one endpoint's) according to `plan`.
pub fn observe(files: &[PathBuf], plan: &Plan, feedback: &Feedback) -> Result<Observed> {
    let mut seen = Observed::default();
    for path in files {
        reader::read_rows(path, |row| add(&mut seen, plan, feedback, row))?;
    }
    for group in seen.groups.values_mut() {
        group.latency_ms.sort_by(f64::total_cmp);
        group.columns.values_mut().for_each(ColumnValues::finish);
    }
    seen.baseline.values_mut().for_each(ColumnValues::finish);
    Ok(seen)
}

fn add(seen: &mut Observed, plan: &Plan, feedback: &Feedback, row: Row) {
    seen.rows += 1;
    let window = row.time_us.div_euclid(plan.window_us) * plan.window_us;
    let arm = row.arm.clone().unwrap_or_else(|| NO_ARM.to_string());
    let ok = (200..300).contains(&row.status_code);
    let in_baseline = plan
        .baseline_range
        .is_some_and(|(start, end)| (start..end).contains(&row.time_us));
    let decoded = ok.then(|| decode_row(&row)).flatten();
    if ok && decoded.is_none() {
        seen.undecoded += 1;
    }
    if let Some((inputs, outputs)) = &decoded {
        for (name, _) in inputs {
            seen.note_column(name, Role::Input);
        }
        for (name, _) in outputs {
            seen.note_column(name, Role::Output);
        }
    }
    let outcome = decoded.as_ref().and_then(|(_, outputs)| {
        let label = feedback.label(&row.request_id, row.client_request_id.as_deref())?;
        let prediction = prediction(row.response.as_deref()?, outputs, &plan.quality);
        plan.quality.metric.outcome(label, prediction.as_ref())
    });
    let group = seen.groups.entry((window, arm)).or_default();
    group.requests += 1;
    if row.status_code >= 400 {
        group.errors += 1;
    }
    if let Some(ms) = row.total_ms {
        group.latency_ms.push(ms);
    }
    if let Some(outcome) = outcome {
        group.labelled += 1;
        group.outcome_sum += outcome;
    }
    let Some((inputs, outputs)) = decoded else {
        return;
    };
    for (name, cells) in inputs.into_iter().chain(outputs) {
        if in_baseline {
            let base = seen.baseline.entry(name.clone()).or_default();
            cells.iter().cloned().for_each(|c| base.push(c));
        }
        let column = group.columns.entry(name).or_default();
        cells.into_iter().for_each(|c| column.push(c));
    }
}

/// The input and output columns of a successful call, when its request
/// and response are OIP JSON.
fn decode_row(row: &Row) -> Option<(decode::Columns, decode::Columns)> {
    let inputs = decode::columns(row.request.as_deref()?, "inputs")?;
    let outputs = decode::columns(row.response.as_deref()?, "outputs")?;
    Some((inputs, outputs))
}

/// Row 0 of the prediction output, as the experiment readout reads it.
fn prediction(response: &str, outputs: &decode::Columns, quality: &Quality) -> Option<Prediction> {
    let value: Value = serde_json::from_str(response).ok()?;
    let tensors = value.get("outputs")?.as_array()?;
    let name = match &quality.prediction {
        Some(name) => name.clone(),
        None if outputs.iter().any(|(n, _)| n == "label") => "label".to_string(),
        None => tensors.first()?.get("name")?.as_str()?.to_string(),
    };
    let tensor = tensors
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name.as_str()))?;
    let mut first = tensor.get("data")?;
    while let Value::Array(items) = first {
        first = items.first()?;
    }
    match first {
        Value::Number(n) => n.as_f64().map(Prediction::Number),
        Value::Bool(b) => Some(Prediction::Number(if *b { 1.0 } else { 0.0 })),
        Value::String(s) => Some(Prediction::Text(s.as_str().into())),
        _ => None,
    }
}

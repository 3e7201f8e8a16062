//! The profile table: per window × arm × column the count, nulls, mean,
//! standard deviation, min, quantiles and max (top values for text
//! columns), and per window × arm one `:table` row with the request
//! count, error rate, latency quantiles and the quality metric.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::observe::{ColumnValues, Observed};
use super::stats::{mean_std, quantile};
use super::window::{window_columns, window_fields, Window};

/// The column name of the per window × arm rows, as Lakehouse Monitoring names them.
pub const TABLE_ROW: &str = ":table";

/// How many of a text column's most frequent values the profile keeps.
const TOP_VALUES: usize = 5;

/// The quantiles of numeric columns (and of latency: 0.5, 0.9, 0.99).
pub const QUANTILES: [(f64, &str); 5] = [
    (0.05, "p05"),
    (0.25, "p25"),
    (0.5, "p50"),
    (0.75, "p75"),
    (0.95, "p95"),
];

/// The profile of `seen`, one record batch.
pub fn profile(
    seen: &Observed,
    endpoint: &str,
    window: &Window,
    metric: &str,
) -> anyhow::Result<RecordBatch> {
    let mut keys: Vec<(i64, String)> = Vec::new();
    let mut column = Vec::new();
    let mut role = Vec::new();
    let mut count = Vec::new();
    let mut nulls = Vec::new();
    let mut stats: Vec<Vec<Option<f64>>> = vec![Vec::new(); 4 + QUANTILES.len()];
    let mut top = Vec::new();
    let mut requests = Vec::new();
    let mut error_rate = Vec::new();
    let mut latency: Vec<Vec<Option<f64>>> = vec![Vec::new(); 3];
    let mut quality_metric = Vec::new();
    let mut labelled = Vec::new();
    let mut quality = Vec::new();
    for ((start, arm), group) in &seen.groups {
        // The table row, then the columns in signature order.
        keys.push((*start, arm.clone()));
        column.push(TABLE_ROW.to_string());
        role.push(None);
        count.push(None);
        nulls.push(None);
        stats.iter_mut().for_each(|s| s.push(None));
        top.push(None);
        requests.push(Some(group.requests as i64));
        error_rate.push(Some(group.errors as f64 / group.requests.max(1) as f64));
        for (l, q) in latency.iter_mut().zip([0.5, 0.9, 0.99]) {
            l.push(quantile(&group.latency_ms, q));
        }
        let has_labels = group.labelled > 0;
        quality_metric.push(has_labels.then(|| metric.to_string()));
        labelled.push(Some(group.labelled as i64));
        quality.push(has_labels.then(|| group.outcome_sum / group.labelled as f64));
        for (name, r) in &seen.columns {
            let Some(values) = group.columns.get(name) else {
                continue;
            };
            keys.push((*start, arm.clone()));
            column.push(name.clone());
            role.push(Some(r.as_str()));
            count.push(Some((values.numbers.len() + values.texts.len()) as i64));
            nulls.push(Some(values.nulls as i64));
            for (s, v) in stats.iter_mut().zip(numeric_stats(values)) {
                s.push(v);
            }
            top.push(values.is_categorical().then(|| top_values(&values.texts)));
            requests.push(None);
            error_rate.push(None);
            latency.iter_mut().for_each(|l| l.push(None));
            quality_metric.push(None);
            labelled.push(None);
            quality.push(None);
        }
    }
    let f64s = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
    let i64s = |v: Vec<Option<i64>>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let mut fields = window_fields();
    let mut arrays = window_columns(&keys, endpoint, window);
    let mut add = |name: &str, dtype: DataType, array: ArrayRef| {
        fields.push(Field::new(name, dtype, true));
        arrays.push(array);
    };
    add(
        "column_name",
        DataType::Utf8,
        Arc::new(StringArray::from(column)),
    );
    add("role", DataType::Utf8, Arc::new(StringArray::from(role)));
    add("count", DataType::Int64, i64s(count));
    add("nulls", DataType::Int64, i64s(nulls));
    let mut stats = stats.into_iter();
    for name in ["mean", "std", "min"] {
        add(
            name,
            DataType::Float64,
            f64s(stats.next().unwrap_or_default()),
        );
    }
    for (_, name) in QUANTILES {
        add(
            name,
            DataType::Float64,
            f64s(stats.next().unwrap_or_default()),
        );
    }
    add(
        "max",
        DataType::Float64,
        f64s(stats.next().unwrap_or_default()),
    );
    add(
        "top_values",
        DataType::Utf8,
        Arc::new(StringArray::from(top)),
    );
    add("request_count", DataType::Int64, i64s(requests));
    add("error_rate", DataType::Float64, f64s(error_rate));
    for (l, name) in latency
        .into_iter()
        .zip(["latency_p50_ms", "latency_p90_ms", "latency_p99_ms"])
    {
        add(name, DataType::Float64, f64s(l));
    }
    add(
        "quality_metric",
        DataType::Utf8,
        Arc::new(StringArray::from(quality_metric)),
    );
    add("labelled", DataType::Int64, i64s(labelled));
    add("quality", DataType::Float64, f64s(quality));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// mean, std, min, the [`QUANTILES`], max.
fn numeric_stats(values: &ColumnValues) -> Vec<Option<f64>> {
    let v = &values.numbers;
    let (mean, std) = mean_std(v);
    let mut out = vec![mean, std, v.first().copied()];
    out.extend(QUANTILES.iter().map(|(q, _)| quantile(v, *q)));
    out.push(v.last().copied());
    out
}

/// The most frequent values, as JSON: `[{"value": "a", "count": 3}, …]`.
fn top_values(texts: &[String]) -> String {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for t in texts {
        *counts.entry(t).or_default() += 1;
    }
    let mut sorted: Vec<(&str, u64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let items: Vec<serde_json::Value> = sorted
        .into_iter()
        .take(TOP_VALUES)
        .map(|(v, c)| serde_json::json!({"value": v, "count": c}))
        .collect();
    serde_json::Value::Array(items).to_string()
}

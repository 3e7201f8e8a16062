//! The drift table: per window × arm × column, the distance of the
//! window's values from the baseline's — PSI (10 bins at the baseline's
//! deciles), the two-sample Kolmogorov–Smirnov statistic and p-value, the
//! Jensen–Shannon distance — and the breaches of the thresholds.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde::Serialize;

use super::ks::{ks_2samp, Method};
use super::observe::{ColumnValues, Observed};
use super::stats::{category_shares, decile_edges, js_distance, psi, shares};
use super::window::{window_columns, window_fields, Window};

/// When a drift metric counts as a breach.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// A PSI above this is a breach.
    pub psi: f64,
    /// A KS p-value below this is a breach.
    pub ks_alpha: f64,
}

/// One threshold crossed: the body of one webhook call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub endpoint: String,
    pub arm: String,
    pub column: String,
    /// `psi` or `ks_pvalue`.
    pub metric: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub window: WindowSpan,
}

/// A window, in RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowSpan {
    pub start: String,
    pub end: String,
}

/// The distances of one column.
#[derive(Debug, Clone, Copy, Default)]
struct Distances {
    psi: Option<f64>,
    ks: Option<(f64, f64, Method)>,
    js: Option<f64>,
}

fn distances(window: &ColumnValues, baseline: &ColumnValues) -> Distances {
    if window.is_categorical() || baseline.is_categorical() {
        if window.texts.is_empty() || baseline.texts.is_empty() {
            return Distances::default();
        }
        let (a, e) = category_shares(&window.texts, &baseline.texts);
        return Distances {
            psi: Some(psi(&a, &e)),
            ks: None,
            js: Some(js_distance(&a, &e)),
        };
    }
    if window.numbers.is_empty() || baseline.numbers.is_empty() {
        return Distances::default();
    }
    let edges = decile_edges(&baseline.numbers);
    let (a, e) = (
        shares(&window.numbers, &edges),
        shares(&baseline.numbers, &edges),
    );
    Distances {
        psi: Some(psi(&a, &e)),
        ks: ks_2samp(&baseline.numbers, &window.numbers).map(|k| (k.statistic, k.pvalue, k.method)),
        js: Some(js_distance(&a, &e)),
    }
}

/// The drift table of `seen` against `baseline`, and the breaches in it.
pub fn drift(
    seen: &Observed,
    baseline: &HashMap<String, ColumnValues>,
    endpoint: &str,
    window: &Window,
    thresholds: Thresholds,
) -> anyhow::Result<(RecordBatch, Vec<Breach>)> {
    let mut keys = Vec::new();
    let mut column = Vec::new();
    let mut role = Vec::new();
    let (mut count, mut base_count) = (Vec::new(), Vec::new());
    let (mut psi_v, mut ks_d, mut ks_p, mut ks_m, mut js) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut psi_b, mut ks_b) = (Vec::new(), Vec::new());
    let mut breaches = Vec::new();
    for ((start, arm), group) in &seen.groups {
        for (name, r) in &seen.columns {
            let (Some(values), Some(base)) = (group.columns.get(name), baseline.get(name)) else {
                continue;
            };
            let d = distances(values, base);
            keys.push((*start, arm.clone()));
            column.push(name.clone());
            role.push(r.as_str());
            count.push((values.numbers.len() + values.texts.len()) as i64);
            base_count.push((base.numbers.len() + base.texts.len()) as i64);
            psi_v.push(d.psi);
            ks_d.push(d.ks.map(|k| k.0));
            ks_p.push(d.ks.map(|k| k.1));
            ks_m.push(d.ks.map(|k| match k.2 {
                Method::Exact => "exact",
                Method::Asymptotic => "asymptotic",
            }));
            js.push(d.js);
            let psi_breach = d.psi.is_some_and(|p| p > thresholds.psi);
            let ks_breach = d.ks.is_some_and(|k| k.1 < thresholds.ks_alpha);
            psi_b.push(psi_breach);
            ks_b.push(ks_breach);
            let breach = |metric, value, threshold| Breach {
                endpoint: endpoint.to_string(),
                arm: arm.clone(),
                column: name.clone(),
                metric,
                value,
                threshold,
                window: WindowSpan {
                    start: Window::rfc3339(*start),
                    end: Window::rfc3339(start.saturating_add(window.micros)),
                },
            };
            if let (true, Some(p)) = (psi_breach, d.psi) {
                breaches.push(breach("psi", p, thresholds.psi));
            }
            if let (true, Some(k)) = (ks_breach, d.ks) {
                breaches.push(breach("ks_pvalue", k.1, thresholds.ks_alpha));
            }
        }
    }
    let f64s = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
    let mut fields = window_fields();
    let mut arrays = window_columns(&keys, endpoint, window);
    let mut add = |name: &str, dtype: DataType, nullable: bool, array: ArrayRef| {
        fields.push(Field::new(name, dtype, nullable));
        arrays.push(array);
    };
    add(
        "column_name",
        DataType::Utf8,
        false,
        Arc::new(StringArray::from(column)),
    );
    add(
        "role",
        DataType::Utf8,
        false,
        Arc::new(StringArray::from(role)),
    );
    add(
        "count",
        DataType::Int64,
        false,
        Arc::new(Int64Array::from(count)),
    );
    add(
        "baseline_count",
        DataType::Int64,
        false,
        Arc::new(Int64Array::from(base_count)),
    );
    add("psi", DataType::Float64, true, f64s(psi_v));
    add("ks_statistic", DataType::Float64, true, f64s(ks_d));
    add("ks_pvalue", DataType::Float64, true, f64s(ks_p));
    add(
        "ks_method",
        DataType::Utf8,
        true,
        Arc::new(StringArray::from(ks_m)),
    );
    add("js_distance", DataType::Float64, true, f64s(js));
    add(
        "psi_breach",
        DataType::Boolean,
        false,
        Arc::new(BooleanArray::from(psi_b)),
    );
    add(
        "ks_breach",
        DataType::Boolean,
        false,
        Arc::new(BooleanArray::from(ks_b)),
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    Ok((batch, breaches))
}

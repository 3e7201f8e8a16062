//! `--compare`: each replayed answer against the recorded one, output by
//! output. Same names, datatypes and shapes; floating-point elements equal
//! within `|replayed − recorded| ≤ atol + rtol·|recorded|` (numpy's
//! `isclose`), every other element (integers, booleans, strings) exactly.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::input::{element_size, Tensor};
use crate::protocol::RestAnswer;

/// Examples of differences kept per replay.
pub const EXAMPLES: usize = 5;

/// How close floating-point elements must be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    fn close(&self, recorded: f64, replayed: f64) -> bool {
        if recorded.is_nan() || replayed.is_nan() {
            return recorded.is_nan() && replayed.is_nan();
        }
        recorded == replayed
            || (replayed - recorded).abs() <= self.atol + self.rtol * recorded.abs()
    }
}

/// One output of one request that differs, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    pub request_id: String,
    pub output: String,
    /// What differs, e.g. "2 of 2 elements differ; the first at element 0".
    pub detail: String,
    /// The recorded value (from the first difference, a few elements).
    pub recorded: String,
    pub replayed: String,
}

/// What `--compare` found, added up over requests.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Answers compared with their recorded response.
    pub compared: u64,
    /// Answers that could not be compared, by reason (the recorded response
    /// was too large to log, or one of the two is not readable).
    pub not_compared: BTreeMap<String, u64>,
    /// Compared answers with at least one output that differs.
    pub differ: u64,
    /// Requests whose output differs, per output name.
    pub differ_by_output: BTreeMap<String, u64>,
    pub examples: Vec<Difference>,
}

impl Comparison {
    /// Compares one answer of a request recorded as `request_id` with the
    /// recorded response text (`None`: not logged). `invocations` selects
    /// MLflow's `{"predictions": ...}` form instead of OIP outputs.
    pub fn add(
        &mut self,
        request_id: &str,
        recorded: Option<&str>,
        replayed: &RestAnswer,
        invocations: bool,
        tolerance: Tolerance,
    ) {
        let Some(recorded) = recorded else {
            self.not_comparable("recorded_response_not_logged");
            return;
        };
        let outputs = if invocations {
            predictions(recorded.as_bytes()).zip(predictions(&replayed.body))
        } else {
            oip_outputs_text(recorded).zip(oip_outputs(replayed))
        };
        let Some((recorded, replayed)) = outputs else {
            self.not_comparable("unreadable_answer");
            return;
        };
        self.compared += 1;
        let differences = differences(&recorded, &replayed, tolerance);
        if differences.is_empty() {
            return;
        }
        self.differ += 1;
        for (output, detail, rec, rep) in differences {
            *self.differ_by_output.entry(output.clone()).or_default() += 1;
            if self.examples.len() < EXAMPLES {
                self.examples.push(Difference {
                    request_id: request_id.to_string(),
                    output,
                    detail,
                    recorded: rec,
                    replayed: rep,
                });
            }
        }
    }

    fn not_comparable(&mut self, why: &str) {
        *self.not_compared.entry(why.to_string()).or_default() += 1;
    }

    pub fn not_compared_total(&self) -> u64 {
        self.not_compared.values().sum()
    }

    pub fn merge(&mut self, other: &Comparison) {
        self.compared += other.compared;
        self.differ += other.differ;
        for (k, n) in &other.not_compared {
            *self.not_compared.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &other.differ_by_output {
            *self.differ_by_output.entry(k.clone()).or_default() += n;
        }
        for e in &other.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(e.clone());
            }
        }
    }
}

/// One output: datatype, shape and elements in row-major order.
#[derive(Debug, PartialEq)]
struct Output {
    datatype: String,
    shape: Vec<Value>,
    data: Vec<Value>,
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

/// The outputs of a recorded OIP response, by name.
fn oip_outputs_text(text: &str) -> Option<BTreeMap<String, Output>> {
    let v: Value = serde_json::from_str(text).ok()?;
    oip_json_outputs(&v, &[])
}

/// The outputs of a replayed OIP answer, JSON or with binary tensors.
fn oip_outputs(answer: &RestAnswer) -> Option<BTreeMap<String, Output>> {
    let head = answer.json_part().ok()?;
    let v: Value = serde_json::from_slice(head).ok()?;
    oip_json_outputs(&v, &answer.body[head.len()..])
}

/// `outputs` of an OIP response; outputs with a `binary_data_size` are read
/// from `binary` in order.
fn oip_json_outputs(v: &Value, mut binary: &[u8]) -> Option<BTreeMap<String, Output>> {
    let mut out = BTreeMap::new();
    for o in v.get("outputs")?.as_array()? {
        let name = o.get("name")?.as_str()?.to_string();
        let datatype = o.get("datatype")?.as_str()?.to_string();
        let shape = o.get("shape")?.as_array()?.clone();
        let mut data = Vec::new();
        let size = o
            .get("parameters")
            .and_then(|p| p.get("binary_data_size"))
            .and_then(Value::as_u64);
        match size {
            Some(size) => {
                let size = usize::try_from(size).ok().filter(|&s| s <= binary.len())?;
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                let tensor = Tensor {
                    name: name.clone(),
                    datatype: datatype.clone(),
                    shape: Vec::new(),
                    raw: raw.to_vec(),
                };
                if element_size(&datatype).is_some_and(|s| size % s != 0) {
                    return None;
                }
                data = tensor.json_data().ok()?;
            }
            None => flatten(o.get("data")?, &mut data),
        }
        out.insert(
            name,
            Output {
                datatype,
                shape,
                data,
            },
        );
    }
    Some(out)
}

/// MLflow's answer as one output, `predictions`.
fn predictions(body: &[u8]) -> Option<BTreeMap<String, Output>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut data = Vec::new();
    flatten_any(v.get("predictions")?, &mut data);
    Some(BTreeMap::from([(
        "predictions".to_string(),
        Output {
            datatype: "JSON".into(),
            shape: Vec::new(),
            data,
        },
    )]))
}

/// Every leaf of a JSON value (objects by key order), for predictions that
/// are records or columns rather than a tensor.
fn flatten_any(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten_any(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(Value::String(k.clone()));
                flatten_any(v, out);
            }
        }
        other => out.push(other.clone()),
    }
}

/// (output, detail, recorded, replayed) for each output that differs.
fn differences(
    recorded: &BTreeMap<String, Output>,
    replayed: &BTreeMap<String, Output>,
    tolerance: Tolerance,
) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for (name, rec) in recorded {
        let Some(rep) = replayed.get(name) else {
            out.push((
                name.clone(),
                "missing from the replayed answer".into(),
                preview(&rec.data, 0),
                "-".into(),
            ));
            continue;
        };
        if rec.datatype != rep.datatype {
            out.push((
                name.clone(),
                "datatypes differ".into(),
                rec.datatype.clone(),
                rep.datatype.clone(),
            ));
        } else if rec.shape != rep.shape || rec.data.len() != rep.data.len() {
            out.push((
                name.clone(),
                "shapes differ".into(),
                format!("{:?} ({} elements)", rec.shape, rec.data.len()),
                format!("{:?} ({} elements)", rep.shape, rep.data.len()),
            ));
        } else {
            let float = rec.datatype.starts_with("FP") || rec.datatype.starts_with("BF");
            let differing: Vec<usize> = (0..rec.data.len())
                .filter(|&i| !same(&rec.data[i], &rep.data[i], float, tolerance))
                .collect();
            if let Some(&first) = differing.first() {
                out.push((
                    name.clone(),
                    format!(
                        "{} of {} elements differ; the first at element {first}",
                        differing.len(),
                        rec.data.len()
                    ),
                    preview(&rec.data, first),
                    preview(&rep.data, first),
                ));
            }
        }
    }
    for name in replayed.keys().filter(|n| !recorded.contains_key(*n)) {
        out.push((
            name.clone(),
            "not in the recorded answer".into(),
            "-".into(),
            preview(&replayed[name].data, 0),
        ));
    }
    out
}

/// Two elements: numbers within the tolerance when `float` (null stands
/// for a NaN a JSON encoder could not write), anything else exactly; in an
/// MLflow answer (datatype JSON), any two non-integer numbers within it.
fn same(recorded: &Value, replayed: &Value, float: bool, tolerance: Tolerance) -> bool {
    match (recorded, replayed) {
        (Value::Number(a), Value::Number(b)) if float || a.is_f64() || b.is_f64() => {
            match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => tolerance.close(a, b),
                _ => a == b,
            }
        }
        (a, b) => a == b,
    }
}

/// Up to four elements from `from`, e.g. `[0.62, 0.38]` or `[…, 7, 8, 9, 10, …]`.
fn preview(data: &[Value], from: usize) -> String {
    const SHOWN: usize = 4;
    let from = from.min(data.len());
    let end = (from + SHOWN).min(data.len());
    let items: Vec<String> = data[from..end].iter().map(Value::to_string).collect();
    format!(
        "[{}{}{}]",
        if from > 0 { "…, " } else { "" },
        items.join(", "),
        if end < data.len() { ", …" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOL: Tolerance = Tolerance {
        rtol: 1e-5,
        atol: 1e-8,
    };

    fn answer(v: Value) -> RestAnswer {
        RestAnswer {
            headers: Default::default(),
            body: bytes::Bytes::from(v.to_string()),
        }
    }

    fn response(probabilities: Value, label: Value) -> Value {
        json!({"model_name": "fraud", "model_version": "1", "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [1], "data": label},
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": probabilities},
        ]})
    }

    #[test]
    fn floats_within_the_tolerance_are_the_same() {
        let recorded = response(json!([0.6206034, 0.37939653]), json!([0])).to_string();
        let mut c = Comparison::default();
        // Nested data and a last-digit difference.
        let replayed = response(json!([[0.6206035, 0.37939653]]), json!([0]));
        c.add("r1", Some(&recorded), &answer(replayed), false, TOL);
        assert_eq!((c.compared, c.differ), (1, 0));
        assert!(c.examples.is_empty());
    }

    #[test]
    fn differences_are_counted_per_output_with_examples() {
        let recorded = response(json!([0.62, 0.38]), json!([0])).to_string();
        let mut c = Comparison::default();
        let replayed = response(json!([0.12, 0.88]), json!([1]));
        c.add("r1", Some(&recorded), &answer(replayed), false, TOL);
        let replayed = response(json!([0.62, 0.3801]), json!([0]));
        c.add("r2", Some(&recorded), &answer(replayed), false, TOL);
        assert_eq!((c.compared, c.differ), (2, 2));
        assert_eq!(c.differ_by_output["probabilities"], 2);
        assert_eq!(c.differ_by_output["label"], 1);
        let e = &c.examples[1];
        assert_eq!(
            (e.request_id.as_str(), e.output.as_str()),
            ("r1", "probabilities")
        );
        assert_eq!(e.detail, "2 of 2 elements differ; the first at element 0");
        assert_eq!(
            (e.recorded.as_str(), e.replayed.as_str()),
            ("[0.62, 0.38]", "[0.12, 0.88]")
        );
        let e = &c.examples[2];
        assert_eq!(e.detail, "1 of 2 elements differ; the first at element 1");
        assert_eq!(
            (e.recorded.as_str(), e.replayed.as_str()),
            ("[…, 0.38]", "[…, 0.3801]")
        );
    }

    #[test]
    fn integers_are_exact_and_shapes_and_names_must_match() {
        let recorded = response(json!([0.5, 0.5]), json!([3])).to_string();
        let mut c = Comparison::default();
        let shape = json!({"outputs": [
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [3]},
            {"name": "probabilities", "datatype": "FP32", "shape": [2], "data": [0.5, 0.5]},
            {"name": "extra", "datatype": "INT64", "shape": [1], "data": [1]},
        ]});
        c.add("r", Some(&recorded), &answer(shape), false, TOL);
        assert_eq!(c.differ_by_output["probabilities"], 1);
        assert_eq!(c.differ_by_output["extra"], 1);
        assert!(!c.differ_by_output.contains_key("label"));
        assert_eq!(c.examples[0].detail, "shapes differ");
        let missing = json!({"outputs": [
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [4]},
        ]});
        c.add("r", Some(&recorded), &answer(missing), false, TOL);
        assert_eq!(c.differ_by_output["label"], 1);
        assert_eq!(c.differ_by_output["probabilities"], 2);
        assert_eq!(c.differ, 2);
    }

    #[test]
    fn binary_outputs_are_read_from_the_body() {
        let recorded = json!({"outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2], "data": [1.5, -2.0]}
        ]})
        .to_string();
        let head = json!({"outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
        ]})
        .to_string();
        let mut body = head.clone().into_bytes();
        body.extend(1.5f32.to_le_bytes());
        body.extend((-2.0f32).to_le_bytes());
        let mut headers = hyper::HeaderMap::new();
        headers.insert("inference-header-content-length", head.len().into());
        let replayed = RestAnswer {
            headers,
            body: body.into(),
        };
        let mut c = Comparison::default();
        c.add("r", Some(&recorded), &replayed, false, TOL);
        assert_eq!((c.compared, c.differ), (1, 0));
    }

    #[test]
    fn mlflow_predictions_and_what_cannot_be_compared() {
        let recorded = json!({"predictions": [{"label": 0, "probabilities": [0.62, 0.38]}]});
        let mut c = Comparison::default();
        let same = json!({"predictions": [{"label": 0, "probabilities": [0.6200001, 0.38]}]});
        c.add("a", Some(&recorded.to_string()), &answer(same), true, TOL);
        let other = json!({"predictions": [{"label": 1, "probabilities": [0.2, 0.8]}]});
        c.add("b", Some(&recorded.to_string()), &answer(other), true, TOL);
        assert_eq!((c.compared, c.differ), (2, 1));
        assert_eq!(c.differ_by_output["predictions"], 1);

        c.add("c", None, &answer(json!({})), false, TOL);
        c.add("d", Some("not json"), &answer(json!({})), false, TOL);
        assert_eq!(c.not_compared["recorded_response_not_logged"], 1);
        assert_eq!(c.not_compared["unreadable_answer"], 1);
        assert_eq!(c.compared, 2);
    }

    #[test]
    fn the_tolerance_is_numpys_isclose() {
        assert!(TOL.close(1.0, 1.0 + 1e-6));
        assert!(!TOL.close(1.0, 1.0 + 1e-4));
        assert!(TOL.close(0.0, 1e-9));
        assert!(!TOL.close(0.0, 1e-7));
        assert!(TOL.close(f64::NAN, f64::NAN));
        assert!(!TOL.close(f64::NAN, 1.0));
    }
}

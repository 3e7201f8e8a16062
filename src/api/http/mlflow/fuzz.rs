//! Generated inputs for `/invocations`: JSON and CSV bodies, random and
//! shaped like data frames and tensors, decoded against random model
//! signatures exactly as a call does (parse, then `into_inputs`). See
//! [`crate::fuzz`] for how long a run is and how to reproduce one.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{csv, json};
use crate::error::Error;
use crate::fuzz::{self, assert_names};
use crate::runtime::{Signature, TensorSpec};
use crate::tensor::{DataType, TensorData};

/// Words an `/invocations` error uses to name what is wrong: a field, a
/// column, a row, an input, or the body itself.
const NAMES_THE_PROBLEM: [&str; 12] = [
    "input \"",
    "column",
    "row ",
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
    "the input must be",
    "not valid JSON",
    "\"params\"",
    "data frame",
    "CSV body",
];

fn names_the_problem(err: &Error) -> Result<(), TestCaseError> {
    let needles: Vec<String> = NAMES_THE_PROBLEM.iter().map(|s| s.to_string()).collect();
    assert_names(err, &needles)
}

const INPUT_NAMES: [&str; 4] = ["a", "b", "c", "input"];

/// A model signature: one to three inputs of any datatype and rank 0 to 3.
fn signature() -> impl Strategy<Value = Signature> {
    let spec = (
        proptest::sample::select(INPUT_NAMES.to_vec()),
        proptest::sample::select(DataType::ALL.to_vec()),
        proptest::collection::vec(prop_oneof![Just(-1i64), 0i64..4], 0..4),
    )
        .prop_map(|(name, datatype, shape)| TensorSpec {
            name: name.into(),
            datatype,
            shape,
        });
    proptest::collection::vec(spec, 1..4).prop_map(|mut inputs| {
        inputs.dedup_by(|a, b| a.name == b.name);
        Signature {
            inputs,
            outputs: Vec::new(),
        }
    })
}

/// A column name: usually an input's, sometimes not.
fn column() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(INPUT_NAMES.to_vec()).prop_map(String::from),
        1 => fuzz::name(),
    ]
}

/// A JSON body shaped like one `/invocations` format, fields possibly wrong.
fn json_body() -> impl Strategy<Value = String> {
    let frame = || {
        (
            proptest::collection::vec(column(), 0..4),
            proptest::collection::vec(proptest::collection::vec(fuzz::json_text(2), 0..4), 0..4),
        )
    };
    prop_oneof![
        frame().prop_map(|(columns, rows)| format!(
            r#"{{"dataframe_split": {{"columns": {}, "data": [{}]}}}}"#,
            json!(columns),
            rows.iter()
                .map(|r| format!("[{}]", r.join(",")))
                .collect::<Vec<_>>()
                .join(",")
        )),
        frame().prop_map(|(columns, rows)| {
            let records: Vec<String> = rows
                .iter()
                .map(|r| {
                    let fields: Vec<String> = columns
                        .iter()
                        .zip(r)
                        .map(|(c, v)| format!("{}: {v}", Value::String(c.clone())))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                })
                .collect();
            let key = if records.len().is_multiple_of(2) {
                "dataframe_records"
            } else {
                "instances"
            };
            format!(r#"{{"{key}": [{}]}}"#, records.join(","))
        }),
        (
            proptest::sample::select(vec!["inputs", "instances"]),
            fuzz::json_text(4)
        )
            .prop_map(|(key, v)| format!(r#"{{"{key}": {v}}}"#)),
        (column(), fuzz::json_text(4)).prop_map(|(name, v)| format!(
            r#"{{"inputs": {{{}: {v}}}, "params": {{"k": 1}}}}"#,
            Value::String(name)
        )),
        fuzz::json_text(3).prop_map(|v| format!(r#"{{"dataframe_split": {v}}}"#)),
        fuzz::json_text(3),
        fuzz::deep_nesting().prop_map(|d| format!(r#"{{"inputs": {d}}}"#)),
    ]
}

/// A CSV cell: numbers, empty, text that needs quoting, non-finite names.
fn csv_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<i64>().prop_map(|v| v.to_string()),
        3 => any::<f64>().prop_map(|v| v.to_string()),
        1 => proptest::sample::select(vec![
            "", " ", "NaN", "nan", "inf", "-inf", "Infinity", "1e39", "1e400", "true", "FALSE",
            "\"a,b\"", "\"x \"\"y\"\"\"", "\"line\nbreak\"", "\"", "é", "0x10",
        ]).prop_map(String::from),
        1 => "[a-z ,\"]{0,4}",
    ]
}

fn csv_body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(column(), 0..4),
        proptest::collection::vec(proptest::collection::vec(csv_cell(), 0..5), 0..5),
        proptest::option::weighted(0.1, fuzz::bytes(8)),
    )
        .prop_map(|(columns, rows, junk)| {
            let mut text = columns.join(",");
            for row in rows {
                text.push('\n');
                text.push_str(&row.join(","));
            }
            let mut body = text.into_bytes();
            if let Some(junk) = junk {
                body.extend_from_slice(&junk);
            }
            body
        })
}

/// Decodes `parsed` against `signature`; a decoded input is consistent.
fn check_inputs(parsed: super::frame::Parsed, signature: &Signature) -> Result<(), TestCaseError> {
    match parsed.into_inputs(signature) {
        Err(e) => names_the_problem(&e),
        Ok(inputs) => {
            for t in &inputs {
                let n = crate::tensor::element_count(&t.shape).expect("checked shape");
                prop_assert_eq!(n, t.data.len() as u64);
                prop_assert!(signature.inputs.iter().any(|s| s.name == t.name));
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    /// Any bytes as a JSON or CSV body: an answer, never a panic.
    #[test]
    fn random_bodies_are_answered(body in fuzz::bytes(256), signature in signature()) {
        match json::parse(&body) {
            Ok(parsed) => check_inputs(parsed.parsed, &signature)?,
            Err(e) => names_the_problem(&e)?,
        }
        match csv::parse(&body) {
            Ok(parsed) => check_inputs(parsed, &signature)?,
            Err(e) => names_the_problem(&e)?,
        }
    }

    /// JSON bodies shaped like each format, with wrong types, ragged rows,
    /// bare NaN and deep nesting: errors name the field, column or input.
    #[test]
    fn json_bodies_name_the_problem(body in json_body(), signature in signature()) {
        match json::parse(body.as_bytes()) {
            Ok(parsed) => check_inputs(parsed.parsed, &signature)?,
            Err(e) => names_the_problem(&e)?,
        }
    }

    /// CSV bodies with quoted, empty, non-finite and non-UTF-8 cells.
    #[test]
    fn csv_bodies_name_the_problem(body in csv_body(), signature in signature()) {
        match csv::parse(&body) {
            Ok(parsed) => check_inputs(parsed, &signature)?,
            Err(e) => names_the_problem(&e)?,
        }
    }

    /// Bare NaN/Infinity are quoted outside strings only: a request id with
    /// those words, quotes and backslashes comes back unchanged.
    #[test]
    fn strings_survive_non_finite_quoting(
        id in "[NaInfity\"\\\\ -]{0,24}",
        value in proptest::sample::select(vec!["1", "-Infinity", "Infinity", "\"NaN\"", "-1.5e3"]),
    ) {
        let body = format!(r#"{{"client_request_id": {}, "inputs": [{value}, NaN]}}"#, Value::String(id.clone()));
        let parsed = json::parse(body.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.client_request_id, Some(id));
    }

    /// A numeric frame sent as CSV or `dataframe_split` to a model with one
    /// 2-D input decodes to exactly the cells sent, row-major.
    #[test]
    fn numeric_frames_round_trip(
        rows in proptest::collection::vec(proptest::collection::vec(-1.0e6f64..1.0e6, 3), 1..6),
        ints in any::<bool>(),
    ) {
        let datatype = if ints { DataType::Int64 } else { DataType::Fp64 };
        let rows: Vec<Vec<f64>> = rows
            .into_iter()
            .map(|r| r.into_iter().map(|x| if ints { x.trunc() } else { x }).collect())
            .collect();
        let signature = Signature {
            inputs: vec![TensorSpec { name: "features".into(), datatype, shape: vec![-1, 3] }],
            outputs: Vec::new(),
        };
        let cell = |x: f64| if ints { (x as i64).to_string() } else { format!("{x:?}") };
        let csv_text = std::iter::once("f0,f1,f2".to_string())
            .chain(rows.iter().map(|r| r.iter().map(|&x| cell(x)).collect::<Vec<_>>().join(",")))
            .collect::<Vec<_>>()
            .join("\n");
        let json_text = json!({"dataframe_split": {"columns": ["f0", "f1", "f2"], "data": rows
            .iter()
            .map(|r| r.iter().map(|&x| if ints { json!(x as i64) } else { json!(x) }).collect::<Vec<_>>())
            .collect::<Vec<_>>()}}).to_string();
        let want = if ints {
            TensorData::Int64(rows.iter().flatten().map(|&x| x as i64).collect())
        } else {
            TensorData::Fp64(rows.iter().flatten().copied().collect())
        };
        let fail = |e: Error| TestCaseError::fail(e.to_string());
        for parsed in [
            csv::parse(csv_text.as_bytes()).map_err(fail)?,
            json::parse(json_text.as_bytes()).map_err(fail)?.parsed,
        ] {
            let inputs = parsed.into_inputs(&signature).map_err(fail)?;
            prop_assert_eq!(&inputs[0].shape, &vec![rows.len() as i64, 3]);
            prop_assert_eq!(&inputs[0].data, &want);
        }
    }
}

//! `podium batch` and `podium compare` run as a user runs them: the real
//! binary on the demo registry, with Parquet and CSV files written here.

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use common::{cli, cli_ok, demo_registry, Server, FRAUD_ROW, FRAUD_V1_PROBABILITIES};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::Value;

/// `rows` fraud rows: FRAUD_ROW first, then deterministic varied rows
/// (values in [-4, 4)), as columns f0..f29, plus `extra` columns.
fn features(rows: usize) -> Vec<Vec<f32>> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..rows)
        .map(|r| match r {
            0 => FRAUD_ROW.to_vec(),
            _ => (0..30).map(|_| rng.f32() * 8.0 - 4.0).collect(),
        })
        .collect()
}

fn write_parquet(path: &Path, rows: &[Vec<f32>], extra: Vec<(&str, ArrayRef)>) {
    let mut columns: Vec<(String, ArrayRef)> = (0..30)
        .map(|i| {
            let values: Vec<f32> = rows.iter().map(|r| r[i]).collect();
            (
                format!("f{i}"),
                Arc::new(Float32Array::from(values)) as ArrayRef,
            )
        })
        .collect();
    columns.extend(extra.into_iter().map(|(n, a)| (n.to_string(), a)));
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn read_parquet(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Labels that fraud v2 (challenger) predicts for `rows`, read back from
/// `podium batch`: v2 is right on every row, v1 only where they agree.
fn challenger_labels(reg: &Path, dir: &Path, rows: &[Vec<f32>]) -> Vec<i64> {
    let input = dir.join("unlabelled.parquet");
    let output = dir.join("v2.parquet");
    write_parquet(&input, rows, vec![]);
    cli_ok(
        reg,
        &[
            "batch",
            "fraud@challenger",
            "--input",
            path(&input),
            "--output",
            path(&output),
        ],
    );
    let scored = read_parquet(&output);
    let labels = scored.column_by_name("label").unwrap();
    labels.as_primitive::<Int64Type>().values().to_vec()
}

#[test]
fn batch_writes_the_inputs_the_outputs_and_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let reg = demo_registry(dir.path());
    let rows = features(300);
    let input = dir.path().join("in.parquet");
    let ids: Vec<i64> = (0..300).collect();
    write_parquet(
        &input,
        &rows,
        vec![("label", Arc::new(Int64Array::from(ids.clone())))],
    );
    let output = dir.path().join("out.parquet");
    let names: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
    let (ok, _, stderr) = cli(
        &reg,
        &[
            "batch",
            "fraud",
            "--input",
            path(&input),
            "--output",
            path(&output),
            "--features",
            &names.join(","),
            "--batch-size",
            "64",
            "--threads",
            "2",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("note: model output \"label\" is written as column \"predicted_label\" (the input has a column \"label\")"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fraud v1 (fraud): wrote 300 rows to"),
        "{stderr}"
    );
    let out = read_parquet(&output);
    let schema = out.schema();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        columns[30..],
        [
            "label",
            "predicted_label",
            "probabilities",
            "model_name",
            "model_version"
        ]
    );
    // Input columns come through unchanged and in order (five batches of 64).
    assert_eq!(
        out.column_by_name("label")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        ids
    );
    let probabilities = out
        .column_by_name("probabilities")
        .unwrap()
        .as_fixed_size_list();
    assert_eq!(probabilities.value_length(), 2);
    let first = probabilities.value(0);
    let first = first.as_primitive::<Float32Type>().values();
    for (got, want) in first.iter().zip(FRAUD_V1_PROBABILITIES) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    let name = out.column_by_name("model_name").unwrap();
    assert!(name.as_string::<i32>().iter().all(|n| n == Some("fraud")));
    let version = out
        .column_by_name("model_version")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert!(version.values().iter().all(|&v| v == 1));

    // The same rows from CSV, scored by the challenger: version 2.
    let csv = dir.path().join("in.csv");
    let mut text = names.join(",") + "\n";
    for row in &rows {
        let values: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        text.push_str(&(values.join(",") + "\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let from_csv = dir.path().join("csv.parquet");
    cli_ok(
        &reg,
        &[
            "batch",
            "fraud@challenger",
            "--input",
            path(&csv),
            "--output",
            path(&from_csv),
        ],
    );
    let out = read_parquet(&from_csv);
    assert_eq!(out.num_rows(), 300);
    let version = out
        .column_by_name("model_version")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(version.value(0), 2);
}

#[test]
fn compare_decides_and_promotes_in_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let reg = demo_registry(dir.path());
    let rows = features(400);
    let labels = challenger_labels(&reg, dir.path(), &rows);
    let data = dir.path().join("heldout.parquet");
    write_parquet(
        &data,
        &rows,
        vec![("y", Arc::new(Int64Array::from(labels)))],
    );
    let args = [
        "compare",
        "fraud",
        "--data",
        path(&data),
        "--label",
        "y",
        "--json",
    ];
    let out: Value = serde_json::from_str(&cli_ok(&reg, &args)).unwrap();
    assert_eq!(out["metric"], "accuracy");
    assert_eq!(out["rows"], 400);
    assert_eq!(out["champion"]["version"], 1);
    assert_eq!(out["challenger"]["version"], 2);
    assert_eq!(out["challenger"]["value"], 1.0);
    let diff = out["diff"].as_f64().unwrap();
    assert!(out["ci_low"].as_f64().unwrap() > 0.0 && diff > 0.0, "{out}");
    assert_eq!(out["decision"], "better");
    assert_eq!(out["promoted"], false);
    // The same seed gives the same interval.
    let again: Value = serde_json::from_str(&cli_ok(&reg, &args)).unwrap();
    assert_eq!(
        (&again["ci_low"], &again["ci_high"]),
        (&out["ci_low"], &out["ci_high"])
    );

    // Lower is better for log_loss: the challenger still wins.
    let mut promote = args.to_vec();
    promote.extend(["--metric", "log_loss", "--promote-if-better"]);
    let (ok, stdout, stderr) = cli(&reg, &promote);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (out["decision"].as_str(), out["promoted"].as_bool()),
        (Some("better"), Some(true))
    );
    assert!(out["diff"].as_f64().unwrap() < 0.0, "{out}");
    assert!(
        stderr.contains("promoted: fraud@champion -> version 2"),
        "{stderr}"
    );
    assert_eq!(
        cli_ok(&reg, &["alias", "get", "fraud", "champion"]).trim(),
        "2"
    );
    let history = std::fs::read_to_string(reg.join(".podium-history.jsonl")).unwrap();
    let event: Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(event["action"], "compare");
    assert_eq!(
        (event["from_version"].as_u64(), event["to_version"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(event["comparison"]["metric"], "log_loss");
    assert_eq!(event["comparison"]["promoted"], true);
    assert_eq!(event["comparison"]["ci_high"], out["ci_high"]);
}

#[test]
fn compare_promotes_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let reg = demo_registry(dir.path());
    let rows = features(200);
    let labels = challenger_labels(&reg, dir.path(), &rows);
    let data = dir.path().join("heldout.parquet");
    write_parquet(
        &data,
        &rows,
        vec![("y", Arc::new(Int64Array::from(labels)))],
    );
    let server = Server::start(&reg, &[]);
    let (ok, stdout, stderr) = cli(
        &reg,
        &[
            "compare",
            "fraud",
            "--data",
            path(&data),
            "--label",
            "y",
            "--json",
            "--promote-if-better",
            "--server",
            &server.url(""),
        ],
    );
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["promoted"], true, "{out}");
    // The server loaded, validated and warmed version 2 before the alias moved.
    assert!(
        stderr.contains("promoted: fraud@champion -> version 2 (was 1; load"),
        "{stderr}"
    );
    let aliases = cli_ok(
        &reg,
        &["alias", "list", "fraud", "--server", &server.url("")],
    );
    assert!(aliases.contains("champion\t2\tserving 2"), "{aliases}");
}

#[test]
fn bad_input_is_refused_before_scoring_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let reg = demo_registry(dir.path());
    let rows = features(10);
    let labels = Arc::new(Int64Array::from(vec![0i64; 10])) as ArrayRef;
    let data = dir.path().join("d.parquet");
    write_parquet(&data, &rows, vec![("y", labels.clone())]);
    let out = dir.path().join("out.parquet");
    let refused = |args: &[&str], message: &str| {
        let (ok, stdout, stderr) = cli(&reg, args);
        assert!(!ok, "{args:?} succeeded: {stdout}");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in:\n{stderr}"
        );
        assert!(!out.exists(), "{args:?} left an output file");
    };
    refused(
        &[
            "compare",
            "fraud",
            "--data",
            path(&data),
            "--label",
            "is_fraud",
        ],
        "d.parquet has no label column \"is_fraud\"; its columns are: f0, f1",
    );
    // Label excluded, 30 features: fine for compare; batch has no label, so 31 columns.
    refused(
        &["batch", "fraud", "--input", path(&data), "--output", path(&out)],
        "model fraud v1 takes input \"input\" FP32 [-1,30] (30 values per row), but the file has 31 feature columns: f0, f1, f2",
    );
    refused(
        &["batch", "fraud", "--input", path(&data), "--output", path(&out), "--features", "f0,f1"],
        "--features names 2 columns, but model fraud v1 takes input \"input\" FP32 [-1,30] (30 values per row); name 30 columns, or one column holding a list of 30 values",
    );
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "f0,y\n").unwrap();
    refused(
        &["compare", "fraud", "--data", path(&empty), "--label", "y"],
        "empty.csv has no rows: there is nothing to score",
    );
    let clash = dir.path().join("clash.parquet");
    let names = Arc::new(StringArray::from(vec!["x"; 10])) as ArrayRef;
    write_parquet(&clash, &rows, vec![("model_name", names)]);
    refused(
        &["batch", "fraud", "--input", path(&clash), "--output", path(&out), "--features",
          &(0..30).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",")],
        "the input has a column \"model_name\", which podium batch adds to its output; rename or drop that column",
    );
    refused(
        &[
            "batch",
            "fraud",
            "--input",
            path(&data),
            "--output",
            path(&data),
        ],
        "is the input file; write the scores to another file",
    );
    refused(
        &[
            "compare",
            "fraud",
            "--data",
            path(&data),
            "--label",
            "y",
            "--metric",
            "rmse",
        ],
        "model fraud v1 has no output to read for rmse (one float per row)",
    );
}

//! Reading the inference table back as a user would: every complete
//! Parquet file under a table directory, with arrow-rs.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::Array;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

/// Every row of every complete file under `dir`, by column name; the
/// partition columns `endpoint` and `request_date` come from the path.
/// Folders starting with `_` (the journals, the feedback table) are not
/// the table's, as for Hive-partitioned readers.
pub fn read_table(dir: &Path) -> Vec<BTreeMap<String, Value>> {
    read_rows(dir, &["endpoint", "request_date"])
}

/// Every row of the feedback table of the inference table at `dir`
/// (`dir/_feedback`), with its `request_date` from the path.
pub fn read_feedback_table(dir: &Path) -> Vec<BTreeMap<String, Value>> {
    read_rows(&dir.join("_feedback"), &["request_date"])
}

fn read_rows(dir: &Path, partitions: &[&str]) -> Vec<BTreeMap<String, Value>> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                if !name.starts_with('_') {
                    files(&e.path(), out);
                }
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                out.push(e.path());
            }
        }
    }
    let mut paths = Vec::new();
    if dir.exists() {
        files(dir, &mut paths);
    }
    let mut rows = Vec::new();
    for path in paths {
        let partition = |key: &str| {
            path.components()
                .find_map(|c| {
                    c.as_os_str()
                        .to_str()
                        .unwrap()
                        .strip_prefix(&format!("{key}="))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| panic!("{} has no {key}= directory", path.display()))
        };
        let values: Vec<(&str, String)> = partitions.iter().map(|&p| (p, partition(p))).collect();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for i in 0..batch.num_rows() {
                let mut row = BTreeMap::new();
                for (key, value) in &values {
                    row.insert(key.to_string(), json!(value));
                }
                for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
                    let v = if col.is_null(i) {
                        Value::Null
                    } else {
                        match field.data_type() {
                            DataType::Utf8 => json!(col.as_string::<i32>().value(i)),
                            DataType::Int32 => json!(col.as_primitive::<Int32Type>().value(i)),
                            DataType::Int64 => json!(col.as_primitive::<Int64Type>().value(i)),
                            DataType::Float64 => {
                                json!(col.as_primitive::<Float64Type>().value(i))
                            }
                            DataType::Timestamp(..) => {
                                json!(col.as_primitive::<TimestampMicrosecondType>().value(i))
                            }
                            DataType::List(_) => {
                                let list = col.as_list::<i32>().value(i);
                                let items = list.as_string::<i32>();
                                json!((0..items.len()).map(|j| items.value(j)).collect::<Vec<_>>())
                            }
                            other => panic!("unexpected column type {other}"),
                        }
                    };
                    row.insert(field.name().clone(), v);
                }
                rows.push(row);
            }
        }
    }
    rows
}

/// The rows by `request_id`; fails when an id is there twice.
pub fn by_id(rows: Vec<BTreeMap<String, Value>>) -> HashMap<String, BTreeMap<String, Value>> {
    let n = rows.len();
    let map: HashMap<_, _> = rows
        .into_iter()
        .map(|r| (r["request_id"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(map.len(), n, "request ids are not unique");
    map
}

/// Every file under `dir`, at any depth (none when it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

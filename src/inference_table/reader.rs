//! Reading a table back for offline jobs (`podium monitor`): the endpoints
//! it holds, the complete files of one endpoint's partitions, and the
//! fields of each row an offline job needs. Directories that are not
//! `endpoint=<e>` partitions (`_journal`, `_feedback`, hidden ones) are
//! never read as endpoints.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use percent_encoding::percent_decode_str;

/// One row of the table, as offline jobs read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub request_id: String,
    pub client_request_id: Option<String>,
    /// When the request arrived, microseconds since the epoch (UTC).
    pub time_us: i64,
    /// `None` when the request never reached an arm (refused before routing).
    pub arm: Option<String>,
    pub status_code: i32,
    pub total_ms: Option<f64>,
    /// The logged bodies (OIP JSON, or the MLflow body as sent); `None`
    /// when not logged (`log_payloads = false`, or too large).
    pub request: Option<String>,
    pub response: Option<String>,
    pub protocol: String,
}

const COLUMNS: [&str; 9] = [
    "request_id",
    "client_request_id",
    "request_time",
    "arm",
    "status_code",
    "total_duration_ms",
    "request",
    "response",
    "protocol",
];

/// The endpoints of the table at `dir`, sorted; a clear error when `dir`
/// is not a table directory.
pub fn endpoints(dir: &Path) -> Result<Vec<String>> {
    let meta = std::fs::metadata(dir).with_context(|| {
        format!(
            "cannot read the inference table {}: give the --table-dir of the server that wrote it",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory; give an inference table directory (a server's --table-dir)",
            dir.display()
        );
    }
    let mut out = Vec::new();
    for path in subdirs(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(encoded) = name.strip_prefix("endpoint=") {
            out.push(percent_decode_str(encoded).decode_utf8_lossy().into_owned());
        }
    }
    Ok(out)
}

/// The complete Parquet files of `endpoint`, sorted by path (files being
/// written are hidden and skipped). An endpoint the table does not hold is
/// an error that lists the ones it does.
pub fn endpoint_files(dir: &Path, endpoint: &str) -> Result<Vec<PathBuf>> {
    let known = endpoints(dir)?;
    if !known.iter().any(|e| e == endpoint) {
        let list = if known.is_empty() {
            "none yet".to_string()
        } else {
            known.join(", ")
        };
        bail!(
            "the inference table {} has no endpoint {endpoint:?} (it holds: {list}); give one of those with --endpoint",
            dir.display()
        );
    }
    let mut out = Vec::new();
    let partition = dir.join(super::batch::partition_dir(endpoint));
    for date_dir in subdirs(&partition)? {
        parquet_files(&date_dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// The complete `*.parquet` files directly in `dir`.
pub fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".parquet") && !name.starts_with('.') && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The directories in `dir` (hidden ones skipped), sorted.
pub fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Calls `each` with every row of the table file at `path`.
pub fn read_rows(path: &Path, mut each: impl FnMut(Row)) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(COLUMNS.len());
    for name in COLUMNS {
        roots.push(schema.index_of(name).map_err(|_| {
            anyhow!(
                "{} has no column {name:?}: it is not a Podium inference table file",
                path.display()
            )
        })?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    for batch in builder.with_projection(mask).build()? {
        rows_of(&batch?, &mut each).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(())
}

fn rows_of(batch: &RecordBatch, each: &mut impl FnMut(Row)) -> Result<()> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| anyhow!("no column {name:?}"))
    };
    let wrong = |name: &str| anyhow!("column {name:?} has an unexpected type");
    let text = |name: &'static str| {
        column(name).and_then(|c| c.as_string_opt::<i32>().ok_or_else(|| wrong(name)))
    };
    let opt =
        |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let request_id = text("request_id")?;
    let client_request_id = text("client_request_id")?;
    let arm = text("arm")?;
    let request = text("request")?;
    let response = text("response")?;
    let protocol = text("protocol")?;
    let time = column("request_time")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| wrong("request_time"))?;
    let status = column("status_code")?
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| wrong("status_code"))?;
    let total = column("total_duration_ms")?
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| wrong("total_duration_ms"))?;
    for i in 0..batch.num_rows() {
        if time.is_null(i) || status.is_null(i) {
            continue;
        }
        each(Row {
            request_id: opt(request_id, i).unwrap_or_default(),
            client_request_id: opt(client_request_id, i),
            time_us: time.value(i),
            arm: opt(arm, i),
            status_code: status.value(i),
            total_ms: total.is_valid(i).then(|| total.value(i)),
            request: opt(request, i),
            response: opt(response, i),
            protocol: opt(protocol, i).unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_endpoint_partitions_are_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "endpoint=fraud/request_date=2026-11-27",
            "endpoint=a%2Fb/request_date=2026-11-27",
            "_feedback/request_date=2026-11-27",
            "_journal/endpoint=fraud",
            ".hidden",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        assert_eq!(endpoints(dir.path()).unwrap(), vec!["a/b", "fraud"]);
        let e = endpoint_files(dir.path(), "_feedback")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no endpoint \"_feedback\"") && e.contains("a/b, fraud"),
            "{e}"
        );
        assert!(endpoint_files(dir.path(), "fraud").unwrap().is_empty());
        let e = endpoints(Path::new("/nonexistent/table")).unwrap_err();
        assert!(format!("{e:#}").contains("--table-dir"), "{e:#}");
    }
}

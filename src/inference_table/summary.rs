//! `podium table summary DIR`: a first look at an inference table from the
//! CLI — rows, time range, counts, error rates and latency percentiles per
//! endpoint and arm — read from the Parquet files with arrow-rs.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::record::format_micros;

/// What `podium table summary` prints.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub rows: usize,
    /// First and last `request_time`, microseconds since the epoch.
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Per (endpoint, arm); the arm is `-` when the request never reached one.
    pub groups: BTreeMap<(String, String), Group>,
    /// Rows per served version (`served_entity_id`).
    pub versions: BTreeMap<String, usize>,
    /// Rows with a shadow copy per (endpoint, shadow arm): (rows, shadow errors).
    pub shadows: BTreeMap<(String, String), (usize, usize)>,
}

/// The rows of one endpoint arm.
#[derive(Debug, Default)]
pub struct Group {
    pub rows: usize,
    /// Rows whose status code is 400 or more.
    pub errors: usize,
    total_ms: Vec<f64>,
    execution_ms: Vec<f64>,
}

impl Group {
    /// The `q` quantile (0..=1) of total time in Podium, in ms.
    pub fn total_ms(&self, q: f64) -> Option<f64> {
        quantile(&self.total_ms, q)
    }

    /// The `q` quantile of model execution time, in ms.
    pub fn execution_ms(&self, q: f64) -> Option<f64> {
        quantile(&self.execution_ms, q)
    }
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

const COLUMNS: [&str; 9] = [
    "request_time",
    "arm",
    "model_name",
    "model_version",
    "status_code",
    "total_duration_ms",
    "execution_duration_ms",
    "shadow_arm",
    "shadow_error",
];

/// Reads every complete Parquet file under `dir` (hidden, in-progress
/// files are skipped).
pub fn summarize(dir: &Path) -> anyhow::Result<Summary> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory; pass the directory given to `podium serve --table-dir`",
            dir.display()
        );
    }
    let files = files(dir)?;
    let mut summary = Summary::default();
    for path in &files {
        read_file(path, &mut summary)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e:#}", path.display()))?;
        summary.files += 1;
    }
    for g in summary.groups.values_mut() {
        g.total_ms.sort_by(f64::total_cmp);
        g.execution_ms.sort_by(f64::total_cmp);
    }
    Ok(summary)
}

/// The complete Parquet files of the table at `dir`, sorted: hidden files
/// being written (`.part-….inprogress`) and folders starting with `_` (the
/// journals, the feedback table) are not the table's. Also lists the
/// feedback table when `dir` is its `_feedback` folder.
pub fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    find_files(dir, &mut files)?;
    files.sort();
    Ok(files)
}

fn find_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            find_files(&path, out)?;
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// The endpoint of a file: its `endpoint=<e>` directory, percent-decoded.
pub fn endpoint_of(path: &Path) -> String {
    let Some(value) = path.components().rev().find_map(|c| {
        c.as_os_str()
            .to_str()
            .and_then(|s| s.strip_prefix("endpoint="))
    }) else {
        return "-".into();
    };
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_file(path: &Path, summary: &mut Summary) -> anyhow::Result<()> {
    let endpoint = endpoint_of(path);
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let schema = builder.parquet_schema();
    let indices: Vec<usize> = COLUMNS
        .iter()
        .map(|name| {
            schema
                .columns()
                .iter()
                .position(|c| c.name() == *name)
                .ok_or_else(|| anyhow::anyhow!("no column {name}: not an inference table file"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mask = ProjectionMask::leaves(schema, indices);
    for batch in builder.with_projection(mask).build()? {
        add_batch(&batch?, &endpoint, summary)?;
    }
    Ok(())
}

fn add_batch(batch: &RecordBatch, endpoint: &str, s: &mut Summary) -> anyhow::Result<()> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| anyhow::anyhow!("no column {name}"))
    };
    let time = col("request_time")?.as_primitive_opt::<TimestampMicrosecondType>();
    let time = time.ok_or_else(|| anyhow::anyhow!("request_time is not a timestamp"))?;
    let arm = col("arm")?.as_string::<i32>();
    let model = col("model_name")?.as_string::<i32>();
    let version = col("model_version")?.as_primitive::<Int64Type>();
    let status = col("status_code")?.as_primitive::<Int32Type>();
    let total = col("total_duration_ms")?.as_primitive::<Float64Type>();
    let execution = col("execution_duration_ms")?.as_primitive::<Float64Type>();
    let shadow_arm = col("shadow_arm")?.as_string::<i32>();
    let shadow_error = col("shadow_error")?.as_string::<i32>();
    for i in 0..batch.num_rows() {
        s.rows += 1;
        let t = time.value(i);
        s.first = Some(s.first.map_or(t, |f| f.min(t)));
        s.last = Some(s.last.map_or(t, |l| l.max(t)));
        let arm_name = if arm.is_null(i) { "-" } else { arm.value(i) };
        let g = s
            .groups
            .entry((endpoint.to_string(), arm_name.to_string()))
            .or_default();
        g.rows += 1;
        if status.value(i) >= 400 {
            g.errors += 1;
        }
        g.total_ms.push(total.value(i));
        if !execution.is_null(i) {
            g.execution_ms.push(execution.value(i));
        }
        if !model.is_null(i) && !version.is_null(i) {
            *s.versions
                .entry(format!("{}/{}", model.value(i), version.value(i)))
                .or_default() += 1;
        }
        if !shadow_arm.is_null(i) {
            let e = s
                .shadows
                .entry((endpoint.to_string(), shadow_arm.value(i).to_string()))
                .or_default();
            e.0 += 1;
            e.1 += usize::from(!shadow_error.is_null(i));
        }
    }
    Ok(())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} rows in {} files", self.rows, self.files)?;
        if let (Some(first), Some(last)) = (self.first, self.last) {
            writeln!(
                f,
                "from {} to {}",
                format_micros(first),
                format_micros(last)
            )?;
        }
        if self.groups.is_empty() {
            return Ok(());
        }
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        writeln!(f)?;
        writeln!(
            f,
            "{:<24} {:<14} {:>9} {:>8} {:>8} {:>13} {:>13} {:>13}",
            "endpoint",
            "arm",
            "rows",
            "errors",
            "error %",
            "total p50 ms",
            "total p99 ms",
            "model p50 ms"
        )?;
        for ((endpoint, arm), g) in &self.groups {
            writeln!(
                f,
                "{:<24} {:<14} {:>9} {:>8} {:>8.2} {:>13} {:>13} {:>13}",
                endpoint,
                arm,
                g.rows,
                g.errors,
                100.0 * g.errors as f64 / g.rows.max(1) as f64,
                ms(g.total_ms(0.5)),
                ms(g.total_ms(0.99)),
                ms(g.execution_ms(0.5)),
            )?;
        }
        if !self.versions.is_empty() {
            writeln!(f)?;
            writeln!(f, "{:<39} {:>9}", "served version", "rows")?;
            for (v, n) in &self.versions {
                writeln!(f, "{v:<39} {n:>9}")?;
            }
        }
        if !self.shadows.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "{:<24} {:<14} {:>9} {:>8}",
                "endpoint", "shadow arm", "rows", "errors"
            )?;
            for ((endpoint, arm), (rows, errors)) in &self.shadows {
                writeln!(f, "{endpoint:<24} {arm:<14} {rows:>9} {errors:>8}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_partition_directory() {
        let p = Path::new("/t/endpoint=fraud-ab/request_date=2026-11-27/part-1.parquet");
        assert_eq!(endpoint_of(p), "fraud-ab");
        let p = Path::new("t/endpoint=a%2Fb%3Dc%C3%A9/request_date=2026-11-27/x.parquet");
        assert_eq!(endpoint_of(p), "a/b=cé");
        assert_eq!(endpoint_of(Path::new("x.parquet")), "-");
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(2.0));
        assert_eq!(quantile(&v, 0.99), Some(4.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}

//! The input of an offline job: a Parquet or CSV file read as a stream of
//! record batches of at most `batch_size` rows, so memory follows the batch
//! size, not the file.

use std::fs::File;
use std::io::Seek;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The file formats an offline job reads, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

impl Format {
    /// `.parquet` / `.pq` or `.csv` (any case); anything else is refused
    /// with the names that work.
    pub fn of(path: &Path) -> anyhow::Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet" | "pq") => Ok(Format::Parquet),
            Some("csv") => Ok(Format::Csv),
            _ => anyhow::bail!(
                "{}: cannot tell the format; name a Parquet file *.parquet or a CSV file (with a header row) *.csv",
                path.display()
            ),
        }
    }
}

/// An opened input file: its schema, its row count and its batches.
pub struct Source {
    path: PathBuf,
    schema: SchemaRef,
    rows: u64,
    batches: Box<dyn Iterator<Item = anyhow::Result<RecordBatch>> + Send>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

impl Source {
    /// Opens `path` for reading in batches of `batch_size` rows. A CSV
    /// file is read once here to infer its column types (from every row)
    /// and count its rows. A file without rows is refused.
    pub fn open(path: &Path, batch_size: usize) -> anyhow::Result<Source> {
        anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let shown = path.display().to_string();
        let (schema, rows, batches): (SchemaRef, u64, Box<dyn Iterator<Item = _> + Send>) =
            match Format::of(path)? {
                Format::Parquet => {
                    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                        .with_context(|| format!("{shown} is not a readable Parquet file"))?;
                    let rows =
                        u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
                    let schema = builder.schema().clone();
                    let reader = builder.with_batch_size(batch_size).build()?;
                    let shown = shown.clone();
                    (
                        schema,
                        rows,
                        Box::new(
                            reader.map(move |b| b.with_context(|| format!("cannot read {shown}"))),
                        ),
                    )
                }
                Format::Csv => {
                    let mut file = file;
                    let format = arrow_csv::reader::Format::default().with_header(true);
                    let (schema, rows) = format
                        .infer_schema(&mut file, None)
                        .with_context(|| format!("{shown} is not a readable CSV file"))?;
                    file.rewind()?;
                    let schema = std::sync::Arc::new(schema);
                    let reader = arrow_csv::ReaderBuilder::new(schema.clone())
                        .with_format(format)
                        .with_batch_size(batch_size)
                        .build(file)?;
                    let shown = shown.clone();
                    (
                        schema,
                        rows as u64,
                        Box::new(
                            reader.map(move |b| b.with_context(|| format!("cannot read {shown}"))),
                        ),
                    )
                }
            };
        anyhow::ensure!(
            !schema.fields().is_empty(),
            "{shown} has no columns; give a file with a header row (CSV) or a schema (Parquet)"
        );
        anyhow::ensure!(rows > 0, "{shown} has no rows: there is nothing to score");
        Ok(Source {
            path: path.to_path_buf(),
            schema,
            rows,
            batches,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows in the file (from Parquet's footer, or counted in a CSV file).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The record batches, in file order.
    pub fn batches(self) -> Box<dyn Iterator<Item = anyhow::Result<RecordBatch>> + Send> {
        self.batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(Format::of(Path::new("a.parquet")).unwrap(), Format::Parquet);
        assert_eq!(Format::of(Path::new("a.PQ")).unwrap(), Format::Parquet);
        assert_eq!(Format::of(Path::new("d/a.csv")).unwrap(), Format::Csv);
        let e = Format::of(Path::new("a.json")).unwrap_err().to_string();
        assert!(e.contains("*.parquet") && e.contains("*.csv"), "{e}");
    }

    #[test]
    fn csv_is_read_in_batches_with_inferred_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "a,b,name\n1,0.5,x\n2,1.5,y\n3,2.5,z\n").unwrap();
        let source = Source::open(&path, 2).unwrap();
        assert_eq!(source.rows(), 3);
        let types: Vec<String> = source
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        assert_eq!(types, ["Int64", "Float64", "Utf8"]);
        let sizes: Vec<usize> = source.batches().map(|b| b.unwrap().num_rows()).collect();
        assert_eq!(sizes, [2, 1]);
    }

    #[test]
    fn files_without_rows_or_columns_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let header_only = dir.path().join("h.csv");
        std::fs::write(&header_only, "a,b\n").unwrap();
        let e = Source::open(&header_only, 10).unwrap_err().to_string();
        assert!(e.ends_with("has no rows: there is nothing to score"), "{e}");
        let empty = dir.path().join("e.csv");
        std::fs::write(&empty, "").unwrap();
        let e = Source::open(&empty, 10).unwrap_err().to_string();
        assert!(e.contains("has no columns"), "{e}");
    }
}

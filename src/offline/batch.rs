//! `podium batch`: score a file with one model version and write the input
//! columns plus the model's outputs (and `model_name`, `model_version`) to
//! a Parquet file.
//!
//! The output appears only when the whole file is scored: rows are written
//! to a hidden temporary file beside it, renamed into place at the end, so
//! a failed or interrupted run never leaves a partial table behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType as ArrowType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::features::{FeatureMapping, MappingOptions};
use super::outputs::{output_column, OutputNames, MODEL_NAME, MODEL_VERSION};
use super::progress::Progress;
use super::scorer::Scorer;
use super::source::{Format, Source};

/// Rows per Parquet row group at least (smaller batches are gathered up to
/// this many rows before a row group is written).
const MIN_ROW_GROUP_ROWS: usize = 8192;

/// What to score and where to write it.
#[derive(Debug, Clone)]
pub struct BatchJob {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Rows read, scored and written at a time.
    pub batch_size: usize,
    pub mapping: MappingOptions,
}

/// What a finished job did.
#[derive(Debug)]
pub struct BatchReport {
    pub rows: u64,
    pub elapsed: Duration,
    /// How the columns fed the model (see [`FeatureMapping::describe`]).
    pub mapping: String,
}

impl BatchJob {
    /// Scores the input with `scorer`'s model and writes the output file.
    /// Everything about the input is checked before the first row is
    /// scored; the renamed outputs are reported on stderr.
    pub fn run(&self, scorer: &Scorer) -> anyhow::Result<BatchReport> {
        anyhow::ensure!(
            Format::of(&self.output)? == Format::Parquet,
            "--output {}: podium batch writes Parquet; name the output *.parquet",
            self.output.display()
        );
        refuse_same_file(&self.input, &self.output)?;
        let model = scorer.model();
        let source = Source::open(&self.input, self.batch_size)?;
        let mapping = FeatureMapping::new(
            source.schema(),
            &model.signature,
            &model.label(),
            &self.mapping,
        )
        .with_context(|| format!("cannot score {}", source.path().display()))?;
        let names = OutputNames::plan(source.schema(), &model.signature)?;
        for line in &names.renamed {
            eprintln!("note: {line}");
        }
        let dir = match self.output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".podium-batch-")
            .suffix(".parquet.tmp")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        let file = temp.reopen()?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(self.batch_size.max(MIN_ROW_GROUP_ROWS)))
            .build();
        let mut writer: Option<(ArrowWriter<std::fs::File>, SchemaRef)> = None;
        let mut file = Some(file);
        let name: ArrayRef = Arc::new(StringArray::from(vec![model.name.as_str()]));
        let version = i64::try_from(model.version).unwrap_or(i64::MAX);
        let mut progress = Progress::new(&format!("scoring with {}", model.label()), source.rows());
        let input_schema = source.schema().clone();
        scorer.score(source.batches(), &mapping, |batch, outputs| {
            let rows = batch.num_rows();
            let mut fields: Vec<Field> =
                input_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            for (tensor, column) in outputs.into_iter().zip(&names.columns) {
                let (field, array) = output_column(tensor, column, rows)?;
                fields.push(field);
                columns.push(array);
            }
            fields.push(Field::new(MODEL_NAME, ArrowType::Utf8, false));
            columns.push(repeat(&name, rows)?);
            fields.push(Field::new(MODEL_VERSION, ArrowType::Int64, false));
            columns.push(Arc::new(Int64Array::from(vec![version; rows])));
            let (writer, schema) = match &mut writer {
                Some(w) => w,
                None => {
                    let schema = Arc::new(Schema::new(fields));
                    let file = file.take().context("output file already taken")?;
                    let w = ArrowWriter::try_new(file, schema.clone(), Some(properties.clone()))?;
                    writer.insert((w, schema))
                }
            };
            let out = RecordBatch::try_new(schema.clone(), columns).with_context(|| {
                format!(
                    "the model's outputs changed shape between batches; {} cannot write them as one table",
                    model.label()
                )
            })?;
            writer.write(&out)?;
            progress.advance(rows as u64);
            Ok(())
        })?;
        let (writer, _) = writer.context("the input had no rows")?;
        writer.close().context("cannot finish the output file")?;
        temp.persist(&self.output)
            .with_context(|| format!("cannot move the result to {}", self.output.display()))?;
        let rows = progress.done();
        let elapsed = progress.finish();
        Ok(BatchReport {
            rows,
            elapsed,
            mapping: mapping.describe(),
        })
    }
}

/// `value` (one row) repeated `rows` times.
fn repeat(value: &ArrayRef, rows: usize) -> anyhow::Result<ArrayRef> {
    let indexes = arrow_array::UInt32Array::from(vec![0u32; rows]);
    Ok(arrow_select::take::take(value.as_ref(), &indexes, None)?)
}

/// Refuses an output path that is the input file itself.
fn refuse_same_file(input: &Path, output: &Path) -> anyhow::Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    anyhow::ensure!(
        !same,
        "--output {} is the input file; write the scores to another file",
        output.display()
    );
    Ok(())
}

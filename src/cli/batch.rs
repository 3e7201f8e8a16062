//! `podium batch`: score a Parquet or CSV file with a model version from
//! the registry and write the scores to Parquet; also the scoring flags
//! that `podium compare` shares.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::offline::batch::BatchJob;
use crate::offline::features::MappingOptions;
use crate::offline::scorer::Scorer;
use crate::offline::{default_threads, load_version, ModelRef};
use crate::registry::Registry;

#[derive(Args)]
pub struct BatchArgs {
    /// The model: MODEL (its champion), MODEL@ALIAS or MODEL/VERSION.
    model: String,
    /// The file to score: *.parquet, or *.csv with a header row.
    #[arg(long, env = "PODIUM_BATCH_INPUT")]
    input: PathBuf,
    /// Where to write the input's columns plus the model's outputs,
    /// model_name and model_version (*.parquet; replaced when the run succeeds).
    #[arg(long, env = "PODIUM_BATCH_OUTPUT")]
    output: PathBuf,
    #[command(flatten)]
    scoring: ScoringArgs,
}

/// How offline commands read files and run models.
#[derive(Args)]
pub struct ScoringArgs {
    /// Rows read, scored and written at a time; memory grows with
    /// batch size × threads, not with the file.
    #[arg(long, env = "PODIUM_BATCH_SIZE", default_value_t = 8192)]
    pub batch_size: usize,
    /// Inference threads, each with its own ONNX Runtime session [default: number of cores].
    #[arg(long, env = "PODIUM_THREADS")]
    pub threads: Option<usize>,
    /// For a single-input model: the feature columns, in input order
    /// (comma-separated), or one column holding a list per row [default:
    /// the column named like the input, else every column but the label].
    #[arg(long, env = "PODIUM_FEATURES", value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// The ONNX Runtime shared library [default: .ort/ of the checkout, or beside the binary].
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
}

impl ScoringArgs {
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(default_threads).max(1)
    }

    /// `model` `version` from `registry`, loaded as serving loads it, on
    /// its inference threads.
    pub fn scorer(
        &self,
        registry: &dyn Registry,
        model: &str,
        version: u64,
    ) -> anyhow::Result<Scorer> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        crate::runtime::ort::init(self.ort_lib.as_deref()).map_err(anyhow::Error::msg)?;
        let threads = self.threads();
        let loaded = load_version(registry, model, version, threads)
            .with_context(|| format!("cannot load {model} version {version}"))?;
        Scorer::new(loaded, threads)
    }
}

impl BatchArgs {
    /// Scores the file; progress and the summary go to stderr.
    pub fn run(self, registry: &dyn Registry) -> anyhow::Result<()> {
        let model = ModelRef::parse(&self.model)?;
        let version = model.resolve(registry)?;
        let scorer = self.scoring.scorer(registry, &model.model, version)?;
        let job = BatchJob {
            input: self.input,
            output: self.output,
            batch_size: self.scoring.batch_size,
            mapping: MappingOptions {
                features: self.scoring.features,
                exclude: Vec::new(),
            },
        };
        let report = job.run(&scorer)?;
        eprintln!(
            "{} ({}): wrote {} rows to {} ({})",
            scorer.model().label(),
            self.model,
            report.rows,
            job.output.display(),
            report.mapping
        );
        Ok(())
    }
}

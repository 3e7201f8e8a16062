//! `podium table`: read an inference table written by `podium serve --table-dir`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::inference_table::summary::summarize;

#[derive(Subcommand)]
pub enum TableCommand {
    /// Rows, time range, and per endpoint and arm: counts, error rates and
    /// latency percentiles.
    Summary {
        /// The table directory (the --table-dir of `podium serve`).
        dir: PathBuf,
    },
}

impl TableCommand {
    /// Prints the summary to stdout.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            TableCommand::Summary { dir } => print!("{}", summarize(&dir)?),
        }
        Ok(())
    }
}

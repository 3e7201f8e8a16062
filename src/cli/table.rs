//! `podium table`: read an inference table written by `podium serve --table-dir`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;

use super::parse::parse_seconds;
use crate::inference_table::summary::{summarize, Summary};

/// How often `--wait-for-rows` looks at the table again.
const POLL: Duration = Duration::from_millis(200);

#[derive(Subcommand)]
pub enum TableCommand {
    /// Rows, time range, and per endpoint and arm: counts, error rates and
    /// latency percentiles.
    Summary {
        /// The table directory (the --table-dir of `podium serve`).
        dir: PathBuf,
        /// Wait until the table's published files hold at least N rows (a
        /// server publishes its rows when it rolls a file: every
        /// --table-roll-secs, 10 s in the demo) [default: no wait].
        #[arg(long, value_name = "N")]
        wait_for_rows: Option<usize>,
        /// With --wait-for-rows: give up after this many seconds (exit status 1).
        #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
        timeout: f64,
    },
}

impl TableCommand {
    /// Prints the summary to stdout.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            TableCommand::Summary {
                dir,
                wait_for_rows: None,
                ..
            } => print!("{}", summarize(&dir)?),
            TableCommand::Summary {
                dir,
                wait_for_rows: Some(rows),
                timeout,
            } => print!(
                "{}",
                wait_for(&dir, rows, Duration::from_secs_f64(timeout))?
            ),
        }
        Ok(())
    }
}

/// The summary of `dir` once it holds `rows` rows; an error naming what
/// was found and the fix after `timeout`. A directory that does not exist
/// yet is waited for too (the server creates it with its first file).
fn wait_for(dir: &Path, rows: usize, timeout: Duration) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let summary = if dir.is_dir() {
            Some(summarize(dir)?)
        } else {
            None
        };
        let found = summary.as_ref().map_or(0, |s| s.rows);
        if let Some(summary) = summary.filter(|s| s.rows >= rows) {
            return Ok(summary);
        }
        if started.elapsed() >= timeout {
            anyhow::bail!(
                "waited {} s for {rows} rows in {}; it has {found}. Rows are published when the server rolls a file (--table-roll-secs; 10 s in the demo): send requests to a server with --table-dir {}, or wait longer with --timeout",
                timeout.as_secs_f64(),
                dir.display(),
                dir.display()
            );
        }
        if !announced {
            eprintln!(
                "podium: waiting up to {} s for {rows} rows in {} (it has {found}; rows appear when the server rolls a file)",
                timeout.as_secs_f64(),
                dir.display()
            );
            announced = true;
        }
        std::thread::sleep(POLL.min(timeout.saturating_sub(started.elapsed())));
    }
}
